//! The decisions. A session owns what torrents share (the listener, and
//! later global limits and the DHT node); a torrent's orchestrator thread
//! owns its state and decides everything about it; the units below it are
//! pure and unit-tested.
//!
//! Owns: piece states, who is connected, who gets which request, verdicts
//! on hashes, choking, bans. Does not own: sockets (peer workers in
//! [`crate::net`]), files ([`crate::disk`]) or output (it reports typed
//! [`notes`] that the CLI renders).
//! Uses: [`crate::net`], [`crate::disk`], [`crate::proto`], [`crate::util`].

pub mod address_book;
pub mod choker;
pub mod metadata;
pub mod notes;
pub mod picker;
pub mod pipeline;
pub mod rate;
pub mod selection;
pub mod session;
pub mod superseed;
pub mod torrent;
