//! `shoal serve`: many torrents in one process, driven by a watch folder
//! and an HTTP API.

pub mod control;
pub mod manager;
mod saved;
pub mod watch;
