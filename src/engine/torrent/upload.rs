//! The upload side of the orchestrator: requests from peers, and who is
//! unchoked (the decision itself is [`crate::engine::choker`]'s).

use super::*;

impl Orchestrator<'_> {
    /// A peer asks for data: serve it if the request is valid and the peer
    /// unchoked (or the piece is in the allowed-fast set we gave it); a
    /// request out of range, over 16 KiB, for a piece we never announced,
    /// or from a peer we never unchoked costs the connection. A BEP 6 peer
    /// is told when we will not serve a request it may make.
    pub(super) fn on_request(&mut self, peer: PeerKey, index: u32, begin: u32, len: u32) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(block) = self.meta.geometry.checked_block(index, begin, len) else {
            let why = format!("bad request (piece {index}, offset {begin}, {len} bytes)");
            return self.drop_peer(peer, &why, false);
        };
        let refuse = if !self.picker.have().get(index) {
            if !self.lost.get(index) {
                let why = format!("requested piece {index}, which we do not have");
                return self.drop_peer(peer, &why, false);
            }
            true // we announced it, then its file changed: not their fault
        } else if p.am_choking && !p.offered_fast.contains(&index) {
            let in_grace = p.choked_at.is_some_and(|t| t.elapsed() <= CHOKE_GRACE);
            if !p.fast && !in_grace {
                return self.drop_peer(peer, "requested while choked", false);
            }
            true
        } else {
            false
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let cmd = match (refuse, p.fast) {
            (false, _) => Command::Upload(block),
            (true, true) => Command::Reject(block),
            (true, false) => return,
        };
        self.send(peer, cmd);
    }

    /// Both sides complete: the connection serves nobody.
    pub(super) fn drop_if_both_seeds(&mut self, peer: PeerKey) {
        let seed = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.pieces.is_complete());
        if seed && self.picker.is_complete() {
            self.drop_peer(peer, "both seeds", false);
        }
    }

    /// Between choke rounds, free upload slots (regular ones plus the
    /// catch-up one) go at once to interested peers we choke, those
    /// waiting longest first: when a peer becomes interested, and when one
    /// stops being interested or leaves. Nobody is choked here, so
    /// downloads are not interrupted by every change of interest; without
    /// it a slot freed by a finished leecher stayed empty until the next
    /// round (a seeder with 10 leechers held its rate at half).
    pub(super) fn fill_free_slots(&mut self) {
        let unchoked = self
            .peers
            .values()
            .filter(|p| !p.am_choking && p.peer_interested)
            .count();
        // Initial seeding unchokes every interested peer: a piece we
        // announced must not wait behind a choke.
        let slots = if self.initial.is_some() {
            usize::MAX
        } else {
            self.opts.upload_slots + 1
        };
        let free = slots.saturating_sub(unchoked);
        if free == 0 {
            return;
        }
        let mut waiting: Vec<(Instant, PeerKey)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.peer_interested && p.am_choking && p.socket.is_some())
            .map(|(k, p)| (p.connected_at, *k))
            .collect();
        waiting.sort_unstable();
        for (_, k) in waiting.into_iter().take(free) {
            if let Some(p) = self.peers.get_mut(&k) {
                p.am_choking = false;
            }
            self.send(k, Command::Unchoke);
        }
    }

    /// Initial seeding: blocks of these pieces reached `peer`'s socket;
    /// a piece of its window sent in full makes room for another.
    pub(super) fn delivered(&mut self, peer: PeerKey, pieces: &[u32]) {
        let Some(initial) = &mut self.initial else {
            return;
        };
        let geometry = &self.meta.geometry;
        let now = Instant::now();
        let mut room = false;
        for &i in pieces {
            if let Some(piece) = geometry.piece(i) {
                room |= initial.sent(peer, i, geometry.blocks_in(piece), now);
            }
        }
        if room {
            self.super_offer(peer);
        }
    }

    /// Initial seeding, every tick: pieces that lapsed in peers' windows
    /// make room, and every peer is offered what fits (a window can have
    /// room with no event from its peer: the last piece going out starts
    /// the rarest phase for all, a departed peer's pieces are fresh again).
    pub(super) fn tick_super_offers(&mut self) {
        let Some(initial) = &mut self.initial else {
            return;
        };
        let now = Instant::now();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &k in &keys {
            initial.expire(k, now);
        }
        // Every window is sized from an equal share of our upload: sized
        // from each peer's own rate, the first peers to connect kept 3-4×
        // the others' share (a bigger window, more requests, a bigger
        // rate), and a peer sent new pieces faster than the rest must pass
        // them on to all of them faster too (fleet bench, 16 leechers).
        // Rates change once a tick, and so does the window.
        let takers = self
            .peers
            .values()
            .filter(|q| q.socket.is_some() && q.peer_interested);
        let share = self.up.rate() / takers.count().max(1) as f64;
        self.super_window = superseed::window(u64::from(self.meta.geometry.piece_len()), share);
        for k in keys {
            self.super_offer(k);
        }
    }

    /// Initial seeding: announces pieces to `peer` up to its window
    /// (`super_window`; fresh ones first, then the rarest).
    pub(super) fn super_offer(&mut self, peer: PeerKey) {
        let Some(initial) = &mut self.initial else {
            return;
        };
        let Some(p) = self.peers.get(&peer).filter(|p| p.socket.is_some()) else {
            return;
        };
        let picker = &self.picker;
        let now = Instant::now();
        let window = self.super_window;
        let offer = initial.offer(peer, &p.pieces, window, now, |i| picker.availability(i));
        if !offer.is_empty() {
            self.send(peer, Command::Haves(offer));
        }
    }

    /// Applies the choker's choice of who may download from us; `rerank`:
    /// the regular slots too (every `choker::ROUND`), not only the
    /// catch-up slot (every `choker::CATCH_UP_ROUND`).
    pub(super) fn rechoke(&mut self, rerank: bool) {
        let now = Instant::now();
        let seeding = self.picker.is_complete();
        let num_pieces = self.meta.geometry.num_pieces();
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.socket.is_some() && p.peer_interested)
            .map(|(k, p)| Candidate {
                peer: *k,
                download_rate: p.down.rate(),
                upload_rate: p.up.rate(),
                snubbed: p.am_interested && now - p.last_data > crate::engine::choker::SNUB,
                missing: num_pieces.saturating_sub(p.pieces.count()),
                unchoked: !p.am_choking,
            })
            .collect();
        let chosen = if self.initial.is_some() {
            candidates.iter().map(|c| c.peer).collect()
        } else {
            self.choker.choose(&candidates, seeding, rerank)
        };
        let changes: Vec<(PeerKey, bool)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.socket.is_some())
            .filter_map(|(k, p)| {
                let unchoke = chosen.contains(k);
                (unchoke == p.am_choking).then_some((*k, unchoke))
            })
            .collect();
        for (k, unchoke) in changes {
            if let Some(p) = self.peers.get_mut(&k) {
                p.am_choking = !unchoke;
                if !unchoke {
                    p.choked_at = Some(now);
                }
            }
            self.send(
                k,
                if unchoke {
                    Command::Unchoke
                } else {
                    Command::Choke
                },
            );
        }
        if rerank {
            self.last_choke = now;
        }
        self.last_catch_up = now;
    }
}
