//! BEP 14 announces: whatever parses builds back to the same announce.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::lsd::Announce;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announce::parse(data) {
        assert_eq!(Announce::parse(&a.build()), Ok(a));
    }
});
