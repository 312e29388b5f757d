//! Initial seeding (BEP 16 super-seeding, relaxed): a seeder that starts a
//! swarm hands out every piece once before it sends any piece twice, and
//! after that spends its upload on the rarest pieces only. Pure.
//!
//! Why: measured in `make bench-fleet` (one seeder, 16 leechers started
//! together, every link at the same rate), the swarm finished at about
//! (the seeder's uploaded copies) × F/u: the seeder's link is the only
//! source of pieces nobody else has, and every piece it sends a second
//! time delays the last new piece by as much. Leechers cannot avoid it
//! (they do not know what the others asked for), the seeder can. Once
//! every piece is out, a seeder that announced everything served whatever
//! it was asked, mostly pieces the leechers could as well have had from
//! each other (1.6 copies in all); the tail of the swarm waits for the
//! pieces held by one or two peers, and those are what it now sends.
//!
//! How: the seeder says it has nothing (no bitfield, or `have_none`) and
//! announces pieces with `have`, a few per peer at a time ([`window`]):
//! first pieces never announced to anyone (random order, rarest among
//! the peers first); when none is left, the pieces the peer lacks that
//! the fewest peers hold or are about to fetch from us (availability
//! plus announced-but-not-fetched), so the seeder's link always carries
//! the swarm's rarest pieces. When we have sent a peer every block of
//! one of its pieces, or it says it has one, it gets another (sending is
//! the signal that always comes: a peer need not send `have` for a piece
//! it believes we have, though shoal's own leecher does). A peer that
//! sits on its pieces holds no piece hostage: those count as rarer, not
//! as taken, and are announced to others; after [`PATIENCE`] with nothing
//! of one sent, it leaves the window (fresh again if it was never out).
//! Unlike BEP 16 a peer gets its next piece when it has fetched one, not
//! when a third peer has it (that rule is against freeloaders; here it
//! would only slow the start).
//!
//! Owns: which piece is announced to which peer. Does not own: peers,
//! sockets, choking (the orchestrator unchokes every interested peer
//! while this runs, so no announced piece waits behind a choke).

use crate::net::peer::PeerKey;
use crate::proto::bitfield::Bitfield;
use crate::util::random::Rng;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A peer's window lasts this long at the rate we send to it: enough to
/// keep its requests coming between our `have`s (a round trip).
/// Short: the pieces in windows are what no other peer can get from us,
/// and when the fresh pieces run out, the link carries only what is left
/// in windows (at a fixed 512 KiB per peer, 16 peers behind 10 Mbit/s
/// links held 8 MiB there, and the seeder sent at half its rate for the
/// seconds it took to drain).
const WINDOW_TIME: f64 = 0.5;
/// Bytes per peer at most: a fast peer's round trip is short.
const MAX_WINDOW_BYTES: f64 = (512 << 10) as f64;
/// Pieces per peer at least, whatever their size and the rate. One: a
/// piece in a window is written to the peer's socket as soon as it is
/// asked for, and 16 peers sharing a 10 Mbit/s link with two each kept
/// 32 pieces (0.45 s of the link) queued in socket buffers; the pieces in
/// them arrive together, at the start and at the end, when the leechers
/// wait for them. With one each, `make bench-fleet` (N = 16, 10 runs)
/// finished the median leecher at 1.129 × the bound (1.132 with two) and
/// the last at 1.140 (1.148).
const MIN_WINDOW: usize = 1;
/// An announced piece of which we sent nothing for this long (since it
/// was announced, or since its last block went) leaves the peer's window ([`InitialSeed::expire`]): the peer got it elsewhere and
/// did not say so (a peer need not send `have` for a piece it believes we
/// hold), or it does not ask. Its slot would stay
/// taken for good, and a piece not yet out once would be held hostage.
pub const PATIENCE: Duration = Duration::from_secs(3);

/// A piece announced to a peer and not yet sent to it in full.
struct Owed {
    piece: u32,
    /// Blocks of it we sent.
    sent: u32,
    /// When we announced it, or last sent a block of it.
    since: Instant,
}

/// Announced-but-not-fetched pieces for a peer whose share of our upload
/// is `rate` bytes per second, for this piece length.
pub fn window(piece_len: u64, rate: f64) -> usize {
    let bytes = (rate * WINDOW_TIME).min(MAX_WINDOW_BYTES) as u64;
    (bytes / piece_len.max(1)).max(MIN_WINDOW as u64) as usize
}

