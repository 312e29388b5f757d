//! BEP 14 announces: whatever parses builds back to the same announce,
//! addressed to either group.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::lsd::{Announce, GROUP_V4, GROUP_V6};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announce::parse(data) {
        for group in [GROUP_V4.into(), GROUP_V6.into()] {
            assert_eq!(Announce::parse(&a.build(group)), Ok(a.clone()));
        }
    }
});
