//! Who may download from us: the BEP 3 choking algorithm, pure.
//!
//! Owns: the choice of unchoked peers from their figures — a fixed number
//! of regular slots for the best reciprocators (while downloading: the
//! peers that upload to us fastest; while seeding: the peers we upload to
//! fastest), snubbed peers left out, re-ranked every [`ROUND`], plus one
//! catch-up slot (BEP 3's optimistic unchoke) for one of the peers
//! furthest behind, re-decided every [`CATCH_UP_ROUND`]. Does not own: timing of rounds,
//! sockets, or the peers themselves (the orchestrator asks and applies
//! the answer).
//!
//! Why a catch-up slot instead of a random one: measured in `make
//! bench-fleet` (16 leechers started together), tit-for-tat left one or
//! two leechers out of everybody's regular slots after a round; with a
//! random optimistic slot moving every 30 s they crawled at half their
//! link for seconds and finished last, 4-5 s after the rest (a peer never
//! downloads faster than its link, so time lost is never made up). Every
//! peer giving its extra slot to one of the peers that lack the most
//! pieces lets stragglers catch up at their full link rate, and a peer
//! that just joined (it lacks everything) still gets a chance to show
//! what it uploads. The price: a peer that claims to have nothing and
//! never uploads gets a third of the peers' extra slots, where a random
//! optimistic slot gave it one in (choked peers); the regular slots still
//! go to reciprocators only.

use crate::net::peer::PeerKey;
use crate::util::random::Rng;
use std::collections::HashSet;
use std::time::Duration;

/// Regular upload slots by default. Measured in `make bench-fleet` (16
/// leechers, with the shallow shared pipelines of [`crate::engine::pipeline`]):
/// the last leecher finished at a median 1.167 × the bound with 4 slots
/// (5 runs), 1.150 with 5 (10 runs), 1.148 with 6 (10), 1.157 with 8 (8)
/// and 1.18 with 16 (3).
/// More slots spread a new piece to more peers per hop; too many split
/// an uploader's link into flows so slow that each block waits. Six is
/// also near what libtorrent (8) and Transmission (14) use.
pub const DEFAULT_SLOTS: usize = 6;
/// How often the regular slots are re-ranked.
pub const ROUND: Duration = Duration::from_secs(10);
/// A peer unchoked now keeps its regular slot unless another is this much
/// faster: each change chokes a peer, whose queued requests are lost, and
/// among peers on equal links the ranking is mostly noise (in the fleet
/// bench every round left a leecher or two at half rate for seconds).
const INCUMBENT: f64 = 1.5;
/// How often the catch-up slot is re-decided.
pub const CATCH_UP_ROUND: Duration = Duration::from_secs(2);
/// The catch-up slot goes to one of this many peers furthest behind: if
/// every peer chose the one furthest behind, it would get far more than
/// its link takes and the next one nothing.
const CATCH_UP_POOL: usize = 3;
/// A peer we want data from that sent nothing for this long is snubbed.
pub const SNUB: Duration = Duration::from_secs(60);

/// What the choker knows about one interested peer.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub peer: PeerKey,
    /// Bytes per second the peer sends us.
    pub download_rate: f64,
    /// Bytes per second we send the peer.
    pub upload_rate: f64,
    pub snubbed: bool,
    /// Pieces the peer lacks.
    pub missing: u32,
    /// Whether we unchoke it now.
    pub unchoked: bool,
}

pub struct Choker {
    slots: usize,
    catch_up: Option<PeerKey>,
    rng: Rng,
}

impl Choker {
    pub fn new(slots: usize, seed: u64) -> Choker {
        Choker {
            slots,
            catch_up: None,
            rng: Rng::new(seed),
        }
    }

    /// The peers to unchoke, chosen from the interested `candidates`.
    /// `rerank` re-ranks the regular slots (every [`ROUND`]); otherwise
    /// they stay with the peers unchoked now, and only the catch-up slot
    /// is decided again.
    pub fn choose(
        &mut self,
        candidates: &[Candidate],
        seeding: bool,
        rerank: bool,
    ) -> HashSet<PeerKey> {
        let mut chosen: HashSet<PeerKey> = if rerank {
            let mut ranked: Vec<&Candidate> = candidates
                .iter()
                .filter(|c| seeding || !c.snubbed)
                .collect();
            let rate = |c: &Candidate| {
                let rate = if seeding {
                    c.upload_rate
                } else {
                    c.download_rate
                };
                if c.unchoked {
                    rate * INCUMBENT
                } else {
                    rate
                }
            };
            ranked.sort_by(|a, b| rate(b).total_cmp(&rate(a)).then(a.peer.cmp(&b.peer)));
            ranked.iter().take(self.slots).map(|c| c.peer).collect()
        } else {
            // Nobody but the catch-up peer is choked between rounds.
            candidates
                .iter()
                .filter(|c| c.unchoked && Some(c.peer) != self.catch_up)
                .map(|c| c.peer)
                .collect()
        };
        self.catch_up = self.pick_catch_up(candidates, &chosen);
        chosen.extend(self.catch_up);
        chosen
    }

