//! The listener: one thread that accepts inbound peer connections, and a
//! short-lived greeter thread per connection (TCP from here, uTP from the
//! UDP port's multiplexer through [`Greeter`]) that reads the peer's
//! handshake (within its deadline) and hands the connection to whoever
//! serves the info hash it names. A greeter tells a plaintext handshake
//! from MSE by its first 20 bytes and, for MSE, runs the encryption
//! handshake first, as the session's [`Admission`] says.
//!
//! Owns: the listening socket, the wake-up that stops it, and the bound
//! on handshakes in progress. Does not own: which torrents exist or any
//! decision about the connection (the session's `route` callback decides;
//! a connection it does not take is closed without a word, so a stranger
//! never learns which torrents we serve).

use crate::net::peer::{self, Admission, Inbound};
use crate::net::stream::Stream;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Handshakes read at once at most (each greeter is a thread). When all
/// are busy, the oldest is cut off to make room: a flood of silent or
/// dribbling connections then costs each of its connections its slot,
/// while a real peer, which sends its handshake at once, gets through.
pub const MAX_GREETERS: usize = 64;

/// The connections greeters are reading, oldest first, to cut off the
/// oldest when all are busy.
#[derive(Default)]
struct Greeting {
    next_id: u64,
    open: std::collections::VecDeque<(u64, Stream)>,
}

/// Where a connection goes once its handshake is read: the session's
/// routing. Called on the greeter thread; it must not block.
pub type Route = dyn Fn(Inbound) + Send + Sync;

pub struct Listener {
    pub local_addr: SocketAddr,
    greeter: Greeter,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Reads inbound connections' handshakes and routes them: shared by the
/// TCP accept thread and the uTP multiplexer, so both transports take
/// the same path (encryption policy, info-hash routing, caps).
#[derive(Clone)]
pub struct Greeter {
    admission: Arc<Admission>,
    route: Arc<Route>,
    greeting: Arc<Mutex<Greeting>>,
}

impl Greeter {
    /// Greets `stream` on a greeter thread (see [`MAX_GREETERS`]).
    pub fn greet(&self, stream: Stream) {
        greet(stream, &self.admission, &self.route, &self.greeting);
    }
}

impl Listener {
    /// Binds `addr`; if its port is taken, a free port on the same address
    /// (said in the log), so that several clients on one host all listen.
    /// `[::]` (the default) is dual-stack on Linux and takes IPv4 peers too;
    /// on a host without IPv6 it falls back to `0.0.0.0`.
    pub fn start(
        addr: SocketAddr,
        admission: Arc<Admission>,
        route: Arc<Route>,
    ) -> io::Result<Listener> {
        let socket = bind(addr).or_else(|e| match addr {
            SocketAddr::V6(v6)
                if v6.ip().is_unspecified() && e.kind() != io::ErrorKind::AddrInUse =>
            {
                log::info!("no IPv6 here ({e}); listening on IPv4 only");
                bind(SocketAddr::from(([0, 0, 0, 0], addr.port())))
            }
            _ => Err(e),
        })?;
        let local_addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let greeters = Arc::new(Mutex::new(Greeting::default()));
        let greeter = Greeter {
            admission: Arc::clone(&admission),
            route: Arc::clone(&route),
            greeting: Arc::clone(&greeters),
        };
        let thread = std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                for conn in socket.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn {
                        Ok(stream) => greet(Stream::Tcp(stream), &admission, &route, &greeters),
                        // Out of descriptors and the like: keep serving,
                        // after a pause (retrying at once would spin while
                        // closing connections free descriptors).
                        Err(e) => {
                            log::warn!("accept: {e}");
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                    }
                }
            })?;
        Ok(Listener {
            local_addr,
            greeter,
            stop,
            thread: Some(thread),
        })
    }
}

impl Listener {
    /// The greeter, for connections that arrive another way (uTP).
    pub fn greeter(&self) -> Greeter {
        self.greeter.clone()
    }
}

/// Reads the handshake of `stream` on a thread of its own, then routes it.
fn greet(
    stream: Stream,
    admission: &Arc<Admission>,
    route: &Arc<Route>,
    greeting: &Arc<Mutex<Greeting>>,
) {
    let Ok(handle) = stream.try_clone() else {
        return;
    };
    let id = {
        let mut g = lock(greeting);
        if g.open.len() >= MAX_GREETERS {
            if let Some((_, oldest)) = g.open.pop_front() {
                log::debug!("{MAX_GREETERS} handshakes in progress: cutting off the oldest");
                let _ = oldest.shutdown(std::net::Shutdown::Both);
            }
        }
        g.next_id += 1;
        let id = g.next_id;
        g.open.push_back((id, handle));
        id
    };
    let (admission, route, done) = (
        Arc::clone(admission),
        Arc::clone(route),
        Arc::clone(greeting),
    );
    let spawned = std::thread::Builder::new()
        .name("greeter".into())
        .spawn(move || {
            let read = peer::read_inbound_handshake(stream, &admission);
            lock(&done).open.retain(|(i, _)| *i != id);
            match read {
                Ok(inbound) => route(inbound),
                Err(e) => log::debug!("inbound handshake: {e}"),
            }
        });
    if let Err(e) = spawned {
        lock(greeting).open.retain(|(i, _)| *i != id);
        log::warn!("cannot start a greeter thread: {e}");
    }
}

fn lock(g: &Mutex<Greeting>) -> std::sync::MutexGuard<'_, Greeting> {
    // Every change leaves the list valid, so a poisoned lock is usable.
    g.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes a thread blocked accepting on `addr` (after it was told to stop)
/// with a connection of our own.
pub fn wake_accept(addr: SocketAddr) {
    let connect = |ip: std::net::IpAddr| {
        let wake = SocketAddr::new(ip, addr.port());
        TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(1)).is_ok()
    };
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            connect(std::net::Ipv4Addr::LOCALHOST.into());
        }
        // `[::]` is dual-stack: where IPv6 is disabled there is no `::1`,
        // but 127.0.0.1 reaches it.
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            let _ = connect(std::net::Ipv6Addr::LOCALHOST.into())
                || connect(std::net::Ipv4Addr::LOCALHOST.into());
        }
        _ => {
            connect(addr.ip());
        }
    }
}

/// Binds, moving to a free port if the one asked for is taken.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    match TcpListener::bind(addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
            log::warn!(
                "port {} is in use; listening on a free port instead",
                addr.port()
            );
            TcpListener::bind(SocketAddr::new(addr.ip(), 0))
        }
        other => other,
    }
}

impl Drop for Listener {
    /// Stops accepting: sets the flag, then wakes `accept` with a
    /// connection of our own. The accept thread never blocks on anything
    /// else, so the join is prompt; greeters end within their handshake
    /// deadline on their own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        wake_accept(self.local_addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
