//! Which blocks to request next, and the state of every piece.
//!
//! Owns: the piece states (missing, active, verified — a piece is in
//! exactly one), which pieces are wanted at all (`--only`/`--files`: those
//! holding a byte of a selected file), per-block request state of active
//! pieces, availability
//! (how many connected peers have each piece), rarest-first choice (random
//! among equals), finishing started pieces before new ones, and endgame.
//! Does not own: peers, sockets, storage or hashing; the orchestrator calls
//! in with facts and acts on the answers. Pure and deterministic given its
//! seed.
//!
//! Piece states:
//! - missing: not verified, no block wanted yet (`active` has no entry);
//! - active: some blocks requested or received (`active` entry);
//! - verified: `have` bit set, hash matched and data written.
//!
//! A block of an active piece is open (nobody asked), requested (by one or
//! more peers; more than one only in endgame), or received.

use crate::net::peer::PeerKey;
use crate::proto::bitfield::Bitfield;
use crate::proto::geometry::{Block, Geometry, PieceIndex};
use crate::util::random::Rng;
use std::collections::HashMap;

/// In endgame, at most this many peers are asked for the same block.
const MAX_DUPLICATES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Open,
    Requested(u8),
    Received,
}

#[derive(Debug)]
struct Active {
    blocks: Vec<BlockState>,
    received: u32,
    /// Peers that sent blocks of this piece: blamed if the hash fails.
    contributors: Vec<PeerKey>,
}

/// What a received block means.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// New data; write it. If the piece is now whole, `complete` is set:
    /// hash it and call [`Picker::verified`] or [`Picker::failed`].
    Fresh { complete: bool },
    /// Already have it (endgame duplicate, or a late reply): drop it.
    Duplicate,
}

#[derive(Debug)]
pub struct Picker {
    geometry: Geometry,
    have: Bitfield,
    /// Pieces to download; the others are never picked.
    wanted: Bitfield,
    /// Wanted pieces not verified: complete at 0.
    missing: u32,
    availability: Vec<u32>,
    active: HashMap<PieceIndex, Active>,
    /// Open blocks across active pieces.
    open_blocks: u64,
    /// Pieces neither verified nor active.
    untouched: u32,
    rng: Rng,
}

impl Picker {
    /// A picker for a torrent of which `have` is already verified.
    pub fn new(geometry: Geometry, have: Bitfield, seed: u64) -> Picker {
        let wanted = Bitfield::full(geometry.num_pieces());
        let missing = geometry.num_pieces() - have.count();
        Picker {
            availability: vec![0; geometry.num_pieces() as usize],
            geometry,
            have,
            wanted,
            missing,
            active: HashMap::new(),
            open_blocks: 0,
            untouched: missing,
            rng: Rng::new(seed),
        }
    }

    /// Downloads only these pieces (call before picking anything).
    pub fn want_only(&mut self, wanted: Bitfield) {
        self.missing = wanted.iter_set().filter(|&p| !self.have.get(p)).count() as u32;
        self.untouched = self.missing;
        self.wanted = wanted;
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn wanted_pieces(&self) -> &Bitfield {
        &self.wanted
    }

    /// Every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Bytes of wanted pieces not yet verified.
    pub fn left(&self) -> u64 {
        let g = &self.geometry;
        g.pieces()
            .filter(|p| self.wanted.get(p.get()) && !self.have.get(p.get()))
            .map(|p| u64::from(g.piece_size(p)))
            .sum()
    }

    /// Whether every missing block is already asked for.
    pub fn in_endgame(&self) -> bool {
        self.untouched == 0 && self.open_blocks == 0 && !self.is_complete()
    }

    /// A peer announced a whole bitfield (or joined with one).
    pub fn add_peer(&mut self, pieces: &Bitfield) {
        for p in pieces.iter_set() {
            self.availability[p as usize] += 1;
        }
    }

    /// A peer left: its pieces no longer count.
    pub fn remove_peer(&mut self, pieces: &Bitfield) {
        for p in pieces.iter_set() {
            let a = &mut self.availability[p as usize];
            *a = a.saturating_sub(1);
        }
    }

    /// A peer announced one more piece.
    /// How many connected peers have `piece` (0 past the end).
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }

    pub fn peer_has(&mut self, piece: PieceIndex) {
        self.availability[piece.usize()] += 1;
    }

    /// Whether a peer with these pieces has anything we lack.
    pub fn wants_any(&self, pieces: &Bitfield) -> bool {
        pieces
            .as_bytes()
            .iter()
            .zip(self.have.as_bytes())
            .zip(self.wanted.as_bytes())
            .any(|((theirs, ours), wanted)| theirs & !ours & wanted != 0)
    }

