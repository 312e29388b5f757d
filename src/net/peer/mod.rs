//! Peer workers: the threads that own one peer's blocking [`Stream`]
//! (TCP or uTP: the workers do not care which).
//!
//! Owns: connecting with a deadline, the handshake (and refusing a wrong
//! info hash or a connection to ourselves), framing in both directions
//! through the sans-IO [`crate::proto::wire`] codec, per-message validation
//! that needs no torrent state (frame caps, bitfield size, piece indices in
//! range), keep-alives, and socket timeouts. Does not own: any decision. A
//! worker reports what the peer said as [`Event`]s and does what the
//! orchestrator sends as [`Command`]s; it never re-queues work.
//!
//! Encryption (MSE/PE, [`encryption`]) happens before the BitTorrent
//! handshake; afterwards the ciphers sit at the I/O boundary
//! ([`transport`]) and the framing code never sees them.
//!
//! Each connected peer has two threads: the reader (which also connected
//! and shook hands; [`reader`]) and the writer ([`writer`]). The
//! orchestrator holds a clone of the socket and shuts it down to drop a
//! peer at once; either thread failing shuts the socket down too. The
//! reader reports [`Event::Closed`] exactly once — also when it panics (a
//! guard sends it while unwinding) — without waiting for the writer, which
//! ends when the orchestrator then drops the peer's command queue.

mod encryption;
mod reader;
mod transport;
mod writer;

pub use encryption::Encryption;
pub use reader::buffer_pool;
pub use transport::Transport;
pub use writer::MAX_QUEUED_UPLOADS;

use crate::disk::storage::{Reader, StorageError};
pub use crate::net::stream::Stream;
use crate::proto::bitfield::{Bitfield, BitfieldError};
use crate::proto::extension::{ExtensionError, PeerInfo};
use crate::proto::geometry::Block;
use crate::proto::metainfo::InfoHash;
use crate::proto::mse::{self, MseError};
use crate::proto::wire::{self, Handshake, WireError};
use crate::util::bytes::{Bytes, Pool};
use crossbeam_channel::{Receiver, Sender};
use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A connection, as the engine numbers them.
pub type PeerKey = u64;

/// Fixed settings shared by every worker of one torrent.
#[derive(Clone)]
pub struct Settings {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    /// Unset while a magnet download fetches the metadata.
    pub num_pieces: Arc<OnceLock<u32>>,
    /// TCP connect deadline: a peer that does not answer in this long is
    /// unreachable for now.
    pub connect_timeout: Duration,
    /// Dial from this local address (else the one routing picks).
    pub source: Option<std::net::IpAddr>,
    /// The session's rate limits.
    pub throttles: crate::net::throttle::Throttles,
    /// A peer that sends nothing at all (not even a keep-alive) for this
    /// long is gone. BEP 3 keep-alives come every ~2 minutes.
    pub idle_timeout: Duration,
    /// We send a keep-alive after this long without sending anything.
    pub keepalive: Duration,
    /// Data source for uploads.
    pub storage: Arc<OnceLock<Reader>>,
    /// Whether we dial with MSE (inbound connections follow the
    /// session's policy: [`Admission`]).
    pub encryption: Encryption,
    /// We run a DHT node for this torrent: set the BEP 5 reserved bit.
    pub dht: bool,
    /// The read buffers the torrent's readers share ([`buffer_pool`]).
    pub buffers: Pool,
}

/// How long the handshake may take once connected: a real peer answers in
/// milliseconds; a slow one is not worth a slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that does not read what we send for this long is dropped, so a
/// blocked write never holds a thread for long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// One `piece` message's block.
#[derive(Debug)]
pub struct BlockData {
    pub piece: u32,
    pub begin: u32,
    /// A range of the reader's buffer, not a copy.
    pub data: Bytes,
}

