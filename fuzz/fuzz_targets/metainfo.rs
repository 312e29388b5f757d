//! `.torrent` files: any input parses or is refused, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        let _ = m.display_name();
        for p in m.geometry.pieces() {
            let _ = m.geometry.piece_slices(p).count();
        }
    }
});
