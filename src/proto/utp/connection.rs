//! One uTP connection as a pure state machine (BEP 29 with LEDBAT): the
//! handshake, sequence and ack numbers (16 bits, wrapping), the bounded
//! send and receive buffers, retransmission (RTO per BEP 29; a packet is
//! lost once one sent three transmissions after it has arrived, told by
//! acks, duplicate acks and selective acks), the LEDBAT congestion window
//! and closing.
//!
//! Owns: every number of one connection. Does not own: sockets, clocks or
//! randomness — the caller passes `now`, the initial sequence number and
//! connection id, feeds received datagrams to [`Connection::receive`], and
//! sends what [`Connection::poll_transmit`] gives, to the peer's address.
//! Timestamps on the wire are microseconds since the `epoch` the caller
//! gave, wrapping at 32 bits.

use super::packet::{self, Header, Kind, Packet, MAX_SACK_LEN};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// LEDBAT's target queuing delay (BEP 29: 100 ms).
pub const TARGET_DELAY_US: i64 = 100_000;
/// The most the window grows per round trip in congestion avoidance
/// (BEP 29's `MAX_CWND_INCREASE_PACKETS_PER_RTT`, in bytes).
const MAX_CWND_INCREASE: f64 = 3000.0;
/// The smallest retransmission timeout (BEP 29: 500 ms).
const MIN_RTO: Duration = Duration::from_millis(500);
/// The largest, after backing off.
const MAX_RTO: Duration = Duration::from_secs(30);
/// The timeout before any round trip was measured (BEP 29: 1 s).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Timeouts in a row that end the connection: the peer is gone.
const MAX_TIMEOUTS: u32 = 7;
/// Duplicate acks (or selective acks past a hole) that mean "lost".
const DUP_ACKS: u32 = 3;
/// With packets in flight and no ack for this long (at least; two round
/// trips if longer), the oldest is sent again once, as a probe: when a
/// whole window is lost (a receiver that fell behind drops a burst), its
/// ack shows what is missing in one round trip instead of the 500 ms
/// retransmission timeout (TCP's tail loss probe, RFC 8985).
const MIN_PROBE: Duration = Duration::from_millis(20);
/// Packets held out of order at most (also bounded in bytes).
const MAX_REORDER: usize = 1024;
/// After this long without sending, an ack tells the peer (and any NAT)
/// that we are still here (libutp: 29 s).
const KEEPALIVE: Duration = Duration::from_secs(29);
/// Length of one bucket of the base delay history (BEP 29: a minute),
/// and how many are kept.
const DELAY_BUCKET: Duration = Duration::from_secs(60);
const DELAY_BUCKETS: usize = 13;
/// The window never falls below this (bytes): one full packet can always
/// be sent.
const MIN_CWND: f64 = 2.0 * 1400.0;

/// Limits of one connection.
#[derive(Debug, Clone)]
pub struct Config {
    /// The window we advertise: bytes held for the reader, in order and
    /// early together. The packet that fills a gap is taken if it fits
    /// beside what the reader holds, and it may release as much again
    /// (so twice this at worst).
    pub recv_buffer: usize,
    /// Bytes written and not yet acknowledged at most.
    pub send_buffer: usize,
    /// Payload bytes per packet.
    pub max_payload: usize,
    /// A connection that hears nothing at all for this long is dead.
    pub idle_timeout: Duration,
    /// A connection not established within this long is dead (SYN sent
    /// unanswered, or a SYN received and nothing after).
    pub connect_timeout: Duration,
    /// After we close, the peer has this long to acknowledge and close too.
    pub linger: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            // 1400 + 20 header + 36 sack + 28 IP/UDP fits a 1500 MTU.
            max_payload: 1400,
            // Longer than the peer workers' 180 s: for a connection in
            // use, the BitTorrent layer decides when a silent peer is gone.
            idle_timeout: Duration::from_secs(200),
            connect_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// We sent a SYN and wait for its ack.
    SynSent,
    /// We acked a SYN and wait for the first packet after it.
    SynRecv,
    Connected,
    Closed(Closed),
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Both sides sent FIN and had it acknowledged.
    Done,
    /// The peer sent `ST_RESET`.
    Reset,
    /// We reset it (an abort).
    Aborted,
    /// Packets went unacknowledged through every retransmission, or
    /// nothing was heard for the idle timeout, or the handshake did not
    /// finish in time.
    TimedOut,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Closed::Done => "closed",
            Closed::Reset => "reset by the peer",
            Closed::Aborted => "aborted",
            Closed::TimedOut => "timed out",
        })
    }
}

