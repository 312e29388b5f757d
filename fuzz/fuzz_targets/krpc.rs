//! KRPC datagrams: decoding never panics, and a decoded message re-encodes
//! to bytes that decode to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::krpc;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        assert_eq!(krpc::decode(&m.encode()), Ok(m));
    }
    let _ = krpc::decode_nodes(data);
});
