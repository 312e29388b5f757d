//! The routing table (BEP 5): the nodes we know, in 160 k-buckets by the
//! length of the prefix their id shares with ours (the bucket a split
//! table would put them in), K = 8 per bucket, so at most 1,280 nodes.
//! Pure: the caller passes the time.
//!
//! A node is *good* while heard from in the last 15 minutes, *bad* after
//! [`MAX_FAILURES`] unanswered queries in a row (then removed). A full
//! bucket takes a newcomer only in place of a bad node; otherwise its
//! least recently seen questionable node is returned for a ping (one that
//! fails it twice makes room later). Many nodes may share an IP (several
//! nodes on one host, or tests on 127.0.0.1): they are told apart by id
//! and port.

use crate::proto::krpc::{NodeId, NodeInfo};
use std::time::{Duration, Instant};

/// Nodes per bucket (BEP 5).
pub const K: usize = 8;
/// A node not heard from for this long is questionable (BEP 5).
pub const QUESTIONABLE: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row that remove a node.
pub const MAX_FAILURES: u32 = 2;

#[derive(Debug, Clone)]
struct Entry {
    info: NodeInfo,
    last_seen: Instant,
    failures: u32,
}

pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Vec<Entry>>,
}

/// XOR distance, comparable as bytes.
pub fn distance(a: &NodeId, b: &NodeId) -> NodeId {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// Leading bits `a` and `b` share (160 if equal).
fn common_prefix(a: &NodeId, b: &NodeId) -> usize {
    let d = distance(a, b);
    d.iter()
        .position(|&x| x != 0)
        .map_or(160, |i| i * 8 + d[i].leading_zeros() as usize)
}

impl RoutingTable {
    pub fn new(own: NodeId) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Vec::new(); 160],
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// `info` answered us or queried us. Returns a questionable node of its
    /// full bucket to ping, if that is what would make room.
    pub fn seen(&mut self, info: NodeInfo, now: Instant) -> Option<NodeInfo> {
        let prefix = common_prefix(&self.own, &info.id);
        let bucket = self.buckets.get_mut(prefix)?; // our own id: not kept
        if let Some(e) = bucket.iter_mut().find(|e| e.info.id == info.id) {
            // Another address claiming a known id does not take it over.
            if e.info.addr == info.addr {
                e.last_seen = now;
                e.failures = 0;
            }
            return None;
        }
        let entry = Entry {
            info,
            last_seen: now,
            failures: 0,
        };
        if bucket.len() < K {
            bucket.push(entry);
            return None;
        }
        if let Some(bad) = bucket.iter_mut().find(|e| e.failures >= MAX_FAILURES) {
            *bad = entry;
            return None;
        }
        bucket
            .iter()
            .filter(|e| now.duration_since(e.last_seen) >= QUESTIONABLE)
            .min_by_key(|e| e.last_seen)
            .map(|e| e.info)
    }

    /// A query to `info` went unanswered; the node goes after
    /// [`MAX_FAILURES`] in a row, unless its bucket has nobody to replace it.
    pub fn failed(&mut self, addr: std::net::SocketAddrV4) {
        for bucket in &mut self.buckets {
            if let Some(i) = bucket.iter().position(|e| e.info.addr == addr) {
                bucket[i].failures += 1;
                if bucket[i].failures >= MAX_FAILURES {
                    bucket.swap_remove(i);
                }
                return;
            }
        }
    }

    /// The `n` known nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<NodeInfo> {
        let mut all: Vec<NodeInfo> = self.nodes().collect();
        all.sort_by_key(|i| distance(&i.id, target));
        all.truncate(n);
        all
    }

    /// Nodes not heard from for [`QUESTIONABLE`]: to ping.
    pub fn questionable(&self, now: Instant) -> Vec<NodeInfo> {
        self.entries()
            .filter(|e| now.duration_since(e.last_seen) >= QUESTIONABLE)
            .map(|e| e.info)
            .collect()
    }

    pub fn nodes(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.entries().map(|e| e.info)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    fn node(first: u8, last: u8, port: u16) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = first;
        id[19] = last;
        NodeInfo {
            id,
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), port),
        }
    }

    #[test]
    fn prefixes_pick_the_bucket() {
        let zero = [0u8; 20];
        for (first, prefix) in [(0x80, 0), (0x40, 1), (0x01, 7)] {
            assert_eq!(common_prefix(&zero, &node(first, 0, 1).id), prefix);
        }
        assert_eq!(common_prefix(&zero, &node(0, 1, 1).id), 159);
        assert_eq!(common_prefix(&zero, &zero), 160);
    }

    /// K per bucket, many on one IP; a full bucket offers its stalest
    /// questionable node for a ping and takes newcomers only in place of
    /// bad nodes; our own id is never kept.
    #[test]
    fn buckets_hold_k_and_replace_only_bad_nodes() {
        let t0 = Instant::now();
        let mut t = RoutingTable::new([0; 20]);
        for i in 0..K as u8 {
            assert_eq!(t.seen(node(0x80, i, 1000 + u16::from(i)), t0), None);
        }
        assert_eq!(t.len(), K, "all on 127.0.0.1");
        let newcomer = node(0x80, 99, 2000);
        assert_eq!(t.seen(newcomer, t0), None, "none questionable yet");
        assert_eq!(t.len(), K);
        let later = t0 + QUESTIONABLE;
        t.seen(node(0x80, 1, 1001), later);
        assert_eq!(t.seen(newcomer, later), Some(node(0x80, 0, 1000)));
        t.failed(node(0x80, 3, 1003).addr);
        assert_eq!(t.len(), K, "one failure is forgiven");
        t.failed(node(0x80, 3, 1003).addr);
        assert_eq!(t.len(), K - 1, "two remove it");
        assert_eq!(t.seen(newcomer, later), None);
        assert!(t.nodes().any(|n| n == newcomer));
        assert_eq!(t.seen(node(0, 0, 1), t0), None);
        assert_eq!(t.len(), K, "our own id");
        // A known id from another address does not move it.
        let mut hijack = newcomer;
        hijack.addr.set_port(9);
        t.seen(hijack, later);
        assert!(t.nodes().any(|n| n == newcomer));
    }

    #[test]
    fn closest_sorts_by_xor_distance() {
        let mut t = RoutingTable::new([0; 20]);
        let now = Instant::now();
        for (i, first) in [0x80u8, 0x40, 0x20, 0x10, 0xc0].into_iter().enumerate() {
            t.seen(node(first, 0, i as u16 + 1), now);
        }
        let got: Vec<u8> = t
            .closest(&node(0x41, 0, 0).id, 3)
            .iter()
            .map(|n| n.id[0])
            .collect();
        assert_eq!(got, vec![0x40, 0x10, 0x20]);
        assert_eq!(t.questionable(now + QUESTIONABLE).len(), 5);
    }
}
