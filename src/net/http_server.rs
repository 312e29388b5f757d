//! A small blocking HTTP/1.x server: the skeleton of `shoal tracker` and
//! of the API of `shoal serve`.
//!
//! Owns: the accept thread, a fixed pool of worker threads fed by a
//! bounded queue, the per-connection deadline, the head and body size
//! caps, the per-address connection cap, what happens when every worker is
//! busy ([`WhenFull`]), and the server's stop. Does not own: what a
//! request means (a [`Handler`] turns a [`Request`] into a
//! [`Response`]), or the bytes of HTTP ([`crate::proto::http`]).
//!
//! ```text
//!  accept thread ──TcpStream──▶ bounded queue ──▶ N workers: read head (≤ 8 KiB) and body
//!  (blocking; a stop wakes it   (full: 503, or cut    (≤ max_body) within the deadline,
//!   with its own connection)     the slowest sender)   handler, write, close
//! ```
//!
//! Rules the code keeps:
//!
//! - **A slow client costs one worker, for a bounded time.** The request
//!   must arrive within `request_timeout` and fit the caps (431, 413
//!   otherwise); the response write has the same deadline. One address
//!   holds at most half of the workers (127.0.0.1 and ::1 are exempt:
//!   on a server's own host every client shares one address).
//! - **The accept thread never waits on a client.** A connection it cannot
//!   place is answered at once with a nonblocking write.
//! - **Every connection gets one response and is closed** (`Connection:
//!   close`): no keep-alive, so no idle connection holds a worker.
//! - A bug in a handler (a panic) costs its one request, not a worker.

use crate::proto::http::{
    body_length, head_end, Refused, Response, Status, BUSY, HEAD_TOO_LARGE, MAX_HEAD,
    PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT,
};
use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The longest `request_timeout` we use, whatever the configuration says:
/// longer only lets silent clients hold workers longer (and keeps deadline
/// arithmetic far from overflow).
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A sanity cap on `workers`: threads are not free.
const MAX_WORKERS: usize = 1024;

/// Stack per worker. A request needs a few KiB (buffers are on the heap);
/// 256 KiB keeps the pool's address space small on 32-bit images.
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

/// After refusing a request before reading all of it, we read and discard
/// what the client still sends, up to this much for up to this long,
/// before closing: closing with unread data makes the kernel send a reset,
/// which can destroy our answer before the client reads it.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIME: Duration = Duration::from_millis(500);

/// With [`WhenFull::CutSlowest`], how long the accept thread tries to
/// place a connection (cutting slow senders loose) before answering 503,
/// and how long it waits for a worker between two tries. Only workers busy
/// with requests already read (never a slow sender) make it wait this long.
const HANDOVER: Duration = Duration::from_secs(1);
const HANDOVER_STEP: Duration = Duration::from_millis(10);

/// A body gets this much time per MiB on top of the request deadline: a
/// 16 MiB upload over a slow link is not a slow client.
const BODY_TIME_PER_MIB: Duration = Duration::from_secs(1);

/// What to do with a new connection when every worker is busy and the
/// queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Answer 503 at once (the tracker: clients retry at their interval).
    Refuse,
    /// Cut off the connection that has been sending its request the
    /// longest (it gets 408) and serve the new one in its place; 503 only
    /// when no worker is waiting on a client for a second. A well-behaved client sends
    /// its request at once, so a flood of slow or silent connections
    /// cannot lock it out (the API). The queue is then empty: a newcomer
    /// goes straight to a worker.
    CutSlowest,
}

