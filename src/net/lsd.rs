//! Local Service Discovery (BEP 14): hosts on one LAN find each other
//! with no tracker, by multicasting `BT-SEARCH` announces
//! ([`crate::proto::lsd`]) to 239.192.152.143:6771 and, over IPv6, to
//! `[ff15::efc0:988f]:6771`.
//!
//! Owns: a UDP socket on each group it is given ([`Group`]: TTL/hop limit
//! 1, the LAN only; loopback on: two processes on one host hear each
//! other) and one thread for them all, which announces each torrent it is
//! given on every group when it is given and every [`INTERVAL`], and reads
//! the announces of others on each. An announce heard over IPv6 gives an
//! IPv6 peer address (the sender's, with the port it announced; a
//! link-local one keeps its interface). It announces a torrent
//! at most once per [`MIN_GAP`] (BEP 14's limit); an announce from a
//! stranger for one of our torrents brings ours forward to then, so two
//! hosts learn each other in one exchange, not one interval.
//!
//! Incoming datagrams are hostile: our own (recognised by the cookie) and
//! unparsable ones are dropped, each source IP gets at most
//! [`PER_SOURCE_PER_SECOND`] datagrams handled (a flood costs the sender
//! its own announces), sources are tracked up to [`MAX_SOURCES`], and an
//! announce yields one address per distinct info hash (at most
//! [`crate::proto::lsd::MAX_INFOHASHES`]). Does not own: which torrents
//! exist or what an address is worth — `deliver` (the session) routes it
//! to the torrent, or drops it for a torrent we do not have.

use crate::proto::lsd::{Announce, GROUP_V4, GROUP_V6, MAX_DATAGRAM, MAX_INFOHASHES};
use crate::proto::metainfo::InfoHash;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often each torrent is announced (BEP 14 leaves it to the client;
/// libtorrent uses 5 minutes).
pub const INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A torrent is announced at most once per this.
pub const MIN_GAP: Duration = Duration::from_secs(60);
/// Datagrams handled per source IP and second at most.
pub const PER_SOURCE_PER_SECOND: u32 = 10;
/// Source IPs whose rate is tracked at most; a newcomer beyond them is
/// ignored until a second-old entry makes room.
pub const MAX_SOURCES: usize = 256;
/// The thread looks at its commands at least this often: the delay of a
/// first announce and of stopping. Each socket's read waits half of it,
/// so that a round over both groups takes no longer.
const WAKE: Duration = Duration::from_millis(200);

/// Where a heard address goes: the torrent named and the peer's address
/// (the sender's IP, the port it announced).
pub type Deliver = Box<dyn Fn(InfoHash, SocketAddr) + Send>;

enum Command {
    Announce(InfoHash),
    Withdraw(InfoHash),
}

/// One multicast group, joined: a socket of its own and where to send.
pub struct Group {
    socket: UdpSocket,
    addr: SocketAddr,
}

impl Group {
    /// The IPv4 group on the interface with the address `interface`
    /// (unspecified: the one the kernel routes multicast through).
    pub fn v4(interface: Ipv4Addr) -> io::Result<Group> {
        let socket = crate::disk::sys::multicast_socket_v4(GROUP_V4, interface)?;
        Group::new(socket, GROUP_V4.into())
    }

    /// The IPv6 group on the interface with the index `interface` (0: the
    /// one the kernel routes multicast through).
    pub fn v6(interface: u32) -> io::Result<Group> {
        let socket = crate::disk::sys::multicast_socket_v6(GROUP_V6, interface)?;
        Group::new(socket, GROUP_V6.into())
    }

    fn new(socket: UdpSocket, addr: SocketAddr) -> io::Result<Group> {
        socket.set_read_timeout(Some(WAKE / 2))?;
        Ok(Group { socket, addr })
    }
}

/// The running service; dropping it stops the thread.
pub struct Lsd {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Lsd {
    /// Announces `port`, our listening port, on `groups` (one or both
    /// families) and hears theirs, on one thread. Fails only if the
    /// thread cannot be started.
    pub fn start(groups: Vec<Group>, port: u16, deliver: Deliver) -> io::Result<Lsd> {
        let mut cookie = [0u8; 8];
        crate::util::random::fill(&mut cookie);
        let service = Service {
            groups,
            port,
            cookie: crate::util::hex::encode(&cookie),
            deliver,
            next: HashMap::new(),
            last: HashMap::new(),
            sources: Sources::default(),
        };
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("lsd".into())
            .spawn(move || service.run(&rx))?;
        Ok(Lsd {
            commands: Some(tx),
            thread: Some(thread),
        })
    }

    /// Announces `info_hash` from now on (at once, then every [`INTERVAL`]).
    pub fn announce(&self, info_hash: InfoHash) {
        self.send(Command::Announce(info_hash));
    }

    /// Stops announcing `info_hash`.
    pub fn withdraw(&self, info_hash: InfoHash) {
        self.send(Command::Withdraw(info_hash));
    }

    fn send(&self, command: Command) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(command);
        }
    }
}

