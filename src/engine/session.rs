//! The session: what the torrents of one process share. Today that is the
//! listening port, TCP and UDP, the DHT node on that UDP port and local
//! service discovery (later also global rate limits and the peer/thread
//! budget).
//!
//! Owns: the [`Listener`], the [`UdpPort`] on the same port (uTP
//! connections, whose streams go to the listener's greeters like TCP
//! ones, or refusals with `--utp off`; and the DHT node, whose [`Dht`] handle torrents use), the
//! inbound encryption policy, the [`Lsd`] service (BEP 14) and the routing
//! tables from info hash to the torrent serving it: inbound connections,
//! and the addresses local discovery hears (for torrents that asked for
//! them with [`Session::discover_locally`]; others' are dropped). An inbound connection
//! goes to the torrent named by the info hash in its handshake; one naming
//! a torrent we do not serve is closed before we say anything (an MSE one
//! before the encryption handshake completes: its obfuscated info hash is
//! checked against the table's). Does not own: any torrent's state (each
//! torrent's orchestrator takes its connections from the queue it got
//! from [`Session::register`] and decides on them).

use crate::net::dht::{self, Dht};
use crate::net::listener::{Listener, Route};
use crate::net::lsd::{self, Lsd};
use crate::net::peer::{Admission, Encryption, Inbound};
use crate::net::throttle::Throttles;
use crate::net::udp_port::UdpPort;
use crate::net::utp::Accept;
use crate::proto::metainfo::InfoHash;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Inbound connections waiting for one torrent at most; beyond, new ones
/// are closed (the torrent is not keeping up, or is full).
const INBOUND_QUEUE: usize = 16;
/// Addresses heard by local discovery waiting for one torrent at most;
/// beyond, they are dropped (the torrent hears them again later).
const LOCAL_QUEUE: usize = 64;

type Routes = Mutex<HashMap<InfoHash, Sender<Inbound>>>;
type LocalRoutes = Mutex<HashMap<InfoHash, Sender<SocketAddr>>>;

pub struct Session {
    routes: Arc<Routes>,
    listener: Option<Listener>,
    /// Accepts uTP (or refuses it) and runs the DHT node (on the
    /// listener's port).
    udp: Option<UdpPort>,
    /// Rate limits shared by every torrent's peers.
    throttles: Throttles,
    lsd: Option<Lsd>,
    local: Arc<LocalRoutes>,
    /// Peer connections of all torrents together.
    budget: Arc<PeerBudget>,
}

/// A cap on the peer connections of all of a session's torrents together
/// (`shoal serve --max-peers-total`); each torrent's own `--max-peers`
/// applies beneath it.
#[derive(Debug)]
pub struct PeerBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

/// One connection's share of the [`PeerBudget`], given back when dropped.
pub struct PeerSlot(Arc<PeerBudget>);

impl PeerBudget {
    /// A slot, if the cap leaves room.
    pub fn take(budget: &Arc<PeerBudget>) -> Option<PeerSlot> {
        use std::sync::atomic::Ordering;
        budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < budget.limit).then_some(n + 1)
            })
            .ok()?;
        Some(PeerSlot(Arc::clone(budget)))
    }

    /// Connections holding a slot now.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        self.0
            .used
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Where local service discovery runs: each family's group, on which
/// interface; `None` for a family that is off (we do not listen on it, or
/// its socket could not be made: that was logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsdOn {
    /// The IPv4 group's interface, by its address (unspecified: the one
    /// the kernel routes multicast through).
    pub v4: Option<Ipv4Addr>,
    /// The IPv6 group's interface, by its index (0: the kernel's choice).
    pub v6: Option<u32>,
}

impl fmt::Display for LsdOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(ip) = self.v4 {
            write!(f, "{} on {ip}", crate::proto::lsd::GROUP_V4)?;
            sep = " and ";
        }
        match self.v6 {
            Some(0) => write!(f, "{sep}{} on any interface", crate::proto::lsd::GROUP_V6),
            Some(i) => write!(f, "{sep}{} on interface {i}", crate::proto::lsd::GROUP_V6),
            None => Ok(()),
        }
    }
}

