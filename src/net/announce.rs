//! The announce client: one thread per torrent that keeps the torrent's
//! trackers told about us and hands back the peers they name.
//!
//! Owns: the connections to trackers (BEP 3 over HTTP, HTTPS with the `tls`
//! feature, BEP 15 over UDP through [`crate::proto::udp_tracker`]), the order of
//! trackers in their tiers (BEP 12), all timing (the tracker's `interval`
//! and `min interval`, our own floor, backoff after failed rounds, request
//! deadlines), the session `key`, each tracker's `tracker id`, and the
//! `started`/`completed`/`stopped` events.
//!
//! Does not own: the query string and the response parsing (the pure
//! [`crate::proto::tracker`]), the transfer totals (the orchestrator keeps
//! [`Counters`] current and this thread only reads them), or what happens
//! to peers, warnings and errors (they go out as [`Report`]s through a
//! callback; the orchestrator decides).
//!
//! Protocols are picked by URL scheme in [`announce_once`] alone (and in
//! [`scrape_once`], the one-off scrape behind `shoal info --scrape`); a
//! scheme we cannot speak is an error for that tracker only. A `udp://`
//! tracker gets the same `request_timeout` as an HTTP one, as its
//! overall deadline; [`UdpConfig::within`] says how retransmissions fit
//! in it.

use crate::net::tracker_error::TrackerError;
use crate::net::udp_tracker::{self, UdpConfig};
use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{self, Announce, Event, Response, ResponseError, ScrapeStats};
use crate::util::random::Rng;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest response body we read. A compact reply with 200 peers is
/// about 1.3 KB; even thousands of dictionary peers fit well under this,
/// and a hostile tracker cannot make us buffer more.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// The re-announce interval when a tracker gives none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// The most we wait on a tracker's say-so: a larger `interval` or
/// `min interval` is cut to this, so a typo cannot silence us for weeks.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest wait between failed rounds, however many failed in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// Deadline for the `stopped` announce: shutting down must not wait on a
/// slow tracker, and the tracker forgets us after its interval anyway.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// While the torrent could use more peers, it re-announces early: this
/// long after an answer, then twice as long after each early answer, up
/// to the regular interval, and never sooner than the tracker's
/// `min interval`. A host that joins a fleet after us is found in seconds
/// even by clients that never dial us (Transmission on loopback).
pub const EARLY_FIRST: Duration = Duration::from_secs(2);

/// Redirects we follow; trackers rarely use one, never a chain.
const MAX_REDIRECTS: u32 = 3;

/// A `tracker id` longer than this is ignored rather than echoed in every
/// later query.
const MAX_TRACKER_ID: usize = 256;

/// Tracker-supplied text (failure reasons, warnings) is cut to this many
/// characters before it is reported.
const MAX_MESSAGE_CHARS: usize = 300;

const USER_AGENT: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"));

/// Transfer totals the orchestrator keeps current; the announce thread
/// reads them for each query.
#[derive(Debug, Default)]
pub struct Counters {
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    pub left: AtomicU64,
}

/// What the announce thread needs to know about the torrent and its timing.
#[derive(Debug, Clone)]
pub struct Config {
    /// The metainfo's trackers: tiers in order, each a list of announce
    /// URLs (`announce-list`, or the single `announce` as one tier).
    pub tiers: Vec<Vec<String>>,
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    /// The port we accept peers on.
    pub port: u16,
    /// Peers we ask each tracker for.
    pub numwant: u32,
    /// Deadline for one whole request to one tracker: connect, send, and
    /// read the response. A tracker that hangs costs at most this.
    pub request_timeout: Duration,
    /// Wait after the first failed round (every tracker failed); it doubles
    /// for each further failed round in a row, up to [`MAX_BACKOFF`].
    pub retry_base: Duration,
    /// Floor on the time between regular announces, whatever the tracker
    /// says, so a hostile `interval: 0` cannot make us hammer it.
    pub min_interval: Duration,
    /// Our listening address when it is a specific one (BEP 7 `ipv4=` /
    /// `ipv6=`).
    pub address: Option<std::net::IpAddr>,
}

