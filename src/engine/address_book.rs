//! The address book, pure: the peer addresses a torrent knows, when each
//! may be dialled again, and who is banned.
//!
//! Owns: known addresses (capped), which one a live connection uses,
//! exponential backoff after connections that gave nothing, strikes (failed
//! pieces) per dialled address and per IP across reconnects, and bans of
//! addresses and IPs. Does not own: connections or the strikes of one
//! connection (the orchestrator's peer table), or time (callers pass
//! `now`).

use crate::net::peer::PeerKey;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Addresses remembered at most: trackers (hostile ones too) can report
/// any number, and each costs memory and a place in every dialling scan.
pub const MAX_KNOWN: usize = 2000;
/// A connection or dialled address that sent this many pieces that failed
/// the hash is banned for the session.
pub const MAX_STRIKES: u32 = 3;
/// Failed pieces from one IP, across all its connections, that ban the IP.
/// Higher than MAX_STRIKES: one corrupt peer must not cost good peers
/// behind the same address (a NAT; every peer in a loopback test).
pub const MAX_IP_STRIKES: u32 = 3 * MAX_STRIKES;
/// Backoff doubles per failed connection up to 2^this seconds (~4 min).
const MAX_BACKOFF_SHIFT: u32 = 8;

/// Where we learned of an address (for the progress line and `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--peer` or a magnet link's `x.pe`.
    Given,
    Tracker,
    Dht,
    Pex,
    Lsd,
    /// It dialled us.
    Incoming,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::Given,
        Source::Tracker,
        Source::Dht,
        Source::Pex,
        Source::Lsd,
        Source::Incoming,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Source::Given => "given",
            Source::Tracker => "tracker",
            Source::Dht => "dht",
            Source::Pex => "pex",
            Source::Lsd => "lsd",
            Source::Incoming => "incoming",
        }
    }
}

/// What we know of an address.
#[derive(Debug)]
struct Known {
    /// Who told us of it first.
    source: Source,
    /// The peer now using this address, if any.
    active: Option<PeerKey>,
    /// Consecutive connections that ended without data: sets the backoff.
    failures: u32,
    /// Pieces from this address that failed the hash check.
    strikes: u32,
    retry_at: Instant,
    banned: bool,
}

/// A ban decided by [`AddressBook::strike`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ban {
    /// This address (a connection or dialled address with MAX_STRIKES).
    Address(SocketAddr, u32),
    /// Every connection from this IP (MAX_IP_STRIKES in all).
    Ip(IpAddr, u32),
}

#[derive(Debug, Default)]
pub struct AddressBook {
    known: HashMap<SocketAddr, Known>,
    ip_strikes: HashMap<IpAddr, u32>,
    banned_ips: HashSet<IpAddr>,
}

impl AddressBook {
    /// Remembers an address to dial (ignored past [`MAX_KNOWN`]), and who
    /// told us of it first.
    pub fn learn(&mut self, addr: SocketAddr, now: Instant, source: Source) {
        if self.known.len() >= MAX_KNOWN && !self.known.contains_key(&addr) {
            log::debug!("not remembering {addr}: {MAX_KNOWN} addresses known already");
            return;
        }
        self.known.entry(addr).or_insert(Known {
            source,
            active: None,
            failures: 0,
            strikes: 0,
            retry_at: now,
            banned: false,
        });
    }

    pub fn knows(&self, addr: &SocketAddr) -> bool {
        self.known.contains_key(addr)
    }

    /// Who told us of `addr`; `Incoming` for an address we never learned.
    pub fn source(&self, addr: &SocketAddr) -> Source {
        self.known.get(addr).map_or(Source::Incoming, |k| k.source)
    }

    /// Addresses we may dial now: not in use, not banned, backoff over.
    pub fn ready(&self, now: Instant) -> Vec<SocketAddr> {
        self.known
            .iter()
            .filter(|(a, k)| {
                k.active.is_none() && !k.banned && k.retry_at <= now && !self.ip_banned(a.ip())
            })
            .map(|(a, _)| *a)
            .collect()
    }

    /// Addresses not banned.
    pub fn usable(&self) -> usize {
        self.known.values().filter(|k| !k.banned).count()
    }

    pub fn ip_banned(&self, ip: IpAddr) -> bool {
        self.banned_ips.contains(&ip.to_canonical())
    }