/// Why local service discovery does not run.
#[derive(Debug)]
pub enum LsdOff {
    /// We accept no peers (`--no-listen`): there is no port to announce.
    NotListening,
    /// We listen on a loopback address, which nobody on the LAN can dial.
    Loopback,
    /// No multicast socket could be made for any family we listen on (no
    /// multicast route, no IPv6 on the host, the group cannot be joined,
    /// ...): each family's error, `None` for a family we do not listen on.
    Socket {
        v4: Option<io::Error>,
        v6: Option<io::Error>,
    },
    /// Its thread could not be started (out of threads or memory).
    Thread(io::Error),
}

impl fmt::Display for LsdOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::disk::sys::io_reason;
        match self {
            LsdOff::NotListening => f.write_str("not listening for peers"),
            LsdOff::Loopback => f.write_str("listening on loopback only"),
            LsdOff::Socket { v4, v6 } => match (v4, v6) {
                (Some(a), Some(b)) => {
                    write!(f, "IPv4: {}; IPv6: {}", io_reason(a), io_reason(b))
                }
                (Some(e), None) | (None, Some(e)) => f.write_str(&io_reason(e)),
                (None, None) => f.write_str("no address family to run on"),
            },
            LsdOff::Thread(e) => write!(f, "starting its thread: {}", io_reason(e)),
        }
    }
}

impl Session {
    /// A session accepting peers on `listen` (`None`: accepting none),
    /// plaintext or encrypted as `encryption` says, with a DHT node if
    /// `dht` is given (on the listener's UDP port, or any port when not
    /// listening).
    pub fn new(
        listen: Option<SocketAddr>,
        encryption: Encryption,
        dht: Option<dht::Config>,
    ) -> io::Result<Session> {
        Session::with_utp(listen, encryption, dht, true)
    }

    /// [`Session::new`], accepting uTP connections on the listener's UDP
    /// port if `utp` (they take the same path as TCP ones: the greeter,
    /// then the torrent their handshake names); else uTP SYNs get a reset,
    /// so uTP-first clients dial TCP at once.
    pub fn with_utp(
        listen: Option<SocketAddr>,
        encryption: Encryption,
        dht: Option<dht::Config>,
        utp: bool,
    ) -> io::Result<Session> {
        let routes: Arc<Routes> = Arc::default();
        let listener = match listen {
            Some(addr) => {
                let routing = Arc::clone(&routes);
                let route: Arc<Route> = Arc::new(move |inbound| deliver(&routing, inbound));
                let known = Arc::clone(&routes);
                let admission = Arc::new(Admission {
                    encryption,
                    info_hashes: Box::new(move || lock(&known).keys().map(|h| h.0).collect()),
                });
                Some(Listener::start(addr, admission, route)?)
            }
            None => None,
        };
        let udp_addr = match (&listener, &dht) {
            (Some(l), _) => Some(l.local_addr),
            (None, Some(_)) => Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            (None, None) => None,
        };
        // Without the UDP port (taken by another program) uTP-first
        // clients still reach us, after their own timeout, but there is
        // no DHT.
        let accept = match (&listener, utp) {
            (Some(l), true) => {
                let greeter = l.greeter();
                let accept: Accept = Box::new(move |s| greeter.greet(s.into()));
                Some(accept)
            }
            _ => None,
        };
        let udp = udp_addr.and_then(|addr| {
            UdpPort::start_with_utp(addr, dht, accept)
                .map_err(|e| log::warn!("no UDP (uTP, DHT) on {addr}: {e}"))
                .ok()
        });
        Ok(Session {
            routes,
            listener,
            udp,
            throttles: Throttles::default(),
            lsd: None,
            local: Arc::default(),
            budget: Arc::new(PeerBudget {
                limit: usize::MAX,
                used: Default::default(),
            }),
        })
    }

    /// Limits the whole session's download and upload to these many bytes
    /// per second (`None`: unlimited). Applies to peers started after.
    pub fn limit_rates(&mut self, down: Option<u64>, up: Option<u64>) {
        self.throttles = Throttles::new(down, up);
    }

    /// Caps the peer connections of all torrents together. Applies to
    /// torrents started after.
    pub fn limit_peers(&mut self, limit: usize) {
        self.budget = Arc::new(PeerBudget {
            limit,
            used: Default::default(),
        });
    }

    pub fn peer_budget(&self) -> Arc<PeerBudget> {
        Arc::clone(&self.budget)
    }

    pub fn throttles(&self) -> Throttles {
        self.throttles.clone()
    }

    /// The DHT node, if it runs.
    pub fn dht(&self) -> Option<&Dht> {
        self.udp.as_ref().and_then(UdpPort::dht)
    }

