//! A uTP connection as a blocking byte stream for peer threads: `read`
//! blocks until data, the end, or the read timeout; `write` blocks while
//! the send buffer is full, up to the write timeout; clones share one
//! connection (the reader, the writer and the orchestrator each hold
//! one, as with `TcpStream::try_clone`).
//!
//! Owns: the connection's lock and its wake-ups. The state machine is
//! [`crate::proto::utp::Connection`]; the UDP port thread feeds it
//! datagrams and runs its timers ([`super::Mux`]). Writers send their
//! packets themselves, on a clone of the port's socket, under the
//! connection's lock: data leaves at once, without waking the UDP thread.

use crate::proto::utp::{Closed, Connection};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One connection, shared by the UDP thread and the stream's handles.
pub(super) struct Shared {
    inner: Mutex<Inner>,
    /// Signalled whenever the connection may have become readable,
    /// writable or closed.
    changed: Condvar,
    socket: UdpSocket,
    pub(super) peer: SocketAddr,
    local: SocketAddr,
}

pub(super) struct Inner {
    pub(super) conn: Connection,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    read_shut: bool,
    write_shut: bool,
    out: Vec<u8>,
    /// Threads blocked in `read` or `write`.
    waiting: usize,
}

impl Shared {
    pub(super) fn new(conn: Connection, socket: UdpSocket, peer: SocketAddr) -> Shared {
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Shared {
            inner: Mutex::new(Inner {
                conn,
                read_timeout: None,
                write_timeout: None,
                read_shut: false,
                write_shut: false,
                out: Vec::with_capacity(1500),
                waiting: 0,
            }),
            changed: Condvar::new(),
            socket,
            peer,
            local,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change leaves the connection valid.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends everything the connection has to send now.
    pub(super) fn flush(&self, inner: &mut Inner, now: Instant) {
        let Inner { conn, out, .. } = inner;
        while conn.poll_transmit(now, out) {
            // A full socket buffer or an ICMP error: the packet counts as
            // lost, and retransmission deals with it.
            let _ = self.socket.send_to(out, self.peer);
        }
    }

    pub(super) fn wake(&self) {
        self.changed.notify_all();
    }

    /// Wakes blocked readers and writers if what they wait for may be
    /// there: data (or the end) to read, a quarter of the send buffer
    /// free, or the end of the connection. A wake-up is a system call;
    /// most acks change nothing a waiter cares about.
    pub(super) fn wake_waiters(&self, inner: &Inner) {
        let c = &inner.conn;
        if inner.waiting > 0
            && (c.readable() > 0
                || c.at_eof()
                || c.is_closed()
                || c.writable() >= c.send_buffer() / 4)
        {
            self.changed.notify_all();
        }
    }

    /// Waits for a change until `deadline`; false when it passed.
    fn wait<'a>(
        &self,
        mut guard: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, Inner>, bool) {
        guard.waiting += 1;
        let (mut guard, in_time) = self.wait_once(guard, deadline);
        guard.waiting -= 1;
        (guard, in_time)
    }

    fn wait_once<'a>(
        &self,
        guard: MutexGuard<'a, Inner>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, Inner>, bool) {
        match deadline {
            None => (
                self.changed
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner),
                true,
            ),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (guard, false);
                }
                let (g, _) = self
                    .changed
                    .wait_timeout(guard, left)
                    .unwrap_or_else(PoisonError::into_inner);
                (g, true)
            }
        }
    }
}

fn closed_error(why: Closed) -> io::Error {
    let kind = match why {
        Closed::Reset => io::ErrorKind::ConnectionReset,
        Closed::Done | Closed::Aborted => io::ErrorKind::NotConnected,
        // Not `TimedOut`: that is what a read or write timeout says.
        Closed::TimedOut => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, format!("uTP connection {why}"))
}

/// A handle on one uTP connection; clones share it.
#[derive(Clone)]
pub struct UtpStream {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl UtpStream {
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.peer)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local)
    }

    /// `None`: block for ever. A zero duration is an error, as for TCP.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.shared.lock().read_timeout = t;
        Ok(())
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.shared.lock().write_timeout = t;
        Ok(())
    }

    /// Like `TcpStream::shutdown`: `Write` (or `Both`) sends FIN once
    /// everything written is sent; `Read` (or `Both`) makes reads return
    /// the end. Blocked readers and writers wake at once.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let mut inner = self.shared.lock();
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            inner.read_shut = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            inner.write_shut = true;
            let now = Instant::now();
            inner.conn.close(now);
            self.shared.flush(&mut inner, now);
        }
        drop(inner);
        self.shared.wake();
        Ok(())
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut inner = self.shared.lock();
        let deadline = inner.read_timeout.map(|t| Instant::now() + t);
        loop {
            if inner.read_shut {
                return Ok(0);
            }
            let n = inner.conn.read(buf);
            if n > 0 {
                // The window may have opened: tell the sender.
                self.shared.flush(&mut inner, Instant::now());
                return Ok(n);
            }
            if inner.conn.at_eof() {
                return Ok(0);
            }
            if let crate::proto::utp::State::Closed(why) = inner.conn.state() {
                return Err(closed_error(why));
            }
            let (g, in_time) = self.shared.wait(inner, deadline);
            inner = g;
            if !in_time {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut inner = self.shared.lock();
        let deadline = inner.write_timeout.map(|t| Instant::now() + t);
        loop {
            if let crate::proto::utp::State::Closed(why) = inner.conn.state() {
                return Err(closed_error(why));
            }
            if inner.write_shut {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = inner.conn.write(buf);
            if n > 0 {
                self.shared.flush(&mut inner, Instant::now());
                return Ok(n);
            }
            let (g, in_time) = self.shared.wait(inner, deadline);
            inner = g;
            if !in_time {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }
}

fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

impl Read for &UtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        UtpStream::read(self, buf)
    }
}

impl Write for &UtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        UtpStream::write(self, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
