//! The DHT node's state machine, sans-IO: datagrams and commands in,
//! datagrams out, the time passed in. [`crate::net::udp_port`] runs it on
//! the peer port's socket. Unit-tested without sockets.
//!
//! Server: answers `ping`, `find_node`, `get_peers` (peers we hold, the
//! closest nodes, and a token bound to the requester's IP) and
//! `announce_peer` (token checked) — each IP at most [`super::limiter::RATE`]
//! queries a second; malformed queries get a BEP 5 error, anything else
//! malformed is dropped. Client: iterative lookups, then `announce_peer`
//! to the closest nodes that gave tokens; replies are matched by
//! transaction id *and* source address, anything else is dropped.
//! Bounded: [`MAX_PENDING`] queries outstanding, [`MAX_LOOKUPS`] lookups,
//! and the routing table, peer store and rate limiter bound themselves.

use super::limiter::Limiter;
use super::lookup::Lookup;
use super::routing::{RoutingTable, K};
use super::store::PeerStore;
use super::tokens::Tokens;
use crate::proto::krpc::{self, Body, Message, Method, NodeId, NodeInfo, Response};
use crossbeam_channel::Sender;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Queries we wait on at most; beyond, new ones are not sent.
pub const MAX_PENDING: usize = 256;
/// Lookups running at once at most; beyond, new ones are refused.
pub const MAX_LOOKUPS: usize = 32;
/// A query unanswered this long has failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A lookup ends by then whatever it found.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(20);
/// A lookup of our own id this often keeps the table fresh, and
/// questionable nodes are pinged.
pub const REFRESH: Duration = Duration::from_secs(15 * 60);
/// With fewer than K nodes known, bootstrap again this often.
pub const REBOOTSTRAP: Duration = Duration::from_secs(10);
/// Peers given in one `get_peers` answer at most (they fit a datagram).
const VALUES_PER_ANSWER: usize = 50;
/// Peers a lookup reports at most (the rest are duplicates or noise).
const PEERS_PER_LOOKUP: usize = 500;

/// What the session asks of the node.
pub enum Command {
    /// Find peers of `info_hash`; each batch found goes to `peers` (never
    /// blocking: a full channel loses the batch). With `announce`, then
    /// announce that port to the closest nodes.
    Lookup {
        info_hash: [u8; 20],
        announce: Option<u16>,
        peers: Sender<Vec<SocketAddr>>,
    },
    /// A peer's BEP 5 `PORT` message: a node to ping.
    AddNode(SocketAddrV4),
    /// For tests and `shoal dht`.
    Stats(Sender<Stats>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub nodes: usize,
    pub stored_peers: usize,
    pub pending: usize,
    pub lookups: usize,
    pub limited_ips: usize,
}

enum Purpose {
    Ping,
    Lookup(u64),
    Announce,
}

struct Pending {
    addr: SocketAddrV4,
    sent: Instant,
    purpose: Purpose,
}

struct Running {
    lookup: Lookup,
    /// `get_peers` (with where to send peers, and the port to announce)
    /// or, for `None`, `find_node` (bootstrap and refresh).
    get_peers: Option<(Sender<Vec<SocketAddr>>, Option<u16>)>,
    found: HashSet<SocketAddrV4>,
    deadline: Instant,
}

pub struct Node {
    id: NodeId,
    table: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    limiter: Limiter,
    bootstrap: Vec<SocketAddrV4>,
    pending: HashMap<[u8; 2], Pending>,
    next_tid: u16,
    lookups: HashMap<u64, Running>,
    next_lookup: u64,
    out: Vec<(SocketAddrV4, Vec<u8>)>,
    last_refresh: Instant,
    last_bootstrap: Instant,
}

impl Node {
    /// A node with a random id, bootstrapping from `bootstrap` (routers
    /// and nodes saved by a previous run).
    pub fn new(bootstrap: Vec<SocketAddrV4>, now: Instant) -> Node {
        let mut id = [0u8; 20];
        crate::util::random::fill(&mut id);
        let mut tid = [0u8; 2];
        crate::util::random::fill(&mut tid);
        let mut node = Node {
            id,
            table: RoutingTable::new(id),
            tokens: Tokens::new(now),
            store: PeerStore::default(),
            limiter: Limiter::default(),
            bootstrap,
            pending: HashMap::new(),
            next_tid: u16::from_be_bytes(tid),
            lookups: HashMap::new(),
            next_lookup: 0,
            out: Vec::new(),
            last_refresh: now,
            last_bootstrap: now,
        };
        node.start_lookup(id, None, now);
        node
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The nodes of the routing table (to save for the next run).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.table.nodes().collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            nodes: self.table.len(),
            stored_peers: self.store.len(),
            pending: self.pending.len(),
            lookups: self.lookups.len(),
            limited_ips: self.limiter.tracked(),
        }
    }