impl Config {
    /// A configuration with the usual defaults: 50 peers wanted, 15 s per
    /// request, first retry after 15 s, at most one announce per 30 s.
    pub fn new(tiers: Vec<Vec<String>>, info_hash: InfoHash, peer_id: [u8; 20], port: u16) -> Self {
        Config {
            tiers,
            info_hash,
            peer_id,
            port,
            numwant: 50,
            request_timeout: Duration::from_secs(15),
            retry_base: Duration::from_secs(15),
            min_interval: Duration::from_secs(30),
            address: None,
        }
    }
}

/// What the orchestrator tells the announce thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The download finished: announce `completed` now. Once per session,
    /// and never if the first `started` we got through said `left=0` (BEP 3:
    /// a torrent complete when started never sends `completed`).
    Completed,
    /// Whether the torrent could use more peers than it has (see
    /// [`EARLY_FIRST`]).
    WantPeers(bool),
    /// Announce `stopped` to the tracker that last answered (after a
    /// `completed` still owed), within [`STOP_TIMEOUT`], then end the
    /// thread. Dropping the sender means the same.
    Stop,
}

/// What the announce thread tells the orchestrator, through the callback
/// given to [`spawn`]. `tracker` is the announce URL from the metainfo
/// (without our query). Tracker-supplied text is cut to a few hundred
/// characters and its control characters replaced, so it is safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A tracker answered; `peers` may be empty.
    Peers {
        tracker: String,
        peers: Vec<SocketAddr>,
    },
    /// A tracker answered with a `warning message`; sent before its `Peers`.
    Warning { tracker: String, message: String },
    /// One failed attempt at one tracker: connection refused, an HTTP
    /// status, a timeout, a `failure reason`, an unparsable body, or a
    /// scheme we cannot speak. `message` names the tracker, as in
    /// `"http://t/announce: HTTP 500"`. The thread carries on with other
    /// trackers and retries later.
    Error { tracker: String, message: String },
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Peers { tracker, peers } => write!(f, "{tracker}: {} peers", peers.len()),
            Report::Warning { tracker, message } => write!(f, "{tracker}: warning: {message}"),
            Report::Error { message, .. } => f.write_str(message),
        }
    }
}

/// A torrent's announcer, on its own thread ([`spawn`]) or in a
/// [`Pool`]: where its commands go, and whether it has ended.
#[derive(Clone)]
pub struct Handle {
    commands: Sender<Command>,
    /// A pooled announcer is told to look at its commands.
    poke: Option<(Sender<pool::Msg>, pool::Id)>,
    /// Disconnected once the announcer has ended (its `stopped` sent or
    /// timed out).
    ended: Receiver<()>,
}

