//! What the engine reports while a torrent runs, as typed values: the CLI
//! renders them as a progress line, plain text or JSON
//! ([`crate::cli::progress`]); the engine never formats output.
//!
//! Owns: the vocabulary of reports. Does not own: pacing or rendering.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The figures of one progress report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub have: u32,
    pub pieces: u32,
    /// Verified bytes.
    pub bytes: u64,
    pub total: u64,
    /// Download rate, bytes per second.
    pub down_rate: f64,
    pub up_rate: f64,
    pub uploaded: u64,
    /// Peers connected (handshake done).
    pub peers: usize,
    /// Of those, how many came from each source, in the order of
    /// [`crate::engine::address_book::Source::ALL`].
    pub sources: [usize; 6],
    /// Addresses we may dial, plus peers that dialled us.
    pub known: usize,
}

/// A connected peer, as [`Note::Peers`] shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    pub addr: SocketAddr,
    /// What its BEP 10 handshake says it is.
    pub client: Option<String>,
    pub down_rate: f64,
    pub up_rate: f64,
    /// It dialled us.
    pub inbound: bool,
}

/// When seeding stops, as the user asked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedUntil {
    pub ratio: Option<f64>,
    pub time: Option<Duration>,
}

/// One report.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Existing data was checked: `have` of `pieces` are good.
    Checked {
        have: u32,
        pieces: u32,
    },
    /// Accepting peers on this address.
    Listening(SocketAddr),
    /// A magnet link's metadata (`bytes` of info dictionary) is in and
    /// verified; `peers` were connected.
    Metadata {
        bytes: usize,
        peers: usize,
    },
    /// A piece failed its hash check; these peers sent its blocks.
    PieceFailed {
        piece: u32,
        peers: Vec<SocketAddr>,
    },
    /// A peer (an address, or a whole IP: `who`) is banned after `strikes`
    /// failed pieces.
    PeerBanned {
        who: String,
        strikes: u32,
    },
    TrackerWarning {
        tracker: String,
        message: String,
    },
    TrackerError {
        tracker: String,
        message: String,
    },
    /// A data file was changed by someone else while we ran: its verified
    /// pieces were given up (to be fetched again), and resume state will
    /// not vouch for it.
    FileChanged {
        path: PathBuf,
    },
    /// The resume state could not be written (a full disk, say): the next
    /// start checks the data instead.
    ResumeNotSaved {
        path: PathBuf,
        reason: String,
    },
    /// The download is complete and seeding goes on.
    Seeding(SeedUntil),
    /// The connected peers, each tick of a run under `shoal serve` (which
    /// shows them through its API).
    Peers(Vec<PeerView>),
    /// Periodic figures (the engine sends one per tick; the renderer
    /// decides how often to show them). `last` is the final report.
    Progress {
        snapshot: Snapshot,
        last: bool,
    },
}

/// Where the engine sends its notes.
pub type Notes<'a> = &'a mut dyn FnMut(Note);
