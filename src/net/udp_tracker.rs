//! The blocking BEP 15 client: one exchange (connect if need be, then an
//! announce or a scrape) with the tracker a `udp://` URL names.
//!
//! Owns: the syntax of `udp://` URLs, resolving them, the socket, the
//! transaction ids, the connection ids (cached per tracker address for
//! [`CONNECTION_ID_LIFETIME`]), retransmission, and which datagrams count
//! as the answer. Does not own: the datagram layout (the parent module),
//! or when to announce, tiers, and what becomes of peers and errors
//! ([`crate::net::announce`]).
//!
//! Rules the code keeps:
//!
//! - **Only the answer is accepted.** The socket is connected to the one
//!   tracker address we are talking to, and the source of each datagram
//!   is checked again. A datagram from elsewhere, with another
//!   transaction id or another action is ignored and the wait goes on;
//!   one that has the right transaction id and action but does not parse
//!   is ignored too (a forged or damaged datagram cannot end the
//!   exchange), and named in the error if no usable answer comes. An
//!   error action with the right transaction id ends the exchange with
//!   `"tracker error: <message>"`.
//! - **Retransmission follows the spec's back-off:** a request unanswered
//!   after `retry_base × 2^n` is sent again, `n` counting every unanswered
//!   request (connect or not) from 0 up to `max_retries` (at most
//!   [`MAX_RETRIES`], the spec's 8), all within the overall `deadline`.
//! - **Connection ids** are used for at most [`CONNECTION_ID_LIFETIME`]
//!   after the connect request that got them was sent. One process-wide
//!   cache, keyed by tracker address, lets the next announce of any
//!   torrent skip the connect. An id is dropped from the cache when a
//!   request sent with it goes unanswered (the tracker may have restarted
//!   and be ignoring it), and when a cached id draws an error action the
//!   request is tried once more after a fresh connect.
//! - Memory is bounded: one [`MAX_DATAGRAM`] buffer per exchange (no
//!   datagram is larger, so none is cut short), at most [`MAX_ADDRESSES`]
//!   addresses per host name and [`MAX_CACHED`] cached connection ids.

use crate::net::tracker_error::TrackerError;
use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{Announce, Response, ScrapeStats};
use crate::proto::udp_tracker::{
    unmap, AnnounceRequest, AnnounceResponse, ConnectRequest, ConnectResponse, DecodeError,
    ErrorResponse, Family, ScrapeRequest, ScrapeResponse, ACTION_ERROR, MAX_DATAGRAM,
};
use crate::util::random::Rng;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// BEP 15: a client may use a connection id for one minute after it got
/// it (a tracker accepts it for two). We count from when the connect
/// request was sent, which errs on the short side.
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// The spec's first retransmission timeout: 15 s, doubling after each.
pub const SPEC_RETRY_BASE: Duration = Duration::from_secs(15);

/// The spec's cap on `n` in `15 × 2^n`: at most 9 sends of one exchange.
pub const MAX_RETRIES: u32 = 8;

/// The smallest `retry_base` we use, so a zero cannot make us spin.
pub(super) const MIN_RETRY_BASE: Duration = Duration::from_millis(1);

/// Addresses of one host name we try, in the resolver's order; each gets
/// an equal share of what is left of the deadline.
pub const MAX_ADDRESSES: usize = 4;

/// Tracker addresses whose connection id we remember.
pub const MAX_CACHED: usize = 64;

/// Host and port of `udp://host:port[/path][?query]`. The host is a name,
/// an IPv4 address, or an IPv6 address in brackets. The path and query are
/// not used (BEP 41 would send them; few trackers need it).
pub fn parse_url(url: &str) -> Result<(String, u16), TrackerError> {
    let bad = TrackerError::BadUdpUrl;
    let rest = url
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("udp://"))
        .and_then(|_| url.get(6..))
        .ok_or_else(|| bad("not udp://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("no ']' after the IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address in brackets"));
        }
        (host, after.strip_prefix(':').ok_or_else(|| bad("no port"))?)
    } else {
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address needs brackets"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| bad("bad port"))?;
    Ok((host.to_string(), port))
}