    /// `peer` now uses `addr`.
    pub fn dialled(&mut self, addr: SocketAddr, peer: PeerKey) {
        if let Some(k) = self.known.get_mut(&addr) {
            k.active = Some(peer);
        }
    }

    /// The connection on `addr` ended. Back off 2 s, 4 s, 8 s … up to
    /// about 4 minutes; a peer that gave us data starts over.
    pub fn ended(&mut self, addr: SocketAddr, gave_data: bool, ban: bool, now: Instant) {
        if let Some(k) = self.known.get_mut(&addr) {
            k.active = None;
            k.banned |= ban;
            k.failures = if gave_data { 0 } else { k.failures + 1 };
            k.retry_at = now + Duration::from_secs(1 << k.failures.min(MAX_BACKOFF_SHIFT));
        }
    }

    /// A piece from `addr` failed its hash; `on_connection` is the strike
    /// count of the connection it came on. Returns the ban it earns, if
    /// any: the IP at MAX_IP_STRIKES across all its connections (an
    /// inbound peer's port changes every time), else the address at
    /// MAX_STRIKES on the connection or the dialled address.
    pub fn strike(&mut self, addr: SocketAddr, on_connection: u32) -> Option<Ban> {
        let on_address = self.known.get_mut(&addr).map_or(0, |k| {
            k.strikes += 1;
            k.strikes
        });
        let ip = addr.ip().to_canonical();
        let on_ip = self.ip_strikes.entry(ip).or_default();
        *on_ip += 1;
        if *on_ip >= MAX_IP_STRIKES {
            self.banned_ips.insert(ip);
            Some(Ban::Ip(ip, *on_ip))
        } else if on_connection.max(on_address) >= MAX_STRIKES {
            Some(Ban::Address(addr, on_connection.max(on_address)))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn failed_connections_back_off_and_data_resets_it() {
        let mut book = AddressBook::default();
        let t0 = Instant::now();
        let a = addr("10.0.0.1:6881");
        book.learn(a, t0, Source::Given);
        assert_eq!(book.ready(t0), [a]);
        book.dialled(a, 1);
        assert!(book.ready(t0).is_empty(), "in use");
        book.ended(a, false, false, t0);
        assert!(book.ready(t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(book.ready(t0 + Duration::from_secs(2)), [a]);
        book.ended(a, false, false, t0);
        assert!(
            book.ready(t0 + Duration::from_secs(3)).is_empty(),
            "4 s now"
        );
        for _ in 0..20 {
            book.ended(a, false, false, t0);
        }
        assert_eq!(book.ready(t0 + Duration::from_secs(256)), [a], "capped");
        book.ended(a, true, false, t0);
        assert_eq!(book.ready(t0 + Duration::from_secs(1)), [a]);
        book.ended(a, false, true, t0);
        assert!(
            book.ready(t0 + Duration::from_secs(3600)).is_empty(),
            "banned"
        );
        assert_eq!(book.usable(), 0);
    }

    #[test]
    fn the_book_is_bounded() {
        let mut book = AddressBook::default();
        let now = Instant::now();
        for port in 1..=(MAX_KNOWN as u16 + 100) {
            book.learn(SocketAddr::from(([10, 0, 0, 1], port)), now, Source::Given);
        }
        assert_eq!(book.usable(), MAX_KNOWN);
    }

    #[test]
    fn strikes_ban_the_address_then_the_ip() {
        let mut book = AddressBook::default();
        let now = Instant::now();
        let dialled = addr("10.0.0.2:6881");
        book.learn(dialled, now, Source::Given);
        assert_eq!(book.strike(dialled, 1), None);
        assert_eq!(book.strike(dialled, 1), None);
        assert_eq!(book.strike(dialled, 1), Some(Ban::Address(dialled, 3)));
        // Inbound connections from the same IP, a new port each time.
        let mut bans = Vec::new();
        for port in 50_000..50_006 {
            bans.push(book.strike(SocketAddr::from(([10, 0, 0, 2], port)), 1));
        }
        assert_eq!(bans[..5], [None, None, None, None, None]);
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(bans[5], Some(Ban::Ip(ip, MAX_IP_STRIKES)));
        assert!(book.ip_banned(ip));
        assert!(book.ip_banned("::ffff:10.0.0.2".parse().unwrap()), "mapped");
        book.learn(addr("10.0.0.2:7000"), now, Source::Given);
        assert!(book.ready(now).is_empty(), "a banned IP is never dialled");
    }
}
