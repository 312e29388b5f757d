//! A torrent run under `shoal serve`: what its manager keeps between runs
//! of the orchestrator (which runs only while the torrent has work — data
//! to fetch, or peers connected) and hands to each run.

use super::*;
use std::sync::atomic::AtomicBool;

/// What one run of a served torrent gets from its manager.
pub struct Hosted {
    /// The torrent's announcer, in the manager's pool: told `completed`
    /// and whether we want peers, never stopped by the run.
    pub announce: announce::Handle,
    /// What the announcer hears (shared by every run).
    pub reports: Receiver<Report>,
    /// Transfer totals the announcer reports (shared by every run).
    pub counters: Arc<Counters>,
    pub peer_id: [u8; 20],
    /// Connections for the torrent, registered by the manager (which hands
    /// the one that woke the torrent to it before the run starts).
    pub inbound: Receiver<Inbound>,
    /// The run ends once the torrent is complete and no peer has been
    /// connected for this long: it goes idle, and costs no thread.
    pub idle_after: Duration,
    /// Set by the manager to end the run (pause, remove, shutdown).
    pub stop: Arc<AtomicBool>,
}

/// What the swarm keeps of [`Hosted`] for the run's loop.
pub(super) struct Hosting {
    pub idle_after: Duration,
    pub stop: Arc<AtomicBool>,
}

impl Hosting {
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Whether the run should end now: the process or the manager said stop.
pub(super) fn stop_requested(hosting: Option<&Hosting>) -> bool {
    crate::disk::sys::stop_requested() || hosting.is_some_and(Hosting::stop_requested)
}
