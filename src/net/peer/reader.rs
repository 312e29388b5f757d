//! The reader: fills a buffer from the socket and runs the sans-IO
//! [`wire::decode`] over it — the same decoder the split-point and fuzz
//! tests exercise, for every frame, `piece` included.
//!
//! Whole blocks already in the buffer are handed over as one event when
//! the next read could block (or at [`BATCH_BYTES`]): one channel hand-off
//! per read instead of per block. A block is handed over as a range of the
//! buffer it was read into ([`Bytes`]), not a copy: once one is, the reader
//! reads on into another buffer of its pool, taking along only the start
//! of a frame cut by the last read. Reads are sized to end where block
//! frames do, so that is usually nothing.

use super::transport::Incoming;
use super::{BlockData, CloseReason, Event, PeerKey, Phase, Settings, Unsized, Violation};
use crate::net::stream::Stream;
use crate::proto::bitfield::Bitfield;
use crate::proto::extension;
use crate::proto::geometry::BLOCK_LEN;
use crate::proto::wire::{self, Decoded, Message};
use crate::util::bytes::{Buffer, Bytes, Pool};
use crossbeam_channel::Sender;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

/// Read buffer: four whole block frames, so that a read takes a block
/// along with its neighbours, and room for a few small messages. It grows
/// for a larger frame (up to [`wire::MAX_FRAME_LEN`]) and shrinks back
/// once that frame is used.
const READ_BUFFER: usize = 4 * BLOCK_FRAME + 64;
/// A `piece` frame with a whole block: length, id, index, offset, bytes.
const BLOCK_FRAME: usize = 4 + 1 + 4 + 4 + BLOCK_LEN as usize;
/// Read buffers a torrent keeps for reuse once the blocks in them are
/// written (its readers share them).
const SPARE_BUFFERS: usize = 16;
/// Block bytes handed to the orchestrator in one event at most.
const BATCH_BYTES: usize = 64 * 1024;
/// An extension message (other than the handshake) larger than this costs
/// the connection: a `ut_metadata` piece is 16 KiB and a few bytes, a
/// `ut_pex` message far less.
pub const MAX_EXTENSION_MESSAGE: usize = 20 * 1024;

/// The read buffers for a torrent's readers ([`Settings::buffers`]).
pub fn buffer_pool() -> Pool {
    Pool::new(READ_BUFFER, SPARE_BUFFERS)
}

/// Reads frames until the connection ends; `Err` says why it did.
pub(super) fn run(
    peer: PeerKey,
    stream: &Stream,
    mut incoming: Incoming,
    s: &Settings,
    fast: bool,
    events: &Sender<Event>,
) -> Result<(), CloseReason> {
    let mut buf = ReadBuf::new(s.buffers.clone());
    let mut state = State::new(peer, s.num_pieces.clone(), fast);
    loop {
        let need = loop {
            match wire::decode(buf.filled())? {
                Decoded::Message(msg, used) => {
                    let event = state.on_message(msg, &buf)?;
                    buf.consume(used);
                    if let Some(e) = event {
                        // Blocks go first: order matters.
                        state.flush(events)?;
                        events.send(e).map_err(|_| CloseReason::Shutdown)?;
                    } else if state.batch_bytes >= BATCH_BYTES {
                        state.flush(events)?;
                    }
                }
                Decoded::NeedMore(n) => break n,
            }
        };
        // The next read may block: hand over what we have first.
        state.flush(events)?;
        let read = buf.fill(&mut incoming.on(stream), need)?;
        // In debt, the next read waits: the sender is slowed by TCP.
        crate::net::throttle::charge(&s.throttles.down, read);
    }
}

/// What the reader remembers between frames.
struct State {
    peer: PeerKey,
    /// The torrent's piece count; unset while a magnet download still
    /// fetches the metadata (piece indices then go unchecked to the engine,
    /// which checks them once it knows).
    num_pieces: Arc<OnceLock<u32>>,
    /// Both sides offered the fast extension (BEP 6).
    fast: bool,
    batch: Vec<BlockData>,
    batch_bytes: usize,
}

