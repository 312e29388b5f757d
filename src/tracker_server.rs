//! `shoal tracker`: a small HTTP tracker for private fleets (BEP 3, with
//! compact peers (BEP 23), `peers6` (BEP 7) and scrape (BEP 48)), which
//! also answers UDP (BEP 15) on the same port.
//!
//! Owns: the listening sockets, the accept thread, a fixed pool of worker
//! threads fed by a bounded queue, the per-connection deadline and the
//! request head cap, the lock around the peer store, and the server's
//! start and stop. Does not own, each pure and re-exported here: the query
//! syntax ([`query`]: [`parse_announce`], [`parse_scrape`]), the peer store
//! and the bencoded replies ([`swarms`]: [`Swarms`]), the bits of HTTP
//! ([`http`]), and the UDP front end (`udp`: one more thread, on a
//! `UdpSocket` bound to the listener's address and port, sharing the
//! store). Nor the command line: `cli` builds a [`Config`] and calls
//! [`run`].
//!
//! ```text
//!  accept thread ──TcpStream──▶ bounded queue ──▶ N workers ──lock, update, unlock──▶ Swarms
//!  (blocking; a stop wakes it  (full, or the address has half the workers: 503)
//!   with its own connection)  (read head ≤ 8 KiB in ≤ request_timeout,
//!                                                   answer, close)                      ▲
//!  udp thread ──datagram in, reply out; lock, update, unlock────────────────────────────┘
//!  (one UdpSocket on the same port; its read timeout polls stop)
//! ```
//!
//! Rules the code keeps:
//!
//! - **A slow client costs one worker, for a bounded time.** The request
//!   head must arrive within `request_timeout` (5 s) and fit in
//!   [`MAX_HEAD`] (8 KiB); the response write has the same deadline. Other
//!   clients are served by the other workers meanwhile, and one address
//!   holds at most half of them. Connections beyond
//!   the pool and its queue (`max_connections` in all) are answered 503 at
//!   once, with a nonblocking write, so the accept thread never waits.
//! - **The store's lock is held only for the in-memory update**: the query
//!   is parsed before taking it and the reply encoded after releasing it,
//!   never across socket I/O.
//! - **Every connection gets one response and is closed** (`Connection:
//!   close`): no keep-alive, so no idle connection holds a worker.
//! - A peer is stored at its connection's source address; `ip=` is ignored
//!   (see [`query`]). Over a dual-stack `[::]` listener, IPv4 clients are
//!   stored as IPv4 ([`canonical`]).
//!
//! - UDP is on by default ([`Config::udp`]). It turns datagrams into
//!   [`AnnounceQuery`]s (with [`Families::V4`] or [`Families::V6`] after
//!   the source's family, as BEP 15 replies carry one family) and
//!   [`Reply`]s into datagrams; its own rules (stateless connection ids,
//!   no amplification) are in `udp`.

mod http;
pub mod query;
mod swarms;
mod udp;

pub use http::MAX_HEAD;
pub use query::{
    numwant, parse_announce, parse_scrape, AnnounceQuery, Families, DEFAULT_NUMWANT, MAX_NUMWANT,
    MAX_SCRAPE_HASHES,
};
pub use swarms::{
    canonical, encode_failure, encode_reply, encode_scrape, Limits, PeerInfo, Reply, Swarms,
    DEFAULT_INTERVAL, DEFAULT_MAX_PEERS, DEFAULT_MAX_PEERS_PER_TORRENT, DEFAULT_MAX_TORRENTS,
    EXPIRY_INTERVALS, MAX_SCRAPE_ALL,
};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use http::Route;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Where `shoal tracker` listens unless told: all IPv4 interfaces, on the
/// port trackers conventionally use.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 6969));

/// Worker threads. Serving a request takes microseconds, so a few suffice
/// for thousands of announces a second; the rest are there so that a
/// handful of slow or silent clients (each holding one worker for up to
/// the request deadline) do not delay everyone else.
pub const DEFAULT_WORKERS: usize = 16;

