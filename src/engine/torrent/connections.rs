//! The orchestrator's connections: known addresses, dialling with backoff,
//! accepting, and forgetting peers (bans included).

use super::*;

impl Orchestrator<'_> {
    /// An inbound connection: run it like any peer, if there is room.
    pub(super) fn accept(&mut self, inbound: Inbound) {
        let Ok(addr) = inbound.stream.peer_addr() else {
            return;
        };
        if self.book.ip_banned(addr.ip()) {
            log::debug!("refusing {addr}: banned");
            return;
        }
        if self.at_ip_limit(addr.ip()) {
            log::debug!(
                "refusing {addr}: {} peers from its IP already",
                self.opts.max_peers_per_ip
            );
            return;
        }
        if self.peers.len() >= self.opts.max_peers && !self.evict_useless() {
            log::debug!("refusing {addr}: {} peers already", self.peers.len());
            return;
        }
        self.start_peer(addr, move |key, settings, rx, events| {
            peer::run_inbound(key, inbound, settings, rx, events)
        });
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

    /// Whether `ip` has `--max-peers-per-ip` connections (either way).
    fn at_ip_limit(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let n = self
            .peers
            .values()
            .filter(|p| p.addr.ip().to_canonical() == ip)
            .count();
        n >= self.opts.max_peers_per_ip
    }

    pub(super) fn learn(&mut self, addr: SocketAddr) {
        self.book.learn(addr, Instant::now());
    }

    pub(super) fn connect_more(&mut self) {
        if self.picker.is_complete() && !self.opts.seed.wants_seeding() {
            return;
        }
        let connecting = self.peers.values().filter(|p| p.socket.is_none()).count();
        let mut room = self
            .opts
            .max_peers
            .saturating_sub(self.peers.len())
            .min(MAX_CONNECTING.saturating_sub(connecting));
        if room == 0 {
            return;
        }
        for addr in self.book.ready(Instant::now()) {
            if room == 0 {
                break;
            }
            if self.at_ip_limit(addr.ip()) {
                continue;
            }
            room -= 1;
            self.spawn_peer(addr);
        }
    }

    /// Fewer peers connected than we may have, while there is work for
    /// peers: the announce thread then announces early (it is told only
    /// of changes).
    pub(super) fn tell_announcer_if_we_want_peers(&mut self) {
        let connected = self.peers.values().filter(|p| p.socket.is_some()).count();
        let busy = !self.picker.is_complete() || self.opts.seed.wants_seeding();
        let want = busy && connected < self.opts.max_peers;
        if want != self.wants_peers {
            self.wants_peers = want;
            if let Some((tx, _)) = &self.announce {
                let _ = tx.send(announce::Command::WantPeers(want));
            }
        }
    }

    pub(super) fn spawn_peer(&mut self, addr: SocketAddr) {
        let started = self.start_peer(addr, move |key, settings, rx, events| {
            peer::run_outbound(key, addr, settings, rx, events)
        });
        if let Some(key) = started {
            self.book.dialled(addr, key);
        }
    }

    /// Starts a peer's thread running `run` and adds the peer to the table;
    /// returns its key, or `None` if no thread could be had.
    pub(super) fn start_peer(
        &mut self,
        addr: SocketAddr,
        run: impl FnOnce(PeerKey, Settings, Receiver<Command>, Sender<Event>) + Send + 'static,
    ) -> Option<PeerKey> {
        let key = self.next_key;
        self.next_key += 1;
        let (tx, rx) = bounded(COMMAND_QUEUE);
        let settings = self.settings.clone();
        let events = self.events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("peer-{key}"))
            .spawn(move || run(key, settings, rx, events));
        if let Err(e) = spawned {
            log::warn!("cannot start a peer thread: {e}");
            return None;
        }
        let num_pieces = self.meta.geometry.num_pieces();
        self.peers.insert(key, Peer::new(addr, tx, num_pieces));
        Some(key)
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
        socket: TcpStream,
    ) {
        // Two connections to one peer (we dialled it as it dialled us)
        // would only compete for the same pieces.
        let duplicate = self.peers.values().any(|p| p.remote_id == Some(id));
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
        // What we have must be the first message; the rest follows it.
        let mut hello = Vec::with_capacity(2 + allowed_fast::SET_SIZE);
        match (fast, have.count()) {
            (true, 0) => hello.push(Command::HaveNone),
            (true, n) if n == have.len() => hello.push(Command::HaveAll),
            (_, 0) => {}
            _ => hello.push(Command::Bitfield(have.as_bytes().to_vec())),
        }
        if extended {
            let port = self.listen_addr.map(|a| a.port());
            let ours =
                crate::proto::extension::our_handshake(peer::MAX_QUEUED_UPLOADS as u32, port);
            hello.push(Command::ExtensionHandshake(ours));
        }
        if let Some(port) = self.dht.port().filter(|_| dht) {
            hello.push(Command::Port(port));
        }
        if fast {
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
        self.book
            .ended(p.addr, p.downloaded > 0, ban, Instant::now());
        if self.departed.len() == DEPARTED {
            self.departed.pop_front();
        }
        self.departed.push_back((peer, p.addr));
        log::debug!("peer {} ({}) gone: {reason}", peer, p.addr);
        self.fill_all();
    }
}
