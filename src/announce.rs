//! The announce client: one thread per torrent that keeps the torrent's
//! trackers told about us and hands back the peers they name.
//!
//! Owns: the connections to trackers (BEP 3 over HTTP, HTTPS with the `tls`
//! feature), the order of trackers in their tiers (BEP 12), all timing
//! (the tracker's `interval` and `min interval`, our own floor, backoff
//! after failed rounds, request deadlines), the session `key`, each
//! tracker's `tracker id`, and the `started`/`completed`/`stopped` events.
//!
//! Does not own: the query string and the response parsing (the pure
//! [`crate::tracker`]), the transfer totals (the orchestrator keeps
//! [`Counters`] current and this thread only reads them), or what happens
//! to peers, warnings and errors (they go out as [`Report`]s through a
//! callback; the orchestrator decides).
//!
//! Protocols are picked by URL scheme in [`announce_once`] alone; UDP
//! trackers (BEP 15) will be one more arm there, and until then a `udp://`
//! tracker is an error for that tracker only.

use crate::metainfo::InfoHash;
use crate::random::Rng;
use crate::tracker::{self, Announce, Event, Response, ResponseError};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
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

/// Redirects we follow; trackers rarely use one, never a chain.
const MAX_REDIRECTS: u32 = 3;

/// A `tracker id` longer than this is ignored rather than echoed in every
/// later query.
const MAX_TRACKER_ID: usize = 256;

/// Tracker-supplied text (failure reasons, warnings) is cut to this many
/// characters before it is reported.
const MAX_MESSAGE_CHARS: usize = 300;

const USER_AGENT: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"));

const TLS_MISSING: &str = "https trackers need shoal built with --features tls";

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

/// Starts the announce thread for one torrent. It announces `started` at
/// once, re-announces on the tracker's interval, reports through `report`,
/// and returns after [`Command::Stop`] (or when `commands` is disconnected)
/// once the `stopped` announce is done or has timed out.
pub fn spawn(
    config: Config,
    counters: Arc<Counters>,
    commands: Receiver<Command>,
    report: Box<dyn Fn(Report) + Send>,
) -> JoinHandle<()> {
    let session = Session::new(config, counters, commands, report);
    std::thread::Builder::new()
        .name("announce".into())
        .spawn(move || session.run())
        .unwrap_or_else(|e| panic!("cannot start the announce thread: {e}"))
}

/// One announce to one tracker, by whichever protocol its URL names.
/// `base` is the tracker's announce URL; `timeout` bounds the whole
/// exchange. The error is a message without the URL, e.g. `"timed out"`,
/// `"HTTP 500"`, `"tracker refused: unregistered torrent"`.
pub fn announce_once(base: &str, req: &Announce, timeout: Duration) -> Result<Response, String> {
    let scheme = base
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .ok_or_else(|| "not a tracker URL".to_string())?;
    match scheme.as_str() {
        "http" => http_announce(base, req, timeout),
        "https" if cfg!(feature = "tls") => http_announce(base, req, timeout),
        "https" => Err(TLS_MISSING.to_string()),
        "udp" => Err("udp trackers (BEP 15) are not supported yet".to_string()),
        other => Err(format!("unsupported tracker scheme '{}'", printable(other))),
    }
}

/// BEP 3 over HTTP(S): GET the announce URL, read at most
/// [`MAX_RESPONSE_BYTES`], parse.
fn http_announce(base: &str, req: &Announce, timeout: Duration) -> Result<Response, String> {
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
    // The query is already percent-encoded byte by byte; the URL goes to
    // ureq whole, and its request line carries the query unchanged.
    let url = req.url(base);
    let mut response = agent.get(&url).call().map_err(describe)?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec();
    if !status.is_success() {
        let code = status.as_u16();
        return Err(match body.as_deref().map(tracker::parse_response) {
            Ok(Err(ResponseError::Failure(reason))) => {
                format!("HTTP {code}: tracker refused: {reason}")
            }
            _ => format!("HTTP {code}"),
        });
    }
    tracker::parse_response(&body.map_err(describe)?).map_err(|e| e.to_string())
}