pub struct InitialSeed {
    /// Pieces never announced to anyone.
    fresh: Vec<u32>,
    /// Per peer: pieces announced to it that it has not fetched yet.
    owed: HashMap<PeerKey, Vec<Owed>>,
    /// Per piece: to how many peers it is owed.
    pending: Vec<u32>,
    /// Pieces sent in full to someone, or held by someone.
    out: Bitfield,
    /// Per peer: every piece announced to it.
    told: HashMap<PeerKey, Bitfield>,
    /// Peers told every piece they lack: nothing more to offer them.
    drained: HashSet<PeerKey>,
    num_pieces: u32,
    rng: Rng,
}

impl InitialSeed {
    pub fn new(num_pieces: u32, seed: u64) -> InitialSeed {
        let mut rng = Rng::new(seed);
        let mut fresh: Vec<u32> = (0..num_pieces).collect();
        // Random order: peers that join with parts of the torrent aside,
        // rarity is equal at the start.
        rng.shuffle(&mut fresh);
        InitialSeed {
            fresh,
            owed: HashMap::new(),
            pending: vec![0; num_pieces as usize],
            out: Bitfield::new(num_pieces),
            told: HashMap::new(),
            drained: HashSet::new(),
            num_pieces,
            rng,
        }
    }

    /// Pieces to announce to `peer` now (it has `has`), up to its window
    /// (pieces, [`window`]): fresh ones it lacks, then the rarest it lacks.
    /// `availability(p)`: how many peers have p.
    pub fn offer(
        &mut self,
        peer: PeerKey,
        has: &Bitfield,
        window: usize,
        now: Instant,
        availability: impl Fn(u32) -> u32,
    ) -> Vec<u32> {
        let owed = self.owed.entry(peer).or_default();
        let (pending, out) = (&mut self.pending, &mut self.out);
        owed.retain(|o| {
            let fetched = has.get(o.piece);
            if fetched {
                pending[o.piece as usize] -= 1;
                out.set(o.piece);
            }
            !fetched
        });
        let want = window.max(1).saturating_sub(owed.len());
        if want == 0 || self.drained.contains(&peer) {
            return Vec::new();
        }
        let mut offer = self.take_fresh(peer, has, want, &availability);
        self.tell(peer, &offer);
        // Every piece out once: now the rarest (not those just told).
        if self.out.is_complete() {
            let rarest = self.rarest(peer, has, want - offer.len(), &availability);
            self.tell(peer, &rarest);
            offer.extend(rarest);
        }
        self.owed
            .entry(peer)
            .or_default()
            .extend(offer.iter().map(|&piece| Owed {
                piece,
                sent: 0,
                since: now,
            }));
        offer
    }

    fn tell(&mut self, peer: PeerKey, pieces: &[u32]) {
        let told = self
            .told
            .entry(peer)
            .or_insert_with(|| Bitfield::new(self.num_pieces));
        for &p in pieces {
            told.set(p);
            self.pending[p as usize] += 1;
        }
    }

    /// Takes out of `peer`'s window the pieces announced [`PATIENCE`]
    /// before `now` of which we sent nothing; those not yet out once are
    /// fresh again (for another peer).
    pub fn expire(&mut self, peer: PeerKey, now: Instant) {
        let Some(owed) = self.owed.get_mut(&peer) else {
            return;
        };
        let mut lapsed = Vec::new();
        owed.retain(|o| {
            let keep = now.duration_since(o.since) < PATIENCE;
            if !keep {
                lapsed.push(o.piece);
            }
            keep
        });
        for p in lapsed {
            self.pending[p as usize] -= 1;
            if !self.out.get(p) {
                self.refresh(p);
            }
        }
    }

    /// `p` is fresh again (once), at a random place.
    fn refresh(&mut self, p: u32) {
        if !self.fresh.contains(&p) {
            let at = self.rng.below(self.fresh.len() + 1);
            self.fresh.insert(at, p);
        }
    }

