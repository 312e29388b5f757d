//! Initial seeding (BEP 16 super-seeding, relaxed): a seeder that starts a
//! swarm hands out every piece once before it sends any piece twice. Pure.
//!
//! Why: measured in `make bench-fleet` (one seeder, 16 leechers started
//! together, every link at the same rate), the swarm finished at about
//! (the seeder's uploaded copies) × F/u: the seeder's link is the only
//! source of pieces nobody else has, and every piece it sends a second
//! time delays the last new piece by as much. Leechers cannot avoid it
//! (they do not know what the others asked for), the seeder can.
//!
//! How: the seeder says it has nothing (no bitfield, or `have_none`) and
//! announces pieces with `have`, a few per peer at a time ([`window`]):
//! pieces never announced to anyone, rarest among the peers first (random
//! among equals). When a peer has asked for every block of one of its
//! pieces, or says it has one, it gets another (asking is the signal that
//! always comes: a peer need not send `have` for a piece it believes we
//! have, and shoal's own leecher does not). When every piece has been announced (or a peer leaves with
//! pieces it never fetched and the rest are gone) and asked for (or a
//! peer sat on its pieces for [`STALE`]), the seeder announces
//! everything to everyone and seeds normally. Unlike BEP 16 a peer gets
//! its next piece when it has fetched one, not when a third peer has it
//! (that rule is against freeloaders; here it would only slow the start).
//!
//! Owns: which piece is announced to which peer. Does not own: peers,
//! sockets, choking (the orchestrator unchokes every interested peer
//! while this runs, so no announced piece waits behind a choke).

use crate::net::peer::PeerKey;
use crate::proto::bitfield::Bitfield;
use crate::util::random::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Once every piece is announced, how long peers may sit on announced
/// pieces without asking for them before we announce everything.
pub const STALE: Duration = Duration::from_secs(3);

/// Bytes of announced, not yet fetched pieces per peer: enough to keep
/// its request pipeline busy between our `have`s.
/// Small: every piece in a window is one that no other peer can get
/// from us, and the whole torrent is handed out once windows run dry.
const WINDOW_BYTES: u64 = 512 << 10;
/// Pieces per peer at least, whatever their size.
const MIN_WINDOW: usize = 2;

/// Announced-but-not-fetched pieces per peer for this piece length.
pub fn window(piece_len: u64) -> usize {
    (WINDOW_BYTES / piece_len.max(1)).max(MIN_WINDOW as u64) as usize
}

pub struct InitialSeed {
    /// Pieces never announced to anyone.
    fresh: Vec<u32>,
    /// Per peer: pieces announced to it that it has not fetched yet, and
    /// how many requests for blocks of each it sent.
    owed: HashMap<PeerKey, Vec<(u32, u32)>>,
    /// Per peer: every piece announced to it (to finish the job when we
    /// switch to normal seeding).
    told: HashMap<PeerKey, Bitfield>,
    window: usize,
    num_pieces: u32,
    rng: Rng,
}

impl InitialSeed {
    pub fn new(num_pieces: u32, window: usize, seed: u64) -> InitialSeed {
        let mut rng = Rng::new(seed);
        let mut fresh: Vec<u32> = (0..num_pieces).collect();
        // Random order: peers that join with parts of the torrent aside,
        // rarity is equal at the start.
        for i in (1..fresh.len()).rev() {
            let j = rng.below(i + 1);
            fresh.swap(i, j);
        }
        InitialSeed {
            fresh,
            owed: HashMap::new(),
            told: HashMap::new(),
            window: window.max(1),
            num_pieces,
            rng,
        }
    }

    /// Whether every piece has been announced to someone.
    pub fn exhausted(&self) -> bool {
        self.fresh.is_empty()
    }

    /// Whether initial seeding is over: every piece announced, and every
    /// announced piece asked for (or nothing asked for since `STALE`
    /// before `now`; `last` is when a window last made room).
    pub fn over(&self, now: Instant, last: Instant) -> bool {
        self.exhausted()
            && (self.owed.values().all(Vec::is_empty) || now.duration_since(last) >= STALE)
    }

    /// Pieces to announce to `peer` now (it has `has`): fresh ones it
    /// lacks, up to its window. `availability(p)`: how many peers have p
    /// (rarer first).
    pub fn offer(
        &mut self,
        peer: PeerKey,
        has: &Bitfield,
        availability: impl Fn(u32) -> u32,
    ) -> Vec<u32> {
        let owed = self.owed.entry(peer).or_default();
        owed.retain(|&(p, _)| !has.get(p));
        let want = self.window.saturating_sub(owed.len());
        if want == 0 || self.fresh.is_empty() {
            return Vec::new();
        }
        // The rarest pieces among those it lacks; the fresh list is in
        // random order, so equals are taken at random.
        let mut candidates: Vec<(u32, usize)> = self
            .fresh
            .iter()
            .enumerate()
            .filter(|(_, &p)| !has.get(p))
            .map(|(i, &p)| (availability(p), i))
            .collect();
        candidates.sort_unstable();
        let mut picked: Vec<usize> = candidates.iter().take(want).map(|&(_, i)| i).collect();
        // Remove from `fresh` by index, highest first.
        picked.sort_unstable_by(|a, b| b.cmp(a));
        let told = self
            .told
            .entry(peer)
            .or_insert_with(|| Bitfield::new(self.num_pieces));
        let mut out = Vec::with_capacity(picked.len());
        for i in picked {
            let p = self.fresh.swap_remove(i);
            told.set(p);
            out.push(p);
        }
        owed.extend(out.iter().map(|&p| (p, 0)));
        out
    }

