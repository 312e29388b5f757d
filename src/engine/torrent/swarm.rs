//! What a torrent's connections run on, in both of its phases (fetching a
//! magnet link's metadata, then the download): the peer workers' settings,
//! the address book, the event channel they report on, the queue of
//! inbound connections the session routes to us, and the announce thread
//! with its counters. Handing the swarm from one phase to the next keeps
//! every connection.

use super::*;
use crate::engine::session::PeerBudget;

pub(super) struct Swarm {
    pub settings: Settings,
    /// Known addresses, backoff, strikes and bans.
    pub book: AddressBook,
    next_key: PeerKey,
    pub events_tx: Sender<Event>,
    pub events: Receiver<Event>,
    pub reports: Receiver<Report>,
    reports_tx: Sender<Report>,
    /// Inbound connections the session routed to us.
    pub inbound: Receiver<Inbound>,
    /// Where we accept peers, if we do.
    pub listen_addr: Option<SocketAddr>,
    pub announce: Option<announce::Handle>,
    pub counters: Arc<Counters>,
    /// The session's cap on connections of all torrents.
    budget: Arc<crate::engine::session::PeerBudget>,
    /// Under `shoal serve`: when the run goes idle, and its stop flag (the
    /// announcer then belongs to the manager, and outlives the run).
    pub hosting: Option<Hosting>,
}

impl Swarm {
    /// Registers `info_hash` with the session (inbound connections for it
    /// come to us from now on; a `hosted` run's manager has done that)
    /// and learns `opts.peers`.
    pub fn new(
        session: &Session,
        info_hash: InfoHash,
        opts: &Options,
        hosted: Option<Hosted>,
    ) -> Swarm {
        let (events_tx, events) = bounded(EVENT_QUEUE);
        let (reports_tx, reports) = unbounded();
        let mut swarm = Swarm {
            settings: Settings {
                info_hash,
                peer_id: hosted
                    .as_ref()
                    .map_or_else(crate::util::random::peer_id, |h| h.peer_id),
                num_pieces: Arc::default(),
                connect_timeout: Duration::from_secs(5),
                source: opts.source,
                throttles: session.throttles(),
                idle_timeout: Duration::from_secs(180),
                keepalive: Duration::from_secs(120),
                storage: Arc::default(),
                encryption: opts.encryption,
                // Until the torrent says (a private one never uses it).
                dht: session.dht().is_some(),
                buffers: peer::buffer_pool(),
            },
            book: AddressBook::default(),
            next_key: 0,
            events_tx,
            events,
            reports,
            reports_tx,
            inbound: never(),
            listen_addr: session.local_addr(),
            announce: None,
            counters: Arc::new(Counters::default()),
            hosting: None,
            budget: session.peer_budget(),
        };
        match hosted {
            Some(h) => {
                swarm.inbound = h.inbound;
                swarm.reports = h.reports;
                swarm.counters = h.counters;
                swarm.hosting = Some(Hosting {
                    idle_after: h.idle_after,
                    stop: h.stop,
                    announcer: h.announce,
                });
            }
            None => swarm.inbound = session.register(info_hash),
        }
        for &addr in &opts.peers {
            swarm.book.learn(addr, Instant::now(), Source::Given);
        }
        swarm
    }

    /// The port we announce: where we listen, else the configured one.
    pub fn port(&self, opts: &Options) -> u16 {
        self.listen_addr.map_or(opts.port, |a| a.port())
    }

