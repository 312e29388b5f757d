//! How a torrent is run: what the command line (or, later, the API) sets.

use crate::net::peer::Encryption;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Connections with one IP at most, by default: more than any honest
/// host needs (one client, or a few behind one NAT), and few enough that
/// one host cannot take a seeder's 50 slots.
pub const DEFAULT_MAX_PEERS_PER_IP: usize = 8;

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory that receives the torrent's file or folder.
    pub out_dir: PathBuf,
    /// Peers to connect to without a tracker.
    pub peers: Vec<SocketAddr>,
    /// BEP 19 web seeds besides the torrent's `url-list` (`--web-seed`).
    pub web_seeds: Vec<String>,
    /// Connected (or connecting) peers at most.
    pub max_peers: usize,
    /// Connections with one IP address at most, both ways: a flood from
    /// one host cannot take every slot.
    pub max_peers_per_ip: usize,
    /// Dial peers from this address (`--bind` with a specific address).
    pub source: Option<IpAddr>,
    /// The port we announce.
    pub port: u16,
    /// Give up (exit 1) if not complete by then.
    pub timeout: Option<Duration>,
    /// A peer with requests outstanding that sends no block for this long
    /// is dropped (and retried later).
    pub peer_timeout: Duration,
    /// Tracker retry and interval floors (tests shorten them).
    pub announce_retry: Duration,
    pub announce_min_interval: Duration,
    /// Regular upload slots (see [`crate::engine::choker`]).
    pub upload_slots: usize,
    /// Initial seeding (`engine::superseed`) when the torrent is complete
    /// at start: every piece handed out once before any goes twice.
    pub super_seed: bool,
    /// When to stop once complete.
    pub seed: SeedLimit,
    /// Rate limits in bytes per second, for the session (see
    /// `Session::limit_rates`).
    pub max_download_rate: Option<u64>,
    pub max_upload_rate: Option<u64>,
    /// The files to download (`--only`, `--files`), as given, and by
    /// index into the torrent's list once resolved (`None`: all).
    pub select: crate::engine::selection::Selector,
    pub selection: Option<Vec<bool>>,
    /// Where to save the torrent of a magnet link once its metadata is in.
    pub save_torrent: Option<PathBuf>,
    /// Serve data that is already complete (`shoal seed`): open it
    /// read-only, verify it, and refuse to start if pieces are missing.
    pub seed_only: bool,
    /// Whether we dial peers with MSE (the session's policy decides for
    /// inbound connections).
    pub encryption: Encryption,
}

/// How long to keep seeding after the download is complete. With neither
/// limit set: `forever` decides.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SeedLimit {
    /// Stop once uploaded ≥ ratio × torrent size.
    pub ratio: Option<f64>,
    /// Stop this long after completion.
    pub time: Option<Duration>,
    /// Seed until interrupted.
    pub forever: bool,
}

impl SeedLimit {
    pub(super) fn wants_seeding(&self) -> bool {
        self.forever || self.ratio.is_some() || self.time.is_some()
    }
}

impl Options {
    pub fn new(out_dir: PathBuf) -> Options {
        Options {
            out_dir,
            peers: Vec::new(),
            web_seeds: Vec::new(),
            max_peers: 50,
            max_peers_per_ip: DEFAULT_MAX_PEERS_PER_IP,
            source: None,
            port: 6881, // until the session says where it listens
            timeout: None,
            peer_timeout: Duration::from_secs(20),
            announce_retry: Duration::from_secs(15),
            announce_min_interval: Duration::from_secs(30),
            upload_slots: crate::engine::choker::DEFAULT_SLOTS,
            super_seed: false,
            seed: SeedLimit::default(),
            seed_only: false,
            save_torrent: None,
            select: Default::default(),
            selection: None,
            max_download_rate: None,
            max_upload_rate: None,
            encryption: Encryption::default(),
        }
    }
}
