//! `shoal tracker`'s UDP front end (BEP 15): one thread on a `UdpSocket`
//! bound to the HTTP listener's address and port, answering connect,
//! announce and scrape from the same [`Swarms`] as HTTP.
//!
//! Owns: the thread and its stop polling, connection ids, turning request
//! datagrams into [`AnnounceQuery`]s and scrapes and the store's answers
//! into datagrams, and what gets no answer at all. Does not own: the
//! datagram layout ([`crate::proto::udp_tracker`], shared with the client), the
//! store and its rules ([`super::swarms`]), or binding and stopping
//! ([`super::start`], [`super::Server::stop`]).
//!
//! Rules the code keeps:
//!
//! - **No state per client.** A connection id is a keyed hash (SHA-1 over
//!   a secret from [`crate::util::random::seed`], a one-minute time bucket and
//!   the client's IP) of which we keep nothing: it is checked by
//!   recomputing it for the current bucket and the two before, so it is
//!   good for at least two minutes (BEP 15's "two minutes after it was
//!   sent") and at most three. It names the IP only, not the port, as
//!   opentracker and chihaya do: a client may announce from a new socket
//!   with an id it got on another.
//! - **No amplification.** Only a request with a valid connection id (so
//!   from an address that can receive our datagrams) gets more than a
//!   connect response's 16 bytes back. A connect gets its 16; any other
//!   request with a bad id gets a 15-byte error ([`UNCONNECTED`]); a
//!   datagram shorter than a request header, over [`MAX_REQUEST`], or a
//!   connect without the protocol id gets nothing.
//! - A connected request that is wrong (truncated, a bad event, a scrape
//!   with no hashes or too many, an unknown action) gets an error action
//!   saying why. The peer is stored at the datagram's source address (the
//!   request's `ip` field is ignored, as `ip=` is over HTTP), and gets
//!   peers of the family the request came in (IPv4-mapped sources on a
//!   dual-stack socket are IPv4).
//! - The store's lock is held only for the announce or scrape itself.

use super::query::{numwant, AnnounceQuery, Families};
use super::swarms::{canonical, Swarms};
use super::{lock, Shared};
use crate::proto::tracker::ScrapeStats;
use crate::proto::udp_tracker::{
    request_header, AnnounceRequest, AnnounceResponse, ConnectRequest, ConnectResponse,
    ErrorResponse, Family, ScrapeRequest, ScrapeResponse, ACTION_ANNOUNCE, ACTION_CONNECT,
    ACTION_SCRAPE, REQUEST_HEADER_LEN,
};
use sha1::{Digest, Sha1};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest request we read: a scrape of 74 hashes is 1496 bytes and
/// an announce with BEP 41 options a few hundred. Larger datagrams are
/// dropped unanswered.
pub const MAX_REQUEST: usize = 2048;

/// How long one wait for a datagram lasts: how quickly a stop is noticed.
const POLL: Duration = Duration::from_millis(100);

/// Pause after a socket error other than a timeout, so a persistent one
/// cannot make the thread spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// At most one log line per this long for repeated socket errors.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// A send that cannot go out within this is dropped: UDP sends block only
/// when the socket buffer is full, and one client must not hold the rest.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// One connection id bucket.
const BUCKET: Duration = Duration::from_secs(60);

/// Buckets an id is good for: its own and the next two, so between two
/// and three minutes.
const BUCKETS_VALID: u64 = 3;

/// The error for a request whose connection id we did not issue or that
/// has expired: short enough that the reply (8 + 7 bytes) is no larger
/// than a connect response, whoever's address the request claims.
pub const UNCONNECTED: &str = "expired";

/// Issues and checks connection ids; see the module notes.
pub(super) struct Connections {
    secret: [u8; 16],
    epoch: Instant,
}

impl Connections {
    pub(super) fn new(secret: [u8; 16], epoch: Instant) -> Connections {
        Connections { secret, epoch }
    }

    /// A fresh random secret, buckets counted from now.
    fn random() -> Connections {
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&crate::util::random::seed().to_le_bytes());
        secret[8..].copy_from_slice(&crate::util::random::seed().to_le_bytes());
        Connections::new(secret, Instant::now())
    }

    fn bucket(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() / BUCKET.as_secs()
    }

    fn id(&self, ip: IpAddr, bucket: u64) -> u64 {
        let ip = match canonical(ip) {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(bucket.to_be_bytes());
        h.update(ip);
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }

    pub(super) fn issue(&self, ip: IpAddr, now: Instant) -> u64 {
        self.id(ip, self.bucket(now))
    }

    pub(super) fn check(&self, id: u64, ip: IpAddr, now: Instant) -> bool {
        let b = self.bucket(now);
        (0..BUCKETS_VALID)
            .filter_map(|back| b.checked_sub(back))
            .any(|bucket| self.id(ip, bucket) == id)
    }
}