/// Orchestrator → worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Several `have` messages in one command (super-seeding announces
    /// hundreds at once when it ends; one command each could fill the queue).
    Haves(Vec<u32>),
    Bitfield(Vec<u8>),
    /// BEP 6, in place of a bitfield.
    HaveAll,
    HaveNone,
    /// BEP 6: the peer may request this piece while choked.
    AllowedFast(u32),
    /// BEP 6: we will not serve this request.
    Reject(Block),
    /// BEP 5: our DHT node's UDP port.
    Port(u16),
    /// Send our BEP 10 extension handshake (this payload).
    ExtensionHandshake(Vec<u8>),
    /// A BEP 10 extension message, under the peer's id for it.
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    /// Ask for these blocks (one command for a whole top-up).
    Requests(Vec<Block>),
    Cancel(Block),
    /// Read this block from storage and send it.
    Upload(Block),
    /// The peer cancelled its request: do not send this block if it is
    /// still queued.
    DropUpload(Block),
    /// We no longer vouch for this piece (its file changed): drop every
    /// queued upload of it.
    DropPiece(u32),
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
        /// The peer speaks BEP 6 (we always do).
        fast: bool,
        /// The peer runs a DHT node (BEP 5): send it our `PORT`.
        dht: bool,
        socket: Stream,
    },
    /// BEP 5 `PORT`: the peer's DHT node listens on this UDP port.
    DhtPort(PeerKey, u16),
    /// The peer's BEP 10 extension handshake.
    PeerInfo(PeerKey, PeerInfo),
    Choke(PeerKey),
    Unchoke(PeerKey),
    Interested(PeerKey),
    NotInterested(PeerKey),
    Have(PeerKey, u32),
    /// A validated bitfield (right length, spare bits clear).
    Bitfield(PeerKey, Bitfield),
    /// What the peer has, before we know the piece count (a magnet
    /// download fetching the metadata): checked by the engine later.
    Unsized(PeerKey, Unsized),
    /// A BEP 10 extension message under one of our ids (not the
    /// handshake), at most `reader::MAX_EXTENSION_MESSAGE` bytes.
    Extension {
        peer: PeerKey,
        id: u8,
        payload: Vec<u8>,
    },
    Request(PeerKey, u32, u32, u32),
    Cancel(PeerKey, u32, u32, u32),
    /// BEP 6: the peer will not serve this request.
    Rejected(PeerKey, u32, u32, u32),
    /// BEP 6: we may request this piece even while choked.
    AllowedFast(PeerKey, u32),
    /// Blocks of data, in arrival order (not yet matched against our
    /// requests).
    Blocks {
        peer: PeerKey,
        blocks: Vec<BlockData>,
    },
    /// Payload bytes we sent since the last report (upload accounting),
    /// and the piece of each block in them, in order.
    Uploaded {
        peer: PeerKey,
        bytes: u32,
        pieces: Vec<u32>,
    },
    /// The connection is over; `reason` says why.
    Closed {
        peer: PeerKey,
        reason: CloseReason,
    },
}

/// A bitfield, or BEP 6 `have_all` (`have_none` is an empty bitfield), of
/// unknown length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsized {
    Bits(Vec<u8>),
    All,
}

impl Unsized {
    /// What it says for a torrent of `n` pieces: a bitfield must fit it
    /// (an empty one is `have_none`).
    pub fn sized(self, n: u32) -> Result<Bitfield, BitfieldError> {
        match self {
            Unsized::All => Ok(Bitfield::full(n)),
            Unsized::Bits(b) if b.is_empty() => Ok(Bitfield::new(n)),
            Unsized::Bits(b) => Bitfield::from_bytes(&b, n),
        }
    }
}

/// Where in a connection's life an I/O error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Connect,
    /// The MSE exchange, before the BitTorrent handshake.
    Encryption,
    Handshake,
    Read,
    Write,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Encryption => "encryption handshake",
            Phase::Handshake => "handshake",
            Phase::Read => "read",
            Phase::Write => "write",
        })
    }
}

/// A rule of the protocol the peer broke (it costs the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A frame the codec refused (too large, wrong size for its id, ...).
    Wire(WireError),
    /// A bitfield of the wrong length or with spare bits set.
    Bitfield(BitfieldError),
    /// A malformed BEP 10 handshake.
    Extension(ExtensionError),
    /// `have` or `request` for a piece past the end of the torrent.
    PieceOutOfRange {
        msg: &'static str,
        index: u32,
        num_pieces: u32,
    },
    /// A BEP 6 message from a peer that did not offer BEP 6.
    FastWithoutExtension(&'static str),
    /// An extension message (this id, this many bytes) over
    /// `reader::MAX_EXTENSION_MESSAGE`.
    ExtensionTooLarge(u8, usize),
    /// A failed MSE handshake.
    Encryption(MseError),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Wire(e) => e.fmt(f),
            Violation::Bitfield(e) => e.fmt(f),
            Violation::Extension(e) => e.fmt(f),
            Violation::PieceOutOfRange {
                msg,
                index,
                num_pieces,
            } => write!(f, "{msg} for piece {index}, torrent has {num_pieces}"),
            Violation::FastWithoutExtension(msg) => {
                write!(f, "{msg} without the fast extension")
            }
            Violation::ExtensionTooLarge(id, len) => write!(
                f,
                "extension message {id} of {len} bytes (at most {})",
                reader::MAX_EXTENSION_MESSAGE
            ),
            Violation::Encryption(e) => e.fmt(f),
        }
    }
}