/// Why a received packet was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Packet(packet::PacketError),
    /// It acknowledges a packet we never sent.
    AckUnsent {
        ack_nr: u16,
        next_seq: u16,
    },
    /// Data arrived before the connection was established from our side.
    NotConnected,
    /// Data far outside the receive window.
    OutOfWindow {
        seq_nr: u16,
    },
    /// The connection has closed.
    Closed,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Packet(e) => e.fmt(f),
            Rejected::AckUnsent { ack_nr, next_seq } => write!(
                f,
                "uTP ack {ack_nr} for a packet not sent (next is {next_seq})"
            ),
            Rejected::NotConnected => f.write_str("uTP data before the connection is up"),
            Rejected::OutOfWindow { seq_nr } => {
                write!(f, "uTP packet {seq_nr} outside the receive window")
            }
            Rejected::Closed => f.write_str("uTP packet after the connection closed"),
        }
    }
}

/// `a` comes before `b`, on the 16-bit circle.
pub fn seq_before(a: u16, b: u16) -> bool {
    (b.wrapping_sub(a) as i16) > 0
}

/// What a connection did, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Data and FIN packets sent the first time.
    pub sent: u64,
    /// Packets sent again (lost, or their ack was).
    pub resent: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Losses found by duplicate or selective acks.
    pub fast_losses: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets sent, {} again ({} lost by acks, {} timeouts)",
            self.sent, self.resent, self.fast_losses, self.timeouts
        )
    }
}

/// A packet sent and not yet cumulatively acknowledged.
struct Sent {
    kind: Kind,
    payload: Vec<u8>,
    sent_at: Instant,
    transmissions: u32,
    /// Its place in the order of our transmissions (the latest).
    tx: u64,
    /// Counted as lost: not in flight until sent again.
    need_resend: bool,
    /// Acknowledged by a selective ack.
    sacked: bool,
}

pub struct Connection {
    config: Config,
    epoch: Instant,
    state: State,
    recv_id: u16,
    send_id: u16,
    /// The sequence number of our next packet.
    seq_nr: u16,
    /// The last packet of theirs received in order.
    ack_nr: u16,
    /// Our packets from `acked + 1` on, oldest first.
    sent: VecDeque<Sent>,
    /// The last of our packets the peer acknowledged cumulatively.
    acked: u16,
    bytes_in_flight: usize,
    /// Payload bytes in `sent`.
    sent_bytes: usize,
    /// Packets of `sent` marked `need_resend`.
    resends: usize,
    /// Transmissions so far, and the latest one known to have arrived: a
    /// packet sent [`DUP_ACKS`] transmissions before one that arrived,
    /// and not acknowledged, is lost (retransmissions included).
    tx_count: u64,
    tx_arrived: u64,
    /// The last time an ack moved (or the first packet went out), and
    /// whether the probe was sent since.
    progress: Instant,
    probed: bool,
    /// Resends found by acks that may go past the congestion window:
    /// packets still counted in flight may be lost too, and waiting for
    /// them to drain would wait for the timeout.
    fast_resends: usize,
    /// Written by the user, not yet in a packet.
    pending: VecDeque<u8>,
    /// In order, for the user to read.
    recv: VecDeque<u8>,
    /// Out of order: index `i` is packet `ack_nr + 2 + i`.
    reorder: VecDeque<Option<(Kind, Vec<u8>)>>,
    reorder_bytes: usize,
    /// The window the peer advertised.
    their_wnd: usize,
    /// Our window as last advertised.
    advertised: usize,
    /// Congestion window, bytes.
    cwnd: f64,
    /// Slow start while the window is under this (bytes).
    ssthresh: f64,
    last_cut: Option<Instant>,
    /// Round trip estimate and variance (µs), and the timeout.
    rtt: Option<(i64, i64)>,
    rto: Duration,
    /// When the oldest unacknowledged packet times out.
    rto_deadline: Option<Instant>,
    timeouts: u32,
    dup_acks: u32,
    /// Our clock minus theirs at their last packet: echoed back.
    reply_micro: u32,
    /// Base delay: the minimum of each bucket, newest last.
    delay_history: VecDeque<u32>,
    delay_bucket_start: Instant,
    ack_needed: bool,
    created: Instant,
    last_recv: Instant,
    last_send: Instant,
    /// Their FIN's sequence number, once seen.
    eof_seq: Option<u16>,
    /// Every byte up to their FIN was delivered.
    eof: bool,
    /// The user closed: FIN once everything written is sent.
    closing: Option<Instant>,
    fin_seq: Option<u16>,
    reset_pending: bool,
    stats: Stats,
}

