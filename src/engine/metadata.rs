//! Assembling a magnet link's metadata (BEP 9), pure: which piece of the
//! info dictionary to ask which peer for, the pieces received, and the
//! verdict once all are in (its SHA-1 must be the info hash).
//!
//! Owns: the size (the first one a peer announces within
//! [`MAX_METADATA_SIZE`]), the buffer, the requests in flight (a peer that
//! does not answer within [`REQUEST_TIMEOUT`] loses its piece to another)
//! and who sent what (all of them are blamed for a wrong dictionary).
//! Does not own: connections, or what a ban means (the caller).

use crate::net::peer::PeerKey;
use crate::proto::metainfo::InfoHash;
use crate::proto::ut_metadata::{piece_count, MAX_METADATA_SIZE, PIECE_LEN};
use sha1::{Digest, Sha1};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A piece asked for and not answered within this goes to another peer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests in flight per peer at most.
pub const PER_PEER: usize = 2;
/// A size that brought no piece for this long is given up: the peers that
/// announced it may be lying or gone, and others may know better.
pub const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not what we asked (or already had): ignored.
    Ignored,
    /// One more piece.
    Progress,
    /// Every piece in, and its SHA-1 is the info hash: the dictionary.
    Verified(Vec<u8>),
    /// Every piece in, but the SHA-1 is wrong: these peers sent pieces (it
    /// starts over).
    Corrupt(Vec<PeerKey>),
}

pub struct Assembly {
    info_hash: InfoHash,
    size: Option<usize>,
    data: Vec<u8>,
    got: Vec<bool>,
    asked: HashMap<u32, (PeerKey, Instant)>,
    senders: HashSet<PeerKey>,
    /// When the size was taken or the last piece came.
    progress_at: Instant,
    /// Sizes that brought nothing, and when: not taken again for
    /// [`STALL`] (an honest size comes back after that; a liar's senders
    /// are banned only when its pieces come).
    refused: HashMap<u64, Instant>,
}

impl Assembly {
    pub fn new(info_hash: InfoHash) -> Assembly {
        Assembly {
            info_hash,
            size: None,
            data: Vec::new(),
            got: Vec::new(),
            asked: HashMap::new(),
            senders: HashSet::new(),
            progress_at: Instant::now(),
            refused: HashMap::new(),
        }
    }

    /// Forgets the size and what came for it.
    fn start_over(&mut self) {
        self.size = None;
        self.data = Vec::new();
        self.got = Vec::new();
        self.asked.clear();
        self.senders.clear();
    }

    /// Gives up the size if it brought nothing for [`STALL`]; whether it
    /// did.
    pub fn give_up_if_stalled(&mut self, now: Instant) -> bool {
        let stalled = self.size.is_some() && now - self.progress_at >= STALL;
        if let Some(size) = self.size.filter(|_| stalled) {
            self.refused.insert(size as u64, now);
            self.start_over();
        }
        stalled
    }

    /// A peer says the dictionary is `size` bytes. The first plausible
    /// size is taken (a wrong one fails the hash and blames its sender);
    /// 0 or more than [`MAX_METADATA_SIZE`] is refused before anything is
    /// allocated. Whether this peer may be asked.
    pub fn offer_size(&mut self, size: u64) -> bool {
        let now = Instant::now();
        self.refused.retain(|_, at| now - *at < STALL);
        if size == 0 || size > MAX_METADATA_SIZE || self.refused.contains_key(&size) {
            return false;
        }
        match self.size {
            Some(s) => s as u64 == size,
            None => {
                self.progress_at = now;
                self.size = Some(size as usize);
                self.data = vec![0; size as usize];
                self.got = vec![false; piece_count(size) as usize];
                true
            }
        }
    }

    pub fn size(&self) -> Option<usize> {
        self.size
    }

