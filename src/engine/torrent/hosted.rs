//! A torrent run under `shoal serve`: what its manager keeps between runs
//! of the orchestrator (which runs only while the torrent has work — data
//! to fetch, or peers connected) and hands to each run.

use super::*;
use std::sync::atomic::AtomicBool;

/// What one run of a served torrent gets from its manager.
pub struct Hosted {
    /// Starts (once; later calls return the same) the torrent's announcer
    /// in the manager's pool. The run calls it once its data is checked,
    /// as `get` starts its announce thread, so the first `started` says
    /// what is left; it tells the announcer `completed` and whether it
    /// wants peers, and never stops it.
    pub announce: Announcer,
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

/// See [`Hosted::announce`].
pub type Announcer = Arc<dyn Fn() -> announce::Handle + Send + Sync>;

/// What the swarm keeps of [`Hosted`] for the run's loop.
pub(super) struct Hosting {
    pub idle_after: Duration,
    pub stop: Arc<AtomicBool>,
    pub announcer: Announcer,
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
