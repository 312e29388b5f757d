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
//!   refused with a `failure reason`), of which one address may have
//!   started at most `max_torrents_per_ip` (so that one client cannot fill
//!   the store for everybody), `max_peers_per_torrent` peers in
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

/// The `min interval` in replies, at most (seconds): a client short of
/// peers may ask again this soon (announces are cheap; a fleet's newcomer
/// is then found in seconds), and none sooner.
pub const MIN_INTERVAL: u32 = 5;

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

/// Swarms one address may have created and that still live: a tenth of
/// the store, so that one client announcing random info hashes cannot fill
/// it for everybody (a fleet host seeding a thousand artefacts still fits).
pub const DEFAULT_MAX_TORRENTS_PER_IP: usize = DEFAULT_MAX_TORRENTS / 10;

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
    pub max_torrents_per_ip: usize,
    pub max_peers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            interval: DEFAULT_INTERVAL,
            max_peers_per_torrent: DEFAULT_MAX_PEERS_PER_TORRENT,
            max_torrents: DEFAULT_MAX_TORRENTS,
            max_torrents_per_ip: DEFAULT_MAX_TORRENTS_PER_IP,
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
    /// Whose announce created it (counted against its quota; `None`: the
    /// tracker's own host, which has none). See [`client_key`].
    creator: Option<IpAddr>,
    peers: Vec<Peer>,
    index: HashMap<SocketAddr, usize>,
    seeders: usize,
    downloaded: u64,
    last_active: Instant,
}

impl Swarm {
    fn new(creator: Option<IpAddr>, now: Instant) -> Swarm {
        Swarm {
            creator,
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
    /// Live swarms per creating address, kept in step with `torrents`.
    created: HashMap<IpAddr, usize>,
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
            created: HashMap::new(),
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
            min_interval: (interval / 2).clamp(1, MIN_INTERVAL),
            complete: 0,
            incomplete: 0,
            peers: Vec::new(),
            warning: None,
        };
        let stopped = q.event == Some(Event::Stopped);
        let full = self.torrents.len() >= self.limits.max_torrents;
        let creator = client_key(source);
        let quota_used = creator.map_or(0, |c| self.created.get(&c).copied().unwrap_or(0));
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
            Entry::Vacant(_) if quota_used >= self.limits.max_torrents_per_ip => {
                return Err(format!(
                    "your address already started {quota_used} of the torrents tracked here"
                ))
            }
            Entry::Vacant(e) => {
                if let Some(c) = creator {
                    *self.created.entry(c).or_default() += 1;
                }
                e.insert(Swarm::new(creator, now))
            }
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
        let created = &mut self.created;
        self.torrents.retain(|_, swarm| {
            removed += swarm.expire(now, ttl);
            let keep =
                !swarm.peers.is_empty() || now.saturating_duration_since(swarm.last_active) <= ttl;
            if !keep {
                if let Some(Entry::Occupied(mut n)) = swarm.creator.map(|c| created.entry(c)) {
                    *n.get_mut() -= 1;
                    if *n.get() == 0 {
                        n.remove();
                    }
                }
            }
            keep
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

/// The same addressing rules as the HTTP server's per-address cap.
pub use crate::net::http_server::{canonical, client_key};

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
mod tests;
