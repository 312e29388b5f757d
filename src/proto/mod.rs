//! Pure protocol code (sans-IO): every decoder takes bytes and returns a
//! value (and the bytes it used), "need more", or a typed error, and never
//! panics on any input. No sockets, no files, no clocks.
//!
//! Owns: the formats. Does not own: when anything is sent or what a
//! message means for a download (that is [`crate::engine`]).
//! Uses: [`crate::util`].

pub mod allowed_fast;
pub mod bencode;
pub mod bitfield;
pub mod extension;
pub mod geometry;
pub mod http;
pub mod krpc;
pub mod lsd;
pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod pex;
pub mod tracker;
pub mod udp_tracker;
pub mod ut_metadata;
pub mod utp;
pub mod web_seed;
pub mod wire;
