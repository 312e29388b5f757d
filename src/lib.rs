//! shoal: a synchronous BitTorrent client.
//!
//! The tree is the architecture. Each layer uses only the layers listed
//! before it (check the `use crate::` lines of a module against this list):
//!
//! 1. [`util`]: small helpers with no knowledge of BitTorrent (hex, JSON
//!    writing, units, random numbers).
//! 2. [`proto`]: pure codecs (sans-IO): bencode, metainfo, piece geometry,
//!    bitfields, the peer wire, BEP 10 extension messages, tracker and UDP
//!    tracker datagrams. No sockets, no files.
//! 3. [`disk`]: files and the libc calls std lacks: storage (memory maps,
//!    `pread`), hashing, resume state. The only place with `unsafe`.
//! 4. [`net`]: blocking I/O with peers and trackers: peer reader/writer
//!    threads, the listener, announce threads, the UDP tracker client.
//! 5. [`engine`]: the decisions: the session, each torrent's orchestrator,
//!    the picker, choker, request pipelines, address book, rate meters and
//!    the typed notes the engine reports.
//! 6. [`create`], [`tracker_server`] and [`serve`]: the tools beside the
//!    engine (`shoal create`, `shoal tracker`, `shoal serve`).
//! 7. [`cli`]: argument parsing, the commands, and everything printed.
#![deny(unsafe_code)]
// `unsafe` is allowed only in `disk::storage` (memory maps) and `disk::sys`
// (libc calls), each block with a SAFETY comment.

pub mod util;

pub mod proto;

pub mod disk;

pub mod net;

pub mod engine;

pub mod create;
pub mod serve;
pub mod tracker_server;

pub mod cli;
