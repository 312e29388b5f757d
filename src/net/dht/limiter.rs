//! Queries served per IP: a token bucket per address, [`RATE`] a second
//! with a burst of [`BURST`]. A query over the limit is dropped unread
//! (the sender pays, we send nothing). At most [`MAX_IPS`] addresses are
//! tracked; when the table is full, idle ones (bucket full again) are
//! forgotten, and if none is, queries from new addresses are dropped until
//! one is. 127.0.0.1 (our own host, and every node of a test on loopback)
//! is not limited. Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Instant;

pub const RATE: f64 = 20.0;
pub const BURST: f64 = 50.0;
pub const MAX_IPS: usize = 4096;

#[derive(Default)]
pub struct Limiter {
    buckets: HashMap<Ipv4Addr, (f64, Instant)>,
}

impl Limiter {
    pub fn allow(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        if ip == Ipv4Addr::LOCALHOST {
            return true;
        }
        if self.buckets.len() >= MAX_IPS && !self.buckets.contains_key(&ip) {
            self.buckets.retain(|_, b| refill(b, now) < BURST);
            if self.buckets.len() >= MAX_IPS {
                return false;
            }
        }
        let b = self.buckets.entry(ip).or_insert((BURST, now));
        if refill(b, now) < 1.0 {
            return false;
        }
        b.0 -= 1.0;
        true
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

/// Tops the bucket up for the time passed; returns its tokens.
fn refill(b: &mut (f64, Instant), now: Instant) -> f64 {
    let secs = now.saturating_duration_since(b.1).as_secs_f64();
    b.0 = (b.0 + secs * RATE).min(BURST);
    b.1 = now;
    b.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate_and_loopback_is_free() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let served = (0..1000).filter(|_| l.allow(ip, t0)).count();
        assert_eq!(served, BURST as usize);
        let second = t0 + Duration::from_secs(1);
        let served = (0..1000).filter(|_| l.allow(ip, second)).count();
        assert_eq!(served, RATE as usize);
        assert!((0..1000).all(|_| l.allow(Ipv4Addr::LOCALHOST, t0)));
    }

    #[test]
    fn the_table_of_addresses_is_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for n in 0..MAX_IPS as u32 + 100 {
            l.allow(Ipv4Addr::from(0x0a00_0000 + n), t0);
        }
        assert_eq!(l.tracked(), MAX_IPS, "busy addresses keep their place");
        assert!(l.allow(Ipv4Addr::new(11, 0, 0, 1), t0 + Duration::from_secs(5)));
        assert_eq!(l.tracked(), 1, "idle ones were forgotten");
    }
}