    /// `peer` asked for a block of `piece` (which has `blocks` blocks).
    /// True when that was the last block of a piece we announced to it:
    /// its window has room again ([`InitialSeed::offer`]).
    pub fn requested(&mut self, peer: PeerKey, piece: u32, blocks: u32) -> bool {
        let Some(owed) = self.owed.get_mut(&peer) else {
            return false;
        };
        let Some(at) = owed.iter().position(|&(p, _)| p == piece) else {
            return false;
        };
        owed[at].1 += 1;
        if owed[at].1 >= blocks {
            owed.swap_remove(at);
            return true;
        }
        false
    }

    /// The peer left: pieces announced to it that it never fetched, and
    /// that nobody has (`held(p)`), are fresh again.
    pub fn gone(&mut self, peer: PeerKey, held: impl Fn(u32) -> bool) {
        self.told.remove(&peer);
        for (p, _) in self.owed.remove(&peer).unwrap_or_default() {
            if !held(p) {
                let at = self.rng.below(self.fresh.len() + 1);
                self.fresh.insert(at, p);
            }
        }
    }

    /// Ends initial seeding: per peer, the pieces not yet announced to it
    /// (of those it lacks, `has(peer, p)`), to announce now.
    pub fn finish(
        &mut self,
        peers: &[PeerKey],
        has: impl Fn(PeerKey, u32) -> bool,
    ) -> Vec<(PeerKey, Vec<u32>)> {
        self.fresh.clear();
        peers
            .iter()
            .map(|&k| {
                let told = self.told.get(&k);
                let rest = (0..self.num_pieces)
                    .filter(|&p| !told.is_some_and(|t| t.get(p)) && !has(k, p))
                    .collect();
                (k, rest)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(n: u32) -> Bitfield {
        Bitfield::new(n)
    }

    #[test]
    fn every_piece_goes_to_one_peer_before_any_goes_twice() {
        let mut s = InitialSeed::new(10, 3, 1);
        let a = s.offer(1, &none(10), |_| 0);
        let b = s.offer(2, &none(10), |_| 0);
        assert_eq!((a.len(), b.len()), (3, 3));
        assert!(a.iter().all(|p| !b.contains(p)), "{a:?} {b:?}");
        // Nothing more until a peer fetched one.
        assert!(s.offer(1, &none(10), |_| 0).is_empty());
        let mut has = none(10);
        has.set(a[0]);
        let c = s.offer(1, &has, |_| 0);
        assert_eq!(c.len(), 1);
        assert!(!a.contains(&c[0]) && !b.contains(&c[0]));
        assert!(!s.exhausted());
    }

    #[test]
    fn asking_for_every_block_makes_room() {
        let mut s = InitialSeed::new(8, 2, 9);
        let a = s.offer(1, &none(8), |_| 0);
        assert!(!s.requested(1, a[0], 3));
        assert!(!s.requested(1, a[0], 3));
        assert!(
            !s.requested(2, a[0], 3),
            "another peer's request does not count"
        );
        assert!(s.requested(1, a[0], 3));
        let b = s.offer(1, &none(8), |_| 0);
        assert_eq!(b.len(), 1);
        assert!(!a.contains(&b[0]));
    }

    #[test]
    fn rarest_first_and_only_what_the_peer_lacks() {
        let mut s = InitialSeed::new(4, 2, 7);
        let mut has = none(4);
        has.set(0);
        // Piece 1 is held by many, 2 and 3 by nobody.
        let got = s.offer(1, &has, |p| if p == 1 { 5 } else { 0 });
        let mut got = got.clone();
        got.sort_unstable();
        assert_eq!(got, vec![2, 3]);
    }

    #[test]
    fn a_departed_peers_unfetched_pieces_are_fresh_again() {
        let mut s = InitialSeed::new(4, 4, 3);
        let a = s.offer(1, &none(4), |_| 0);
        assert_eq!(a.len(), 4);
        assert!(s.exhausted());
        // It fetched a[0] (somebody holds it now) and left.
        let kept = a[0];
        s.gone(1, |p| p == kept);
        assert!(!s.exhausted());
        let b = s.offer(2, &none(4), |_| 0);
        let mut b2 = b.clone();
        b2.sort_unstable();
        let mut want: Vec<u32> = a[1..].to_vec();
        want.sort_unstable();
        assert_eq!(b2, want);
    }

    #[test]
    fn finishing_announces_the_rest() {
        let mut s = InitialSeed::new(6, 3, 5);
        let a = s.offer(1, &none(6), |_| 0);
        let _ = s.offer(2, &none(6), |_| 0);
        assert!(s.exhausted());
        let t = Instant::now();
        assert!(!s.over(t, t), "announced pieces not yet asked for");
        assert!(s.over(t + STALE, t));
        let rest = s.finish(&[1, 2], |k, p| k == 2 && p == 5);
        let for1 = &rest.iter().find(|(k, _)| *k == 1).unwrap().1;
        assert_eq!(for1.len(), 3);
        assert!(a.iter().all(|p| !for1.contains(p)));
        let for2 = &rest.iter().find(|(k, _)| *k == 2).unwrap().1;
        assert!(!for2.contains(&5));
        assert!(s.exhausted());
    }

    #[test]
    fn window_follows_the_piece_size() {
        assert_eq!(window(64 << 10), 8);
        assert_eq!(window(4 << 20), MIN_WINDOW);
    }
}
