//! Peer workers: the threads that own one peer's blocking `TcpStream`.
//!
//! Owns: connecting with a deadline, the handshake (and refusing a wrong
//! info hash or a connection to ourselves), framing in both directions,
//! per-message validation that needs no torrent state (frame caps, bitfield
//! size, piece indices in range), keep-alives, and socket timeouts. Does not
//! own: any decision. A worker reports what the peer said as [`Event`]s and
//! does what the orchestrator sends as [`Command`]s; it never re-queues
//! work.
//!
//! Each connected peer has two threads: the reader (which also connected
//! and shook hands) and the writer. The orchestrator holds a clone of the
//! socket and shuts it down to drop a peer at once; either thread failing
//! shuts the socket down too. The reader reports [`Event::Closed`] exactly
//! once, without waiting for the writer, which ends when the orchestrator
//! then drops the peer's command queue.

use crate::bitfield::Bitfield;
use crate::geometry::Block;
use crate::metainfo::InfoHash;
use crate::picker::PeerKey;
use crate::storage::Reader;
use crate::wire::{self, Handshake, Message};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Fixed settings shared by every worker of one torrent.
#[derive(Clone)]
pub struct Settings {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub num_pieces: u32,
    /// TCP connect deadline: a peer that does not answer in this long is
    /// unreachable for now.
    pub connect_timeout: Duration,
    /// A peer that sends nothing at all (not even a keep-alive) for this
    /// long is gone. BEP 3 keep-alives come every ~2 minutes.
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive: Duration,
    /// Data source for uploads.
    pub storage: Option<Reader>,
}

/// How long the handshake may take once connected: a real peer answers in
/// milliseconds; a slow one is not worth a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that does not read what we send for this long is dropped, so a
/// blocked write never holds a thread for long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Read buffer: large enough that a 16 KiB block usually arrives in one
/// read call alongside its neighbours.
const READ_BUFFER: usize = 64 * 1024;

/// One `piece` message's block.
#[derive(Debug)]
pub struct BlockData {
    pub piece: u32,
    pub begin: u32,
    pub data: Vec<u8>,
}

/// Block bytes handed to the orchestrator in one event at most.
const BATCH_BYTES: usize = 64 * 1024;

/// Orchestrator → worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    /// Send our BEP 10 extension handshake (this payload).
    ExtensionHandshake(Vec<u8>),
    /// Ask for these blocks (one command for a whole top-up).
    Requests(Vec<Block>),
    Cancel(Block),
    /// Read this block from storage and send it.
    Upload(Block),
    /// The peer cancelled its request: do not send this block if it is
    /// still queued.
    DropUpload(Block),
}

/// Worker → orchestrator.
#[derive(Debug)]
pub enum Event {
    /// Handshake done. `socket` lets the orchestrator shut the connection.
    Connected {
        peer: PeerKey,
        id: [u8; 20],
        /// The peer speaks BEP 10: send it our extension handshake.
        extended: bool,
        socket: TcpStream,
    },
    /// The peer's BEP 10 extension handshake.
    PeerInfo(PeerKey, crate::extension::PeerInfo),
    Choke(PeerKey),
    Unchoke(PeerKey),
    Interested(PeerKey),
    NotInterested(PeerKey),
    Have(PeerKey, u32),
    /// A validated bitfield (right length, spare bits clear).
    Bitfield(PeerKey, Bitfield),
    Request(PeerKey, u32, u32, u32),
    Cancel(PeerKey, u32, u32, u32),
    /// Blocks of data, in arrival order (not yet matched against our
    /// requests).
    Blocks {
        peer: PeerKey,
        blocks: Vec<BlockData>,
    },
    /// Blocks we sent since the last report (for upload accounting).
    Uploaded {
        peer: PeerKey,
        blocks: u32,
        bytes: u32,
    },
    /// The connection is over; `reason` says why.
    Closed {
        peer: PeerKey,
        reason: String,
    },
}

/// Connects to `addr` and runs the peer until the connection ends.
/// Blocks: call it on its own thread.
pub fn run_outbound(
    peer: PeerKey,
    addr: SocketAddr,
    settings: Settings,
    commands: Receiver<Command>,
    events: Sender<Event>,
) {
    let result = TcpStream::connect_timeout(&addr, settings.connect_timeout)
        .map_err(|e| format!("connect: {}", crate::sys::io_reason(&e)))
        .and_then(|stream| {
            let theirs = handshake(&stream, &settings, true)?;
            serve(peer, theirs, stream, &settings, commands, &events)
        });
    let reason = result.err().unwrap_or_else(|| "closed".into());
    let _ = events.send(Event::Closed { peer, reason });
}