    /// Starts announcing to `trackers` (once).
    pub fn start_announce(&mut self, trackers: Vec<Vec<String>>, opts: &Options) {
        if self.announce.is_some() {
            return;
        }
        if let Some(h) = &self.hosting {
            // The manager's announcer knows the trackers.
            self.announce = Some((h.announcer)());
            return;
        }
        if trackers.is_empty() {
            return;
        }
        let mut config = announce::Config::new(
            trackers,
            self.settings.info_hash,
            self.settings.peer_id,
            self.port(opts),
        );
        config.retry_base = opts.announce_retry;
        config.min_interval = opts.announce_min_interval;
        config.address = self
            .listen_addr
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified());
        let reports = self.reports_tx.clone();
        let handle = announce::spawn(
            config,
            self.counters.clone(),
            Box::new(move |r| {
                let _ = reports.send(r);
            }),
        );
        self.announce = Some(handle);
    }

    /// A key no peer or web seed of this torrent had.
    pub fn new_key(&mut self) -> PeerKey {
        self.next_key += 1;
        self.next_key - 1
    }

    /// Starts a peer's thread running `run`; returns its key and command
    /// queue, or `None` if no thread could be had.
    pub fn start(
        &mut self,
        run: impl FnOnce(PeerKey, Settings, Receiver<Command>, Sender<Event>) + Send + 'static,
    ) -> Option<(PeerKey, Sender<Command>)> {
        let Some(slot) = PeerBudget::take(&self.budget) else {
            log::debug!("no peer slot left in the session");
            return None;
        };
        let key = self.new_key();
        let (tx, rx) = bounded(COMMAND_QUEUE);
        let settings = self.settings.clone();
        let events = self.events_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("peer-{key}"))
            .spawn(move || {
                // Given back when the connection's thread ends.
                let _slot = slot;
                run(key, settings, rx, events)
            });
        match spawned {
            Ok(_) => Some((key, tx)),
            Err(e) => {
                log::warn!("cannot start a peer thread: {e}");
                None
            }
        }
    }

    /// Dials as many known addresses as `peers` leaves room for (and
    /// [`MAX_CONNECTING`] attempts at once); returns the new connections.
    pub fn dial_more(
        &mut self,
        peers: &HashMap<PeerKey, Peer>,
        opts: &Options,
    ) -> Vec<(PeerKey, SocketAddr, Sender<Command>)> {
        let connecting = peers.values().filter(|p| p.socket.is_none()).count();
        let room = opts
            .max_peers
            .saturating_sub(peers.len())
            .min(MAX_CONNECTING.saturating_sub(connecting));
        if room == 0 {
            return Vec::new();
        }
        let connected: Vec<SocketAddr> = peers.values().map(|p| p.addr).collect();
        self.to_dial(room, &connected, opts)
            .into_iter()
            .filter_map(|addr| self.dial(addr).map(|(key, tx)| (key, addr, tx)))
            .collect()
    }

    /// Dials `addr`.
    pub fn dial(&mut self, addr: SocketAddr) -> Option<(PeerKey, Sender<Command>)> {
        let started = self.start(move |key, settings, rx, events| {
            peer::run_outbound(key, addr, settings, rx, events)
        });
        if let Some((key, _)) = &started {
            self.book.dialled(addr, *key);
        }
        started
    }

    /// The address of an inbound connection we may take, unless its IP is
    /// banned or has `--max-peers-per-ip` connections among `peers`
    /// already (said in the log).
    pub fn admissible(
        &self,
        inbound: &Inbound,
        peers: &HashMap<PeerKey, Peer>,
        opts: &Options,
    ) -> Option<SocketAddr> {
        let addr = inbound.stream.peer_addr().ok()?;
        let why = if self.book.ip_banned(addr.ip()) {
            "banned"
        } else if at_ip_limit(addr.ip(), peers.values().map(|p| p.addr), opts) {
            "as many peers from its IP as allowed already"
        } else {
            return Some(addr);
        };
        log::debug!("refusing {addr}: {why}");
        None
    }

    /// Addresses to dial now: `room` at most, none whose IP is at its
    /// limit among `connected`.
    pub fn to_dial(
        &self,
        room: usize,
        connected: &[SocketAddr],
        opts: &Options,
    ) -> Vec<SocketAddr> {
        self.book
            .ready(Instant::now())
            .into_iter()
            .filter(|a| !at_ip_limit(a.ip(), connected.iter().copied(), opts))
            .take(room)
            .collect()
    }

    /// Tells the announce thread whether we could use more peers (it is
    /// told only of changes; `told` is what it was told last).
    pub fn want_peers(&self, want: bool, told: &mut bool) {
        if want != *told {
            *told = want;
            if let Some(a) = &self.announce {
                a.send(announce::Command::WantPeers(want));
            }
        }
    }
}

/// Whether `ip` has `--max-peers-per-ip` connections among `connected`.
fn at_ip_limit(ip: IpAddr, connected: impl Iterator<Item = SocketAddr>, opts: &Options) -> bool {
    let ip = ip.to_canonical();
    connected.filter(|a| a.ip().to_canonical() == ip).count() >= opts.max_peers_per_ip
}