    /// Up to `max` blocks to request from a peer that has `pieces`;
    /// `asked` says whether this peer already has a block outstanding (so
    /// endgame never asks one peer twice for the same block). The blocks
    /// returned are marked requested.
    pub fn pick(
        &mut self,
        pieces: &Bitfield,
        max: usize,
        asked: impl Fn(&Block) -> bool,
    ) -> Vec<Block> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        // 1. Open blocks of pieces already started.
        let mut started: Vec<PieceIndex> = self
            .active
            .iter()
            .filter(|(p, a)| pieces.get(p.get()) && a.blocks.contains(&BlockState::Open))
            .map(|(p, _)| *p)
            .collect();
        started.sort_unstable(); // deterministic order
        for piece in started {
            self.take_open(piece, max, &mut out);
            if out.len() >= max {
                return out;
            }
        }
        // 2. New pieces, rarest first.
        while out.len() < max {
            let Some(piece) = self.rarest_untouched(pieces) else {
                break;
            };
            self.start(piece);
            self.take_open(piece, max, &mut out);
        }
        // 3. Endgame: duplicate requests for blocks still in flight.
        if out.len() < max && self.in_endgame() {
            self.take_duplicates(pieces, max, &asked, &mut out);
        }
        out
    }

    /// Up to `max` untouched pieces in a row, each held by at most
    /// `max_holders` connected peers, for a source that fetches whole
    /// pieces (a web seed): taken from the longest stretch of such pieces
    /// (long requests), at a random place in it (hosts that share one
    /// origin fetch different pieces, and can trade them). Every block of
    /// them is marked requested; see [`Picker::abandon_piece`].
    pub fn pick_run(&mut self, max_holders: u32, max: u32) -> Vec<PieceIndex> {
        let n = self.geometry.num_pieces();
        if self.untouched == 0 || max == 0 {
            return Vec::new();
        }
        let eligible = |p: &Picker, i: u32| {
            !p.have.get(i)
                && p.wanted.get(i)
                && p.availability[i as usize] <= max_holders
                && p.geometry
                    .piece(i)
                    .is_some_and(|i| !p.active.contains_key(&i))
        };
        // The longest stretch (start, length); the first of equals.
        let (mut best, mut from) = ((0, 0), 0);
        for i in 0..=n {
            if i == n || !eligible(self, i) {
                if i - from > best.1 {
                    best = (from, i - from);
                }
                from = i + 1;
            }
        }
        let (start, len) = best;
        let first = start + self.rng.below((len.saturating_sub(max) + 1) as usize) as u32;
        let run: Vec<PieceIndex> = (first..first + len.min(max))
            .filter_map(|i| self.geometry.piece(i))
            .collect();
        let mut blocks = Vec::new();
        for &piece in &run {
            self.start(piece);
            self.take_open(piece, usize::MAX, &mut blocks);
        }
        run
    }

    fn start(&mut self, piece: PieceIndex) {
        let n = self.geometry.blocks_in(piece);
        self.active.insert(
            piece,
            Active {
                blocks: vec![BlockState::Open; n as usize],
                received: 0,
                contributors: Vec::new(),
            },
        );
        self.untouched -= 1;
        self.open_blocks += u64::from(n);
    }

    fn take_open(&mut self, piece: PieceIndex, max: usize, out: &mut Vec<Block>) {
        let Some(active) = self.active.get_mut(&piece) else {
            return;
        };
        for (n, state) in active.blocks.iter_mut().enumerate() {
            if out.len() >= max {
                break;
            }
            if *state == BlockState::Open {
                *state = BlockState::Requested(1);
                self.open_blocks -= 1;
                out.push(self.geometry.block(piece, n as u32));
            }
        }
    }

    fn take_duplicates(
        &mut self,
        pieces: &Bitfield,
        max: usize,
        asked: &impl Fn(&Block) -> bool,
        out: &mut Vec<Block>,
    ) {
        // Fewest requesters first, so every straggler gets a second source.
        for limit in 1..MAX_DUPLICATES {
            let mut candidates: Vec<PieceIndex> = self
                .active
                .keys()
                .filter(|p| pieces.get(p.get()))
                .copied()
                .collect();
            candidates.sort_unstable();
            for piece in candidates {
                let active = self.active.get_mut(&piece).expect("listed above");
                for (n, state) in active.blocks.iter_mut().enumerate() {
                    if out.len() >= max {
                        return;
                    }
                    if let BlockState::Requested(k) = *state {
                        let block = self.geometry.block(piece, n as u32);
                        if k == limit && !asked(&block) && !out.contains(&block) {
                            *state = BlockState::Requested(k + 1);
                            out.push(block);
                        }
                    }
                }
            }
        }
    }

    /// The rarest piece this peer has that nobody started, random among
    /// equals: scan from a random start and keep the first minimum.
    fn rarest_untouched(&mut self, pieces: &Bitfield) -> Option<PieceIndex> {
        if self.untouched == 0 {
            return None;
        }
        let n = self.geometry.num_pieces();
        let start = self.rng.below(n as usize) as u32;
        // Eight pieces per byte: those the peer has, we lack and want.
        // (Called for every piece a peer is asked for: with 16 KiB pieces
        // a scan of single bits was a fifth of a leecher's CPU.)
        let byte = |b: &Bitfield, i: usize| b.as_bytes().get(i).copied().unwrap_or(0);
        let candidates = |i: usize| byte(pieces, i) & !byte(&self.have, i) & byte(&self.wanted, i);
        let mut best: Option<(u32, u32)> = None;
        // From a random piece to the end, then from the first: equals are
        // taken at random.
        'scan: for (from, to) in [(start, n), (0, start)] {
            let mut p = from;
            while p < to {
                let mask = candidates((p / 8) as usize);
                if mask == 0 {
                    p = (p / 8 + 1) * 8;
                    continue;
                }
                if mask & (0x80 >> (p % 8)) != 0 {
                    let piece = self.geometry.piece(p).expect("below num_pieces");
                    let avail = self.availability[p as usize];
                    if !self.active.contains_key(&piece) && best.is_none_or(|(_, a)| avail < a) {
                        best = Some((p, avail));
                        if avail <= 1 {
                            break 'scan; // nothing is rarer than a piece this peer has
                        }
                    }
                }
                p += 1;
            }
        }
        best.and_then(|(p, _)| self.geometry.piece(p))
    }

    /// A request we made will not be answered (peer gone, choked us,
    /// rejected it, or we cancelled it): the block is open again unless
    /// someone else still has it in flight.
    pub fn abandon(&mut self, block: &Block) {
        let n = self.geometry.block_number(block) as usize;
        let Some(active) = self.active.get_mut(&block.piece) else {
            return;
        };
        if let Some(BlockState::Requested(k)) = active.blocks.get(n).copied() {
            active.blocks[n] = if k > 1 {
                BlockState::Requested(k - 1)
            } else {
                self.open_blocks += 1;
                BlockState::Open
            };
        }
    }

    /// A piece asked of a whole-piece source (a web seed) will not come:
    /// its blocks are abandoned, and if none of them is received or still
    /// requested elsewhere, the piece is untouched again (so that another
    /// such source may take it).
    pub fn abandon_piece(&mut self, piece: PieceIndex) {
        for b in self.geometry.blocks(piece).collect::<Vec<_>>() {
            self.abandon(&b);
        }
        let idle = self
            .active
            .get(&piece)
            .is_some_and(|a| a.blocks.iter().all(|s| *s == BlockState::Open));
        if let Some(a) = self.active.remove(&piece).filter(|_| idle) {
            self.open_blocks -= a.blocks.len() as u64;
            self.untouched += 1;
        }
    }

    /// Whether this block is still wanted (not received, piece not verified).
    pub fn wanted(&self, block: &Block) -> bool {
        let n = self.geometry.block_number(block) as usize;
        self.active
            .get(&block.piece)
            .and_then(|a| a.blocks.get(n))
            .is_some_and(|s| *s != BlockState::Received)
    }

    /// A block arrived from `from`.
    pub fn received(&mut self, block: &Block, from: PeerKey) -> Received {
        let n = self.geometry.block_number(block) as usize;
        let Some(active) = self.active.get_mut(&block.piece) else {
            return Received::Duplicate;
        };
        match active.blocks.get(n).copied() {
            None | Some(BlockState::Received) => Received::Duplicate,
            Some(state) => {
                if state == BlockState::Open {
                    self.open_blocks -= 1;
                }
                active.blocks[n] = BlockState::Received;
                active.received += 1;
                if !active.contributors.contains(&from) {
                    active.contributors.push(from);
                }
                Received::Fresh {
                    complete: active.received as usize == active.blocks.len(),
                }
            }
        }
    }

    /// A verified piece is missing again (its file changed under us);
    /// returns whether it was verified.
    pub fn unverify(&mut self, piece: PieceIndex) -> bool {
        if !self.have.get(piece.get()) {
            return false;
        }
        self.have.clear(piece.get());
        if self.wanted.get(piece.get()) {
            self.untouched += 1;
            self.missing += 1;
        }
        true
    }

    /// Marks a piece verified; returns the peers that sent its blocks.
    pub fn verified(&mut self, piece: PieceIndex) -> Vec<PeerKey> {
        if self.have.get(piece.get()) {
            return Vec::new();
        }
        self.have.set(piece.get());
        if !self.wanted.get(piece.get()) {
            return self
                .active
                .remove(&piece)
                .map(|a| a.contributors)
                .unwrap_or_default();
        }
        self.missing -= 1;
        match self.active.remove(&piece) {
            Some(active) => active.contributors,
            None => {
                self.untouched -= 1;
                Vec::new()
            }
        }
    }

    /// The piece's hash did not match: it is missing again. Returns the
    /// peers that sent its blocks.
    pub fn failed(&mut self, piece: PieceIndex) -> Vec<PeerKey> {
        match self.active.remove(&piece) {
            Some(active) => {
                self.untouched += 1;
                active.contributors
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 4 pieces of 2 blocks (32 KiB), the last one short (1 block).
    fn picker() -> Picker {
        let g = Geometry::new(32 * 1024, [(3 * 32 * 1024 + 100, false)]).unwrap();
        Picker::new(g, Bitfield::new(4), 42)
    }

    fn never(_: &Block) -> bool {
        false
    }

    /// Pieces 0-2 (two blocks each), not the one-block last piece.
    fn two_block_pieces() -> Bitfield {
        let mut b = Bitfield::full(4);
        b.clear(3);
        b
    }

    #[test]
    fn finishes_started_pieces_before_new_ones() {
        let mut p = picker();
        let all = two_block_pieces();
        p.add_peer(&all);
        let first = p.pick(&all, 1, never);
        assert_eq!(first.len(), 1);
        let piece = first[0].piece;
        // The next pick takes the other block of the same piece first.
        let next = p.pick(&all, 1, never);
        assert_eq!(next[0].piece, piece);
        assert_eq!(next[0].begin, 16 * 1024);
    }

    #[test]
    fn rarest_first() {
        let mut p = picker();
        let mut common = Bitfield::new(4);
        for i in 0..4 {
            common.set(i);
        }
        // Pieces 0,1,3 are held by 3 peers, piece 2 by 1.
        p.add_peer(&common);
        p.add_peer(&common);
        let mut others = common.clone();
        others.clear(2);
        p.add_peer(&others);
        assert_eq!(p.availability, vec![3, 3, 2, 3]);
        let got = p.pick(&common, 2, never);
        assert!(got.iter().all(|b| b.piece.get() == 2), "{got:?}");
    }

    #[test]
    fn random_among_equals_spreads_picks() {
        let g = Geometry::new(16 * 1024, [(64 * 16 * 1024, false)]).unwrap();
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut p = Picker::new(g.clone(), Bitfield::new(64), seed);
            let all = Bitfield::full(64);
            p.add_peer(&all);
            firsts.insert(p.pick(&all, 1, never)[0].piece);
        }
        assert!(firsts.len() > 5, "picks vary with the seed: {firsts:?}");
    }

    #[test]
    fn only_pieces_the_peer_has() {
        let mut p = picker();
        let mut one = Bitfield::new(4);
        one.set(3);
        p.add_peer(&one);
        let got = p.pick(&one, 10, never);
        assert_eq!(got.len(), 1, "the short last piece has one block");
        assert_eq!(got[0].piece.get(), 3);
        assert_eq!(got[0].len, 100);
        assert!(p.pick(&one, 10, never).is_empty());
    }

    #[test]
    fn abandoned_blocks_are_picked_again() {
        let mut p = picker();
        let all = Bitfield::full(4);
        p.add_peer(&all);
        let got = p.pick(&all, 7, never);
        assert_eq!(got.len(), 7);
        assert!(
            p.pick(&all, 1, |b| got.contains(b)).is_empty(),
            "nothing open, endgame dups only for others"
        );
        p.abandon(&got[0]);
        assert_eq!(p.pick(&all, 1, never), vec![got[0]]);
    }

    #[test]
    fn completes_verifies_and_fails() {
        let mut p = picker();
        let all = Bitfield::full(4);
        p.add_peer(&all);
        let blocks = p.pick(&two_block_pieces(), 2, never);
        let piece = blocks[0].piece;
        assert_eq!(
            p.received(&blocks[0], 1),
            Received::Fresh { complete: false }
        );
        assert_eq!(p.received(&blocks[0], 1), Received::Duplicate);
        assert_eq!(
            p.received(&blocks[1], 2),
            Received::Fresh { complete: true }
        );
        assert_eq!(p.failed(piece), vec![1, 2]);
        // Failed pieces are picked again.
        let again = p.pick(&all, 8, never);
        assert!(again.iter().any(|b| b.piece == piece));
        for b in &again {
            p.received(b, 1);
        }
        for piece in g_pieces(&p) {
            p.verified(piece);
        }
        assert!(p.is_complete());
        assert_eq!(p.left(), 0);
    }

    fn g_pieces(p: &Picker) -> Vec<PieceIndex> {
        p.geometry.pieces().collect()
    }

    #[test]
    fn endgame_asks_a_second_peer_but_never_the_same_one_twice() {
        let mut p = picker();
        let all = Bitfield::full(4);
        p.add_peer(&all);
        p.add_peer(&all);
        let a = p.pick(&all, 100, never);
        assert_eq!(a.len(), 7);
        assert!(p.in_endgame());
        // Peer B gets duplicates of A's blocks.
        let b = p.pick(&all, 100, never);
        assert_eq!(b.len(), 7);
        // Peer A asks again: everything it would get it already asked for.
        let a2 = p.pick(&all, 100, |blk| a.contains(blk));
        assert!(a2.is_empty(), "{a2:?}");
        // B asked for the same blocks; the first copy in wins.
        assert!(b.iter().all(|blk| a.contains(blk)));
        assert!(matches!(p.received(&a[0], 1), Received::Fresh { .. }));
        assert_eq!(p.received(&a[0], 2), Received::Duplicate);
        assert!(!p.wanted(&a[0]));
        assert!(p.wanted(&a[1]));
    }

    #[test]
    fn runs_take_whole_untouched_pieces_as_rare_as_asked() {
        let mut p = picker();
        let mut middle = Bitfield::new(4);
        middle.set(1);
        middle.set(2);
        p.add_peer(&middle);
        // Pieces 0 and 3 are held by nobody: one run each (1 and 2 are
        // held and stop a run).
        let mut nobody = [p.pick_run(0, 10), p.pick_run(0, 10)].concat();
        nobody.sort_unstable();
        assert_eq!(
            nobody,
            [p.geometry.piece(0).unwrap(), p.geometry.piece(3).unwrap()]
        );
        assert!(p.pick_run(0, 10).is_empty());
        let held = [p.pick_run(u32::MAX, 10), p.pick_run(u32::MAX, 10)].concat();
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(p.in_endgame(), "every block is requested");
        // A piece given back is untouched again: another run takes it,
        // and if given back again, a peer.
        p.abandon_piece(held[0]);
        assert_eq!(p.pick_run(u32::MAX, 10), vec![held[0]]);
        p.abandon_piece(held[0]);
        let got = p.pick(&middle, 2, never);
        assert!(
            got.len() == 2 && got.iter().all(|b| b.piece == held[0]),
            "{got:?}"
        );
    }

    #[test]
    fn runs_come_from_the_longest_stretch_at_a_random_place() {
        let g = Geometry::new(16 * 1024, [(8 * 16 * 1024, false)]).unwrap();
        let mut firsts = std::collections::HashSet::new();
        for seed in 0..20 {
            let mut p = Picker::new(g.clone(), Bitfield::new(8), seed);
            let mut two = Bitfield::new(8);
            two.set(2);
            p.add_peer(&two);
            // Stretches nobody has: 0-1 and 3-7.
            let run: Vec<u32> = p.pick_run(0, 3).iter().map(|i| i.get()).collect();
            assert!(run.len() == 3 && run[0] >= 3 && run[2] <= 7, "{run:?}");
            assert!(run.windows(2).all(|w| w[1] == w[0] + 1), "{run:?}");
            firsts.insert(run[0]);
        }
        assert!(firsts.len() > 1, "the start varies: {firsts:?}");
    }

    #[test]
    fn wants_any_compares_against_have() {
        let mut p = picker();
        let mut theirs = Bitfield::new(4);
        assert!(!p.wants_any(&theirs));
        theirs.set(1);
        assert!(p.wants_any(&theirs));
        p.verified(p.geometry.piece(1).unwrap());
        assert!(!p.wants_any(&theirs));
    }
}
