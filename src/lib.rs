//! shoal: a synchronous BitTorrent client.
//!
//! Pure protocol code, with no socket or file in it: [`bencode`],
//! [`metainfo`], [`geometry`], [`wire`], [`bitfield`], [`tracker`].
//! Presentation: [`cli`], [`info`], [`json`], [`units`], [`hex`].
#![deny(unsafe_code)]

pub mod bencode;
pub mod bitfield;
pub mod cli;
pub mod geometry;
pub mod hex;
pub mod info;
pub mod json;
pub mod metainfo;
pub mod tracker;
pub mod units;
pub mod wire;