    /// Datagrams to send.
    pub fn take_output(&mut self) -> Vec<(SocketAddrV4, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    pub fn command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Lookup {
                info_hash,
                announce,
                peers,
            } => self.start_lookup(info_hash, Some((peers, announce)), now),
            Command::AddNode(addr) => self.query(addr, Method::Ping, Purpose::Ping, now),
            Command::Stats(reply) => {
                let _ = reply.try_send(self.stats());
            }
        }
    }

    /// One datagram from `from`.
    pub fn receive(&mut self, datagram: &[u8], from: SocketAddrV4, now: Instant) {
        match krpc::decode(datagram) {
            Ok(Message {
                tid,
                body: Body::Query { id, method },
            }) => {
                if self.limiter.allow(*from.ip(), now) {
                    self.heard(NodeInfo { id, addr: from }, now);
                    let body = self.answer(method, from, now);
                    self.send(from, Message { tid, body });
                }
            }
            Ok(Message { tid, body }) => self.on_reply(&tid, body, from, now),
            Err(rejected) => {
                log::debug!("dht: {from}: {rejected}");
                if let Some(tid) = rejected.query_tid {
                    if self.limiter.allow(*from.ip(), now) {
                        let body = Body::Error {
                            code: rejected.error.code(),
                            message: rejected.error.to_string(),
                        };
                        self.send(from, Message { tid, body });
                    }
                }
            }
        }
    }

    /// Timeouts, lookups' next steps, refresh and re-bootstrap.
    pub fn tick(&mut self, now: Instant) {
        let expired: Vec<[u8; 2]> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.sent) >= QUERY_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for tid in expired {
            if let Some(p) = self.pending.remove(&tid) {
                self.table.failed(p.addr);
                if let Purpose::Lookup(l) = p.purpose {
                    if let Some(r) = self.lookups.get_mut(&l) {
                        r.lookup.failed(p.addr);
                    }
                }
            }
        }
        let ids: Vec<u64> = self.lookups.keys().copied().collect();
        for l in ids {
            self.step(l, now);
        }
        if now.duration_since(self.last_refresh) >= REFRESH {
            self.last_refresh = now;
            self.store.expire(now);
            for n in self.table.questionable(now) {
                self.query(n.addr, Method::Ping, Purpose::Ping, now);
            }
            self.start_lookup(self.id, None, now);
        }
        if self.table.len() < K && now.duration_since(self.last_bootstrap) >= REBOOTSTRAP {
            self.last_bootstrap = now;
            self.start_lookup(self.id, None, now);
        }
    }

    fn heard(&mut self, info: NodeInfo, now: Instant) {
        if let Some(stale) = self.table.seen(info, now) {
            self.query(stale.addr, Method::Ping, Purpose::Ping, now);
        }
    }

    fn answer(&mut self, method: Method, from: SocketAddrV4, now: Instant) -> Body {
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        match method {
            Method::Ping => {}
            Method::FindNode { target } => r.nodes = self.table.closest(&target, K),
            Method::GetPeers { info_hash } => {
                r.nodes = self.table.closest(&info_hash, K);
                r.values = self.store.get(&info_hash, VALUES_PER_ANSWER, now);
                r.token = Some(self.tokens.issue(*from.ip(), now));
            }
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.valid(*from.ip(), &token, now) {
                    return Body::Error {
                        code: krpc::PROTOCOL_ERROR,
                        message: "bad token".into(),
                    };
                }
                let port = if implied_port { from.port() } else { port };
                self.store
                    .add(info_hash, SocketAddrV4::new(*from.ip(), port), now);
            }
        }
        Body::Response(r)
    }

    fn on_reply(&mut self, tid: &[u8], body: Body, from: SocketAddrV4, now: Instant) {
        let Ok(key) = <[u8; 2]>::try_from(tid) else {
            return;
        };
        // A reply must come from the address we asked: anyone else (or a
        // guessed id) is dropped and the query still waits.
        if self.pending.get(&key).is_none_or(|p| p.addr != from) {
            log::debug!("dht: unexpected reply from {from}");
            return;
        }
        let Some(p) = self.pending.remove(&key) else {
            return;
        };
        let Body::Response(r) = body else {
            if let Purpose::Lookup(l) = p.purpose {
                if let Some(run) = self.lookups.get_mut(&l) {
                    run.lookup.failed(from);
                }
            }
            return;
        };
        self.heard(
            NodeInfo {
                id: r.id,
                addr: from,
            },
            now,
        );
        let Purpose::Lookup(l) = p.purpose else {
            return;
        };
        let Some(run) = self.lookups.get_mut(&l) else {
            return;
        };
        // We may be among the nodes named: never ask ourselves.
        let own = self.id;
        let nodes: Vec<NodeInfo> = r.nodes.into_iter().filter(|n| n.id != own).collect();
        run.lookup.answered(from, r.id, r.token, &nodes);
        if let Some((peers, _)) = &run.get_peers {
            let room = PEERS_PER_LOOKUP.saturating_sub(run.found.len());
            let fresh: Vec<SocketAddr> = r
                .values
                .iter()
                .filter(|v| run.found.insert(**v))
                .take(room)
                .map(|v| SocketAddr::V4(*v))
                .collect();
            if !fresh.is_empty() {
                let _ = peers.try_send(fresh);
            }
        }
        self.step(l, now);
    }

    fn start_lookup(
        &mut self,
        target: NodeId,
        get_peers: Option<(Sender<Vec<SocketAddr>>, Option<u16>)>,
        now: Instant,
    ) {
        if self.lookups.len() >= MAX_LOOKUPS {
            log::info!("dht: {MAX_LOOKUPS} lookups running; one refused");
            return;
        }
        let known = self.table.closest(&target, K * 2);
        let bootstrap: &[SocketAddrV4] = if known.len() < K {
            &self.bootstrap
        } else {
            &[]
        };
        let lookup = Lookup::new(target, &known, bootstrap);
        let l = self.next_lookup;
        self.next_lookup += 1;
        self.lookups.insert(
            l,
            Running {
                lookup,
                get_peers,
                found: HashSet::new(),
                deadline: now + LOOKUP_DEADLINE,
            },
        );
        self.step(l, now);
    }

    /// Sends a lookup's next queries, or ends it (announcing if asked).
    fn step(&mut self, l: u64, now: Instant) {
        let Some(run) = self.lookups.get_mut(&l) else {
            return;
        };
        if run.lookup.is_done() || now >= run.deadline {
            let Some(run) = self.lookups.remove(&l) else {
                return;
            };
            if let Some((_, Some(port))) = run.get_peers {
                let info_hash = *run.lookup.target();
                for (addr, token) in run.lookup.tokens() {
                    let method = Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port: false,
                        token,
                    };
                    self.query(addr, method, Purpose::Announce, now);
                }
            }
            return;
        }
        let target = *run.lookup.target();
        let method = if run.get_peers.is_some() {
            Method::GetPeers { info_hash: target }
        } else {
            Method::FindNode { target }
        };
        for addr in run.lookup.next() {
            self.query(addr, method.clone(), Purpose::Lookup(l), now);
        }
    }

    fn query(&mut self, addr: SocketAddrV4, method: Method, purpose: Purpose, now: Instant) {
        if self.pending.len() >= MAX_PENDING {
            if let Purpose::Lookup(l) = purpose {
                if let Some(run) = self.lookups.get_mut(&l) {
                    run.lookup.failed(addr);
                }
            }
            return;
        }
        let tid = loop {
            self.next_tid = self.next_tid.wrapping_add(1);
            let tid = self.next_tid.to_be_bytes();
            if !self.pending.contains_key(&tid) {
                break tid;
            }
        };
        self.pending.insert(
            tid,
            Pending {
                addr,
                sent: now,
                purpose,
            },
        );
        let body = Body::Query {
            id: self.id,
            method,
        };
        self.send(
            addr,
            Message {
                tid: tid.to_vec(),
                body,
            },
        );
    }

    fn send(&mut self, to: SocketAddrV4, m: Message) {
        self.out.push((to, m.encode()));
    }
}

#[cfg(test)]
mod tests;
