//! A magnet link's first phase: connect to peers from its trackers, its
//! `x.pe` addresses, `--peer` and those that dial us; fetch the info
//! dictionary from every peer that offers it (BEP 9, [`Assembly`]); then
//! hand the swarm — every connection, and what each peer said it has — to
//! the download's [`Orchestrator`]. Nothing is reconnected.

use super::*;
use crate::engine::metadata::{Assembly, Outcome};
use crate::proto::magnet::Magnet;
use crate::proto::{pex, ut_metadata};

/// What a peer said it has before we knew the piece count.
#[derive(Default)]
pub(super) struct Said {
    pub pieces: Option<Unsized>,
    pub haves: Vec<u32>,
}

/// `have`s remembered per peer before the metadata at most.
const MAX_EARLY_HAVES: usize = 4096;

/// Fetches the metadata of `magnet`, then downloads like [`run`]. The
/// torrent (with the link's trackers) is returned with the summary.
pub fn run_magnet(
    session: &Session,
    magnet: &Magnet,
    opts: Options,
    hosted: Option<Hosted>,
    notes: Notes<'_>,
) -> Result<(Arc<Metainfo>, Summary), TorrentError> {
    let start = Instant::now();
    let mut opts = opts;
    opts.peers.extend(&magnet.peers);
    let mut f = Fetch {
        swarm: Swarm::new(session, magnet.info_hash, &opts, hosted),
        // Whether the torrent is private is not known yet: its metadata
        // decides for the download; until then peers are found every way.
        dht: dht::Lookups::new(session, false),
        peers: HashMap::new(),
        said: HashMap::new(),
        assembly: Assembly::new(magnet.info_hash),
        wants_peers: false,
        opts,
        notes,
    };
    if let Some(addr) = f.swarm.listen_addr {
        (f.notes)(Note::Listening(addr));
    }
    // Until the size is known, `left` is "something".
    f.swarm.counters.left.store(1, Ordering::Relaxed);
    f.swarm.start_announce(magnet.trackers.clone(), &f.opts);
    let info = f.fetch(start)?;
    let meta = Arc::new(
        Metainfo::from_info(&info, magnet.trackers.clone()).map_err(TorrentError::BadMetadata)?,
    );
    (f.notes)(Note::Metadata {
        bytes: info.len(),
        peers: f.peers.values().filter(|p| p.socket.is_some()).count(),
    });
    if let Some(path) = &f.opts.save_torrent {
        crate::disk::torrent_file::write(path, &meta.to_torrent_bytes()).map_err(|cause| {
            TorrentError::SaveTorrent {
                path: path.clone(),
                cause,
            }
        })?;
    }
    let Fetch {
        swarm,
        peers,
        said,
        opts,
        notes,
        ..
    } = f;
    let summary = download(
        session,
        meta.clone(),
        opts,
        swarm,
        (peers, said),
        notes,
        start,
    )?;
    Ok((meta, summary))
}

struct Fetch<'p> {
    swarm: Swarm,
    dht: dht::Lookups,
    peers: HashMap<PeerKey, Peer>,
    said: HashMap<PeerKey, Said>,
    assembly: Assembly,
    wants_peers: bool,
    opts: Options,
    notes: Notes<'p>,
}

