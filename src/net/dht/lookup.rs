//! One iterative lookup (BEP 5): query the closest nodes we know for a
//! target, learn closer ones from their answers, and stop when the
//! [`K`] closest that answer have all answered, nothing is left to ask,
//! or the deadline passes. At most [`ALPHA`] queries are in flight, and
//! [`WIDTH`] candidates are kept. Pure: the node sends what
//! [`Lookup::next`] returns and reports answers and timeouts.

use super::routing::{distance, K};
use crate::proto::krpc::{NodeId, NodeInfo};
use std::net::SocketAddrV4;

/// Queries in flight per lookup at most.
pub const ALPHA: usize = 4;
/// Candidates kept, closest first.
pub const WIDTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    New,
    Asked,
    /// With the token it gave (`get_peers`), for `announce_peer`.
    Answered(Option<Vec<u8>>),
    Failed,
}

#[derive(Debug)]
struct Candidate {
    /// Unknown for a bootstrap address until it answers.
    id: Option<NodeId>,
    addr: SocketAddrV4,
    state: State,
}

#[derive(Debug)]
pub struct Lookup {
    target: NodeId,
    candidates: Vec<Candidate>,
}

impl Lookup {
    /// Starts from `known` (closest nodes of the routing table) and
    /// `bootstrap` addresses (ids unknown, so asked last).
    pub fn new(target: NodeId, known: &[NodeInfo], bootstrap: &[SocketAddrV4]) -> Lookup {
        let mut l = Lookup {
            target,
            candidates: Vec::new(),
        };
        l.learn(known);
        for &addr in bootstrap {
            if l.candidates.len() < WIDTH && !l.candidates.iter().any(|c| c.addr == addr) {
                l.candidates.push(Candidate {
                    id: None,
                    addr,
                    state: State::New,
                });
            }
        }
        l
    }

    pub fn target(&self) -> &NodeId {
        &self.target
    }

    fn sort(&mut self) {
        let target = self.target;
        // Unknown ids (`None`) sort after every known one.
        self.candidates.sort_by_key(|c| {
            c.id.map(|id| distance(&id, &target))
                .map_or((1, [0; 20]), |d| (0, d))
        });
    }

    /// Nodes an answer named: new candidates.
    pub fn learn(&mut self, nodes: &[NodeInfo]) {
        for n in nodes {
            let known = self
                .candidates
                .iter()
                .any(|c| c.addr == n.addr || c.id == Some(n.id));
            if !known {
                self.candidates.push(Candidate {
                    id: Some(n.id),
                    addr: n.addr,
                    state: State::New,
                });
            }
        }
        self.sort();
        // Drop the farthest, but never one we wait for.
        while self.candidates.len() > WIDTH {
            match self
                .candidates
                .iter()
                .rposition(|c| c.state != State::Asked)
            {
                Some(i) => {
                    self.candidates.remove(i);
                }
                None => break,
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.candidates
            .iter()
            .filter(|c| c.state == State::Asked)
            .count()
    }

    /// The closest candidates not known to have failed: the lookup's goal.
    fn closest_alive(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.state != State::Failed)
            .take(K)
    }

    /// Addresses to query now (marked asked).
    pub fn next(&mut self) -> Vec<SocketAddrV4> {
        let room = ALPHA.saturating_sub(self.in_flight());
        let picked: Vec<SocketAddrV4> = self
            .closest_alive()
            .filter(|c| c.state == State::New)
            .take(room)
            .map(|c| c.addr)
            .collect();
        for c in &mut self.candidates {
            if picked.contains(&c.addr) {
                c.state = State::Asked;
            }
        }
        picked
    }

    fn find(&mut self, addr: SocketAddrV4) -> Option<&mut Candidate> {
        self.candidates.iter_mut().find(|c| c.addr == addr)
    }

    /// `addr` answered as node `id`, with `token` and closer `nodes`.
    pub fn answered(
        &mut self,
        addr: SocketAddrV4,
        id: NodeId,
        token: Option<Vec<u8>>,
        nodes: &[NodeInfo],
    ) {
        if let Some(c) = self.find(addr) {
            c.id = Some(id);
            c.state = State::Answered(token);
        }
        self.learn(nodes);
    }

    pub fn failed(&mut self, addr: SocketAddrV4) {
        if let Some(c) = self.find(addr) {
            c.state = State::Failed;
        }
    }

    /// Whether the closest live candidates have all answered (nothing
    /// more to learn), or nothing is left to ask and nobody is asked.
    pub fn is_done(&self) -> bool {
        let settled = self
            .closest_alive()
            .all(|c| matches!(c.state, State::Answered(_)));
        let idle = self.in_flight() == 0 && !self.candidates.iter().any(|c| c.state == State::New);
        settled || idle
    }

    /// The closest nodes that answered with a token (for `announce_peer`).
    pub fn tokens(&self) -> Vec<(SocketAddrV4, Vec<u8>)> {
        self.candidates
            .iter()
            .filter_map(|c| match &c.state {
                State::Answered(Some(t)) => Some((c.addr, t.clone())),
                _ => None,
            })
            .take(K)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(first: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = first;
        NodeInfo {
            id,
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), 1000 + u16::from(first)),
        }
    }

    /// Asks ALPHA at a time, closest first, moves to closer nodes as they
    /// are learnt, and ends when the K closest live ones have answered.
    #[test]
    fn converges_on_the_closest_and_bounds_queries_in_flight() {
        let far: Vec<NodeInfo> = (0x80..0x90).map(node).collect();
        let mut l = Lookup::new([0; 20], &far, &[]);
        let first = l.next();
        assert_eq!(first.len(), ALPHA);
        assert_eq!(first[0], node(0x80).addr);
        assert!(l.next().is_empty(), "ALPHA in flight");
        let close: Vec<NodeInfo> = (1..=K as u8).map(node).collect();
        l.answered(first[0], node(0x80).id, Some(b"t".to_vec()), &close);
        let next = l.next();
        assert_eq!(next, vec![node(1).addr], "closer first, one slot free");
        for a in &first[1..] {
            l.failed(*a);
        }
        let mut asked = next;
        asked.extend(l.next());
        assert_eq!(asked.len(), ALPHA);
        while !l.is_done() {
            for a in std::mem::take(&mut asked) {
                let id = close.iter().find(|n| n.addr == a).unwrap().id;
                l.answered(a, id, Some(vec![id[0]]), &[]);
            }
            asked = l.next();
            assert!(!asked.is_empty() || l.is_done());
        }
        let tokens = l.tokens();
        assert_eq!(tokens.len(), K);
        assert_eq!(tokens[0], (node(1).addr, vec![1]));
    }

    /// Bootstrap addresses (ids unknown) are asked; a lookup with nobody
    /// to ask is done at once.
    #[test]
    fn bootstrap_and_empty_lookups() {
        let boot = SocketAddrV4::new([127, 0, 0, 1].into(), 7);
        let mut l = Lookup::new([0; 20], &[], &[boot]);
        assert_eq!(l.next(), vec![boot]);
        l.failed(boot);
        assert!(l.is_done());
        assert!(Lookup::new([0; 20], &[], &[]).is_done());
    }
}
