//! The tracker's peer store: every swarm (the peers of one info hash) the
//! tracker knows, and the answers to announces and scrapes drawn from it.
//!
//! Owns: who is in which swarm, seeders and leechers, each swarm's
//! `downloaded` count, the expiry of silent peers, the memory bounds, which
//! peers an announce gets back, and the bencoded (HTTP) form of the answers.
//! Pure: time comes in as `now` and randomness from a seeded [`Rng`], so
//! tests are exact. Does not own: sockets, HTTP framing or locking (the
//! server keeps one `Swarms` behind a mutex, held only for the call), or the
//! query syntax ([`super::query`]). A UDP front-end (BEP 15) shares the same
//! `Swarms` and writes a [`Reply`] in its own binary form.
//!
//! Rules the code keeps:
//!
//! - A peer is its address: (source IP of the request, announced port).
//!   IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`, what a dual-stack `[::]`
//!   listener sees for IPv4 clients) are stored as IPv4. A peer id is not an
//!   identity (anyone can claim one), so a `stopped` can remove only the
//!   asker's own entry; the same client announcing from a new port is a new
//!   entry until the old one expires.
//! - A peer not heard from for more than [`EXPIRY_INTERVALS`] intervals is
//!   gone. Each announce expires its own swarm; every call also runs a
//!   sweep of all swarms once per interval, which forgets swarms that have
//!   been empty and silent that long (their `downloaded` count goes with
//!   them).
//! - `complete` counts peers whose last announce said `left=0`; a peer that
//!   did not send `left` counts as a leecher. `downloaded` counts
//!   `event=completed`, once per stored peer.
//! - Bounds: at most `max_torrents` swarms (a new info hash beyond that is
//!   refused with a `failure reason`), `max_peers_per_torrent` peers in
//!   one swarm (a newcomer to a full swarm replaces the peer silent
//!   longest: that one is the likeliest to be gone, and live peers come
//!   back at their next announce), and `max_peers` in all (a newcomer
//!   beyond that gets peers and a `warning message`, but is not stored).

use super::query::{AnnounceQuery, MAX_NUMWANT};
use crate::proto::bencode::Owned;
use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{encode_compact, Event, ScrapeStats};
use crate::util::random::Rng;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The re-announce interval we ask for: the usual 30 minutes. A fleet
/// that wants newcomers found sooner lowers it; every peer then costs
/// proportionally more requests.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// A peer silent for more than this many intervals is dropped: one missed
/// announce (a slow or briefly offline peer) is forgiven, two are not.
pub const EXPIRY_INTERVALS: u32 = 2;

/// Peers kept per swarm. Far beyond a fleet's size, and with
/// [`MAX_NUMWANT`] per reply no client needs more to choose from; it also
/// bounds the per-announce work (one pass over the swarm).
pub const DEFAULT_MAX_PEERS_PER_TORRENT: usize = 5_000;

/// Swarms kept. A fleet tracks a handful of artefacts at a time; 10,000
/// leaves room for churn while an info-hash flood cannot grow the map
/// without bound.
pub const DEFAULT_MAX_TORRENTS: usize = 10_000;

/// Peers kept in all swarms together. A stored peer costs about 150 bytes
/// (entry, address index, map overhead), so this caps the store near
/// 75 MB even if every swarm is full, which per-swarm and per-torrent caps
/// alone (50 million peers) would not.
pub const DEFAULT_MAX_PEERS: usize = 500_000;

/// Swarms listed by a scrape that names no info hash: a few tens of KB of
/// reply, and a bounded time under the store's lock.
pub const MAX_SCRAPE_ALL: usize = 1_000;

/// The store's limits; see the module header for what each one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The `interval` in replies; the expiry and sweep clock. Sent in whole
    /// seconds, at least 1.
    pub interval: Duration,
    pub max_peers_per_torrent: usize,
    pub max_torrents: usize,
    pub max_peers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            interval: DEFAULT_INTERVAL,
            max_peers_per_torrent: DEFAULT_MAX_PEERS_PER_TORRENT,
            max_torrents: DEFAULT_MAX_TORRENTS,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