/// Runs an accepted connection (the remote already sent its handshake
/// first, which [`handshake`] reads before answering).
pub fn run_inbound(
    peer: PeerKey,
    stream: TcpStream,
    settings: Settings,
    commands: Receiver<Command>,
    events: Sender<Event>,
) {
    let result = handshake(&stream, &settings, false)
        .and_then(|theirs| serve(peer, theirs, stream, &settings, commands, &events));
    let reason = result.err().unwrap_or_else(|| "closed".into());
    let _ = events.send(Event::Closed { peer, reason });
}

/// Exchanges handshakes. Outbound sends first; inbound reads first so it
/// never tells a stranger which torrent it serves before they name it.
fn handshake(stream: &TcpStream, s: &Settings, outbound: bool) -> Result<Handshake, String> {
    let reserved = wire::RESERVED_EXTENDED.to_be_bytes();
    let ours = Handshake::new(s.info_hash.0, s.peer_id, reserved).encode();
    let mut stream = stream;
    // One deadline for the whole exchange, not per read: a peer dribbling a
    // byte every few seconds must not hold a connection slot for minutes.
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    stream
        .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(|e| format!("socket: {e}"))?;
    if outbound {
        stream
            .write_all(&ours)
            .map_err(|e| io_error("handshake", &e))?;
    }
    let mut buf = [0u8; wire::HANDSHAKE_LEN];
    read_exact_by(stream, &mut buf, deadline).map_err(|e| io_error("handshake", &e))?;
    let theirs = Handshake::decode(&buf)
        .map_err(|e| e.to_string())?
        .ok_or("short handshake")?;
    if theirs.info_hash != s.info_hash.0 {
        return Err(format!(
            "handshake for another torrent ({})",
            crate::hex::encode(&theirs.info_hash)
        ));
    }
    if theirs.peer_id == s.peer_id {
        return Err("connected to ourselves".into());
    }
    if !outbound {
        stream
            .write_all(&ours)
            .map_err(|e| io_error("handshake", &e))?;
    }
    Ok(theirs)
}

/// `read_exact` that gives up at `deadline`, however the bytes trickle in.
fn read_exact_by(mut stream: &TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn io_error(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("{what}: timed out"),
        io::ErrorKind::UnexpectedEof => format!("{what}: connection closed"),
        _ => format!("{what}: {}", crate::sys::io_reason(e)),
    }
}

/// After the handshake: start the writer, then read until the end.
fn serve(
    peer: PeerKey,
    theirs: Handshake,
    stream: TcpStream,
    s: &Settings,
    commands: Receiver<Command>,
    events: &Sender<Event>,
) -> Result<(), String> {
    let setup = |stream: &TcpStream| -> io::Result<(TcpStream, TcpStream)> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(s.idle_timeout))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok((stream.try_clone()?, stream.try_clone()?))
    };
    let (writer_socket, handle) = setup(&stream).map_err(|e| format!("socket: {e}"))?;
    events
        .send(Event::Connected {
            peer,
            id: theirs.peer_id,
            extended: theirs.supports_extended(),
            socket: handle,
        })
        .map_err(|_| "shutting down")?;
    {
        let s = s.clone();
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("peer-{peer}-w"))
            .spawn(move || write_loop(peer, writer_socket, &s, commands, &events))
            .map_err(|e| format!("spawn writer: {e}"))?;
    }
    let result = read_loop(peer, &stream, s.num_pieces, events);
    // The writer is not joined: it may be asleep waiting for a command, and
    // `Closed` must reach the orchestrator now (it frees the peer's slot).
    // The writer ends as soon as the orchestrator drops its queue.
    let _ = stream.shutdown(Shutdown::Both);
    result
}

