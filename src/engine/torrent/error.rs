//! Why a torrent could not start, or stopped before its end.

use crate::disk::storage::{Change, StorageError};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a torrent could not start, or stopped before its end.
#[derive(Debug)]
pub enum TorrentError {
    /// Opening, creating, writing or reading the data failed.
    Storage(StorageError),
    /// `seed` of data with pieces missing or damaged.
    Incomplete {
        path: PathBuf,
        missing: u32,
        pieces: u32,
    },
    /// A thread the torrent needs could not be started.
    Spawn {
        what: &'static str,
        cause: io::Error,
    },
    /// A data file was changed by someone else while we ran, so we can no
    /// longer vouch for its pieces (`seed` serves only verified bytes).
    DataChanged { path: PathBuf, change: Change },
    /// The hasher thread is gone: no piece could be verified any more.
    HasherStopped,
    /// SIGINT or SIGTERM, or (under `shoal serve`) its manager said stop.
    Interrupted,
    /// Under `shoal serve`: the torrent is complete and no peer came for
    /// a while, so the run ends and the torrent waits without a thread.
    Idle,
    /// `--timeout` passed before a magnet link's metadata came.
    NoMetadata { after: Duration, connected: usize },
    /// A magnet link's metadata matched its info hash but is not a valid
    /// torrent.
    BadMetadata(crate::proto::metainfo::Error),
    /// `--only`/`--files` do not fit the magnet link's torrent.
    Selection(crate::engine::selection::SelectError),
    /// `--save-torrent` could not write the file.
    SaveTorrent { path: PathBuf, cause: io::Error },
    /// `--timeout` passed before the download was complete.
    TimedOut {
        after: Duration,
        have: u32,
        pieces: u32,
        connected: bool,
    },
}

impl fmt::Display for TorrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TorrentError::Storage(e) => e.fmt(f),
            TorrentError::Incomplete {
                path,
                missing,
                pieces,
            } => write!(
                f,
                "{}: {missing} of {pieces} pieces are missing or damaged; 'shoal get' can complete them",
                path.display()
            ),
            TorrentError::Spawn { what, cause } => write!(f, "cannot start the {what} thread: {cause}"),
            TorrentError::DataChanged { path, change } => write!(
                f,
                "{}: {} while shoal ran; its pieces are no longer vouched for (start again to check them)",
                path.display(),
                match change {
                    Change::Replaced => "replaced or removed",
                    Change::Modified => "truncated or rewritten",
                }
            ),
            TorrentError::HasherStopped => f.write_str("the hasher thread stopped"),
            TorrentError::Interrupted => f.write_str("interrupted"),
            TorrentError::Idle => f.write_str("idle"),
            TorrentError::NoMetadata { after, connected } => write!(
                f,
                "timed out after {} without the torrent's metadata ({connected} peers connected)",
                crate::util::units::format_duration(*after)
            ),
            TorrentError::BadMetadata(e) => write!(f, "the magnet link's metadata: {e}"),
            TorrentError::Selection(e) => e.fmt(f),
            TorrentError::SaveTorrent { path, cause } => write!(
                f,
                "{}: cannot save the torrent: {}",
                path.display(),
                crate::disk::sys::io_reason(cause)
            ),
            TorrentError::TimedOut {
                after,
                have,
                pieces,
                connected,
            } => write!(
                f,
                "timed out after {} with {have} of {pieces} pieces ({})",
                crate::util::units::format_duration(*after),
                if *connected {
                    "peers connected"
                } else {
                    "no peer reachable"
                }
            ),
        }
    }
}

impl std::error::Error for TorrentError {}

impl From<StorageError> for TorrentError {
    fn from(e: StorageError) -> TorrentError {
        TorrentError::Storage(e)
    }
}
