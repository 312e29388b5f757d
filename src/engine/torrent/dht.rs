//! A torrent's use of the session's DHT node: a `get_peers` lookup at
//! start and again every [`INTERVAL`] (every [`PEERLESS_INTERVAL`] while
//! no peer is connected and pieces are missing, so a seeder that joins
//! later is found in seconds), each followed by an `announce_peer` of our
//! port when we listen. Peers found come back on `found`, one batch per
//! answer, into the address book like a tracker's. Off for private
//! torrents (BEP 27) and when the session runs no node.

use super::*;
use crate::net::dht::Dht;

/// Between lookups while we have peers (or are seeding); announces to
/// the DHT expire after 30 minutes, so this keeps ours alive too.
pub(super) const INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Between lookups while downloading with no peer connected.
pub(super) const PEERLESS_INTERVAL: Duration = Duration::from_secs(10);
/// Batches of peers waiting for the orchestrator at most (the node drops
/// a batch rather than wait).
const FOUND_QUEUE: usize = 64;

pub(super) struct Lookups {
    node: Option<Dht>,
    /// Kept so that `found` stays connected between lookups.
    tx: Sender<Vec<SocketAddr>>,
    pub(super) found: Receiver<Vec<SocketAddr>>,
    last: Option<Instant>,
}

impl Lookups {
    /// Lookups through the session's node; none for a private torrent.
    pub(super) fn new(session: &Session, private: bool) -> Lookups {
        let node = session.dht().filter(|_| !private).cloned();
        let (tx, found) = bounded(FOUND_QUEUE);
        Lookups {
            found: if node.is_some() { found } else { never() },
            node,
            tx,
            last: None,
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.node.is_some()
    }

    /// Our node's UDP port, for `PORT` messages.
    pub(super) fn port(&self) -> Option<u16> {
        self.node.as_ref().map(|d| d.port)
    }

    /// Starts a lookup of `info_hash` (announcing `announce`, our port)
    /// when one is due: every [`INTERVAL`], or [`PEERLESS_INTERVAL`] while
    /// we have no peer and need one.
    pub(super) fn look_up(&mut self, info_hash: &InfoHash, announce: Option<u16>, peerless: bool) {
        let Some(node) = &self.node else {
            return;
        };
        let every = if peerless {
            PEERLESS_INTERVAL
        } else {
            INTERVAL
        };
        let now = Instant::now();
        if self.last.is_some_and(|t| now - t < every) {
            return;
        }
        self.last = Some(now);
        node.lookup(info_hash.0, announce, self.tx.clone());
    }

    /// A peer's `PORT` message: its node, at its IP.
    pub(super) fn add_node(&self, peer: SocketAddr, port: u16) {
        let ip = match peer.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        };
        if let (Some(node), Some(ip), true) = (&self.node, ip, port != 0) {
            node.add_node(std::net::SocketAddrV4::new(ip, port));
        }
    }
}

impl Orchestrator<'_> {
    /// Starts a lookup when one is due (called on the tick).
    pub(super) fn look_up_dht(&mut self) {
        let complete = self.picker.is_complete();
        if complete && !self.opts.seed.wants_seeding() {
            return;
        }
        let peerless = !complete && !self.peers.values().any(|p| p.socket.is_some());
        let announce = self.swarm.listen_addr.map(|a| a.port());
        self.dht.look_up(&self.meta.info_hash, announce, peerless);
    }
}
