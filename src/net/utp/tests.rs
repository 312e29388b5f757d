//! The multiplexer and the blocking stream on a real UDP port, against a
//! dialler driven here by hand (a [`Connection`] on a socket of its own).

use super::*;
use crate::net::udp_port::UdpPort;
use crate::proto::utp::packet::Kind;
use crate::util::testutil::within;
use crossbeam_channel::Receiver;
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

/// A UDP port accepting uTP; established streams arrive on the queue.
fn port() -> (UdpPort, Receiver<UtpStream>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let accept: Accept = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let port = UdpPort::start_with_utp("127.0.0.1:0".parse().unwrap(), None, Some(accept));
    (port.unwrap(), rx)
}

/// The dialling side, pumped by the test thread.
struct Dialler {
    socket: UdpSocket,
    conn: Connection,
    to: SocketAddr,
    out: Vec<u8>,
}

impl Dialler {
    fn new(to: SocketAddr, id: u16) -> Dialler {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let now = Instant::now();
        let conn = Connection::connect(id, 100, Config::default(), now, now);
        Dialler {
            socket,
            conn,
            to,
            out: Vec::new(),
        }
    }

    /// Sends what is due, then takes what arrives for a few ms.
    fn pump(&mut self) {
        let now = Instant::now();
        self.conn.tick(now);
        while self.conn.poll_transmit(now, &mut self.out) {
            self.socket.send_to(&self.out, self.to).unwrap();
        }
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = self.socket.recv_from(&mut buf) {
            let _ = self.conn.receive(&buf[..n], Instant::now());
        }
    }

    fn pump_until(&mut self, mut done: impl FnMut(&mut Connection) -> bool) {
        while !done(&mut self.conn) {
            self.pump();
        }
    }
}

/// A connection from a new dialler (`id`), established on both sides:
/// the dialler and the stream the port handed on.
fn established(port: &UdpPort, accepted: &Receiver<UtpStream>, id: u16) -> (Dialler, UtpStream) {
    let mut d = Dialler::new(port.local_addr, id);
    d.pump_until(|c| c.is_connected());
    // The first data makes the connection established on the far side.
    d.conn.write(b"x");
    d.pump_until(|_| !accepted.is_empty());
    let stream = accepted.recv().unwrap();
    let mut one = [0u8; 1];
    assert_eq!(stream.read(&mut one).unwrap(), 1);
    (d, stream)
}

