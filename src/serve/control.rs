//! What the HTTP API (and `shoal ctl` through it) may ask of a running
//! `shoal serve`, and what it gets back: plain data, no I/O. The manager
//! implements [`Control`]; the API turns requests into these calls and
//! their results into JSON or the Prometheus text format.

use crate::proto::metainfo::InfoHash;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Waiting for its turn to check its data or download (a few run at
    /// once).
    Queued,
    /// Checking the data it has.
    Checking,
    /// A magnet link whose metadata is being fetched.
    Metadata,
    Downloading,
    /// Complete and serving, with peers connected (it has its threads).
    Seeding,
    /// Complete, announced, no peer connected: it costs no thread until a
    /// peer dials in.
    Idle,
    /// Stopped by the API (`pause`); kept, not announced.
    Paused,
    /// Its seeding limit (ratio or time) is reached; kept, not announced.
    Finished,
    /// Stopped by an error (missing data, a full disk, ...): why.
    Error(String),
}

impl State {
    /// The name used in JSON and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Checking => "checking",
            State::Metadata => "metadata",
            State::Downloading => "downloading",
            State::Seeding => "seeding",
            State::Idle => "idle",
            State::Paused => "paused",
            State::Finished => "finished",
            State::Error(_) => "error",
        }
    }
}

/// One torrent in a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub info_hash: InfoHash,
    /// The torrent's name (a magnet's `dn`, or its hash, until the
    /// metadata is in).
    pub name: String,
    pub state: State,
    /// Verified bytes of the wanted ones, and all wanted bytes (0 while
    /// the metadata is unknown).
    pub done: u64,
    pub size: u64,
    /// Bytes per second, payload.
    pub down_rate: f64,
    pub up_rate: f64,
    /// Payload bytes received from peers, and sent, since the process
    /// started.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Peers connected (handshake done).
    pub peers: usize,
    /// The directory holding the torrent's file or folder.
    pub data_dir: PathBuf,
}

impl Status {
    /// Done as a fraction of the size, 0 to 1.
    pub fn progress(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.done as f64 / self.size as f64
        }
    }

    /// Uploaded over the torrent's size.
    pub fn ratio(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.uploaded as f64 / self.size as f64
        }
    }
}

/// A file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Its path inside the torrent, `/`-separated.
    pub path: String,
    pub length: u64,
    /// Whether it is downloaded (a `--only`-like selection may skip it).
    pub wanted: bool,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// What its BEP 10 handshake says it is, if it said.
    pub client: Option<String>,
    pub down_rate: f64,
    pub up_rate: f64,
    /// It dialled us.
    pub inbound: bool,
}

/// One torrent, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub status: Status,
    /// Empty while a magnet's metadata is unknown.
    pub files: Vec<File>,
    pub peers: Vec<Peer>,
    pub pieces: u32,
    pub have: u32,
    pub trackers: Vec<String>,
}

/// Counters of one torrent for `/metrics`; all only grow (across
/// restarts of the process they start over, as Prometheus expects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub downloaded_bytes: u64,
    pub uploaded_bytes: u64,
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    pub bans: u64,
    pub tracker_errors: u64,
}

/// One torrent's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct TorrentMetrics {
    pub info_hash: InfoHash,
    pub name: String,
    pub state: State,
    pub peers: usize,
    pub counters: Counters,
}

/// Everything `/metrics` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub torrents: Vec<TorrentMetrics>,
    /// The session's totals: the sum of the torrents' counters, plus
    /// those of torrents removed since the process started.
    pub session: Counters,
    /// Peers connected over all torrents.
    pub peers: usize,
    /// Nodes in the DHT routing table, if the DHT runs.
    pub dht_nodes: Option<usize>,
}

/// What to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The bytes of a `.torrent` file.
    Torrent(Vec<u8>),
    /// A magnet URI.
    Magnet(String),
}

/// Why a call was refused. `Display` is the message the API returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No torrent with this info hash (404).
    Unknown(InfoHash),
    /// The torrent is already there (409).
    Exists(InfoHash),
    /// The body is not a torrent or magnet we can use (400): why.
    BadTorrent(String),
    /// Its data path is another torrent's (409).
    Clash { path: PathBuf, other: InfoHash },
    /// The data directory asked for is not inside `--data` (400).
    OutsideData(String),
    /// Saving, deleting or starting failed (500): why.
    Failed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown(h) => write!(f, "no torrent {}", h.hex()),
            Refusal::Exists(h) => write!(f, "torrent {} is already added", h.hex()),
            Refusal::BadTorrent(why) => write!(f, "not a usable torrent: {why}"),
            Refusal::Clash { path, other } => write!(
                f,
                "{} is the data of torrent {}",
                path.display(),
                other.hex()
            ),
            Refusal::OutsideData(dir) => {
                write!(f, "data directory {dir:?} is not inside the data root")
            }
            Refusal::Failed(why) => f.write_str(why),
        }
    }
}

/// The calls. Each returns at once (the work, such as checking data or
/// announcing `stopped`, goes on in the background) and is safe to make
/// from many API threads at the same time.
pub trait Control: Send + Sync {
    fn list(&self) -> Vec<Status>;
    fn detail(&self, hash: &InfoHash) -> Result<Detail, Refusal>;
    /// `dir`: a directory relative to `--data`, already checked to stay
    /// inside it (no `..`, not absolute); `None`: `--data` itself.
    fn add(&self, source: Source, dir: Option<PathBuf>) -> Result<InfoHash, Refusal>;
    fn remove(&self, hash: &InfoHash, delete_data: bool) -> Result<(), Refusal>;
    fn pause(&self, hash: &InfoHash) -> Result<(), Refusal>;
    fn resume(&self, hash: &InfoHash) -> Result<(), Refusal>;
    fn metrics(&self) -> Metrics;
}