/// A short message for a failed HTTP exchange.
fn describe(e: ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".into(),
            io::ErrorKind::ConnectionReset => "connection reset".into(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
            io::ErrorKind::UnexpectedEof => "connection closed before the response ended".into(),
            _ => e.to_string(),
        },
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::BodyExceedsLimit(_) => {
            format!("response larger than {MAX_RESPONSE_BYTES} bytes")
        }
        ureq::Error::TooManyRedirects => "too many redirects".into(),
        // Only reachable without TLS support: https, or a redirect to it.
        ureq::Error::TlsRequired => TLS_MISSING.into(),
        ureq::Error::Protocol(p) => format!("bad HTTP response: {p}"),
        other => other.to_string(),
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
    /// A tracker answered; re-announce after this long.
    Answered(Duration),
    /// Every tracker failed.
    Failed,
    /// A stop command came in between two attempts.
    Stop,
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
}

impl Session {
    fn new(
        mut config: Config,
        counters: Arc<Counters>,
        commands: Receiver<Command>,
        report: Box<dyn Fn(Report) + Send>,
    ) -> Self {
        let mut rng = Rng::new(crate::random::seed());
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
        }
    }

    fn run(mut self) {
        // `None`: no trackers, so nothing to do but wait for stop.
        let mut next = (!self.config.tiers.is_empty()).then(Instant::now);
        if next.is_none() {
            log::debug!("announce: torrent has no trackers");
        }
        loop {
            let got = match next {
                Some(at) => self.commands.recv_deadline(at),
                None => self
                    .commands
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(Command::Completed) => {
                    if self.note_completed() && next.is_some() {
                        next = Some(Instant::now());
                    }
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    let wait = match self.round() {
                        Round::Stop => break,
                        Round::Answered(wait) => {
                            self.failures = 0;
                            if self.completed == Completed::Pending {
                                // `Completed` came in during the round.
                                Duration::ZERO
                            } else {
                                wait
                            }
                        }
                        Round::Failed => {
                            self.failures = self.failures.saturating_add(1);
                            backoff(self.config.retry_base, self.failures)
                        }
                    };
                    log::debug!("announce: next in {wait:?}");
                    next = Some(Instant::now() + wait);
                }
            }
        }
        self.stop();
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
                        let wait = next_interval(&resp, self.config.min_interval);
                        self.answered(url, resp);
                        return Round::Answered(wait);
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

    fn error(&self, url: String, reason: String) {
        let message = format!("{url}: {}", printable(&reason));
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
fn printable(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Owned;
    use crossbeam_channel::{unbounded, Sender};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// How long any single wait in these tests may take before it fails.
    const PATIENCE: Duration = Duration::from_secs(5);

    /// What a fake tracker does with one request.
    enum Reply {
        /// 200 with this body.
        Body(Vec<u8>),
        /// This status with this body.
        Status(u16, Vec<u8>),
        /// Keep the connection open and never answer.
        Hang,
    }

    struct Fake {
        url: String,
        /// The head of each request (request line and headers), in order,
        /// sent before the reply is written.
        requests: crossbeam_channel::Receiver<String>,
    }

    /// A tracker on 127.0.0.1 answering the `n`th request (from 0) with
    /// `respond(n, head)`. Its thread ends at the first connection after
    /// the test dropped `requests`.
    fn fake(mut respond: impl FnMut(usize, &str) -> Reply + Send + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let (tx, requests) = unbounded();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let head = read_head(&mut stream);
                let reply = respond(n, &head);
                if tx.send(head).is_err() {
                    return;
                }
                let (code, body) = match reply {
                    Reply::Body(b) => (200, b),
                    Reply::Status(code, b) => (code, b),
                    Reply::Hang => {
                        held.push(stream);
                        continue;
                    }
                };
                let head = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Fake { url, requests }
    }

    fn read_head(stream: &mut TcpStream) -> String {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// The value of `name` in the request line's query, if present.
    fn param<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        let line = head.lines().next()?;
        let target = line.split(' ').nth(1)?;
        let query = target.split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    fn peers_body(interval: i64, peers: &[SocketAddr]) -> Vec<u8> {
        Owned::dict()
            .insert("interval", interval)
            .insert("peers", tracker::encode_compact(peers).0)
            .encode()
    }

    fn some_peers() -> Vec<SocketAddr> {
        vec![
            "10.0.0.1:6881".parse().unwrap(),
            "10.0.0.2:51413".parse().unwrap(),
        ]
    }

    /// A tracker that always answers with [`some_peers`] and `interval`.
    fn good(interval: i64) -> Fake {
        fake(move |_, _| Reply::Body(peers_body(interval, &some_peers())))
    }

    /// A URL on which nothing listens.
    fn dead_url() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/announce", l.local_addr().unwrap())
    }

    fn config(tiers: Vec<Vec<String>>) -> Config {
        Config {
            request_timeout: Duration::from_secs(2),
            retry_base: Duration::from_millis(100),
            min_interval: Duration::from_millis(100),
            ..Config::new(tiers, InfoHash([7; 20]), *b"-SH0100-testtesttest", 6881)
        }
    }

    struct Running {
        commands: Sender<Command>,
        reports: crossbeam_channel::Receiver<Report>,
        handle: JoinHandle<()>,
    }

    fn start(config: Config, counters: Counters) -> Running {
        let (commands, command_rx) = unbounded();
        let (report_tx, reports) = unbounded();
        let handle = spawn(
            config,
            Arc::new(counters),
            command_rx,
            Box::new(move |r| {
                let _ = report_tx.send(r);
            }),
        );
        Running {
            commands,
            reports,
            handle,
        }
    }

    impl Running {
        /// The next report matching `want`, with the ones skipped on the way.
        fn wait_for(&self, want: impl Fn(&Report) -> bool) -> (Report, Vec<Report>) {
            let deadline = Instant::now() + PATIENCE;
            let mut skipped = Vec::new();
            loop {
                match self.reports.recv_deadline(deadline) {
                    Ok(r) if want(&r) => return (r, skipped),
                    Ok(r) => skipped.push(r),
                    Err(e) => panic!("no matching report ({e}); got {skipped:?}"),
                }
            }
        }

        /// Sends `Stop` and waits for the thread to end.
        fn stop(self) -> Vec<Report> {
            self.commands.send(Command::Stop).unwrap();
            finish(self.reports, self.handle)
        }
    }

    /// Waits for the thread to end (its callback, and so the report
    /// channel, is dropped when it does), then joins it.
    fn finish(reports: crossbeam_channel::Receiver<Report>, handle: JoinHandle<()>) -> Vec<Report> {
        let deadline = Instant::now() + PATIENCE;
        let mut rest = Vec::new();
        loop {
            match reports.recv_deadline(deadline) {
                Ok(r) => rest.push(r),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("announce thread did not end"),
            }
        }
        handle.join().unwrap();
        rest
    }

    fn next_request(fake: &Fake) -> String {
        fake.requests
            .recv_timeout(PATIENCE)
            .expect("tracker got no request")
    }

    fn error(url: &str, reason: &str) -> Report {
        Report::Error {
            tracker: url.to_string(),
            message: format!("{url}: {reason}"),
        }
    }

    fn is_peers(r: &Report) -> bool {
        matches!(r, Report::Peers { .. })
    }

    #[test]
    fn started_announce_sends_exact_query_and_reports_peers() {
        let tracker = good(1800);
        let mut info_hash = [0x41; 20];
        info_hash[..8].copy_from_slice(&[0x00, 0xff, b'%', b' ', b'+', b'&', b'=', b'~']);
        let peer_id = *b"-SH0100-\x00\x01\xfe\xff%+ &=a.~";
        let cfg = Config {
            info_hash: InfoHash(info_hash),
            peer_id,
            ..config(vec![vec![tracker.url.clone()]])
        };
        let counters = Counters::default();
        counters.left.store(12345, Ordering::Relaxed);
        counters.uploaded.store(7, Ordering::Relaxed);
        let run = start(cfg, counters);

        let (report, _) = run.wait_for(is_peers);
        assert_eq!(
            report,
            Report::Peers {
                tracker: tracker.url.clone(),
                peers: some_peers()
            }
        );
        let head = next_request(&tracker);
        let line = head.lines().next().unwrap();
        assert!(line.starts_with("GET /announce?info_hash="), "{line}");
        assert!(line.ends_with(" HTTP/1.1"), "{line}");
        // Byte for byte as encoded, not re-encoded or decoded by the client.
        assert_eq!(
            param(&head, "info_hash"),
            Some("%00%FF%25%20%2B%26%3D~AAAAAAAAAAAA")
        );
        assert_eq!(
            param(&head, "peer_id"),
            Some("-SH0100-%00%01%FE%FF%25%2B%20%26%3Da.~")
        );
        assert_eq!(param(&head, "port"), Some("6881"));
        assert_eq!(param(&head, "left"), Some("12345"));
        assert_eq!(param(&head, "uploaded"), Some("7"));
        assert_eq!(param(&head, "downloaded"), Some("0"));
        assert_eq!(param(&head, "event"), Some("started"));
        assert_eq!(param(&head, "compact"), Some("1"));
        assert_eq!(param(&head, "numwant"), Some("50"));
        assert_eq!(param(&head, "key").map(str::len), Some(8));
        assert!(
            head.to_ascii_lowercase().contains("\r\nuser-agent: shoal/"),
            "{head}"
        );

        run.stop();
    }

    #[test]
    fn tier_fallback_reports_each_failure_then_peers() {
        let garbage = fake(|_, _| Reply::Body(b"<html>".to_vec()));
        let dead = dead_url();
        let tracker = good(1800);
        let run = start(
            config(vec![
                vec![dead.clone(), garbage.url.clone()],
                vec![tracker.url.clone()],
            ]),
            Counters::default(),
        );
        let (report, mut errors) = run.wait_for(is_peers);
        assert_eq!(
            report,
            Report::Peers {
                tracker: tracker.url.clone(),
                peers: some_peers()
            }
        );
        // Tier 1 was shuffled: either order.
        errors.sort_by_key(|r| r.to_string());
        let mut want = vec![
            error(&dead, "connection refused"),
            error(
                &garbage.url,
                "tracker response: bencode error at byte 0: unexpected byte '<'",
            ),
        ];
        want.sort_by_key(|r| r.to_string());
        assert_eq!(errors, want);
        // Display is the message, which names the tracker.
        assert_eq!(
            error(&dead, "connection refused").to_string(),
            format!("{dead}: connection refused")
        );
        run.stop();
    }

    #[test]
    fn tracker_that_answers_moves_to_front_of_its_tier() {
        let bad = fake(|_, _| Reply::Status(500, Vec::new()));
        // interval 0: re-announce as soon as the 100 ms floor allows.
        let tracker = good(0);
        let run = start(
            config(vec![vec![bad.url.clone(), tracker.url.clone()]]),
            Counters::default(),
        );
        for _ in 0..3 {
            next_request(&tracker);
        }
        run.stop();
        // Tried at most once, in the first round, if the shuffle put it first.
        assert!(bad.requests.try_iter().count() <= 1);
    }

    #[test]
    fn failed_rounds_retry_with_backoff() {
        let tracker = fake(|n, _| {
            if n < 2 {
                Reply::Status(500, b"<h1>oops</h1>".to_vec())
            } else {
                Reply::Body(peers_body(1800, &some_peers()))
            }
        });
        let began = Instant::now();
        let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
        let (_, before) = run.wait_for(is_peers);
        // 100 ms after the first failure, 200 ms after the second.
        assert!(began.elapsed() >= Duration::from_millis(300));
        let e = error(&tracker.url, "HTTP 500");
        assert_eq!(before, vec![e.clone(), e]);
        run.stop();
        let heads: Vec<String> = tracker.requests.try_iter().collect();
        assert_eq!(heads.len(), 4, "{heads:?}");
        // Every attempt until one is accepted says `started`.
        let events: Vec<_> = heads.iter().map(|h| param(h, "event")).collect();
        assert_eq!(
            events,
            [
                Some("started"),
                Some("started"),
                Some("started"),
                Some("stopped")
            ]
        );
    }

    #[test]
    fn hanging_tracker_times_out() {
        let hang = fake(|_, _| Reply::Hang);
        let cfg = Config {
            request_timeout: Duration::from_millis(300),
            retry_base: Duration::from_secs(60),
            ..config(vec![vec![hang.url.clone()]])
        };
        let began = Instant::now();
        let run = start(cfg, Counters::default());
        let (report, _) = run.wait_for(|r| matches!(r, Report::Error { .. }));
        let took = began.elapsed();
        assert_eq!(report, error(&hang.url, "timed out"));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_millis(2300), "{took:?}");
        // Waiting out a 60 s backoff, yet it stops at once; nothing answered,
        // so there is no `stopped` to send.
        let stop = Instant::now();
        run.stop();
        assert!(stop.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn stop_is_noticed_between_trackers_of_a_round() {
        let hangs: Vec<Fake> = (0..3).map(|_| fake(|_, _| Reply::Hang)).collect();
        let cfg = Config {
            request_timeout: Duration::from_millis(500),
            ..config(hangs.iter().map(|f| vec![f.url.clone()]).collect())
        };
        let run = start(cfg, Counters::default());
        run.wait_for(|r| matches!(r, Report::Error { .. }));
        run.stop();
        assert_eq!(hangs[2].requests.try_iter().count(), 0);
    }

    #[test]
    fn reannounce_never_sooner_than_our_floor() {
        // A hostile `interval: 0`; our floor is 200 ms.
        let tracker = fake(|_, _| {
            Reply::Body(
                Owned::dict()
                    .insert("interval", 0)
                    .insert("tracker id", "tid/1")
                    .insert("peers", Vec::<u8>::new())
                    .encode(),
            )
        });
        let cfg = Config {
            min_interval: Duration::from_millis(200),
            ..config(vec![vec![tracker.url.clone()]])
        };
        let run = start(cfg, Counters::default());
        let mut heads = Vec::new();
        let mut times = Vec::new();
        for _ in 0..3 {
            heads.push(next_request(&tracker));
            times.push(Instant::now());
        }
        run.stop();
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(200),
                "{:?}",
                w[1] - w[0]
            );
        }
        assert_eq!(param(&heads[0], "event"), Some("started"));
        assert_eq!(param(&heads[0], "trackerid"), None);
        for h in &heads[1..] {
            assert_eq!(param(h, "event"), None);
            assert_eq!(param(h, "trackerid"), Some("tid%2F1"));
            assert_eq!(param(h, "key"), param(&heads[0], "key"));
        }
    }

    #[test]
    fn reannounce_respects_trackers_min_interval() {
        let tracker = fake(|_, _| {
            Reply::Body(
                Owned::dict()
                    .insert("interval", 0)
                    .insert("min interval", 1)
                    .insert("peers", Vec::<u8>::new())
                    .encode(),
            )
        });
        let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
        next_request(&tracker);
        let first = Instant::now();
        next_request(&tracker);
        assert!(first.elapsed() >= Duration::from_secs(1));
        run.stop();
    }

    #[test]
    fn completed_once_then_stopped_then_exit() {
        let tracker = good(1800);
        let counters = Counters::default();
        counters.left.store(1, Ordering::Relaxed);
        let run = start(config(vec![vec![tracker.url.clone()]]), counters);
        run.wait_for(is_peers);
        run.commands.send(Command::Completed).unwrap();
        let head = next_request(&tracker); // started
        assert_eq!(param(&head, "event"), Some("started"));
        let head = next_request(&tracker);
        assert_eq!(param(&head, "event"), Some("completed"));
        // A second `Completed` is not announced again.
        run.commands.send(Command::Completed).unwrap();
        run.stop();
        let rest: Vec<String> = tracker.requests.try_iter().collect();
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(param(&rest[0], "event"), Some("stopped"));
        assert_eq!(param(&rest[0], "numwant"), Some("0"));
        assert_eq!(param(&rest[0], "key"), param(&head, "key"));
    }

    fn events(fake: &Fake) -> Vec<String> {
        fake.requests
            .try_iter()
            .map(|h| param(&h, "event").unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn completed_owed_at_stop_goes_before_stopped() {
        let tracker = good(1800);
        let counters = Counters::default();
        counters.left.store(1, Ordering::Relaxed);
        let run = start(config(vec![vec![tracker.url.clone()]]), counters);
        run.wait_for(is_peers);
        run.commands.send(Command::Completed).unwrap();
        run.stop();
        assert_eq!(events(&tracker), ["started", "completed", "stopped"]);
    }

    #[test]
    fn no_completed_when_complete_from_the_start() {
        let tracker = good(1800);
        // left = 0: seeding from the start.
        let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
        run.wait_for(is_peers);
        run.commands.send(Command::Completed).unwrap();
        run.stop();
        assert_eq!(events(&tracker), ["started", "stopped"]);
    }

    #[test]
    fn dropped_command_sender_means_stop() {
        let tracker = good(1800);
        let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
        run.wait_for(is_peers);
        let Running {
            commands,
            reports,
            handle,
        } = run;
        drop(commands);
        finish(reports, handle);
        next_request(&tracker);
        assert_eq!(param(&next_request(&tracker), "event"), Some("stopped"));
    }

    #[test]
    fn failure_reason_is_an_error_and_warning_a_warning() {
        let refusing = fake(|_, _| {
            Reply::Body(
                Owned::dict()
                    .insert("failure reason", "unregistered torrent\x1b[2J")
                    .encode(),
            )
        });
        let warning = fake(|_, _| {
            Reply::Body(
                Owned::dict()
                    .insert("interval", 1800)
                    .insert("warning message", "be nice")
                    .insert("peers", Vec::<u8>::new())
                    .encode(),
            )
        });
        let run = start(
            config(vec![vec![refusing.url.clone()], vec![warning.url.clone()]]),
            Counters::default(),
        );
        let (_, before) = run.wait_for(is_peers);
        assert_eq!(
            before,
            vec![
                // The escape sequence is defused.
                error(
                    &refusing.url,
                    "tracker refused: unregistered torrent\u{fffd}[2J"
                ),
                Report::Warning {
                    tracker: warning.url.clone(),
                    message: "be nice".into()
                },
            ]
        );
        run.stop();
    }

    fn plain_request() -> Announce {
        Announce {
            info_hash: InfoHash([1; 20]),
            peer_id: [2; 20],
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
            numwant: None,
            key: 0,
            tracker_id: None,
        }
    }

    #[test]
    fn http_error_bodies_and_size_cap() {
        let refusing = fake(|_, _| {
            Reply::Status(
                403,
                Owned::dict().insert("failure reason", "passkey").encode(),
            )
        });
        let huge = fake(|_, _| Reply::Body(vec![b'x'; MAX_RESPONSE_BYTES as usize + 1]));
        let t = Duration::from_secs(2);
        let req = plain_request();
        assert_eq!(
            announce_once(&refusing.url, &req, t),
            Err("HTTP 403: tracker refused: passkey".to_string())
        );
        assert_eq!(
            announce_once(&huge.url, &req, t),
            Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"))
        );
    }

    #[test]
    fn schemes_without_network() {
        let req = plain_request();
        let t = Duration::from_secs(1);
        let table = [
            (
                "udp://127.0.0.1:1/announce",
                "udp trackers (BEP 15) are not supported yet",
            ),
            ("wss://127.0.0.1:1/", "unsupported tracker scheme 'wss'"),
            ("127.0.0.1:1/announce", "not a tracker URL"),
        ];
        for (url, want) in table {
            assert_eq!(announce_once(url, &req, t), Err(want.to_string()), "{url}");
        }
        #[cfg(not(feature = "tls"))]
        assert_eq!(
            announce_once("HTTPS://127.0.0.1:1/announce", &req, t),
            Err(TLS_MISSING.to_string())
        );
    }

    #[test]
    fn interval_table() {
        let floor = Duration::from_secs(30);
        let resp = |interval, min_interval| Response {
            interval,
            min_interval,
            ..Response::default()
        };
        let table = [
            (None, None, DEFAULT_INTERVAL),
            (Some(0), None, floor),
            (Some(900), None, Duration::from_secs(900)),
            (Some(60), Some(120), Duration::from_secs(120)),
            (Some(600), Some(60), Duration::from_secs(600)),
            (Some(u32::MAX), None, MAX_INTERVAL),
            (None, Some(u32::MAX), MAX_INTERVAL),
        ];
        for (i, m, want) in table {
            assert_eq!(next_interval(&resp(i, m), floor), want, "{i:?} {m:?}");
        }
    }

    #[test]
    fn backoff_table() {
        let s = Duration::from_secs;
        let table = [
            (s(15), 1, s(15)),
            (s(15), 2, s(30)),
            (s(15), 3, s(60)),
            (s(15), 8, s(1920).min(MAX_BACKOFF)),
            (s(15), u32::MAX, MAX_BACKOFF),
            (s(3600), 5, s(3600)),
        ];
        for (base, n, want) in table {
            assert_eq!(backoff(base, n), want, "{base:?} {n}");
        }
    }

    #[test]
    fn printable_defuses_and_truncates() {
        assert_eq!(printable("ok\r\n\x07"), "ok\u{fffd}\u{fffd}\u{fffd}");
        let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
        let cut = printable(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
