//! shoal: a synchronous BitTorrent client.
//!
//! Pure protocol code, with no socket or file in it: [`bencode`],
//! [`metainfo`], [`geometry`], [`wire`], [`bitfield`], [`tracker`].
//! Presentation: [`cli`], [`info`], [`json`], [`units`], [`hex`].
#![deny(unsafe_code)]
// `unsafe` is allowed only in `storage` (memory maps) and `sys` (libc calls),
// each block with a SAFETY comment.

pub mod announce;
pub mod bencode;
pub mod bitfield;
pub mod choker;
pub mod cli;
pub mod create;
pub mod extension;
pub mod geometry;
pub mod hex;
pub mod info;
pub mod json;
pub mod listener;
pub mod metainfo;
pub mod orchestrator;
pub mod peer;
pub mod picker;
pub mod progress;
pub mod random;
pub mod resume;
pub mod storage;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod tracker;
pub mod tracker_server;
pub mod udp_tracker;
pub mod units;
pub mod wire;
