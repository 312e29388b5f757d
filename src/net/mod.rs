//! Blocking network I/O on OS threads: a peer's reader and writer (over
//! TCP or uTP), the listener, the peer port's UDP thread (DHT node, uTP
//! connections), the announce thread, the UDP tracker client and local
//! service discovery. Workers decode with [`crate::proto`] and report
//! typed events and errors; they never decide.
//!
//! Owns: sockets and their deadlines. Does not own: any decision about a
//! peer or a piece (that is [`crate::engine`]).
//! Uses: [`crate::disk`] (reading blocks to upload), [`crate::proto`],
//! [`crate::util`].

pub mod announce;
pub mod dht;
pub mod http_server;
pub mod listener;
pub mod lsd;
pub mod peer;
pub mod stream;
pub mod throttle;
pub mod tracker_error;
pub mod udp_port;
pub mod udp_tracker;
pub mod utp;
pub mod utp_refuser;
pub mod web_seed;
