//! `FakeSeeder`: a BEP 3 peer on 127.0.0.1 that serves one torrent's data,
//! well or (on purpose) badly, and counts what it was asked for.
//!
//! One accept thread, one thread per connection. Per connection: read the
//! 68-byte handshake; refuse (close) a wrong info hash; answer with our own
//! handshake (no extension bits, so the client must speak plain BEP 3);
//! advertise pieces with a `bitfield`; unchoke on `interested`; queue
//! `request`s and answer them one block at a time with `piece` messages,
//! reading between blocks so a `cancel` removes a queued request
//! (best-effort, as in real clients). Requests that arrive while we choke
//! are dropped, as BEP 3 says.
//!
//! Every socket has a read timeout and every thread a lifetime
//! ([`SeederConfig::lifetime`]): dropping the seeder or reaching the
//! lifetime closes every connection within ~100 ms, so a hung test fails
//! instead of hanging, and no thread outlives the test by more than that.

use super::torrent::Torrent;
use super::Rng;
use shoal::proto::bitfield::Bitfield;
use shoal::proto::wire::{self, Decoded, Handshake, Message};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked reads wake up to look at the stop flag and lifetime.
const POLL: Duration = Duration::from_millis(100);
/// A client that connects must send its handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that cannot make progress for this long drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a seeder behaves. Every connection behaves the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves every request correctly.
    Good,
    /// Every block of piece `n` it sends has one byte flipped (so any block
    /// of it from this seeder spoils the piece); other pieces are good.
    CorruptPiece(u32),
    /// Closes the connection right after sending `k` blocks on it (pick `k`
    /// that is not a multiple of the blocks per piece to cut mid-piece).
    DisconnectAfterBlocks(u32),
    /// Sends `choke` right after `k` blocks on a connection, drops every
    /// queued request, and never unchokes that connection again (it stays
    /// open; later requests are ignored). The client must re-issue the
    /// requests that were outstanding elsewhere.
    ChokeAfterBlocks(u32),
    /// Right after the handshake sends 4 KiB of random bytes whose length
    /// prefix is over any frame limit, then reads until the client closes.
    Garbage,
    /// Advertises and unchokes, reads and counts requests, never sends a
    /// block. Sends a keep-alive every second: keep-alives are not data, so
    /// a client must still time the peer out.
    Stall,
    /// Answers the handshake with another info hash (every byte inverted),
    /// then behaves like `Good` — so any request it receives is the
    /// client's mistake.
    WrongInfoHash,
    /// Sends no bitfield; announces each piece with a `have` instead.
    HaveOnly,
    /// Sends neither bitfield nor `have` (a peer with nothing).
    Silent,
}

/// Everything about a seeder besides the torrent.
#[derive(Debug, Clone)]
pub struct SeederConfig {
    pub behaviour: Behaviour,
    /// The pieces it has and advertises; `None` for all.
    pub pieces: Option<Vec<u32>>,
    /// Wait this long after `interested` before unchoking (to let another,
    /// misbehaving seeder be used first).
    pub unchoke_delay: Duration,
    /// Sleep before sending each block (a slow peer).
    pub block_delay: Duration,
    /// The seeder closes everything this long after it started.
    pub lifetime: Duration,
}

impl Default for SeederConfig {
    fn default() -> Self {
        SeederConfig {
            behaviour: Behaviour::Good,
            pieces: None,
            unchoke_delay: Duration::ZERO,
            block_delay: Duration::ZERO,
            lifetime: Duration::from_secs(120),
        }
    }
}

impl SeederConfig {
    pub fn new(behaviour: Behaviour) -> SeederConfig {
        SeederConfig {
            behaviour,
            ..SeederConfig::default()
        }
    }

    pub fn unchoke_delay(mut self, d: Duration) -> SeederConfig {
        self.unchoke_delay = d;
        self
    }

    pub fn block_delay(mut self, d: Duration) -> SeederConfig {
        self.block_delay = d;
        self
    }

    pub fn pieces(mut self, pieces: Vec<u32>) -> SeederConfig {
        self.pieces = Some(pieces);
        self
    }
}