/// A server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// In thread names and log lines (`tracker`, `api`).
    pub name: &'static str,
    /// Worker threads (at least 1, at most 1024).
    pub workers: usize,
    /// Connections being served plus those queued for a worker (the queue
    /// has room for at least one); with [`WhenFull::CutSlowest`], the
    /// workers only.
    pub max_connections: usize,
    /// Deadline for reading a request, and for writing the response (used
    /// between 1 ms and 5 minutes).
    pub request_timeout: Duration,
    /// The largest request body read (`Content-Length`; 413 beyond). 0:
    /// bodies are not read at all, and headers not looked at.
    pub max_body: usize,
    pub when_full: WhenFull,
    /// The body of 503 when full, and of 408 for a connection cut off.
    pub busy_message: &'static str,
    /// Formats the responses the server sends itself (431, 413, 408, 503,
    /// malformed framing) in the server's style.
    pub refusal: fn(Status, &str) -> Response,
}

/// A request as read: its head (through the blank line) and its body
/// (empty unless [`Config::max_body`] allows one).
#[derive(Debug)]
pub struct Request<'a> {
    pub head: &'a [u8],
    pub body: &'a [u8],
    pub from: SocketAddr,
}

/// What answers requests; called on worker threads, many at a time.
pub trait Handler: Send + Sync {
    fn handle(&self, request: &Request<'_>) -> Response;
}

impl<F: Fn(&Request<'_>) -> Response + Send + Sync> Handler for F {
    fn handle(&self, request: &Request<'_>) -> Response {
        self(request)
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack `[::]` listener) as the
/// IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whose share a connection counts against: the IPv4 address, or the IPv6
/// /64 (one host or site gets a /64 and can use any address in it); `None`
/// for the server's own host (127.0.0.1, ::1), where every client shares
/// one address and no limit applies.
pub fn client_key(ip: IpAddr) -> Option<IpAddr> {
    match canonical(ip) {
        ip if ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(Ipv6Addr::LOCALHOST) => None,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            Some(IpAddr::from(o))
        }
        v4 => Some(v4),
    }
}

/// An accepted connection, the address it counts against, and when it
/// was accepted (the order in which [`WhenFull::CutSlowest`] cuts).
struct Conn {
    stream: TcpStream,
    ip: IpAddr,
    accepted: Instant,
}

/// A connection whose request is still arriving, as the accept thread
/// sees it, so that [`WhenFull::CutSlowest`] can cut it off.
struct Sender_ {
    id: u64,
    since: Instant,
    stream: TcpStream,
    cut: Arc<AtomicBool>,
}

/// What the threads share.
struct Shared {
    config: Config,
    handler: Arc<dyn Handler>,
    stop: Arc<AtomicBool>,
    /// Workers holding a connection now.
    busy: AtomicUsize,
    /// Connections queued or in service, per client address, and how many
    /// one address may have: half the workers.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    /// With [`WhenFull::CutSlowest`]: connections still sending.
    sending: Mutex<Vec<Sender_>>,
    /// Worker threads.
    workers: usize,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change leaves the data valid, so a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Counts a connection from `ip` (its /64 for IPv6), unless that has
    /// its share already.
    fn admit(&self, ip: IpAddr) -> bool {
        let Some(key) = client_key(ip) else {
            return true;
        };
        let mut m = lock(&self.per_ip);
        let n = m.entry(key).or_default();
        if *n >= self.max_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let Some(key) = client_key(ip) else {
            return;
        };
        let mut m = lock(&self.per_ip);
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }

    /// Cuts off the connection that has been sending its request the
    /// longest, unless one cut off is still on its way out (its worker will
    /// be free in a moment: one cut per connection placed).
    fn cut_slowest(&self) {
        let sending = lock(&self.sending);
        if sending.iter().any(|s| s.cut.load(Ordering::SeqCst)) {
            return;
        }
        if let Some(slowest) = sending.iter().min_by_key(|s| s.since) {
            slowest.cut.store(true, Ordering::SeqCst);
            // Wakes its worker's read at once (it returns 0); the worker
            // then answers 408 and closes.
            let _ = slowest.stream.shutdown(Shutdown::Read);
        }
    }

    fn refusal(&self, status: Status, why: &str) -> Response {
        (self.config.refusal)(status, why)
    }
}

/// A running server. Dropping it asks its threads to stop without
/// waiting; [`Server::stop`] also waits for them.
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The workers' queue, to count what waits in it.
    queue: Receiver<Conn>,
}

