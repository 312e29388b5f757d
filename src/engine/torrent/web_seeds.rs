//! Web seeds (BEP 19) in the orchestrator: when each one is asked for
//! what, what its pieces and failures mean, and when it is dropped.
//!
//! **The swarm comes first.** A web seed is given runs of whole untouched
//! pieces (about [`RUN_BYTES`], never single blocks; from the longest
//! stretch of candidates, at a random place in it), on at most
//! [`CONNECTIONS`] threads, by this rule, checked on every tick and after
//! each of its jobs:
//!
//! 1. pieces that no connected peer has: always (every connection);
//! 2. top-up, one run at a time, any untouched piece: only while the
//!    peers' aggregate download rate (about the last second) is below
//!    [`TOP_UP_FRACTION`] of the rate this web seed delivered on its
//!    recent runs (an unmeasured web seed counts as fast, so it is tried
//!    once). With no peer connected, or none unchoking us, the peers'
//!    rate is zero and the web seed tops up.
//!
//! Nothing is asked before peers had [`GRACE`] to connect and send their
//! bitfields (at once when there is no peer to wait for), so a host in a
//! swarm that has the data does not start on the origin. Endgame
//! duplicates stay with peers: a slow web seed's pieces are finished by
//! them, and a web seed's late copy is dropped as a duplicate.
//!
//! Its pieces go through the same hash check as a peer's; a piece that
//! fails is a strike, and [`MAX_STRIKES`] drop the web seed. A reply that
//! shows it cannot serve ranges, a redirect loop or a URL we cannot fetch
//! drops it at once; other failures back off (2, 4, 8 … s up to
//! [`MAX_BACKOFF`]) and [`MAX_FAILURES`] in a row drop it. A dropped web
//! seed's pieces in flight go back to the picker.

use super::*;
use crate::net::web_seed::{self, Job, WebEvent, Worker};

/// Threads (HTTP connections) per web seed.
const CONNECTIONS: usize = 2;
/// A run asks for about this many bytes: whole pieces, at least one.
const RUN_BYTES: u64 = 2 << 20;
/// Web seed events waiting for the orchestrator. Each may hold a piece,
/// so memory is bounded by (threads + this) pieces.
const WEB_EVENT_QUEUE: usize = 2;
/// Peers get this long after the start to connect and say what they have
/// before any web seed is asked.
const GRACE: Duration = Duration::from_secs(2);
/// See the rule above: peers slower than this fraction of the web seed's
/// rate are topped up.
const TOP_UP_FRACTION: f64 = 0.25;
/// Pieces that failed the hash check that drop a web seed.
const MAX_STRIKES: u32 = 3;
/// Failed jobs in a row that drop a web seed.
const MAX_FAILURES: u32 = 5;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The torrent's web seeds.
pub(super) struct WebSeeds {
    seeds: HashMap<PeerKey, WebSeed>,
    pub events: Receiver<WebEvent>,
    events_tx: Sender<WebEvent>,
    /// Piece bytes received from web seeds (including any that failed).
    pub bytes: u64,
    pub down: RateMeter,
    /// No web seed is asked before this.
    start_at: Instant,
}

struct WebSeed {
    url: String,
    jobs: Sender<Job>,
    /// Jobs in flight, each with its pieces not received yet.
    in_flight: Vec<(Job, Vec<PieceIndex>)>,
    failures: u32,
    retry_at: Instant,
    strikes: u32,
    /// Bytes per second over its recent runs (`None`: not measured yet).
    rate: Option<f64>,
}

impl WebSeeds {
    pub fn new(wait_for_peers: bool) -> WebSeeds {
        let (events_tx, events) = bounded(WEB_EVENT_QUEUE);
        let now = Instant::now();
        WebSeeds {
            seeds: HashMap::new(),
            events,
            events_tx,
            bytes: 0,
            down: RateMeter::default(),
            start_at: if wait_for_peers { now + GRACE } else { now },
        }
    }

    pub fn rate(&self) -> f64 {
        self.down.rate()
    }
}