/// Why a connection ended. The engine decides on these variants (a wrong
/// info hash or ourselves bans the address), never on their text.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer ended the connection, or we did (shutdown of the socket).
    Closed,
    /// A deadline passed: connecting, the whole handshake, or the idle
    /// timeout between frames.
    TimedOut(Phase),
    /// The connection ended inside a phase (EOF mid-frame, reset, ...).
    Io(Phase, io::Error),
    /// The handshake named another torrent (this info hash).
    WrongInfoHash([u8; 20]),
    /// We dialled ourselves.
    Ourselves,
    /// The peer broke the protocol.
    Protocol(Violation),
    /// An inbound plaintext connection under `--encryption require`.
    PlaintextRefused,
    /// An inbound MSE connection under `--encryption off`.
    EncryptedRefused,
    /// The engine stopped listening to us (it is shutting down).
    Shutdown,
    /// No thread could be had for the writer.
    Spawn(io::Error),
    /// The reader thread panicked (a bug); the guard reports it.
    Panicked,
}

impl CloseReason {
    /// Whether the address should never be dialled again this session.
    pub fn bans(&self) -> bool {
        matches!(self, CloseReason::WrongInfoHash(_) | CloseReason::Ourselves)
    }

    /// The peer hung up during the MSE exchange: a plaintext-only peer
    /// does that, so `prefer` dials it again in plaintext.
    fn hung_up_on_encryption(&self) -> bool {
        matches!(self, CloseReason::Io(Phase::Encryption, _))
    }

    fn io(phase: Phase, e: io::Error) -> CloseReason {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CloseReason::TimedOut(phase),
            _ => CloseReason::Io(phase, e),
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Closed => f.write_str("closed"),
            CloseReason::TimedOut(phase) => write!(f, "{phase}: timed out"),
            CloseReason::Io(phase, e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "{phase}: connection closed")
            }
            CloseReason::Io(phase, e) => {
                write!(f, "{phase}: {}", crate::disk::sys::io_reason(e))
            }
            CloseReason::WrongInfoHash(h) => write!(
                f,
                "handshake for another torrent ({})",
                crate::util::hex::encode(h)
            ),
            CloseReason::Ourselves => f.write_str("connected to ourselves"),
            CloseReason::Protocol(v) => v.fmt(f),
            CloseReason::PlaintextRefused => {
                f.write_str("plaintext connection refused (--encryption require)")
            }
            CloseReason::EncryptedRefused => {
                f.write_str("encrypted connection refused (--encryption off)")
            }
            CloseReason::Shutdown => f.write_str("shutting down"),
            CloseReason::Spawn(e) => write!(f, "cannot start the writer thread: {e}"),
            CloseReason::Panicked => f.write_str("peer thread panicked"),
        }
    }
}

impl From<Violation> for CloseReason {
    fn from(v: Violation) -> CloseReason {
        CloseReason::Protocol(v)
    }
}

impl From<WireError> for CloseReason {
    fn from(e: WireError) -> CloseReason {
        CloseReason::Protocol(Violation::Wire(e))
    }
}

/// Why the writer stopped (logged only: the reader reports the close).
#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    NoStorage,
    Read(StorageError),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Io(e) => write!(f, "write: {}", crate::disk::sys::io_reason(e)),
            WriteError::NoStorage => f.write_str("upload without storage"),
            WriteError::Read(e) => write!(f, "reading block for upload: {e}"),
        }
    }
}

/// Sends [`Event::Closed`] when dropped, so that the reader reports its end
/// exactly once however it ends — a panic included (the peer's slot and
/// upload slot are freed, not leaked).
struct CloseGuard<'a> {
    peer: PeerKey,
    events: &'a Sender<Event>,
    reason: Option<CloseReason>,
}