    /// Up to `want` never-announced pieces the peer lacks, rarest first;
    /// the fresh list is in random order, so equals are taken at random.
    /// Pieces the peer has are out already: nobody needs them from us.
    fn take_fresh(
        &mut self,
        peer: PeerKey,
        has: &Bitfield,
        want: usize,
        availability: &impl Fn(u32) -> u32,
    ) -> Vec<u32> {
        let (fresh, out) = (&mut self.fresh, &mut self.out);
        fresh.retain(|&p| {
            if has.get(p) {
                out.set(p);
            }
            !has.get(p)
        });
        // A piece that lapsed in this peer's window is for another.
        let told = self.told.get(&peer);
        let mut candidates: Vec<(u32, usize)> = self
            .fresh
            .iter()
            .enumerate()
            .filter(|(_, &p)| !told.is_some_and(|t| t.get(p)))
            .map(|(i, &p)| (availability(p), i))
            .collect();
        candidates.sort_unstable();
        let mut picked: Vec<usize> = candidates.iter().take(want).map(|&(_, i)| i).collect();
        // Remove from `fresh` by index, highest first.
        picked.sort_unstable_by(|a, b| b.cmp(a));
        picked
            .into_iter()
            .map(|i| self.fresh.swap_remove(i))
            .collect()
    }

    /// Up to `want` pieces the peer lacks and was not told, those the
    /// fewest peers hold or are owed first, equals in an order that starts
    /// at a random piece. Marks the peer drained when that is all of them.
    fn rarest(
        &mut self,
        peer: PeerKey,
        has: &Bitfield,
        want: usize,
        availability: &impl Fn(u32) -> u32,
    ) -> Vec<u32> {
        let told = self.told.get(&peer);
        let n = self.num_pieces;
        let start = self.rng.below(n.max(1) as usize) as u32;
        let mut candidates: Vec<(u32, u32, u32)> = (0..n)
            .filter(|&p| !has.get(p) && !told.is_some_and(|t| t.get(p)))
            .map(|p| {
                let rarity = availability(p) + self.pending[p as usize];
                (rarity, (p + n - start) % n, p)
            })
            .collect();
        if candidates.len() <= want {
            self.drained.insert(peer);
        } else {
            candidates.select_nth_unstable(want);
            candidates.truncate(want);
        }
        candidates.into_iter().map(|(_, _, p)| p).collect()
    }

    /// We sent `peer` a block of `piece` (which has `blocks` blocks).
    /// True when that was the last block of a piece we announced to it:
    /// its window has room again ([`InitialSeed::offer`]). Sent, not
    /// asked for: a peer asks for its whole window at once, and a window
    /// that made room on requests let the announcements run seconds
    /// ahead of a slow link (every piece announced while half were still
    /// queued here).
    pub fn sent(&mut self, peer: PeerKey, piece: u32, blocks: u32, now: Instant) -> bool {
        let Some(owed) = self.owed.get_mut(&peer) else {
            return false;
        };
        let Some(at) = owed.iter().position(|o| o.piece == piece) else {
            return false;
        };
        owed[at].sent += 1;
        owed[at].since = now;
        if owed[at].sent >= blocks {
            owed.swap_remove(at);
            self.pending[piece as usize] -= 1;
            self.out.set(piece);
            return true;
        }
        false
    }

