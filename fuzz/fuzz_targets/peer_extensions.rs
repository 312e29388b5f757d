//! BEP 9 `ut_metadata` and BEP 11 `ut_pex` messages from peers, and magnet
//! links from the command line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shoal::proto::ut_metadata::parse(data);
    let _ = shoal::proto::pex::parse(data);
    let _ = shoal::proto::magnet::Magnet::parse(&String::from_utf8_lossy(data));
});
