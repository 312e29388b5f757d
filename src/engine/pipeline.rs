//! One peer's request pipeline, pure: which of our requests are in flight,
//! how many may be, and which blocks from the peer we asked for.
//!
//! Owns: the outstanding requests (with when and in which order each was
//! sent, so a request the peer skipped is noticed) and the copies still
//! owed of requests that are no longer outstanding — cancelled in endgame,
//! voided by a `choke`, or skipped — which may still arrive and are
//! accepted;
//! the depth, from the measured rate and round trip; and the peer's own
//! cap (BEP 10 `reqq`). Does not own: which blocks to ask for (the picker)
//! or the peer's rate (a [`crate::engine::rate::RateMeter`]).

use crate::proto::extension::DEFAULT_REQQ;
use crate::proto::geometry::{Block, BLOCK_LEN};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Request pipeline bounds, in blocks. The floor keeps a new peer busy
/// before its rate is known; peers sending to us at once share it (each
/// keeps SHARED_MIN_DEPTH at least), as they share the headroom. The cap
/// is the peer's own BEP 10 `reqq` (what it will queue; libtorrent says
/// 2000), never more than MAX_DEPTH (16 MiB in flight), and DEFAULT_REQQ
/// for a peer that does not say.
pub const MIN_DEPTH: usize = 8;
pub const SHARED_MIN_DEPTH: usize = 1;
pub const MAX_DEPTH: usize = 1000;
/// In endgame, a peer is sent (duplicate) requests only while it has fewer
/// than this many outstanding.
pub const ENDGAME_DEPTH: usize = 16;
/// Seconds of data to keep requested, at least: a sender that reads from
/// disk between sends needs requests queued beyond one round trip. Shared,
/// like the headroom, by the peers sending to us at once: kept at each of
/// them, it is as long a wait for every request at every hop of a swarm
/// (fleet bench, 16 leechers: median 1.18 → 1.16 × the bound once shared).
const QUEUE_TIME: f64 = 0.5;
/// Extra bytes in flight beyond that, so that the pipe can grow: with n
/// peers sending to us at once, each keeps HEADROOM / n² (the n together
/// HEADROOM / n, which each of their rates can still grow into). Each
/// request waits at its peer behind those queued before it, so with 13
/// peers each holding 256 KiB of ours at ~80 KB/s, a piece asked for now
/// came ~3 s later: measured in `make bench-fleet` (16 leechers), pieces
/// crossed the swarm that much slower, and every leecher finished later
/// for it. With HEADROOM / n each, a piece still took ~0.9 s from the
/// seeder to the median leecher (a block queued at every hop); with
/// HEADROOM / n² and a floor of one block, the median leecher of 16
/// finished at 1.14 × the bound instead of 1.15–1.16.
const HEADROOM: f64 = 256.0 * 1024.0;
/// Voided requests remembered at most (two full pipelines).
const MAX_VOIDED: usize = 2 * MAX_DEPTH;
/// A request is taken as skipped (dropped by the peer without a word, as
/// Transmission does with one past its queue) once this many requests sent
/// after it have been answered and it is [`SKIP_AGE`] old. Peers serve
/// roughly in order, but libtorrent reads whole pieces in parallel from
/// disk and answers blocks up to a few pieces out of order: by count
/// alone, a fast libtorrent seeder of 1 MiB pieces looked like it skipped
/// thousands of requests (each asked again, a duplicate).
pub const SKIP_GAP: u64 = 64;
pub const SKIP_AGE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Pipeline {
    /// Requests in flight, with when they were sent and their number in
    /// sending order.
    outstanding: HashMap<Block, (Instant, u64)>,
    /// The same requests by number: the oldest first.
    order: BTreeMap<u64, Block>,
    /// The next request's number.
    next_seq: u64,
    /// The newest number among the requests answered.
    newest_answered: u64,
    /// Copies that may still come of requests no longer outstanding (we
    /// cancelled them in endgame, the peer's choke voided them, or it
    /// skipped them), oldest first, one entry per copy: the peer may have
    /// read a request before our cancel or after its unchoke and serve it,
    /// and we may have asked for the block again since, so one block can
    /// come several times. Past [`MAX_VOIDED`] the oldest is forgotten, so
    /// a peer that chokes and unchokes in a loop cannot grow it.
    owed: VecDeque<Block>,
    depth: usize,
    /// What the peer will queue (BEP 10 `reqq`), capped.
    max_depth: usize,
    /// Shortest request→block time seen (current and previous window), the
    /// round trip without queueing.
    min_rtt: Option<Duration>,
}

/// What became of a block the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// We asked for it.
    Expected,
    /// Cancelled or voided by a choke, but asked for once: accepted.
    Late,
    /// We never asked this peer for it: a protocol error.
    Unrequested,
}

