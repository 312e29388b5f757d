//! Two state machines talking through an in-memory pipe that loses,
//! delays and reorders datagrams, on a virtual clock.

use super::connection::{seq_before, Closed, Config, Connection, Rejected, State};
use super::packet::{self, Header, Kind};
use std::time::{Duration, Instant};

/// xorshift: deterministic "randomness" for the pipe.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A datagram in flight: when it arrives, and to whom (true: to the
/// acceptor).
struct Flight {
    at: Instant,
    to_b: bool,
    bytes: Vec<u8>,
}

struct Pipe {
    rng: Rng,
    loss: u64,
    max_delay_ms: u64,
    flights: Vec<Flight>,
}

impl Pipe {
    fn send(&mut self, now: Instant, to_b: bool, bytes: Vec<u8>) {
        if self.rng.chance(self.loss) {
            return;
        }
        let delay = 1 + self.rng.next() % self.max_delay_ms.max(1);
        self.flights.push(Flight {
            at: now + Duration::from_millis(delay),
            to_b,
            bytes,
        });
    }

    fn due(&mut self, now: Instant) -> Vec<Flight> {
        let (due, later) = std::mem::take(&mut self.flights)
            .into_iter()
            .partition(|f| f.at <= now);
        self.flights = later;
        due
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Sends `len` bytes from an initiator (its SYN numbered `seq`) to an
/// acceptor (numbering from `their_seq`) through the pipe, both ways
/// closing after; returns what arrived and the virtual time it took.
fn transfer(len: usize, seq: u16, their_seq: u16, loss: u64, max_delay_ms: u64) -> Vec<u8> {
    let epoch = Instant::now();
    let mut now = epoch;
    let config = Config {
        recv_buffer: 64 * 1024,
        send_buffer: 64 * 1024,
        ..Config::default()
    };
    let mut pipe = Pipe {
        rng: Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(seq)),
        loss,
        max_delay_ms,
        flights: Vec::new(),
    };
    let mut a = Connection::connect(0x4000, seq, config.clone(), epoch, now);
    let mut b: Option<Connection> = None;
    let sent = data(len);
    let mut written = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    for _ in 0..2_000_000 {
        now += Duration::from_millis(1);
        for f in pipe.due(now) {
            if f.to_b {
                match &mut b {
                    Some(b) => {
                        let _ = b.receive(&f.bytes, now);
                    }
                    None => {
                        let p = packet::decode(&f.bytes).unwrap();
                        assert_eq!(p.header.kind, Kind::Syn);
                        b = Some(Connection::accept(
                            &p.header,
                            their_seq,
                            config.clone(),
                            epoch,
                            now,
                        ));
                    }
                }
            } else {
                let _ = a.receive(&f.bytes, now);
            }
        }
        if a.is_connected() || a.state() == State::SynSent {
            written += a.write(&sent[written..]);
            if written == sent.len() {
                a.close(now);
            }
        }
        a.tick(now);
        while a.poll_transmit(now, &mut out) {
            pipe.send(now, true, out.clone());
        }
        if let Some(b) = &mut b {
            loop {
                let n = b.read(&mut buf);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if b.at_eof() {
                b.close(now);
            }
            b.tick(now);
            while b.poll_transmit(now, &mut out) {
                pipe.send(now, false, out.clone());
            }
            if a.is_closed() && b.is_closed() {
                eprintln!(
                    "{len} bytes, loss {loss}%: {} virtual ms; {}",
                    now.duration_since(epoch).as_millis(),
                    a.stats()
                );
                assert_eq!(a.state(), State::Closed(Closed::Done));
                assert_eq!(b.state(), State::Closed(Closed::Done));
                return got;
            }
        }
    }
    panic!(
        "no end: {} of {len} bytes arrived, a {:?}, b {:?}",
        got.len(),
        a.state(),
        b.map(|b| b.state())
    );
}

#[test]
fn bytes_arrive_intact_through_a_clean_pipe() {
    let got = transfer(300_000, 1, 1000, 0, 1);
    assert!(got == data(300_000));
}

#[test]
fn bytes_arrive_intact_through_a_lossy_reordering_pipe() {
    for (loss, delay) in [(5, 30), (15, 5), (25, 50)] {
        let got = transfer(200_000, 77, 500, loss, delay);
        assert!(got == data(200_000), "loss {loss}%, delay up to {delay} ms");
    }
}

#[test]
fn sequence_numbers_wrap_around() {
    assert!(seq_before(0xffff, 0));
    assert!(seq_before(0xfff0, 5));
    assert!(!seq_before(5, 0xfff0));
    // Both directions start just below the wrap and cross it.
    let got = transfer(100_000, 0xfff8, 0xfffd, 10, 20);
    assert!(got == data(100_000));
}

fn syn(id: u16, seq: u16) -> Header {
    Header {
        kind: Kind::Syn,
        connection_id: id,
        timestamp_us: 1,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: seq,
        ack_nr: 0,
    }
}

/// A data packet from the dialler of `syn(10, _)` to its acceptor.
fn data_packet(seq: u16, ack: u16) -> Header {
    Header {
        kind: Kind::Data,
        connection_id: 11,
        timestamp_us: 2,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: seq,
        ack_nr: ack,
    }
}

fn bytes(h: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    packet::encode(&h, None, payload, &mut out);
    out
}

#[test]
fn the_acceptor_answers_a_syn_with_an_ack_on_the_right_ids() {
    let t0 = Instant::now();
    let mut b = Connection::accept(&syn(10, 500), 9000, Config::default(), t0, t0);
    assert_eq!(b.recv_id(), 11);
    let mut out = Vec::new();
    assert!(b.poll_transmit(t0, &mut out));
    let p = packet::decode(&out).unwrap();
    assert_eq!(p.header.kind, Kind::State);
    assert_eq!(p.header.connection_id, 10);
    assert_eq!((p.header.seq_nr, p.header.ack_nr), (9000, 500));
    assert!(!b.poll_transmit(t0, &mut out), "one ack");
    // A repeated SYN (our ack was lost) is acked again.
    b.receive(&bytes(syn(10, 500), b""), t0).unwrap();
    assert!(b.poll_transmit(t0, &mut out));
}

#[test]
fn hostile_packets_are_rejected_without_harm() {
    let t0 = Instant::now();
    let mut b = Connection::accept(&syn(10, 500), 9000, Config::default(), t0, t0);
    // A first packet that does not ack our numbers (a blind spoofer).
    assert_eq!(
        b.receive(&bytes(data_packet(501, 1234), b"x"), t0),
        Err(Rejected::NotConnected)
    );
    assert_eq!(b.state(), State::SynRecv);
    // An ack of packets we never sent.
    assert_eq!(
        b.receive(&bytes(data_packet(501, 9500), b"x"), t0),
        Err(Rejected::AckUnsent {
            ack_nr: 9500,
            next_seq: 9000
        })
    );
    // Far ahead of the window.
    assert_eq!(
        b.receive(&bytes(data_packet(501 + 5000, 8999), b"x"), t0),
        Err(Rejected::OutOfWindow { seq_nr: 5501 })
    );
    // Garbage.
    let mut bad = bytes(data_packet(501, 8999), b"x");
    bad[0] = 0x07;
    assert!(matches!(b.receive(&bad, t0), Err(Rejected::Packet(_))));
    bad[0] = 0x01;
    bad[1] = 1;
    assert!(matches!(b.receive(&bad, t0), Err(Rejected::Packet(_))));
    // None of it was data: nothing to read, and the good packet works.
    assert_eq!(b.readable(), 0);
    b.receive(&bytes(data_packet(501, 8999), b"hello"), t0)
        .unwrap();
    assert_eq!(b.readable(), 5);
    // Data beyond the receive buffer is dropped, not stored.
    let mut small = Connection::accept(
        &syn(10, 500),
        9000,
        Config {
            recv_buffer: 4,
            ..Config::default()
        },
        t0,
        t0,
    );
    small
        .receive(&bytes(data_packet(501, 8999), b"too long"), t0)
        .unwrap();
    assert_eq!(small.readable(), 0);
    // A sack of any length names only packets in flight.
    let mut out = Vec::new();
    let mut h = data_packet(502, 8999);
    h.kind = Kind::State;
    packet::encode(&h, Some(&[0xff; 32]), b"", &mut out);
    b.receive(&out, t0).unwrap();
}

#[test]
fn an_idle_peer_times_out() {
    let t0 = Instant::now();
    let config = Config {
        idle_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut b = Connection::accept(&syn(10, 500), 9000, config.clone(), t0, t0);
    let first = Header {
        kind: Kind::State,
        connection_id: 11,
        timestamp_us: 2,
        timestamp_diff_us: 0,
        wnd_size: 1 << 20,
        seq_nr: 501,
        ack_nr: 8999,
    };
    b.receive(&bytes(first, b""), t0).unwrap();
    assert!(b.is_connected());
    b.tick(t0 + Duration::from_secs(4));
    assert!(b.is_connected());
    b.tick(t0 + Duration::from_secs(6));
    assert_eq!(b.state(), State::Closed(Closed::TimedOut));

    // A SYN that is never answered ends too.
    let mut a = Connection::connect(1, 1, config.clone(), t0, t0);
    let mut out = Vec::new();
    assert!(a.poll_transmit(t0, &mut out));
    a.tick(t0 + Duration::from_secs(11));
    assert_eq!(a.state(), State::Closed(Closed::TimedOut));

    // Data that is never acknowledged: retransmitted with backoff, then
    // the connection ends, well before the idle timeout.
    let config = Config {
        idle_timeout: Duration::from_secs(3600),
        ..Config::default()
    };
    let mut b = Connection::accept(&syn(10, 500), 9000, config, t0, t0);
    b.receive(&bytes(first, b""), t0).unwrap();
    b.write(b"never acked");
    let mut now = t0;
    let mut sends = 0;
    while !b.is_closed() && now < t0 + Duration::from_secs(600) {
        now += Duration::from_millis(50);
        b.tick(now);
        while b.poll_transmit(now, &mut out) {
            sends += 1;
        }
    }
    assert_eq!(b.state(), State::Closed(Closed::TimedOut));
    assert!(sends > 3, "retransmitted ({sends} sends)");
}

#[test]
fn a_reset_closes() {
    let t0 = Instant::now();
    let mut b = Connection::accept(&syn(10, 500), 9000, Config::default(), t0, t0);
    let mut r = syn(11, 501);
    r.kind = Kind::Reset;
    b.receive(&bytes(r, b""), t0).unwrap();
    assert_eq!(b.state(), State::Closed(Closed::Reset));
}

/// The packet that fills a gap is taken even when the early packets
/// behind it fill the window (refusing it would hang the connection:
/// nothing else frees the window), and everything is delivered in order.
#[test]
fn the_packet_that_fills_a_gap_is_taken_when_the_window_is_full() {
    let t0 = Instant::now();
    let config = Config {
        recv_buffer: 8,
        ..Config::default()
    };
    let mut b = Connection::accept(&syn(10, 500), 9000, config, t0, t0);
    // 501 is missing; 502 and 503 fill the 8-byte window.
    b.receive(&bytes(data_packet(502, 8999), b"2222"), t0)
        .unwrap();
    b.receive(&bytes(data_packet(503, 8999), b"3333"), t0)
        .unwrap();
    assert_eq!(b.readable(), 0);
    b.receive(&bytes(data_packet(501, 8999), b"1111"), t0)
        .unwrap();
    let mut got = [0u8; 12];
    assert_eq!(b.read(&mut got), 12);
    assert_eq!(&got, b"111122223333");
}
