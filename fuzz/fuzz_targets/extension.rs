//! BEP 10 extension handshakes from peers.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shoal::proto::extension::parse_handshake(data);
});
