//! BEP 15, the UDP tracker protocol: the datagram codec, pure (the
//! blocking client is [`crate::net::udp_tracker`]).
//!
//! Owns: the byte layout of every BEP 15 message in both directions
//! (connect, announce, scrape and error; requests and responses), so that
//! the client and `shoal tracker`'s UDP front end (`tracker_server::udp`)
//! share one encoder and one decoder per message. Does not own: sockets,
//! time or URLs (the client in `net`), the HTTP protocol ([`crate::proto::tracker`]), or
//! the tracker side's state ([`crate::tracker_server`]).
//!
//! Decoders never trust a length and never panic. Each checks, in this
//! order: the fixed header is there, the transaction id (responses), the
//! action, the message's own minimum length, then what the rest must be
//! (a whole number of peers, one scrape entry per hash asked, ...).
//! Anything else is a [`DecodeError`] naming what was wrong.

use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{self, Announce, Event, Response, ScrapeStats};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// No UDP payload is larger, so a receive buffer of this size never cuts
/// a datagram short.
pub const MAX_DATAGRAM: usize = 65_536;

/// The magic first field of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// Every request starts with connection id, action and transaction id.
pub const REQUEST_HEADER_LEN: usize = 16;
/// Every response starts with action and transaction id.
pub const RESPONSE_HEADER_LEN: usize = 8;
/// A connect request and a connect response are both 16 bytes.
pub const CONNECT_LEN: usize = 16;
/// An IPv4-form announce request. Longer ones carry BEP 41 options, which
/// a decoder ignores.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;
/// An announce response without peers.
pub const ANNOUNCE_RESPONSE_MIN: usize = 20;
/// Seeders, completed, leechers: one scrape response entry per hash.
pub const SCRAPE_ENTRY_LEN: usize = 12;
/// BEP 15: "up to about 74 torrents can be scraped at once" (74 hashes
/// keep a scrape request under a 1500-byte packet).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// An address family, as BEP 15 replies carry one: 6-byte IPv4 peers to a
/// request that came over IPv4, 18-byte IPv6 peers to one over IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family a request to or from `addr` travels in; IPv4-mapped IPv6
    /// addresses (`::ffff:a.b.c.d`) are IPv4.
    pub fn of(addr: IpAddr) -> Family {
        match unmap(addr) {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per peer in an announce response: address and port.
    pub fn peer_len(self) -> usize {
        match self {
            Family::V4 => 6,
            Family::V6 => 18,
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4; everything else unchanged.
pub(crate) fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a datagram is not the message it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the fixed part of `message`.
    TooShort {
        message: &'static str,
        len: usize,
        min: usize,
    },
    /// Not the exact length `message` must have (a connect response; a
    /// scrape response for the number of hashes asked).
    WrongLength {
        message: &'static str,
        len: usize,
        expected: usize,
    },
    /// Another action than the one expected (an error action, 3, is
    /// reported this way too: decode it with [`ErrorResponse::decode`]).
    WrongAction { expected: u32, got: u32 },
    /// Not the transaction id of the request in flight.
    WrongTransaction { expected: u32, got: u32 },
    /// A connect request without BEP 15's protocol id.
    ProtocolId(u64),
    /// An announce event code other than 0 to 3.
    Event(u32),
    /// An announce response's peers are not whole entries of the family.
    PeerListLength { len: usize, entry: usize },
    /// A scrape request whose hashes take `len` bytes: not 1 to
    /// [`MAX_SCRAPE_HASHES`] whole 20-byte hashes.
    ScrapeHashes { len: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { message, len, min } => {
                write!(f, "{message} is {len} bytes, need at least {min}")
            }
            DecodeError::WrongLength {
                message,
                len,
                expected,
            } => write!(f, "{message} is {len} bytes, expected {expected}"),
            DecodeError::WrongAction { expected, got } => {
                write!(f, "action {got}, expected {expected}")
            }
            DecodeError::WrongTransaction { expected, got } => {
                write!(f, "transaction id {got:08x}, expected {expected:08x}")
            }
            DecodeError::ProtocolId(id) => write!(f, "protocol id {id:#x} is not BEP 15's"),
            DecodeError::Event(e) => write!(f, "unknown announce event {e}"),
            DecodeError::PeerListLength { len, entry } => {
                write!(f, "peer list is {len} bytes, not a multiple of {entry}")
            }
            DecodeError::ScrapeHashes { len } => write!(
                f,
                "scrape request has {len} bytes of info hashes: \
                 need 1 to {MAX_SCRAPE_HASHES} hashes of 20 bytes"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

fn u16_at(d: &[u8], at: usize) -> u16 {
    d.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_be_bytes)
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    d.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn twenty(d: &[u8], at: usize) -> [u8; 20] {
    d.get(at..at + 20)
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; 20])
}

/// The request header: connection id, action, transaction id; `None` if
/// the datagram is shorter than [`REQUEST_HEADER_LEN`].
pub fn request_header(d: &[u8]) -> Option<(u64, u32, u32)> {
    (d.len() >= REQUEST_HEADER_LEN).then(|| (u64_at(d, 0), u32_at(d, 8), u32_at(d, 12)))
}

/// Checks a request: at least `min` bytes, action `action`.
fn check_request(
    d: &[u8],
    message: &'static str,
    min: usize,
    action: u32,
) -> Result<(), DecodeError> {
    if d.len() < min {
        return Err(DecodeError::TooShort {
            message,
            len: d.len(),
            min,
        });
    }
    let got = u32_at(d, 8);
    if got != action {
        return Err(DecodeError::WrongAction {
            expected: action,
            got,
        });
    }
    Ok(())
}

/// Checks a response: the header, then transaction id, action, and at
/// least `min` bytes.
fn check_response(
    d: &[u8],
    message: &'static str,
    min: usize,
    action: u32,
    transaction_id: u32,
) -> Result<(), DecodeError> {
    let short = || DecodeError::TooShort {
        message,
        len: d.len(),
        min,
    };
    if d.len() < RESPONSE_HEADER_LEN {
        return Err(short());
    }
    let got = u32_at(d, 4);
    if got != transaction_id {
        return Err(DecodeError::WrongTransaction {
            expected: transaction_id,
            got,
        });
    }
    let got = u32_at(d, 0);
    if got != action {
        return Err(DecodeError::WrongAction {
            expected: action,
            got,
        });
    }
    if d.len() < min {
        return Err(short());
    }
    Ok(())
}

/// Client to tracker: may I have a connection id?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectRequest {
    pub transaction_id: u32,
}

impl ConnectRequest {
    pub fn encode(&self) -> [u8; CONNECT_LEN] {
        let mut b = [0u8; CONNECT_LEN];
        b[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
        b[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
        b[12..].copy_from_slice(&self.transaction_id.to_be_bytes());
        b
    }

    /// Bytes after the first 16 are ignored.
    pub fn decode(d: &[u8]) -> Result<ConnectRequest, DecodeError> {
        check_request(d, "connect request", CONNECT_LEN, ACTION_CONNECT)?;
        let id = u64_at(d, 0);
        if id != PROTOCOL_ID {
            return Err(DecodeError::ProtocolId(id));
        }
        Ok(ConnectRequest {
            transaction_id: u32_at(d, 12),
        })
    }
}

/// Tracker to client: the connection id to put in the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResponse {
    pub transaction_id: u32,
    pub connection_id: u64,
}

impl ConnectResponse {
    pub fn encode(&self) -> [u8; CONNECT_LEN] {
        let mut b = [0u8; CONNECT_LEN];
        b[..4].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
        b[4..8].copy_from_slice(&self.transaction_id.to_be_bytes());
        b[8..].copy_from_slice(&self.connection_id.to_be_bytes());
        b
    }

    /// Exactly 16 bytes.
    pub fn decode(d: &[u8], transaction_id: u32) -> Result<ConnectResponse, DecodeError> {
        let message = "connect response";
        check_response(d, message, CONNECT_LEN, ACTION_CONNECT, transaction_id)?;
        if d.len() != CONNECT_LEN {
            return Err(DecodeError::WrongLength {
                message,
                len: d.len(),
                expected: CONNECT_LEN,
            });
        }
        Ok(ConnectResponse {
            transaction_id,
            connection_id: u64_at(d, 8),
        })
    }
}

/// BEP 15's event codes: 0 none, 1 completed, 2 started, 3 stopped.
pub fn event_code(event: Option<Event>) -> u32 {
    match event {
        None => 0,
        Some(Event::Completed) => 1,
        Some(Event::Started) => 2,
        Some(Event::Stopped) => 3,
    }
}

fn event_from_code(code: u32) -> Result<Option<Event>, DecodeError> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(Event::Completed)),
        2 => Ok(Some(Event::Started)),
        3 => Ok(Some(Event::Stopped)),
        other => Err(DecodeError::Event(other)),
    }
}

/// Client to tracker: an announce, in the IPv4 form (98 bytes) that BEP 15
/// uses over both families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub downloaded: i64,
    pub left: i64,
    pub uploaded: i64,
    pub event: Option<Event>,
    /// An IPv4 address to be listed at instead of the source address; 0
    /// means the source. We always send 0, and our tracker ignores it.
    pub ip: u32,
    pub key: u32,
    /// Peers wanted; -1 for the tracker's default.
    pub num_want: i32,
    pub port: u16,
}

