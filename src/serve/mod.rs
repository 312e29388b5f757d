//! `shoal serve`: many torrents in one process, driven by a watch folder
//! and an HTTP API.

pub mod api;
pub mod control;
pub mod manager;
pub mod metrics;
mod saved;
pub mod watch;

pub use api::{serve_api, ApiServer};
