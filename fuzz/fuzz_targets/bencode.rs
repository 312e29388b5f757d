//! Bencode: whole values, prefixes, and the item budget never panic, and a
//! decoded value's raw span re-decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::bencode;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = bencode::decode(data) {
        assert_eq!(v.raw, data);
        assert!(bencode::decode(v.raw).is_ok());
    }
    let _ = bencode::decode_prefix(data);
    let _ = bencode::decode_limited(data, 64);
});