/// The addresses to try for `host`: an address literal as is, a name
/// through the system resolver. The resolver has no deadline of its own,
/// so it runs on a thread of its own and is abandoned at `deadline` (as
/// ureq does for HTTP). IPv4-mapped addresses become IPv4; duplicates go;
/// at most [`MAX_ADDRESSES`].
pub(super) fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, TrackerError> {
    let failed = |cause: io::Error| TrackerError::Resolve {
        host: host.to_string(),
        cause: cause.to_string(),
    };
    let found: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let name = host.to_string();
            std::thread::Builder::new()
                .name("resolve".into())
                .spawn(move || {
                    let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
                })
                .map_err(failed)?;
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(found) => found.map_err(failed)?,
                Err(_) => return Err(TrackerError::ResolveTimedOut(host.to_string())),
            }
        }
    };
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in found {
        let a = SocketAddr::new(unmap(a.ip()), a.port());
        if !addrs.contains(&a) && addrs.len() < MAX_ADDRESSES {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(TrackerError::HostNotFound(Some(host.to_string())));
    }
    Ok(addrs)
}

/// How patient the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Wait for the first answer before sending again; doubles after each
    /// unanswered request (the spec says 15 s, [`SPEC_RETRY_BASE`]). At
    /// least 1 ms.
    pub retry_base: Duration,
    /// Unanswered requests resent at most this many times in all (the
    /// spec's `n` goes up to 8); used up to [`MAX_RETRIES`].
    pub max_retries: u32,
    /// The whole exchange: resolving aside, every address, connect and
    /// request, with retransmissions.
    pub deadline: Duration,
}

impl UdpConfig {
    /// For an exchange that must end within `deadline`: the first resend
    /// after a third of it (at most the spec's 15 s), so a lost datagram
    /// costs one retransmission rather than the whole attempt (with 15 s:
    /// sends at 0 s and 5 s, and 15 s is up at the next); `n` up to the
    /// spec's cap, which the deadline reaches first.
    pub fn within(deadline: Duration) -> UdpConfig {
        UdpConfig {
            retry_base: (deadline / 3).clamp(MIN_RETRY_BASE, SPEC_RETRY_BASE),
            max_retries: MAX_RETRIES,
            deadline,
        }
    }
}

/// Announces `req` to the BEP 15 tracker at `url` and returns its answer
/// as the HTTP client would (no `min interval`, `tracker id` or warning in
/// this protocol). Peers come in the family of the address that answered.
/// The error is a message without the URL, e.g. `"timed out"`,
/// `"connection refused"`, `"tracker error: unregistered torrent"`.
pub fn announce(url: &str, req: &Announce, cfg: &UdpConfig) -> Result<Response, TrackerError> {
    exchange(
        url,
        cfg,
        &|conn, tid| AnnounceRequest::new(conn, tid, req).encode().to_vec(),
        &|d, tid, family| {
            AnnounceResponse::decode(d, tid, family).map(AnnounceResponse::into_response)
        },
    )
}

/// Scrape figures for one torrent from the BEP 15 tracker at `url`.
pub fn scrape(
    url: &str,
    info_hash: &InfoHash,
    cfg: &UdpConfig,
) -> Result<ScrapeStats, TrackerError> {
    exchange(
        url,
        cfg,
        &|conn, tid| {
            ScrapeRequest {
                connection_id: conn,
                transaction_id: tid,
                info_hashes: vec![*info_hash],
            }
            .encode()
        },
        &|d, tid, _| {
            let r = ScrapeResponse::decode(d, tid, 1)?;
            Ok(r.stats.first().copied().unwrap_or_default())
        },
    )
}

/// Builds the request datagram from connection id and transaction id.
type Encode<'a> = &'a dyn Fn(u64, u32) -> Vec<u8>;
/// Decodes the answer for a transaction id, in the tracker's family.
type Decode<'a, T> = &'a dyn Fn(&[u8], u32, Family) -> Result<T, DecodeError>;

/// Parses, resolves, and runs the exchange with each address in turn
/// until one answers; each gets an equal share of the time left.
fn exchange<T>(
    url: &str,
    cfg: &UdpConfig,
    request: Encode,
    decode: Decode<T>,
) -> Result<T, TrackerError> {
    let (host, port) = parse_url(url)?;
    let cfg = UdpConfig {
        retry_base: cfg.retry_base.max(MIN_RETRY_BASE),
        max_retries: cfg.max_retries.min(MAX_RETRIES),
        deadline: cfg.deadline,
    };
    let start = Instant::now();
    let deadline = start
        .checked_add(cfg.deadline)
        .unwrap_or_else(|| start + Duration::from_secs(24 * 60 * 60));
    let addrs = resolve(&host, port, deadline)?;
    let mut rng = Rng::new(crate::util::random::seed());
    let mut errors: Vec<(SocketAddr, TrackerError)> = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let share = left / u32::try_from(addrs.len() - i).unwrap_or(1);
        let result = Client::new(addr, &cfg, Instant::now() + share, &mut rng)
            .and_then(|mut client| client.run(request, decode));
        match result {
            Ok(v) => return Ok(v),
            Err(Fail::Tracker(message)) => return Err(TrackerError::Refused(message)),
            Err(Fail::Address(e)) => {
                log::debug!("udp tracker {addr}: {e}");
                errors.push((addr, e));
            }
        }
    }
    Err(match errors.len() {
        0 => TrackerError::TimedOut,
        1 => errors.remove(0).1,
        _ => TrackerError::Addresses(errors),
    })
}

