//! `FakePeer`: one BEP 3 connection dialled to the peer under test, driven
//! step by step from the test thread and built from `shoal::proto::wire`
//! alone. The peer under test is a seeder (`shoal seed`, a `shoal get` that
//! uploads, or the harness's own [`FakeSeeder`](super::FakeSeeder)) or a
//! `shoal get` that listens. So the fake can behave well (interested, wait
//! for unchoke, request, verify), send exactly the bytes a misbehaving peer
//! would, or play a seeder that answers requests with bytes of the test's
//! choosing (a liar). It is the only wire-level fake peer that dials out.
//!
//! No threads: every read waits at most [`READ_POLL`] and every helper takes
//! a deadline, so a peer that never answers fails the test in seconds.
//! The connection closes on drop.

use super::torrent::Torrent;
use sha1::{Digest, Sha1};
use shoal::proto::wire::{self, Decoded, Handshake, Message, WireError};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one blocking read waits before the helpers look at their
/// deadlines again.
const READ_POLL: Duration = Duration::from_millis(50);
/// Connecting and the handshake: a peer on 127.0.0.1 answers in
/// milliseconds; this is for a loaded CI machine.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// A message from the peer under test, owned; or what happened instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    /// BEP 6.
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    AllowedFast(u32),
    /// BEP 10.
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    /// Any other message, by name.
    Other(&'static str),
    /// The peer closed the connection (end of file or reset).
    Closed,
    /// Nothing within the wait.
    Quiet,
    /// Bytes that shoal::proto::wire refuses.
    Malformed(WireError),
}

impl Got {
    /// Short form for assertion messages (no 16 KiB block dumps).
    pub fn brief(&self) -> String {
        match self {
            Got::Piece { index, begin, data } => {
                format!("piece({index}, {begin}, {} bytes)", data.len())
            }
            Got::Bitfield(b) => format!("bitfield({} bytes)", b.len()),
            other => format!("{other:?}"),
        }
    }
}

pub struct FakePeer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The other side's handshake.
    pub theirs: Handshake,
    /// Messages received so far, keep-alives not counted.
    messages: u64,
    /// Blocks (`piece` messages) received so far.
    pub blocks: u64,
    /// Everything but blocks and keep-alives, in order (for messages).
    pub seen: Vec<String>,
}

impl FakePeer {
    /// Connects and shakes hands (no extension bits: plain BEP 3), with a
    /// fresh peer id, so that two fakes never look like one peer connecting
    /// twice. Panics if the peer does not answer with the same info hash in
    /// time.
    pub fn connect(addr: SocketAddr, info_hash: [u8; 20]) -> FakePeer {
        match FakePeer::try_connect(addr, info_hash) {
            Ok(p) => {
                assert_eq!(
                    p.theirs.info_hash, info_hash,
                    "the peer at {addr} answered with another info hash"
                );
                p
            }
            Err(Got::Closed) => panic!("the peer at {addr} closed during the handshake"),
            Err(Got::Quiet) => {
                panic!("no handshake from the peer at {addr} within {HANDSHAKE_WITHIN:?}")
            }
            Err(e) => panic!("bad handshake from the peer at {addr}: {e:?}"),
        }
    }

    /// Like [`connect`](Self::connect), but whatever info hash the peer
    /// answers with is accepted (it is in `theirs`), and a peer that does
    /// not answer is `Err`: [`Got::Closed`] when it closed the connection
    /// first, [`Got::Quiet`] when no handshake came in time,
    /// [`Got::Malformed`] when it was not one. Panics only if the TCP
    /// connection cannot be made.
    pub fn try_connect(addr: SocketAddr, info_hash: [u8; 20]) -> Result<FakePeer, Got> {
        FakePeer::try_connect_with(addr, info_hash, [0; 8])
    }

