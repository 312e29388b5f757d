//! The peer port's UDP side: one socket, one thread. KRPC datagrams (a
//! bencoded dictionary starts with `d`) go to the DHT node, if the DHT is
//! on; uTP packets go to the uTP multiplexer ([`crate::net::utp`]) if uTP
//! is on; a uTP SYN it does not take (uTP off, or over its caps) gets a
//! reset ([`crate::net::utp_refuser`]); anything else is dropped.
//! `shoal dht` runs the same thing on its own port.
//!
//! Owns: the socket, the thread, the DHT [`Node`] (its commands come
//! from [`Dht`] handles on a bounded queue) and the uTP [`Mux`]. The
//! thread wakes every [`TICK`] (a read timeout) to run the node's and the
//! uTP connections' timers and take commands, so dropping the port stops
//! it within one tick; the routing table is saved on the way out. uTP
//! data needs no wake-up: writers send their packets themselves, on a
//! clone of the socket; this thread only receives (and runs the
//! connections' timers every tick).

use crate::net::dht::{self, Command, Dht, Node};
use crate::net::utp::{Accept, Mux};
use crate::net::utp_refuser::Refuser;
use crossbeam_channel::Receiver;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the node's timers run, and the longest a command waits.
pub const TICK: Duration = Duration::from_millis(50);

pub struct UdpPort {
    pub local_addr: SocketAddr,
    dht: Option<Dht>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpPort {
    /// Binds UDP on `addr` (the TCP listener's address and port), with a
    /// DHT node if `dht` is given.
    pub fn start(addr: SocketAddr, dht: Option<dht::Config>) -> io::Result<UdpPort> {
        UdpPort::start_with_utp(addr, dht, None)
    }

    /// [`UdpPort::start`], accepting uTP connections if `utp` is given
    /// (each goes to it once established); without, uTP SYNs are reset.
    pub fn start_with_utp(
        addr: SocketAddr,
        dht: Option<dht::Config>,
        utp: Option<Accept>,
    ) -> io::Result<UdpPort> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(TICK))?;
        let local_addr = socket.local_addr()?;
        let (handle, node) = match dht {
            Some(config) => {
                let (handle, commands) = Dht::channel(local_addr.port());
                (Some(handle), Some((config, commands)))
            }
            None => (None, None),
        };
        let mux = match utp {
            Some(accept) => Some(Mux::new(socket.try_clone()?, accept, Instant::now())),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("udp-port".into())
            .spawn(move || serve(&socket, &flag, node, mux))?;
        Ok(UdpPort {
            local_addr,
            dht: handle,
            stop,
            thread: Some(thread),
        })
    }

    /// The DHT node, if it runs here.
    pub fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref()
    }
}

/// A DHT node and what feeds it.
struct Running {
    node: Node,
    commands: Receiver<Command>,
    config: dht::Config,
    last_tick: Instant,
}

fn serve(
    socket: &UdpSocket,
    stop: &AtomicBool,
    dht: Option<(dht::Config, Receiver<Command>)>,
    mut utp: Option<Mux>,
) {
    let mut utp_tick = Instant::now();
    let mut refuser = Refuser::new(Instant::now());
    // Resolving the bootstrap names may take a while: here, not in `start`.
    let mut dht = dht.map(|(config, commands)| Running {
        node: Node::new(config.resolve(), Instant::now()),
        commands,
        config,
        last_tick: Instant::now(),
    });
    let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    // Room for the largest datagram: Linux cuts a longer one to the
    // buffer without a word, and a cut uTP packet would lose bytes from
    // the middle of a stream (a decoder then refuses what is too big).
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let received = socket.recv_from(&mut buf);
        let now = Instant::now();
        match received {
            Ok((n, from)) => {
                let datagram = &buf[..n];
                match (&mut dht, datagram.first(), ipv4(from)) {
                    (Some(d), Some(b'd'), Some(from)) => d.node.receive(datagram, from, now),
                    _ if utp.as_mut().is_some_and(|m| m.receive(datagram, from, now)) => {}
                    _ => {
                        if let Some(reset) = refuser.answer(datagram, now) {
                            let _ = socket.send_to(&reset, from);
                        }
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // ICMP errors from earlier replies surface here; keep serving.
            Err(e) => log::debug!("udp port: {e}"),
        }
        if let Some(m) = &mut utp {
            if now.duration_since(utp_tick) >= TICK {
                utp_tick = now;
                m.tick(now);
            }
        }
        let Some(d) = &mut dht else {
            continue;
        };
        while let Ok(cmd) = d.commands.try_recv() {
            d.node.command(cmd, now);
        }
        if now.duration_since(d.last_tick) >= TICK {
            d.last_tick = now;
            d.node.tick(now);
        }
        for (to, bytes) in d.node.take_output() {
            let _ = socket.send_to(&bytes, to_family(to, v6));
        }
    }
    if let Some(d) = dht {
        if let Some(path) = &d.config.state_file {
            if let Err(e) = dht::saved::save(path, &d.node.nodes()) {
                log::info!("dht: saving nodes to {}: {e}", path.display());
            }
        }
    }
}

/// The IPv4 address of a datagram's sender (IPv4-mapped on a dual-stack
/// socket); the DHT speaks IPv4 only.
fn ipv4(from: SocketAddr) -> Option<SocketAddrV4> {
    match from {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => Some(SocketAddrV4::new(a.ip().to_ipv4_mapped()?, a.port())),
    }
}

/// `to` in the socket's address family.
fn to_family(to: SocketAddrV4, v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(to.ip().to_ipv6_mapped().into(), to.port())
    } else {
        SocketAddr::V4(to)
    }
}

impl Drop for UdpPort {
    /// The thread sees the flag within one [`TICK`].
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::krpc::{self, Body};
    use crate::util::testutil::within;

    /// On one socket: a SYN gets a reset, a KRPC ping an answer from the
    /// node, garbage nothing; without the DHT a ping gets nothing.
    #[test]
    fn datagrams_are_dispatched_by_their_first_byte() {
        within(|| {
            let ping = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe";
            let mut syn = [0u8; 20];
            syn[0] = 0x41;
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut got = [0u8; 1500];
            for with_dht in [false, true] {
                let config = with_dht.then(dht::Config::default);
                let port = UdpPort::start("127.0.0.1:0".parse().unwrap(), config).unwrap();
                let to = port.local_addr;
                for d in [&b"garbage"[..], ping, &syn] {
                    client.send_to(d, to).unwrap();
                }
                let (n, from) = client.recv_from(&mut got).unwrap();
                assert_eq!(from, to);
                if with_dht {
                    let m = krpc::decode(&got[..n]).unwrap();
                    assert!(matches!(m.body, Body::Response(_)), "the ping first");
                    let (n, _) = client.recv_from(&mut got).unwrap();
                    assert_eq!(n, 20);
                } else {
                    assert_eq!((n, got[0]), (20, 0x31), "the reset, nothing before");
                }
                assert_eq!(port.dht().is_some(), with_dht);
                drop(port); // stops within a tick (within's deadline)
            }
        });
    }
}