/// One peer handed out in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
}

/// The answer to an announce, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Seconds until the next regular announce.
    pub interval: u32,
    /// Seconds a client should wait at least between announces: half the
    /// interval.
    pub min_interval: u32,
    /// Seeders, the asker included.
    pub complete: u32,
    /// Leechers, the asker included.
    pub incomplete: u32,
    /// A random subset of the swarm, never the asker, both families mixed
    /// unless the query restricted them.
    pub peers: Vec<PeerInfo>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    peer_id: [u8; 20],
    seeder: bool,
    /// Whether this peer's `completed` was counted in `downloaded`.
    completed: bool,
    last_seen: Instant,
}

/// The peers of one info hash: a vector (cheap random picks) plus an index
/// by address; `seeders` is kept in step with the vector.
#[derive(Debug)]
struct Swarm {
    peers: Vec<Peer>,
    index: HashMap<SocketAddr, usize>,
    seeders: usize,
    downloaded: u64,
    last_active: Instant,
}

impl Swarm {
    fn new(now: Instant) -> Swarm {
        Swarm {
            peers: Vec::new(),
            index: HashMap::new(),
            seeders: 0,
            downloaded: 0,
            last_active: now,
        }
    }

    fn remove_at(&mut self, i: usize) {
        if i >= self.peers.len() {
            return;
        }
        let gone = self.peers.swap_remove(i);
        self.index.remove(&gone.addr);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.addr, i);
        }
        if gone.seeder {
            self.seeders = self.seeders.saturating_sub(1);
        }
    }

    /// Removes peers silent for more than `ttl`; returns how many.
    fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.peers.len();
        // Backwards, so that swap_remove only moves already-checked peers.
        for i in (0..before).rev() {
            let stale = self
                .peers
                .get(i)
                .is_some_and(|p| now.saturating_duration_since(p.last_seen) > ttl);
            if stale {
                self.remove_at(i);
            }
        }
        before - self.peers.len()
    }

    fn stats(&self) -> ScrapeStats {
        ScrapeStats {
            complete: count(self.seeders),
            downloaded: u32::try_from(self.downloaded).unwrap_or(u32::MAX),
            incomplete: count(self.peers.len().saturating_sub(self.seeders)),
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The peer store. See the module header.
#[derive(Debug)]
pub struct Swarms {
    limits: Limits,
    torrents: HashMap<InfoHash, Swarm>,
    /// Peers in all swarms, kept in step with them.
    total_peers: usize,
    rng: Rng,
    last_sweep: Option<Instant>,
}

impl Swarms {
    /// An empty store; `seed` drives the choice of peers in replies.
    pub fn new(limits: Limits, seed: u64) -> Swarms {
        Swarms {
            limits,
            torrents: HashMap::new(),
            total_peers: 0,
            rng: Rng::new(seed),
            last_sweep: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Swarms currently kept.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Peers currently kept, in all swarms.
    pub fn peer_count(&self) -> usize {
        self.total_peers
    }

    /// Records an announce from `source` (the connection's address) and
    /// answers it. `Err` is a refusal, for the client's `failure reason`.
    pub fn announce(
        &mut self,
        q: &AnnounceQuery,
        source: IpAddr,
        now: Instant,
    ) -> Result<Reply, String> {
        self.sweep_if_due(now);
        let addr = SocketAddr::new(canonical(source), q.port);
        let ttl = self.ttl();
        let interval = whole_secs(self.limits.interval);
        let mut reply = Reply {
            interval,
            min_interval: (interval / 2).max(1),
            complete: 0,
            incomplete: 0,
            peers: Vec::new(),
            warning: None,
        };
        let stopped = q.event == Some(Event::Stopped);
        let full = self.torrents.len() >= self.limits.max_torrents;
        let swarm = match self.torrents.entry(q.info_hash) {
            Entry::Occupied(e) => e.into_mut(),
            // Leaving a swarm we never knew: nothing to do.
            Entry::Vacant(_) if stopped => return Ok(reply),
            Entry::Vacant(_) if full => {
                return Err(format!(
                    "tracker is full: it already tracks {} torrents",
                    self.limits.max_torrents
                ))
            }
            Entry::Vacant(e) => e.insert(Swarm::new(now)),
        };
        swarm.last_active = now;
        self.total_peers = self.total_peers.saturating_sub(swarm.expire(now, ttl));

        let existing = swarm.index.get(&addr).copied();
        if stopped {
            if let Some(i) = existing {
                swarm.remove_at(i);
                self.total_peers = self.total_peers.saturating_sub(1);
            }
            let stats = swarm.stats();
            (reply.complete, reply.incomplete) = (stats.complete, stats.incomplete);
            return Ok(reply);
        }

        let slot = match existing {
            Some(i) => Some(i),
            None => {
                let cap = self.limits.max_peers_per_torrent;
                if swarm.peers.len() >= cap {
                    let oldest = (swarm.peers.iter().enumerate())
                        .min_by_key(|(_, p)| p.last_seen)
                        .map(|(i, _)| i);
                    if let Some(i) = oldest {
                        swarm.remove_at(i);
                        self.total_peers = self.total_peers.saturating_sub(1);
                    }
                }
                if swarm.peers.len() >= cap || self.total_peers >= self.limits.max_peers {
                    reply.warning = Some("tracker is full: you were not added to the swarm".into());
                    None
                } else {
                    swarm.peers.push(Peer {
                        addr,
                        peer_id: q.peer_id,
                        seeder: false,
                        completed: false,
                        last_seen: now,
                    });
                    let i = swarm.peers.len() - 1;
                    swarm.index.insert(addr, i);
                    self.total_peers += 1;
                    Some(i)
                }
            }
        };
        let seeder = q.left == Some(0);
        if let Some(p) = slot.and_then(|i| swarm.peers.get_mut(i)) {
            if p.seeder != seeder {
                swarm.seeders = if seeder {
                    swarm.seeders + 1
                } else {
                    swarm.seeders.saturating_sub(1)
                };
            }
            p.seeder = seeder;
            p.peer_id = q.peer_id;
            p.last_seen = now;
            if q.event == Some(Event::Completed) && !p.completed {
                p.completed = true;
                swarm.downloaded = swarm.downloaded.saturating_add(1);
            }
        }
        let stats = swarm.stats();
        (reply.complete, reply.incomplete) = (stats.complete, stats.incomplete);

        // The candidates: not the asker (by address or peer id, so a client
        // announcing over both families does not get itself back), in a
        // family it asked for, and no seeders for a seeder (they have
        // nothing to trade).
        let want = q.numwant.min(MAX_NUMWANT);
        if want == 0 {
            return Ok(reply);
        }
        let mut candidates: Vec<usize> = (swarm.peers.iter().enumerate())
            .filter(|(_, p)| {
                p.addr != addr
                    && p.peer_id != q.peer_id
                    && q.families.allows(p.addr)
                    && !(seeder && p.seeder)
            })
            .map(|(i, _)| i)
            .collect();
        // A partial Fisher-Yates shuffle: the first `take` are a uniform
        // random subset in random order.
        let take = want.min(candidates.len());
        for i in 0..take {
            let j = i + self.rng.below(candidates.len() - i);
            candidates.swap(i, j);
        }
        reply.peers = (candidates.iter().take(take))
            .filter_map(|&i| swarm.peers.get(i))
            .map(|p| PeerInfo {
                addr: p.addr,
                peer_id: p.peer_id,
            })
            .collect();
        Ok(reply)
    }

    /// Figures for the swarms named, or for all swarms (up to
    /// [`MAX_SCRAPE_ALL`]) when `hashes` is empty. Unknown info hashes are
    /// left out. Each listed swarm is expired first, so counts are current.
    pub fn scrape(&mut self, hashes: &[InfoHash], now: Instant) -> Vec<(InfoHash, ScrapeStats)> {
        self.sweep_if_due(now);
        let ttl = self.ttl();
        let mut removed = 0;
        let mut out = Vec::new();
        if hashes.is_empty() {
            for (hash, swarm) in self.torrents.iter_mut().take(MAX_SCRAPE_ALL) {
                removed += swarm.expire(now, ttl);
                out.push((*hash, swarm.stats()));
            }
        } else {
            // A hash asked for twice is scanned once: repeats must not
            // multiply the work done under the store's lock.
            let mut wanted: Vec<&InfoHash> = hashes
                .iter()
                .take(super::query::MAX_SCRAPE_HASHES)
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            for hash in wanted {
                if let Some(swarm) = self.torrents.get_mut(hash) {
                    removed += swarm.expire(now, ttl);
                    out.push((*hash, swarm.stats()));
                }
            }
        }
        self.total_peers = self.total_peers.saturating_sub(removed);
        out
    }

    /// Expires silent peers in every swarm and forgets swarms that have
    /// been empty and silent for the expiry time.
    pub fn sweep(&mut self, now: Instant) {
        let ttl = self.ttl();
        let mut removed = 0;
        self.torrents.retain(|_, swarm| {
            removed += swarm.expire(now, ttl);
            !swarm.peers.is_empty() || now.saturating_duration_since(swarm.last_active) <= ttl
        });
        self.total_peers = self.total_peers.saturating_sub(removed);
        self.last_sweep = Some(now);
    }

    /// Sweeps if the last sweep is an interval old: the cost of a full pass
    /// is paid once per interval, by whichever request comes then.
    fn sweep_if_due(&mut self, now: Instant) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= self.limits.interval);
        if due {
            self.sweep(now);
        }
    }

    fn ttl(&self) -> Duration {
        self.limits.interval.saturating_mul(EXPIRY_INTERVALS)
    }
}

/// IPv4-mapped IPv6 addresses as IPv4; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn whole_secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX).max(1)
}

/// The bencoded announce reply: compact `peers` (BEP 23) and `peers6`
/// (BEP 7, only when there are IPv6 peers), or with `compact == false` one
/// `peers` list of dictionaries (`ip` as text, `port`, and `peer id`
/// unless `no_peer_id`).
pub fn encode_reply(reply: &Reply, compact: bool, no_peer_id: bool) -> Vec<u8> {
    let mut d = Owned::dict()
        .insert("interval", i64::from(reply.interval))
        .insert("min interval", i64::from(reply.min_interval))
        .insert("complete", i64::from(reply.complete))
        .insert("incomplete", i64::from(reply.incomplete));
    if compact {
        let addrs: Vec<SocketAddr> = reply.peers.iter().map(|p| p.addr).collect();
        let (v4, v6) = encode_compact(&addrs);
        d = d.insert("peers", v4);
        if !v6.is_empty() {
            d = d.insert("peers6", v6);
        }
    } else {
        let list = (reply.peers.iter())
            .map(|p| {
                let entry = Owned::dict()
                    .insert("ip", p.addr.ip().to_string().as_str())
                    .insert("port", i64::from(p.addr.port()));
                if no_peer_id {
                    entry
                } else {
                    entry.insert("peer id", &p.peer_id[..])
                }
            })
            .collect::<Vec<_>>();
        d = d.insert("peers", list);
    }
    if let Some(w) = &reply.warning {
        d = d.insert("warning message", w.as_str());
    }
    d.encode()
}

/// The bencoded scrape reply (BEP 48): `files`, keyed by raw info hash.
pub fn encode_scrape(files: &[(InfoHash, ScrapeStats)]) -> Vec<u8> {
    let files: BTreeMap<Vec<u8>, Owned> = (files.iter())
        .map(|(hash, s)| {
            let entry = Owned::dict()
                .insert("complete", i64::from(s.complete))
                .insert("downloaded", i64::from(s.downloaded))
                .insert("incomplete", i64::from(s.incomplete));
            (hash.0.to_vec(), entry)
        })
        .collect();
    Owned::dict().insert("files", Owned::Dict(files)).encode()
}

/// A refusal: `failure reason` alone, as every tracker sends it.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    Owned::dict().insert("failure reason", reason).encode()
}

