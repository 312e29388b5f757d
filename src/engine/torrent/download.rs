//! The download side of the orchestrator: interest, request pipelines,
//! incoming blocks, endgame cancels, and piece verification.

use super::*;
use crate::util::bytes::Bytes;
use std::borrow::Cow;

impl Orchestrator<'_> {
    pub(super) fn on_block(
        &mut self,
        peer: PeerKey,
        index: u32,
        begin: u32,
        data: Bytes,
    ) -> Result<(), TorrentError> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(()); // already dropped
        };
        let now = Instant::now();
        let block = self.meta.geometry.piece(index).map(|piece| Block {
            piece,
            begin,
            len: data.len() as u32,
        });
        let Some(block) = block.filter(|b| p.pipeline.arrived(b, now) != Arrival::Unrequested)
        else {
            let reason = format!(
                "sent a block we did not request (piece {index}, offset {begin}, {} bytes)",
                data.len()
            );
            self.drop_peer(peer, &reason, false);
            return Ok(());
        };
        let n = data.len() as u64;
        p.down.add(n);
        p.downloaded += n;
        p.last_data = now;
        self.down.add(n);
        self.swarm
            .counters
            .downloaded
            .fetch_add(n, Ordering::Relaxed);

        self.reask_skipped(peer, now);
        if let Received::Fresh { complete } = self.picker.received(&block, peer) {
            self.storage.write(block.piece, block.begin, &data)?;
            if self.feed_hasher && !self.hasher.feed(block.piece, block.begin, data) {
                return Err(TorrentError::HasherStopped);
            }
            // Only endgame asks two peers for one block; before it, there
            // is nobody to cancel and no need to scan every peer per block.
            if self.picker.in_endgame() {
                self.cancel_elsewhere(peer, &block);
            }
            if complete {
                self.finish_piece(block.piece)?;
            }
        }
        self.fill(peer);
        Ok(())
    }

    /// A peer that skipped a request (and answered later ones) will not
    /// answer it: ask again now, not at the stall timeout. Checked as
    /// blocks arrive and on every tick.
    pub(super) fn reask_skipped(&mut self, peer: PeerKey, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        for b in p.pipeline.take_skipped(now) {
            log::debug!("peer {peer} skipped our request for {b:?}");
            self.picker.abandon(&b);
        }
    }

    /// BEP 6: the peer will not serve a request of ours; the block is open
    /// to every peer again at once (a reject for a request we no longer
    /// have outstanding changes nothing).
    pub(super) fn on_rejected(&mut self, peer: PeerKey, index: u32, begin: u32, len: u32) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(block) = self.meta.geometry.checked_block(index, begin, len) else {
            return;
        };
        if p.pipeline.rejected(&block) {
            p.refused.insert(index, Instant::now());
            self.picker.abandon(&block);
            self.fill_all();
        }
    }

    /// Endgame: others asked for the same block; tell them not to bother.
    pub(super) fn cancel_elsewhere(&mut self, from: PeerKey, block: &Block) {
        let holders: Vec<PeerKey> = self.peer_keys(|k, p| *k != from && p.pipeline.is_asked(block));
        for k in holders {
            if let Some(p) = self.peers.get_mut(&k) {
                p.pipeline.cancel(block);
            }
            self.picker.abandon(block);
            self.send(k, Command::Cancel(*block));
        }
    }

    /// Every block of a piece is written: unmap it (its pages stay in the
    /// page cache) and hand it to the hasher; [`Self::on_hashed`] decides.
    pub(super) fn finish_piece(&mut self, piece: PieceIndex) -> Result<(), TorrentError> {
        self.storage.release(piece);
        if self
            .hasher
            .hash(piece, self.meta.geometry.piece_size(piece))
        {
            self.hashing.insert(piece);
            Ok(())
        } else {
            Err(TorrentError::HasherStopped)
        }
    }

    /// The hasher's verdict on a piece: verified, or missing again with
    /// its senders blamed. A read error is a disk error: it stops the run.
    pub(super) fn on_hashed(
        &mut self,
        piece: PieceIndex,
        hash: Result<[u8; 20], StorageError>,
    ) -> Result<(), TorrentError> {
        for p in self.peers.values_mut() {
            p.in_doubt.remove(&piece);
        }
        self.hashing.remove(&piece);
        if self.stale.remove(&piece) {
            return Ok(()); // its file changed while it was hashed
        }
        if hash? == self.meta.piece_hash(piece) {
            for k in self.picker.verified(piece) {
                if let Some(p) = self.peers.get_mut(&k) {
                    p.proven = true;
                }
            }
            if self.picker.wanted_pieces().get(piece.get()) {
                let size = u64::from(self.meta.geometry.piece_size(piece));
                self.verified_bytes += size;
                self.swarm.counters.left.fetch_sub(size, Ordering::Relaxed);
            }
            self.unannounced.push(piece.get());
            let done: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in done {
                self.update_interest(k);
            }
            return Ok(());
        }
        let blamed = self.picker.failed(piece);
        let peers = blamed
            .iter()
            .filter_map(|k| self.peers.get(k).map(|p| p.addr))
            .collect();
        (self.notes)(Note::PieceFailed {
            piece: piece.get(),
            peers,
        });
        for k in blamed {
            if !self.web_strike(k) {
                self.strike(k);
            }
        }
        self.fill_all();
        Ok(())
    }

    pub(super) fn update_interest(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let want = self.picker.wants_any(&p.pieces);
        if want != p.am_interested {
            p.am_interested = want;
            let cmd = if want {
                Command::Interested
            } else {
                Command::NotInterested
            };
            self.send(peer, cmd);
        }
        self.fill(peer);
    }

    /// Announces the pieces verified since the last call, in one command
    /// per peer (the writer puts all the `have`s in one write), to every
    /// peer, those that hold them too: a peer's view of what we hold
    /// drives its choice of whom to help catch up, and a super-seeder
    /// learns from them which of its pieces spread (libtorrent's
    /// `send_redundant_have`, on by default). Measured in `make
    /// bench-fleet`: with `have`s only to peers that lacked the piece,
    /// peers saw a leecher 2-5 s behind as hundreds of pieces further
    /// behind than it was, and one left without uploaders after a choke
    /// round got no catch-up slot for 4 s.
    pub(super) fn announce_verified(&mut self) {
        self.last_announce = Instant::now();
        let pieces = std::mem::take(&mut self.unannounced);
        let cmd = match pieces[..] {
            [] => return,
            [one] => Command::Have(one),
            _ => Command::Haves(pieces),
        };
        let keys: Vec<PeerKey> = self.peer_keys(|_, p| p.socket.is_some());
        for k in keys {
            self.send(k, cmd.clone());
        }
    }

    /// Tops up a peer's request pipeline.
    pub(super) fn fill(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if (p.peer_choking && p.allowed_fast.is_empty()) || !p.am_interested || p.socket.is_none() {
            return;
        }
        // In endgame every request is a duplicate of one in flight
        // elsewhere: only a nearly idle peer is asked, so the last blocks
        // come from whoever is free without fetching the tail twice.
        let mut room = p.pipeline.room(self.picker.in_endgame());
        if room == 0 {
            return;
        }
        // Probation: a piece's worth of blocks at a time, at most
        // PROBATION_PIECES pieces in doubt, and no endgame duplicates.
        // The pieces it may be asked for: while it chokes us, only those
        // it allows fast (BEP 6); on probation with PROBATION_PIECES in
        // doubt, only those.
        let mut offer = Cow::Borrowed(&p.pieces);
        let mut keep_only = |pieces: &mut dyn Iterator<Item = u32>| {
            let mut only = Bitfield::new(offer.len());
            for i in pieces.filter(|&i| offer.get(i)) {
                only.set(i);
            }
            offer = Cow::Owned(only);
        };
        if p.peer_choking {
            keep_only(&mut p.allowed_fast.iter().copied());
        }
        if p.on_probation() {
            room = room.min(self.meta.geometry.piece_len().div_ceil(BLOCK_LEN) as usize);
            if p.in_doubt.len() >= PROBATION_PIECES {
                keep_only(&mut p.in_doubt.iter().map(|i| i.get()));
            }
        }
        p.refused.retain(|_, at| at.elapsed() < REFUSAL_MEMORY);
        if !p.refused.is_empty() {
            let mut without = offer.into_owned();
            for &i in p.refused.keys() {
                without.clear(i);
            }
            offer = Cow::Owned(without);
        }
        let endgame = self.picker.in_endgame();
        if endgame && p.on_probation() {
            return; // endgame duplicates go to proven peers only
        }
        let pipeline = &p.pipeline;
        let mut blocks = self.picker.pick(&offer, room, |b| pipeline.is_asked(b));
        if p.on_probation() {
            // The picker finishes started pieces first, which may be many:
            // keep the pieces in doubt and new ones up to the bound, and
            // give the rest back.
            let mut allowed = p.in_doubt.clone();
            blocks.retain(|b| {
                let keep = allowed.contains(&b.piece) || allowed.len() < PROBATION_PIECES;
                if keep {
                    allowed.insert(b.piece);
                } else {
                    self.picker.abandon(b);
                }
                keep
            });
        }
        if blocks.is_empty() {
            return;
        }
        let now = Instant::now();
        for b in &blocks {
            p.pipeline.sent(*b, now);
            p.in_doubt.insert(b.piece);
        }
        self.send(peer, Command::Requests(blocks));
    }

    pub(super) fn fill_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill(k);
        }
    }

    /// A piece from `peer` failed its hash. Three strikes on one connection
    /// or one dialled address drop and ban it; strikes also add up per IP
    /// across reconnects (an inbound peer's port changes each time), and at
    /// MAX_IP_STRIKES the IP is banned: refused inbound, never dialled.
    fn strike(&mut self, peer: PeerKey) {
        // A peer that closed before the verdict is struck by its address
        // all the same: disconnecting must not wipe a liar's record.
        let (addr, on_connection) = match self.peers.get_mut(&peer) {
            Some(p) => {
                p.strikes += 1;
                (p.addr, p.strikes)
            }
            None => match self.departed.iter().find(|(k, _)| *k == peer) {
                Some(&(_, addr)) => (addr, 1),
                None => return,
            },
        };
        let Some(ban) = self.swarm.book.strike(addr, on_connection) else {
            return;
        };
        let (who, strikes, ip) = match ban {
            Ban::Ip(ip, n) => (ip.to_string(), n, Some(ip)),
            Ban::Address(a, n) => (a.to_string(), n, None),
        };
        (self.notes)(Note::PeerBanned { who, strikes });
        let dropped: Vec<PeerKey> = self
            .peer_keys(|k, q| *k == peer || ip.is_some_and(|ip| q.addr.ip().to_canonical() == ip));
        for k in dropped {
            self.drop_peer(k, "sent corrupt data", true);
        }
    }
}
