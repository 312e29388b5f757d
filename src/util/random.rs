//! Randomness without a crate: seeds and key material from the kernel, a
//! small xorshift generator for choices that need to be spread, not secret
//! (peer order, tier shuffles, piece ties), and our peer id.

use std::io::Read;

/// 64 random bits from /dev/urandom. Where that cannot be read (a chroot
/// without /dev), from std's `RandomState`, which std seeds from the OS
/// (`getrandom`), so the seed is never just the clock (the UDP tracker's
/// connection-id secret depends on it).
pub fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut b = [0u8; 8];
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    match from_kernel {
        Ok(()) => u64::from_le_bytes(b) | 1,
        Err(_) => {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish() | 1
        }
    }
}

/// Fills `buf` from /dev/urandom (MSE private keys and padding). Where
/// that cannot be read, from [`Rng`] seeded by [`seed`]: MSE then still
/// works, and obfuscates as well against a passive observer who cannot
/// guess the seed.
pub fn fill(buf: &mut [u8]) {
    let from_kernel = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf));
    if from_kernel.is_err() {
        let mut rng = Rng::new(seed());
        for b in buf {
            *b = rng.next_u64() as u8;
        }
    }
}

/// xorshift64: fast, seeded, not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Any seed works: it is scrambled (splitmix64) so that nearby seeds
    /// give unrelated sequences.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Our peer id: Azureus style `-SH0100-` then 12 random alphanumerics.
pub fn peer_id() -> [u8; 20] {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = *b"-SH0100-000000000000";
    let mut rng = Rng::new(seed());
    for b in &mut id[8..] {
        *b = ALPHABET[rng.below(ALPHABET.len())];
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_permutation_and_varies() {
        let mut seen = std::collections::HashSet::new();
        for s in 1..20 {
            let mut v: Vec<u32> = (0..10).collect();
            Rng::new(s).shuffle(&mut v);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            seen.insert(v);
        }
        assert!(seen.len() > 10);
    }

    #[test]
    fn peer_ids_are_prefixed_and_differ() {
        let (a, b) = (peer_id(), peer_id());
        assert!(a.starts_with(b"-SH0100-"));
        assert_ne!(a, b);
    }
}