impl State {
    fn new(peer: PeerKey, num_pieces: Arc<OnceLock<u32>>, fast: bool) -> State {
        State {
            peer,
            num_pieces,
            fast,
            batch: Vec::new(),
            batch_bytes: 0,
        }
    }

    /// Checks what needs no torrent state and turns a message into an
    /// event; blocks join the batch, ignored messages give `None`.
    fn on_message(
        &mut self,
        msg: Message<'_>,
        buf: &ReadBuf,
    ) -> Result<Option<Event>, CloseReason> {
        let peer = self.peer;
        let known = self.num_pieces.get().copied();
        let in_range = |index: u32, msg: &'static str| match known {
            Some(num_pieces) if index >= num_pieces => Err(Violation::PieceOutOfRange {
                msg,
                index,
                num_pieces,
            }),
            _ => Ok(index),
        };
        let fast = |msg: &Message<'_>| {
            if self.fast {
                Ok(())
            } else {
                Err(Violation::FastWithoutExtension(msg.name()))
            }
        };
        Ok(Some(match msg {
            Message::Piece { index, begin, data } => {
                self.batch_bytes += data.len();
                self.batch.push(BlockData {
                    piece: index,
                    begin,
                    data: buf.share(data),
                });
                return Ok(None);
            }
            Message::Choke => Event::Choke(peer),
            Message::Unchoke => Event::Unchoke(peer),
            Message::Interested => Event::Interested(peer),
            Message::NotInterested => Event::NotInterested(peer),
            Message::Have(i) => Event::Have(peer, in_range(i, "have")?),
            // A bitfield is taken whenever it comes, and replaces what the
            // peer said before: aria2 sends one mid-connection in place of
            // several `have`s, and libtorrent accepts that (docs/INTEROP.md).
            Message::Bitfield(bytes) => match known {
                Some(n) => Event::Bitfield(
                    peer,
                    Bitfield::from_bytes(bytes, n).map_err(Violation::Bitfield)?,
                ),
                None => Event::Unsized(peer, Unsized::Bits(bytes.to_vec())),
            },
            Message::HaveAll | Message::HaveNone => {
                fast(&msg)?;
                let all = matches!(msg, Message::HaveAll);
                match (known, all) {
                    (Some(n), true) => Event::Bitfield(peer, Bitfield::full(n)),
                    (Some(n), false) => Event::Bitfield(peer, Bitfield::new(n)),
                    (None, true) => Event::Unsized(peer, Unsized::All),
                    (None, false) => Event::Unsized(peer, Unsized::Bits(Vec::new())),
                }
            }
            Message::Reject {
                index,
                begin,
                length,
            } => {
                fast(&msg)?;
                Event::Rejected(peer, index, begin, length)
            }
            Message::AllowedFast(i) => {
                fast(&msg)?;
                Event::AllowedFast(peer, in_range(i, "allowed_fast")?)
            }
            // A hint we may ignore (BEP 6).
            Message::Suggest(_) => {
                fast(&msg)?;
                return Ok(None);
            }
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
            Message::Extended {
                id: extension::HANDSHAKE_ID,
                payload,
            } => Event::PeerInfo(
                peer,
                extension::parse_handshake(payload).map_err(Violation::Extension)?,
            ),
            Message::Extended { id, payload } if payload.len() > MAX_EXTENSION_MESSAGE => {
                return Err(Violation::ExtensionTooLarge(id, payload.len()).into())
            }
            Message::Extended { id, payload } => Event::Extension {
                peer,
                id,
                payload: payload.to_vec(),
            },
            Message::Port(port) => Event::DhtPort(peer, port),
            // Keep-alives (the read itself reset the idle timer) and
            // unknown ids: ignored, as BEP 3 asks.
            Message::KeepAlive | Message::Unknown { .. } => return Ok(None),
        }))
    }

    /// Hands the batched blocks over as one event.
    fn flush(&mut self, events: &Sender<Event>) -> Result<(), CloseReason> {
        self.batch_bytes = 0;
        if self.batch.is_empty() {
            return Ok(());
        }
        let blocks = std::mem::take(&mut self.batch);
        events
            .send(Event::Blocks {
                peer: self.peer,
                blocks,
            })
            .map_err(|_| CloseReason::Shutdown)
    }
}