impl Drop for Lsd {
    /// The thread sees its commands disconnected within [`WAKE`].
    fn drop(&mut self) {
        self.commands = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Service {
    groups: Vec<Group>,
    port: u16,
    cookie: String,
    deliver: Deliver,
    /// Torrents we announce, and when next.
    next: HashMap<InfoHash, Instant>,
    /// When each was last announced.
    last: HashMap<InfoHash, Instant>,
    sources: Sources,
}

impl Service {
    fn run(mut self, commands: &Receiver<Command>) {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Announce(h)) => {
                        self.next.insert(h, Instant::now());
                    }
                    Ok(Command::Withdraw(h)) => {
                        self.next.remove(&h);
                        self.last.remove(&h);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.announce_due();
            for i in 0..self.groups.len() {
                match self.groups[i].socket.recv_from(&mut buf) {
                    Ok((n, from)) => self.heard(&buf[..n], from),
                    Err(e) if crate::disk::sys::is_wait_over(&e) => {}
                    // ICMP errors and the like: nothing to do but go on.
                    Err(e) => log::debug!("lsd: {e}"),
                }
            }
        }
    }

    /// Sends one announce for every torrent that is due (several info
    /// hashes to a datagram).
    fn announce_due(&mut self) {
        let now = Instant::now();
        let due: Vec<InfoHash> = self
            .next
            .iter()
            .filter(|(_, &at)| at <= now)
            .map(|(h, _)| *h)
            .collect();
        for batch in due.chunks(MAX_INFOHASHES) {
            let announce = Announce {
                port: self.port,
                info_hashes: batch.to_vec(),
                cookie: Some(self.cookie.clone()),
            };
            for g in &self.groups {
                if let Err(e) = g.socket.send_to(&announce.build(g.addr), g.addr) {
                    log::info!("lsd: announcing to {}: {e}", g.addr);
                }
            }
        }
        for h in due {
            self.next.insert(h, now + INTERVAL);
            self.last.insert(h, now);
        }
    }

    fn heard(&mut self, datagram: &[u8], from: SocketAddr) {
        if !self.sources.admit(from.ip(), Instant::now()) {
            return;
        }
        let announce = match Announce::parse(datagram) {
            Ok(a) => a,
            Err(e) => {
                log::debug!("lsd: from {from}: {e}");
                return;
            }
        };
        if announce.cookie.as_deref() == Some(self.cookie.as_str()) {
            return;
        }
        let peer = peer_address(from, announce.port);
        let mut hashes = announce.info_hashes;
        hashes.sort_unstable();
        hashes.dedup();
        for h in hashes {
            // Ours: answer with our own announce as soon as MIN_GAP allows.
            if let (Some(next), Some(last)) = (self.next.get_mut(&h), self.last.get(&h)) {
                *next = (*next).min(*last + MIN_GAP);
            }
            (self.deliver)(h, peer);
        }
    }
}

/// Where the sender of an announce from `from` takes connections: its
/// address, with the port it announced. A link-local IPv6 sender keeps
/// its interface (the scope id), without which it cannot be dialled; the
/// flow label is the sender's business, not ours to send back.
fn peer_address(from: SocketAddr, port: u16) -> SocketAddr {
    match from {
        SocketAddr::V4(a) => SocketAddr::new(IpAddr::V4(*a.ip()), port),
        SocketAddr::V6(a) => SocketAddrV6::new(*a.ip(), port, 0, a.scope_id()).into(),
    }
}

/// Datagrams handled per source IP in the current second.
#[derive(Default)]
struct Sources {
    seen: HashMap<IpAddr, (Instant, u32)>,
}

impl Sources {
    /// Whether a datagram from `ip` at `now` is within its budget.
    fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        let second = Duration::from_secs(1);
        if !self.seen.contains_key(&ip) && self.seen.len() >= MAX_SOURCES {
            self.seen.retain(|_, (start, _)| now - *start < second);
            if self.seen.len() >= MAX_SOURCES {
                return false;
            }
        }
        let (start, count) = self.seen.entry(ip).or_insert((now, 0));
        if now - *start >= second {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= PER_SOURCE_PER_SECOND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Heard on either group: the sender's address with the announced
    /// port, a link-local one still naming its interface.
    #[test]
    fn an_announce_gives_the_senders_address_with_its_port() {
        let v6 = |ip: &str, port, flow, scope| {
            SocketAddr::from(SocketAddrV6::new(ip.parse().unwrap(), port, flow, scope))
        };
        let table = [
            (
                SocketAddr::from(([10, 0, 0, 7], 6771)),
                6881,
                SocketAddr::from(([10, 0, 0, 7], 6881)),
            ),
            (
                v6("fd77:1::2", 6771, 0, 0),
                51413,
                v6("fd77:1::2", 51413, 0, 0),
            ),
            (
                v6("fe80::1", 6771, 0xbeef, 3),
                7000,
                v6("fe80::1", 7000, 0, 3),
            ),
        ];
        for (from, port, want) in table {
            assert_eq!(peer_address(from, port), want, "{from}");
        }
    }

    #[test]
    fn a_source_gets_its_budget_per_second_and_no_more() {
        let mut s = Sources::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| s.admit(a, t0)).count();
        assert_eq!(admitted, PER_SOURCE_PER_SECOND as usize);
        assert!(s.admit(b, t0), "another source is not affected");
        assert!(s.admit(a, t0 + Duration::from_secs(1)), "a new second");
    }

    #[test]
    fn sources_are_bounded_and_stale_ones_make_room() {
        let mut s = Sources::default();
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert!(s.admit(IpAddr::from(i.to_be_bytes()), t0));
        }
        let newcomer = IpAddr::from([192, 168, 1, 1]);
        assert!(!s.admit(newcomer, t0), "full: a newcomer waits");
        assert!(s.admit(newcomer, t0 + Duration::from_secs(1)));
        assert!(s.seen.len() <= MAX_SOURCES);
    }
}
