//! `shoal tracker`: a small HTTP tracker for private fleets (BEP 3, with
//! compact peers (BEP 23), `peers6` (BEP 7) and scrape (BEP 48)), which
//! also answers UDP (BEP 15) on the same port.
//!
//! Owns: the listening sockets, the lock around the peer store, and the
//! server's start and stop. The accept thread, the pool of worker threads
//! fed by a bounded queue, the per-connection deadline and the request
//! head cap are [`crate::net::http_server`]'s (shared with the API of
//! `shoal serve`), run here with [`WhenFull::Refuse`] and no request
//! bodies. Does not own, each pure and re-exported here: the query
//! syntax ([`query`]: [`parse_announce`], [`parse_scrape`]), the peer store
//! and the bencoded replies ([`swarms`]: [`Swarms`]), its routes
//! ([`http`], on [`crate::proto::http`]), and the UDP front end (`udp`: one more thread, on a
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

use crate::net::http_server::{self, Request, WhenFull};
use crate::proto::http::{Response, Status};
use http::Route;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
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

/// Stack of the UDP thread: it needs a few KiB.
const UDP_STACK: usize = 256 * 1024;

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

/// What the UDP thread shares with the server.
struct Shared {
    swarms: Arc<Mutex<Swarms>>,
    /// The HTTP server's stop flag.
    stop: Arc<AtomicBool>,
}

/// A running tracker. Dropping it asks its threads to stop without
/// waiting; [`Server::stop`] also waits for them.
pub struct Server {
    /// The bound address (with the real port when 0 was asked for).
    pub local_addr: SocketAddr,
    udp: bool,
    swarms: Arc<Mutex<Swarms>>,
    http: http_server::Server,
}

impl Server {
    /// The peer store, shared by the HTTP workers and the UDP thread
    /// (tests inspect it).
    pub fn swarms(&self) -> Arc<Mutex<Swarms>> {
        Arc::clone(&self.swarms)
    }

    /// Where UDP (BEP 15) is answered: [`Server::local_addr`], unless
    /// [`Config::udp`] was off.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.then_some(self.local_addr)
    }

    /// HTTP workers holding a connection now.
    pub fn busy_workers(&self) -> usize {
        self.http.busy_workers()
    }

    /// Connections accepted and waiting for a worker.
    pub fn queued(&self) -> usize {
        self.http.queued()
    }

    /// Stops accepting, lets workers finish the request in hand (queued
    /// connections are closed unanswered) and joins every thread (see
    /// [`http_server::Server::stop`]); returns whether all ended in time.
    pub fn stop(self) -> bool {
        self.http.stop()
    }
}

/// The tracker's answers to what the HTTP server refuses itself: text.
fn refusal(status: Status, why: &str) -> Response {
    Response::text(status, format!("{why}\n"))
}

/// Binds `config.listen` (TCP, and UDP on the same address and port with
/// [`Config::udp`]), starts the accept thread, the workers and the UDP
/// thread, and returns at once.
pub fn start(config: Config) -> io::Result<Server> {
    let (listener, udp) = bind(&config)?;
    let local_addr = listener.local_addr()?;
    let swarms = Arc::new(Mutex::new(Swarms::new(
        config.limits(),
        crate::util::random::seed(),
    )));
    let handler = {
        let swarms = Arc::clone(&swarms);
        move |r: &Request<'_>| {
            let (status, body) = answer(r.head, r.from.ip(), &swarms);
            Response::text(status, body)
        }
    };
    let http_config = http_server::Config {
        name: "tracker",
        workers: config.workers,
        max_connections: config.max_connections,
        request_timeout: config.request_timeout,
        max_body: 0,
        when_full: WhenFull::Refuse,
        busy_message: "tracker busy, retry later",
        refusal,
    };
    let mut http = http_server::start(listener, http_config, Arc::new(handler))?;
    if let Some(socket) = &udp {
        let shared = Shared {
            swarms: Arc::clone(&swarms),
            stop: http.stop_flag(),
        };
        let socket = socket.try_clone()?;
        // If the spawn fails, dropping `http` stops its threads.
        let handle = thread::Builder::new()
            .name("tracker-udp".into())
            .stack_size(UDP_STACK)
            .spawn(move || udp::serve(&socket, &shared))?;
        http.adopt(handle);
    }
    let server = Server {
        local_addr,
        udp: udp.is_some(),
        swarms,
        http,
    };
    let also_udp = if server.udp {
        format!(" and udp://{local_addr}")
    } else {
        String::new()
    };
    log::info!(
        "tracker listening on http://{local_addr}/announce{also_udp} \
         ({} workers, interval {}s)",
        config.workers,
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

/// The status and body for a request head from `source`: the store is
/// locked only for the announce or scrape itself.
fn answer(head: &[u8], source: IpAddr, swarms: &Mutex<Swarms>) -> (Status, Vec<u8>) {
    let route = match http::route(head) {
        Ok(r) => r,
        Err(r) => {
            log::debug!("tracker: {source}: {} {}", r.status.code, r.why);
            return (r.status, format!("{}\n", r.why).into_bytes());
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
    (crate::proto::http::OK, body)
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