/// A read buffer: bytes `start..end` of `data` are read and not yet used.
struct ReadBuf {
    data: Arc<Buffer>,
    start: usize,
    end: usize,
    /// Where buffers come from; its size is the one a buffer returns to
    /// after a larger frame.
    pool: Pool,
}

impl ReadBuf {
    fn new(pool: Pool) -> ReadBuf {
        ReadBuf {
            data: pool.take(pool.size()),
            start: 0,
            end: 0,
            pool,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// `part` of [`ReadBuf::filled`], shared rather than copied.
    fn share(&self, part: &[u8]) -> Bytes {
        let filled = self.filled().as_ptr_range();
        debug_assert!(filled.start <= part.as_ptr() && part.as_ptr_range().end <= filled.end);
        let at = (part.as_ptr() as usize).wrapping_sub(self.data.as_ptr() as usize);
        Bytes::shared(&self.data, at..at + part.len())
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.data.len() > self.pool.size() {
                // A large frame is done with: give its memory back.
                self.data = self.pool.take(self.pool.size());
            }
        }
    }

    /// Reads at least once, making room for `need` more bytes first (the
    /// decoder never asks for more than the rest of one capped frame);
    /// returns the bytes read.
    fn fill(&mut self, stream: &mut impl Read, need: usize) -> Result<usize, CloseReason> {
        let unused = self.end - self.start;
        if Arc::get_mut(&mut self.data).is_none() {
            // Blocks in this buffer are on their way to the disk: go on in
            // another, with the unused bytes.
            let mut next = self.pool.take(unused + need);
            let fresh = Arc::get_mut(&mut next).expect("a buffer just taken is ours alone");
            fresh.vec_mut()[..unused].copy_from_slice(&self.data[self.start..self.end]);
            self.data = next;
            (self.start, self.end) = (0, unused);
        }
        let data = Arc::get_mut(&mut self.data)
            .expect("unshared: checked above")
            .vec_mut();
        if data.len() - self.end < need {
            data.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, unused);
            if data.len() < unused + need {
                data.resize(unused + need, 0);
            }
        }
        let len = read_len(&data[self.start..self.end], data.len() - self.end);
        let room = &mut data[self.end..self.end + len];
        loop {
            match stream.read(room) {
                Ok(0) if self.end == self.start => return Err(CloseReason::Closed),
                Ok(0) => {
                    let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                    return Err(CloseReason::io(Phase::Read, eof));
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CloseReason::io(Phase::Read, e)),
            }
        }
    }
}