/// Connections held at once: being served, or queued for a worker. Bounds
/// the descriptors and memory a connection flood can take; beyond it,
/// clients get 503 and retry at their next interval.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long a client has to send its request head, and then to take our
/// response. A real client sends the head in one segment right after
/// connecting; 5 s covers a congested link while bounding how long a
/// silent client can hold a worker.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest `request_timeout` we use, whatever the configuration says:
/// longer only lets silent clients hold workers longer (and keeps deadline
/// arithmetic far from overflow).
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A sanity cap on `workers`, whatever the configuration says: threads
/// are not free, and more than this would not serve a fleet any faster.
const MAX_WORKERS: usize = 1024;

/// Stack per worker. A request needs a few KiB (the head buffer is on the
/// heap); 256 KiB keeps the pool's address space small on 32-bit images
/// where the 2 MiB default for 1024 workers would not fit.
const WORKER_STACK: usize = 256 * 1024;

/// Pause after an accept error other than "no connection" (out of
/// descriptors, most likely): retrying at once would spin; finishing
/// workers free descriptors meanwhile.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// At most one log line per this long for repeated accept errors.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Reads wait at most this long at a time, so that a worker held by a
/// silent client notices a stop within it, not at the request deadline.
const READ_SLICE: Duration = Duration::from_millis(200);

/// After refusing an oversize head, we read and discard what the client
/// still sends, up to this much for up to this long, before closing:
/// closing with unread data makes the kernel send a reset, which can
/// destroy our 431 before the client reads it.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_millis(500);

/// How often [`run`] checks for a stop signal.
const RUN_POLL: Duration = Duration::from_millis(100);

/// With port 0, the port the system picks for TCP may be taken for UDP;
/// we then try this many more times with another.
const BIND_TRIES: u32 = 8;

/// The tracker's settings; [`Config::default`] gives the documented
/// defaults on [`DEFAULT_LISTEN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on: `0.0.0.0:PORT`, `[::]:PORT` (also IPv4 where
    /// the system's sockets are dual-stack), or one address; port 0 picks
    /// a free port ([`Server::local_addr`] says which).
    pub listen: SocketAddr,
    /// The announce interval; see [`Limits::interval`].
    pub interval: Duration,
    pub max_peers_per_torrent: usize,
    pub max_torrents: usize,
    /// Peers in all swarms together.
    pub max_peers: usize,
    /// Connections being served plus those queued for a worker; the queue
    /// always has room for at least one.
    pub max_connections: usize,
    /// Worker threads (at least 1, at most 1024).
    pub workers: usize,
    /// Deadline for reading a request head, and for writing the response
    /// (used between 1 ms and 5 minutes).
    pub request_timeout: Duration,
    /// Also answer BEP 15 UDP on the same address and port (default on).
    pub udp: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            interval: DEFAULT_INTERVAL,
            max_peers_per_torrent: DEFAULT_MAX_PEERS_PER_TORRENT,
            max_torrents: DEFAULT_MAX_TORRENTS,
            max_peers: DEFAULT_MAX_PEERS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: DEFAULT_WORKERS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            udp: true,
        }
    }
}

impl Config {
    fn limits(&self) -> Limits {
        Limits {
            interval: self.interval,
            max_peers_per_torrent: self.max_peers_per_torrent,
            max_torrents: self.max_torrents,
            // A tenth of the store per address, as by default.
            max_torrents_per_ip: (self.max_torrents / 10).max(1),
            max_peers: self.max_peers,
        }
    }
}

/// What the threads share.
struct Shared {
    swarms: Arc<Mutex<Swarms>>,
    stop: AtomicBool,
    request_timeout: Duration,
    /// Workers holding a connection now.
    busy: AtomicUsize,
    /// Connections queued or in service, per client address, and how many
    /// one address may have: half the workers, so that slow clients from
    /// one address cost that address, not everybody (its further
    /// connections get 503 at once). 127.0.0.1 and ::1 are exempt: that is
    /// the tracker's own host, where every client of a local swarm shares
    /// one address.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl Shared {
    fn per_ip(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a connection from `ip` (its /64 for IPv6), unless that has
    /// its share already.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(key) = swarms::client_key(ip) else {
            return true;
        };
        let mut m = self.per_ip();
        let n = m.entry(key).or_default();
        if *n >= self.max_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let Some(key) = swarms::client_key(ip) else {
            return;
        };
        let mut m = self.per_ip();
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// A running tracker. Dropping it asks its threads to stop without
/// waiting; [`Server::stop`] also waits for them.
pub struct Server {
    /// The bound address (with the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    udp: bool,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The workers' queue, to count what waits in it.
    queue: Receiver<(TcpStream, IpAddr)>,
}

impl Server {
    /// The peer store, shared by the HTTP workers and the UDP thread
    /// (tests inspect it).
    pub fn swarms(&self) -> Arc<Mutex<Swarms>> {
        Arc::clone(&self.shared.swarms)
    }

