//! Local Service Discovery (BEP 14): hosts on one LAN find each other
//! with no tracker, by multicasting `BT-SEARCH` announces
//! ([`crate::proto::lsd`]) to 239.192.152.143:6771.
//!
//! Owns: one UDP socket on the group (TTL 1: the LAN only; loopback on:
//! two processes on one host hear each other) and its thread, which
//! announces each torrent it is given when it is given and every
//! [`INTERVAL`], and reads the announces of others. It announces a torrent
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

use crate::proto::lsd::{Announce, GROUP_V4, MAX_DATAGRAM, MAX_INFOHASHES};
use crate::proto::metainfo::InfoHash;
use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
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
/// first announce and of stopping.
const WAKE: Duration = Duration::from_millis(200);

/// Where a heard address goes: the torrent named and the peer's address
/// (the sender's IP, the port it announced).
pub type Deliver = Box<dyn Fn(InfoHash, SocketAddr) + Send>;

enum Command {
    Announce(InfoHash),
    Withdraw(InfoHash),
}

/// The running service; dropping it stops the thread.
pub struct Lsd {
    commands: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Lsd {
    /// Joins the group on `interface` (unspecified: the one the kernel
    /// routes multicast through) and announces `port`, our listening port.
    pub fn start(interface: Ipv4Addr, port: u16, deliver: Deliver) -> io::Result<Lsd> {
        let socket = crate::disk::sys::multicast_socket_v4(GROUP_V4, interface)?;
        socket.join_multicast_v4(GROUP_V4.ip(), &interface)?;
        socket.set_multicast_ttl_v4(1)?;
        socket.set_multicast_loop_v4(true)?;
        socket.set_read_timeout(Some(WAKE))?;
        let mut cookie = [0u8; 8];
        crate::util::random::fill(&mut cookie);
        let service = Service {
            socket,
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
    socket: UdpSocket,
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
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.heard(&buf[..n], from),
                Err(e) if crate::disk::sys::is_wait_over(&e) => {}
                // ICMP errors and the like: nothing to do but go on.
                Err(e) => log::debug!("lsd: {e}"),
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
            let datagram = Announce {
                port: self.port,
                info_hashes: batch.to_vec(),
                cookie: Some(self.cookie.clone()),
            }
            .build();
            if let Err(e) = self.socket.send_to(&datagram, GROUP_V4) {
                log::info!("lsd: announcing: {e}");
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
        let peer = SocketAddr::new(from.ip(), announce.port);
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
