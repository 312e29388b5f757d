//! The manager of `shoal serve`: every torrent of the process, and when
//! each runs.
//!
//! Owns: the table of torrents (each with its announcer in the shared
//! [`Pool`], its transfer counters and what its runs last reported), the
//! state directory ([`Store`]), and the threads of the torrents' runs. A
//! torrent runs (an orchestrator thread, as `shoal get`/`seed` would) only
//! while it has work: data to check or fetch, or peers connected. A
//! complete torrent with no peer is **idle**: its inbound connections are
//! routed to the manager, which starts a run for it when one comes, and
//! only its announcer (a few hundred bytes in the pool) remains.
//! Does not own: the torrents' decisions (their orchestrators), the
//! listener and DHT (the [`Session`]), or HTTP (the API calls [`Control`]).
//!
//! Checks and downloads run [`Config::max_active`] at a time; the others
//! wait as `queued`.

use super::control::{self, Control, Detail, Metrics, Refusal, Source, State, Status};
use super::saved::{Saved, Store};
use crate::engine::notes::{Note, Snapshot};
use crate::engine::session::Session;
use crate::engine::torrent::{self, Announcer, Hosted, Options, Summary, TorrentError};
use crate::net::announce::{self, Counters, Pool, Report};
use crate::net::peer::Inbound;
use crate::proto::magnet::Magnet;
use crate::proto::metainfo::{InfoHash, Metainfo};
use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tracker reports kept for a torrent between runs at most (an idle
/// torrent needs none: peers dial it).
const REPORT_QUEUE: usize = 16;
/// How long shutdown waits for the `stopped` announces, all together.
const STOP_BUDGET: Duration = Duration::from_secs(10);
/// An idle torrent is announced to the DHT this often (announces there
/// expire after 30 minutes; a run announces its own torrent).
const IDLE_DHT_EVERY: Duration = Duration::from_secs(25 * 60);
/// Idle torrents announced to the DHT per step at most: a thousand are
/// spread over a minute instead of flooding the node.
const IDLE_DHT_PER_STEP: usize = 4;

/// How `shoal serve` runs its torrents.
pub struct Config {
    /// The root for the torrents' data (`--data`).
    pub data: PathBuf,
    /// Where API-added torrents are kept (`--state`).
    pub state: PathBuf,
    /// The run options every torrent starts from (peers, limits,
    /// encryption, seeding limits).
    pub opts: Options,
    /// A complete torrent whose run has had no peer for this long goes
    /// idle.
    pub idle_after: Duration,
    /// Checks and downloads at once at most.
    pub max_active: usize,
}

/// Where a torrent came from: the watch folder (removing the file removes
/// it; nothing is saved) or the API (saved in the state directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Watch(PathBuf),
    Api,
}

/// What a run reports, kept for the API.
#[derive(Default)]
struct Live {
    snapshot: Option<Snapshot>,
    peers: Vec<control::Peer>,
    counters: control::Counters,
    /// The `have` count of the last snapshot, to count verified pieces.
    have: Option<u32>,
}

impl Live {
    fn note(&mut self, note: Note) {
        match note {
            Note::Progress { snapshot, .. } => {
                if let Some(before) = self.have {
                    let more = snapshot.have.saturating_sub(before);
                    self.counters.pieces_verified += u64::from(more);
                }
                self.have = Some(snapshot.have);
                self.snapshot = Some(snapshot);
            }
            Note::Peers(peers) => {
                self.peers = peers
                    .into_iter()
                    .map(|p| control::Peer {
                        addr: p.addr,
                        client: p.client,
                        down_rate: p.down_rate,
                        up_rate: p.up_rate,
                        inbound: p.inbound,
                    })
                    .collect();
            }
            Note::PieceFailed { .. } => self.counters.pieces_failed += 1,
            Note::PeerBanned { .. } => self.counters.bans += 1,
            // Counted where the announcer reports (idle torrents too).
            Note::TrackerError { .. } => {}
            Note::FileChanged { path } => log::warn!("{}: changed while served", path.display()),
            Note::ResumeNotSaved { path, reason } => {
                log::warn!("{}: resume state not saved: {reason}", path.display())
            }
            _ => {}
        }
    }
}