impl Orchestrator<'_> {
    /// Starts the threads of every web seed of the torrent and of
    /// `--web-seed` (once each), unless there is nothing to download.
    pub(super) fn start_web_seeds(&mut self) {
        if self.picker.is_complete() || self.opts.seed_only {
            return;
        }
        let mut urls: Vec<String> = Vec::new();
        for url in self.meta.web_seeds.iter().chain(&self.opts.web_seeds) {
            if !urls.contains(url) {
                urls.push(url.clone());
            }
        }
        for url in urls {
            let key = self.swarm.new_key();
            let (jobs, rx) = bounded(CONNECTIONS);
            let mut started = 0;
            for n in 0..CONNECTIONS {
                let worker = Worker {
                    seed: key,
                    base: url.clone(),
                    meta: self.meta.clone(),
                    throttle: self.swarm.settings.throttles.down.clone(),
                    jobs: rx.clone(),
                    events: self.web.events_tx.clone(),
                };
                match web_seed::spawn(worker, format!("web-seed-{key}-{n}")) {
                    Ok(()) => started += 1,
                    Err(e) => log::warn!("cannot start a thread for web seed {url}: {e}"),
                }
            }
            if started == 0 {
                continue;
            }
            log::info!("web seed {key}: {url}");
            let seed = WebSeed {
                url,
                jobs,
                in_flight: Vec::new(),
                failures: 0,
                retry_at: Instant::now(),
                strikes: 0,
                rate: None,
            };
            self.web.seeds.insert(key, seed);
        }
    }

    /// Gives idle web seed connections work, by the rule in the module
    /// header.
    pub(super) fn feed_web_seeds(&mut self) {
        let now = Instant::now();
        if self.picker.is_complete() || now < self.web.start_at {
            return;
        }
        let peers_rate = self.down.rate();
        let run = (RUN_BYTES / u64::from(self.meta.geometry.piece_len())).max(1) as u32;
        for (key, seed) in &mut self.web.seeds {
            while seed.in_flight.len() < CONNECTIONS && now >= seed.retry_at {
                let mut pieces = self.picker.pick_run(0, run);
                let slow = seed.rate.is_none_or(|r| peers_rate < TOP_UP_FRACTION * r);
                if pieces.is_empty() && seed.in_flight.is_empty() && slow {
                    pieces = self.picker.pick_run(u32::MAX, run);
                }
                let Some(&first) = pieces.first() else {
                    break;
                };
                let job = Job {
                    first,
                    count: pieces.len() as u32,
                };
                if seed.jobs.try_send(job).is_err() {
                    give_back(&mut self.picker, &pieces);
                    break;
                }
                log::debug!("web seed {key}: pieces {first}+{}", pieces.len());
                seed.in_flight.push((job, pieces));
            }
        }
    }

    pub(super) fn on_web_event(&mut self, e: WebEvent) -> Result<(), TorrentError> {
        match e {
            WebEvent::Piece { seed, piece, data } => self.on_web_piece(seed, piece, &data)?,
            WebEvent::Done {
                seed: key,
                job,
                elapsed,
                result,
            } => {
                // A dropped web seed's jobs were given back when it was.
                let Some(seed) = self.web.seeds.get_mut(&key) else {
                    return Ok(());
                };
                if let Some(i) = seed.in_flight.iter().position(|(j, _)| *j == job) {
                    let (_, left) = seed.in_flight.swap_remove(i);
                    give_back(&mut self.picker, &left);
                }
                match result {
                    Ok(()) => {
                        seed.failures = 0;
                        let bytes: u64 = (0..job.count)
                            .filter_map(|n| self.meta.geometry.piece(job.first.get() + n))
                            .map(|p| u64::from(self.meta.geometry.piece_size(p)))
                            .sum();
                        let rate = bytes as f64 / elapsed.as_secs_f64().max(1e-3);
                        seed.rate = Some(seed.rate.map_or(rate, |old| (old + rate) / 2.0));
                    }
                    Err(e) if e.is_permanent() => self.drop_web_seed(key, &e.to_string()),
                    Err(e) => {
                        seed.failures += 1;
                        if seed.failures >= MAX_FAILURES {
                            let why = format!("{e} ({MAX_FAILURES} failures in a row)");
                            self.drop_web_seed(key, &why);
                        } else {
                            let wait =
                                (Duration::from_secs(1) * (1 << seed.failures)).min(MAX_BACKOFF);
                            seed.retry_at = Instant::now() + wait;
                            log::warn!("web seed: {e}; retrying in {}s", wait.as_secs());
                        }
                    }
                }
                self.fill_all();
            }
        }
        self.feed_web_seeds();
        Ok(())
    }

    /// A whole piece from a web seed: its blocks go the way a peer's do.
    fn on_web_piece(
        &mut self,
        key: PeerKey,
        piece: PieceIndex,
        data: &[u8],
    ) -> Result<(), TorrentError> {
        let Some(seed) = self.web.seeds.get_mut(&key) else {
            return Ok(()); // dropped: its pieces went back to the picker
        };
        for (_, left) in &mut seed.in_flight {
            left.retain(|&p| p != piece);
        }
        let n = data.len() as u64;
        self.web.bytes += n;
        self.web.down.add(n);
        let geometry = self.meta.geometry.clone();
        let mut complete = false;
        for b in geometry.blocks(piece) {
            if let Received::Fresh { complete: whole } = self.picker.received(&b, key) {
                let range = b.begin as usize..(b.begin + b.len) as usize;
                self.storage.write(piece, b.begin, &data[range])?;
                if self.picker.in_endgame() {
                    self.cancel_elsewhere(key, &b);
                }
                complete = whole;
            }
        }
        if complete {
            self.finish_piece(piece)?;
        }
        Ok(())
    }

    /// A piece `key` sent failed its hash check; returns whether `key` is
    /// a web seed (else it is a peer's to answer for).
    pub(super) fn web_strike(&mut self, key: PeerKey) -> bool {
        let Some(seed) = self.web.seeds.get_mut(&key) else {
            return false;
        };
        seed.strikes += 1;
        if seed.strikes >= MAX_STRIKES {
            let why = format!("{} pieces failed the hash check", seed.strikes);
            self.drop_web_seed(key, &why);
        }
        true
    }

    /// Drops a web seed for the rest of the run: its threads end after
    /// their current request and its pieces in flight go back.
    fn drop_web_seed(&mut self, key: PeerKey, why: &str) {
        let Some(seed) = self.web.seeds.remove(&key) else {
            return;
        };
        log::warn!("web seed {} dropped: {why}", seed.url);
        for (_, left) in &seed.in_flight {
            give_back(&mut self.picker, left);
        }
        self.fill_all();
    }
}

/// Pieces a web seed was asked for and will not send: open to others
/// again.
fn give_back(picker: &mut Picker, pieces: &[PieceIndex]) {
    for &piece in pieces {
        picker.abandon_piece(piece);
    }
}