impl Server {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Workers holding a connection now.
    pub fn busy_workers(&self) -> usize {
        self.shared.busy.load(Ordering::SeqCst)
    }

    /// Connections accepted and waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The flag [`Server::stop`] (or a drop) sets: for threads of the
    /// server's owner that stop with it (see [`Server::adopt`]).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared.stop)
    }

    /// A thread that watches [`Server::stop_flag`], to be joined by
    /// [`Server::stop`] with the server's own.
    pub fn adopt(&mut self, thread: JoinHandle<()>) {
        self.threads.push(thread);
    }

    /// Stops accepting, lets workers finish the request in hand (queued
    /// connections are closed unanswered) and joins every thread. A worker
    /// stuck writing to a client that does not read is waited for up to the
    /// request deadline, plus a second; returns whether all threads ended
    /// in that time (the stragglers are left to finish on their own).
    pub fn stop(mut self) -> bool {
        self.request_stop();
        let deadline = Instant::now() + self.shared.config.request_timeout + Duration::from_secs(1);
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
        let name = self.shared.config.name;
        if all {
            log::info!("{name} on {} stopped", self.local_addr);
        } else {
            log::warn!(
                "{name} on {} stopped; some workers were still busy",
                self.local_addr
            );
        }
        all
    }

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

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.shared.config.name)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Starts the accept thread and the workers on `listener` and returns at
/// once.
pub fn start(
    listener: TcpListener,
    mut config: Config,
    handler: Arc<dyn Handler>,
) -> io::Result<Server> {
    // Accepts block (no polling delay on any connection); a stop wakes the
    // accept thread with a connection of its own.
    let local_addr = listener.local_addr()?;
    let workers = config.workers.clamp(1, MAX_WORKERS);
    config.request_timeout =
        (config.request_timeout).clamp(Duration::from_millis(1), MAX_REQUEST_TIMEOUT);
    let queue = match config.when_full {
        WhenFull::Refuse => config.max_connections.saturating_sub(workers).max(1),
        WhenFull::CutSlowest => 0,
    };
    let name = config.name;
    let shared = Arc::new(Shared {
        config,
        handler,
        stop: Arc::new(AtomicBool::new(false)),
        busy: AtomicUsize::new(0),
        per_ip: Mutex::default(),
        max_per_ip: (workers / 2).max(1),
        sending: Mutex::default(),
        workers,
        next_id: AtomicU64::new(0),
    });
    let (tx, rx) = bounded::<Conn>(queue);
    // If a spawn fails, dropping `server` sets the stop flag and dropping
    // the sender ends the workers already started.
    let mut server = Server {
        local_addr,
        shared: Arc::clone(&shared),
        threads: Vec::with_capacity(workers + 2),
        queue: rx.clone(),
    };
    for n in 0..workers {
        let (rx, shared) = (rx.clone(), Arc::clone(&shared));
        let handle = thread::Builder::new()
            .name(format!("{name}-{n}"))
            .stack_size(WORKER_STACK)
            .spawn(move || worker(&rx, &shared))?;
        server.threads.push(handle);
    }
    drop(rx);
    let handle = thread::Builder::new()
        .name(format!("{name}-accept"))
        .stack_size(WORKER_STACK)
        .spawn(move || accept_loop(&listener, &tx, &shared))?;
    server.threads.push(handle);
    Ok(server)
}