impl Handle {
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
        if let Some((pool, id)) = &self.poke {
            let _ = pool.send(pool::Msg::Poke(*id));
        }
    }

    /// Waits for the announcer to end, until `deadline` at most; whether
    /// it did.
    pub fn wait_ended(&self, deadline: Instant) -> bool {
        matches!(
            self.ended.recv_deadline(deadline),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

/// Starts the announce thread for one torrent. It announces `started` at
/// once, re-announces on the tracker's interval, reports through `report`,
/// and returns after [`Command::Stop`] (or when every [`Handle`] is
/// dropped) once the `stopped` announce is done or has timed out.
pub fn spawn(
    config: Config,
    counters: Arc<Counters>,
    report: Box<dyn Fn(Report) + Send>,
) -> Handle {
    let (commands, rx) = unbounded();
    let (ended_tx, ended) = bounded::<()>(0);
    let session = Session::new(config, counters, rx, report);
    std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || {
            session.run();
            drop(ended_tx);
        })
        .unwrap_or_else(|e| panic!("cannot start the announce thread: {e}"));
    Handle {
        commands,
        poke: None,
        ended,
    }
}

/// One announce to one tracker, by whichever protocol its URL names.
/// `base` is the tracker's announce URL; `timeout` bounds the whole
/// exchange. The error is a message without the URL, e.g. `"timed out"`,
/// `"HTTP 500"`, `"tracker refused: unregistered torrent"`.
///
/// A `udp://` tracker gets `timeout` as its overall deadline, with
/// retransmissions as [`UdpConfig::within`] spaces them (with the default
/// 15 s: a lost datagram is sent again after 5 s, then 10 s).
pub fn announce_once(
    base: &str,
    req: &Announce,
    timeout: Duration,
) -> Result<Response, TrackerError> {
    match Scheme::of(base)? {
        Scheme::Http => http_announce(base, req, timeout),
        Scheme::Udp => udp_tracker::announce(base, req, &UdpConfig::within(timeout)),
    }
}

/// One scrape (BEP 48 over HTTP(S), BEP 15 over UDP) of one torrent at the
/// tracker whose announce URL is `base`, within `timeout`; for
/// `shoal info --scrape`. Errors as for [`announce_once`]; a tracker that
/// does not know the torrent is an error too. Print them through
/// [`printable`]: they may carry tracker text.
pub fn scrape_once(
    base: &str,
    info_hash: &InfoHash,
    timeout: Duration,
) -> Result<ScrapeStats, TrackerError> {
    match Scheme::of(base)? {
        Scheme::Http => http_scrape(base, info_hash, timeout),
        Scheme::Udp => udp_tracker::scrape(base, info_hash, &UdpConfig::within(timeout)),
    }
}

/// The protocols we speak.
enum Scheme {
    /// HTTP, or HTTPS when built with TLS.
    Http,
    Udp,
}

impl Scheme {
    fn of(base: &str) -> Result<Scheme, TrackerError> {
        let scheme = base
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or(TrackerError::NotAUrl)?;
        match scheme.as_str() {
            "http" => Ok(Scheme::Http),
            "https" if cfg!(feature = "tls") => Ok(Scheme::Http),
            "https" => Err(TrackerError::TlsMissing),
            "udp" => Ok(Scheme::Udp),
            other => Err(TrackerError::UnsupportedScheme(printable(other))),
        }
    }
}

/// BEP 3 over HTTP(S): GET the announce URL, parse.
fn http_announce(base: &str, req: &Announce, timeout: Duration) -> Result<Response, TrackerError> {
    // The query is already percent-encoded byte by byte; the URL goes to
    // ureq whole, and its request line carries the query unchanged.
    let body = http_get(&req.url(base), timeout)?;
    Ok(tracker::parse_response(&body)?)
}

/// BEP 48: GET the scrape URL for this one info hash, parse.
fn http_scrape(
    base: &str,
    info_hash: &InfoHash,
    timeout: Duration,
) -> Result<ScrapeStats, TrackerError> {
    let scrape = tracker::scrape_url(base).ok_or(TrackerError::NoScrapeUrl)?;
    let query = format!("info_hash={}", tracker::percent_encode(&info_hash.0));
    let body = http_get(&tracker::with_query(&scrape, &query), timeout)?;
    tracker::parse_scrape(&body, info_hash)?.ok_or(TrackerError::UnknownTorrent)
}

/// GET `url` and read at most [`MAX_RESPONSE_BYTES`] of the body, all
/// within `timeout`. A status other than 2xx is an error naming the code
/// (and the bencoded `failure reason`, if the body has one).
fn http_get(url: &str, timeout: Duration) -> Result<Vec<u8>, TrackerError> {
    let agent = ureq::Agent::config_builder()
        // A 4xx/5xx is reported with its code; some trackers also put a
        // bencoded `failure reason` in the body.
        .http_status_as_error(false)
        // One budget for DNS, connect, request, headers and body, so a
        // tracker that hangs or trickles costs `timeout` and no more.
        .timeout_global(Some(timeout))
        .max_redirects(MAX_REDIRECTS)
        .user_agent(USER_AGENT)
        // Never from the environment: an HTTP_PROXY meant for other tools
        // must not send a fleet's tracker traffic somewhere else.
        .proxy(None)
        .build()
        .new_agent();
    let mut response = agent.get(url).call().map_err(describe)?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec();
    if !status.is_success() {
        let code = status.as_u16();
        let failure = match body.as_deref().map(tracker::parse_response) {
            Ok(Err(ResponseError::Failure(reason))) => Some(reason),
            _ => None,
        };
        return Err(TrackerError::Http { code, failure });
    }
    body.map_err(describe)
}

/// What a failed HTTP exchange means for us.
fn describe(e: ureq::Error) -> TrackerError {
    match e {
        ureq::Error::Timeout(_) => TrackerError::TimedOut,
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => TrackerError::ConnectionRefused,
            io::ErrorKind::ConnectionReset => TrackerError::ConnectionReset,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TrackerError::TimedOut,
            io::ErrorKind::UnexpectedEof => TrackerError::ClosedEarly,
            _ => TrackerError::Io(e.to_string()),
        },
        ureq::Error::HostNotFound => TrackerError::HostNotFound(None),
        ureq::Error::BodyExceedsLimit(_) => TrackerError::TooLarge(MAX_RESPONSE_BYTES),
        ureq::Error::TooManyRedirects => TrackerError::TooManyRedirects,
        // Only reachable without TLS support: https, or a redirect to it.
        ureq::Error::TlsRequired => TrackerError::TlsMissing,
        ureq::Error::Protocol(p) => TrackerError::BadHttp(p.to_string()),
        other => TrackerError::Io(other.to_string()),
    }
}

