//! uTP on the peer port (BEP 29): the multiplexer that the UDP port
//! thread ([`crate::net::udp_port`]) runs. A datagram that decodes as uTP
//! goes to the connection keyed by (sender, connection id); a SYN makes a
//! new connection, which is handed on as a [`UtpStream`] (to the same
//! greeter as an inbound TCP connection) once the peer's first packet
//! after the SYN shows it is real.
//!
//! Owns: the table of connections, their timers (run every tick of the
//! UDP thread) and the caps that keep a SYN flood and a greedy host
//! bounded: at most [`MAX_HALF_OPEN`] connections not yet established,
//! [`MAX_PER_IP`] from one address and [`MAX_CONNECTIONS`] in all (each
//! holds at most 1 MiB to send and 1 MiB received, 2 MiB at worst when
//! the packet that fills a gap releases the early ones behind it: 768 MiB
//! in all at worst). With the half-open slots full, the oldest half-open connection
//! makes room (a trickle of spoofed SYNs cannot keep real ones out); a
//! SYN over the other caps is left to the refuser, which resets it at a
//! bounded rate. Our initial sequence number is a keyed hash, and a
//! half-open connection that refuses [`MAX_STRIKES`] packets is
//! forgotten: an ack that proves the dialler's address cannot be
//! guessed. Does not own: the socket
//! (the UDP thread's; connections send on a clone of it) or what a
//! connection carries.

mod stream;
#[cfg(test)]
mod tests;

pub use stream::UtpStream;

use crate::proto::utp::{packet, Config, Connection, State};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;
use stream::Shared;

/// Connections that sent a SYN and nothing since, at most: a spoofed
/// flood fills these and nothing else (each lasts the connect timeout).
pub const MAX_HALF_OPEN: usize = 64;
/// uTP connections at once, at most (the peer caps apply above this).
pub const MAX_CONNECTIONS: usize = 256;
/// uTP connections from one IP address at most (shoal's own peer cap per
/// address is 8 by default; the margin is for connections closing).
pub const MAX_PER_IP: usize = 16;

/// Packets refused by a connection not yet established before it is
/// forgotten: our sequence number is secret, so a spoofer guessing the
/// ack that proves its address gets this many tries per SYN.
const MAX_STRIKES: u8 = 4;

/// What receives a new inbound connection; it must not block.
pub type Accept = Box<dyn Fn(UtpStream) + Send>;

struct Entry {
    shared: Arc<Shared>,
    /// Handed to `accept` (established).
    handed: bool,
    /// We closed it because every handle was dropped.
    released: bool,
    /// When its SYN came (the oldest half-open one makes room for a new).
    opened: Instant,
    /// Packets it refused while half-open.
    strikes: u8,
}

pub struct Mux {
    socket: UdpSocket,
    accept: Accept,
    epoch: Instant,
    config: Config,
    conns: HashMap<(SocketAddr, u16), Entry>,
    /// Our initial sequence numbers: a keyed hash (SipHash, a random key
    /// per process) of the SYN and a counter, which a peer that sees its
    /// own cannot use to predict another's (a plain PRNG's output can be
    /// solved for its state).
    secret: RandomState,
    syns: u64,
}

impl Mux {
    /// Serves uTP on `socket` (a clone of the UDP thread's), handing new
    /// connections to `accept`.
    pub fn new(socket: UdpSocket, accept: Accept, now: Instant) -> Mux {
        Mux {
            socket,
            accept,
            epoch: now,
            config: Config::default(),
            conns: HashMap::new(),
            secret: RandomState::new(),
            syns: 0,
        }
    }