/// Bytes both ways through a stream whose clones a reader thread and a
/// writer thread hold, as peer workers do.
#[test]
fn a_stream_carries_bytes_both_ways_between_two_threads() {
    within(|| {
        let (port, accepted) = port();
        let mut d = Dialler::new(port.local_addr, 7);
        d.pump_until(|c| c.is_connected());
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        // The first data makes the connection established on the far side.
        let mut written = d.conn.write(&sent[..1000]);
        d.pump_until(|_| !accepted.is_empty());
        let stream = accepted.recv().unwrap();
        assert_eq!(stream.peer_addr().unwrap(), d.socket.local_addr().unwrap());
        let (reader, writer) = (stream.clone(), stream.clone());
        let echo = std::thread::spawn(move || {
            let mut buf = vec![0u8; 300_000];
            (&reader).read_exact(&mut buf).unwrap();
            buf
        });
        let reply = std::thread::spawn(move || {
            (&writer).write_all(b"hello from shoal").unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !(echo.is_finished() && d.conn.at_eof()) {
            written += d.conn.write(&sent[written..]);
            d.pump();
            loop {
                let n = d.conn.read(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert!(echo.join().unwrap() == sent);
        reply.join().unwrap();
        assert_eq!(got, b"hello from shoal");
        drop(stream);
    });
}

/// A read times out with `WouldBlock` (as `TcpStream` says it), and a
/// shutdown from another handle wakes a blocked reader at once.
#[test]
fn reads_time_out_and_a_shutdown_wakes_them() {
    within(|| {
        let (port, accepted) = port();
        let (mut d, stream) = established(&port, &accepted, 9);
        let mut one = [0u8; 1];
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let e = stream.read(&mut one).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock);
        assert!(stream.set_read_timeout(Some(Duration::ZERO)).is_err());
        stream.set_read_timeout(None).unwrap();
        let handle = stream.clone();
        let blocked = std::thread::spawn(move || handle.read(&mut [0u8; 8]).unwrap());
        stream.shutdown(Shutdown::Both).unwrap();
        assert_eq!(blocked.join().unwrap(), 0, "the end, at once");
        assert!(stream.write(b"more").is_err());
        // The peer sees our FIN.
        d.pump_until(|c| c.at_eof());
    });
}

/// The port closing resets its connections: a blocked reader wakes with
/// an error, and the peer sees the reset at once, not at its timeout.
#[test]
fn a_closing_port_resets_its_connections() {
    within(|| {
        let (port, accepted) = port();
        let (mut d, stream) = established(&port, &accepted, 13);
        let blocked = std::thread::spawn(move || stream.read(&mut [0u8; 8]));
        drop(port);
        assert!(blocked.join().unwrap().is_err(), "woken by the reset");
        d.pump_until(|c| c.is_closed());
    });
}

/// Every handle dropped closes the connection (FIN), and the table
/// forgets it once both sides are done.
#[test]
fn dropping_every_handle_closes_the_connection() {
    within(|| {
        let (port, accepted) = port();
        let (mut d, stream) = established(&port, &accepted, 11);
        drop(stream);
        d.pump_until(|c| c.at_eof());
        d.conn.close(Instant::now());
        d.pump_until(|c| c.is_closed());
        assert_eq!(
            d.conn.state(),
            State::Closed(crate::proto::utp::Closed::Done)
        );
    });
}

/// Sends `count` SYNs from `from` to `to`; returns (acks, resets) got.
fn syns(from: &UdpSocket, to: SocketAddr, count: usize, first_id: u16) -> (usize, usize) {
    for i in 0..count as u16 {
        let now = Instant::now();
        let mut c = Connection::connect((first_id + i) * 2, 1, Config::default(), now, now);
        let mut syn = Vec::new();
        assert!(c.poll_transmit(now, &mut syn));
        from.send_to(&syn, to).unwrap();
    }
    let (mut acks, mut resets) = (0, 0);
    let mut buf = [0u8; 2048];
    while acks + resets < count {
        let (n, _) = from.recv_from(&mut buf).unwrap();
        match packet::decode(&buf[..n]).unwrap().header.kind {
            Kind::State => acks += 1,
            Kind::Reset => resets += 1,
            other => panic!("{other:?}"),
        }
    }
    (acks, resets)
}

fn flooder(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A SYN flood from many addresses holds at most [`MAX_HALF_OPEN`]
/// slots: every SYN is answered (one 20-byte ack for each, no more), the
/// oldest half-open connection making room, and a real dialler that comes
/// after the flood still gets through. (Every 127.x address is loopback
/// on Linux.)
#[test]
fn a_syn_flood_does_not_keep_a_real_dialler_out() {
    within(|| {
        let (port, accepted) = port();
        let mut acked = 0;
        for host in 2..10 {
            let from = flooder(&format!("127.0.0.{host}"));
            let (a, r) = syns(&from, port.local_addr, 10, 0);
            assert_eq!(r, 0, "no reset while the oldest can make room");
            acked += a;
        }
        assert_eq!(acked, 80);
        let mut d = Dialler::new(port.local_addr, 7);
        d.pump_until(|c| c.is_connected());
        d.conn.write(b"hello");
        d.pump_until(|_| !accepted.is_empty());
    });
}

/// A spoofer that cannot see our SYN-ACK must guess our sequence number
/// to complete a connection: after a few wrong guesses the half-open
/// connection is gone, and even the right ack then finds nothing.
#[test]
fn wrong_acks_end_a_half_open_connection() {
    within(|| {
        let (port, accepted) = port();
        let from = flooder("127.0.0.1");
        let now = Instant::now();
        let mut c = Connection::connect(80, 1, Config::default(), now, now);
        let mut out = Vec::new();
        assert!(c.poll_transmit(now, &mut out));
        from.send_to(&out, port.local_addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = from.recv_from(&mut buf).unwrap();
        let syn_ack = buf[..n].to_vec();
        let right = packet::decode(&syn_ack).unwrap().header.seq_nr;
        for strike in 1..=MAX_STRIKES as u16 {
            let h = packet::Header {
                kind: Kind::Data,
                connection_id: 81,
                timestamp_us: 0,
                timestamp_diff_us: 0,
                wnd_size: 1 << 20,
                seq_nr: 2,
                ack_nr: right.wrapping_add(strike),
            };
            let mut bytes = Vec::new();
            packet::encode(&h, None, b"x", &mut bytes);
            from.send_to(&bytes, port.local_addr).unwrap();
        }
        // Now the right ack, as the real dialler sends it.
        let _ = c.receive(&syn_ack, Instant::now());
        assert!(c.is_connected());
        c.write(b"hello");
        while c.poll_transmit(Instant::now(), &mut out) {
            from.send_to(&out, port.local_addr).unwrap();
        }
        assert!(
            accepted.recv_timeout(Duration::from_millis(500)).is_err(),
            "a connection past its strikes was established"
        );
    });
}

/// One address gets [`MAX_PER_IP`] connections, the rest resets.
#[test]
fn one_address_is_capped() {
    within(|| {
        let (port, _accepted) = port();
        let from = flooder("127.0.0.1");
        let (acks, resets) = syns(&from, port.local_addr, MAX_PER_IP + 5, 0);
        assert_eq!((acks, resets), (MAX_PER_IP, 5));
    });
}