/// Whether a `completed` announce is still owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completed {
    NotYet,
    Pending,
    Sent,
}

/// How a round ended.
enum Round {
    /// A tracker answered with these waits.
    Answered(Waits),
    /// Every tracker failed.
    Failed,
    /// A stop command came in between two attempts.
    Stop,
}

/// When to announce again after an answer.
#[derive(Debug, Clone, Copy)]
struct Waits {
    /// The tracker's `interval` (bounded, see [`next_interval`]).
    regular: Duration,
    /// The tracker's `min interval`, if it gave one.
    min: Duration,
}

impl Waits {
    /// The wait after the `early`-th early announce in a row: EARLY_FIRST
    /// doubled, within the tracker's bounds.
    fn early(&self, early: u32) -> Duration {
        EARLY_FIRST
            .saturating_mul(1 << early.min(20))
            .max(self.min)
            .min(self.regular)
    }
}

struct Session {
    config: Config,
    counters: Arc<Counters>,
    commands: Receiver<Command>,
    report: Box<dyn Fn(Report) + Send>,
    /// Random per session; lets a tracker recognise us across IP changes.
    key: u32,
    /// `tracker id` per tracker, echoed in later queries to that tracker.
    tracker_ids: HashMap<String, Vec<u8>>,
    /// Trackers that have accepted our `started` (or `completed`).
    started: HashSet<String>,
    /// The tracker that answered last: the one told `stopped`.
    last_answered: Option<String>,
    completed: Completed,
    /// Failed rounds in a row.
    failures: u32,
    /// The torrent could use more peers: announce early.
    want_peers: bool,
    /// Early announces answered since the last regular one.
    early: u32,
    /// The last answer: when, and its waits.
    answered: Option<(Instant, Waits)>,
}

impl Session {
    fn new(
        mut config: Config,
        counters: Arc<Counters>,
        commands: Receiver<Command>,
        report: Box<dyn Fn(Report) + Send>,
    ) -> Self {
        let mut rng = Rng::new(crate::util::random::seed());
        // BEP 12: shuffle each tier once, so load spreads over a tier's trackers.
        for tier in &mut config.tiers {
            rng.shuffle(tier);
        }
        config.tiers.retain(|t| !t.is_empty());
        Session {
            config,
            counters,
            commands,
            report,
            key: rng.next_u64() as u32,
            tracker_ids: HashMap::new(),
            started: HashSet::new(),
            last_answered: None,
            completed: Completed::NotYet,
            failures: 0,
            want_peers: false,
            early: 0,
            answered: None,
        }
    }