    /// Starts local service discovery (BEP 14), announcing our listening
    /// port on the group of each family we listen on — IPv4 for an IPv4
    /// address, IPv6 for an IPv6 one, both for `[::]` — on the interface
    /// of the listener's address (an unspecified one: the interface the
    /// kernel routes multicast through). A family whose socket cannot be
    /// made is logged and left out; an error only if none runs.
    pub fn start_lsd(&mut self) -> Result<LsdOn, LsdOff> {
        let addr = self.local_addr().ok_or(LsdOff::NotListening)?;
        // `::ffff:127.0.0.1` is loopback too.
        if addr.ip().to_canonical().is_loopback() {
            return Err(LsdOff::Loopback);
        }
        let (want_v4, want_v6) = match addr {
            SocketAddr::V4(a) => (Some(*a.ip()), None),
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                (Some(Ipv4Addr::UNSPECIFIED), Some(Ok(0)))
            }
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(ip) => (Some(ip), None),
                // A link-local address names its interface already.
                None if a.scope_id() != 0 => (None, Some(Ok(a.scope_id()))),
                None => (None, Some(crate::disk::sys::interface_index(*a.ip()))),
            },
        };
        let mut groups = Vec::new();
        let (v4, v4_err) = join(want_v4.map(Ok), lsd::Group::v4, &mut groups);
        let (v6, v6_err) = join(want_v6, lsd::Group::v6, &mut groups);
        if groups.is_empty() {
            return Err(LsdOff::Socket {
                v4: v4_err,
                v6: v6_err,
            });
        }
        for (family, e) in [("IPv4", v4_err), ("IPv6", v6_err)] {
            if let Some(e) = e {
                let reason = crate::disk::sys::io_reason(&e);
                log::info!("no local discovery over {family}: {reason}");
            }
        }
        let local = Arc::clone(&self.local);
        let deliver = Box::new(move |hash: InfoHash, peer: SocketAddr| {
            let Some(tx) = lock(&local).get(&hash).cloned() else {
                log::debug!("lsd: {peer} announced {}, not ours", hash.hex());
                return;
            };
            if tx.try_send(peer).is_err() {
                log::debug!("lsd: torrent {} is not taking addresses", hash.hex());
            }
        });
        let lsd = Lsd::start(groups, addr.port(), deliver).map_err(LsdOff::Thread)?;
        self.lsd = Some(lsd);
        Ok(LsdOn { v4, v6 })
    }

    /// Announces `info_hash` on the LAN and routes the addresses heard for
    /// it to the returned queue, until [`Session::unregister`]. `None`
    /// when local discovery is off.
    pub fn discover_locally(&self, info_hash: InfoHash) -> Option<Receiver<SocketAddr>> {
        let lsd = self.lsd.as_ref()?;
        let (tx, rx) = bounded(LOCAL_QUEUE);
        lock(&self.local).insert(info_hash, tx);
        lsd.announce(info_hash);
        Some(rx)
    }

    /// Where we accept peers, if we do.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(|l| l.local_addr)
    }

    /// Routes connections for `info_hash` to the returned queue, until
    /// [`Session::unregister`] (or the queue's receiver is dropped).
    pub fn register(&self, info_hash: InfoHash) -> Receiver<Inbound> {
        let (tx, rx) = bounded(INBOUND_QUEUE);
        lock(&self.routes).insert(info_hash, tx);
        rx
    }

    /// Routes connections for `info_hash` to `queue`, shared with other
    /// torrents (`shoal serve` wakes idle torrents this way).
    pub fn route_to(&self, info_hash: InfoHash, queue: Sender<Inbound>) {
        lock(&self.routes).insert(info_hash, queue);
    }

    /// Hands a connection to the torrent its handshake names, as if it
    /// had just come in.
    pub fn deliver(&self, inbound: Inbound) {
        deliver(&self.routes, inbound);
    }

    pub fn unregister(&self, info_hash: &InfoHash) {
        lock(&self.routes).remove(info_hash);
        if lock(&self.local).remove(info_hash).is_some() {
            if let Some(lsd) = &self.lsd {
                lsd.withdraw(*info_hash);
            }
        }
    }
}