    /// Connects offering the BEP 6 fast extension.
    pub fn connect_fast(addr: SocketAddr, info_hash: [u8; 20]) -> FakePeer {
        let reserved = wire::RESERVED_FAST.to_be_bytes();
        FakePeer::try_connect_with(addr, info_hash, reserved)
            .unwrap_or_else(|e| panic!("no handshake from the peer at {addr}: {e:?}"))
    }

    /// [`try_connect`](Self::try_connect) with these reserved bytes.
    pub fn try_connect_with(
        addr: SocketAddr,
        info_hash: [u8; 20],
        reserved: [u8; 8],
    ) -> Result<FakePeer, Got> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut peer_id = *b"-FP0001-000000000000";
        let tag = format!("{:06}{:06}", std::process::id() % 1_000_000, n % 1_000_000);
        peer_id[8..].copy_from_slice(tag.as_bytes());

        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_WITHIN)
            .unwrap_or_else(|e| panic!("connect to the peer at {addr}: {e}"));
        stream.set_read_timeout(Some(READ_POLL)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let mut p = FakePeer {
            stream,
            buf: Vec::new(),
            theirs: Handshake::new([0; 20], [0; 20], [0; 8]),
            messages: 0,
            blocks: 0,
            seen: Vec::new(),
        };
        let hs = Handshake::new(info_hash, peer_id, reserved);
        if p.stream.write_all(&hs.encode()).is_err() {
            return Err(Got::Closed);
        }
        let end = Instant::now() + HANDSHAKE_WITHIN;
        loop {
            match Handshake::decode(&p.buf) {
                Ok(Some(theirs)) => {
                    p.buf.drain(..wire::HANDSHAKE_LEN);
                    p.theirs = theirs;
                    return Ok(p);
                }
                Ok(None) => {}
                Err(e) => return Err(Got::Malformed(e)),
            }
            if Instant::now() >= end {
                return Err(Got::Quiet);
            }
            if !p.fill() {
                return Err(Got::Closed);
            }
        }
    }

    /// Reads once, waiting up to [`READ_POLL`]; false when the peer closed.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => false,
        }
    }

    /// Sends the messages in one write. An error means the peer has closed
    /// the connection already (which some tests expect).
    pub fn send(&mut self, msgs: &[Message<'_>]) -> std::io::Result<()> {
        let mut out = Vec::new();
        for m in msgs {
            m.encode(&mut out);
        }
        self.stream.write_all(&out)
    }

    /// Sends raw bytes (a frame `wire` would not encode).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message, waiting up to `wait`.
    pub fn next(&mut self, wait: Duration) -> Got {
        let end = Instant::now() + wait;
        loop {
            match wire::decode(&self.buf) {
                Err(e) => return Got::Malformed(e),
                Ok(Decoded::Message(m, used)) => {
                    let got = match m {
                        Message::KeepAlive => Got::KeepAlive,
                        Message::Choke => Got::Choke,
                        Message::Unchoke => Got::Unchoke,
                        Message::Interested => Got::Interested,
                        Message::NotInterested => Got::NotInterested,
                        Message::Have(i) => Got::Have(i),
                        Message::Bitfield(b) => Got::Bitfield(b.to_vec()),
                        Message::Request {
                            index,
                            begin,
                            length,
                        } => Got::Request {
                            index,
                            begin,
                            length,
                        },
                        Message::Piece { index, begin, data } => Got::Piece {
                            index,
                            begin,
                            data: data.to_vec(),
                        },
                        Message::Reject {
                            index,
                            begin,
                            length,
                        } => Got::Reject {
                            index,
                            begin,
                            length,
                        },
                        Message::AllowedFast(i) => Got::AllowedFast(i),
                        Message::Extended { id, payload } => Got::Extended {
                            id,
                            payload: payload.to_vec(),
                        },
                        other => Got::Other(other.name()),
                    };
                    self.buf.drain(..used);
                    match &got {
                        Got::KeepAlive => {}
                        Got::Piece { .. } => {
                            self.messages += 1;
                            self.blocks += 1;
                        }
                        other => {
                            self.messages += 1;
                            self.seen.push(other.brief());
                        }
                    }
                    return got;
                }
                Ok(Decoded::NeedMore(_)) => {}
            }
            if Instant::now() > end {
                return Got::Quiet;
            }
            if !self.fill() {
                return Got::Closed;
            }
        }
    }

    /// The next message that is not a keep-alive or `have`, nor the
    /// `bitfield` that opens the connection (a `bitfield` anywhere else is
    /// returned: BEP 3 allows it only first).
    pub fn next_significant(&mut self, wait: Duration) -> Got {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::KeepAlive | Got::Have(_) => {}
                Got::Bitfield(_) if self.messages == 1 => {}
                other => return other,
            }
        }
    }

    /// Waits for the peer's `bitfield` (a seeder sends it first): once it is
    /// here, the peer has taken the connection on.
    pub fn expect_bitfield(&mut self, wait: Duration) -> Vec<u8> {
        let end = Instant::now() + wait;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::KeepAlive => {}
                Got::Bitfield(b) => return b,
                other => panic!(
                    "expected the peer's bitfield first, got {} (seen: {:?})",
                    other.brief(),
                    self.seen
                ),
            }
        }
    }

    /// Sends `interested` and waits for `unchoke`; panics if it does not
    /// come.
    pub fn interested(&mut self, wait: Duration) {
        if let Err(e) = self.try_interested(wait) {
            panic!("{e}");
        }
    }

    /// Sends `interested` and waits for `unchoke`; `Err` says what came
    /// instead.
    pub fn try_interested(&mut self, wait: Duration) -> Result<(), String> {
        self.send(&[Message::Interested])
            .map_err(|e| format!("send interested: {e}"))?;
        match self.next_significant(wait) {
            Got::Unchoke => Ok(()),
            other => Err(format!(
                "expected unchoke within {wait:?} of interested, got {} (seen: {:?})",
                other.brief(),
                self.seen
            )),
        }
    }

    /// Requests every block of piece `i` (16 KiB each, the last one
    /// shorter), collects them, and checks the piece's SHA-1 against the
    /// torrent. Panics on anything but blocks of that piece.
    pub fn fetch_piece(&mut self, t: &Torrent, i: u32, wait: Duration) -> Vec<u8> {
        let (piece, got, stop) = self.collect_piece(t, i, wait);
        if let Some(other) = stop {
            panic!(
                "fetching piece {i}: got {} with {} of {} blocks in (seen: {:?})",
                other.brief(),
                got.iter().filter(|g| **g).count(),
                got.len(),
                self.seen
            );
        }
        let hash: [u8; 20] = Sha1::digest(&piece).into();
        assert_eq!(
            hash, t.hashes[i as usize],
            "piece {i} from the peer fails its SHA-1"
        );
        piece
    }

    /// Requests every block of piece `i` like [`fetch_piece`](Self::fetch_piece)
    /// but checks no hash and tolerates an answer cut short: returns the
    /// bytes that came, from the start of the piece up to the first block
    /// missing, and what stopped the blocks coming — `None` once the piece
    /// is complete, else the first message that was not a block of it
    /// (`Quiet` when `wait` passed first). Panics on a block of another
    /// piece, at an offset not asked for, of the wrong length, or twice.
    pub fn fetch_blocks(&mut self, t: &Torrent, i: u32, wait: Duration) -> (Vec<u8>, Option<Got>) {
        let (mut piece, got, stop) = self.collect_piece(t, i, wait);
        let prefix = got.iter().take_while(|g| **g).count() as u32 * wire::MAX_BLOCK;
        piece.truncate(piece.len().min(prefix as usize));
        (piece, stop)
    }

    /// Sends a request for each block of piece `i` and reads until every
    /// block is in or something else comes: the piece (zeros where blocks
    /// are missing), which blocks came, and what stopped it early.
    fn collect_piece(
        &mut self,
        t: &Torrent,
        i: u32,
        wait: Duration,
    ) -> (Vec<u8>, Vec<bool>, Option<Got>) {
        let len = t.piece_range(i).len();
        let blocks: Vec<(u32, u32)> = blocks_of(t, i).collect();
        let reqs: Vec<Message<'_>> = blocks
            .iter()
            .map(|&(begin, length)| Message::Request {
                index: i,
                begin,
                length,
            })
            .collect();
        self.send(&reqs)
            .unwrap_or_else(|e| panic!("send requests for piece {i}: {e}"));
        let mut piece = vec![0u8; len];
        let mut got = vec![false; blocks.len()];
        let end = Instant::now() + wait;
        while got.iter().any(|g| !g) {
            let left = end.saturating_duration_since(Instant::now());
            match self.next_significant(left) {
                Got::Piece { index, begin, data } if index == i => {
                    let k = (begin / wire::MAX_BLOCK) as usize;
                    assert!(
                        begin % wire::MAX_BLOCK == 0 && k < got.len() && !got[k],
                        "piece {i}: unexpected or repeated block at offset {begin}"
                    );
                    assert_eq!(
                        data.len(),
                        blocks[k].1 as usize,
                        "piece {i}: the block at offset {begin} has the wrong length"
                    );
                    piece[begin as usize..begin as usize + data.len()].copy_from_slice(&data);
                    got[k] = true;
                }
                Got::Piece { index, begin, .. } => {
                    panic!("fetching piece {i}: got a block of piece {index} at {begin}")
                }
                other => return (piece, got, Some(other)),
            }
        }
        (piece, got, None)
    }

    /// Reads (and drops) whatever comes until the peer closes the
    /// connection; `Ok(how long it took)`, or `Err` with what came instead
    /// when it is still open after `wait`.
    pub fn closed_within(&mut self, wait: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let end = start + wait;
        let mut other = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Closed => return Ok(start.elapsed()),
                Got::Quiet => {
                    return Err(format!(
                        "still open after {wait:?}; received meanwhile: {other:?}; \
                         before: {:?}",
                        self.seen
                    ))
                }
                Got::Malformed(e) => return Err(format!("malformed bytes from the peer: {e}")),
                got => {
                    if other.len() < 20 {
                        other.push(got.brief());
                    }
                }
            }
        }
    }

    /// Plays a seeder: answers each `request` with a `piece` message
    /// holding `block(index, begin, length)` — a liar, when those bytes are
    /// wrong — and ignores everything else, until the peer closes the
    /// connection or `within` passes. Returns how many requests it answered
    /// and what ended it: [`Got::Closed`], [`Got::Quiet`] (still open after
    /// `within`) or [`Got::Malformed`].
    pub fn answer_requests(
        &mut self,
        within: Duration,
        mut block: impl FnMut(u32, u32, u32) -> Vec<u8>,
    ) -> (u32, Got) {
        let end = Instant::now() + within;
        let mut answered = 0;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.next(left) {
                Got::Request {
                    index,
                    begin,
                    length,
                } => {
                    answered += 1;
                    let data = block(index, begin, length);
                    let piece = Message::Piece {
                        index,
                        begin,
                        data: &data,
                    };
                    if self.send(&[piece]).is_err() {
                        return (answered, Got::Closed);
                    }
                }
                stop @ (Got::Closed | Got::Quiet | Got::Malformed(_)) => return (answered, stop),
                _ => {}
            }
        }
    }
}

/// The (begin, length) of each block of piece `i`.
pub fn blocks_of(t: &Torrent, i: u32) -> impl Iterator<Item = (u32, u32)> {
    let len = t.piece_range(i).len() as u32;
    (0..len.div_ceil(wire::MAX_BLOCK)).map(move |k| {
        let begin = k * wire::MAX_BLOCK;
        (begin, (len - begin).min(wire::MAX_BLOCK))
    })
}