impl Drop for CloseGuard<'_> {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(CloseReason::Panicked);
        let _ = self.events.send(Event::Closed {
            peer: self.peer,
            reason,
        });
    }
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
    reporting_close(peer, &events, |events| {
        let (stream, theirs, transport) = dial(addr, &settings)?;
        serve(peer, theirs, stream, transport, &settings, commands, events)
    });
}

/// Connects and shakes hands as the policy says: MSE first unless it is
/// `off`; under `prefer`, a peer that hangs up on MSE is dialled again at
/// once in plaintext (as libtorrent and aria2 do).
fn dial(addr: SocketAddr, s: &Settings) -> Result<Connected, CloseReason> {
    let connect = || {
        match s.source {
            Some(ip) => crate::disk::sys::connect_from(ip, addr, s.connect_timeout),
            None => TcpStream::connect_timeout(&addr, s.connect_timeout),
        }
        .map(Stream::Tcp)
        .map_err(|e| CloseReason::io(Phase::Connect, e))
    };
    let encrypt = s.encryption != Encryption::Off;
    match handshake(connect()?, s, encrypt) {
        Err(e) if s.encryption == Encryption::Prefer && e.hung_up_on_encryption() => {
            log::debug!("{addr}: {e}; dialling again in plaintext");
            handshake(connect()?, s, false)
        }
        other => other,
    }
}

/// A connection whose BitTorrent handshake is done: the socket, the
/// peer's handshake, and how bytes flow.
type Connected = (Stream, Handshake, Transport);

/// An accepted connection whose handshake has been read (by the
/// listener's greeter), on its way to the torrent it names.
pub struct Inbound {
    pub stream: Stream,
    pub theirs: Handshake,
    pub transport: Transport,
}

/// How greeters treat inbound connections: the session's encryption
/// policy, and the info hashes it serves (an MSE handshake names its
/// torrent only through a hash of the info hash, so the candidates must be
/// known before the BitTorrent handshake is read).
pub struct Admission {
    pub encryption: Encryption,
    pub info_hashes: Box<dyn Fn() -> Vec<[u8; 20]> + Send + Sync>,
}

/// Reads an accepted connection's handshake — after an MSE exchange if it
/// starts with one — within the handshake deadline. We answer the
/// BitTorrent handshake only once a torrent has taken the connection
/// ([`run_inbound`]), so a stranger never learns what we serve.
pub fn read_inbound_handshake(
    stream: Stream,
    admission: &Admission,
) -> Result<Inbound, CloseReason> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut first = [0u8; mse::SNIFF_LEN];
    read_exact_by(&stream, &mut &stream, &mut first, deadline)
        .map_err(|e| CloseReason::io(Phase::Handshake, e))?;
    let plaintext = &first == wire::PROTOCOL_PREFIX;
    let policy = admission.encryption;
    let (mut transport, skey) = match (plaintext, policy) {
        (true, Encryption::Require) => return Err(CloseReason::PlaintextRefused),
        (false, Encryption::Off) => return Err(CloseReason::EncryptedRefused),
        (true, _) => (Transport::new(None, first.to_vec()), None),
        (false, _) => {
            let hashes = (admission.info_hashes)();
            let (t, skey) = encryption::receive(&stream, policy, &first, hashes, deadline)?;
            (t, Some(skey))
        }
    };
    let theirs = read_handshake(&stream, &mut transport, deadline)?;
    match skey {
        Some(skey) if skey != theirs.info_hash => Err(CloseReason::WrongInfoHash(theirs.info_hash)),
        _ => Ok(Inbound {
            stream,
            theirs,
            transport,
        }),
    }
}

/// Runs an accepted connection: answers its handshake, then serves it.
pub fn run_inbound(
    peer: PeerKey,
    inbound: Inbound,
    settings: Settings,
    commands: Receiver<Command>,
    events: Sender<Event>,
) {
    reporting_close(peer, &events, |events| {
        let Inbound {
            stream,
            theirs,
            mut transport,
        } = inbound;
        let checked = check_handshake(&theirs, &settings);
        // We answer a connection from ourselves too, and only then close
        // it: our own dialling side then sees our peer id and bans the
        // address it dialled, instead of redialling it for ever.
        if matches!(checked, Ok(()) | Err(CloseReason::Ourselves)) {
            stream
                .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
                .and_then(|()| {
                    let ours = &mut our_handshake(&settings);
                    transport.outgoing.write_all(&stream, ours)
                })
                .map_err(|e| CloseReason::io(Phase::Handshake, e))?;
        }
        checked?;
        serve(peer, theirs, stream, transport, &settings, commands, events)
    });
}