/// What a seeder saw and did, shared with the test.
#[derive(Debug)]
pub struct SeederStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Handshakes received with our info hash.
    pub handshakes: AtomicU64,
    /// Handshakes refused (wrong protocol string or info hash).
    pub bad_handshakes: AtomicU64,
    /// `interested` messages received.
    pub interested: AtomicU64,
    /// `request` messages received (valid or not, choked or not).
    pub requests: AtomicU64,
    /// Requests out of range, empty, or over 16 KiB; each closes the
    /// connection.
    pub bad_requests: AtomicU64,
    /// Requests received while we were choking the client (dropped).
    pub requests_while_choked: AtomicU64,
    pub cancels: AtomicU64,
    /// Blocks sent (`piece` messages).
    pub blocks_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Frames from the client that shoal::proto::wire refused; each closes the
    /// connection.
    pub protocol_errors: AtomicU64,
    /// Connections the client closed (end of file or reset).
    pub closed_by_peer: AtomicU64,
    /// Requests per piece index.
    per_piece: Vec<AtomicU64>,
    /// When the first block was sent, and when the client first closed a
    /// connection.
    first_block_at: Mutex<Option<Instant>>,
    first_close_by_peer_at: Mutex<Option<Instant>>,
}

impl SeederStats {
    fn new(pieces: u32) -> SeederStats {
        let z = || AtomicU64::new(0);
        SeederStats {
            connections: z(),
            handshakes: z(),
            bad_handshakes: z(),
            interested: z(),
            requests: z(),
            bad_requests: z(),
            requests_while_choked: z(),
            cancels: z(),
            blocks_sent: z(),
            bytes_sent: z(),
            protocol_errors: z(),
            closed_by_peer: z(),
            per_piece: (0..pieces).map(|_| z()).collect(),
            first_block_at: Mutex::new(None),
            first_close_by_peer_at: Mutex::new(None),
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        Self::get(&self.connections)
    }

    pub fn requests(&self) -> u64 {
        Self::get(&self.requests)
    }

    pub fn blocks_sent(&self) -> u64 {
        Self::get(&self.blocks_sent)
    }

    /// Requests received for piece `i`.
    pub fn requests_for(&self, i: u32) -> u64 {
        Self::get(&self.per_piece[i as usize])
    }

    /// Indices of the pieces that received at least one request.
    pub fn requested_pieces(&self) -> Vec<u32> {
        (0..self.per_piece.len() as u32)
            .filter(|&i| self.requests_for(i) > 0)
            .collect()
    }

    pub fn first_block_at(&self) -> Option<Instant> {
        *self.first_block_at.lock().unwrap()
    }

    pub fn first_close_by_peer_at(&self) -> Option<Instant> {
        *self.first_close_by_peer_at.lock().unwrap()
    }

    /// One line for assertion messages.
    pub fn summary(&self) -> String {
        let g = Self::get;
        format!(
            "connections {} handshakes {} bad_handshakes {} interested {} requests {} \
             bad_requests {} requests_while_choked {} cancels {} blocks_sent {} \
             protocol_errors {} closed_by_peer {}",
            g(&self.connections),
            g(&self.handshakes),
            g(&self.bad_handshakes),
            g(&self.interested),
            g(&self.requests),
            g(&self.bad_requests),
            g(&self.requests_while_choked),
            g(&self.cancels),
            g(&self.blocks_sent),
            g(&self.protocol_errors),
            g(&self.closed_by_peer),
        )
    }
}

fn set_once(slot: &Mutex<Option<Instant>>) {
    let mut s = slot.lock().unwrap();
    if s.is_none() {
        *s = Some(Instant::now());
    }
}

/// What every connection thread of one seeder shares.
struct Shared {
    torrent: Arc<Torrent>,
    config: SeederConfig,
    have: Bitfield,
    stats: Arc<SeederStats>,
    stop: AtomicBool,
    deadline: Instant,
    peer_id: [u8; 20],
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() > self.deadline
    }
}

/// A fake peer that seeds one torrent on 127.0.0.1. Stops on drop.
pub struct FakeSeeder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeSeeder {
    /// A seeder with `behaviour` and otherwise default settings.
    pub fn start(torrent: &Torrent, behaviour: Behaviour) -> FakeSeeder {
        Self::with(torrent, SeederConfig::new(behaviour))
    }

