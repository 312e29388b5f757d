//! Who may download from us: the BEP 3 choking algorithm, pure.
//!
//! Owns: the choice of unchoked peers from their figures — a fixed number
//! of regular slots for the best reciprocators (while downloading: the
//! peers that upload to us fastest; while seeding: the peers we upload to
//! fastest), snubbed peers left out, plus one optimistic slot rotated every
//! 30 s in which new peers are three times as likely. Does not own: timing
//! of rounds, sockets, or the peers themselves (the orchestrator asks every
//! 10 s and applies the answer).

use crate::net::peer::PeerKey;
use crate::util::random::Rng;
use std::collections::HashSet;
use std::time::Duration;

/// Regular upload slots by default.
pub const DEFAULT_SLOTS: usize = 4;
/// How often the regular slots are re-evaluated.
pub const ROUND: Duration = Duration::from_secs(10);
/// How often the optimistic slot moves on.
pub const OPTIMISTIC_ROUND: Duration = Duration::from_secs(30);
/// A peer we want data from that sent nothing for this long is snubbed.
pub const SNUB: Duration = Duration::from_secs(60);
/// Peers connected for less than this are "new" for the optimistic slot.
pub const NEW_PEER: Duration = Duration::from_secs(60);

/// What the choker knows about one interested peer.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub peer: PeerKey,
    /// Bytes per second the peer sends us.
    pub download_rate: f64,
    /// Bytes per second we send the peer.
    pub upload_rate: f64,
    pub snubbed: bool,
    pub connected_for: Duration,
}

pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    rng: Rng,
}

impl Choker {
    pub fn new(slots: usize, seed: u64) -> Choker {
        Choker {
            slots,
            optimistic: None,
            rng: Rng::new(seed),
        }
    }

    /// The peers to unchoke, chosen from the interested `candidates`.
    /// `rotate` moves the optimistic slot on (every [`OPTIMISTIC_ROUND`]).
    pub fn choose(
        &mut self,
        candidates: &[Candidate],
        seeding: bool,
        rotate: bool,
    ) -> HashSet<PeerKey> {
        let mut ranked: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| seeding || !c.snubbed)
            .collect();
        let rate = |c: &Candidate| {
            if seeding {
                c.upload_rate
            } else {
                c.download_rate
            }
        };
        ranked.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then(a.peer.cmp(&b.peer)));
        let mut chosen: HashSet<PeerKey> = ranked.iter().take(self.slots).map(|c| c.peer).collect();

        let still_there = self
            .optimistic
            .is_some_and(|p| candidates.iter().any(|c| c.peer == p) && !chosen.contains(&p));
        if rotate || !still_there {
            self.optimistic = self.pick_optimistic(candidates, &chosen);
        }
        if let Some(p) = self.optimistic {
            chosen.insert(p);
        }
        chosen
    }

    /// A random choked candidate, new peers weighted three to one.
    fn pick_optimistic(
        &mut self,
        candidates: &[Candidate],
        chosen: &HashSet<PeerKey>,
    ) -> Option<PeerKey> {
        let pool: Vec<(PeerKey, usize)> = candidates
            .iter()
            .filter(|c| !chosen.contains(&c.peer))
            .map(|c| (c.peer, if c.connected_for < NEW_PEER { 3 } else { 1 }))
            .collect();
        let total: usize = pool.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.below(total);
        for (peer, weight) in pool {
            if ticket < weight {
                return Some(peer);
            }
            ticket -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(peer: PeerKey, down: f64, up: f64) -> Candidate {
        Candidate {
            peer,
            download_rate: down,
            upload_rate: up,
            snubbed: false,
            connected_for: Duration::from_secs(600),
        }
    }

    #[test]
    fn leeching_rewards_those_who_upload_to_us() {
        let mut ch = Choker::new(2, 1);
        let cands = [
            c(1, 10.0, 0.0),
            c(2, 30.0, 0.0),
            c(3, 20.0, 99.0),
            c(4, 0.0, 0.0),
        ];
        let got = ch.choose(&cands, false, true);
        assert!(got.contains(&2) && got.contains(&3));
        assert_eq!(got.len(), 3, "two regular slots and one optimistic");
    }

    #[test]
    fn seeding_ranks_by_our_upload_rate() {
        let mut ch = Choker::new(1, 1);
        let cands = [c(1, 0.0, 5.0), c(2, 0.0, 50.0), c(3, 0.0, 1.0)];
        let got = ch.choose(&cands, true, true);
        assert!(got.contains(&2));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn snubbed_peers_lose_their_regular_slot() {
        let mut ch = Choker::new(1, 1);
        let mut fast_but_snubbed = c(1, 100.0, 0.0);
        fast_but_snubbed.snubbed = true;
        let got = ch.choose(&[fast_but_snubbed, c(2, 1.0, 0.0)], false, true);
        assert!(got.contains(&2));
    }

    #[test]
    fn optimistic_slot_stays_until_rotated() {
        let mut ch = Choker::new(0, 7);
        let cands: Vec<Candidate> = (0..10).map(|k| c(k, 0.0, 0.0)).collect();
        let first = ch.choose(&cands, false, true);
        assert_eq!(first.len(), 1);
        for _ in 0..5 {
            assert_eq!(ch.choose(&cands, false, false), first);
        }
        let mut moved = false;
        for _ in 0..20 {
            moved |= ch.choose(&cands, false, true) != first;
        }
        assert!(moved, "rotation picks other peers");
    }

    #[test]
    fn new_peers_are_favoured_for_the_optimistic_slot() {
        let mut ch = Choker::new(0, 3);
        let mut cands: Vec<Candidate> = (0..4).map(|k| c(k, 0.0, 0.0)).collect();
        cands[0].connected_for = Duration::from_secs(1);
        let hits = (0..600)
            .filter(|_| ch.choose(&cands, false, true).contains(&0))
            .count();
        // Expected 3/6 = 50%; an unweighted pick would give 25%.
        assert!(hits > 240, "new peer chosen {hits} of 600 times");
    }

    #[test]
    fn no_candidates_no_unchokes() {
        let mut ch = Choker::new(4, 1);
        assert!(ch.choose(&[], false, true).is_empty());
    }
}
