//! The UDP side of the peer port: answers every uTP connection attempt
//! (BEP 29 `ST_SYN`) with an `ST_RESET`, so that clients that dial uTP
//! first (libtorrent, qBittorrent, Transmission) fall back to TCP at once
//! instead of after their uTP timeout. See [`crate::proto::utp`].
//!
//! Owns: a UDP socket on the listener's address and port, and its thread.
//! A reply is never larger than the datagram it answers and is sent only
//! to a SYN, at most [`RESETS_PER_SECOND`]: no amplification, and a
//! spoofed flood costs a bounded trickle. Anything else is ignored.

use crate::proto::utp;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Resets sent per second at most (a burst of as many is allowed).
pub const RESETS_PER_SECOND: u32 = 500;

pub struct UtpRefuser {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UtpRefuser {
    /// Binds UDP on `addr` (the TCP listener's address and port).
    pub fn start(addr: SocketAddr) -> io::Result<UtpRefuser> {
        let socket = UdpSocket::bind(addr)?;
        let local_addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("utp-refuser".into())
            .spawn(move || serve(&socket, &flag))?;
        Ok(UtpRefuser {
            local_addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

fn serve(socket: &UdpSocket, stop: &AtomicBool) {
    let started = Instant::now();
    let mut buf = [0u8; 1500];
    let mut tokens = RESETS_PER_SECOND;
    let mut refilled = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            // ICMP errors from earlier replies surface here; keep serving.
            Err(e) => {
                log::debug!("utp: {e}");
                continue;
            }
        };
        let Some(syn) = utp::parse_syn(&buf[..n]) else {
            continue;
        };
        if refilled.elapsed().as_secs() >= 1 {
            tokens = RESETS_PER_SECOND;
            refilled = Instant::now();
        }
        if tokens == 0 {
            continue;
        }
        tokens -= 1;
        let now_us = started.elapsed().as_micros() as u32;
        let _ = socket.send_to(&utp::reset_for(syn, now_us), from);
    }
}

impl Drop for UtpRefuser {
    /// Sets the flag, then wakes the blocked `recv_from` with a datagram of
    /// our own.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let any: SocketAddr = match wake {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        if let Ok(s) = UdpSocket::bind(any) {
            let _ = s.send_to(&[0], wake);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::within;
    use std::time::Duration;

    #[test]
    fn a_syn_gets_a_reset_and_nothing_else_gets_an_answer() {
        within(|| {
            let refuser = UtpRefuser::start("127.0.0.1:0".parse().unwrap()).unwrap();
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let to = refuser.local_addr();
            client
                .send_to(
                    b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe",
                    to,
                )
                .unwrap();
            let mut syn = [0u8; 20];
            syn[0] = 0x41;
            syn[2..4].copy_from_slice(&0x4242u16.to_be_bytes());
            syn[16..18].copy_from_slice(&7u16.to_be_bytes());
            client.send_to(&syn, to).unwrap();
            let mut got = [0u8; 64];
            // The first answer is to the SYN: the garbage before it got none.
            let (n, from) = client.recv_from(&mut got).unwrap();
            assert_eq!((n, from), (20, to));
            assert_eq!(got[0], 0x31);
            assert_eq!(&got[2..4], &[0x42, 0x42]);
            assert_eq!(&got[18..20], &[0, 7]);
            drop(refuser); // stops promptly (within's deadline)
        });
    }
}