/// Why an exchange with one address ended without an answer.
enum Fail {
    /// The tracker answered with an error action: final.
    Tracker(String),
    /// This address did not work (socket error, refused, no answer in
    /// time): try the next.
    Address(TrackerError),
}

/// How one send-and-wait ended without an answer.
enum Step {
    /// Nothing usable within the retransmission timeout: send again.
    Unanswered,
    Fail(Fail),
}

/// One exchange with one tracker address.
struct Client<'a> {
    socket: UdpSocket,
    tracker: SocketAddr,
    family: Family,
    cfg: &'a UdpConfig,
    deadline: Instant,
    rng: &'a mut Rng,
    buf: Vec<u8>,
    /// Requests that went unanswered: the `n` of `retry_base × 2^n`.
    unanswered: u32,
    sent: u32,
    /// The last datagram that had our transaction id and action but did
    /// not parse, for the error message.
    last_bad: Option<DecodeError>,
}

impl<'a> Client<'a> {
    fn new(
        tracker: SocketAddr,
        cfg: &'a UdpConfig,
        deadline: Instant,
        rng: &'a mut Rng,
    ) -> Result<Client<'a>, Fail> {
        let local: SocketAddr = match tracker {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let io_fail = |e: io::Error| Fail::Address(describe(&e));
        let socket = UdpSocket::bind(local).map_err(io_fail)?;
        // The kernel then drops datagrams from other sources, and reports
        // an ICMP "port unreachable" as `ConnectionRefused`.
        socket.connect(tracker).map_err(io_fail)?;
        Ok(Client {
            socket,
            tracker,
            family: Family::of(tracker.ip()),
            cfg,
            deadline,
            rng,
            buf: vec![0u8; MAX_DATAGRAM],
            unanswered: 0,
            sent: 0,
            last_bad: None,
        })
    }

    /// Connect (unless a cached connection id is fresh), then the request,
    /// resending as the back-off says.
    fn run<T>(&mut self, request: Encode, decode: Decode<T>) -> Result<T, Fail> {
        let mut conn = cached(self.tracker);
        let mut from_cache = conn.is_some();
        loop {
            let id = match conn.filter(|&(_, at)| at.elapsed() < CONNECTION_ID_LIFETIME) {
                Some((id, _)) => id,
                None => {
                    let tid = self.rng.next_u64() as u32;
                    let sent_at = Instant::now();
                    let datagram = ConnectRequest {
                        transaction_id: tid,
                    }
                    .encode();
                    match self.attempt(&datagram, tid, &|d| ConnectResponse::decode(d, tid)) {
                        Ok(r) => {
                            remember(self.tracker, r.connection_id, sent_at);
                            from_cache = false;
                            r.connection_id
                        }
                        Err(Step::Unanswered) => continue,
                        Err(Step::Fail(f)) => return Err(f),
                    }
                }
            };
            let tid = self.rng.next_u64() as u32;
            let family = self.family;
            match self.attempt(&request(id, tid), tid, &|d| decode(d, tid, family)) {
                Ok(v) => return Ok(v),
                Err(Step::Unanswered) => {
                    // Maybe only lost; maybe the tracker no longer knows
                    // the id. A fresh connect costs one round trip.
                    forget(self.tracker, id);
                    conn = None;
                }
                Err(Step::Fail(Fail::Tracker(_))) if from_cache => {
                    log::debug!(
                        "udp tracker {}: error reply; reconnecting once",
                        self.tracker
                    );
                    forget(self.tracker, id);
                    conn = None;
                    from_cache = false;
                }
                Err(Step::Fail(f)) => return Err(f),
            }
        }
    }

