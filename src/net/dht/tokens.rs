//! `get_peers` tokens (BEP 5): a token is bound to the requester's IP
//! (SHA-1 of a secret and the address), the secret changes every
//! [`ROTATE`], and a token made with the previous secret is still
//! accepted, so a token lives 5 to 10 minutes. Pure: the caller passes the
//! time.

use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

pub const ROTATE: Duration = Duration::from_secs(5 * 60);
/// Bytes of a token we hand out.
const TOKEN_LEN: usize = 8;

pub struct Tokens {
    secret: [u8; 16],
    previous: [u8; 16],
    rotated: Instant,
}

fn make(secret: &[u8; 16], ip: Ipv4Addr) -> [u8; TOKEN_LEN] {
    let digest = Sha1::new()
        .chain_update(secret)
        .chain_update(ip.octets())
        .finalize();
    digest[..TOKEN_LEN].try_into().expect("SHA-1 is 20 bytes")
}

fn random_secret() -> [u8; 16] {
    let mut s = [0u8; 16];
    crate::util::random::fill(&mut s);
    s
}

impl Tokens {
    pub fn new(now: Instant) -> Tokens {
        Tokens {
            secret: random_secret(),
            previous: random_secret(),
            rotated: now,
        }
    }

    fn rotate_if_due(&mut self, now: Instant) {
        if now.duration_since(self.rotated) >= ROTATE {
            self.previous = self.secret;
            self.secret = random_secret();
            self.rotated = now;
        }
    }

    pub fn issue(&mut self, ip: Ipv4Addr, now: Instant) -> Vec<u8> {
        self.rotate_if_due(now);
        make(&self.secret, ip).to_vec()
    }

    pub fn valid(&mut self, ip: Ipv4Addr, token: &[u8], now: Instant) -> bool {
        self.rotate_if_due(now);
        token == make(&self.secret, ip) || token == make(&self.previous, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_ip_and_outlive_one_rotation_only() {
        let t0 = Instant::now();
        let mut tokens = Tokens::new(t0);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let token = tokens.issue(a, t0);
        assert!(tokens.valid(a, &token, t0));
        assert!(!tokens.valid(b, &token, t0), "another IP");
        assert!(!tokens.valid(a, b"forged!!", t0));
        assert!(tokens.valid(a, &token, t0 + ROTATE), "previous secret");
        assert!(!tokens.valid(a, &token, t0 + ROTATE * 2), "two rotations");
    }
}