/// Runs a connection under a [`CloseGuard`]: `Closed` is sent once, with
/// the reason the connection ended (or `Panicked`).
fn reporting_close(
    peer: PeerKey,
    events: &Sender<Event>,
    run: impl FnOnce(&Sender<Event>) -> Result<(), CloseReason>,
) {
    let mut guard = CloseGuard {
        peer,
        events,
        reason: None,
    };
    guard.reason = Some(run(events).err().unwrap_or(CloseReason::Closed));
}

/// Outbound: sends our handshake (inside MSE if `encrypt`), reads theirs,
/// checks it. (Inbound connections read first: [`read_inbound_handshake`],
/// [`run_inbound`].)
fn handshake(stream: Stream, s: &Settings, encrypt: bool) -> Result<Connected, CloseReason> {
    // One deadline for the whole exchange, MSE included, not per read: a
    // peer dribbling a byte every few seconds must not hold a connection
    // slot for minutes.
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut ours = our_handshake(s);
    let mut transport = if encrypt {
        // Our handshake rides in MSE's initial payload: no extra round trip.
        encryption::initiate(&stream, s.encryption, s.info_hash.0, &ours, deadline)?
    } else {
        let mut plain = Transport::new(None, Vec::new());
        stream
            .set_write_timeout(Some(HANDSHAKE_TIMEOUT))
            .and_then(|()| plain.outgoing.write_all(&stream, &mut ours))
            .map_err(|e| CloseReason::io(Phase::Handshake, e))?;
        plain
    };
    let theirs = read_handshake(&stream, &mut transport, deadline)?;
    check_handshake(&theirs, s)?;
    Ok((stream, theirs, transport))
}

fn our_handshake(s: &Settings) -> [u8; wire::HANDSHAKE_LEN] {
    let dht = if s.dht { wire::RESERVED_DHT } else { 0 };
    let reserved = (wire::RESERVED_EXTENDED | wire::RESERVED_FAST | dht).to_be_bytes();
    Handshake::new(s.info_hash.0, s.peer_id, reserved).encode()
}

/// Reads and decodes a handshake by `deadline`, however the bytes trickle.
fn read_handshake(
    stream: &Stream,
    transport: &mut Transport,
    deadline: Instant,
) -> Result<Handshake, CloseReason> {
    let fail = |e| CloseReason::io(Phase::Handshake, e);
    let mut buf = [0u8; wire::HANDSHAKE_LEN];
    let mut source = transport.incoming.on(stream);
    read_exact_by(stream, &mut source, &mut buf, deadline).map_err(fail)?;
    // The buffer holds a whole handshake, so `decode` says yes or no.
    match Handshake::decode(&buf)? {
        Some(h) => Ok(h),
        None => Err(fail(io::ErrorKind::UnexpectedEof.into())),
    }
}

/// A handshake for this torrent, from someone other than ourselves.
fn check_handshake(theirs: &Handshake, s: &Settings) -> Result<(), CloseReason> {
    if theirs.info_hash != s.info_hash.0 {
        return Err(CloseReason::WrongInfoHash(theirs.info_hash));
    }
    if theirs.peer_id == s.peer_id {
        return Err(CloseReason::Ourselves);
    }
    Ok(())
}

/// One read from `source` (which reads `stream`) by `deadline`. The end of
/// the stream is an error: callers are inside a handshake.
fn read_by(
    stream: &Stream,
    source: &mut impl Read,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match source.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The socket's timeout is the deadline: it passed.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::ErrorKind::TimedOut.into())
            }
            Err(e) => return Err(e),
        }
    }
}

/// `read_exact` that gives up at `deadline`, however the bytes trickle in.
fn read_exact_by(
    stream: &Stream,
    source: &mut impl Read,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        filled += read_by(stream, source, &mut buf[filled..], deadline)?;
    }
    Ok(())
}

