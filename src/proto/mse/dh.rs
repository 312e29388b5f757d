//! The Diffie-Hellman exchange of MSE: the fixed 768-bit prime, G = 2,
//! 160-bit private keys and 96-byte public keys and secrets.
//!
//! Owns: just enough unsigned big-integer arithmetic for that —
//! Montgomery multiplication over 12 limbs of 64 bits (products in `u128`:
//! a quarter of the multiply-adds of 32-bit limbs, which matters when a
//! flood of MSE handshakes each costs two exponentiations) and
//! left-to-right square-and-multiply. Does not own: where the private
//! key comes from (the caller draws it) or what the secret is used for
//! ([`super`]). Not constant-time: MSE obfuscates a stream, it does not
//! keep secrets from an attacker who can time us.

/// Bytes of a public key or shared secret (big-endian, zero-padded).
pub const KEY_LEN: usize = 96;
/// Bytes of a private key (160 bits, as the spec recommends).
pub const PRIVATE_LEN: usize = 20;

const LIMBS: usize = KEY_LEN / 8;

/// A number below 2^768, little-endian limbs.
type Num = [u64; LIMBS];

/// The MSE prime P, big-endian.
pub(super) const PRIME: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

/// Our public key for `private`: 2^private mod P.
pub fn public_key(private: &[u8; PRIVATE_LEN]) -> [u8; KEY_LEN] {
    let mut two = [0u8; KEY_LEN];
    two[KEY_LEN - 1] = 2;
    to_bytes(&pow(&from_bytes(&two), private))
}

/// The shared secret from the peer's public key, or `None` if that key is
/// degenerate (0, 1, P-1, or not below P): such a key would fix the secret
/// whatever our private key is.
pub fn shared_secret(theirs: &[u8; KEY_LEN], private: &[u8; PRIVATE_LEN]) -> Option<[u8; KEY_LEN]> {
    let field = Field::get();
    let y = from_bytes(theirs);
    let mut one: Num = [0; LIMBS];
    one[0] = 1;
    let p_minus_1 = sub(&field.p, &one);
    if !less(&one, &y) || !less(&y, &p_minus_1) {
        return None;
    }
    Some(to_bytes(&pow(&y, private)))
}

/// base^exp mod P.
fn pow(base: &Num, exp: &[u8]) -> Num {
    Field::get().pow(base, exp)
}

/// The modulus and its Montgomery constants.
struct Field {
    p: Num,
    /// -p^-1 mod 2^64.
    n0: u64,
    /// R^2 mod p, R = 2^768.
    r2: Num,
}

impl Field {
    fn get() -> &'static Field {
        static FIELD: std::sync::OnceLock<Field> = std::sync::OnceLock::new();
        FIELD.get_or_init(Field::new)
    }

    fn new() -> Field {
        let p = from_bytes(&PRIME);
        // Newton's iteration doubles the correct low bits of p^-1 each step.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        // R^2 mod p by doubling 1 modulo p, 2 × 768 times.
        let mut r2: Num = [0; LIMBS];
        r2[0] = 1;
        for _ in 0..2 * 64 * LIMBS {
            let carry = shl1(&mut r2);
            if carry || !less(&r2, &p) {
                r2 = sub(&r2, &p);
            }
        }
        Field {
            p,
            n0: inv.wrapping_neg(),
            r2,
        }
    }

    /// a × b × R^-1 mod p (a, b < p).
    fn mul(&self, a: &Num, b: &Num) -> Num {
        let mut t = [0u64; LIMBS + 2];
        for &bi in b {
            let mut carry = 0u128;
            for j in 0..LIMBS {
                let s = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + carry;
                t[j] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[LIMBS]) + carry;
            t[LIMBS] = s as u64;
            t[LIMBS + 1] = (s >> 64) as u64;
            // Add m × p so that the lowest limb is zero, and shift it out.
            let m = t[0].wrapping_mul(self.n0);
            let mut carry = (u128::from(t[0]) + u128::from(m) * u128::from(self.p[0])) >> 64;
            for j in 1..LIMBS {
                let s = u128::from(t[j]) + u128::from(m) * u128::from(self.p[j]) + carry;
                t[j - 1] = s as u64;
                carry = s >> 64;
            }
            let s = u128::from(t[LIMBS]) + carry;
            t[LIMBS - 1] = s as u64;
            t[LIMBS] = t[LIMBS + 1] + (s >> 64) as u64;
        }
        let mut out: Num = [0; LIMBS];
        out.copy_from_slice(&t[..LIMBS]);
        if t[LIMBS] != 0 || !less(&out, &self.p) {
            out = sub(&out, &self.p);
        }
        out
    }

    /// base^exp mod p, `exp` big-endian.
    fn pow(&self, base: &Num, exp: &[u8]) -> Num {
        let base = self.mul(base, &self.r2);
        let mut one: Num = [0; LIMBS];
        one[0] = 1;
        let mut acc = self.mul(&one, &self.r2);
        for byte in exp {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                if byte >> bit & 1 == 1 {
                    acc = self.mul(&acc, &base);
                }
            }
        }
        self.mul(&acc, &one)
    }
}

/// a < b.
fn less(a: &Num, b: &Num) -> bool {
    a.iter().rev().lt(b.iter().rev())
}

/// a - b modulo 2^768 (callers subtract p from a number below 2p, so a
/// wrap-around is the right answer).
fn sub(a: &Num, b: &Num) -> Num {
    let mut out: Num = [0; LIMBS];
    let mut borrow = false;
    for i in 0..LIMBS {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        out[i] = d;
        borrow = b1 || b2;
    }
    out
}

/// n <<= 1; returns the bit shifted out.
fn shl1(n: &mut Num) -> bool {
    let mut carry = 0;
    for limb in n.iter_mut() {
        let next = *limb >> 63;
        *limb = *limb << 1 | carry;
        carry = next;
    }
    carry == 1
}

fn from_bytes(b: &[u8; KEY_LEN]) -> Num {
    let mut n: Num = [0; LIMBS];
    for (i, chunk) in b.rchunks_exact(8).enumerate() {
        n[i] = u64::from_be_bytes(chunk.try_into().expect("8 bytes"));
    }
    n
}

fn to_bytes(n: &Num) -> [u8; KEY_LEN] {
    let mut b = [0u8; KEY_LEN];
    for (i, chunk) in b.rchunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&n[i].to_be_bytes());
    }
    b
}