/// The first `n` bytes of `q`, removed, copied as slices (collecting a
/// drain goes byte by byte).
fn take_front(q: &mut VecDeque<u8>, n: usize) -> Vec<u8> {
    let (a, b) = q.as_slices();
    let from_a = n.min(a.len());
    let mut v = Vec::with_capacity(n);
    v.extend_from_slice(&a[..from_a]);
    v.extend_from_slice(&b[..n - from_a]);
    q.drain(..n);
    v
}

/// Microseconds since `epoch`, wrapping.
fn micros(epoch: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_micros() as u32
}

impl Connection {
    fn new(config: Config, epoch: Instant, now: Instant, state: State) -> Connection {
        Connection {
            cwnd: MIN_CWND.max(2.0 * config.max_payload as f64),
            advertised: config.recv_buffer,
            config,
            epoch,
            state,
            recv_id: 0,
            send_id: 0,
            seq_nr: 0,
            ack_nr: 0,
            sent: VecDeque::new(),
            acked: 0,
            bytes_in_flight: 0,
            sent_bytes: 0,
            resends: 0,
            tx_count: 0,
            tx_arrived: 0,
            fast_resends: 0,
            progress: now,
            probed: false,
            pending: VecDeque::new(),
            recv: VecDeque::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            their_wnd: 1 << 20,
            ssthresh: f64::MAX,
            last_cut: None,
            rtt: None,
            rto: INITIAL_RTO,
            rto_deadline: None,
            timeouts: 0,
            dup_acks: 0,
            reply_micro: 0,
            delay_history: VecDeque::new(),
            delay_bucket_start: now,
            ack_needed: false,
            created: now,
            last_recv: now,
            last_send: now,
            eof_seq: None,
            eof: false,
            closing: None,
            fin_seq: None,
            reset_pending: false,
            stats: Stats::default(),
        }
    }

    /// Dialling: we receive on `recv_id` (the peer sends to it), send on
    /// `recv_id + 1`; our SYN is `seq`. The SYN is the first output.
    pub fn connect(
        recv_id: u16,
        seq: u16,
        config: Config,
        epoch: Instant,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(config, epoch, now, State::SynSent);
        c.recv_id = recv_id;
        c.send_id = recv_id.wrapping_add(1);
        c.seq_nr = seq.wrapping_add(1);
        c.acked = seq.wrapping_sub(1);
        c.resends = 1;
        c.sent.push_back(Sent {
            kind: Kind::Syn,
            payload: Vec::new(),
            sent_at: now,
            transmissions: 0,
            tx: 0,
            need_resend: true,
            sacked: false,
        });
        c
    }

    /// Accepting `syn` (a decoded `ST_SYN`): our packets start at `seq`.
    /// The ack of the SYN is the first output.
    pub fn accept(
        syn: &Header,
        seq: u16,
        config: Config,
        epoch: Instant,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(config, epoch, now, State::SynRecv);
        c.recv_id = syn.connection_id.wrapping_add(1);
        c.send_id = syn.connection_id;
        c.seq_nr = seq;
        c.acked = seq.wrapping_sub(1);
        c.ack_nr = syn.seq_nr;
        c.their_wnd = syn.wnd_size as usize;
        c.reply_micro = micros(epoch, now).wrapping_sub(syn.timestamp_us);
        c.ack_needed = true;
        c
    }

    /// The id the peer's packets carry (the key to route them here).
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Established from our side: data may flow.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Bytes the user can read now.
    pub fn readable(&self) -> usize {
        self.recv.len()
    }

    /// Every byte the peer sent was read, and it sent FIN.
    pub fn at_eof(&self) -> bool {
        self.eof && self.recv.is_empty()
    }

    /// The send buffer's size.
    pub fn send_buffer(&self) -> usize {
        self.config.send_buffer
    }

    /// Bytes the user can write now without exceeding the send buffer.
    pub fn writable(&self) -> usize {
        if self.closing.is_some() || self.is_closed() {
            return 0;
        }
        let held = self.pending.len() + self.sent_bytes;
        self.config.send_buffer.saturating_sub(held)
    }

    /// Everything written was acknowledged.
    pub fn all_acked(&self) -> bool {
        self.pending.is_empty() && self.sent.is_empty()
    }