/// A torrent's announcer in the pool: started by the manager for a torrent
/// that is complete by its resume state, else by its run once the data is
/// checked (so that the first `started` tells the tracker what is left).
struct Announcing {
    slot: Arc<OnceLock<announce::Handle>>,
    start: Announcer,
}

impl Announcing {
    fn stop(&self) {
        if let Some(h) = self.slot.get() {
            h.send(announce::Command::Stop);
        }
    }
}

/// A run in progress.
struct Run {
    id: u64,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

struct Torrent {
    name: String,
    /// `None` while a magnet link's metadata is being fetched.
    meta: Option<Arc<Metainfo>>,
    magnet: Option<Magnet>,
    /// The directory holding the torrent's file or folder.
    data_dir: PathBuf,
    origin: Origin,
    state: State,
    /// Its announcer (`None` while paused, finished or stopped by an error).
    announce: Option<Announcing>,
    reports: (Sender<Report>, Receiver<Report>),
    counters: Arc<Counters>,
    live: Arc<Mutex<Live>>,
    run: Option<Run>,
    /// When it is next announced to the DHT while idle.
    dht_due: Instant,
}

impl Torrent {
    /// Where its data lives (for a magnet, unknown until its metadata).
    fn data_path(&self) -> Option<PathBuf> {
        let meta = self.meta.as_ref()?;
        Some(
            self.data_dir
                .join(crate::disk::storage::os_path(&meta.name)),
        )
    }

    fn size(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.geometry.total_len())
    }
}

/// A run ended: which, and how.
type Ended = (
    InfoHash,
    u64,
    Result<(Option<Arc<Metainfo>>, Summary), TorrentError>,
);

pub struct Manager {
    shared: Arc<Shared>,
    wake: Receiver<Inbound>,
    ended: Receiver<Ended>,
}

struct Shared {
    session: Arc<Session>,
    pool: Arc<Pool>,
    config: Config,
    store: Store,
    torrents: Mutex<HashMap<InfoHash, Torrent>>,
    /// Where idle torrents' connections are routed.
    wake: Sender<Inbound>,
    ended: Sender<Ended>,
    next_run: std::sync::atomic::AtomicU64,
    /// The counters of torrents removed since the process started.
    removed: Mutex<control::Counters>,
    peer_id: [u8; 20],
}

impl Manager {
    /// A manager on `session`, with the torrents saved in the state
    /// directory added (and checked cheaply through their resume state).
    pub fn start(session: Arc<Session>, mut config: Config) -> std::io::Result<Manager> {
        // Torrents seed until their limit, or for as long as we run.
        let seed = &mut config.opts.seed;
        seed.forever = seed.ratio.is_none() && seed.time.is_none();
        let store = Store::open(&config.state)?;
        let (wake_tx, wake) = unbounded();
        let (ended_tx, ended) = unbounded();
        let shared = Arc::new(Shared {
            session,
            pool: Arc::new(Pool::start()?),
            config,
            store,
            torrents: Mutex::default(),
            wake: wake_tx,
            ended: ended_tx,
            next_run: Default::default(),
            removed: Mutex::default(),
            peer_id: crate::util::random::peer_id(),
        });
        for saved in shared.store.load() {
            let hash = saved.info_hash;
            if let Err(e) = shared.add(saved.source, saved.dir, Origin::Api, saved.paused) {
                log::warn!("saved torrent {}: {e}", hash.hex());
            }
        }
        Ok(Manager {
            shared,
            wake,
            ended,
        })
    }

    /// What the API calls.
    pub fn control(&self) -> Arc<dyn Control> {
        self.shared.clone()
    }

    /// Adds a torrent from the watch folder.
    pub fn add_watched(&self, source: Source, file: &Path) -> Result<InfoHash, Refusal> {
        self.shared
            .add(source, None, Origin::Watch(file.to_path_buf()), false)
    }

    /// Removes the torrent that came from `file` (its data is kept).
    pub fn remove_watched(&self, file: &Path) {
        let origin = Origin::Watch(file.to_path_buf());
        let hash = lock(&self.shared.torrents)
            .iter()
            .find(|(_, t)| t.origin == origin)
            .map(|(h, _)| *h);
        if let Some(h) = hash {
            let _ = self.shared.remove(&h, false);
        }
    }

