//! The orchestrator's connections: known addresses, dialling with backoff,
//! accepting, and forgetting peers (bans included).

use super::*;

impl Orchestrator<'_> {
    /// An inbound connection: run it like any peer, if there is room.
    pub(super) fn accept(&mut self, inbound: Inbound) {
        let Some(addr) = self.swarm.admissible(&inbound, &self.peers, &self.opts) else {
            return;
        };
        if self.peers.len() >= self.opts.max_peers && !self.evict_useless() {
            log::debug!("refusing {addr}: {} peers already", self.peers.len());
            return;
        }
        let started = self.start_peer(addr, move |key, settings, rx, events| {
            peer::run_inbound(key, inbound, settings, rx, events)
        });
        if let Some(p) = started.and_then(|k| self.peers.get_mut(&k)) {
            p.inbound = true;
        }
    }

    /// A newcomer may take the slot of a peer connected this long that is of
    /// no use to either side.
    pub(super) fn evict_useless(&mut self) -> bool {
        let now = Instant::now();
        let useless = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.socket.is_some()
                    && now - p.connected_at >= EVICT_GRACE
                    && !p.peer_interested
                    && !p.am_interested
            })
            .min_by_key(|(_, p)| p.connected_at)
            .map(|(k, _)| *k);
        match useless {
            Some(k) => {
                self.drop_peer(k, "useless to both sides, and its slot is wanted", false);
                true
            }
            None => false,
        }
    }

    pub(super) fn learn(&mut self, addr: SocketAddr, source: Source) {
        self.swarm.book.learn(addr, Instant::now(), source);
    }

    pub(super) fn connect_more(&mut self) {
        if self.picker.is_complete() && !self.opts.seed.wants_seeding() {
            return;
        }
        for (key, addr, tx) in self.swarm.dial_more(&self.peers, &self.opts) {
            self.add_peer(key, addr, tx);
        }
    }

    /// Fewer peers connected than we may have, while there is work for
    /// peers: the announce thread then announces early.
    pub(super) fn tell_announcer_if_we_want_peers(&mut self) {
        let connected = self.peers.values().filter(|p| p.socket.is_some()).count();
        let busy = !self.picker.is_complete() || self.opts.seed.wants_seeding();
        let want = busy && connected < self.opts.max_peers;
        self.swarm.want_peers(want, &mut self.wants_peers);
    }

    /// Starts a peer's thread running `run` and adds the peer to the table;
    /// returns its key, or `None` if no thread could be had.
    pub(super) fn start_peer(
        &mut self,
        addr: SocketAddr,
        run: impl FnOnce(PeerKey, Settings, Receiver<Command>, Sender<Event>) + Send + 'static,
    ) -> Option<PeerKey> {
        let (key, tx) = self.swarm.start(run)?;
        self.add_peer(key, addr, tx);
        Some(key)
    }

    fn add_peer(&mut self, key: PeerKey, addr: SocketAddr, commands: Sender<Command>) {
        let num_pieces = self.meta.geometry.num_pieces();
        self.peers
            .insert(key, Peer::new(addr, commands, num_pieces));
    }

    /// The handshake is done: say what we have (BEP 6 `have_all` /
    /// `have_none` to a fast peer when they fit, else a bitfield unless we
    /// have nothing), then our extension handshake and allowed-fast set.
    pub(super) fn on_connected(
        &mut self,
        peer: PeerKey,
        id: [u8; 20],
        extended: bool,
        fast: bool,
        dht: bool,
        socket: Stream,
    ) {
        // Two connections to one peer (we dialled it as it dialled us)
        // would only compete for the same pieces.
        let duplicate = self.peers.values().any(|p| p.remote_id == Some(id));
        let ours = extended.then(|| self.extension_handshake());
        let Some(p) = self.peers.get_mut(&peer) else {
            let _ = socket.shutdown(Shutdown::Both);
            return;
        };
        p.socket = Some(socket);
        p.remote_id = Some(id);
        p.last_data = Instant::now();
        p.fast = fast;
        if duplicate {
            return self.drop_peer(peer, "already connected to this peer", false);
        }
        let have = self.picker.have();
        // Initial seeding: we say we have nothing, then announce pieces
        // with `have` (super_offer, below).
        let superseed = self.initial.is_some();
        let said = if superseed { 0 } else { have.count() };
        // What we have must be the first message; the rest follows it.
        let mut hello = Vec::with_capacity(2 + allowed_fast::SET_SIZE);
        match (fast, said) {
            (true, 0) => hello.push(Command::HaveNone),
            (true, n) if n == have.len() => hello.push(Command::HaveAll),
            (_, 0) => {}
            _ => hello.push(Command::Bitfield(have.as_bytes().to_vec())),
        }
        p.ext_sent = ours.is_some();
        hello.extend(ours.map(Command::ExtensionHandshake));
        if let Some(port) = self.dht.port().filter(|_| dht) {
            hello.push(Command::Port(port));
        }
        if fast && !superseed {
            let set = allowed_fast::allowed_fast_set(
                p.addr.ip(),
                &self.meta.info_hash.0,
                have.len(),
                allowed_fast::SET_SIZE,
            );
            p.offered_fast = set.into_iter().filter(|&i| have.get(i)).collect();
            hello.extend(p.offered_fast.iter().map(|&i| Command::AllowedFast(i)));
        }
        for cmd in hello {
            self.send(peer, cmd);
        }
        self.super_offer(peer);
    }

    /// Takes over the peers of a magnet link's metadata fetch: what each
    /// said it has is checked against the piece count now known (a peer
    /// whose bitfield does not fit is dropped), then each is told what we
    /// have and our full extension handshake, as if it had just connected.
    pub(super) fn adopt(&mut self, (peers, mut said): Adopted) {
        let n = self.meta.geometry.num_pieces();
        for (key, mut p) in peers {
            let said = said.remove(&key).unwrap_or_default();
            let pieces = said.pieces.map_or(Ok(Bitfield::new(n)), |u| u.sized(n));
            let Ok(mut pieces) = pieces else {
                if let Some(s) = &p.socket {
                    let _ = s.shutdown(Shutdown::Both);
                }
                self.swarm.book.ended(p.addr, false, false, Instant::now());
                continue;
            };
            for i in said.haves {
                pieces.set(i);
            }
            p.allowed_fast.retain(|&i| i < n);
            self.picker.add_peer(&pieces);
            p.pieces = pieces;
            let connected = p.socket.is_some();
            self.peers.insert(key, p);
            if !connected {
                continue;
            }
            let have = self.picker.have();
            if have.count() > 0 {
                let bits = Command::Bitfield(have.as_bytes().to_vec());
                self.send(key, bits);
            }
            // One that sent its extension handshake gets our full one now;
            // one that has not yet gets it when it does.
            if let Some(p) = self
                .peers
                .get_mut(&key)
                .filter(|p| p.ext != PeerInfo::default())
            {
                p.ext_sent = true;
                let ours = self.extension_handshake();
                self.send(key, Command::ExtensionHandshake(ours));
            }
            self.update_interest(key);
        }
    }

    /// Our BEP 10 handshake: we serve the metadata, and exchange peers
    /// unless the torrent is private (BEP 27).
    pub(super) fn extension_handshake(&self) -> Vec<u8> {
        extension::our_handshake(extension::Offer {
            reqq: peer::MAX_QUEUED_UPLOADS as u32,
            listen_port: self.swarm.listen_addr.map(|a| a.port()),
            metadata_size: Some(self.meta.info_bytes.len()),
            pex: !self.meta.private,
        })
    }

    pub(super) fn on_closed(&mut self, peer: PeerKey, reason: CloseReason) {
        log::debug!("peer {peer} closed: {reason}");
        self.forget(peer, &reason.to_string(), reason.bans());
    }

    /// Drops a connected peer now (its threads end once the socket is shut).
    pub(super) fn drop_peer(&mut self, peer: PeerKey, reason: &str, ban: bool) {
        log::info!("dropping peer {peer}: {reason}");
        self.forget(peer, reason, ban);
    }

    pub(super) fn forget(&mut self, peer: PeerKey, reason: &str, ban: bool) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let Some(s) = &p.socket {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.picker.remove_peer(&p.pieces);
        for b in p.pipeline.outstanding() {
            self.picker.abandon(b);
        }
        self.swarm
            .book
            .ended(p.addr, p.downloaded > 0, ban, Instant::now());
        if self.departed.len() == DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((peer, p.addr));
        if let Some(initial) = &mut self.initial {
            let peers = &self.peers;
            initial.gone(peer, |piece| peers.values().any(|q| q.pieces.get(piece)));
        }
        log::debug!("peer {} ({}) gone: {reason}", peer, p.addr);
        self.fill_all();
        if !p.am_choking {
            self.fill_free_slots();
        }
    }
}