/// How much to read into `room` free bytes after `filled`, the start of
/// one frame (or nothing): the rest of that frame and as many whole block
/// frames as fit after it, so that the read ends where a frame does and
/// the next buffer starts clean. All the room if not one block frame fits,
/// or if the frame's length is not read yet.
fn read_len(filled: &[u8], room: usize) -> usize {
    let rest = match *filled {
        [] => 0,
        [a, b, c, d, ..] => (u32::from_be_bytes([a, b, c, d]) as usize)
            .saturating_add(4)
            .saturating_sub(filled.len()),
        _ => return room,
    };
    match room.checked_sub(rest) {
        Some(after) if after >= BLOCK_FRAME => rest + after / BLOCK_FRAME * BLOCK_FRAME,
        _ => room,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::random::Rng;

    /// Reads `wire_bytes` to its end through `buf`, at most `chunk` bytes
    /// a read, as the reader does; returns the names of the messages and
    /// the blocks. With `hold`, every block is held to the end; without,
    /// the blocks are copied out and dropped before each read, as the disk
    /// side does, so buffers are reused in place and from the pool.
    fn read_all(
        mut source: Chunked<'_>,
        buf: &mut ReadBuf,
        pieces: u32,
        hold: bool,
    ) -> (Vec<&'static str>, Vec<Vec<u8>>) {
        let chunk = source.chunk;
        let mut state = State::new(1, known(pieces), false);
        let (mut names, mut blocks) = (Vec::new(), Vec::new());
        loop {
            match wire::decode(buf.filled()).unwrap() {
                Decoded::Message(msg, used) => {
                    names.push(msg.name());
                    state.on_message(msg, buf).unwrap();
                    buf.consume(used);
                }
                Decoded::NeedMore(n) => {
                    if !hold {
                        blocks.extend(state.batch.drain(..).map(|b| b.data.to_vec()));
                    }
                    match buf.fill(&mut source, n) {
                        Ok(_) => {}
                        Err(CloseReason::Closed) => break,
                        Err(e) => panic!("chunk {chunk}: {e}"),
                    }
                }
            }
        }
        blocks.extend(state.batch.drain(..).map(|b| b.data.to_vec()));
        (names, blocks)
    }

    /// Blocks handed on are ranges of the read buffer: while they are
    /// held, reads go on into other buffers and never touch their bytes;
    /// once they are dropped, their buffers are read into again. Either
    /// way, however the stream is cut and whatever sits between them, the
    /// blocks come out whole.
    #[test]
    fn blocks_held_keep_their_bytes_while_reading_goes_on() {
        let mut wire_bytes = Vec::new();
        let mut blocks = Vec::new();
        for i in 0..12u8 {
            if i % 5 == 2 {
                Message::Have(u32::from(i)).encode(&mut wire_bytes);
            }
            let block = vec![i; BLOCK_LEN as usize - usize::from(i % 4)];
            wire::encode_piece_header(u32::from(i), 0, block.len() as u32, &mut wire_bytes);
            wire_bytes.extend_from_slice(&block);
            blocks.push(block);
        }
        for chunk in [1, 4097, BLOCK_FRAME, 3 * BLOCK_FRAME + 5, usize::MAX] {
            for hold in [true, false] {
                let mut buf = ReadBuf::new(buffer_pool());
                let source = Chunked::new(&wire_bytes, chunk);
                let (_, got) = read_all(source, &mut buf, 20, hold);
                assert_eq!(got, blocks, "chunk {chunk}, hold {hold}");
            }
        }
    }

    /// Random streams of frames (blocks of any length up to a whole one,
    /// `have`s, bitfields, extension messages, keep-alives), cut at random
    /// places, come out whole and in order, with blocks held or dropped as
    /// they go. Seeded, so a failure repeats.
    #[test]
    fn random_streams_cut_anywhere_come_out_whole() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let (mut wire_bytes, mut names, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..30 {
                let msg = match rng.below(5) {
                    0 => Message::Have(rng.below(20) as u32),
                    1 => Message::Bitfield(&[0xff, 0x0f, 0xf0]),
                    2 => Message::Extended {
                        id: 3,
                        payload: &[7; 300],
                    },
                    3 => Message::KeepAlive,
                    _ => {
                        let block = vec![rng.below(256) as u8; rng.below(BLOCK_LEN as usize + 1)];
                        let (index, len) = (rng.below(20) as u32, block.len() as u32);
                        wire::encode_piece_header(index, 0, len, &mut wire_bytes);
                        wire_bytes.extend_from_slice(&block);
                        blocks.push(block);
                        names.push("piece");
                        continue;
                    }
                };
                names.push(msg.name());
                msg.encode(&mut wire_bytes);
            }
            let chunk = [1, 100, BLOCK_FRAME, 3 * READ_BUFFER][rng.below(4)];
            let mut source = Chunked::new(&wire_bytes, chunk);
            source.cuts = Some(Rng::new(seed));
            let mut buf = ReadBuf::new(buffer_pool());
            let hold = seed % 2 == 0;
            let (got_names, got) = read_all(source, &mut buf, 20, hold);
            assert_eq!((got_names, got), (names, blocks), "seed {seed}");
        }
    }

    /// Reads end where block frames do: after the rest of a frame begun,
    /// as many whole block frames as fit.
    #[test]
    fn reads_are_sized_to_end_at_block_frames() {
        assert_eq!(read_len(&[], READ_BUFFER), 4 * BLOCK_FRAME);
        let mut begun = Vec::new();
        wire::encode_piece_header(0, 0, BLOCK_LEN, &mut begun);
        begun.extend_from_slice(&[0; 100]);
        let rest = BLOCK_FRAME - begun.len();
        assert_eq!(read_len(&begun, READ_BUFFER), rest + 3 * BLOCK_FRAME);
        // Too little room for a whole frame more, or no length yet: all.
        assert_eq!(read_len(&begun, rest + 10), rest + 10);
        assert_eq!(read_len(&[0, 0], 50_000), 50_000);
    }

    /// Frames cut at every offset and fed a few bytes per read come out
    /// whole and in order, through the same decoder as production.
    #[test]
    fn frames_split_anywhere_are_read_whole() {
        let mut wire_bytes = Vec::new();
        Message::Unchoke.encode(&mut wire_bytes);
        Message::Have(3).encode(&mut wire_bytes);
        let block = vec![7u8; 16 * 1024];
        wire::encode_piece_header(1, 0, block.len() as u32, &mut wire_bytes);
        wire_bytes.extend_from_slice(&block);
        Message::KeepAlive.encode(&mut wire_bytes);
        Message::Interested.encode(&mut wire_bytes);
        for chunk in [1, 3, 5, 4096, 70_000] {
            let mut buf = ReadBuf::new(Pool::new(16, 4));
            let source = Chunked::new(&wire_bytes, chunk);
            let (names, got) = read_all(source, &mut buf, 4, true);
            assert_eq!(
                names,
                ["unchoke", "have", "piece", "keep-alive", "interested"],
                "chunk {chunk}"
            );
            assert_eq!(got, std::slice::from_ref(&block));
            assert_eq!(buf.data.len(), 16, "the buffer shrank back");
        }
    }

    /// The tolerance table (docs/INTEROP.md): what common clients send in
    /// an order BEP 3 does not foresee is taken as libtorrent takes it; BEP 6
    /// messages only from a peer that offered BEP 6.
    #[test]
    fn messages_are_taken_in_any_order_and_fast_ones_only_when_offered() {
        let bits = [0b1010_0000u8];
        let mut plain = State::new(1, known(4), false);
        let ev = |st: &mut State, m: Message<'_>| on(st, m).map(|e| format!("{e:?}"));
        // State messages before the bitfield, a bitfield after them (aria2),
        // a second bitfield that replaces the first, a repeated have.
        ev(&mut plain, Message::Interested).unwrap();
        ev(&mut plain, Message::Unchoke).unwrap();
        for _ in 0..2 {
            let e = ev(&mut plain, Message::Bitfield(&bits)).unwrap();
            assert!(e.starts_with("Some(Bitfield(1,"), "{e}");
            assert_eq!(
                ev(&mut plain, Message::Have(2)).unwrap(),
                "Some(Have(1, 2))"
            );
        }
        // Unknown ids and extension messages are ignored.
        let unknown = Message::Unknown {
            id: 99,
            payload: &[1, 2],
        };
        assert_eq!(ev(&mut plain, unknown).unwrap(), "None");
        for m in [
            Message::HaveAll,
            Message::Suggest(1),
            Message::AllowedFast(1),
        ] {
            let e = on(&mut plain, m).unwrap_err().to_string();
            assert!(e.ends_with("without the fast extension"), "{e}");
        }
        let mut fast = State::new(1, known(4), true);
        match on(&mut fast, Message::HaveAll).unwrap() {
            Some(Event::Bitfield(_, b)) => assert!(b.is_complete()),
            other => panic!("{other:?}"),
        }
        match on(&mut fast, Message::HaveNone).unwrap() {
            Some(Event::Bitfield(_, b)) => assert_eq!(b.count(), 0),
            other => panic!("{other:?}"),
        }
        let reject = Message::Reject {
            index: 1,
            begin: 0,
            length: 16384,
        };
        assert_eq!(
            ev(&mut fast, reject).unwrap(),
            "Some(Rejected(1, 1, 0, 16384))"
        );
        assert_eq!(
            ev(&mut fast, Message::AllowedFast(3)).unwrap(),
            "Some(AllowedFast(1, 3))"
        );
        assert!(
            on(&mut fast, Message::AllowedFast(4)).is_err(),
            "out of range"
        );
        assert_eq!(ev(&mut fast, Message::Suggest(2)).unwrap(), "None");
    }

    /// A message that does not come from a read buffer (no `piece`).
    fn on(st: &mut State, m: Message<'_>) -> Result<Option<Event>, CloseReason> {
        st.on_message(m, &ReadBuf::new(Pool::new(16, 4)))
    }

    fn known(n: u32) -> Arc<OnceLock<u32>> {
        Arc::new(OnceLock::from(n))
    }

    /// Before a magnet's metadata, sizes are unknown: bitfields and
    /// `have_all` go up unsized and indices unchecked; once the count is
    /// set, the same messages are checked. Extension messages go up whole,
    /// up to their cap.
    #[test]
    fn without_the_metadata_pieces_go_up_unchecked() {
        let count = Arc::new(OnceLock::new());
        let mut st = State::new(1, Arc::clone(&count), true);
        let ev = |st: &mut State, m: Message<'_>| on(st, m).map(|e| format!("{e:?}"));
        assert_eq!(
            ev(&mut st, Message::Bitfield(&[0xff; 3])).unwrap(),
            "Some(Unsized(1, Bits([255, 255, 255])))"
        );
        assert_eq!(
            ev(&mut st, Message::HaveAll).unwrap(),
            "Some(Unsized(1, All))"
        );
        assert_eq!(
            ev(&mut st, Message::Have(1000)).unwrap(),
            "Some(Have(1, 1000))"
        );
        count.set(4).unwrap();
        assert!(on(&mut st, Message::Have(1000)).is_err());
        assert!(on(&mut st, Message::Bitfield(&[0xff; 3])).is_err());
        let small = Message::Extended {
            id: 2,
            payload: b"de",
        };
        assert_eq!(
            ev(&mut st, small).unwrap(),
            "Some(Extension { peer: 1, id: 2, payload: [100, 101] })"
        );
        let big = vec![0u8; MAX_EXTENSION_MESSAGE + 1];
        let e = on(
            &mut st,
            Message::Extended {
                id: 2,
                payload: &big,
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "extension message 2 of 20481 bytes (at most 20480)"
        );
    }

    /// A reader that returns at most `chunk` bytes per call; with `cuts`,
    /// a random number of them from 1 up.
    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
        cuts: Option<Rng>,
    }

    impl Chunked<'_> {
        fn new(data: &[u8], chunk: usize) -> Chunked<'_> {
            Chunked {
                data,
                chunk,
                cuts: None,
            }
        }
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let chunk = match &mut self.cuts {
                Some(rng) => 1 + rng.below(self.chunk),
                None => self.chunk,
            };
            let n = chunk.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_connection_cut_mid_frame_is_an_error_not_a_clean_close() {
        let mut wire_bytes = Vec::new();
        Message::Have(3).encode(&mut wire_bytes);
        let mut source = Chunked::new(&wire_bytes[..6], 100);
        let mut buf = ReadBuf::new(Pool::new(64, 1));
        buf.fill(&mut source, 4).unwrap();
        let err = buf.fill(&mut source, 3).unwrap_err();
        assert_eq!(err.to_string(), "read: connection closed");
    }
}
