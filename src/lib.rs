//! shoal: a synchronous BitTorrent client.
//!
//! Pure protocol code (no sockets, no files): [`bencode`], [`metainfo`],
//! [`geometry`], [`wire`], [`bitfield`], [`tracker`].
#![deny(unsafe_code)]

pub mod bencode;
pub mod bitfield;
pub mod cli;
pub mod wire;
