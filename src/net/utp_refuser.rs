//! Refusing uTP: every uTP connection attempt (BEP 29 `ST_SYN`) on the
//! peer port gets an `ST_RESET`, so that clients that dial uTP first
//! (libtorrent, qBittorrent, Transmission) fall back to TCP at once
//! instead of after their uTP timeout. See [`crate::proto::utp`].
//! [`crate::net::udp_port`] hands it the datagrams that are not KRPC.
//!
//! A reply is never larger than the datagram it answers and is sent only
//! to a SYN, at most [`RESETS_PER_SECOND`]: no amplification, and a
//! spoofed flood costs a bounded trickle. Anything else is ignored.

use crate::proto::utp;
use std::time::Instant;

/// Resets sent per second at most (a burst of as many is allowed).
pub const RESETS_PER_SECOND: u32 = 500;

pub struct Refuser {
    started: Instant,
    tokens: u32,
    refilled: Instant,
}

impl Refuser {
    pub fn new(now: Instant) -> Refuser {
        Refuser {
            started: now,
            tokens: RESETS_PER_SECOND,
            refilled: now,
        }
    }

    /// The reset to send back, if `datagram` is a SYN and the budget
    /// allows.
    pub fn answer(&mut self, datagram: &[u8], now: Instant) -> Option<[u8; utp::HEADER_LEN]> {
        let syn = utp::parse_syn(datagram)?;
        if now.duration_since(self.refilled).as_secs() >= 1 {
            self.tokens = RESETS_PER_SECOND;
            self.refilled = now;
        }
        self.tokens = self.tokens.checked_sub(1)?;
        let now_us = now.duration_since(self.started).as_micros() as u32;
        Some(utp::reset_for(syn, now_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn syns_get_resets_within_the_budget_and_nothing_else_does() {
        let t0 = Instant::now();
        let mut r = Refuser::new(t0);
        let mut syn = [0u8; 20];
        syn[0] = 0x41;
        syn[2..4].copy_from_slice(&0x4242u16.to_be_bytes());
        syn[16..18].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            r.answer(
                b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe",
                t0
            ),
            None
        );
        let reset = r.answer(&syn, t0).unwrap();
        assert_eq!(reset[0], 0x31);
        assert_eq!(&reset[2..4], &[0x42, 0x42]);
        assert_eq!(&reset[18..20], &[0, 7]);
        let sent = (0..2 * RESETS_PER_SECOND).filter(|_| r.answer(&syn, t0).is_some());
        assert_eq!(sent.count() as u32, RESETS_PER_SECOND - 1);
        assert!(r.answer(&syn, t0 + Duration::from_secs(1)).is_some());
    }
}