    /// One of the [`CATCH_UP_POOL`] candidates not `chosen` that lack the
    /// most pieces, at random (equals in random order). The current one
    /// keeps the slot while none lacks more (each change chokes a peer,
    /// whose queued requests are lost), but no longer: when it stayed while
    /// merely among them, a leecher that fell far behind after a round
    /// found every slot held by peers a little behind, and got no
    /// catch-up slot for 4 s (`make bench-fleet`; measured while peers'
    /// views of each other were stale, before `have`s went to every
    /// peer: with them the two rules measure the same).
    fn pick_catch_up(
        &mut self,
        candidates: &[Candidate],
        chosen: &HashSet<PeerKey>,
    ) -> Option<PeerKey> {
        let mut pool: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| !chosen.contains(&c.peer))
            .collect();
        self.rng.shuffle(&mut pool);
        pool.sort_by_key(|c| std::cmp::Reverse(c.missing));
        pool.truncate(CATCH_UP_POOL);
        let most = pool.first()?.missing;
        if let Some(c) = pool.iter().find(|c| Some(c.peer) == self.catch_up) {
            if c.missing == most {
                return Some(c.peer);
            }
        }
        Some(pool[self.rng.below(pool.len())].peer)
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
            missing: 10,
            unchoked: false,
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
        assert_eq!(got.len(), 3, "two regular slots and one catch-up");
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
        fast_but_snubbed.missing = 0;
        let got = ch.choose(&[fast_but_snubbed, c(2, 1.0, 0.0)], false, true);
        assert!(got.contains(&2));
    }

    #[test]
    fn the_catch_up_slot_goes_to_one_of_the_three_furthest_behind() {
        let mut ch = Choker::new(1, 7);
        // Peer 0 uploads fastest; 4, 5 and 6 lack the most.
        let missing = [0, 10, 11, 12, 50, 40, 45];
        let mut cands: Vec<Candidate> = (0..7).map(|k| c(k, 10.0 - k as f64, 0.0)).collect();
        for (c, m) in cands.iter_mut().zip(missing) {
            c.missing = m;
        }
        let mut picked = HashSet::new();
        for _ in 0..60 {
            ch.catch_up = None;
            let got = ch.choose(&cands, false, true);
            assert!(got.contains(&0) && got.len() == 2, "{got:?}");
            picked.extend(got.into_iter().filter(|&k| k != 0));
        }
        assert_eq!(picked, HashSet::from([4, 5, 6]));
    }

    #[test]
    fn the_catch_up_slot_stays_while_its_peer_lacks_the_most() {
        let mut ch = Choker::new(0, 5);
        let mut cands: Vec<Candidate> = (0..5).map(|k| c(k, 0.0, 0.0)).collect();
        for (k, c) in cands.iter_mut().enumerate() {
            c.missing = 10 * k as u32;
        }
        // 2, 3 and 4 lack the most; make the holder the one lacking most.
        let holder = loop {
            let got = ch.choose(&cands, false, false);
            let k = *got.iter().next().unwrap();
            if k == 4 {
                break k;
            }
            ch.catch_up = None;
        };
        cands[holder as usize].unchoked = true;
        for _ in 0..20 {
            assert_eq!(ch.choose(&cands, false, false), HashSet::from([holder]));
        }
        // Another now lacks more: the slot is drawn again among the three
        // furthest behind, 1, 4 and 3.
        cands[1].missing = 100;
        let drawn: HashSet<PeerKey> = (0..40)
            .flat_map(|_| {
                ch.catch_up = Some(holder);
                ch.choose(&cands, false, false)
            })
            .collect();
        assert_eq!(drawn, HashSet::from([1, 3, 4]));
    }

    #[test]
    fn an_unchoked_peer_keeps_its_slot_against_one_slightly_faster() {
        let mut ch = Choker::new(1, 3);
        let mut cands = [c(1, 100.0, 0.0), c(2, 140.0, 0.0)];
        cands[0].unchoked = true;
        cands.iter_mut().for_each(|c| c.missing = 0);
        let got = ch.choose(&cands, false, true);
        assert!(got.contains(&1), "{got:?}");
        cands[1].download_rate = 160.0;
        let got = ch.choose(&cands, false, true);
        assert!(got.contains(&2), "{got:?}");
    }

    #[test]
    fn between_rounds_the_regular_slots_stay() {
        let mut ch = Choker::new(2, 3);
        let mut cands: Vec<Candidate> = (0..5).map(|k| c(k, k as f64, 0.0)).collect();
        for k in [0, 1] {
            cands[k].unchoked = true;
            cands[k].missing = 0;
        }
        // Peers 3 and 4 upload faster, but only a new round ranks again.
        let got = ch.choose(&cands, false, false);
        assert!(got.contains(&0) && got.contains(&1), "{got:?}");
        assert_eq!(got.len(), 3);
        let got = ch.choose(&cands, false, true);
        assert!(got.contains(&3) && got.contains(&4), "{got:?}");
    }

    #[test]
    fn between_rounds_nobody_but_the_catch_up_peer_is_choked() {
        let mut ch = Choker::new(2, 9);
        // Three unchoked (two regular, one that took a free slot), none of
        // them the catch-up peer: all stay, and the one furthest behind
        // still gets the catch-up slot.
        let mut cands: Vec<Candidate> = (0..5).map(|k| c(k, 0.0, 0.0)).collect();
        cands.iter_mut().take(3).for_each(|c| c.unchoked = true);
        cands[4].missing = 99;
        ch.catch_up = Some(4);
        assert_eq!(ch.choose(&cands, false, false), HashSet::from([0, 1, 2, 4]));
    }

    #[test]
    fn equals_behind_are_taken_at_random() {
        let mut ch = Choker::new(0, 3);
        let cands: Vec<Candidate> = (0..4).map(|k| c(k, 0.0, 0.0)).collect();
        let picked: HashSet<PeerKey> = (0..50)
            .flat_map(|_| {
                ch.catch_up = None;
                ch.choose(&cands, false, true)
            })
            .collect();
        assert_eq!(picked.len(), 4, "{picked:?}");
    }

    #[test]
    fn no_candidates_no_unchokes() {
        let mut ch = Choker::new(4, 1);
        assert!(ch.choose(&[], false, true).is_empty());
    }
}