#[cfg(test)]
mod tests {
    use super::super::query::Families;
    use super::*;
    use crate::proto::tracker::{parse_response, parse_scrape};
    use std::collections::HashSet;

    const H: InfoHash = InfoHash([7; 20]);

    fn limits(interval_secs: u64) -> Limits {
        Limits {
            interval: Duration::from_secs(interval_secs),
            ..Limits::default()
        }
    }

    fn q(id: u8, port: u16) -> AnnounceQuery {
        AnnounceQuery {
            info_hash: H,
            peer_id: [id; 20],
            port,
            uploaded: 0,
            downloaded: 0,
            left: Some(100),
            event: None,
            numwant: 50,
            compact: true,
            no_peer_id: false,
            key: None,
            families: Families::Both,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addrs(r: &Reply) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = r.peers.iter().map(|p| p.addr).collect();
        v.sort();
        v
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn two_peers_see_each_other_not_themselves() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 1);
        let a = s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        assert!(a.peers.is_empty());
        assert_eq!((a.interval, a.min_interval), (60, 30));
        assert_eq!((a.complete, a.incomplete), (0, 1));
        let b = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        assert_eq!(addrs(&b), vec![sa("10.0.0.1:1000")]);
        assert_eq!(b.peers[0].peer_id, [1; 20]);
        let a = s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        assert_eq!(addrs(&a), vec![sa("10.0.0.2:2000")]);
        assert_eq!((a.complete, a.incomplete), (0, 2));
        assert_eq!((s.torrent_count(), s.peer_count()), (1, 2));
        // Same client id from another address (its other family): not
        // handed back to itself.
        let a6 = s.announce(&q(1, 1000), ip("fd00::1"), t).unwrap();
        assert_eq!(addrs(&a6), vec![sa("10.0.0.2:2000")]);
    }