    /// Sends `datagram` and waits for its answer for the current
    /// retransmission timeout.
    fn attempt<T>(
        &mut self,
        datagram: &[u8],
        tid: u32,
        decode: &dyn Fn(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, Step> {
        let now = Instant::now();
        let left = self.deadline.saturating_duration_since(now);
        if self.unanswered > self.cfg.max_retries {
            return Err(Step::Fail(Fail::Address(TrackerError::NoAnswer {
                sent: self.sent,
                last_bad: self.last_bad.clone(),
            })));
        }
        if left.is_zero() {
            return Err(Step::Fail(Fail::Address(match self.last_bad.clone() {
                Some(bad) => TrackerError::TimedOutWithBadReply(bad),
                None => TrackerError::TimedOut,
            })));
        }
        let wait = (self.cfg.retry_base)
            .saturating_mul(1 << self.unanswered.min(MAX_RETRIES))
            .min(left);
        if let Err(e) = self.socket.send(datagram) {
            return Err(Step::Fail(Fail::Address(describe(&e))));
        }
        self.sent += 1;
        let until = now + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.unanswered += 1;
                return Err(Step::Unanswered);
            }
            if let Err(e) = self.socket.set_read_timeout(Some(left)) {
                return Err(Step::Fail(Fail::Address(describe(&e))));
            }
            let (n, from) = match self.socket.recv_from(&mut self.buf) {
                Ok(got) => got,
                Err(e) if crate::disk::sys::is_wait_over(&e) => continue,
                Err(e) => return Err(Step::Fail(Fail::Address(describe(&e)))),
            };
            if from.ip() != self.tracker.ip() || from.port() != self.tracker.port() {
                log::debug!(
                    "udp tracker {}: ignored a datagram from {from}",
                    self.tracker
                );
                continue;
            }
            let d = self.buf.get(..n).unwrap_or_default();
            let error = match decode(d) {
                Ok(v) => return Ok(v),
                Err(DecodeError::WrongAction {
                    got: ACTION_ERROR, ..
                }) => match ErrorResponse::decode(d, tid) {
                    Ok(e) => return Err(Step::Fail(Fail::Tracker(e.message))),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            log::debug!("udp tracker {}: ignored a datagram: {error}", self.tracker);
            if !matches!(
                error,
                DecodeError::WrongAction { .. } | DecodeError::WrongTransaction { .. }
            ) {
                self.last_bad = Some(error);
            }
        }
    }
}

/// A socket error.
fn describe(e: &io::Error) -> TrackerError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TrackerError::ConnectionRefused,
        io::ErrorKind::ConnectionReset => TrackerError::ConnectionReset,
        _ => TrackerError::Io(e.to_string()),
    }
}

/// Connection ids by tracker address, with when the connect request that
/// got them was sent. Bounded by [`MAX_CACHED`].
static CONNECTIONS: Mutex<Vec<(SocketAddr, u64, Instant)>> = Mutex::new(Vec::new());

fn connections() -> std::sync::MutexGuard<'static, Vec<(SocketAddr, u64, Instant)>> {
    // Every change leaves the list valid, so a panic elsewhere (which
    // poisoned the lock) does not make it unusable.
    CONNECTIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cached connection id for `tracker` and when it was asked for, if
/// it is still fresh.
fn cached(tracker: SocketAddr) -> Option<(u64, Instant)> {
    connections()
        .iter()
        .find(|(a, _, at)| *a == tracker && at.elapsed() < CONNECTION_ID_LIFETIME)
        .map(|&(_, id, at)| (id, at))
}

/// Caches `id` for `tracker`, replacing its old one; expired entries go,
/// and the oldest when the cache is full.
fn remember(tracker: SocketAddr, id: u64, at: Instant) {
    let mut c = connections();
    c.retain(|(a, _, t)| *a != tracker && t.elapsed() < CONNECTION_ID_LIFETIME);
    if c.len() >= MAX_CACHED {
        if let Some(oldest) = (0..c.len()).min_by_key(|&i| c[i].2) {
            c.swap_remove(oldest);
        }
    }
    c.push((tracker, id, at));
}

/// Drops `tracker`'s cached id if it is still `id` (another thread may
/// have cached a newer one meanwhile).
fn forget(tracker: SocketAddr, id: u64) {
    connections().retain(|&(a, i, _)| a != tracker || i != id);
}

/// Drops whatever is cached for `tracker`: tests use it on a fresh fake
/// tracker, whose port an earlier test's tracker may have had.
#[cfg(test)]
pub(crate) fn forget_tracker(tracker: SocketAddr) {
    connections().retain(|&(a, _, _)| a != tracker);
}

/// Caches a connection id as if it had been asked for at `at`.
#[cfg(test)]
pub(crate) fn remember_at(tracker: SocketAddr, id: u64, at: Instant) {
    remember(tracker, id, at);
}

#[cfg(test)]
mod tests;