impl Fetch<'_> {
    /// Runs until the dictionary is verified (returned), or the run ends.
    fn fetch(&mut self, start: Instant) -> Result<Vec<u8>, TorrentError> {
        let deadline = self.opts.timeout.map(|t| start + t);
        let mut last_tick = Instant::now() - TICK;
        loop {
            if hosted::stop_requested(self.swarm.hosting.as_ref()) {
                return Err(TorrentError::Interrupted);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(TorrentError::NoMetadata {
                    after: self.opts.timeout.unwrap_or_default(),
                    connected: self.peers.values().filter(|p| p.socket.is_some()).count(),
                });
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
            select! {
                recv(self.swarm.events) -> e => {
                    if let Ok(e) = e {
                        if let Some(info) = self.on_event(e) {
                            return Ok(info);
                        }
                    }
                }
                recv(self.swarm.reports) -> r => match r {
                    Ok(announce::Report::Peers { peers, .. }) => {
                        for p in peers {
                            self.swarm.book.learn(p, Instant::now(), Source::Tracker);
                        }
                        self.connect_more();
                    }
                    Ok(announce::Report::Error { tracker, message }) => {
                        (self.notes)(Note::TrackerError { tracker, message })
                    }
                    Ok(announce::Report::Warning { tracker, message }) => {
                        (self.notes)(Note::TrackerWarning { tracker, message })
                    }
                    Err(_) => self.swarm.reports = never(),
                },
                recv(self.dht.found) -> found => {
                    for addr in found.into_iter().flatten() {
                        self.swarm.book.learn(addr, Instant::now(), Source::Dht);
                    }
                    self.connect_more();
                }
                recv(self.swarm.inbound) -> s => match s {
                    Ok(s) => self.accept(s),
                    Err(_) => self.swarm.inbound = never(),
                },
                default(TICK) => {}
            }
        }
    }

    fn tick(&mut self) {
        self.connect_more();
        if self.assembly.give_up_if_stalled(Instant::now()) {
            log::info!("no metadata piece came for a while: trying other peers' size");
        }
        let peerless = !self.peers.values().any(|p| p.ext.metadata_size.is_some());
        let announce = self.swarm.listen_addr.map(|a| a.port());
        self.dht
            .look_up(&self.swarm.settings.info_hash, announce, peerless);
        let connected = self.peers.values().filter(|p| p.socket.is_some()).count();
        self.swarm
            .want_peers(connected < self.opts.max_peers, &mut self.wants_peers);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.ask(k);
        }
    }

    fn connect_more(&mut self) {
        for (key, addr, tx) in self.swarm.dial_more(&self.peers, &self.opts) {
            self.peers.insert(key, Peer::new(addr, tx, 0));
        }
    }

    fn accept(&mut self, inbound: Inbound) {
        let Some(addr) = self.swarm.admissible(&inbound, &self.peers, &self.opts) else {
            return;
        };
        if self.peers.len() >= self.opts.max_peers {
            return;
        }
        let started = self.swarm.start(move |key, settings, rx, events| {
            peer::run_inbound(key, inbound, settings, rx, events)
        });
        if let Some((key, tx)) = started {
            let mut p = Peer::new(addr, tx, 0);
            p.inbound = true;
            self.peers.insert(key, p);
        }
    }

    /// Asks `peer` for metadata pieces, if it has the dictionary.
    fn ask(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let Some(id) = p.ext.ut_metadata else {
            return;
        };
        let offered = p
            .ext
            .metadata_size
            .is_some_and(|s| self.assembly.offer_size(s));
        if !offered {
            return;
        }
        let now = Instant::now();
        while let Some(piece) = self.assembly.next_request(peer, now) {
            let payload = ut_metadata::Message::Request(piece).encode();
            self.send(peer, Command::Extended { id, payload });
        }
    }

    fn send(&mut self, peer: PeerKey, cmd: Command) {
        if let Some(p) = self.peers.get(&peer) {
            if p.commands.try_send(cmd).is_err() {
                self.forget(peer, "not reading its commands", false);
            }
        }
    }

    fn forget(&mut self, peer: PeerKey, why: &str, ban: bool) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        log::debug!("peer {peer} ({}) gone: {why}", p.addr);
        if let Some(s) = &p.socket {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.said.remove(&peer);
        self.assembly.forget_peer(peer);
        self.swarm
            .book
            .ended(p.addr, p.ext.metadata_size.is_some(), ban, Instant::now());
    }

    /// Handles one event; the verified dictionary once it is complete.
    fn on_event(&mut self, e: Event) -> Option<Vec<u8>> {
        match e {
            Event::Connected {
                peer,
                id,
                extended,
                fast,
                socket,
                ..
            } => {
                let duplicate = self.peers.values().any(|p| p.remote_id == Some(id));
                let Some(p) = self.peers.get_mut(&peer) else {
                    let _ = socket.shutdown(Shutdown::Both);
                    return None;
                };
                p.socket = Some(socket);
                p.remote_id = Some(id);
                p.fast = fast;
                if duplicate {
                    self.forget(peer, "already connected to this peer", false);
                    return None;
                }
                if fast {
                    self.send(peer, Command::HaveNone);
                }
                if extended {
                    let ours = extension::our_handshake(extension::Offer {
                        reqq: peer::MAX_QUEUED_UPLOADS as u32,
                        listen_port: self.swarm.listen_addr.map(|a| a.port()),
                        metadata_size: None,
                        // Until the metadata says the torrent is private.
                        pex: true,
                    });
                    self.send(peer, Command::ExtensionHandshake(ours));
                }
            }
            Event::PeerInfo(peer, info) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.pipeline.set_peer_queue(info.reqq);
                    p.ext = info;
                    self.ask(peer);
                }
            }
            Event::Extension { peer, id, payload } => return self.on_extension(peer, id, &payload),
            Event::Unsized(peer, what) => self.said.entry(peer).or_default().pieces = Some(what),
            Event::Have(peer, i) => {
                let said = self.said.entry(peer).or_default();
                if said.haves.len() < MAX_EARLY_HAVES {
                    said.haves.push(i);
                }
            }
            Event::AllowedFast(peer, i) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    if p.allowed_fast.len() < MAX_ALLOWED_FAST {
                        p.allowed_fast.push(i);
                    }
                }
            }
            Event::Choke(peer) | Event::Unchoke(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.peer_choking = matches!(e, Event::Choke(_));
                }
            }
            Event::Interested(peer) | Event::NotInterested(peer) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.peer_interested = matches!(e, Event::Interested(_));
                }
            }
            Event::Blocks { peer, .. } => {
                self.forget(peer, "sent a block we did not request", false)
            }
            Event::Closed { peer, reason } => self.forget(peer, &reason.to_string(), reason.bans()),
            Event::DhtPort(peer, port) => {
                if let Some(p) = self.peers.get(&peer) {
                    self.dht.add_node(p.addr, port);
                }
            }
            // We have nothing yet: requests, cancels and rejects concern
            // nothing of ours; the piece count is not known for a bitfield.
            Event::Bitfield(..)
            | Event::Request(..)
            | Event::Cancel(..)
            | Event::Rejected(..)
            | Event::Uploaded { .. } => {}
        }
        None
    }

    fn on_extension(&mut self, peer: PeerKey, id: u8, payload: &[u8]) -> Option<Vec<u8>> {
        match id {
            extension::UT_METADATA => match ut_metadata::parse(payload) {
                Ok(msg) => return self.on_metadata(peer, msg),
                Err(e) => self.forget(peer, &e.to_string(), false),
            },
            extension::UT_PEX => match pex::parse(payload) {
                Ok(msg) => {
                    for addr in msg.added {
                        self.swarm.book.learn(addr, Instant::now(), Source::Pex);
                    }
                }
                Err(e) => self.forget(peer, &e.to_string(), false),
            },
            _ => {}
        }
        None
    }

    fn on_metadata(&mut self, peer: PeerKey, msg: ut_metadata::Message) -> Option<Vec<u8>> {
        match msg {
            ut_metadata::Message::Data {
                piece,
                total_size,
                data,
            } => match self.assembly.received(peer, piece, total_size, data) {
                Outcome::Verified(info) => return Some(info),
                Outcome::Corrupt(senders) => {
                    for k in senders {
                        self.forget(k, "sent metadata that fails the info hash", true);
                    }
                }
                Outcome::Progress | Outcome::Ignored => self.ask(peer),
            },
            ut_metadata::Message::Reject(piece) => self.assembly.rejected(peer, piece),
            // We have no metadata to give yet.
            ut_metadata::Message::Request(piece) => {
                if let Some(id) = self.peers.get(&peer).and_then(|p| p.ext.ut_metadata) {
                    let payload = ut_metadata::Message::Reject(piece).encode();
                    self.send(peer, Command::Extended { id, payload });
                }
            }
        }
        None
    }
}