    #[test]
    fn stopped_removes_and_never_creates() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 1);
        s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        let stop = AnnounceQuery {
            event: Some(Event::Stopped),
            ..q(1, 1000)
        };
        // From another address, `stopped` removes nothing.
        let r = s.announce(&stop, ip("10.0.0.9"), t).unwrap();
        assert_eq!(r.incomplete, 2);
        let r = s.announce(&stop, ip("10.0.0.1"), t).unwrap();
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (0, 1));
        let b = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        assert!(b.peers.is_empty());
        assert_eq!(s.peer_count(), 1);
        let other = AnnounceQuery {
            info_hash: InfoHash([9; 20]),
            ..stop
        };
        s.announce(&other, ip("10.0.0.1"), t).unwrap();
        assert_eq!(s.torrent_count(), 1);
    }

    #[test]
    fn silent_peers_expire_after_two_intervals() {
        let t = Instant::now();
        let secs = Duration::from_secs;
        let mut s = Swarms::new(limits(10), 1);
        s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        s.announce(&q(2, 2000), ip("10.0.0.2"), t + secs(15))
            .unwrap();
        // Exactly two intervals: still there.
        let c = s
            .announce(&q(3, 3000), ip("10.0.0.3"), t + secs(20))
            .unwrap();
        assert_eq!(c.peers.len(), 2);
        let c = s
            .announce(&q(3, 3000), ip("10.0.0.3"), t + secs(21))
            .unwrap();
        assert_eq!(addrs(&c), vec![sa("10.0.0.2:2000")]);
        assert_eq!(c.incomplete, 2);
        assert_eq!(s.peer_count(), 2);
        // The sweep expires silent peers, then forgets the silent swarm.
        s.sweep(t + secs(40));
        assert_eq!((s.torrent_count(), s.peer_count()), (1, 1));
        s.sweep(t + secs(42));
        assert_eq!((s.torrent_count(), s.peer_count()), (0, 0));
        // An empty swarm keeps its `downloaded` count while recently active.
        let done = AnnounceQuery {
            left: Some(0),
            event: Some(Event::Completed),
            ..q(1, 1000)
        };
        s.announce(&done, ip("10.0.0.1"), t + secs(100)).unwrap();
        let stop = AnnounceQuery {
            event: Some(Event::Stopped),
            ..q(1, 1000)
        };
        s.announce(&stop, ip("10.0.0.1"), t + secs(100)).unwrap();
        s.sweep(t + secs(110));
        let want = ScrapeStats {
            complete: 0,
            downloaded: 1,
            incomplete: 0,
        };
        assert_eq!(s.scrape(&[H], t + secs(110)), vec![(H, want)]);
        // Sweeps also happen by themselves, once per interval, with any
        // request.
        let other = AnnounceQuery {
            info_hash: InfoHash([1; 20]),
            ..q(2, 2000)
        };
        s.announce(&other, ip("10.0.0.2"), t + secs(200)).unwrap();
        assert_eq!((s.torrent_count(), s.peer_count()), (1, 1));
    }

    #[test]
    fn seeders_leechers_and_completed_once() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 1);
        s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        let unknown_left = AnnounceQuery {
            left: None,
            ..q(4, 4000)
        };
        s.announce(&unknown_left, ip("10.0.0.4"), t).unwrap();
        let done = AnnounceQuery {
            left: Some(0),
            event: Some(Event::Completed),
            ..q(1, 1000)
        };
        let r = s.announce(&done, ip("10.0.0.1"), t).unwrap();
        assert_eq!((r.complete, r.incomplete), (1, 2));
        s.announce(&done, ip("10.0.0.1"), t).unwrap();
        let stats = s.scrape(&[H], t);
        assert_eq!(
            stats,
            vec![(
                H,
                ScrapeStats {
                    complete: 1,
                    downloaded: 1,
                    incomplete: 2
                }
            )]
        );
        // Back to leeching (new data), then stopped: counts follow.
        s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        let r = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        assert_eq!((r.complete, r.incomplete), (0, 3));
        let seed = AnnounceQuery {
            left: Some(0),
            ..q(5, 5000)
        };
        let r = s.announce(&seed, ip("10.0.0.5"), t).unwrap();
        assert_eq!((r.complete, r.incomplete), (1, 3));
        // A seeder is not given other seeders.
        let seed2 = AnnounceQuery {
            left: Some(0),
            ..q(6, 6000)
        };
        let r = s.announce(&seed2, ip("10.0.0.6"), t).unwrap();
        assert_eq!(r.peers.len(), 3);
        assert!(!r.peers.iter().any(|p| p.addr.port() >= 5000));
        let leech = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
        assert_eq!(leech.peers.len(), 4);
    }

    #[test]
    fn numwant_is_a_bounded_random_subset() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 42);
        for i in 0..100u8 {
            s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), t)
                .unwrap();
        }
        let asker = AnnounceQuery {
            numwant: 10,
            ..q(0, 1000)
        };
        let mut sets = HashSet::new();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let r = s.announce(&asker, ip("10.0.0.1"), t).unwrap();
            let got = addrs(&r);
            assert_eq!(got.len(), 10);
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), 10, "distinct");
            assert!(!got.contains(&sa("10.0.0.1:1000")), "not the asker");
            seen.extend(got.iter().copied());
            sets.insert(got);
        }
        assert!(sets.len() > 45, "{} distinct sets of 50", sets.len());
        assert!(seen.len() > 90, "{} peers ever chosen", seen.len());
        // The cap holds whatever the query says; 0 means none.
        let greedy = AnnounceQuery {
            numwant: 10_000,
            ..q(0, 1000)
        };
        for i in 100..250u8 {
            s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.2"), t)
                .unwrap();
        }
        assert_eq!(
            s.announce(&greedy, ip("10.0.0.1"), t).unwrap().peers.len(),
            MAX_NUMWANT
        );
        let none = AnnounceQuery {
            numwant: 0,
            ..q(0, 1000)
        };
        assert!(s
            .announce(&none, ip("10.0.0.1"), t)
            .unwrap()
            .peers
            .is_empty());
    }

    #[test]
    fn ipv6_peers_go_to_peers6_and_mapped_ipv4_is_ipv4() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 1);
        s.announce(&q(1, 1000), ip("::ffff:10.0.0.1"), t).unwrap();
        s.announce(&q(2, 2000), ip("2001:db8::2"), t).unwrap();
        let r = s.announce(&q(3, 3000), ip("10.0.0.3"), t).unwrap();
        assert_eq!(
            addrs(&r),
            vec![sa("10.0.0.1:1000"), sa("[2001:db8::2]:2000")]
        );
        let body = encode_reply(&r, true, false);
        let v = crate::proto::bencode::decode(&body).unwrap();
        assert_eq!(v.get("peers").unwrap().as_bytes().unwrap().len(), 6);
        assert_eq!(v.get("peers6").unwrap().as_bytes().unwrap().len(), 18);
        let mut parsed = parse_response(&body).unwrap();
        parsed.peers.sort();
        assert_eq!(parsed.peers, addrs(&r));
        assert_eq!((parsed.interval, parsed.min_interval), (Some(60), Some(30)));
        assert_eq!((parsed.complete, parsed.incomplete), (Some(0), Some(3)));
        // A BEP 15 front-end asks for one family only.
        let v4_only = AnnounceQuery {
            families: Families::V4,
            ..q(3, 3000)
        };
        let r4 = s.announce(&v4_only, ip("10.0.0.3"), t).unwrap();
        assert_eq!(addrs(&r4), vec![sa("10.0.0.1:1000")]);
        let v6_only = AnnounceQuery {
            families: Families::V6,
            ..q(3, 3000)
        };
        let r6 = s.announce(&v6_only, ip("10.0.0.3"), t).unwrap();
        assert_eq!(addrs(&r6), vec![sa("[2001:db8::2]:2000")]);
        // Without IPv6 peers there is no peers6 key.
        let body = encode_reply(&r4, true, false);
        assert!(crate::proto::bencode::decode(&body)
            .unwrap()
            .get("peers6")
            .is_none());
    }

    #[test]
    fn dictionary_peers_when_not_compact() {
        let r = Reply {
            interval: 60,
            min_interval: 30,
            complete: 1,
            incomplete: 1,
            peers: vec![
                PeerInfo {
                    addr: sa("10.0.0.1:1000"),
                    peer_id: [b'a'; 20],
                },
                PeerInfo {
                    addr: sa("[::1]:2000"),
                    peer_id: [b'b'; 20],
                },
            ],
            warning: Some("hello".into()),
        };
        let body = encode_reply(&r, false, false);
        let parsed = parse_response(&body).unwrap();
        assert_eq!(parsed.peers, vec![sa("10.0.0.1:1000"), sa("[::1]:2000")]);
        assert_eq!(parsed.warning.as_deref(), Some("hello"));
        let v = crate::proto::bencode::decode(&body).unwrap();
        let first = &v.get("peers").unwrap().as_list().unwrap()[0];
        assert_eq!(
            first.get("peer id").unwrap().as_bytes(),
            Some(&[b'a'; 20][..])
        );
        let body = encode_reply(&r, false, true);
        let v = crate::proto::bencode::decode(&body).unwrap();
        let first = &v.get("peers").unwrap().as_list().unwrap()[0];
        assert!(first.get("peer id").is_none());
    }

    #[test]
    fn full_swarm_replaces_the_longest_silent_peer() {
        let t = Instant::now();
        let mut s = Swarms::new(
            Limits {
                max_peers_per_torrent: 3,
                ..limits(60)
            },
            1,
        );
        for i in 1..=3u8 {
            let at = t + Duration::from_secs(u64::from(i));
            s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), at)
                .unwrap();
        }
        // Peer 1 re-announces and so is no longer the longest silent.
        s.announce(&q(1, 1001), ip("10.0.0.1"), t + Duration::from_secs(4))
            .unwrap();
        for i in 4..=5u8 {
            let at = t + Duration::from_secs(u64::from(i) + 1);
            let r = s
                .announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), at)
                .unwrap();
            assert_eq!(r.warning, None);
            assert_eq!(r.incomplete, 3);
        }
        assert_eq!(s.peer_count(), 3);
        let r = s
            .announce(&q(9, 9), ip("10.0.0.9"), t + Duration::from_secs(7))
            .unwrap();
        // Peers 2 and 3 were replaced by 4 and 5, then 1 by the asker.
        assert_eq!(addrs(&r), vec![sa("10.0.0.1:1004"), sa("10.0.0.1:1005")]);
        assert_eq!(s.peer_count(), 3);
    }

    #[test]
    fn torrent_and_total_peer_caps() {
        let t = Instant::now();
        let mut s = Swarms::new(
            Limits {
                max_torrents: 2,
                max_peers: 3,
                ..limits(60)
            },
            1,
        );
        let on = |h: u8, id: u8| AnnounceQuery {
            info_hash: InfoHash([h; 20]),
            ..q(id, 1000 + u16::from(id))
        };
        s.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
        s.announce(&on(2, 2), ip("10.0.0.1"), t).unwrap();
        let err = s.announce(&on(3, 3), ip("10.0.0.1"), t).unwrap_err();
        assert_eq!(err, "tracker is full: it already tracks 2 torrents");
        assert_eq!(
            parse_response(&encode_failure(&err))
                .unwrap_err()
                .to_string(),
            "tracker refused: tracker is full: it already tracks 2 torrents"
        );
        assert_eq!(s.torrent_count(), 2);
        s.announce(&on(1, 4), ip("10.0.0.1"), t).unwrap();
        // The total is reached: answered, warned, not stored.
        let r = s.announce(&on(1, 5), ip("10.0.0.1"), t).unwrap();
        assert_eq!(
            r.warning.as_deref(),
            Some("tracker is full: you were not added to the swarm")
        );
        assert_eq!(r.peers.len(), 2);
        assert_eq!(s.peer_count(), 3);
        // Known peers still update; a stopped peer frees its place.
        let r = s.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
        assert_eq!(r.warning, None);
        let stop = AnnounceQuery {
            event: Some(Event::Stopped),
            ..on(1, 1)
        };
        s.announce(&stop, ip("10.0.0.1"), t).unwrap();
        assert_eq!(
            s.announce(&on(1, 5), ip("10.0.0.1"), t).unwrap().warning,
            None
        );
        // Limits of zero store nothing and do not panic.
        let mut zero = Swarms::new(
            Limits {
                max_torrents: 0,
                max_peers: 0,
                max_peers_per_torrent: 0,
                interval: Duration::ZERO,
            },
            1,
        );
        assert!(zero.announce(&on(1, 1), ip("10.0.0.1"), t).is_err());
        let mut no_peers = Swarms::new(
            Limits {
                max_peers_per_torrent: 0,
                interval: Duration::ZERO,
                ..Limits::default()
            },
            1,
        );
        let r = no_peers.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
        assert_eq!((r.interval, r.min_interval, r.incomplete), (1, 1, 0));
        assert!(r.warning.is_some());
    }

    #[test]
    fn scrape_named_all_and_unknown() {
        let t = Instant::now();
        let mut s = Swarms::new(limits(60), 1);
        s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
        let other = AnnounceQuery {
            info_hash: InfoHash([8; 20]),
            left: Some(0),
            ..q(2, 2000)
        };
        s.announce(&other, ip("10.0.0.2"), t).unwrap();
        let mut all = s.scrape(&[], t);
        all.sort_by_key(|(h, _)| *h);
        assert_eq!(all.len(), 2);
        let body = encode_scrape(&all);
        let a = parse_scrape(&body, &H).unwrap().unwrap();
        assert_eq!((a.complete, a.incomplete, a.downloaded), (0, 1, 0));
        let b = parse_scrape(&body, &InfoHash([8; 20])).unwrap().unwrap();
        assert_eq!((b.complete, b.incomplete), (1, 0));
        let named = s.scrape(&[InfoHash([8; 20]), InfoHash([3; 20])], t);
        assert_eq!(named.len(), 1);
        assert_eq!(parse_scrape(&encode_scrape(&named), &H).unwrap(), None);
        assert_eq!(encode_scrape(&[]), b"d5:filesdee".to_vec());
        // A hash repeated (74 times fit a UDP scrape) is answered once.
        let repeated = s.scrape(&[InfoHash([8; 20]); 74], t);
        assert_eq!(repeated.len(), 1);
    }
}