impl Default for Pipeline {
    fn default() -> Pipeline {
        Pipeline {
            outstanding: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            newest_answered: 0,
            owed: VecDeque::new(),
            depth: MIN_DEPTH,
            max_depth: DEFAULT_REQQ as usize,
            min_rtt: None,
        }
    }
}

impl Pipeline {
    /// The peer says how many requests it will queue (`None`: it does
    /// not say). We keep a margin below it: Transmission advertises 512
    /// and drops the 512th.
    pub fn set_peer_queue(&mut self, reqq: Option<u32>) {
        let reqq = reqq.unwrap_or(DEFAULT_REQQ);
        let margin = (reqq / 16).max(1);
        self.max_depth = (reqq - margin.min(reqq)).min(MAX_DEPTH as u32) as usize;
    }

    /// Bytes in flight ≈ rate × max(2 × RTT, QUEUE_TIME / n) + HEADROOM /
    /// n², in blocks, between max(MIN_DEPTH / n, SHARED_MIN_DEPTH) and what
    /// the peer will queue, where n `sources` send to us now. `recent`
    /// (the rate over the last tick) lets the depth follow a rising rate at
    /// once; the average `rate` lags by a second, and the depth falls with
    /// it.
    pub fn update_depth(&mut self, rate: f64, recent: f64, sources: usize) {
        let sources = sources.max(1);
        let rtt = self.min_rtt.map_or(0.0, |d| d.as_secs_f64());
        let headroom = HEADROOM / (sources as f64).powi(2);
        let bytes = rate.max(recent) * (2.0 * rtt).max(QUEUE_TIME / sources as f64) + headroom;
        let blocks = (bytes / f64::from(BLOCK_LEN)).ceil() as usize;
        let floor = (MIN_DEPTH / sources).max(SHARED_MIN_DEPTH);
        self.depth = blocks.clamp(floor, self.max_depth.max(floor));
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Starts a new round-trip window: routes and loads change.
    pub fn forget_rtt(&mut self) {
        self.min_rtt = None;
    }

    /// Requests worth sending now: none unless at least a quarter of the
    /// pipeline is free (one command, wake-up and write carry many
    /// requests), or the pipe is empty. In endgame, only a nearly idle
    /// peer gets (duplicate) requests.
    pub fn room(&self, endgame: bool) -> usize {
        let depth = if endgame {
            self.depth.min(ENDGAME_DEPTH)
        } else {
            self.depth
        };
        let room = depth.saturating_sub(self.outstanding.len());
        if room < depth / 4 && !self.outstanding.is_empty() {
            0
        } else {
            room
        }
    }

    pub fn is_asked(&self, block: &Block) -> bool {
        self.outstanding.contains_key(block)
    }

    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    pub fn outstanding(&self) -> impl Iterator<Item = &Block> {
        self.outstanding.keys()
    }

    pub fn sent(&mut self, block: Block, at: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some((_, old)) = self.outstanding.insert(block, (at, seq)) {
            self.order.remove(&old);
        }
        self.order.insert(seq, block);
    }

    /// Forgets an outstanding request; whether it was one.
    fn remove(&mut self, block: &Block) -> Option<(Instant, u64)> {
        let sent = self.outstanding.remove(block)?;
        self.order.remove(&sent.1);
        Some(sent)
    }

    /// A block arrived at `now`; the round trip of an expected one is
    /// measured.
    pub fn arrived(&mut self, block: &Block, now: Instant) -> Arrival {
        if let Some((sent, seq)) = self.remove(block) {
            let rtt = now - sent;
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.newest_answered = self.newest_answered.max(seq);
            Arrival::Expected
        } else if self.take_owed(block) {
            Arrival::Late
        } else {
            Arrival::Unrequested
        }
    }

    /// Requests the peer skipped at `now`: [`SKIP_GAP`] requests sent
    /// after each were answered, and each is [`SKIP_AGE`] old. They are no
    /// longer outstanding (ask again, here or elsewhere); a copy that
    /// still comes is accepted.
    pub fn take_skipped(&mut self, now: Instant) -> Vec<Block> {
        let mut skipped = Vec::new();
        while let Some((&seq, &block)) = self.order.first_key_value() {
            let old = self
                .outstanding
                .get(&block)
                .is_some_and(|(sent, _)| now.saturating_duration_since(*sent) >= SKIP_AGE);
            if seq + SKIP_GAP >= self.newest_answered || !old {
                break;
            }
            self.remove(&block);
            skipped.push(block);
        }
        self.void(&skipped);
        skipped
    }

    /// BEP 6: the peer will not serve this request; whether it was
    /// outstanding.
    pub fn rejected(&mut self, block: &Block) -> bool {
        self.remove(block).is_some() || {
            self.take_owed(block);
            false
        }
    }

    /// Takes one owed copy of `block`; whether there was one.
    fn take_owed(&mut self, block: &Block) -> bool {
        match self.owed.iter().position(|b| b == block) {
            Some(i) => {
                self.owed.remove(i);
                true
            }
            None => false,
        }
    }

    /// Endgame: another peer delivered this block; we cancel ours (a copy
    /// may still come).
    pub fn cancel(&mut self, block: &Block) -> bool {
        let asked = self.remove(block).is_some();
        if asked {
            self.void(&[*block]);
        }
        asked
    }

    /// The peer choked us: BEP 3 says our requests are void, except (BEP 6)
    /// those it allowed fast, which `keep` picks. Returns the void ones
    /// (the picker must offer them again).
    pub fn choked(&mut self, keep: impl Fn(&Block) -> bool) -> Vec<Block> {
        let void: Vec<Block> = self
            .outstanding
            .keys()
            .filter(|b| !keep(b))
            .copied()
            .collect();
        for b in &void {
            self.remove(b);
        }
        self.void(&void);
        void
    }

    /// Requests a copy of which may still come, once each.
    fn void(&mut self, blocks: &[Block]) {
        self.owed.extend(blocks);
        let over = self.owed.len().saturating_sub(MAX_VOIDED);
        self.owed.drain(..over);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::geometry::Geometry;

    fn blocks(n: u32) -> Vec<Block> {
        let g = Geometry::new(BLOCK_LEN, [(u64::from(n * BLOCK_LEN), false)]).unwrap();
        g.pieces().map(|p| g.block(p, 0)).collect()
    }

    #[test]
    fn depth_follows_rate_and_round_trip_within_bounds() {
        let mut p = Pipeline::default();
        let now = Instant::now();
        let [b] = blocks(1)[..] else { unreachable!() };
        p.sent(b, now);
        assert_eq!(
            p.arrived(&b, now + Duration::from_millis(100)),
            Arrival::Expected
        );
        // 10 MB/s × max(0.2 s, 0.5 s) + 256 KiB = 5,262,144 bytes = 322 blocks.
        p.update_depth(10e6, 0.0, 1);
        assert_eq!(
            p.depth(),
            DEFAULT_REQQ as usize,
            "capped by the default reqq"
        );
        p.set_peer_queue(Some(2000));
        p.update_depth(10e6, 0.0, 1);
        assert_eq!(p.depth(), 322);
        // A rising rate is followed at once; MAX_DEPTH caps any peer.
        p.update_depth(0.0, 1e9, 1);
        assert_eq!(p.depth(), MAX_DEPTH);
        // Idle: the floor.
        p.update_depth(0.0, 0.0, 1);
        assert_eq!(p.depth(), 16, "256 KiB of headroom");
        p.set_peer_queue(Some(1));
        p.update_depth(0.0, 0.0, 1);
        assert_eq!(p.depth(), MIN_DEPTH);
    }

    #[test]
    fn peers_sending_at_once_share_the_headroom_and_the_floor() {
        let mut p = Pipeline::default();
        p.set_peer_queue(Some(2000));
        // 4 peers: 16 KiB of headroom each, and 1 MB/s × 0.5 s / 4.
        p.update_depth(1e6, 0.0, 4);
        assert_eq!(p.depth(), 9, "(125,000 + 16,384) / 16,384, rounded up");
        // 16 peers at 100 KB/s: (3,125 + 1,024) / 16,384, rounded up: one
        // block queued behind the one on the wire is a wait at every hop.
        p.update_depth(100e3, 0.0, 16);
        assert_eq!(p.depth(), 1);
        // Idle, 2 peers: 64 KiB of headroom, over a floor of 4.
        p.update_depth(0.0, 0.0, 2);
        assert_eq!(p.depth(), 4);
        // Idle, 4 peers: the floor of 8 / 4 over 16 KiB of headroom.
        p.update_depth(0.0, 0.0, 4);
        assert_eq!(p.depth(), 2);
        // Idle, 200 peers: the shared floor.
        p.update_depth(0.0, 0.0, 200);
        assert_eq!(p.depth(), SHARED_MIN_DEPTH);
        // One peer alone keeps it all.
        p.update_depth(0.0, 0.0, 1);
        assert_eq!(p.depth(), 16);
    }

    #[test]
    fn top_ups_come_in_quarters_and_endgame_asks_idle_peers_only() {
        let mut p = Pipeline::default();
        p.set_peer_queue(Some(2000));
        p.update_depth(0.0, 1e9, 1);
        assert_eq!(p.room(false), MAX_DEPTH);
        assert_eq!(p.room(true), ENDGAME_DEPTH);
        let now = Instant::now();
        let all = blocks(800);
        for b in &all {
            p.sent(*b, now);
        }
        assert_eq!(p.room(false), 0, "200 free: under a quarter");
        for b in &all[..50] {
            p.arrived(b, now);
        }
        assert_eq!(p.room(false), 250, "a quarter free");
        assert_eq!(p.room(true), 0, "endgame: busy peers get no duplicates");
    }

    #[test]
    fn a_choke_voids_requests_but_late_copies_are_accepted_once() {
        let mut p = Pipeline::default();
        let now = Instant::now();
        let bs = blocks(3);
        for b in &bs {
            p.sent(*b, now);
        }
        assert_eq!(p.choked(|_| false).len(), 3);
        assert!(p.is_empty());
        assert_eq!(p.arrived(&bs[0], now), Arrival::Late);
        assert_eq!(p.arrived(&bs[0], now), Arrival::Unrequested);
        // Asked again after the choke: the old request's copy and the new
        // one may both come, also across a second choke.
        p.sent(bs[1], now);
        assert_eq!(p.arrived(&bs[1], now), Arrival::Expected);
        p.sent(bs[2], now);
        assert_eq!(p.choked(|_| false), vec![bs[2]]);
        assert_eq!(p.arrived(&bs[1], now), Arrival::Late);
        assert_eq!(p.arrived(&bs[2], now), Arrival::Late);
        // bs[2] was voided twice and one copy came: one is still owed.
        // Asked and voided twice more: three copies may come, no more.
        p.sent(bs[2], now);
        p.choked(|_| false);
        p.sent(bs[2], now);
        p.choked(|_| false);
        for _ in 0..3 {
            assert_eq!(p.arrived(&bs[2], now), Arrival::Late);
        }
        assert_eq!(p.arrived(&bs[2], now), Arrival::Unrequested);
    }

    /// A peer that chokes and unchokes in a loop cannot make us remember
    /// more than MAX_VOIDED requests.
    #[test]
    fn voided_requests_are_bounded() {
        let mut p = Pipeline::default();
        let now = Instant::now();
        let bs = blocks(3 * MAX_DEPTH as u32);
        for round in bs.chunks(MAX_DEPTH / 2) {
            for b in round {
                p.sent(*b, now);
            }
            p.choked(|_| false);
            assert!(p.owed.len() <= MAX_VOIDED);
        }
    }

    #[test]
    fn an_endgame_cancel_leaves_the_block_acceptable() {
        let mut p = Pipeline::default();
        let now = Instant::now();
        let [b, c] = blocks(2)[..] else {
            unreachable!()
        };
        p.sent(b, now);
        assert!(p.cancel(&b));
        assert!(!p.cancel(&c), "never asked");
        assert!(!p.is_asked(&b));
        assert_eq!(p.arrived(&b, now), Arrival::Late);
        assert_eq!(p.arrived(&c, now), Arrival::Unrequested);
    }

    #[test]
    fn a_request_is_skipped_once_skip_gap_later_ones_are_answered() {
        let mut p = Pipeline::default();
        let now = Instant::now();
        let bs = blocks(SKIP_GAP as u32 + 3);
        for b in &bs {
            p.sent(*b, now);
        }
        // Answered in a slightly different order: nothing is skipped yet.
        for b in bs[1..=SKIP_GAP as usize].iter().rev() {
            assert_eq!(p.arrived(b, now), Arrival::Expected);
            assert!(p.take_skipped(now + SKIP_AGE).is_empty());
        }
        assert_eq!(
            p.arrived(&bs[SKIP_GAP as usize + 1], now),
            Arrival::Expected
        );
        // Far out of order but recent (libtorrent reading pieces in
        // parallel): not skipped yet.
        assert!(p.take_skipped(now + SKIP_AGE / 2).is_empty());
        assert_eq!(p.take_skipped(now + SKIP_AGE), vec![bs[0]]);
        assert!(!p.is_asked(&bs[0]));
        assert_eq!(p.arrived(&bs[0], now), Arrival::Late, "a late copy is fine");
        // A rejected request is simply gone.
        let last = bs[SKIP_GAP as usize + 2];
        assert!(p.rejected(&last));
        assert!(!p.rejected(&last));
        assert!(p.is_empty());
    }

    #[test]
    fn the_depth_stays_below_the_peers_queue() {
        let mut p = Pipeline::default();
        p.set_peer_queue(Some(512));
        p.update_depth(0.0, 1e9, 1);
        assert_eq!(p.depth(), 480, "Transmission's 512 less a margin");
        p.set_peer_queue(Some(10));
        p.update_depth(0.0, 1e9, 1);
        assert_eq!(p.depth(), MIN_DEPTH.max(9));
    }
}
