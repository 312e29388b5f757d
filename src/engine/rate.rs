//! A rate meter: bytes counted as they come, turned into a rate on each
//! tick by an exponential average over about a second. One implementation
//! for the torrent's and every peer's download and upload rates.

use std::time::Duration;

/// How long the average looks back, roughly.
const WINDOW: f64 = 1.0;

#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    /// Bytes since the last tick.
    window: u64,
    /// Bytes per second, averaged.
    rate: f64,
    /// Bytes per second over the last tick alone.
    recent: f64,
}

impl RateMeter {
    pub fn add(&mut self, bytes: u64) {
        self.window += bytes;
    }

    /// Closes the window that lasted `dt`.
    pub fn tick(&mut self, dt: Duration) {
        let dt = dt.as_secs_f64().max(1e-3);
        self.recent = self.window as f64 / dt;
        let alpha = (dt / WINDOW).min(1.0);
        self.rate += alpha * (self.recent - self.rate);
        self.window = 0;
    }

    /// The averaged rate, bytes per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The rate over the last tick alone: it follows a rise at once.
    pub fn recent(&self) -> f64 {
        self.recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_converges_and_a_stop_decays() {
        let mut m = RateMeter::default();
        let tick = Duration::from_millis(250);
        for _ in 0..20 {
            m.add(250_000);
            m.tick(tick);
        }
        assert!((m.rate() - 1_000_000.0).abs() < 10_000.0, "{}", m.rate());
        assert_eq!(m.recent(), 1_000_000.0);
        for _ in 0..20 {
            m.tick(tick);
        }
        assert!(m.rate() < 10_000.0, "{}", m.rate());
        assert_eq!(m.recent(), 0.0);
    }

    #[test]
    fn a_long_tick_replaces_the_average() {
        let mut m = RateMeter::default();
        m.add(5_000);
        m.tick(Duration::from_secs(5));
        assert_eq!(m.rate(), 1_000.0);
    }
}