impl AnnounceRequest {
    /// The request for `req`: totals saturate at `i64::MAX`, `numwant`
    /// absent is -1, `ip` is 0. BEP 15 has no `tracker id`.
    pub fn new(connection_id: u64, transaction_id: u32, req: &Announce) -> AnnounceRequest {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        AnnounceRequest {
            connection_id,
            transaction_id,
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            downloaded: signed(req.downloaded),
            left: signed(req.left),
            uploaded: signed(req.uploaded),
            event: req.event,
            ip: 0,
            key: req.key,
            num_want: req
                .numwant
                .map_or(-1, |n| i32::try_from(n).unwrap_or(i32::MAX)),
            port: req.port,
        }
    }

    pub fn encode(&self) -> [u8; ANNOUNCE_REQUEST_LEN] {
        let mut b = [0u8; ANNOUNCE_REQUEST_LEN];
        b[..8].copy_from_slice(&self.connection_id.to_be_bytes());
        b[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        b[12..16].copy_from_slice(&self.transaction_id.to_be_bytes());
        b[16..36].copy_from_slice(&self.info_hash.0);
        b[36..56].copy_from_slice(&self.peer_id);
        b[56..64].copy_from_slice(&self.downloaded.to_be_bytes());
        b[64..72].copy_from_slice(&self.left.to_be_bytes());
        b[72..80].copy_from_slice(&self.uploaded.to_be_bytes());
        b[80..84].copy_from_slice(&event_code(self.event).to_be_bytes());
        b[84..88].copy_from_slice(&self.ip.to_be_bytes());
        b[88..92].copy_from_slice(&self.key.to_be_bytes());
        b[92..96].copy_from_slice(&self.num_want.to_be_bytes());
        b[96..98].copy_from_slice(&self.port.to_be_bytes());
        b
    }

    /// At least 98 bytes; BEP 41 options after them are ignored.
    pub fn decode(d: &[u8]) -> Result<AnnounceRequest, DecodeError> {
        check_request(d, "announce request", ANNOUNCE_REQUEST_LEN, ACTION_ANNOUNCE)?;
        Ok(AnnounceRequest {
            connection_id: u64_at(d, 0),
            transaction_id: u32_at(d, 12),
            info_hash: InfoHash(twenty(d, 16)),
            peer_id: twenty(d, 36),
            downloaded: u64_at(d, 56) as i64,
            left: u64_at(d, 64) as i64,
            uploaded: u64_at(d, 72) as i64,
            event: event_from_code(u32_at(d, 80))?,
            ip: u32_at(d, 84),
            key: u32_at(d, 88),
            num_want: u32_at(d, 92) as i32,
            port: u16_at(d, 96),
        })
    }
}

/// Tracker to client: the answer to an announce. The counts are `int32`
/// on the wire; they are kept here as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub transaction_id: u32,
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
    pub peers: Vec<SocketAddr>,
}