    fn run(mut self) {
        let mut next = self.first_due();
        loop {
            let got = match next {
                Some(at) => self.commands.recv_deadline(at),
                None => self
                    .commands
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(command) => {
                    if !self.command(command, &mut next) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => match self.due_round() {
                    Some(at) => next = Some(at),
                    None => break,
                },
            }
        }
        self.stop();
    }

    /// When the first announce is due: now, or never (`None`: the
    /// torrent has no trackers, so there is nothing to do but wait for
    /// stop).
    fn first_due(&self) -> Option<Instant> {
        if self.config.tiers.is_empty() {
            log::debug!("announce: torrent has no trackers");
            return None;
        }
        Some(Instant::now())
    }

    /// Takes in one command, moving `next` if it makes an announce due
    /// sooner; false if it says stop.
    fn command(&mut self, command: Command, next: &mut Option<Instant>) -> bool {
        match command {
            Command::Completed => {
                if self.note_completed() && next.is_some() {
                    *next = Some(Instant::now());
                }
            }
            Command::WantPeers(want) => {
                self.want_peers = want;
                // Re-plan from the last answer (a failed round's backoff
                // stands, and so does an owed `completed`).
                let owed = self.completed == Completed::Pending;
                if let (Some(at), 0, false) = (self.due(), self.failures, owed) {
                    *next = Some(at);
                }
            }
            Command::Stop => return false,
        }
        true
    }

    /// The round that is due; returns when the next one is, or `None` if
    /// a stop came in during it.
    fn due_round(&mut self) -> Option<Instant> {
        let wait = match self.round() {
            Round::Stop => return None,
            Round::Answered(waits) => {
                self.failures = 0;
                let now = Instant::now();
                // The doubling starts over only after a regular announce
                // (one a whole interval after the last answer), so a wish
                // that comes and goes cannot make us announce more often.
                let regular = self.answered.is_none_or(|(at, w)| now >= at + w.regular);
                self.early = if regular {
                    0
                } else {
                    self.early.saturating_add(1)
                };
                self.answered = Some((now, waits));
                if self.completed == Completed::Pending {
                    // `Completed` came in during the round.
                    Duration::ZERO
                } else {
                    self.due().map_or(waits.regular, |at| at - now)
                }
            }
            Round::Failed => {
                self.failures = self.failures.saturating_add(1);
                backoff(self.config.retry_base, self.failures)
            }
        };
        log::debug!("announce: next in {wait:?}");
        Some(Instant::now() + wait)
    }

    /// When the next announce is due after the last answer: early while
    /// the torrent wants peers, else on the tracker's interval.
    fn due(&self) -> Option<Instant> {
        let (at, waits) = self.answered?;
        let wait = if self.want_peers {
            waits.early(self.early)
        } else {
            waits.regular
        };
        Some(at + wait)
    }

    /// Marks `completed` as owed; true if it was not already.
    fn note_completed(&mut self) -> bool {
        let fresh = self.completed == Completed::NotYet;
        if fresh {
            self.completed = Completed::Pending;
        }
        fresh
    }

    /// Takes the commands that came in meanwhile; true if one says stop.
    fn stop_requested(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Completed) => {
                    self.note_completed();
                }
                Ok(Command::WantPeers(want)) => self.want_peers = want,
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return true,
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    /// BEP 12: tiers in order, trackers within a tier in order, until one
    /// answers; that one moves to the front of its tier.
    fn round(&mut self) -> Round {
        for t in 0..self.config.tiers.len() {
            for i in 0..self.config.tiers[t].len() {
                if self.stop_requested() {
                    return Round::Stop;
                }
                let url = self.config.tiers[t][i].clone();
                // `completed` when owed; otherwise `started` to any tracker
                // that has not yet accepted one from us (the first round,
                // or a fallback tracker met later), so each tracker hears
                // about us from the start.
                let event = if self.completed == Completed::Pending {
                    Some(Event::Completed)
                } else if !self.started.contains(&url) {
                    Some(Event::Started)
                } else {
                    None
                };
                let req = self.request(&url, event, self.config.numwant);
                log::debug!("announce: {url} event={event:?}");
                match announce_once(&url, &req, self.config.request_timeout) {
                    Ok(resp) => {
                        self.config.tiers[t][..=i].rotate_right(1);
                        // BEP 3: no `completed` if we were complete when
                        // the first tracker heard `started`.
                        let complete_at_start = self.last_answered.is_none()
                            && event == Some(Event::Started)
                            && req.left == 0;
                        if event == Some(Event::Completed) || complete_at_start {
                            self.completed = Completed::Sent;
                        }
                        self.started.insert(url.clone());
                        let waits = Waits {
                            regular: next_interval(&resp, self.config.min_interval),
                            min: resp
                                .min_interval
                                .map_or(Duration::ZERO, |s| Duration::from_secs(u64::from(s)))
                                .min(MAX_INTERVAL),
                        };
                        self.answered(url, resp);
                        return Round::Answered(waits);
                    }
                    Err(message) => self.error(url, message),
                }
            }
        }
        Round::Failed
    }

    /// The query for `url`, with the current totals.
    fn request(&self, url: &str, event: Option<Event>, numwant: u32) -> Announce {
        Announce {
            info_hash: self.config.info_hash,
            peer_id: self.config.peer_id,
            port: self.config.port,
            uploaded: self.counters.uploaded.load(Ordering::Relaxed),
            downloaded: self.counters.downloaded.load(Ordering::Relaxed),
            left: self.counters.left.load(Ordering::Relaxed),
            event,
            numwant: Some(numwant),
            key: self.key,
            tracker_id: self.tracker_ids.get(url).cloned(),
            address: self.config.address,
        }
    }

    fn answered(&mut self, url: String, resp: Response) {
        log::debug!(
            "announce: {url}: {} peers, {:?} seeders, {:?} leechers",
            resp.peers.len(),
            resp.complete,
            resp.incomplete
        );
        match resp.tracker_id {
            Some(id) if id.len() <= MAX_TRACKER_ID => {
                self.tracker_ids.insert(url.clone(), id);
            }
            Some(id) => log::debug!("announce: {url}: ignoring {}-byte tracker id", id.len()),
            None => {}
        }
        if let Some(w) = resp.warning {
            (self.report)(Report::Warning {
                tracker: url.clone(),
                message: printable(&w),
            });
        }
        (self.report)(Report::Peers {
            tracker: url.clone(),
            peers: resp.peers,
        });
        self.last_answered = Some(url);
    }

    fn error(&self, url: String, reason: TrackerError) {
        let message = format!("{url}: {}", printable(&reason.to_string()));
        log::debug!("announce: {message}");
        (self.report)(Report::Error {
            tracker: url,
            message,
        });
    }

    /// `stopped` to the tracker that last answered, if any, on a short deadline.
    /// A `completed` still owed goes first, within the same deadline.
    fn stop(mut self) {
        let Some(url) = self.last_answered.take() else {
            return;
        };
        let deadline = Instant::now() + self.config.request_timeout.min(STOP_TIMEOUT);
        let mut events = Vec::with_capacity(2);
        if self.completed == Completed::Pending {
            events.push((Event::Completed, self.config.numwant));
        }
        events.push((Event::Stopped, 0));
        for (event, numwant) in events {
            let timeout = deadline.saturating_duration_since(Instant::now());
            if timeout.is_zero() {
                break;
            }
            let req = self.request(&url, Some(event), numwant);
            log::debug!("announce: {url} event={event:?}");
            if let Err(message) = announce_once(&url, &req, timeout) {
                self.error(url.clone(), message);
            }
        }
    }
}

/// Time until the next regular announce: the tracker's `interval` (or
/// [`DEFAULT_INTERVAL`]), no sooner than its `min interval` nor our
/// `floor`, and no later than [`MAX_INTERVAL`].
fn next_interval(resp: &Response, floor: Duration) -> Duration {
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let interval = resp.interval.map_or(DEFAULT_INTERVAL, secs);
    let min = resp.min_interval.map_or(Duration::ZERO, secs);
    interval.max(min).min(MAX_INTERVAL).max(floor)
}

/// Wait after `failures` failed rounds in a row: `base`, doubling per
/// further failure, capped at [`MAX_BACKOFF`] (or `base`, if larger).
fn backoff(base: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(24);
    base.saturating_mul(1 << doublings)
        .min(MAX_BACKOFF.max(base))
}

/// Tracker text made safe to show: control characters (terminal escapes
/// included) replaced, and cut to [`MAX_MESSAGE_CHARS`].
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_MESSAGE_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if s.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

mod pool;
#[cfg(test)]
mod tests;

pub use pool::Pool;