fn accept_loop(listener: &TcpListener, queue: &Sender<Conn>, shared: &Shared) {
    let name = shared.config.name;
    let mut last_error_log: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, from)) => {
                let ip = canonical(from.ip());
                if !shared.admit(ip) {
                    log::debug!("{name}: {from}: too many connections from it, answered 503");
                    refuse(stream, &shared.refusal(BUSY, shared.config.busy_message));
                    continue;
                }
                let conn = Conn {
                    stream,
                    ip,
                    accepted: Instant::now(),
                };
                if let Err(conn) = place(queue, conn, shared) {
                    shared.release(ip);
                    log::debug!("{name}: {from}: all workers busy, answered 503");
                    refuse(
                        conn.stream,
                        &shared.refusal(BUSY, shared.config.busy_message),
                    );
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
                    log::warn!("{name}: accepting connections: {e}");
                    last_error_log = Some(Instant::now());
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
            }
        }
    }
}

/// Hands a connection to a worker, by the server's [`WhenFull`] rule; the
/// connection back if there is no room for it.
fn place(queue: &Sender<Conn>, conn: Conn, shared: &Shared) -> Result<(), Conn> {
    let conn = match queue.try_send(conn) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => c,
    };
    if shared.config.when_full == WhenFull::Refuse || shared.stop.load(Ordering::SeqCst) {
        return Err(conn);
    }
    // Until a worker takes it: once every worker holds a connection, cut a
    // slow sender loose, and wait a moment for its worker (or any other) to
    // come back for it. A worker that is not busy is on its way back to
    // the queue (just started, or between two connections): it is waited
    // for, and nobody is cut. Workers that have just taken a connection
    // are not listed as sending yet, hence the retries.
    let deadline = Instant::now() + HANDOVER;
    let mut conn = conn;
    loop {
        if shared.busy.load(Ordering::SeqCst) >= shared.workers {
            shared.cut_slowest();
        }
        conn = match queue.send_timeout(conn, HANDOVER_STEP) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(c)) if Instant::now() < deadline => c,
            Err(SendTimeoutError::Timeout(c) | SendTimeoutError::Disconnected(c)) => return Err(c),
        };
    }
}