    /// The peer left: pieces announced to it that it never fetched, and
    /// that nobody has (`held(p)`), are fresh again; those somebody has
    /// are out.
    pub fn gone(&mut self, peer: PeerKey, held: impl Fn(u32) -> bool) {
        self.told.remove(&peer);
        self.drained.remove(&peer);
        for Owed { piece: p, .. } in self.owed.remove(&peer).unwrap_or_default() {
            self.pending[p as usize] -= 1;
            if held(p) {
                self.out.set(p);
            } else {
                self.refresh(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One instant for the tests that do not look at time.
    fn t0() -> Instant {
        use std::sync::OnceLock;
        static T: OnceLock<Instant> = OnceLock::new();
        *T.get_or_init(Instant::now)
    }

    fn none(n: u32) -> Bitfield {
        Bitfield::new(n)
    }

    fn with(n: u32, pieces: &[u32]) -> Bitfield {
        let mut b = none(n);
        pieces.iter().for_each(|&p| b.set(p));
        b
    }

    /// Sends `peer` every block of `piece` (3 blocks); whether that made room.
    fn send_all(s: &mut InitialSeed, peer: PeerKey, piece: u32) -> bool {
        (0..3).map(|_| s.sent(peer, piece, 3, t0())).last().unwrap()
    }

    #[test]
    fn every_piece_goes_to_one_peer_before_any_goes_twice() {
        let mut s = InitialSeed::new(10, 1);
        let w = 3;
        let a = s.offer(1, &none(10), w, t0(), |_| 0);
        let b = s.offer(2, &none(10), w, t0(), |_| 0);
        assert_eq!((a.len(), b.len()), (3, 3));
        assert!(a.iter().all(|p| !b.contains(p)), "{a:?} {b:?}");
        // Nothing more until a peer fetched one.
        assert!(s.offer(1, &none(10), w, t0(), |_| 0).is_empty());
        let c = s.offer(1, &with(10, &[a[0]]), w, t0(), |_| 0);
        assert_eq!(c.len(), 1);
        assert!(!a.contains(&c[0]) && !b.contains(&c[0]));
    }

    #[test]
    fn sending_every_block_makes_room() {
        let mut s = InitialSeed::new(8, 9);
        let w = 2;
        let a = s.offer(1, &none(8), w, t0(), |_| 0);
        assert!(!s.sent(1, a[0], 3, t0()));
        assert!(!s.sent(1, a[0], 3, t0()));
        assert!(
            !s.sent(2, a[0], 3, t0()),
            "a block sent to another peer does not count"
        );
        assert!(s.sent(1, a[0], 3, t0()));
        let b = s.offer(1, &none(8), w, t0(), |_| 0);
        assert_eq!(b.len(), 1);
        assert!(!a.contains(&b[0]));
    }

    #[test]
    fn rarest_first_and_only_what_the_peer_lacks() {
        let mut s = InitialSeed::new(4, 7);
        let w = 2;
        // Piece 1 is held by many, 2 and 3 by nobody.
        let mut got = s.offer(1, &with(4, &[0]), w, t0(), |p| if p == 1 { 5 } else { 0 });
        got.sort_unstable();
        assert_eq!(got, vec![2, 3]);
    }

    #[test]
    fn nothing_goes_twice_while_a_piece_is_not_out_once() {
        let mut s = InitialSeed::new(4, 3);
        let w = 2;
        let a = s.offer(1, &none(4), w, t0(), |_| 0);
        let b = s.offer(2, &none(4), w, t0(), |_| 0);
        assert_eq!(a.len() + b.len(), 4);
        // Peer 1 fetched both of its pieces; peer 2 is still fetching.
        assert!(send_all(&mut s, 1, a[0]) && send_all(&mut s, 1, a[1]));
        assert!(
            s.offer(1, &none(4), w, t0(), |_| 0).is_empty(),
            "{b:?} not out yet"
        );
        assert!(send_all(&mut s, 2, b[0]));
        assert!(s.offer(1, &none(4), w, t0(), |_| 0).is_empty());
        assert!(send_all(&mut s, 2, b[1]));
        // Every piece is out: peer 1 now gets peer 2's (it lacks them).
        let mut c = s.offer(1, &with(4, &a), w, t0(), |_| 1);
        c.sort_unstable();
        let mut want = b.clone();
        want.sort_unstable();
        assert_eq!(c, want);
    }

    #[test]
    fn once_every_piece_is_out_the_rarest_go_and_none_twice_to_one_peer() {
        let mut s = InitialSeed::new(6, 11);
        let w = 2;
        // Peer 9 holds everything but piece 5: only 5 is fresh.
        assert_eq!(
            s.offer(9, &with(6, &[0, 1, 2, 3, 4]), w, t0(), |_| 0),
            vec![5]
        );
        assert!(send_all(&mut s, 9, 5));
        // Availability: piece p is held by p peers (0 and 5 by nobody else).
        let avail = |p: u32| p % 5;
        let mut got = s.offer(1, &none(6), w, t0(), avail);
        got.sort_unstable();
        assert_eq!(got, vec![0, 5]);
        // Owed to peer 1, those count as held once: as rare as piece 1,
        // rarer than the rest.
        let next = s.offer(2, &none(6), w, t0(), avail);
        assert_eq!(next.len(), 2);
        assert!(next.iter().all(|p| [0, 1, 5].contains(p)), "{next:?}");
        // Peer 1 is never offered what it was told already.
        let more = s.offer(1, &with(6, &[0]), w, t0(), avail);
        assert_eq!(more.len(), 1);
        assert!(!got[1..].contains(&more[0]) && more[0] != 0, "{more:?}");
    }

    #[test]
    fn a_peer_told_everything_it_lacks_is_drained() {
        let mut s = InitialSeed::new(3, 5);
        let w = 8;
        let a = s.offer(1, &none(3), w, t0(), |_| 0);
        assert_eq!(a.len(), 3);
        for &p in &a {
            send_all(&mut s, 1, p);
        }
        assert!(s.offer(1, &none(3), w, t0(), |_| 1).is_empty());
        assert!(s.drained.contains(&1));
        s.gone(1, |_| true);
        assert!(!s.drained.contains(&1));
    }

    #[test]
    fn a_departed_peers_unfetched_pieces_are_fresh_again() {
        let mut s = InitialSeed::new(4, 3);
        let w = 4;
        let a = s.offer(1, &none(4), w, t0(), |_| 0);
        assert_eq!(a.len(), 4);
        assert!(s.fresh.is_empty());
        // It fetched a[0] (somebody holds it now) and left.
        let kept = a[0];
        s.gone(1, |p| p == kept);
        let mut b = s.offer(2, &with(4, &[kept]), w, t0(), |_| 0);
        b.sort_unstable();
        let mut want: Vec<u32> = a[1..].to_vec();
        want.sort_unstable();
        assert_eq!(b, want);
        assert!(s.pending.iter().sum::<u32>() == 3);
    }

    #[test]
    fn a_piece_never_asked_for_leaves_the_window_and_goes_to_another_peer() {
        let mut s = InitialSeed::new(4, 5);
        let a = s.offer(1, &none(4), 2, t0(), |_| 0);
        let b = s.offer(2, &none(4), 2, t0(), |_| 0);
        assert!(s.fresh.is_empty());
        // Peer 1 is sent a block of a[0] half-way, nothing of a[1].
        let half = t0() + PATIENCE / 2;
        assert!(!s.sent(1, a[0], 3, half));
        s.expire(1, half);
        assert_eq!(s.owed[&1].len(), 2);
        s.expire(1, t0() + PATIENCE);
        assert_eq!(s.owed[&1].len(), 1, "a piece being sent stays");
        // Nothing more of it for PATIENCE (cancelled, or dropped): it goes.
        s.expire(1, half + PATIENCE);
        assert!(s.owed[&1].is_empty());
        // Neither was ever out: fresh again, for peer 2 once its window
        // has room; peer 1 is not told them twice.
        assert!(s.offer(1, &none(4), 2, t0(), |_| 0).is_empty());
        assert!(send_all(&mut s, 2, b[0]));
        let next = s.offer(2, &none(4), 2, t0(), |_| 0);
        assert!(next.len() == 1 && a.contains(&next[0]), "{next:?}");
        assert_eq!(s.pending.iter().sum::<u32>(), 2, "b[1] and that one");
    }

    #[test]
    fn one_offer_never_holds_a_piece_twice() {
        let mut s = InitialSeed::new(3, 13);
        let a = s.offer(1, &none(3), 3, t0(), |_| 0);
        for &p in &a {
            send_all(&mut s, 1, p);
        }
        // Every piece is out; peer 2 is told one and leaves without it.
        let b = s.offer(2, &none(3), 1, t0(), |_| 1);
        s.gone(2, |_| false);
        assert_eq!(s.fresh, b, "fresh again");
        // Peer 3 gets it fresh, and the rarest besides: not it again.
        let mut c = s.offer(3, &none(3), 3, t0(), |p| u32::from(p != b[0]));
        c.sort_unstable();
        assert_eq!(c, vec![0, 1, 2]);
    }

    #[test]
    fn window_follows_the_piece_size() {
        // 1 MB/s: half a second is 8 pieces of 64 KiB.
        assert_eq!(window(64 << 10, 1_048_576.0), 8);
        assert_eq!(window(64 << 10, 1e9), 8, "at most 512 KiB");
        assert_eq!(window(16 << 10, 0.0), MIN_WINDOW, "nothing sent yet");
        assert_eq!(window(4 << 20, 1e9), MIN_WINDOW);
    }
}
