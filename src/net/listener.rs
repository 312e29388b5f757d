//! The listener: one thread that accepts inbound peer connections and
//! hands them to the orchestrator.
//!
//! Owns: the listening socket, and the wake-up that stops it. Does not own:
//! the handshake or any decision about the connection.

use crossbeam_channel::Sender;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Listener {
    pub local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr`; if its port is taken, a free port on the same address
    /// (said in the log), so that several clients on one host all listen.
    /// `[::]` (the default) is dual-stack on Linux and takes IPv4 peers too;
    /// on a host without IPv6 it falls back to `0.0.0.0`.
    pub fn start(addr: SocketAddr, accepted: Sender<TcpStream>) -> io::Result<Listener> {
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
        let thread = std::thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                for conn in socket.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    match conn {
                        Ok(stream) => {
                            if accepted.send(stream).is_err() {
                                break;
                            }
                        }
                        // Out of descriptors and the like: keep serving.
                        Err(e) => log::warn!("accept: {e}"),
                    }
                }
            })?;
        Ok(Listener {
            local_addr,
            stop,
            thread: Some(thread),
        })
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
    /// connection of our own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, std::time::Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::within;

    /// Regression (issue 9): a listener blocked handing over a connection
    /// (its queue full) stops once the receiver is gone, so shutting down
    /// — drop the queue, then the listener — cannot hang.
    #[test]
    fn a_listener_blocked_on_a_full_queue_stops() {
        within(|| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let l = Listener::start("127.0.0.1:0".parse().unwrap(), tx).unwrap();
            let clients: Vec<TcpStream> = (0..3)
                .map(|_| TcpStream::connect(l.local_addr).unwrap())
                .collect();
            // One queued; the listener holds the second, blocked in `send`.
            let first = rx.recv().unwrap();
            while rx.is_empty() {
                std::thread::yield_now();
            }
            drop(rx);
            drop(l);
            drop((first, clients));
        });
    }
}