    /// Live connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Takes `datagram` if it is uTP for us (true); a SYN over the caps,
    /// or anything not uTP, is left to the caller (false).
    pub fn receive(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) -> bool {
        let Ok(p) = packet::decode(datagram) else {
            return false;
        };
        let h = p.header;
        let key = match h.kind {
            packet::Kind::Syn => (from, h.connection_id.wrapping_add(1)),
            _ => (from, h.connection_id),
        };
        let entry = match self.conns.get_mut(&key) {
            Some(e) => e,
            None if h.kind == packet::Kind::Syn => return self.open(&h, key, now),
            // Not ours (a connection we forgot): dropped, as libutp does
            // for anything but a SYN.
            None => return true,
        };
        let (connected, refused) = {
            let mut inner = entry.shared.lock();
            let refused = inner.conn.handle(&p, now).map_err(|e| {
                log::debug!("utp {from}: {e}");
            });
            entry.shared.flush(&mut inner, now);
            entry.shared.wake_waiters(&inner);
            (inner.conn.is_connected(), refused.is_err())
        };
        if refused && !connected {
            entry.strikes += 1;
            if entry.strikes >= MAX_STRIKES {
                log::debug!("utp: half-open connection from {from} refused {MAX_STRIKES} packets");
                self.conns.remove(&key);
                return true;
            }
        }
        if connected && !entry.handed {
            entry.handed = true;
            let stream = UtpStream {
                shared: Arc::clone(&entry.shared),
            };
            log::debug!("utp: connection from {from} established");
            (self.accept)(stream);
        }
        true
    }

    /// A SYN for a new connection `key`: answered and kept half-open,
    /// within the caps (true); over them, left to the refuser (false).
    /// When the half-open table is full, the oldest half-open connection
    /// makes room: a trickle of spoofed SYNs cannot keep real ones out.
    fn open(&mut self, h: &packet::Header, key: (SocketAddr, u16), now: Instant) -> bool {
        let from = key.0;
        let same_ip = self
            .conns
            .keys()
            .filter(|(a, _)| a.ip() == from.ip())
            .count();
        if same_ip >= MAX_PER_IP || self.conns.len() >= MAX_CONNECTIONS {
            log::debug!("utp: SYN from {from} over the caps");
            return false;
        }
        let half_open = self.conns.iter().filter(|(_, e)| !e.handed);
        if half_open.clone().count() >= MAX_HALF_OPEN {
            if let Some(oldest) = half_open.min_by_key(|(_, e)| e.opened).map(|(k, _)| *k) {
                self.conns.remove(&oldest);
            }
        }
        let Ok(socket) = self.socket.try_clone() else {
            return false;
        };
        self.syns += 1;
        let seq = self.secret.hash_one((from, key.1, h.seq_nr, self.syns)) as u16;
        let conn = Connection::accept(h, seq, self.config.clone(), self.epoch, now);
        let shared = Arc::new(Shared::new(conn, socket, from));
        {
            let mut inner = shared.lock();
            shared.flush(&mut inner, now);
        }
        log::debug!("utp: SYN from {from}, connection {}", key.1);
        self.conns.insert(
            key,
            Entry {
                shared,
                handed: false,
                released: false,
                opened: now,
                strikes: 0,
            },
        );
        true
    }

    /// The port is closing: every connection ends with a reset (its peer
    /// need not wait out a timeout) and its blocked handles wake.
    fn abort_all(&mut self, now: Instant) {
        for e in self.conns.values() {
            let mut inner = e.shared.lock();
            inner.conn.abort();
            e.shared.flush(&mut inner, now);
            drop(inner);
            e.shared.wake();
        }
        self.conns.clear();
    }

    /// Runs every connection's timers; forgets the closed ones, and
    /// closes those whose every handle was dropped.
    pub fn tick(&mut self, now: Instant) {
        self.conns.retain(|(from, id), e| {
            let mut inner = e.shared.lock();
            let unused = e.handed && Arc::strong_count(&e.shared) == 1;
            if unused && !e.released {
                e.released = true;
                inner.conn.close(now);
            }
            inner.conn.tick(now);
            e.shared.flush(&mut inner, now);
            let (state, stats) = (inner.conn.state(), inner.conn.stats());
            drop(inner);
            if let State::Closed(why) = state {
                log::debug!("utp {from} connection {id}: {why}; {stats}");
                e.shared.wake();
                return false;
            }
            true
        });
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.abort_all(Instant::now());
    }
}