    /// Does what is due: wakes idle torrents that a peer dialled, takes in
    /// ended runs, starts queued ones. Returns after `wait` at most.
    pub fn step(&self, wait: Duration) {
        select! {
            recv(self.wake) -> inbound => {
                if let Ok(inbound) = inbound {
                    self.shared.wake(inbound);
                }
            }
            recv(self.ended) -> ended => {
                if let Ok(ended) = ended {
                    self.shared.ended(ended);
                }
            }
            default(wait) => {}
        }
        self.shared.start_queued();
        self.shared.announce_idle_to_dht();
    }

    /// Ends every run and announces `stopped` for every torrent (within
    /// [`STOP_BUDGET`]); resume state is written by each run as it ends.
    pub fn shutdown(self) {
        let mut torrents = std::mem::take(&mut *lock(&self.shared.torrents));
        for t in torrents.values() {
            if let Some(run) = &t.run {
                run.stop.store(true, Ordering::Relaxed);
            }
        }
        for t in torrents.values_mut() {
            if let Some(run) = t.run.take() {
                let _ = run.thread.join();
            }
            if let Some(a) = &t.announce {
                a.stop();
            }
        }
        let deadline = Instant::now() + STOP_BUDGET;
        for t in torrents.values() {
            if let Some(h) = t.announce.as_ref().and_then(|a| a.slot.get()) {
                h.wait_ended(deadline);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change leaves the table valid, so a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn add(
        &self,
        source: Source,
        dir: Option<PathBuf>,
        origin: Origin,
        paused: bool,
    ) -> Result<InfoHash, Refusal> {
        if let Some(d) = &dir {
            check_relative(d)?;
        }
        let (meta, magnet) = match &source {
            Source::Torrent(bytes) => {
                let meta =
                    Metainfo::from_bytes(bytes).map_err(|e| Refusal::BadTorrent(e.to_string()))?;
                (Some(Arc::new(meta)), None)
            }
            Source::Magnet(uri) => {
                let m = Magnet::parse(uri).map_err(|e| Refusal::BadTorrent(e.to_string()))?;
                (None, Some(m))
            }
        };
        let hash = meta
            .as_ref()
            .map(|m| m.info_hash)
            .or(magnet.as_ref().map(|m| m.info_hash))
            .ok_or_else(|| Refusal::BadTorrent("no info hash".into()))?;
        let data_dir = match &dir {
            Some(d) => self.config.data.join(d),
            None => self.config.data.clone(),
        };
        let name = match (&meta, &magnet) {
            (Some(m), _) => m.display_name(),
            (None, Some(m)) => m.name.clone().unwrap_or_else(|| hash.hex()),
            (None, None) => hash.hex(),
        };
        let mut torrent = Torrent {
            name,
            meta,
            magnet,
            data_dir,
            origin: origin.clone(),
            state: State::Queued,
            announce: None,
            reports: bounded(REPORT_QUEUE),
            counters: Arc::default(),
            live: Arc::default(),
            run: None,
            dht_due: Instant::now(),
        };
        let mut torrents = lock(&self.torrents);
        if torrents.contains_key(&hash) {
            return Err(Refusal::Exists(hash));
        }
        if let Some(path) = torrent.data_path() {
            if let Some(other) = clash(&torrents, &path) {
                return Err(Refusal::Clash { path, other });
            }
        }
        if origin == Origin::Api {
            let saved = Saved {
                info_hash: hash,
                source,
                dir,
                paused,
            };
            self.store
                .save(&saved)
                .map_err(|e| Refusal::Failed(format!("cannot save the torrent: {e}")))?;
        }
        if paused {
            torrent.state = State::Paused;
        } else {
            self.start(hash, &mut torrent);
        }
        log::info!("added {} ({})", torrent.name, hash.hex());
        torrents.insert(hash, torrent);
        Ok(hash)
    }

    /// Starts a torrent that is not running: idle if its resume state
    /// says it is complete, else queued for a run.
    fn start(&self, hash: InfoHash, t: &mut Torrent) {
        let complete = t.meta.as_ref().is_some_and(|meta| {
            crate::disk::resume::load(meta, &t.data_dir, None).is_some_and(|h| h.is_complete())
        });
        let left = if complete { 0 } else { t.size().max(1) };
        t.counters.left.store(left, Ordering::Relaxed);
        let announcing = self.announcer(hash, t);
        if complete {
            (announcing.start)();
        }
        t.announce = Some(announcing);
        if complete {
            self.idle(hash, t);
        } else {
            t.state = State::Queued;
        }
    }

    /// Makes `t` idle: its connections wake the manager, and it stays
    /// announced on the LAN (BEP 27: not a private one); trackers hear
    /// from its announcer, the DHT from [`Shared::announce_idle_to_dht`].
    fn idle(&self, hash: InfoHash, t: &mut Torrent) {
        t.state = State::Idle;
        self.session.route_to(hash, self.wake.clone());
        if t.meta.as_ref().is_some_and(|m| !m.private) {
            // What the LAN says of it is not needed: peers dial us.
            drop(self.session.discover_locally(hash));
        }
    }

    fn announcer(&self, hash: InfoHash, t: &Torrent) -> Announcing {
        let trackers = match (&t.meta, &t.magnet) {
            (Some(m), _) => m.trackers.clone(),
            (None, Some(m)) => m.trackers.clone(),
            (None, None) => Vec::new(),
        };
        let opts = &self.config.opts;
        let listen = self.session.local_addr();
        let port = listen.map_or(opts.port, |a| a.port());
        let mut config = announce::Config::new(trackers, hash, self.peer_id, port);
        config.retry_base = opts.announce_retry;
        config.min_interval = opts.announce_min_interval;
        config.address = listen.map(|a| a.ip()).filter(|ip| !ip.is_unspecified());
        let reports = t.reports.0.clone();
        let live = Arc::clone(&t.live);
        let report = Arc::new(move |r: Report| {
            if let Report::Error { message, .. } = &r {
                log::info!("{message}");
                lock(&live).counters.tracker_errors += 1;
            }
            // A torrent without a run takes no reports: peers dial it.
            let _ = reports.try_send(r);
        });
        let (pool, counters) = (Arc::clone(&self.pool), t.counters.clone());
        let slot: Arc<OnceLock<announce::Handle>> = Arc::default();
        let once = Arc::clone(&slot);
        let start: Announcer = Arc::new(move || {
            let start = || {
                let report = Arc::clone(&report);
                let report = Box::new(move |r: Report| report(r));
                pool.add(config.clone(), counters.clone(), report)
            };
            once.get_or_init(start).clone()
        });
        Announcing { slot, start }
    }

    /// Starts runs for queued torrents while fewer than `max_active`
    /// checks and downloads run.
    fn start_queued(&self) {
        let mut torrents = lock(&self.torrents);
        // Seeding runs do not count: they wait for peers, not a turn.
        let busy = torrents
            .values()
            .filter(|t| t.run.is_some() && state_of(t, &lock(&t.live)) != State::Seeding)
            .count();
        let mut room = self.config.max_active.saturating_sub(busy);
        let queued: Vec<InfoHash> = torrents
            .iter()
            .filter(|(_, t)| t.state == State::Queued && t.run.is_none())
            .map(|(h, _)| *h)
            .collect();
        for hash in queued {
            if room == 0 {
                break;
            }
            room -= 1;
            if let Some(t) = torrents.get_mut(&hash) {
                let state = if t.meta.is_some() {
                    State::Checking
                } else {
                    State::Metadata
                };
                self.run(hash, t, None, state);
            }
        }
    }

    /// Announces idle torrents to the DHT when due (a few per call), so
    /// that peers find them there without a run.
    fn announce_idle_to_dht(&self) {
        let (Some(dht), Some(listen)) = (self.session.dht(), self.session.local_addr()) else {
            return;
        };
        let now = Instant::now();
        let mut torrents = lock(&self.torrents);
        let due = torrents.iter_mut().filter(|(_, t)| {
            t.state == State::Idle
                && t.dht_due <= now
                && t.meta.as_ref().is_some_and(|m| !m.private)
        });
        for (hash, t) in due.take(IDLE_DHT_PER_STEP) {
            t.dht_due = now + IDLE_DHT_EVERY;
            // Peers found are not wanted: they dial us.
            let (found, _) = bounded(1);
            dht.lookup(hash.0, Some(listen.port()), found);
        }
    }

    /// Starts a run of `t`, handing it `first` (the connection that woke
    /// it), if any.
    fn run(&self, hash: InfoHash, t: &mut Torrent, first: Option<Inbound>, state: State) {
        let inbound = self.session.register(hash);
        if let Some(c) = first {
            self.session.deliver(c);
        }
        let stop = Arc::new(AtomicBool::new(false));
        lock(&t.live).snapshot = None;
        let hosted = Hosted {
            announce: t
                .announce
                .as_ref()
                .map(|a| Arc::clone(&a.start))
                .expect("a started torrent has an announcer"),
            reports: t.reports.1.clone(),
            counters: t.counters.clone(),
            peer_id: self.peer_id,
            inbound,
            idle_after: self.config.idle_after,
            stop: stop.clone(),
        };
        let id = self.next_run.fetch_add(1, Ordering::Relaxed);
        let session = Arc::clone(&self.session);
        let mut opts = self.config.opts.clone();
        opts.out_dir = t.data_dir.clone();
        let live = Arc::clone(&t.live);
        let target = match (&t.meta, &t.magnet) {
            (Some(m), _) => Ok(Arc::clone(m)),
            (None, Some(m)) => Err(m.clone()),
            (None, None) => return,
        };
        let ended = self.ended.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("torrent-{}", &hash.hex()[..8]))
            .spawn(move || {
                let mut notes = |n: Note| lock(&live).note(n);
                let result = match target {
                    Ok(meta) => torrent::run(&session, meta, opts, Some(hosted), &mut notes)
                        .map(|s| (None, s)),
                    Err(magnet) => {
                        torrent::run_magnet(&session, &magnet, opts, Some(hosted), &mut notes)
                            .map(|(m, s)| (Some(m), s))
                    }
                };
                let _ = ended.send((hash, id, result));
            });
        match spawned {
            Ok(thread) => {
                t.state = state;
                t.run = Some(Run { id, stop, thread });
            }
            Err(e) => {
                self.session.unregister(&hash);
                t.state = State::Error(format!("cannot start its thread: {e}"));
            }
        }
    }

    /// A peer dialled an idle torrent: run it.
    fn wake(&self, inbound: Inbound) {
        let hash = InfoHash(inbound.theirs.info_hash);
        let mut torrents = lock(&self.torrents);
        let Some(t) = torrents.get_mut(&hash) else {
            return;
        };
        match (&t.state, &t.run) {
            (State::Idle, None) => {
                log::debug!("{}: woken by {:?}", t.name, inbound.stream.peer_addr());
                self.run(hash, t, Some(inbound), State::Seeding);
            }
            // Routed before the run registered: it takes it now.
            (_, Some(_)) => self.session.deliver(inbound),
            _ => {}
        }
    }

    fn ended(&self, (hash, id, result): Ended) {
        let mut torrents = lock(&self.torrents);
        let Some(t) = torrents.get_mut(&hash) else {
            return;
        };
        if t.run.as_ref().is_none_or(|r| r.id != id) {
            return;
        }
        let run = t.run.take().expect("checked above");
        let _ = run.thread.join();
        lock(&t.live).peers.clear();
        let (meta, summary) = match result {
            Ok(done) => done,
            Err(TorrentError::Interrupted) => return, // as below
            Err(e) => {
                self.fail(hash, t, e.to_string());
                return;
            }
        };
        if let Some(meta) = meta {
            // A magnet's metadata is in: keep it.
            if t.origin == Origin::Api {
                if let Err(e) = self.store.save_torrent(&hash, &meta.to_torrent_bytes()) {
                    log::warn!("{}: cannot save its metadata: {e}", t.name);
                }
            }
            t.name = meta.display_name();
            t.meta = Some(meta);
        }
        if summary.idle {
            self.idle(hash, t);
            log::debug!("{}: idle", t.name);
        } else {
            match summary.stopped {
                // SIGINT or SIGTERM, seen by the run first: the shutdown
                // follows. (A pause or remove takes its run before it
                // ends, so its end never comes here.)
                Some(TorrentError::Interrupted) => {}
                Some(e) => self.fail(hash, t, e.to_string()),
                None => {
                    t.state = State::Finished;
                    self.stop_announcing(hash, t);
                }
            }
        }
    }

    fn fail(&self, hash: InfoHash, t: &mut Torrent, why: String) {
        log::warn!("{}: {why}", t.name);
        t.state = State::Error(why);
        self.stop_announcing(hash, t);
    }

    fn stop_announcing(&self, hash: InfoHash, t: &mut Torrent) {
        self.session.unregister(&hash);
        if let Some(a) = t.announce.take() {
            a.stop();
        }
    }

    /// Ends `t`'s run, if any, and waits for it: for a piece's hash at
    /// most if it is checking its data, and otherwise for its files'
    /// flush (little is unflushed: the hasher starts writeback as pieces
    /// are verified).
    fn halt(&self, hash: InfoHash, t: &mut Torrent) {
        if let Some(run) = t.run.take() {
            run.stop.store(true, Ordering::Relaxed);
            let _ = run.thread.join();
        }
        lock(&t.live).peers.clear();
        self.stop_announcing(hash, t);
    }

    fn remove(&self, hash: &InfoHash, delete_data: bool) -> Result<(), Refusal> {
        let mut t = lock(&self.torrents)
            .remove(hash)
            .ok_or(Refusal::Unknown(*hash))?;
        self.halt(*hash, &mut t);
        {
            let live = lock(&t.live);
            let mut removed = lock(&self.removed);
            add_counters(&mut removed, &live.counters, &t.counters);
        }
        if t.origin == Origin::Api {
            self.store
                .forget(hash)
                .map_err(|e| Refusal::Failed(format!("cannot forget the torrent: {e}")))?;
        }
        log::info!("removed {} ({})", t.name, hash.hex());
        if delete_data {
            if let (Some(path), Some(meta)) = (t.data_path(), &t.meta) {
                crate::disk::resume::discard(meta, &t.data_dir);
                let gone = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match gone {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Refusal::Failed(format!(
                            "{}: cannot delete: {e}",
                            path.display()
                        )))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn status(&self, hash: &InfoHash, t: &Torrent) -> Status {
        let live = lock(&t.live);
        let size = t.size();
        let done = match (&live.snapshot, &t.state) {
            (_, State::Idle) => size,
            (Some(s), _) => s.bytes,
            (None, _) => 0,
        };
        let snapshot = live.snapshot.as_ref().filter(|_| t.run.is_some());
        let state = state_of(t, &live);
        Status {
            info_hash: *hash,
            name: t.name.clone(),
            state,
            done,
            size: live.snapshot.as_ref().map_or(size, |s| s.total),
            down_rate: snapshot.map_or(0.0, |s| s.down_rate),
            up_rate: snapshot.map_or(0.0, |s| s.up_rate),
            downloaded: t.counters.downloaded.load(Ordering::Relaxed),
            uploaded: t.counters.uploaded.load(Ordering::Relaxed),
            peers: snapshot.map_or(0, |s| s.peers),
            data_dir: t.data_dir.clone(),
        }
    }
}

/// A torrent's state: while it runs, what the run last reported.
fn state_of(t: &Torrent, live: &Live) -> State {
    let snapshot = live.snapshot.as_ref().filter(|_| t.run.is_some());
    match (&t.state, snapshot) {
        (State::Checking | State::Seeding, Some(s)) if s.have == s.pieces => State::Seeding,
        (State::Checking | State::Seeding, Some(_)) => State::Downloading,
        (state, _) => state.clone(),
    }
}

/// Adds one torrent's counters to a total.
fn add_counters(total: &mut control::Counters, live: &control::Counters, counters: &Counters) {
    total.downloaded_bytes += counters.downloaded.load(Ordering::Relaxed);
    total.uploaded_bytes += counters.uploaded.load(Ordering::Relaxed);
    total.pieces_verified += live.pieces_verified;
    total.pieces_failed += live.pieces_failed;
    total.bans += live.bans;
    total.tracker_errors += live.tracker_errors;
}

/// The torrent whose data is `path`, or holds it, or lies in it.
fn clash(torrents: &HashMap<InfoHash, Torrent>, path: &Path) -> Option<InfoHash> {
    torrents.iter().find_map(|(h, t)| {
        let theirs = t.data_path()?;
        (theirs.starts_with(path) || path.starts_with(&theirs)).then_some(*h)
    })
}

/// A data directory must stay inside `--data`: relative, no `..`.
fn check_relative(dir: &Path) -> Result<(), Refusal> {
    let inside = dir
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if inside {
        Ok(())
    } else {
        Err(Refusal::OutsideData(dir.display().to_string()))
    }
}

impl Control for Shared {
    fn list(&self) -> Vec<Status> {
        let torrents = lock(&self.torrents);
        let mut list: Vec<Status> = torrents.iter().map(|(h, t)| self.status(h, t)).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.info_hash.cmp(&b.info_hash)));
        list
    }

    fn detail(&self, hash: &InfoHash) -> Result<Detail, Refusal> {
        let torrents = lock(&self.torrents);
        let t = torrents.get(hash).ok_or(Refusal::Unknown(*hash))?;
        let status = self.status(hash, t);
        let live = lock(&t.live);
        let (files, pieces, trackers) = match &t.meta {
            Some(meta) => {
                let files = meta
                    .files
                    .iter()
                    .filter(|f| !f.padding)
                    .map(|f| control::File {
                        path: match f.has_path() {
                            true => format!("{}/{}", meta.display_name(), f.display_path()),
                            false => meta.display_name(),
                        },
                        length: f.length,
                        wanted: true,
                    })
                    .collect();
                (files, meta.geometry.num_pieces(), meta.trackers.concat())
            }
            None => (Vec::new(), 0, Vec::new()),
        };
        let have = match (&t.state, &live.snapshot) {
            (State::Idle, _) => pieces,
            (_, Some(s)) => s.have,
            (_, None) => 0,
        };
        Ok(Detail {
            status,
            files,
            peers: live.peers.clone(),
            pieces,
            have,
            trackers,
        })
    }

    fn add(&self, source: Source, dir: Option<PathBuf>) -> Result<InfoHash, Refusal> {
        Shared::add(self, source, dir, Origin::Api, false)
    }

    fn remove(&self, hash: &InfoHash, delete_data: bool) -> Result<(), Refusal> {
        Shared::remove(self, hash, delete_data)
    }

    fn pause(&self, hash: &InfoHash) -> Result<(), Refusal> {
        let mut torrents = lock(&self.torrents);
        let t = torrents.get_mut(hash).ok_or(Refusal::Unknown(*hash))?;
        if t.state == State::Paused {
            return Ok(());
        }
        t.state = State::Paused;
        self.halt(*hash, t);
        if t.origin == Origin::Api {
            self.store
                .set_paused(hash, true)
                .map_err(|e| Refusal::Failed(format!("cannot save the pause: {e}")))?;
        }
        Ok(())
    }

    fn resume(&self, hash: &InfoHash) -> Result<(), Refusal> {
        let mut torrents = lock(&self.torrents);
        let t = torrents.get_mut(hash).ok_or(Refusal::Unknown(*hash))?;
        if t.run.is_some() || t.announce.is_some() {
            return Ok(()); // running
        }
        if t.origin == Origin::Api {
            self.store
                .set_paused(hash, false)
                .map_err(|e| Refusal::Failed(format!("cannot save the resume: {e}")))?;
        }
        self.start(*hash, t);
        Ok(())
    }

    fn metrics(&self) -> Metrics {
        let torrents = lock(&self.torrents);
        let mut session = lock(&self.removed).clone();
        let mut peers = 0;
        let mut list = Vec::with_capacity(torrents.len());
        for (hash, t) in torrents.iter() {
            let live = lock(&t.live);
            let mut counters = control::Counters::default();
            add_counters(&mut counters, &live.counters, &t.counters);
            add_counters(&mut session, &live.counters, &t.counters);
            let connected = if t.run.is_some() { live.peers.len() } else { 0 };
            peers += connected;
            list.push(control::TorrentMetrics {
                info_hash: *hash,
                name: t.name.clone(),
                state: state_of(t, &live),
                peers: connected,
                counters,
            });
        }
        list.sort_by_key(|m| m.info_hash);
        Metrics {
            torrents: list,
            session,
            peers,
            dht_nodes: self
                .session
                .dht()
                .and_then(|d| d.stats(Duration::from_millis(200)))
                .map(|s| s.nodes),
        }
    }
}

#[cfg(test)]
mod tests;
