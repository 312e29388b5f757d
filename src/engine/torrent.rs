//! The orchestrator: one thread that owns a torrent's state and makes every
//! decision.
//!
//! Owns: the peer table and known addresses (connect, back off, ban), the
//! [`Picker`], the [`Storage`] (writes, SHA-1 verification, release), the
//! request pipeline of each peer (depth from measured rate and round trip),
//! interest, endgame cancels, stall detection, progress and transfer
//! counters, and shutdown. Does not own: sockets (peer workers), tracker
//! HTTP (the announce thread) or protocol encoding.
//!
//! It never blocks on a peer: commands go through bounded per-peer queues
//! with `try_send`, and a peer whose queue is full is dropped.

mod connections;
mod dht;
mod download;
mod error;
mod extensions;
mod files;
mod hosted;
mod magnet;
mod options;
mod swarm;
mod upload;
mod web_seeds;

#[cfg(test)]
mod tests;

pub use error::TorrentError;
use hosted::Hosting;
pub use hosted::{Announcer, Hosted};
pub use magnet::run_magnet;
pub use options::{Options, SeedLimit};
use swarm::Swarm;
use web_seeds::WebSeeds;

use crate::disk::hasher::Hasher;
use crate::disk::storage::{Storage, StorageError};
use crate::engine::address_book::{AddressBook, Ban, Source};
use crate::engine::choker::{self, Candidate, Choker};
use crate::engine::notes::{Note, Notes, PeerView, SeedUntil, Snapshot};
use crate::engine::picker::{Picker, Received};
use crate::engine::pipeline::{Arrival, Pipeline};
use crate::engine::rate::RateMeter;
use crate::engine::session::Session;
use crate::engine::superseed::{self, InitialSeed};
use crate::net::announce::{self, Counters, Report};
use crate::net::peer::Stream;
use crate::net::peer::{self, CloseReason, Command, Event, Inbound, PeerKey, Settings, Unsized};
use crate::proto::allowed_fast;
use crate::proto::bitfield::Bitfield;
use crate::proto::extension;
use crate::proto::extension::PeerInfo;
use crate::proto::geometry::{Block, PieceIndex, BLOCK_LEN};
use crate::proto::metainfo::{InfoHash, Metainfo};
use crossbeam_channel::{bounded, never, select, unbounded, Receiver, Sender, TrySendError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a run ended.
#[derive(Debug, Default)]
pub struct Summary {
    /// All pieces verified on disk.
    pub complete: bool,
    /// Payload bytes received from peers (including discarded ones).
    pub downloaded: u64,
    /// Piece bytes received from web seeds (including discarded ones).
    pub web_seed_bytes: u64,
    pub uploaded: u64,
    pub elapsed: Duration,
    /// Set when the run stopped before its end: why.
    pub stopped: Option<TorrentError>,
    /// A hosted run ended because the torrent is complete and idle (see
    /// [`Hosted::idle_after`]).
    pub idle: bool,
}

/// Connection attempts in flight at most: more would only queue in the
/// kernel and delay the attempts that matter.
const MAX_CONNECTING: usize = 8;
/// Per-peer command queue. Larger than the deepest pipeline plus a burst
/// of `have`s; a peer that lets it fill is not reading and is dropped.
const COMMAND_QUEUE: usize = 4096;
/// Peer events in flight at most (each may carry up to 64 KiB of blocks):
/// bounds the memory between the sockets and the disk to 4 MiB; readers
/// wait when it is full, and TCP flow control slows the senders.
const EVENT_QUEUE: usize = 64;
/// Pieces in doubt (asked for or delivered, no verdict yet) from a peer on
/// probation — one that has not yet sent a piece that passed the hash
/// check, or that has a strike. A liar can make us fetch only this many
/// pieces (plus one started) before its strikes are counted, however deep
/// its pipeline and however far the hasher lags.
const PROBATION_PIECES: usize = 2;
/// Departed peers whose address is remembered for blame (pieces in flight
/// are few; a piece names at most a few senders).
const DEPARTED: usize = 256;
/// A peer connected this long that neither side is interested in may be
/// dropped to make room for a newcomer when all slots are taken (a flood
/// of idle connections must not lock out real peers).
const EVICT_GRACE: Duration = Duration::from_secs(5);
/// BEP 6 allowed-fast pieces we take from one peer at most (BEP 6 sets
/// are about ten).
const MAX_ALLOWED_FAST: usize = 32;
/// How long a piece a peer rejected is not asked of it again.
const REFUSAL_MEMORY: Duration = Duration::from_secs(2);
/// The orchestrator's clock: rates, progress, timeouts.
const TICK: Duration = Duration::from_millis(250);
/// Verified pieces are announced together at most this often (and at
/// once when the download completes). A `have` per piece per peer was a
/// tiny TCP segment and a writer wake-up each: `make bench-fleet` with 16
/// leechers, 16 KiB pieces, 10 Mbit/s links took 58 % of the machine's
/// CPU, 41 % with this (and no later: 100 ms took 34 %, but pieces
/// spread more slowly and the swarm finished later).
const ANNOUNCE_EVERY: Duration = Duration::from_millis(50);
/// Requests that cross our `choke` on the wire are ignored for this long;
/// after it, a request from a choked peer is a protocol error.
const CHOKE_GRACE: Duration = Duration::from_secs(10);

struct Peer {
    addr: SocketAddr,
    commands: Sender<Command>,
    /// Set once the handshake is done.
    socket: Option<Stream>,
    /// The peer id it sent in its handshake.
    remote_id: Option<[u8; 20]>,
    pieces: Bitfield,
    am_interested: bool,
    peer_choking: bool,
    /// Our requests to it.
    pipeline: Pipeline,
    /// Block data received.
    down: RateMeter,
    last_data: Instant,
    downloaded: u64,
    /// Pieces from this connection that failed the hash check.
    strikes: u32,
    /// A piece it sent passed the hash check. Until then, or once it has
    /// a strike, the peer is on probation (see [`PROBATION_PIECES`]).
    proven: bool,
    /// Pieces it was asked for, or sent blocks of, that have no verdict
    /// yet.
    in_doubt: HashSet<PieceIndex>,
    /// Our side of the upload: whether we choke it, and since when (None:
    /// never unchoked, so a request from it is a protocol error).
    am_choking: bool,
    choked_at: Option<Instant>,
    peer_interested: bool,
    connected_at: Instant,
    up: RateMeter,
    /// Both sides speak BEP 6.
    fast: bool,
    /// BEP 6: pieces it lets us request while it chokes us.
    allowed_fast: Vec<u32>,
    /// BEP 6: pieces it rejected a request for, and when: not asked of it
    /// again for [`REFUSAL_MEMORY`] or until it unchokes us anew (else
    /// request and reject would ping-pong at network speed).
    refused: HashMap<u32, Instant>,
    /// BEP 6: pieces we let it request while we choke it.
    offered_fast: Vec<u32>,
    /// Its BEP 10 handshake (extension ids, listen port).
    ext: PeerInfo,
    /// We sent it our extension handshake for this torrent (with its
    /// metadata size).
    ext_sent: bool,
    /// It dialled us (its address's port is not where it listens).
    inbound: bool,
    /// Metadata bytes we sent it (BEP 9), bounded.
    metadata_sent: usize,
    /// BEP 11: the peers we last told it about, and when.
    pex_told: HashSet<SocketAddr>,
    pex_at: Option<Instant>,
}

impl Peer {
    fn new(addr: SocketAddr, commands: Sender<Command>, num_pieces: u32) -> Peer {
        Peer {
            addr,
            commands,
            socket: None,
            remote_id: None,
            pieces: Bitfield::new(num_pieces),
            am_interested: false,
            peer_choking: true,
            pipeline: Pipeline::default(),
            down: RateMeter::default(),
            last_data: Instant::now(),
            downloaded: 0,
            strikes: 0,
            proven: false,
            in_doubt: HashSet::new(),
            am_choking: true,
            choked_at: None,
            peer_interested: false,
            connected_at: Instant::now(),
            up: RateMeter::default(),
            fast: false,
            allowed_fast: Vec::new(),
            refused: HashMap::new(),
            offered_fast: Vec::new(),
            ext: PeerInfo::default(),
            ext_sent: false,
            inbound: false,
            metadata_sent: 0,
            pex_told: HashSet::new(),
            pex_at: None,
        }
    }

    /// Where others can dial it: its address, or for one that dialled us,
    /// its IP and the port it says it listens on.
    fn dialable(&self) -> Option<SocketAddr> {
        match (self.inbound, self.ext.listen_port) {
            (false, _) => Some(self.addr),
            (true, Some(port)) => Some(SocketAddr::new(self.addr.ip(), port)),
            (true, None) => None,
        }
    }

    /// See [`PROBATION_PIECES`].
    fn on_probation(&self) -> bool {
        !self.proven || self.strikes > 0
    }

    fn update_depth(&mut self, sources: usize) {
        self.pipeline
            .update_depth(self.down.rate(), self.down.recent(), sources);
    }

    /// Whether it sends us blocks we want now: it unchokes us, we are
    /// interested, and blocks came of late. Peers that unchoke us and
    /// send nothing do not count, so they cannot thin the pipelines of
    /// those that send.
    fn is_source(&self) -> bool {
        self.socket.is_some() && self.am_interested && !self.peer_choking && self.down.rate() > 0.0
    }
}

/// Runs a download until complete (or timed out, or interrupted),
/// reporting to `notes` as it goes.
pub fn run(
    session: &Session,
    meta: Arc<Metainfo>,
    opts: Options,
    hosted: Option<Hosted>,
    notes: Notes<'_>,
) -> Result<Summary, TorrentError> {
    let swarm = Swarm::new(session, meta.info_hash, &opts, hosted);
    if let Some(addr) = swarm.listen_addr {
        notes(Note::Listening(addr));
    }
    let none = (HashMap::new(), HashMap::new());
    download(session, meta, opts, swarm, none, notes, Instant::now())
}

/// Peers handed over by a magnet link's metadata fetch, with what each
/// said it has.
type Adopted = (HashMap<PeerKey, Peer>, HashMap<PeerKey, magnet::Said>);

/// The download itself, on `swarm` with the `adopted` peers.
fn download(
    session: &Session,
    meta: Arc<Metainfo>,
    opts: Options,
    swarm: Swarm,
    adopted: Adopted,
    notes: Notes<'_>,
    start: Instant,
) -> Result<Summary, TorrentError> {
    let mut opts = opts;
    if opts.selection.is_none() && !opts.select.is_empty() {
        // A magnet's selection is known only now.
        opts.selection = Some(
            opts.select
                .resolve(&meta)
                .map_err(TorrentError::Selection)?,
        );
    }
    let stop = || hosted::stop_requested(swarm.hosting.as_ref());
    let (storage, have) = match open_storage(&meta, &opts, &stop) {
        Ok(opened) => opened,
        // Stopped while checking: a run that ends as asked, like one
        // stopped later (a magnet keeps the metadata it fetched).
        Err(TorrentError::Interrupted) => {
            return Ok(Summary {
                elapsed: start.elapsed(),
                stopped: Some(TorrentError::Interrupted),
                ..Summary::default()
            })
        }
        Err(e) => return Err(e),
    };
    notes(Note::Checked {
        have: have.count(),
        pieces: have.len(),
    });
    if opts.seed_only {
        let wanted = match &opts.selection {
            Some(chosen) => wanted_pieces(&meta.geometry, chosen),
            None => Bitfield::full(have.len()),
        };
        let missing = wanted.iter_set().filter(|&p| !have.get(p)).count() as u32;
        if missing > 0 {
            return Err(TorrentError::Incomplete {
                path: opts.out_dir.join(crate::disk::storage::os_path(&meta.name)),
                missing,
                pieces: wanted.count(),
            });
        }
    }
    let hasher = Hasher::spawn(storage.reader()).map_err(|cause| TorrentError::Spawn {
        what: "hasher",
        cause,
    })?;
    let mut o = Orchestrator::new(session, meta, opts, storage, have, hasher, swarm, notes);
    o.adopt(adopted);
    let result = o.run();
    o.shutdown();
    let idle = matches!(result, Err(TorrentError::Idle));
    let summary = Summary {
        idle,
        complete: o.picker.is_complete(),
        downloaded: o.swarm.counters.downloaded.load(Ordering::Relaxed),
        web_seed_bytes: o.web.bytes,
        uploaded: o.swarm.counters.uploaded.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        stopped: result.err().filter(|_| !idle),
    };
    Ok(summary)
}

/// The pieces holding a byte of a selected file.
pub fn wanted_pieces(geometry: &crate::proto::geometry::Geometry, selected: &[bool]) -> Bitfield {
    let mut wanted = Bitfield::new(geometry.num_pieces());
    for (file, span) in geometry.files().iter().enumerate() {
        if !span.padding && selected.get(file).copied().unwrap_or(true) {
            for p in geometry.pieces_of_file(file) {
                wanted.set(p);
            }
        }
    }
    wanted
}

/// Opens (or creates) the data and finds which pieces are already good;
/// [`TorrentError::Interrupted`] if `stop()` says so during the check.
fn open_storage(
    meta: &Arc<Metainfo>,
    opts: &Options,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(Storage, Bitfield), TorrentError> {
    let root = &opts.out_dir;
    // Resume state that still matches the files spares the rehash.
    let selection = opts.selection.as_deref();
    let resumed = crate::disk::resume::load(meta, root, selection);
    let existed = opts.seed_only || existing_files(meta, root, selection);
    let storage = if opts.seed_only {
        Storage::open_existing(meta.clone(), root, selection)
    } else {
        Storage::create(meta.clone(), root, selection)
    }?;
    let have = match resumed {
        Some(have) => have,
        None if existed => {
            let threads = crate::disk::storage::available_parallelism();
            crate::disk::storage::verify(&storage.reader(), threads, &|_| {}, stop)
                .ok_or(TorrentError::Interrupted)?
        }
        None => Bitfield::new(meta.geometry.num_pieces()),
    };
    Ok((storage, have))
}

/// Whether any of the torrent's files is already on disk with data (if
/// none is, there is nothing to check).
fn existing_files(meta: &Metainfo, root: &std::path::Path, selection: Option<&[bool]>) -> bool {
    crate::disk::storage::placed_paths(meta, root, selection)
        .unwrap_or_default()
        .iter()
        .flatten()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
}

struct Orchestrator<'p> {
    meta: Arc<Metainfo>,
    opts: Options,
    storage: Storage,
    picker: Picker,
    peers: HashMap<PeerKey, Peer>,
    /// Settings, addresses, channels and the announce thread.
    swarm: Swarm,
    web: WebSeeds,
    /// The addresses of the last peers gone, so that a piece they sent can
    /// still be blamed on them when its verdict comes after they left.
    departed: VecDeque<(PeerKey, SocketAddr)>,
    /// Peers local service discovery heard (`never()` when it is off).
    local: Receiver<SocketAddr>,
    session: &'p Session,
    /// Pieces to hash; its verdicts come on `hashed` (replaced by
    /// `never()` if the thread is gone).
    hasher: Hasher,
    hashed: Receiver<crate::disk::hasher::Hashed>,
    /// Blocks go to the hasher as they are written, unless the torrent
    /// has padding: a peer may send anything there, and the read-back
    /// gives the zeros the piece hash covers.
    feed_hasher: bool,
    /// Peers from the DHT (see `dht.rs`).
    dht: dht::Lookups,
    /// What the announce thread was last told (see `WantPeers`).
    wants_peers: bool,
    choker: Choker,
    /// Initial seeding (`--super-seed`, complete at start): for the life
    /// of the run.
    initial: Option<InitialSeed>,
    /// Initial seeding: pieces announced-but-not-fetched per peer, from an
    /// equal share of our upload (every tick).
    super_window: usize,
    last_choke: Instant,
    last_catch_up: Instant,
    /// Pieces verified and not yet announced ([`ANNOUNCE_EVERY`]).
    unannounced: Vec<u32>,
    last_announce: Instant,
    /// When every piece was verified (None while downloading).
    completed_at: Option<Instant>,
    complete_at_start: bool,
    up: RateMeter,
    notes: Notes<'p>,
    started: Instant,
    /// Verified bytes of wanted pieces, and all wanted bytes, for progress
    /// (which counts the selection, not the torrent).
    verified_bytes: u64,
    wanted_bytes: u64,
    down: RateMeter,
    last_tick: Instant,
    /// The file watch: when it last ran, and the next file to check.
    last_watch: Instant,
    watch_next: usize,
    /// Pieces we had verified (and announced) but gave up because their
    /// file changed: a peer's request for one is not its fault.
    lost: Bitfield,
    /// Pieces at the hasher, and those of them whose file changed since
    /// they were queued (their verdict is about bytes that may be gone).
    hashing: HashSet<PieceIndex>,
    stale: HashSet<PieceIndex>,
    rtt_window_start: Instant,
    /// When a peer was last connected, or data last missing (see
    /// [`Hosted::idle_after`]).
    last_busy: Instant,
}

impl<'p> Orchestrator<'p> {
    /// The download's orchestrator, on `swarm` (new, or handed over by
    /// the metadata fetch of a magnet link with its peers still connected).
    #[allow(clippy::too_many_arguments)]
    fn new(
        session: &'p Session,
        meta: Arc<Metainfo>,
        mut opts: Options,
        storage: Storage,
        have: Bitfield,
        hasher: Hasher,
        mut swarm: Swarm,
        notes: Notes<'p>,
    ) -> Orchestrator<'p> {
        let geometry = meta.geometry.clone();
        let mut picker = Picker::new(geometry.clone(), have, crate::util::random::seed());
        if let Some(selected) = &opts.selection {
            picker.want_only(wanted_pieces(&geometry, selected));
        }
        let bytes_of = |pieces: &mut dyn Iterator<Item = u32>| -> u64 {
            pieces
                .filter_map(|p| geometry.piece(p))
                .map(|p| u64::from(geometry.piece_size(p)))
                .sum()
        };
        let wanted = picker.wanted_pieces();
        let verified_bytes = bytes_of(&mut wanted.iter_set().filter(|&p| picker.have().get(p)));
        let wanted_bytes = bytes_of(&mut wanted.iter_set());
        swarm.counters.left.store(picker.left(), Ordering::Relaxed);
        let _ = swarm.settings.num_pieces.set(geometry.num_pieces());
        let _ = swarm.settings.storage.set(storage.reader());
        let complete_at_start = picker.is_complete();
        let hashed = hasher.results().clone();
        let now = Instant::now();
        opts.port = swarm.port(&opts);
        let dht = dht::Lookups::new(session, meta.private);
        swarm.settings.dht = dht.is_on();
        // Web seeds wait for peers only if some may come.
        let web = WebSeeds::new(!opts.peers.is_empty() || !meta.trackers.is_empty());
        let mut o = Orchestrator {
            meta,
            storage,
            picker,
            peers: HashMap::new(),
            swarm,
            web,
            departed: VecDeque::with_capacity(DEPARTED),
            local: never(),
            session,
            hasher,
            feed_hasher: !geometry.has_padding(),
            hashed,
            dht,
            wants_peers: false,
            choker: Choker::new(opts.upload_slots, crate::util::random::seed()),
            super_window: superseed::window(u64::from(geometry.piece_len()), 0.0),
            initial: (complete_at_start && opts.super_seed)
                .then(|| InitialSeed::new(geometry.num_pieces(), crate::util::random::seed())),
            last_choke: now,
            last_catch_up: now,
            unannounced: Vec::new(),
            last_announce: now,
            completed_at: None,
            complete_at_start,
            up: RateMeter::default(),
            notes,
            started: now,
            verified_bytes,
            wanted_bytes,
            down: RateMeter::default(),
            last_tick: now,
            last_watch: now,
            watch_next: 0,
            lost: Bitfield::new(geometry.num_pieces()),
            hashing: HashSet::new(),
            stale: HashSet::new(),
            rtt_window_start: now,
            last_busy: now,
            opts,
        };
        let needed = !o.picker.is_complete() || o.opts.seed.wants_seeding();
        if needed {
            o.swarm.start_announce(o.meta.trackers.clone(), &o.opts);
        }
        // BEP 27: a private torrent's peers come from its trackers only.
        if needed && !o.meta.private {
            if let Some(local) = session.discover_locally(o.meta.info_hash) {
                o.local = local;
            }
        }
        o.start_web_seeds();
        o
    }

    /// The main loop. `Err` says why it stopped before completion.
    fn run(&mut self) -> Result<(), TorrentError> {
        let deadline = self.opts.timeout.map(|t| self.started + t);
        self.connect_more();
        self.look_up_dht();
        loop {
            if self.picker.is_complete() || self.last_announce.elapsed() >= ANNOUNCE_EVERY {
                self.announce_verified();
            }
            if self.picker.is_complete() {
                if self.completed_at.is_none() {
                    self.on_complete();
                }
                if self.seeding_done() {
                    return Ok(());
                }
            }
            if hosted::stop_requested(self.swarm.hosting.as_ref()) {
                return Err(TorrentError::Interrupted);
            }
            if self.is_idle() {
                return Err(TorrentError::Idle);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) && !self.picker.is_complete() {
                return Err(TorrentError::TimedOut {
                    after: self.opts.timeout.unwrap_or_default(),
                    have: self.picker.have().count(),
                    pieces: self.picker.have().len(),
                    connected: self.peers.values().any(|p| p.socket.is_some()),
                });
            }
            let mut wait = TICK.saturating_sub(self.last_tick.elapsed());
            if !self.unannounced.is_empty() {
                wait = wait.min(ANNOUNCE_EVERY.saturating_sub(self.last_announce.elapsed()));
            }
            // A source that has ended (no tracker, no listener) becomes
            // `never()`: a disconnected channel is always ready, and
            // selecting on it would spin.
            select! {
                recv(self.swarm.events) -> e => {
                    if let Ok(e) = e {
                        self.on_event(e)?;
                    }
                }
                // Never disconnected: `web` holds a sender.
                recv(self.web.events) -> e => {
                    if let Ok(e) = e {
                        self.on_web_event(e)?;
                    }
                }
                recv(self.swarm.reports) -> r => match r {
                    Ok(r) => self.on_report(r),
                    Err(_) => self.swarm.reports = never(),
                },
                recv(self.hashed) -> h => match h {
                    Ok((piece, hash)) => self.on_hashed(piece, hash)?,
                    Err(_) => {
                        self.hashed = never();
                        return Err(TorrentError::HasherStopped);
                    }
                },
                recv(self.dht.found) -> found => {
                    for addr in found.into_iter().flatten() {
                        self.learn(addr, Source::Dht);
                    }
                    self.connect_more();
                }
                recv(self.swarm.inbound) -> s => match s {
                    Ok(s) => self.accept(s),
                    Err(_) => self.swarm.inbound = never(),
                },
                recv(self.local) -> a => match a {
                    Ok(addr) => {
                        log::info!("local discovery: {addr}");
                        self.learn(addr, Source::Lsd);
                        self.connect_more();
                    }
                    Err(_) => self.local = never(),
                },
                default(wait) => {}
            }
            if self.last_watch.elapsed() >= files::WATCH_EVERY {
                self.last_watch = Instant::now();
                self.watch_files()?;
            }
            if self.last_tick.elapsed() >= TICK {
                self.tick();
            }
        }
    }

    /// Whether a hosted run has nothing to do: complete, and no peer for
    /// a while.
    fn is_idle(&mut self) -> bool {
        let Some(h) = &self.swarm.hosting else {
            return false;
        };
        if !self.picker.is_complete() || !self.peers.is_empty() {
            self.last_busy = Instant::now();
            return false;
        }
        self.last_busy.elapsed() >= h.idle_after
    }

    fn on_complete(&mut self) {
        let now = Instant::now();
        self.completed_at = Some(now);
        if !self.complete_at_start {
            self.save_resume();
        }
        if !self.complete_at_start {
            if let Some(a) = &self.swarm.announce {
                a.send(announce::Command::Completed);
            }
        }
        // Seeds have nothing for each other.
        let seeds: Vec<PeerKey> = self.peer_keys(|_, p| p.pieces.is_complete());
        for k in seeds {
            self.drop_peer(k, "both seeds", false);
        }
        if self.opts.seed.wants_seeding() {
            let limit = self.opts.seed;
            (self.notes)(Note::Seeding(SeedUntil {
                ratio: limit.ratio,
                time: limit.time,
            }));
        }
    }

    /// Whether the seeding after completion is over.
    fn seeding_done(&self) -> bool {
        let limit = self.opts.seed;
        if !limit.wants_seeding() {
            return true;
        }
        let uploaded = self.swarm.counters.uploaded.load(Ordering::Relaxed) as f64;
        let ratio_met = limit
            .ratio
            .is_some_and(|r| uploaded >= r * self.meta.geometry.total_len() as f64);
        let time_met = limit
            .time
            .zip(self.completed_at)
            .is_some_and(|(t, at)| at.elapsed() >= t);
        ratio_met || time_met
    }

    fn on_report(&mut self, r: Report) {
        match r {
            Report::Peers { tracker, peers } => {
                log::info!("{tracker}: {} peers", peers.len());
                for p in peers {
                    self.learn(p, Source::Tracker);
                }
                self.connect_more();
            }
            Report::Warning { tracker, message } => {
                (self.notes)(Note::TrackerWarning { tracker, message })
            }
            Report::Error { tracker, message } => {
                (self.notes)(Note::TrackerError { tracker, message })
            }
        }
    }

    fn on_event(&mut self, e: Event) -> Result<(), TorrentError> {
        match e {
            Event::Connected {
                peer,
                id,
                extended,
                fast,
                dht,
                socket,
            } => self.on_connected(peer, id, extended, fast, dht, socket),
            Event::DhtPort(peer, port) => {
                if let Some(p) = self.peers.get(&peer) {
                    self.dht.add_node(p.addr, port);
                }
            }
            Event::Bitfield(peer, bits) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    // A later bitfield replaces the earlier one.
                    self.picker.remove_peer(&p.pieces);
                    self.picker.add_peer(&bits);
                    p.pieces = bits;
                    self.update_interest(peer);
                    self.drop_if_both_seeds(peer);
                    self.super_offer(peer);
                }
            }
            Event::Have(peer, index) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if !p.pieces.get(index) {
                        p.pieces.set(index);
                        if let Some(piece) = self.meta.geometry.piece(index) {
                            self.picker.peer_has(piece);
                        }
                        self.update_interest(peer);
                        self.drop_if_both_seeds(peer);
                        self.super_offer(peer);
                    }
                }
            }
            Event::PeerInfo(peer, info) => {
                let sources = self.sources();
                if let Some(p) = self.peers.get_mut(&peer) {
                    log::debug!(
                        "peer {peer} is {:?}, queues {:?} requests",
                        info.client,
                        info.reqq
                    );
                    p.pipeline.set_peer_queue(info.reqq);
                    p.update_depth(sources);
                    p.ext = info;
                    // A peer handed over by a magnet's metadata phase that
                    // speaks up only now still gets our full handshake.
                    if !p.ext_sent {
                        p.ext_sent = true;
                        let ours = self.extension_handshake();
                        self.send(peer, Command::ExtensionHandshake(ours));
                    }
                }
            }
            Event::Unsized(peer, what) => match what.sized(self.meta.geometry.num_pieces()) {
                Ok(bits) => self.on_event(Event::Bitfield(peer, bits))?,
                Err(e) => self.drop_peer(peer, &format!("bitfield: {e}"), false),
            },
            Event::Extension { peer, id, payload } => self.on_extension(peer, id, &payload),
            Event::Choke(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.peer_choking = true;
                    // BEP 3: a choke discards our pending requests; a BEP 6
                    // peer still serves (or rejects) those it allows fast.
                    let allowed = &p.allowed_fast;
                    for b in p.pipeline.choked(|b| allowed.contains(&b.piece.get())) {
                        self.picker.abandon(&b);
                    }
                    self.fill_all();
                }
            }
            Event::Unchoke(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.peer_choking = false;
                    p.refused.clear();
                    p.last_data = Instant::now();
                    self.fill(peer);
                }
            }
            Event::Interested(peer) | Event::NotInterested(peer) => {
                let interested = matches!(e, Event::Interested(_));
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.peer_interested = interested;
                    self.fill_free_slots();
                }
            }
            Event::Request(peer, index, begin, len) => self.on_request(peer, index, begin, len),
            Event::Rejected(peer, index, begin, len) => self.on_rejected(peer, index, begin, len),
            Event::AllowedFast(peer, index) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.allowed_fast.len() < MAX_ALLOWED_FAST && !p.allowed_fast.contains(&index) {
                        p.allowed_fast.push(index);
                        self.fill(peer);
                    }
                }
            }
            Event::Cancel(peer, index, begin, len) => {
                if let Some(b) = self.meta.geometry.checked_block(index, begin, len) {
                    self.send(peer, Command::DropUpload(b));
                }
            }
            Event::Blocks { peer, blocks } => {
                for b in blocks {
                    self.on_block(peer, b.piece, b.begin, b.data)?;
                }
            }
            Event::Uploaded {
                peer,
                bytes,
                pieces,
            } => {
                let n = u64::from(bytes);
                self.swarm.counters.uploaded.fetch_add(n, Ordering::Relaxed);
                self.up.add(n);
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.up.add(n);
                }
                self.delivered(peer, &pieces);
            }
            Event::Closed { peer, reason } => self.on_closed(peer, reason),
        }
        Ok(())
    }

    /// Queues a command without blocking; a peer that cannot keep up is
    /// dropped. Returns whether the peer is still there.
    fn send(&mut self, peer: PeerKey, cmd: Command) -> bool {
        let Some(p) = self.peers.get(&peer) else {
            return false;
        };
        match p.commands.try_send(cmd) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.drop_peer(peer, "not reading its commands", false);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let dt = now - self.last_tick;
        self.last_tick = now;
        self.down.tick(dt);
        self.web.down.tick(dt);
        self.up.tick(dt);
        let new_rtt_window = now - self.rtt_window_start > Duration::from_secs(10);
        if new_rtt_window {
            self.rtt_window_start = now;
        }
        let mut stalled = Vec::new();
        let sources = self.sources();
        for (k, p) in &mut self.peers {
            p.down.tick(dt);
            p.up.tick(dt);
            p.update_depth(sources);
            if new_rtt_window {
                p.pipeline.forget_rtt();
            }
            if !p.pipeline.is_empty() && now - p.last_data > self.opts.peer_timeout {
                stalled.push(*k);
            }
        }
        for k in stalled {
            let secs = self.opts.peer_timeout.as_secs_f64();
            self.drop_peer(k, &format!("no data for {secs:.0}s"), false);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.reask_skipped(k, now);
        }
        // Dialling is decided here (and when a tracker reports), not per
        // event: it scans the known addresses.
        self.connect_more();
        self.tell_announcer_if_we_want_peers();
        self.exchange_peers();
        self.look_up_dht();
        self.tick_super_offers();
        let rerank = now - self.last_choke >= choker::ROUND;
        if rerank || now - self.last_catch_up >= choker::CATCH_UP_ROUND {
            self.rechoke(rerank);
        }
        self.fill_all();
        self.feed_web_seeds();
        if self.swarm.hosting.is_some() {
            let peers = self.peers.values().filter(|p| p.socket.is_some());
            let views = peers.map(|p| PeerView {
                addr: p.addr,
                client: p.ext.client.clone(),
                down_rate: p.down.rate(),
                up_rate: p.up.rate(),
                inbound: p.inbound,
            });
            (self.notes)(Note::Peers(views.collect()));
        }
        let snapshot = self.snapshot();
        (self.notes)(Note::Progress {
            snapshot,
            last: false,
        });
    }

    /// The peers for which `which` holds, to act on one by one.
    fn peer_keys(&self, which: impl Fn(&PeerKey, &Peer) -> bool) -> Vec<PeerKey> {
        self.peers
            .iter()
            .filter(|(k, p)| which(k, p))
            .map(|(k, _)| *k)
            .collect()
    }

    /// Peers that may send us blocks we want now: their request
    /// pipelines share one headroom.
    fn sources(&self) -> usize {
        self.peers.values().filter(|p| p.is_source()).count()
    }

    /// Connected peers by where we learned of them.
    fn connected_by_source(&self) -> [usize; Source::ALL.len()] {
        let mut counts = [0; Source::ALL.len()];
        for p in self.peers.values().filter(|p| p.socket.is_some()) {
            let source = if p.inbound {
                Source::Incoming
            } else {
                self.swarm.book.source(&p.addr)
            };
            counts[source as usize] += 1;
        }
        counts
    }

    fn snapshot(&self) -> Snapshot {
        let wanted = self.picker.wanted_pieces();
        Snapshot {
            have: wanted
                .iter_set()
                .filter(|&p| self.picker.have().get(p))
                .count() as u32,
            pieces: wanted.count(),
            bytes: self.verified_bytes,
            total: self.wanted_bytes,
            down_rate: self.down.rate() + self.web.rate(),
            up_rate: self.up.rate(),
            uploaded: self.swarm.counters.uploaded.load(Ordering::Relaxed),
            peers: self.peers.values().filter(|p| p.socket.is_some()).count(),
            sources: self.connected_by_source(),
            // Addresses we may dial, plus peers that dialled us.
            known: self.swarm.book.usable()
                + self
                    .peers
                    .values()
                    .filter(|p| !self.swarm.book.knows(&p.addr))
                    .count(),
        }
    }

    /// Stops peers and the announce thread, and flushes the data.
    fn shutdown(&mut self) {
        // Stop taking connections (the session closes new ones for us).
        self.session.unregister(&self.meta.info_hash);
        self.swarm.inbound = never();
        self.local = never();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.forget(k, "shutting down", false);
        }
        let snapshot = self.snapshot();
        (self.notes)(Note::Progress {
            snapshot,
            last: true,
        });
        // A hosted run's announcer is its manager's.
        let owned = self
            .swarm
            .announce
            .take()
            .filter(|_| self.swarm.hosting.is_none());
        if let Some(a) = owned {
            if self.picker.is_complete() {
                a.send(announce::Command::Completed);
            }
            a.send(announce::Command::Stop);
            // The `stopped` announce gets the announce thread's own budget
            // and no more: a tracker that hangs must not hold the exit (the
            // thread is left to finish its request on its own).
            a.wait_ended(Instant::now() + announce::STOP_TIMEOUT);
        }
        self.save_resume();
    }
}