fn read_loop(
    peer: PeerKey,
    stream: &TcpStream,
    num_pieces: u32,
    events: &Sender<Event>,
) -> Result<(), String> {
    let mut r = BufReader::with_capacity(READ_BUFFER, stream);
    let mut payload = Vec::new();
    let mut first = true;
    // Blocks already read but not yet handed over: sent as one event when
    // the next read could block, before any other event (order matters),
    // or at BATCH_BYTES — one channel hand-off per read instead of per block.
    let mut batch: Vec<BlockData> = Vec::new();
    let mut batch_bytes = 0;
    let flush = |batch: &mut Vec<BlockData>, bytes: &mut usize| {
        *bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(batch);
        events
            .send(Event::Blocks { peer, blocks })
            .map_err(|_| "shutting down".to_string())
    };
    loop {
        if !whole_frame_buffered(r.buffer()) || batch_bytes >= BATCH_BYTES {
            flush(&mut batch, &mut batch_bytes)?;
        }
        let mut prefix = [0u8; 4];
        r.read_exact(&mut prefix)
            .map_err(|e| io_error("read", &e))?;
        let len = wire::frame_len(prefix).map_err(|e| e.to_string())?;
        if len == 0 {
            continue; // keep-alive: the read itself reset the idle timer
        }
        let mut id = [0u8; 1];
        r.read_exact(&mut id).map_err(|e| io_error("read", &e))?;
        wire::check_frame(id[0], len).map_err(|e| e.to_string())?;
        let event = if id[0] == wire::PIECE {
            let mut header = [0u8; 8];
            r.read_exact(&mut header)
                .map_err(|e| io_error("read", &e))?;
            let mut data = vec![0u8; len as usize - 9];
            r.read_exact(&mut data).map_err(|e| io_error("read", &e))?;
            batch_bytes += data.len();
            batch.push(BlockData {
                piece: u32::from_be_bytes(header[..4].try_into().expect("4 bytes")),
                begin: u32::from_be_bytes(header[4..].try_into().expect("4 bytes")),
                data,
            });
            first = false;
            continue;
        } else {
            payload.resize(len as usize - 1, 0);
            r.read_exact(&mut payload)
                .map_err(|e| io_error("read", &e))?;
            let msg = wire::decode_payload(id[0], &payload).map_err(|e| e.to_string())?;
            // BEP 10 peers may send their extension handshake before the
            // bitfield; only BEP 3 messages end the bitfield's turn.
            let extension = matches!(msg, Message::Extended { .. });
            let event = to_event(peer, msg, num_pieces, first)?;
            first &= extension;
            match event {
                Some(e) => e,
                None => continue,
            }
        };
        flush(&mut batch, &mut batch_bytes)?;
        events.send(event).map_err(|_| "shutting down")?;
    }
}

/// Whether `buf` starts with a whole frame, so reading it cannot block.
fn whole_frame_buffered(buf: &[u8]) -> bool {
    buf.get(..4).is_some_and(|prefix| {
        let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes"));
        buf.len() as u64 >= 4 + u64::from(len)
    })
}

/// Checks what needs no torrent state and turns a message into an event;
/// `None` for messages we ignore.
fn to_event(
    peer: PeerKey,
    msg: Message,
    num_pieces: u32,
    first: bool,
) -> Result<Option<Event>, String> {
    let in_range = |i: u32, what: &str| {
        if i < num_pieces {
            Ok(i)
        } else {
            Err(format!("{what} for piece {i}, torrent has {num_pieces}"))
        }
    };
    Ok(Some(match msg {
        Message::Choke => Event::Choke(peer),
        Message::Unchoke => Event::Unchoke(peer),
        Message::Interested => Event::Interested(peer),
        Message::NotInterested => Event::NotInterested(peer),
        Message::Have(i) => Event::Have(peer, in_range(i, "have")?),
        Message::Bitfield(bytes) if first => Event::Bitfield(
            peer,
            Bitfield::from_bytes(bytes, num_pieces).map_err(|e| e.to_string())?,
        ),
        Message::Bitfield(_) => return Err("bitfield after the first message".into()),
        Message::Request {
            index,
            begin,
            length,
        } => Event::Request(peer, in_range(index, "request")?, begin, length),
        Message::Cancel {
            index,
            begin,
            length,
        } => Event::Cancel(peer, index, begin, length),
        // We do not offer the fast extension (BEP 6), so its messages are
        // a protocol error.
        Message::HaveAll
        | Message::HaveNone
        | Message::Reject { .. }
        | Message::AllowedFast(_)
        | Message::Suggest(_) => return Err(format!("{} without the fast extension", msg.name())),
        Message::Piece { .. } => return Err("piece frame on the wrong path".into()),
        Message::Extended {
            id: crate::extension::HANDSHAKE_ID,
            payload,
        } => Event::PeerInfo(peer, crate::extension::parse_handshake(payload)?),
        // DHT port, extension messages (we offer none) and unknown ids:
        // ignored, as BEP 3 asks.
        Message::KeepAlive
        | Message::Port(_)
        | Message::Extended { .. }
        | Message::Unknown { .. } => return Ok(None),
    }))
}