    /// Pieces received, and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.got.iter().filter(|g| **g).count(), self.got.len())
    }

    /// The next piece to ask `peer` for, if any (marked asked).
    pub fn next_request(&mut self, peer: PeerKey, now: Instant) -> Option<u32> {
        let in_flight = self.asked.values().filter(|(k, _)| *k == peer).count();
        if in_flight >= PER_PEER {
            return None;
        }
        let piece = (0..self.got.len() as u32).find(|i| {
            !self.got[*i as usize]
                && self
                    .asked
                    .get(i)
                    .is_none_or(|(_, at)| now - *at >= REQUEST_TIMEOUT)
        })?;
        self.asked.insert(piece, (peer, now));
        Some(piece)
    }

    /// The peer will not send this piece (reject) or is gone.
    pub fn rejected(&mut self, peer: PeerKey, piece: u32) {
        if self.asked.get(&piece).is_some_and(|(k, _)| *k == peer) {
            self.asked.remove(&piece);
        }
    }

    pub fn forget_peer(&mut self, peer: PeerKey) {
        self.asked.retain(|_, (k, _)| *k != peer);
    }

    /// A piece from `peer`: taken only if asked of it, of the right length
    /// and announced with our size.
    pub fn received(&mut self, peer: PeerKey, piece: u32, total: u64, data: &[u8]) -> Outcome {
        let Some(size) = self.size else {
            return Outcome::Ignored;
        };
        let start = piece as usize * PIECE_LEN;
        let expected = size.saturating_sub(start).min(PIECE_LEN);
        let asked = self.asked.get(&piece).is_some_and(|(k, _)| *k == peer);
        if !asked || total != size as u64 || data.len() != expected || expected == 0 {
            return Outcome::Ignored;
        }
        self.asked.remove(&piece);
        self.progress_at = Instant::now();
        self.data[start..start + expected].copy_from_slice(data);
        self.got[piece as usize] = true;
        self.senders.insert(peer);
        if !self.got.iter().all(|g| *g) {
            return Outcome::Progress;
        }
        let senders: Vec<PeerKey> = self.senders.drain().collect();
        if <[u8; 20]>::from(Sha1::digest(&self.data)) == self.info_hash.0 {
            Outcome::Verified(std::mem::take(&mut self.data))
        } else {
            self.start_over();
            Outcome::Corrupt(senders)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(len: usize) -> (Vec<u8>, InfoHash) {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let hash = InfoHash(Sha1::digest(&data).into());
        (data, hash)
    }

    #[test]
    fn pieces_from_two_peers_make_the_verified_dictionary() {
        let (data, hash) = info(40_000);
        let mut a = Assembly::new(hash);
        assert!(!a.offer_size(0));
        assert!(
            !a.offer_size(MAX_METADATA_SIZE + 1),
            "refused before allocating"
        );
        assert!(a.offer_size(40_000));
        assert!(
            !a.offer_size(39_999),
            "another size: that peer is not asked"
        );
        let now = Instant::now();
        assert_eq!(a.next_request(1, now), Some(0));
        assert_eq!(a.next_request(2, now), Some(1));
        assert_eq!(a.next_request(2, now), Some(2));
        assert_eq!(a.next_request(2, now), None, "two in flight per peer");
        // Not asked of peer 2, wrong total, wrong length: ignored.
        assert_eq!(
            a.received(2, 0, 40_000, &data[..PIECE_LEN]),
            Outcome::Ignored
        );
        assert_eq!(a.received(1, 0, 1, &data[..PIECE_LEN]), Outcome::Ignored);
        assert_eq!(a.received(1, 0, 40_000, &data[..10]), Outcome::Ignored);
        assert_eq!(
            a.received(1, 0, 40_000, &data[..PIECE_LEN]),
            Outcome::Progress
        );
        assert_eq!(
            a.received(2, 1, 40_000, &data[PIECE_LEN..2 * PIECE_LEN]),
            Outcome::Progress
        );
        assert_eq!(a.progress(), (2, 3));
        assert_eq!(
            a.received(2, 2, 40_000, &data[2 * PIECE_LEN..]),
            Outcome::Verified(data.clone())
        );
    }

    #[test]
    fn a_wrong_dictionary_blames_its_senders_and_starts_over() {
        let (data, hash) = info(20_000);
        let mut a = Assembly::new(hash);
        a.offer_size(20_000);
        let now = Instant::now();
        a.next_request(1, now);
        a.next_request(2, now);
        a.received(1, 0, 20_000, &data[..PIECE_LEN]);
        let mut bad = data[PIECE_LEN..].to_vec();
        bad[0] ^= 1;
        match a.received(2, 1, 20_000, &bad) {
            Outcome::Corrupt(mut who) => {
                who.sort_unstable();
                assert_eq!(who, [1, 2]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.size(), None, "starts over");
        assert!(a.offer_size(20_000), "honest peers may have the same size");
    }

    #[test]
    fn a_size_that_brings_nothing_is_given_up() {
        let (_, hash) = info(20_000);
        let mut a = Assembly::new(hash);
        assert!(a.offer_size(99_999), "a liar's size comes first");
        let now = Instant::now();
        assert!(!a.give_up_if_stalled(now));
        assert!(a.give_up_if_stalled(now + STALL));
        assert!(a.offer_size(20_000), "the honest size is taken now");
        assert!(!a.offer_size(99_999));
    }

    #[test]
    fn unanswered_and_rejected_pieces_go_to_others() {
        let (_, hash) = info(20_000);
        let mut a = Assembly::new(hash);
        a.offer_size(20_000);
        let now = Instant::now();
        assert_eq!(a.next_request(1, now), Some(0));
        assert_eq!(a.next_request(1, now), Some(1));
        a.rejected(1, 0);
        assert_eq!(a.next_request(2, now), Some(0), "rejected: open again");
        assert_eq!(a.next_request(3, now), None, "both in flight");
        a.forget_peer(2);
        assert_eq!(a.next_request(3, now), Some(0), "its peer left");
        let later = now + REQUEST_TIMEOUT;
        assert_eq!(a.next_request(4, later), Some(0), "unanswered for too long");
        assert_eq!(a.next_request(4, later), Some(1));
    }
}
