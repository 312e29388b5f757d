//! MSE receiver (what a greeter runs on bytes from a stranger): hostile
//! bytes never panic it, and it never waits past the spec's bounds.
//!
//! The first input byte sets the size of each feed. The rest is XORed into
//! an honest initiator's first flight (XOR into RC4 ciphertext is XOR into
//! the plaintext, so the fuzzer controls VC, crypto_provide, the padding
//! and IA lengths) and what is longer is appended. Randomness is fixed, so
//! a crash reproduces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shoal::proto::mse::{Handshake, Methods, Step};

const INFO_HASH: [u8; 20] = [0x5a; 20];

fn fixed(seed: u8) -> impl FnMut(&mut [u8]) {
    let mut n = seed;
    move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_mul(31).wrapping_add(7);
            *b = n;
        }
    }
}

/// The bytes an honest initiator sends to a receiver drawn from `fixed(2)`
/// (computed once: key exchanges are most of the cost of a run).
fn honest_flight() -> &'static [u8] {
    static FLIGHT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FLIGHT.get_or_init(flight)
}

fn flight() -> Vec<u8> {
    let mut a = Handshake::initiator(INFO_HASH, Methods::BOTH, b"ia", &mut fixed(1));
    let mut b = Handshake::receiver(vec![INFO_HASH], Methods::BOTH, &mut fixed(2));
    let mut flight = a.take_output();
    match a.feed(&b.take_output()) {
        Ok(Step::Continue(mut a)) => flight.extend(a.take_output()),
        _ => unreachable!("an honest exchange goes on"),
    }
    flight
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let mut input = honest_flight().to_vec();
    for (b, d) in input.iter_mut().zip(data) {
        *b ^= d;
    }
    input.extend_from_slice(data.get(input.len()..).unwrap_or_default());
    let mut hs = Handshake::receiver(vec![INFO_HASH], Methods::BOTH, &mut fixed(2));
    for piece in input.chunks(usize::from(chunk).max(1)) {
        match hs.feed(piece) {
            Ok(Step::Continue(next)) => hs = *next,
            Ok(Step::Done(_)) | Err(_) => return,
        }
    }
});
