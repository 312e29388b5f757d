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
    pub fn start(addr: SocketAddr, accepted: Sender<TcpStream>) -> io::Result<Listener> {
        let socket = match TcpListener::bind(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() != 0 => {
                let fallback = SocketAddr::new(addr.ip(), 0);
                log::warn!(
                    "port {} is in use; listening on a free port instead",
                    addr.port()
                );
                TcpListener::bind(fallback)?
            }
            other => other?,
        };
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