/// One family's LSD group, if `want`ed (on the interface it names, or
/// the error finding it): made and added to `groups` (its interface
/// returned), or its error.
fn join<I: Copy>(
    want: Option<io::Result<I>>,
    make: impl FnOnce(I) -> io::Result<lsd::Group>,
    groups: &mut Vec<lsd::Group>,
) -> (Option<I>, Option<io::Error>) {
    match want.map(|w| w.and_then(|i| Ok((make(i)?, i)))) {
        Some(Ok((group, interface))) => {
            groups.push(group);
            (Some(interface), None)
        }
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    }
}

fn lock<T>(table: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change leaves a table valid, so a poisoned lock is usable.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands a connection to its torrent without blocking; anything else
/// closes it (dropping the stream) without a reply.
fn deliver(routes: &Routes, inbound: Inbound) {
    let hash = InfoHash(inbound.theirs.info_hash);
    let Some(tx) = lock(routes).get(&hash).cloned() else {
        log::debug!("inbound connection for unknown torrent {}", hash.hex());
        return;
    };
    match tx.try_send(inbound) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => log::debug!("torrent {} is not accepting", hash.hex()),
        Err(TrySendError::Disconnected(_)) => {
            let mut t = lock(routes);
            if t.get(&hash).is_some_and(|s| s.same_channel(&tx)) {
                t.remove(&hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mse::{self, Method, Methods, Step};
    use crate::proto::wire::{Handshake, HANDSHAKE_LEN};
    use crate::util::testutil::within;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// Whether the other side closed `s` without sending a byte (a reset
    /// counts too; a timeout does not).
    fn closed_silently(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        match s.read(&mut [0u8; HANDSHAKE_LEN]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    fn dial(addr: SocketAddr, info_hash: [u8; 20]) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&Handshake::new(info_hash, [7; 20], [0; 8]).encode())
            .unwrap();
        s
    }

    /// Each connection reaches the torrent its handshake names; one for an
    /// unknown torrent is closed without a byte of reply.
    #[test]
    fn inbound_connections_are_routed_by_info_hash() {
        within(|| {
            let session = Session::new(
                Some("127.0.0.1:0".parse().unwrap()),
                Encryption::Prefer,
                None,
            )
            .unwrap();
            let addr = session.local_addr().unwrap();
            let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
            let (to_a, to_b) = (session.register(a), session.register(b));
            let _x = dial(addr, b.0);
            let _y = dial(addr, a.0);
            let got_b = to_b.recv().unwrap();
            let got_a = to_a.recv().unwrap();
            assert_eq!(got_a.theirs.info_hash, a.0);
            assert_eq!(got_b.theirs.info_hash, b.0);
            let mut stranger = dial(addr, [9; 20]);
            assert!(closed_silently(&mut stranger), "closed, no reply");
            session.unregister(&a);
            let mut closed = dial(addr, a.0);
            assert!(closed_silently(&mut closed), "unregistered");
            assert!(to_a.try_recv().is_err());
        });
    }

    /// Dials with MSE offering both methods, our handshake as initial
    /// payload; returns the stream and the method, or `None` if the
    /// listener gave up on us.
    fn dial_encrypted(addr: SocketAddr, info_hash: [u8; 20]) -> (TcpStream, Option<Method>) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let ia = Handshake::new(info_hash, [7; 20], [0; 8]).encode();
        let random = &mut crate::util::random::fill;
        let mut hs = mse::Handshake::initiator(info_hash, Methods::BOTH, &ia, random);
        let mut buf = [0u8; 1024];
        let mut n = 0;
        loop {
            match hs.feed(&buf[..n]) {
                Ok(Step::Continue(next)) => hs = *next,
                Ok(Step::Done(done)) => return (s, Some(done.method)),
                Err(_) => return (s, None),
            }
            if s.write_all(&hs.take_output()).is_err() {
                return (s, None);
            }
            n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return (s, None),
                Ok(n) => n,
            };
        }
    }

    /// The greeter tells MSE from plaintext: an MSE connection reaches the
    /// torrent its obfuscated info hash names (its stream plaintext under
    /// `prefer` when the dialler offers both, like libtorrent's); one for
    /// a torrent we do not serve is dropped during MSE. `off` drops every
    /// MSE connection, `require` every plaintext one.
    #[test]
    fn encrypted_connections_are_routed_and_policies_refuse() {
        within(|| {
            let local = Some("127.0.0.1:0".parse().unwrap());
            let session = Session::new(local, Encryption::Prefer, None).unwrap();
            let addr = session.local_addr().unwrap();
            let (a, b) = (InfoHash([1; 20]), InfoHash([2; 20]));
            let (_to_a, to_b) = (session.register(a), session.register(b));
            let (_s, method) = dial_encrypted(addr, b.0);
            assert_eq!(method, Some(Method::Plaintext));
            let got = to_b.recv().unwrap();
            assert_eq!(got.theirs.info_hash, b.0);
            assert!(!got.transport.is_encrypted());
            assert_eq!(dial_encrypted(addr, [9; 20]).1, None, "unknown torrent");

            let off = Session::new(local, Encryption::Off, None).unwrap();
            let _queue = off.register(a);
            assert_eq!(dial_encrypted(off.local_addr().unwrap(), a.0).1, None);

            let require = Session::new(local, Encryption::Require, None).unwrap();
            let _queue = require.register(a);
            let mut plain = dial(require.local_addr().unwrap(), a.0);
            assert!(closed_silently(&mut plain), "plaintext under require");
        });
    }

    /// Local discovery announces our port to the LAN: never one nobody
    /// there could dial (and no test on loopback multicasts on the
    /// machine's network).
    #[test]
    fn local_discovery_is_off_where_the_lan_cannot_dial_us() {
        for listen in ["127.0.0.1:0", "[::1]:0", "[::ffff:127.0.0.1]:0"] {
            let mut session = Session::new(Some(listen.parse().unwrap()), Encryption::Prefer, None);
            let Ok(session) = session.as_mut() else {
                continue; // no IPv6 here
            };
            assert!(matches!(session.start_lsd(), Err(LsdOff::Loopback)));
            assert!(session.discover_locally(InfoHash([1; 20])).is_none());
        }
        let mut session = Session::new(None, Encryption::Prefer, None).unwrap();
        assert!(matches!(session.start_lsd(), Err(LsdOff::NotListening)));
    }

    /// What the log says about where local discovery runs, or why not.
    #[test]
    fn where_local_discovery_runs_reads_well() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        let on = [
            (Some(ip), None, "239.192.152.143:6771 on 10.0.0.1"),
            (None, Some(3), "[ff15::efc0:988f]:6771 on interface 3"),
            (
                Some(Ipv4Addr::UNSPECIFIED),
                Some(0),
                "239.192.152.143:6771 on 0.0.0.0 and [ff15::efc0:988f]:6771 on any interface",
            ),
        ];
        for (v4, v6, want) in on {
            assert_eq!(LsdOn { v4, v6 }.to_string(), want);
        }
        let err = || io::Error::from_raw_os_error(libc::ENODEV);
        let off = [
            (Some(err()), None, "No such device"),
            (
                Some(err()),
                Some(err()),
                "IPv4: No such device; IPv6: No such device",
            ),
        ];
        for (v4, v6, want) in off {
            assert_eq!(LsdOff::Socket { v4, v6 }.to_string(), want);
        }
    }

    /// The session's peer cap is shared: slots run out at the limit and
    /// come back when connections end.
    #[test]
    fn peer_slots_are_capped_and_given_back() {
        let mut session = Session::new(None, Encryption::Prefer, None).unwrap();
        session.limit_peers(2);
        let budget = session.peer_budget();
        let a = PeerBudget::take(&budget).unwrap();
        let _b = PeerBudget::take(&budget).unwrap();
        assert!(PeerBudget::take(&budget).is_none());
        assert_eq!(budget.used(), 2);
        drop(a);
        assert!(PeerBudget::take(&budget).is_some());
    }

    /// A torrent that takes no connections (its queue full) costs the
    /// newcomers their connection, never a blocked listener: dropping the
    /// session returns at once.
    #[test]
    fn a_full_torrent_queue_never_blocks_the_listener() {
        within(|| {
            let session = Session::new(
                Some("127.0.0.1:0".parse().unwrap()),
                Encryption::Prefer,
                None,
            )
            .unwrap();
            let addr = session.local_addr().unwrap();
            let hash = InfoHash([3; 20]);
            let queue = session.register(hash);
            let clients: Vec<TcpStream> =
                (0..INBOUND_QUEUE + 4).map(|_| dial(addr, hash.0)).collect();
            while queue.len() < INBOUND_QUEUE {
                std::thread::yield_now();
            }
            drop(session);
            drop((queue, clients));
        });
    }
}