    /// Where UDP (BEP 15) is answered: [`Server::local_addr`], unless
    /// [`Config::udp`] was off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.then_some(self.local_addr)
    }

    /// HTTP workers holding a connection now.
    pub fn busy_workers(&self) -> usize {
        self.shared.busy.load(Ordering::SeqCst)
    }

    /// Connections accepted and waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Stops accepting, lets workers finish the request in hand (queued
    /// connections are closed unanswered) and joins every thread. A worker
    /// stuck writing to a client that does not read is waited for up to the
    /// request deadline, plus a second; returns whether all threads ended
    /// in that time (the stragglers are left to finish on their own).
    pub fn stop(mut self) -> bool {
        self.request_stop();
        let deadline = Instant::now() + self.shared.request_timeout + Duration::from_secs(1);
        let mut threads = std::mem::take(&mut self.threads);
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            thread::sleep(Duration::from_millis(10));
        }
        let mut all = true;
        for t in threads.drain(..) {
            if t.is_finished() {
                // A panic was already reported by the panic hook.
                let _ = t.join();
            } else {
                all = false;
            }
        }
        if all {
            log::info!("tracker on {} stopped", self.local_addr);
        } else {
            log::warn!(
                "tracker on {} stopped; some workers were still busy",
                self.local_addr
            );
        }
        all
    }
}

