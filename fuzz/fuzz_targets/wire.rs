//! Peer wire: the handshake and frames (as the reader decodes them, one
//! after another from a buffer) never panic, and a decoded frame re-encodes
//! to its bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::bitfield::Bitfield;
use shoal::proto::wire::{self, Decoded, Handshake, Message};

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    let mut rest = data;
    while let Ok(Decoded::Message(msg, used)) = wire::decode(rest) {
        let mut again = Vec::new();
        msg.encode(&mut again);
        assert_eq!(again, rest[..used], "{}", msg.name());
        if let Message::Bitfield(bits) = msg {
            let _ = Bitfield::from_bytes(bits, (bits.len() * 8) as u32);
        }
        rest = &rest[used..];
    }
});