/// The thread's body: answers datagrams until the server stops.
pub(super) fn serve(socket: &UdpSocket, shared: &Shared) {
    let connections = Connections::random();
    if let Err(e) = socket
        .set_read_timeout(Some(POLL))
        .and_then(|()| socket.set_write_timeout(Some(SEND_TIMEOUT)))
    {
        log::error!("tracker: udp socket: {e}; not answering udp");
        return;
    }
    // One more byte than we accept, so that a larger datagram shows.
    let mut buf = vec![0u8; MAX_REQUEST + 1];
    let mut last_error_log: Option<Instant> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // ICMP errors for earlier replies, where reported, are no
            // reason to stop either.
            Err(e)
                if crate::disk::sys::is_wait_over(&e)
                    || matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) =>
            {
                continue
            }
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= ERROR_LOG_EVERY) {
                    log::warn!("tracker: udp: {e}");
                    last_error_log = Some(Instant::now());
                }
                std::thread::sleep(ERROR_PAUSE);
                continue;
            }
        };
        let Some(datagram) = buf.get(..n).filter(|_| n <= MAX_REQUEST) else {
            log::debug!("tracker: udp {from}: datagram over {MAX_REQUEST} bytes ignored");
            continue;
        };
        // A bug in a handler costs its one request, not the front end.
        let reply = panic::catch_unwind(AssertUnwindSafe(|| {
            answer(datagram, from, Instant::now(), &connections, &shared.swarms)
        }));
        match reply {
            Ok(Some(reply)) => {
                if let Err(e) = socket.send_to(&reply, from) {
                    log::debug!("tracker: udp {from}: sending the reply: {e}");
                }
            }
            Ok(None) => {}
            Err(_) => log::error!("tracker: a udp request handler panicked; no reply sent"),
        }
    }
}

/// The reply to one datagram from `from`, if it gets one.
pub(super) fn answer(
    datagram: &[u8],
    from: SocketAddr,
    now: Instant,
    connections: &Connections,
    swarms: &Mutex<Swarms>,
) -> Option<Vec<u8>> {
    let Some((connection_id, action, tid)) = request_header(datagram) else {
        log::debug!(
            "tracker: udp {from}: {}-byte datagram ignored (requests are {REQUEST_HEADER_LEN}+)",
            datagram.len()
        );
        return None;
    };
    if action == ACTION_CONNECT {
        return match ConnectRequest::decode(datagram) {
            Ok(_) => {
                let reply = ConnectResponse {
                    transaction_id: tid,
                    connection_id: connections.issue(from.ip(), now),
                };
                Some(reply.encode().to_vec())
            }
            Err(e) => {
                log::debug!("tracker: udp {from}: ignored: {e}");
                None
            }
        };
    }
    if !connections.check(connection_id, from.ip(), now) {
        log::debug!("tracker: udp {from}: action {action} with an unknown connection id");
        return Some(error(tid, UNCONNECTED));
    }
    let reply = match action {
        ACTION_ANNOUNCE => announce(datagram, from, now, swarms),
        ACTION_SCRAPE => scrape(datagram, from, now, swarms),
        other => Err(format!("unknown action {other}")),
    };
    Some(reply.unwrap_or_else(|why| {
        log::debug!("tracker: udp {from}: refused: {why}");
        error(tid, &why)
    }))
}

fn error(transaction_id: u32, message: &str) -> Vec<u8> {
    ErrorResponse {
        transaction_id,
        message: message.to_string(),
    }
    .encode()
}

/// A count as BEP 15's `int32`.
fn int32(n: u32) -> u32 {
    n.min(i32::MAX.unsigned_abs())
}

fn announce(
    datagram: &[u8],
    from: SocketAddr,
    now: Instant,
    swarms: &Mutex<Swarms>,
) -> Result<Vec<u8>, String> {
    let req = AnnounceRequest::decode(datagram).map_err(|e| e.to_string())?;
    if req.port == 0 {
        return Err("invalid port".into());
    }
    let family = Family::of(from.ip());
    let q = AnnounceQuery {
        info_hash: req.info_hash,
        peer_id: req.peer_id,
        port: req.port,
        uploaded: u64::try_from(req.uploaded).unwrap_or(0),
        downloaded: u64::try_from(req.downloaded).unwrap_or(0),
        // Negative: not said, which counts as a leecher.
        left: u64::try_from(req.left).ok(),
        event: req.event,
        numwant: numwant(Some(i64::from(req.num_want))),
        compact: true,
        no_peer_id: true,
        key: Some(req.key.to_be_bytes().to_vec()),
        families: match family {
            Family::V4 => Families::V4,
            Family::V6 => Families::V6,
        },
    };
    let reply = lock(swarms).announce(&q, from.ip(), now)?;
    super::log_announce("udp", from.ip(), &q, &reply);
    let response = AnnounceResponse {
        transaction_id: req.transaction_id,
        interval: int32(reply.interval),
        leechers: int32(reply.incomplete),
        seeders: int32(reply.complete),
        peers: reply.peers.iter().map(|p| p.addr).collect(),
    };
    Ok(response.encode(family))
}

fn scrape(
    datagram: &[u8],
    from: SocketAddr,
    now: Instant,
    swarms: &Mutex<Swarms>,
) -> Result<Vec<u8>, String> {
    let req = ScrapeRequest::decode(datagram).map_err(|e| e.to_string())?;
    let files = lock(swarms).scrape(&req.info_hashes, now);
    log::debug!(
        "tracker: udp {from}: scrape of {} torrents",
        req.info_hashes.len()
    );
    // One entry per hash asked, in order; zeros for a torrent we do not know.
    let stats = req
        .info_hashes
        .iter()
        .map(|h| {
            let s = files
                .iter()
                .find(|(k, _)| k == h)
                .map(|&(_, s)| s)
                .unwrap_or_default();
            ScrapeStats {
                complete: int32(s.complete),
                downloaded: int32(s.downloaded),
                incomplete: int32(s.incomplete),
            }
        })
        .collect();
    Ok(ScrapeResponse {
        transaction_id: req.transaction_id,
        stats,
    }
    .encode())
}

#[cfg(test)]
mod tests;