/// After the handshake: start the writer, then read until the end.
fn serve(
    peer: PeerKey,
    theirs: Handshake,
    stream: Stream,
    transport: Transport,
    s: &Settings,
    commands: Receiver<Command>,
    events: &Sender<Event>,
) -> Result<(), CloseReason> {
    let setup = |stream: &Stream| -> io::Result<(Stream, Stream)> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(s.idle_timeout))?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok((stream.try_clone()?, stream.try_clone()?))
    };
    let (writer_socket, handle) =
        setup(&stream).map_err(|e| CloseReason::io(Phase::Handshake, e))?;
    // We always offer BEP 6, so the peer's bit decides.
    let fast = theirs.supports_fast();
    events
        .send(Event::Connected {
            peer,
            id: theirs.peer_id,
            extended: theirs.supports_extended(),
            fast: theirs.supports_fast(),
            dht: theirs.supports_dht(),
            socket: handle,
        })
        .map_err(|_| CloseReason::Shutdown)?;
    let stream_kind = if transport.is_encrypted() {
        "RC4"
    } else {
        "plaintext"
    };
    log::debug!(
        "peer {peer}: handshake done, {stream_kind} over {}",
        stream.transport()
    );
    let Transport { incoming, outgoing } = transport;
    {
        let s = s.clone();
        let events = events.clone();
        std::thread::Builder::new()
            .name(format!("peer-{peer}-w"))
            .spawn(move || writer::run(peer, writer_socket, outgoing, &s, fast, commands, &events))
            .map_err(CloseReason::Spawn)?;
    }
    let result = reader::run(peer, &stream, incoming, s, fast, events);
    // The writer is not joined: it may be asleep waiting for a command, and
    // `Closed` must reach the orchestrator now (it frees the peer's slot).
    // The writer ends as soon as the orchestrator drops its queue.
    let _ = stream.shutdown(Shutdown::Both);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    /// Regression (issue 9): a reader that panics still reports `Closed`,
    /// so the engine frees the peer's slot and upload slot.
    #[test]
    fn a_panicking_reader_still_reports_closed() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let worker = std::thread::spawn(move || {
            let _guard = CloseGuard {
                peer: 7,
                events: &tx,
                reason: None,
            };
            panic!("reader bug");
        });
        assert!(worker.join().is_err());
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Closed { peer: 7, reason }) => {
                assert!(matches!(reason, CloseReason::Panicked), "{reason}")
            }
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    #[test]
    fn close_reasons_read_as_before_and_only_two_ban() {
        let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
        let table: Vec<(CloseReason, &str, bool)> = vec![
            (CloseReason::Closed, "closed", false),
            (
                CloseReason::io(Phase::Handshake, io::ErrorKind::TimedOut.into()),
                "handshake: timed out",
                false,
            ),
            (
                CloseReason::io(Phase::Read, eof),
                "read: connection closed",
                false,
            ),
            (
                CloseReason::WrongInfoHash([0xab; 20]),
                "handshake for another torrent (abababababababababababababababababababab)",
                true,
            ),
            (CloseReason::Ourselves, "connected to ourselves", true),
            (
                Violation::FastWithoutExtension("have_all").into(),
                "have_all without the fast extension",
                false,
            ),
            (
                CloseReason::io(Phase::Encryption, io::ErrorKind::ConnectionReset.into()),
                "encryption handshake: connection reset",
                false,
            ),
            (
                Violation::Encryption(MseError::UnknownInfoHash).into(),
                "encryption: handshake for another torrent",
                false,
            ),
            (
                CloseReason::PlaintextRefused,
                "plaintext connection refused (--encryption require)",
                false,
            ),
            (
                Violation::PieceOutOfRange {
                    msg: "have",
                    index: 9,
                    num_pieces: 4,
                }
                .into(),
                "have for piece 9, torrent has 4",
                false,
            ),
        ];
        for (reason, text, bans) in table {
            assert_eq!(reason.to_string(), text);
            assert_eq!(reason.bans(), bans, "{text}");
        }
    }

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
        let stream = Stream::Tcp(listener.accept().unwrap().0);
        let start = Instant::now();
        let mut buf = [0u8; wire::HANDSHAKE_LEN];
        let deadline = start + Duration::from_millis(300);
        let err = read_exact_by(&stream, &mut &stream, &mut buf, deadline).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
        drop(stream);
        dribbler.join().unwrap();
    }
}