    pub fn with(torrent: &Torrent, config: SeederConfig) -> FakeSeeder {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind seeder");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let n = torrent.num_pieces();
        let have = match &config.pieces {
            None => Bitfield::full(n),
            Some(list) => {
                let mut b = Bitfield::new(n);
                list.iter().for_each(|&i| b.set(i));
                b
            }
        };
        let mut peer_id = *b"-FS0001-000000000000";
        let id = format!("{:012}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        peer_id[8..].copy_from_slice(id.as_bytes());
        let shared = Arc::new(Shared {
            torrent: Arc::new(torrent.clone()),
            deadline: Instant::now() + config.lifetime,
            config,
            have,
            stats: Arc::new(SeederStats::new(n)),
            stop: AtomicBool::new(false),
            peer_id,
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("seeder-{addr}"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn seeder");
        FakeSeeder {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as `--peer` wants it.
    pub fn peer_arg(&self) -> String {
        self.addr.to_string()
    }

    pub fn stats(&self) -> &SeederStats {
        &self.shared.stats
    }
}

impl Drop for FakeSeeder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(&shared);
                conns.push(thread::spawn(move || {
                    let _ = serve(stream, &s);
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
        conns.retain(|t| !t.is_finished());
    }
    for t in conns {
        let _ = t.join();
    }
}

/// Result of one read attempt.
enum Got {
    Bytes,
    Nothing,
    Closed,
}

/// One connection: a socket, its receive buffer, and the stop conditions.
struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    shared: &'a Shared,
}

impl Conn<'_> {
    /// Reads what is there; waits up to [`POLL`] if `block`.
    fn read_some(&mut self, block: bool) -> std::io::Result<Got> {
        self.stream.set_nonblocking(!block)?;
        let mut chunk = [0u8; 32 * 1024];
        let r = self.stream.read(&mut chunk);
        self.stream.set_nonblocking(false)?;
        match r {
            Ok(0) => Ok(Got::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(Got::Bytes)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Ok(Got::Nothing)
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                Ok(Got::Closed)
            }
            Err(e) => Err(e),
        }
    }

    fn peer_closed(&self) {
        let stats = &self.shared.stats;
        stats.closed_by_peer.fetch_add(1, Ordering::SeqCst);
        set_once(&stats.first_close_by_peer_at);
    }

    fn send(&mut self, msg: &Message<'_>) -> std::io::Result<()> {
        let mut out = Vec::new();
        msg.encode(&mut out);
        self.stream.write_all(&out)
    }

    /// Reads until the client closes (or we stop), ignoring what it sends.
    fn drain_until_closed(&mut self) -> std::io::Result<()> {
        while !self.shared.stopping() {
            self.buf.clear();
            if let Got::Closed = self.read_some(true)? {
                self.peer_closed();
                break;
            }
        }
        Ok(())
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut c = Conn {
        stream,
        buf: Vec::new(),
        shared,
    };
    let stats = &shared.stats;
    let torrent = &shared.torrent;
    let behaviour = shared.config.behaviour;

    // Handshake.
    let started = Instant::now();
    let theirs = loop {
        match Handshake::decode(&c.buf) {
            Ok(Some(hs)) => break hs,
            Ok(None) => {}
            Err(_) => {
                stats.bad_handshakes.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
        }
        if shared.stopping() || started.elapsed() > HANDSHAKE_TIMEOUT {
            return Ok(());
        }
        if let Got::Closed = c.read_some(true)? {
            c.peer_closed();
            return Ok(());
        }
    };
    c.buf.drain(..wire::HANDSHAKE_LEN);
    if theirs.info_hash != torrent.info_hash {
        stats.bad_handshakes.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    stats.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut reply_hash = torrent.info_hash;
    if behaviour == Behaviour::WrongInfoHash {
        reply_hash.iter_mut().for_each(|b| *b = !*b);
    }
    c.stream
        .write_all(&Handshake::new(reply_hash, shared.peer_id, [0; 8]).encode())?;

    // What we have.
    match behaviour {
        Behaviour::Garbage => {
            let mut junk = vec![0u8; 4096];
            Rng::new(u64::from(c.stream.local_addr()?.port())).fill(&mut junk);
            junk[0] = 0xFF; // length prefix far over any frame limit
            c.stream.write_all(&junk)?;
            return c.drain_until_closed();
        }
        Behaviour::Silent => {}
        Behaviour::HaveOnly => {
            for i in shared.have.iter_set() {
                c.send(&Message::Have(i))?;
            }
        }
        _ => c.send(&Message::Bitfield(shared.have.as_bytes()))?,
    }

    let mut choking = true;
    let mut choked_for_good = false;
    let mut unchoke_at: Option<Instant> = None;
    let mut queue: VecDeque<(u32, u32, u32)> = VecDeque::new();
    let mut blocks_on_conn = 0u32;
    let mut last_keepalive = Instant::now();
    loop {
        if shared.stopping() {
            return Ok(());
        }
        // Read: wait for input only when there is nothing to send.
        let idle = queue.is_empty() || choking;
        match c.read_some(idle)? {
            Got::Closed => {
                c.peer_closed();
                return Ok(());
            }
            Got::Bytes | Got::Nothing => {}
        }
        // Handle every whole frame received.
        loop {
            let (msg_end, msg) = match wire::decode(&c.buf) {
                Ok(Decoded::NeedMore(_)) => break,
                Ok(Decoded::Message(m, used)) => (used, owned(&m)),
                Err(_) => {
                    stats.protocol_errors.fetch_add(1, Ordering::SeqCst);
                    return Ok(());
                }
            };
            c.buf.drain(..msg_end);
            match msg {
                In::Interested => {
                    stats.interested.fetch_add(1, Ordering::SeqCst);
                    if choking && !choked_for_good && unchoke_at.is_none() {
                        unchoke_at = Some(Instant::now() + shared.config.unchoke_delay);
                    }
                }
                In::Request(index, begin, length) => {
                    stats.requests.fetch_add(1, Ordering::SeqCst);
                    if let Some(n) = stats.per_piece.get(index as usize) {
                        n.fetch_add(1, Ordering::SeqCst);
                    }
                    let piece_len = if index < torrent.num_pieces() {
                        torrent.piece_range(index).len() as u64
                    } else {
                        0
                    };
                    let valid = index < torrent.num_pieces()
                        && shared.have.get(index)
                        && length > 0
                        && length <= wire::MAX_BLOCK
                        && u64::from(begin) + u64::from(length) <= piece_len;
                    if !valid {
                        stats.bad_requests.fetch_add(1, Ordering::SeqCst);
                        let _ = c.stream.shutdown(Shutdown::Both);
                        return Ok(());
                    }
                    if choking {
                        stats.requests_while_choked.fetch_add(1, Ordering::SeqCst);
                    } else if behaviour != Behaviour::Stall {
                        queue.push_back((index, begin, length));
                    }
                }
                In::Cancel(index, begin, length) => {
                    stats.cancels.fetch_add(1, Ordering::SeqCst);
                    queue.retain(|&r| r != (index, begin, length));
                }
                In::Other => {}
            }
        }
        // Unchoke when due.
        if unchoke_at.is_some_and(|t| Instant::now() >= t) {
            unchoke_at = None;
            choking = false;
            c.send(&Message::Unchoke)?;
        }
        if behaviour == Behaviour::Stall && last_keepalive.elapsed() >= Duration::from_secs(1) {
            last_keepalive = Instant::now();
            c.send(&Message::KeepAlive)?;
        }
        // Send one block.
        if choking {
            continue;
        }
        let Some((index, begin, length)) = queue.pop_front() else {
            continue;
        };
        if !shared.config.block_delay.is_zero() {
            thread::sleep(shared.config.block_delay);
        }
        let start = torrent.piece_range(index).start + begin as usize;
        let mut block = torrent.data[start..start + length as usize].to_vec();
        if behaviour == Behaviour::CorruptPiece(index) {
            block[length as usize / 2] ^= 0x5A;
        }
        c.send(&Message::Piece {
            index,
            begin,
            data: &block,
        })?;
        stats.blocks_sent.fetch_add(1, Ordering::SeqCst);
        stats
            .bytes_sent
            .fetch_add(u64::from(length), Ordering::SeqCst);
        set_once(&stats.first_block_at);
        blocks_on_conn += 1;
        match behaviour {
            Behaviour::DisconnectAfterBlocks(k) if blocks_on_conn >= k => {
                let _ = c.stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            Behaviour::ChokeAfterBlocks(k) if blocks_on_conn >= k => {
                c.send(&Message::Choke)?;
                choking = true;
                choked_for_good = true;
                queue.clear();
            }
            _ => {}
        }
    }
}

/// The messages a seeder acts on, without borrowing the buffer.
enum In {
    Interested,
    Request(u32, u32, u32),
    Cancel(u32, u32, u32),
    Other,
}

fn owned(m: &Message<'_>) -> In {
    match *m {
        Message::Interested => In::Interested,
        Message::Request {
            index,
            begin,
            length,
        } => In::Request(index, begin, length),
        Message::Cancel {
            index,
            begin,
            length,
        } => In::Cancel(index, begin, length),
        _ => In::Other,
    }
}
