//! Process-wide rate limits (`--max-download-rate`, `--max-upload-rate`):
//! one token bucket per direction, shared by every peer thread of the
//! session. A reader charges the bytes it read and, in debt, sleeps before
//! reading again, so the kernel's buffers fill and TCP flow control slows
//! the sender (nothing is dropped); a writer charges the block bytes it is
//! about to send. The request pipeline follows the measured rate, so no
//! more is asked for than the limit lets in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Burst allowed, as time at the full rate: small, so that the rate holds
/// over short windows, and at least a read buffer's worth.
const BURST: Duration = Duration::from_millis(100);
const MIN_BURST: f64 = 64.0 * 1024.0;

/// A token bucket, pure: tokens accrue at `rate` per second up to the
/// burst; a charge may take them below zero, and the debt is the wait.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate as f64;
        let burst = (rate * BURST.as_secs_f64()).max(MIN_BURST);
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Charges `n` bytes at `now`; returns how long the caller must wait
    /// before going on.
    pub fn charge(&mut self, n: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now.max(self.at);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A [`Bucket`] shared by threads.
#[derive(Debug)]
pub struct Throttle(Mutex<Bucket>);

impl Throttle {
    pub fn new(rate: u64) -> Arc<Throttle> {
        Arc::new(Throttle(Mutex::new(Bucket::new(rate, Instant::now()))))
    }

    /// Charges `n` bytes and sleeps off any debt (outside the lock).
    pub fn take(&self, n: usize) {
        let wait = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .charge(n, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// The session's limits, by direction (`None`: unlimited).
#[derive(Debug, Clone, Default)]
pub struct Throttles {
    pub down: Option<Arc<Throttle>>,
    pub up: Option<Arc<Throttle>>,
}

impl Throttles {
    pub fn new(down: Option<u64>, up: Option<u64>) -> Throttles {
        Throttles {
            down: down.map(Throttle::new),
            up: up.map(Throttle::new),
        }
    }
}

/// Charges `n` bytes to `throttle`, if there is one.
pub fn charge(throttle: &Option<Arc<Throttle>>, n: usize) {
    if let Some(t) = throttle {
        t.take(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over ten simulated seconds of reads as fast as the waits allow, the
    /// bytes let through are the rate × time, to within the burst.
    #[test]
    fn the_rate_holds_over_time() {
        let start = Instant::now();
        let mut b = Bucket::new(8 << 20, start);
        let (mut now, mut bytes) = (start, 0u64);
        while now - start < Duration::from_secs(10) {
            now += b.charge(65_536, now);
            bytes += 65_536;
        }
        let expected = 10.0 * f64::from(8u32 << 20);
        let error = (bytes as f64 - expected).abs() / expected;
        assert!(
            error < 0.02,
            "{bytes} bytes in 10 s: {:.1} % off",
            error * 100.0
        );
    }

    #[test]
    fn a_burst_is_free_then_debt_is_waited_off() {
        let start = Instant::now();
        let mut b = Bucket::new(1 << 20, start);
        assert_eq!(b.charge(65_536, start), Duration::ZERO, "within the burst");
        let wait = b.charge(1 << 20, start);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Idle time refills up to the burst only.
        assert_eq!(b.charge(0, start + Duration::from_secs(60)), Duration::ZERO);
        assert!(b.charge(200_000, start + Duration::from_secs(60)) > Duration::ZERO);
    }
}