    /// Takes as much of `bytes` as the send buffer holds; returns how many.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.writable());
        self.pending.extend(&bytes[..n]);
        n
    }

    /// Reads in-order bytes; 0 when none are there (see [`Self::at_eof`]).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.recv.len());
        let (a, b) = self.recv.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.recv.drain(..n);
        // Tell a sender we stalled that the window opened again.
        if self.window() >= self.advertised + self.config.recv_buffer / 4 {
            self.ack_needed = true;
        }
        n
    }

    /// Closes our direction: FIN after everything written.
    pub fn close(&mut self, now: Instant) {
        if self.closing.is_none() && !self.is_closed() {
            self.closing = Some(now);
        }
    }

    /// Ends the connection at once with a reset.
    pub fn abort(&mut self) {
        if !self.is_closed() {
            self.reset_pending = true;
            self.state = State::Closed(Closed::Aborted);
        }
    }

    /// The window we advertise: free receive buffer.
    fn window(&self) -> usize {
        self.config
            .recv_buffer
            .saturating_sub(self.recv.len() + self.reorder_bytes)
    }

    /// Handles one datagram from the peer (already routed here by its
    /// connection id).
    pub fn receive(&mut self, datagram: &[u8], now: Instant) -> Result<(), Rejected> {
        let p = packet::decode(datagram).map_err(Rejected::Packet)?;
        self.handle(&p, now)
    }

    pub fn handle(&mut self, p: &Packet<'_>, now: Instant) -> Result<(), Rejected> {
        let h = &p.header;
        if self.state == State::Closed(Closed::Done) && h.kind == Kind::Fin {
            self.ack_needed = true; // our ack of their FIN was lost
            return Ok(());
        }
        if self.is_closed() {
            return Err(Rejected::Closed);
        }
        if h.kind == Kind::Reset {
            self.state = State::Closed(Closed::Reset);
            return Ok(());
        }
        if h.kind == Kind::Syn {
            // Our ack of it was lost: say it again.
            if self.state != State::SynSent && h.seq_nr == self.syn_seq() {
                self.ack_needed = true;
            }
            return Ok(());
        }
        // The ack must be for something we sent.
        let last_sent = self.seq_nr.wrapping_sub(1);
        if h.kind != Kind::Syn && seq_before(last_sent, h.ack_nr) {
            return Err(Rejected::AckUnsent {
                ack_nr: h.ack_nr,
                next_seq: self.seq_nr,
            });
        }
        match self.state {
            State::SynSent => {
                if h.kind != Kind::State {
                    return Err(Rejected::NotConnected);
                }
                self.state = State::Connected;
                self.ack_nr = h.seq_nr.wrapping_sub(1);
            }
            // The first packet after the SYN must ack our numbers: a
            // spoofed sender, who never saw our ack, would have to guess
            // them (16 bits) to take a connection slot.
            State::SynRecv if seq_before(h.ack_nr, self.acked) => {
                return Err(Rejected::NotConnected)
            }
            State::SynRecv => self.state = State::Connected,
            _ => {}
        }
        self.last_recv = now;
        self.their_wnd = h.wnd_size as usize;
        self.reply_micro = micros(self.epoch, now).wrapping_sub(h.timestamp_us);
        self.on_ack(p, now);
        let data = match h.kind {
            Kind::Data | Kind::Fin => self.on_data(h.kind, h.seq_nr, p.payload),
            _ => Ok(()),
        };
        self.check_done();
        self.check();
        data
    }

    /// The counters agree with the packets (debug builds: every test).
    fn check(&self) {
        if cfg!(debug_assertions) {
            let resends = self.sent.iter().filter(|s| s.need_resend).count();
            let in_flight: usize = self
                .sent
                .iter()
                .filter(|s| !s.need_resend && !s.sacked)
                .map(|s| s.payload.len())
                .sum();
            debug_assert_eq!(self.resends, resends, "packets to resend");
            let bytes: usize = self.sent.iter().map(|s| s.payload.len()).sum();
            debug_assert_eq!(self.sent_bytes, bytes, "bytes sent, not acknowledged");
            debug_assert_eq!(self.bytes_in_flight, in_flight, "bytes in flight");
            // Early packets fit the window; the packet that fills the gap
            // fits what the reader holds, and may release as much again.
            debug_assert!(self.reorder_bytes <= self.config.recv_buffer);
            debug_assert!(self.reorder_bytes + self.recv.len() <= 2 * self.config.recv_buffer);
        }
    }

    /// The seq of the SYN we accepted (the packet before the first data).
    fn syn_seq(&self) -> u16 {
        self.ack_nr
    }

    fn on_ack(&mut self, p: &Packet<'_>, now: Instant) {
        let h = &p.header;
        let in_flight_before = self.bytes_in_flight;
        let mut acked_bytes = 0;
        let mut new_ack = false;
        let mut resent_arrived = false;
        while !self.sent.is_empty() && seq_before(self.acked, h.ack_nr) {
            let s = self.sent.pop_front().expect("checked non-empty");
            resent_arrived |= s.transmissions > 1;
            self.acked = self.acked.wrapping_add(1);
            self.tx_arrived = self.tx_arrived.max(s.tx);
            self.sent_bytes -= s.payload.len();
            new_ack = true;
            if !s.need_resend && !s.sacked {
                self.bytes_in_flight -= s.payload.len();
            }
            if s.need_resend {
                self.resends -= 1;
                // Acked before its resend: it no longer owes one.
                self.fast_resends = self.fast_resends.min(self.resends);
            }
            if !s.sacked {
                acked_bytes += s.payload.len();
            }
            if s.transmissions == 1 && !s.sacked {
                self.rtt_sample(now.saturating_duration_since(s.sent_at));
            }
        }
        if new_ack {
            self.timeouts = 0;
            self.dup_acks = 0;
            self.progress = now;
            self.probed = false;
            self.rto_deadline = (!self.sent.is_empty()).then(|| now + self.rto);
        } else if h.kind == Kind::State
            && p.payload.is_empty()
            && h.ack_nr == self.acked
            && !self.sent.is_empty()
        {
            self.dup_acks += 1;
            if self.dup_acks == DUP_ACKS {
                self.lost(0, now);
            }
        }
        if let Some(mask) = p.sack {
            acked_bytes += self.on_sack(h.ack_nr, mask, now);
        }
        if resent_arrived {
            // A retransmission (the probe, say) arrived: what was sent
            // before it and is still missing is lost.
            self.lose_overtaken(self.sent.len(), now);
        }
        if acked_bytes > 0 {
            self.on_acked(acked_bytes, in_flight_before, h.timestamp_diff_us, now);
        }
    }

    /// Marks the packets a selective ack names; returns their bytes.
    fn on_sack(&mut self, ack_nr: u16, mask: &[u8], now: Instant) -> usize {
        let mut bytes = 0;
        let mut last = 0;
        // Index in `sent` of packet `ack_nr + 2` (the first the mask names).
        let base = ack_nr
            .wrapping_add(2)
            .wrapping_sub(self.acked.wrapping_add(1)) as usize;
        for bit in 0..mask.len() * 8 {
            if mask[bit / 8] & (1 << (bit % 8)) == 0 {
                continue;
            }
            let Some(s) = self.sent.get_mut(base + bit) else {
                break;
            };
            last = base + bit;
            self.tx_arrived = self.tx_arrived.max(s.tx);
            if !s.sacked {
                s.sacked = true;
                bytes += s.payload.len();
                if s.need_resend {
                    self.resends -= 1;
                    self.fast_resends = self.fast_resends.min(self.resends);
                } else {
                    self.bytes_in_flight -= s.payload.len();
                }
                s.need_resend = false;
            }
        }
        // The holes before the last packet the mask names.
        self.lose_overtaken(last.min(self.sent.len()), now);
        bytes
    }

    /// Among the first `n` packets of `sent`: those still missing that
    /// were sent three transmissions or more before one that arrived are
    /// lost.
    fn lose_overtaken(&mut self, n: usize, now: Instant) {
        let lost: Vec<usize> = (0..n)
            .filter(|&i| {
                let s = &self.sent[i];
                !s.sacked && !s.need_resend && s.tx + u64::from(DUP_ACKS) <= self.tx_arrived
            })
            .collect();
        for i in lost {
            self.lost(i, now);
        }
    }

    /// Packet `index` of `sent` is lost: send it again, and halve the
    /// window (once per round trip).
    fn lost(&mut self, index: usize, now: Instant) {
        if let Some(s) = self.sent.get_mut(index) {
            if !s.need_resend && !s.sacked {
                s.need_resend = true;
                self.resends += 1;
                self.fast_resends += 1;
                self.bytes_in_flight -= s.payload.len();
                self.stats.fast_losses += 1;
            }
        }
        let rtt = Duration::from_micros(self.rtt.map_or(100_000, |(r, _)| r.max(0) as u64));
        if self.last_cut.is_none_or(|t| now.duration_since(t) > rtt) {
            self.last_cut = Some(now);
            self.ssthresh = (self.cwnd / 2.0).max(self.min_cwnd());
            self.cwnd = self.ssthresh;
        }
    }

    fn min_cwnd(&self) -> f64 {
        MIN_CWND.max(2.0 * self.config.max_payload as f64)
    }

    /// BEP 29: rtt and rtt_var follow each sample; the timeout is
    /// rtt + 4 × rtt_var, at least [`MIN_RTO`].
    fn rtt_sample(&mut self, sample: Duration) {
        let m = sample.as_micros().min(i64::MAX as u128) as i64;
        let (rtt, var) = match self.rtt {
            None => (m, m / 2),
            Some((rtt, var)) => {
                let delta = rtt - m;
                (rtt + (m - rtt) / 8, var + (delta.abs() - var) / 4)
            }
        };
        self.rtt = Some((rtt, var));
        let rto = Duration::from_micros((rtt + 4 * var).max(0) as u64);
        self.rto = rto.clamp(MIN_RTO, MAX_RTO);
    }

    /// LEDBAT (BEP 29): the window grows while the queuing delay our
    /// packets meet is under the target and shrinks above it; slow start
    /// doubles it per round trip until the delay or a loss says stop.
    fn on_acked(&mut self, bytes: usize, in_flight_before: usize, delay: u32, now: Instant) {
        let queuing = self.queuing_delay(delay, now);
        // Grow only a window that was in use: an idle one says nothing.
        let window_full = in_flight_before + self.config.max_payload >= self.cwnd as usize;
        if !window_full {
            return;
        }
        let off_target = (TARGET_DELAY_US - queuing) as f64 / TARGET_DELAY_US as f64;
        if self.cwnd < self.ssthresh && queuing < TARGET_DELAY_US / 2 {
            self.cwnd += bytes as f64;
        } else {
            if self.cwnd < self.ssthresh {
                self.ssthresh = self.cwnd; // the delay says: enough
            }
            let gain = MAX_CWND_INCREASE * off_target * bytes as f64 / self.cwnd.max(1.0);
            self.cwnd += gain;
        }
        let cap = (self.config.send_buffer as f64).max(self.min_cwnd());
        self.cwnd = self.cwnd.clamp(self.min_cwnd(), cap);
    }

    /// Our packets' delay over the base delay (the least seen in the last
    /// [`DELAY_BUCKETS`] minutes), from the peer's timestamp difference.
    fn queuing_delay(&mut self, delay: u32, now: Instant) -> i64 {
        if delay == 0 {
            return 0; // the peer had no sample yet
        }
        if now.duration_since(self.delay_bucket_start) >= DELAY_BUCKET
            || self.delay_history.is_empty()
        {
            self.delay_bucket_start = now;
            self.delay_history.push_back(delay);
            if self.delay_history.len() > DELAY_BUCKETS {
                self.delay_history.pop_front();
            }
        }
        let current = self.delay_history.back_mut().expect("pushed above");
        // The difference of two clocks wraps: compare on the circle.
        if (delay.wrapping_sub(*current) as i32) < 0 {
            *current = delay;
        }
        let base = self
            .delay_history
            .iter()
            .copied()
            .min_by_key(|d| d.wrapping_sub(delay) as i32)
            .expect("not empty");
        i64::from((delay.wrapping_sub(base) as i32).max(0))
    }

    fn on_data(&mut self, kind: Kind, seq: u16, payload: &[u8]) -> Result<(), Rejected> {
        self.ack_needed = true;
        let expected = self.ack_nr.wrapping_add(1);
        if seq_before(seq, expected) {
            return Ok(()); // a duplicate: the ack says we have it
        }
        let ahead = seq.wrapping_sub(expected) as usize;
        if ahead > MAX_REORDER {
            return Err(Rejected::OutOfWindow { seq_nr: seq });
        }
        // Over the window we advertised: dropped. The packet that fills
        // the gap counts against what the reader holds only (not the
        // early packets it releases), or a full reorder buffer would
        // refuse the one packet that empties it.
        let room = if ahead == 0 {
            self.config.recv_buffer.saturating_sub(self.recv.len())
        } else {
            self.window()
        };
        if payload.len() > room {
            return Ok(());
        }
        if kind == Kind::Fin && self.eof_seq.is_none() {
            self.eof_seq = Some(seq);
        }
        if self.eof_seq.is_some_and(|eof| seq_before(eof, seq)) {
            return Ok(()); // nothing counts after their FIN
        }
        if ahead == 0 {
            self.deliver(kind, payload);
            while let Some(next) = self.reorder.pop_front() {
                match next {
                    Some((kind, data)) => {
                        self.reorder_bytes -= data.len();
                        self.deliver(kind, &data);
                    }
                    None => break,
                }
            }
            // `reorder[0]` was packet `ack_nr + 2` before delivering; pop
            // left it aligned, except when the first slot was empty.
            self.realign();
        } else {
            let i = ahead - 1;
            if self.reorder.len() <= i {
                self.reorder.resize_with(i + 1, || None);
            }
            if self.reorder[i].is_none() {
                self.reorder_bytes += payload.len();
                self.reorder[i] = Some((kind, payload.to_vec()));
            }
        }
        Ok(())
    }

    fn deliver(&mut self, kind: Kind, payload: &[u8]) {
        self.ack_nr = self.ack_nr.wrapping_add(1);
        self.recv.extend(payload);
        if kind == Kind::Fin {
            self.eof = true;
        }
    }

    /// After delivery, `reorder[0]` stands for packet `ack_nr + 2` (the
    /// loop popped the `None` of the missing `ack_nr + 1`); empty slots
    /// at the back hold nothing and go.
    fn realign(&mut self) {
        while self.reorder.back().is_some_and(Option::is_none) {
            self.reorder.pop_back();
        }
    }

    fn check_done(&mut self) {
        let fin_acked = self
            .fin_seq
            .is_some_and(|f| !seq_before(self.acked, f) && self.sent.is_empty());
        if fin_acked && self.eof {
            self.state = State::Closed(Closed::Done);
        }
    }

    /// Runs the timers: retransmission, keep-alive, idle and handshake
    /// timeouts, the linger after closing.
    pub fn tick(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        let since_recv = now.saturating_duration_since(self.last_recv);
        let dead = match self.state {
            State::SynSent | State::SynRecv => {
                now.saturating_duration_since(self.created) > self.config.connect_timeout
            }
            _ => since_recv > self.config.idle_timeout,
        } || self
            .closing
            .is_some_and(|t| now.saturating_duration_since(t) > self.config.linger);
        if dead {
            self.state = State::Closed(Closed::TimedOut);
            return;
        }
        let srtt = Duration::from_micros(self.rtt.map_or(0, |(r, _)| r.max(0) as u64));
        if self.state == State::Connected
            && !self.probed
            && self.resends == 0
            && self.sent.front().is_some_and(|s| s.transmissions > 0)
            && now.saturating_duration_since(self.progress) >= (2 * srtt).max(MIN_PROBE)
        {
            self.probed = true;
            if let Some(s) = self.sent.front_mut() {
                if !s.sacked {
                    s.need_resend = true;
                    self.resends += 1;
                    self.fast_resends += 1;
                    self.bytes_in_flight -= s.payload.len();
                }
            }
        }
        if let Some(deadline) = self.rto_deadline {
            if now >= deadline && !self.sent.is_empty() {
                self.timeouts += 1;
                self.stats.timeouts += 1;
                if self.timeouts > MAX_TIMEOUTS {
                    self.state = State::Closed(Closed::TimedOut);
                    return;
                }
                self.rto = (self.rto * 2).min(MAX_RTO);
                // Slow start again, up to half the window that timed out.
                self.ssthresh = (self.cwnd / 2.0).max(self.min_cwnd());
                self.cwnd = self.min_cwnd();
                self.fast_resends = 0; // go back N, as the window allows
                for s in self.sent.iter_mut() {
                    if !s.need_resend && !s.sacked {
                        s.need_resend = true;
                        self.resends += 1;
                        self.bytes_in_flight -= s.payload.len();
                    }
                }
                self.rto_deadline = Some(now + self.rto);
            }
        }
        self.check();
        if self.state == State::Connected
            && now.saturating_duration_since(self.last_send) >= KEEPALIVE
        {
            self.ack_needed = true;
        }
    }

    fn header(&self, kind: Kind, seq_nr: u16, now: Instant) -> Header {
        Header {
            kind,
            connection_id: if kind == Kind::Syn {
                self.recv_id
            } else {
                self.send_id
            },
            timestamp_us: micros(self.epoch, now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.window().min(u32::MAX as usize) as u32,
            seq_nr,
            ack_nr: self.ack_nr,
        }
    }

    /// The selective ack of what we hold out of order, if anything.
    fn sack(&self) -> Option<[u8; MAX_SACK_LEN]> {
        if self.reorder.is_empty() {
            return None;
        }
        let mut mask = [0u8; MAX_SACK_LEN];
        for (i, slot) in self.reorder.iter().enumerate().take(MAX_SACK_LEN * 8) {
            if slot.is_some() {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        Some(mask)
    }

    fn emit(&mut self, kind: Kind, seq: u16, payload: &[u8], now: Instant, out: &mut Vec<u8>) {
        let header = self.header(kind, seq, now);
        let sack = self.sack();
        let sack = sack.as_ref().map(|m| {
            // Trim to the bytes in use, a multiple of 4.
            let used = self.reorder.len().min(MAX_SACK_LEN * 8).div_ceil(8);
            &m[..used.div_ceil(4) * 4]
        });
        packet::encode(&header, sack, payload, out);
        self.advertised = header.wnd_size as usize;
        self.ack_needed = false;
        self.last_send = now;
    }

    /// The next datagram to send, appended to `out` (cleared first); false
    /// when there is nothing to send now. Call until false after every
    /// change (a received datagram, a write, a read, a tick).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        if self.reset_pending {
            self.reset_pending = false;
            let h = self.header(Kind::Reset, self.seq_nr, now);
            packet::encode(&h, None, &[], out);
            return true;
        }
        if self.is_closed() {
            // The last ack, of their FIN.
            return self.state == State::Closed(Closed::Done) && self.poll_ack(now, out);
        }
        let window = (self.cwnd as usize).min(self.their_wnd);
        // Lost packets first, oldest first.
        let first_resend = match self.resends {
            0 => None,
            _ => self.sent.iter().position(|s| s.need_resend),
        };
        if let Some(i) = first_resend {
            let len = self.sent[i].payload.len();
            let fast = self.fast_resends > 0;
            if fast || self.bytes_in_flight == 0 || self.bytes_in_flight + len <= window {
                self.fast_resends = self.fast_resends.saturating_sub(1);
                let seq = self.acked.wrapping_add(1).wrapping_add(i as u16);
                let s = &mut self.sent[i];
                s.need_resend = false;
                self.resends -= 1;
                s.transmissions += 1;
                self.tx_count += 1;
                s.tx = self.tx_count;
                self.stats.resent += 1;
                s.sent_at = now;
                let (kind, payload) = (s.kind, std::mem::take(&mut s.payload));
                self.bytes_in_flight += payload.len();
                self.emit(kind, seq, &payload, now, out);
                self.sent[i].payload = payload;
                if self.rto_deadline.is_none() {
                    self.rto_deadline = Some(now + self.rto);
                }
                return true;
            }
            return self.poll_ack(now, out);
        }
        if self.state == State::SynSent {
            return false;
        }
        // New data, as the windows allow.
        if !self.pending.is_empty() && self.sent.len() < usize::from(u16::MAX / 2) {
            let len = self.pending.len().min(self.config.max_payload);
            if self.bytes_in_flight == 0 || self.bytes_in_flight + len <= window {
                let payload = take_front(&mut self.pending, len);
                self.send_new(Kind::Data, payload, now, out);
                return true;
            }
        }
        if self.closing.is_some() && self.pending.is_empty() && self.fin_seq.is_none() {
            self.fin_seq = Some(self.seq_nr);
            self.send_new(Kind::Fin, Vec::new(), now, out);
            return true;
        }
        self.poll_ack(now, out)
    }

    fn poll_ack(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if !self.ack_needed {
            return false;
        }
        self.emit(Kind::State, self.seq_nr, &[], now, out);
        true
    }

    fn send_new(&mut self, kind: Kind, payload: Vec<u8>, now: Instant, out: &mut Vec<u8>) {
        let seq = self.seq_nr;
        self.seq_nr = self.seq_nr.wrapping_add(1);
        self.stats.sent += 1;
        self.tx_count += 1;
        self.emit(kind, seq, &payload, now, out);
        self.bytes_in_flight += payload.len();
        self.sent_bytes += payload.len();
        if self.sent.is_empty() {
            self.progress = now;
            self.probed = false;
        }
        self.sent.push_back(Sent {
            kind,
            payload,
            sent_at: now,
            transmissions: 1,
            tx: self.tx_count,
            need_resend: false,
            sacked: false,
        });
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto);
        }
    }
}
