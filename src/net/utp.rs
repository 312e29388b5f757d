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
//! holds at most 1 MiB received and 1 MiB to send: 512 MiB in all at
//! worst); a SYN over the caps is left to the refuser, which resets it
//! at a bounded rate. Does not own: the socket
//! (the UDP thread's; connections send on a clone of it) or what a
//! connection carries.

mod stream;
#[cfg(test)]
mod tests;

pub use stream::UtpStream;

use crate::proto::utp::{packet, Config, Connection, State};
use std::collections::HashMap;
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

/// What receives a new inbound connection; it must not block.
pub type Accept = Box<dyn Fn(UtpStream) + Send>;

struct Entry {
    shared: Arc<Shared>,
    /// Handed to `accept` (established).
    handed: bool,
    /// We closed it because every handle was dropped.
    released: bool,
}

pub struct Mux {
    socket: UdpSocket,
    accept: Accept,
    epoch: Instant,
    config: Config,
    conns: HashMap<(SocketAddr, u16), Entry>,
    rng: crate::util::random::Rng,
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
            rng: crate::util::random::Rng::new(crate::util::random::seed()),
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
        let entry = match self.conns.get(&key) {
            Some(e) => e,
            None if h.kind == packet::Kind::Syn => {
                let half_open = self.conns.values().filter(|e| !e.handed).count();
                let same_ip = self
                    .conns
                    .keys()
                    .filter(|(a, _)| a.ip() == from.ip())
                    .count();
                if half_open >= MAX_HALF_OPEN
                    || same_ip >= MAX_PER_IP
                    || self.conns.len() >= MAX_CONNECTIONS
                {
                    log::debug!("utp: SYN from {from} over the caps");
                    return false;
                }
                let Ok(socket) = self.socket.try_clone() else {
                    return false;
                };
                let seq = self.rng.next_u64() as u16;
                let conn = Connection::accept(&h, seq, self.config.clone(), self.epoch, now);
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
                    },
                );
                return true;
            }
            // Not ours (a connection we forgot): dropped, as libutp does
            // for anything but a SYN.
            None => return true,
        };
        let connected = {
            let mut inner = entry.shared.lock();
            if let Err(e) = inner.conn.handle(&p, now) {
                log::debug!("utp {from}: {e}");
            }
            entry.shared.flush(&mut inner, now);
            entry.shared.wake_waiters(&inner);
            inner.conn.is_connected()
        };
        if connected && !entry.handed {
            let stream = UtpStream {
                shared: Arc::clone(&entry.shared),
            };
            if let Some(e) = self.conns.get_mut(&key) {
                e.handed = true;
            }
            log::debug!("utp: connection from {from} established");
            (self.accept)(stream);
        }
        true
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