/// A short answer without ever blocking: a new socket's empty send buffer
/// takes it whole, and if it does not, the client gets a bare close.
fn refuse(mut stream: TcpStream, response: &Response) {
    let _ = stream.set_nonblocking(true);
    // Take in what already arrived, so closing does not reset the
    // connection (and maybe destroy the answer) for that reason.
    let _ = stream.read(&mut [0u8; 4096]);
    let _ = stream.write(&response.to_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

fn worker(queue: &Receiver<Conn>, shared: &Shared) {
    // Ends when the accept thread, the only sender, has ended.
    for conn in queue.iter() {
        let _counted = Release(shared, conn.ip);
        if shared.stop.load(Ordering::SeqCst) {
            continue;
        }
        shared.busy.fetch_add(1, Ordering::SeqCst);
        // A bug in a handler costs its one request, not a worker.
        if panic::catch_unwind(AssertUnwindSafe(|| {
            serve(conn.stream, conn.accepted, shared)
        }))
        .is_err()
        {
            log::error!(
                "{}: a request handler panicked; its connection was dropped",
                shared.config.name
            );
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

/// Lists a connection as sending (for [`WhenFull::CutSlowest`]) while it
/// lives.
struct Sending<'a> {
    shared: &'a Shared,
    id: u64,
    cut: Arc<AtomicBool>,
}

impl<'a> Sending<'a> {
    fn new(shared: &'a Shared, stream: &TcpStream, since: Instant) -> Sending<'a> {
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let cut = Arc::new(AtomicBool::new(false));
        if shared.config.when_full == WhenFull::CutSlowest {
            if let Ok(stream) = stream.try_clone() {
                lock(&shared.sending).push(Sender_ {
                    id,
                    since,
                    stream,
                    cut: Arc::clone(&cut),
                });
            }
        }
        Sending { shared, id, cut }
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.shared.config.when_full == WhenFull::CutSlowest {
            lock(&self.shared.sending).retain(|s| s.id != self.id);
        }
    }
}

/// Why no request was read.
#[derive(Debug)]
enum ReadError {
    /// Answer with this and close.
    Refused(Refused),
    Closed,
    TimedOut,
    /// Cut off for a newcomer ([`WhenFull::CutSlowest`]).
    Cut,
    Stopped,
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Refused(r) => write!(f, "{}: {}", r.status, r.why),
            ReadError::Closed => write!(f, "closed before the end of the request"),
            ReadError::TimedOut => write!(f, "no complete request in time"),
            ReadError::Cut => write!(f, "cut off for a newer connection"),
            ReadError::Stopped => write!(f, "server stopping"),
            ReadError::Io(e) => write!(f, "reading the request: {e}"),
        }
    }
}

fn serve(mut stream: TcpStream, accepted: Instant, shared: &Shared) {
    let Ok(from) = stream.peer_addr() else { return };
    let name = shared.config.name;
    // Accepted sockets inherit the listener's nonblocking mode on some
    // systems (the BSDs); we want deadlines instead.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let timeout = shared.config.request_timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let sending = Sending::new(shared, &stream, accepted);
    let read = read_request(&mut stream, Instant::now() + timeout, shared, &sending.cut);
    drop(sending);
    let refused = match read {
        Ok((head, body)) => {
            let request = Request {
                head: &head,
                body: &body,
                from,
            };
            let response = shared.handler.handle(&request);
            let _ = stream.write_all(&response.to_bytes());
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
        Err(ReadError::Cut) => {
            log::debug!("{name}: {from}: {}", ReadError::Cut);
            let message = shared.config.busy_message;
            return refuse(stream, &shared.refusal(REQUEST_TIMEOUT, message));
        }
        Err(ReadError::Refused(r)) => {
            log::debug!("{name}: {from}: {} {}", r.status.code, r.why);
            r
        }
        Err(e) => return log::debug!("{name}: {from}: {e}"),
    };
    let why = match refused.status {
        HEAD_TOO_LARGE => format!("request head over {MAX_HEAD} bytes"),
        PAYLOAD_TOO_LARGE => format!("request body over {} bytes", shared.config.max_body),
        _ => refused.why.to_string(),
    };
    let _ = stream.write_all(&shared.refusal(refused.status, &why).to_bytes());
    let _ = stream.shutdown(Shutdown::Write);
    linger(&mut stream, &shared.stop);
}

/// Reads a request head (within [`MAX_HEAD`]) and, if the server takes
/// bodies, its body (within [`Config::max_body`]), by `deadline`.
/// Bytes after them (a pipelined request) are ignored.
fn read_request(
    stream: &mut TcpStream,
    deadline: Instant,
    shared: &Shared,
    cut: &AtomicBool,
) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut reader = Reader {
        stream,
        stop: &shared.stop,
        cut,
    };
    let head_len = loop {
        let room = MAX_HEAD.saturating_sub(buf.len()).min(2048);
        if room == 0 {
            return Err(ReadError::Refused(Refused {
                status: HEAD_TOO_LARGE,
                why: "request head too large",
            }));
        }
        // The blank line may straddle the previous read.
        let from = buf.len().saturating_sub(3);
        reader.read_more(&mut buf, room, deadline)?;
        if let Some(end) = buf.get(from..).and_then(head_end) {
            break from + end;
        }
    };
    let max_body = shared.config.max_body;
    let mut body = buf.split_off(head_len);
    if max_body == 0 {
        return Ok((buf, Vec::new()));
    }
    let length = body_length(&buf).map_err(ReadError::Refused)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&n| n <= max_body)
        .ok_or(ReadError::Refused(Refused {
            status: PAYLOAD_TOO_LARGE,
            why: "request body too large",
        }))?;
    let mib = u32::try_from(length >> 20).unwrap_or(u32::MAX);
    let deadline = deadline + BODY_TIME_PER_MIB * mib;
    body.reserve(length.saturating_sub(body.len()));
    while body.len() < length {
        let room = (length - body.len()).min(64 * 1024);
        reader.read_more(&mut body, room, deadline)?;
    }
    body.truncate(length);
    Ok((buf, body))
}

/// A connection's read side with the server's stop and cut flags.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    stop: &'a AtomicBool,
    cut: &'a AtomicBool,
}

impl Reader<'_> {
    /// Appends up to `room` (> 0) bytes that arrive by `deadline` to `buf`.
    fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        room: usize,
        deadline: Instant,
    ) -> Result<(), ReadError> {
        let mut chunk = [0u8; 2048];
        let room = room.min(chunk.len());
        loop {
            if self.cut.load(Ordering::SeqCst) {
                return Err(ReadError::Cut);
            }
            if self.stop.load(Ordering::SeqCst) {
                return Err(ReadError::Stopped);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::TimedOut);
            }
            self.stream
                .set_read_timeout(Some(left.min(READ_SLICE)))
                .map_err(ReadError::Io)?;
            match self.stream.read(&mut chunk[..room]) {
                // A cut shuts our read side: the read ends with 0.
                Ok(0) if self.cut.load(Ordering::SeqCst) => return Err(ReadError::Cut),
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::http::OK;

    /// A server that answers with the length of the body it read.
    fn echo(workers: usize, when_full: WhenFull, timeout: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = Config {
            name: "test",
            workers,
            max_connections: workers,
            request_timeout: timeout,
            max_body: 1000,
            when_full,
            busy_message: "busy",
            refusal: |s, why| Response::text(s, why.to_string()),
        };
        let handler = |r: &Request<'_>| Response::text(OK, format!("{}", r.body.len()));
        start(listener, config, Arc::new(handler)).unwrap()
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        format!("{} {body}", head.get(9..12).unwrap_or(""))
    }

    #[test]
    fn bodies_are_framed_by_content_length() {
        crate::util::testutil::within(|| {
            let server = echo(2, WhenFull::Refuse, Duration::from_secs(5));
            let addr = server.local_addr();
            for (request, want) in [
                (&b"GET / HTTP/1.1\r\n\r\n"[..], "200 0"),
                (
                    b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
                    "200 5",
                ),
                (
                    b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n",
                    "413 request body over 1000 bytes",
                ),
                (
                    b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                    "400 malformed Content-Length",
                ),
                (
                    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                    "501 Transfer-Encoding is not supported: send Content-Length",
                ),
            ] {
                assert_eq!(
                    exchange(addr, request),
                    want,
                    "{}",
                    String::from_utf8_lossy(request)
                );
            }
            // The body may come in pieces.
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 600\r\n\r\n")
                .unwrap();
            for _ in 0..6 {
                s.write_all(&[b'x'; 100]).unwrap();
            }
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            assert!(out.ends_with("\r\n\r\n600"), "{out}");
            assert!(server.stop());
        });
    }

    #[test]
    fn a_full_server_cuts_the_slowest_sender_for_a_newcomer() {
        crate::util::testutil::within(|| {
            let server = echo(2, WhenFull::CutSlowest, Duration::from_secs(60));
            let addr = server.local_addr();
            let first = TcpStream::connect(addr).unwrap();
            let mut second = TcpStream::connect(addr).unwrap();
            second.write_all(b"POST / HT").unwrap();
            // Both taken by workers and listed as sending (a cut picks
            // among those).
            while lock(&server.shared.sending).len() < 2 {
                thread::sleep(Duration::from_millis(5));
            }
            // Both workers wait on senders whose deadline is a minute away:
            // the newcomer is served at once, in the place of the oldest.
            assert_eq!(exchange(addr, b"GET / HTTP/1.1\r\n\r\n"), "200 0");
            let mut first = first;
            first
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut out = String::new();
            let _ = first.read_to_string(&mut out);
            assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
            // The second still holds its worker, and may finish its request.
            second
                .write_all(b"TP/1.1\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
            let mut out = String::new();
            second.read_to_string(&mut out).unwrap();
            assert!(out.ends_with("\r\n\r\n2"), "{out}");
            assert!(server.stop());
        });
    }
}