impl AnnounceResponse {
    /// Peers of the other family are left out: a BEP 15 reply has one.
    pub fn encode(&self, family: Family) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(ANNOUNCE_RESPONSE_MIN + self.peers.len() * family.peer_len());
        b.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        b.extend_from_slice(&self.transaction_id.to_be_bytes());
        b.extend_from_slice(&self.interval.to_be_bytes());
        b.extend_from_slice(&self.leechers.to_be_bytes());
        b.extend_from_slice(&self.seeders.to_be_bytes());
        for p in &self.peers {
            match (family, unmap(p.ip())) {
                (Family::V4, IpAddr::V4(ip)) => b.extend_from_slice(&ip.octets()),
                (Family::V6, IpAddr::V6(ip)) => b.extend_from_slice(&ip.octets()),
                _ => continue,
            }
            b.extend_from_slice(&p.port().to_be_bytes());
        }
        b
    }

    /// Peers in `family`'s entry size; a peer list that is not a whole
    /// number of entries is an error. Unusable peers (port 0, address
    /// 0.0.0.0 or ::) are dropped.
    pub fn decode(
        d: &[u8],
        transaction_id: u32,
        family: Family,
    ) -> Result<AnnounceResponse, DecodeError> {
        check_response(
            d,
            "announce response",
            ANNOUNCE_RESPONSE_MIN,
            ACTION_ANNOUNCE,
            transaction_id,
        )?;
        let list = d.get(ANNOUNCE_RESPONSE_MIN..).unwrap_or_default();
        let entry = family.peer_len();
        let ip_len = entry - 2;
        let peers = tracker::compact_peers(list, "peers", ip_len).map_err(|_| {
            DecodeError::PeerListLength {
                len: list.len(),
                entry,
            }
        })?;
        Ok(AnnounceResponse {
            transaction_id,
            interval: u32_at(d, 8),
            leechers: u32_at(d, 12),
            seeders: u32_at(d, 16),
            peers,
        })
    }

    /// As the announce client reports it. Negative counts (a field over
    /// `i32::MAX`) count as absent.
    pub fn into_response(self) -> Response {
        let count = |n: u32| (n <= i32::MAX.unsigned_abs()).then_some(n);
        Response {
            interval: count(self.interval),
            min_interval: None,
            tracker_id: None,
            warning: None,
            complete: count(self.seeders),
            incomplete: count(self.leechers),
            peers: self.peers,
        }
    }
}