/// Requests a peer may have queued with us at once; more are ignored. We
/// tell peers this figure as BEP 10 `reqq`; it bounds our memory.
pub const MAX_QUEUED_UPLOADS: usize = 512;
/// Bytes gathered into one `write` call at most.
const WRITE_BATCH: usize = 256 * 1024;

/// Sends what the orchestrator commands. Uploads wait in a queue here, so
/// a `cancel` can still remove them and our `choke` drops them; their data
/// is read from storage on this thread, never the orchestrator's.
fn write_loop(
    peer: PeerKey,
    socket: TcpStream,
    s: &Settings,
    commands: Receiver<Command>,
    events: &Sender<Event>,
) {
    let mut out = Vec::with_capacity(WRITE_BATCH);
    let mut block = Vec::new();
    let mut uploads: VecDeque<Block> = VecDeque::new();
    let mut socket = socket;
    let result = (|| -> Result<(), String> {
        loop {
            out.clear();
            // Wait only when there is nothing to upload.
            let first = if uploads.is_empty() {
                match commands.recv_timeout(s.keepalive) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => {
                        Message::KeepAlive.encode(&mut out);
                        None
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            } else {
                None
            };
            for cmd in first.into_iter().chain(commands.try_iter()) {
                match cmd {
                    Command::Upload(b) if uploads.len() < MAX_QUEUED_UPLOADS => {
                        uploads.push_back(b)
                    }
                    Command::Upload(b) => {
                        log::debug!("peer {peer}: upload queue full, ignoring {b:?}")
                    }
                    Command::DropUpload(b) => uploads.retain(|q| *q != b),
                    Command::Choke => {
                        uploads.clear();
                        Message::Choke.encode(&mut out);
                    }
                    other => encode(&other, &mut out),
                }
                if out.len() >= WRITE_BATCH {
                    break;
                }
            }
            let (mut blocks, mut bytes) = (0, 0);
            while out.len() < WRITE_BATCH {
                let Some(b) = uploads.pop_front() else { break };
                let reader = s.storage.as_ref().ok_or("upload without storage")?;
                block.resize(b.len as usize, 0);
                reader
                    .read(b.piece, b.begin, &mut block)
                    .map_err(|e| format!("reading block for upload: {e}"))?;
                wire::encode_piece_header(b.piece.get(), b.begin, b.len, &mut out);
                out.extend_from_slice(&block);
                blocks += 1;
                bytes += b.len;
            }
            if !out.is_empty() {
                socket.write_all(&out).map_err(|e| io_error("write", &e))?;
            }
            if blocks > 0 {
                let _ = events.send(Event::Uploaded {
                    peer,
                    blocks,
                    bytes,
                });
            }
        }
    })();
    if let Err(e) = result {
        log::debug!("peer {peer}: {e}");
    }
    let _ = socket.shutdown(Shutdown::Both);
}

/// Appends one control message's frame (uploads are handled by the
/// writer's queue).
fn encode(cmd: &Command, out: &mut Vec<u8>) {
    let msg = match cmd {
        Command::Choke => Message::Choke,
        Command::Unchoke => Message::Unchoke,
        Command::Interested => Message::Interested,
        Command::NotInterested => Message::NotInterested,
        Command::Have(i) => Message::Have(*i),
        Command::Bitfield(bytes) => Message::Bitfield(bytes),
        Command::ExtensionHandshake(payload) => Message::Extended {
            id: crate::extension::HANDSHAKE_ID,
            payload,
        },
        Command::Requests(blocks) => {
            for b in blocks {
                Message::Request {
                    index: b.piece.get(),
                    begin: b.begin,
                    length: b.len,
                }
                .encode(out);
            }
            return;
        }
        Command::Cancel(b) => Message::Cancel {
            index: b.piece.get(),
            begin: b.begin,
            length: b.len,
        },
        Command::Upload(_) | Command::DropUpload(_) => return,
    };
    msg.encode(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A peer that sends a byte every 50 ms never trips a per-read
    /// timeout; the whole-handshake deadline still ends it.
    #[test]
    fn a_dribbling_handshake_times_out_on_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let dribbler = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for _ in 0..wire::HANDSHAKE_LEN {
                if s.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let (stream, _) = listener.accept().unwrap();
        let start = Instant::now();
        let mut buf = [0u8; wire::HANDSHAKE_LEN];
        let err = read_exact_by(&stream, &mut buf, start + Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
        drop(stream);
        dribbler.join().unwrap();
    }
}
