//! BEP 9 `ut_metadata` and BEP 11 `ut_pex` messages from peers, magnet
//! links from the command line, and a web seed's `Content-Range` (BEP 19).
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::web_seed::{check_reply, Part};

fuzz_target!(|data: &[u8]| {
    let _ = shoal::proto::ut_metadata::parse(data);
    let _ = shoal::proto::pex::parse(data);
    let text = String::from_utf8_lossy(data);
    let _ = shoal::proto::magnet::Magnet::parse(&text);
    let part = Part {
        file: 0,
        offset: 1 << 20,
        len: 16384,
        padding: false,
    };
    let _ = check_reply(&part, 206, Some(&text), Some(16384));
});
