//! Helpers that know nothing of BitTorrent: shared byte buffers, hex, a
//! tiny JSON writer, sizes and durations, random numbers. Uses: std, and
//! crossbeam-channel for the buffer pool.

pub mod bytes;
pub mod hex;
pub mod json;
pub mod random;
#[cfg(test)]
pub(crate) mod testutil;
pub mod units;