/// Client to tracker: figures for up to [`MAX_SCRAPE_HASHES`] torrents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeRequest {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hashes: Vec<InfoHash>,
}

impl ScrapeRequest {
    /// Hashes beyond [`MAX_SCRAPE_HASHES`] are left out.
    pub fn encode(&self) -> Vec<u8> {
        let hashes = &self.info_hashes[..self.info_hashes.len().min(MAX_SCRAPE_HASHES)];
        let mut b = Vec::with_capacity(REQUEST_HEADER_LEN + 20 * hashes.len());
        b.extend_from_slice(&self.connection_id.to_be_bytes());
        b.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
        b.extend_from_slice(&self.transaction_id.to_be_bytes());
        for h in hashes {
            b.extend_from_slice(&h.0);
        }
        b
    }

    pub fn decode(d: &[u8]) -> Result<ScrapeRequest, DecodeError> {
        check_request(d, "scrape request", REQUEST_HEADER_LEN, ACTION_SCRAPE)?;
        let hashes = d.get(REQUEST_HEADER_LEN..).unwrap_or_default();
        let n = hashes.len() / 20;
        if hashes.len() % 20 != 0 || n == 0 || n > MAX_SCRAPE_HASHES {
            return Err(DecodeError::ScrapeHashes { len: hashes.len() });
        }
        Ok(ScrapeRequest {
            connection_id: u64_at(d, 0),
            transaction_id: u32_at(d, 12),
            info_hashes: hashes
                .chunks_exact(20)
                .map(|h| InfoHash(twenty(h, 0)))
                .collect(),
        })
    }
}

/// Tracker to client: one entry per hash asked, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeResponse {
    pub transaction_id: u32,
    pub stats: Vec<ScrapeStats>,
}

impl ScrapeResponse {
    /// Each entry is seeders (`complete`), completed (`downloaded`),
    /// leechers (`incomplete`).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RESPONSE_HEADER_LEN + SCRAPE_ENTRY_LEN * self.stats.len());
        b.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
        b.extend_from_slice(&self.transaction_id.to_be_bytes());
        for s in &self.stats {
            b.extend_from_slice(&s.complete.to_be_bytes());
            b.extend_from_slice(&s.downloaded.to_be_bytes());
            b.extend_from_slice(&s.incomplete.to_be_bytes());
        }
        b
    }

    /// Exactly one entry for each of the `hashes` hashes asked about.
    pub fn decode(
        d: &[u8],
        transaction_id: u32,
        hashes: usize,
    ) -> Result<ScrapeResponse, DecodeError> {
        let message = "scrape response";
        let expected = hashes
            .saturating_mul(SCRAPE_ENTRY_LEN)
            .saturating_add(RESPONSE_HEADER_LEN);
        check_response(d, message, expected, ACTION_SCRAPE, transaction_id)?;
        if d.len() != expected {
            return Err(DecodeError::WrongLength {
                message,
                len: d.len(),
                expected,
            });
        }
        let entries = d.get(RESPONSE_HEADER_LEN..).unwrap_or_default();
        let stats = entries
            .chunks_exact(SCRAPE_ENTRY_LEN)
            .map(|e| ScrapeStats {
                complete: u32_at(e, 0),
                downloaded: u32_at(e, 4),
                incomplete: u32_at(e, 8),
            })
            .collect();
        Ok(ScrapeResponse {
            transaction_id,
            stats,
        })
    }
}

/// Tracker to client: the request failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub transaction_id: u32,
    pub message: String,
}

impl ErrorResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RESPONSE_HEADER_LEN + self.message.len());
        b.extend_from_slice(&ACTION_ERROR.to_be_bytes());
        b.extend_from_slice(&self.transaction_id.to_be_bytes());
        b.extend_from_slice(self.message.as_bytes());
        b
    }

    /// The message is the rest of the datagram, decoded as UTF-8 with
    /// invalid bytes replaced (the reader still has to defuse control
    /// characters before printing it).
    pub fn decode(d: &[u8], transaction_id: u32) -> Result<ErrorResponse, DecodeError> {
        check_response(
            d,
            "error response",
            RESPONSE_HEADER_LEN,
            ACTION_ERROR,
            transaction_id,
        )?;
        let text = d.get(RESPONSE_HEADER_LEN..).unwrap_or_default();
        Ok(ErrorResponse {
            transaction_id,
            message: String::from_utf8_lossy(text).into_owned(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests;
