//! Helpers that know nothing of BitTorrent: hex, a tiny JSON writer, sizes
//! and durations, random numbers. Uses: std only.

pub mod hex;
pub mod json;
pub mod random;
#[cfg(test)]
pub(crate) mod testutil;
pub mod units;