impl Server {
    /// Tells every thread to stop, and wakes the accept thread.
    fn request_stop(&self) {
        if !self.shared.stop.swap(true, Ordering::SeqCst) {
            crate::net::listener::wake_accept(self.local_addr);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.request_stop();
    }
}

/// Binds `config.listen` (TCP, and UDP on the same address and port with
/// [`Config::udp`]), starts the accept thread, the workers and the UDP
/// thread, and returns at once.
pub fn start(config: Config) -> io::Result<Server> {
    let (listener, udp) = bind(&config)?;
    // Accepts block (no polling delay on any connection); a stop wakes the
    // accept thread with a connection of its own.
    let local_addr = listener.local_addr()?;
    let workers = config.workers.clamp(1, MAX_WORKERS);
    let queue = config.max_connections.saturating_sub(workers).max(1);
    let shared = Arc::new(Shared {
        swarms: Arc::new(Mutex::new(Swarms::new(
            config.limits(),
            crate::util::random::seed(),
        ))),
        stop: AtomicBool::new(false),
        request_timeout: (config.request_timeout)
            .clamp(Duration::from_millis(1), MAX_REQUEST_TIMEOUT),
        busy: AtomicUsize::new(0),
        per_ip: Mutex::default(),
        max_per_ip: (workers / 2).max(1),
    });
    let (tx, rx) = bounded::<(TcpStream, IpAddr)>(queue);
    // If a spawn fails, dropping `server` sets the stop flag and dropping
    // the sender ends the workers already started.
    let mut server = Server {
        local_addr,
        udp: udp.is_some(),
        shared: Arc::clone(&shared),
        threads: Vec::with_capacity(workers + 2),
        queue: rx.clone(),
    };
    for n in 0..workers {
        let (rx, shared) = (rx.clone(), Arc::clone(&shared));
        let handle = thread::Builder::new()
            .name(format!("tracker-{n}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker(&rx, &shared))?;
        server.threads.push(handle);
    }
    drop(rx);
    if let Some(socket) = udp {
        let shared = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("tracker-udp".into())
            .stack_size(WORKER_STACK)
            .spawn(move || udp::serve(&socket, &shared))?;
        server.threads.push(handle);
    }
    let handle = thread::Builder::new()
        .name("tracker-accept".into())
        .stack_size(WORKER_STACK)
        .spawn(move || accept_loop(&listener, &tx, &shared))?;
    server.threads.push(handle);
    let also_udp = if server.udp {
        format!(" and udp://{local_addr}")
    } else {
        String::new()
    };
    log::info!(
        "tracker listening on http://{local_addr}/announce{also_udp} \
         ({workers} workers, interval {}s)",
        config.interval.as_secs()
    );
    Ok(server)
}

/// The TCP listener on `config.listen` and, with [`Config::udp`], a UDP
/// socket on the address and port it got.
fn bind(config: &Config) -> io::Result<(TcpListener, Option<UdpSocket>)> {
    let mut tries = 0;
    loop {
        let listener = TcpListener::bind(config.listen)?;
        if !config.udp {
            return Ok((listener, None));
        }
        let addr = listener.local_addr()?;
        match UdpSocket::bind(addr) {
            Ok(socket) => return Ok((listener, Some(socket))),
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse
                    && config.listen.port() == 0
                    && tries < BIND_TRIES =>
            {
                tries += 1;
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("udp {addr}: {e}"))),
        }
    }
}

/// Runs a tracker until SIGINT or SIGTERM ([`crate::disk::sys::stop_requested`];
/// the caller installs the handlers), then stops it.
pub fn run(config: Config, started: impl FnOnce(&Server)) -> io::Result<()> {
    let server = start(config)?;
    started(&server);
    while !crate::disk::sys::stop_requested() {
        thread::sleep(RUN_POLL);
    }
    server.stop();
    Ok(())
}

fn accept_loop(listener: &TcpListener, queue: &Sender<(TcpStream, IpAddr)>, shared: &Shared) {
    let mut last_error_log: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, from)) => {
                let ip = swarms::canonical(from.ip());
                if !shared.admit(ip) {
                    log::debug!("tracker: {from}: too many connections from it, answered 503");
                    refuse(stream);
                    continue;
                }
                if let Err(
                    TrySendError::Full((stream, _)) | TrySendError::Disconnected((stream, _)),
                ) = queue.try_send((stream, ip))
                {
                    shared.release(ip);
                    log::debug!("tracker: {from}: all workers busy, answered 503");
                    refuse(stream);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY) {
                    log::warn!("tracker: accepting connections: {e}");
                    last_error_log = Some(Instant::now());
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
}

/// 503 without ever blocking: a new socket's empty send buffer takes the
/// whole short response, and if it does not, the client gets a bare close.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    // Take in what already arrived, so closing does not reset the
    // connection (and maybe destroy the 503) for that reason.
    let _ = stream.read(&mut [0u8; 4096]);
    let _ = stream.write(&http::response(http::BUSY, b"tracker busy, retry later\n"));
    let _ = stream.shutdown(Shutdown::Write);
}

fn worker(queue: &Receiver<(TcpStream, IpAddr)>, shared: &Shared) {
    // Ends when the accept thread, the only sender, has ended.
    for (stream, ip) in queue.iter() {
        let _counted = Release(shared, ip);
        if shared.stop.load(Ordering::SeqCst) {
            continue;
        }
        shared.busy.fetch_add(1, Ordering::SeqCst);
        // A bug in a handler costs its one request, not a worker.
        if panic::catch_unwind(AssertUnwindSafe(|| serve(stream, shared))).is_err() {
            log::error!("tracker: a request handler panicked; its connection was dropped");
        }
        shared.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Gives a connection's place back to its address when dropped (also when
/// its handler panics).
struct Release<'a>(&'a Shared, IpAddr);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Why no request head was read.
#[derive(Debug)]
enum ReadError {
    TooLarge,
    Closed,
    TimedOut,
    Stopped,
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::TooLarge => write!(f, "request head over {MAX_HEAD} bytes"),
            ReadError::Closed => write!(f, "closed before the end of the request head"),
            ReadError::TimedOut => write!(f, "no complete request head in time"),
            ReadError::Stopped => write!(f, "tracker stopping"),
            ReadError::Io(e) => write!(f, "reading the request: {e}"),
        }
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Ok(from) = stream.peer_addr() else { return };
    // Accepted sockets inherit the listener's nonblocking mode on some
    // systems (the BSDs); we want deadlines instead.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let deadline = Instant::now() + shared.request_timeout;
    let _ = stream.set_write_timeout(Some(shared.request_timeout));
    match read_head(&mut stream, deadline, &shared.stop) {
        Ok(head) => {
            let (status, body) = answer(&head, from.ip(), &shared.swarms);
            let _ = stream.write_all(&http::response(status, &body));
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(e @ ReadError::TooLarge) => {
            log::debug!("tracker: {from}: {e}");
            let body = format!("request head over {MAX_HEAD} bytes\n");
            let _ = stream.write_all(&http::response(http::HEAD_TOO_LARGE, body.as_bytes()));
            let _ = stream.shutdown(Shutdown::Write);
            linger(&mut stream, &shared.stop);
        }
        Err(e) => log::debug!("tracker: {from}: {e}"),
    }
}

/// Reads until the end of the request head, within `deadline` and
/// [`MAX_HEAD`]. Bytes after the head (a body, a pipelined request) are
/// ignored.
fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Vec<u8>, ReadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(ReadError::Stopped);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::TimedOut);
        }
        stream
            .set_read_timeout(Some(left.min(READ_SLICE)))
            .map_err(ReadError::Io)?;
        let room = MAX_HEAD.saturating_sub(head.len()).min(chunk.len());
        let Some(buf) = chunk.get_mut(..room).filter(|b| !b.is_empty()) else {
            return Err(ReadError::TooLarge);
        };
        match stream.read(buf) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(n) => {
                // The blank line may straddle the previous read.
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(buf.get(..n).unwrap_or_default());
                if let Some(end) = head.get(from..).and_then(http::head_end) {
                    head.truncate(from + end);
                    return Ok(head);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Reads and discards what the client still sends, within
/// [`LINGER_BYTES`] and [`LINGER_TIME`] (see there).
fn linger(stream: &mut TcpStream, stop: &AtomicBool) {
    let deadline = Instant::now() + LINGER_TIME;
    let mut chunk = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES && !stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// The status and body for a request head from `source`: the store is
/// locked only for the announce or scrape itself.
fn answer(head: &[u8], source: IpAddr, swarms: &Mutex<Swarms>) -> (http::Status, Vec<u8>) {
    let route = match http::route(head) {
        Ok(r) => r,
        Err((status, why)) => {
            log::debug!("tracker: {source}: {} {why}", status.code);
            return (status, format!("{why}\n").into_bytes());
        }
    };
    let body = match route {
        Route::Announce(query) => match parse_announce(query) {
            Err(why) => {
                log::debug!("tracker: {source}: bad announce: {why}");
                encode_failure(&why)
            }
            Ok(q) => {
                let result = lock(swarms).announce(&q, source, Instant::now());
                match result {
                    Ok(reply) => {
                        log_announce("http", source, &q, &reply);
                        encode_reply(&reply, q.compact, q.no_peer_id)
                    }
                    Err(why) => {
                        log::debug!("tracker: {source}: announce refused: {why}");
                        encode_failure(&why)
                    }
                }
            }
        },
        Route::Scrape(query) => match parse_scrape(query) {
            Err(why) => {
                log::debug!("tracker: {source}: bad scrape: {why}");
                encode_failure(&why)
            }
            Ok(hashes) => {
                let files = lock(swarms).scrape(&hashes, Instant::now());
                log::debug!("tracker: {source}: scrape of {} torrents", files.len());
                encode_scrape(&files)
            }
        },
    };
    (http::OK, body)
}

/// The store, even if a panic elsewhere poisoned its lock: every update
/// keeps it usable (counts saturate, indices are checked), and a tracker
/// that refused all requests after one bug would help no one.
fn lock(swarms: &Mutex<Swarms>) -> MutexGuard<'_, Swarms> {
    swarms.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One debug line per answered announce, the same for both front ends.
fn log_announce(via: &str, from: IpAddr, q: &AnnounceQuery, reply: &Reply) {
    log::debug!(
        "tracker: {via} {from}:{} announce {} event={:?} left={:?}: \
         {} peers, {} seeders, {} leechers",
        q.port,
        q.info_hash.hex(),
        q.event,
        q.left,
        reply.peers.len(),
        reply.complete,
        reply.incomplete
    );
}

#[cfg(test)]
mod tests;
