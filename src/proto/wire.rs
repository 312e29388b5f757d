//! Peer wire messages: the BEP 3 handshake and framed messages, the BEP 6
//! fast-extension messages, and BEP 10 extended messages as raw payloads.
//!
//! Owns: the byte layout of every message, and the size limits that are
//! checked before anyone allocates or reads a payload (see
//! [`MAX_FRAME_LEN`], [`MAX_BLOCK`]).
//!
//! Does not own: sockets or buffers (the peer worker fills a buffer and calls
//! in here), whether a message is allowed right now (choke state, negotiated
//! extensions), whether a request or piece is in range or was requested
//! ([`crate::proto::geometry`] and the orchestrator), the bitfield's bit layout
//! ([`crate::proto::bitfield::Bitfield::from_bytes`] checks [`Message::Bitfield`]
//! against the piece count), or the bencoded contents of extended messages.
//!
//! Two ways to read frames, both without copying the payload twice:
//! - from a byte buffer: [`decode`] returns the message and the bytes it
//!   used, or how many more bytes it needs at least;
//! - from a blocking reader: read the 4-byte prefix and check it with
//!   [`frame_len`] (0 is a keep-alive, with no id byte); read the id byte and
//!   check it with [`check_frame`]; only then read the `len - 1` payload
//!   bytes into a reused buffer and parse them with [`decode_payload`]. The
//!   test `blocking_read_recipe` shows it.

use std::fmt;

/// Length of a handshake: pstrlen, "BitTorrent protocol", 8 reserved bytes,
/// info hash, peer id.
pub const HANDSHAKE_LEN: usize = 68;

/// pstrlen (19) and the protocol string that open every handshake.
pub const PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Reserved bit for BEP 10 extended messages (`reserved[5] & 0x10`), as a bit
/// of the reserved bytes read as a big-endian u64. Build reserved bytes with
/// `(RESERVED_EXTENDED | RESERVED_FAST).to_be_bytes()`.
pub const RESERVED_EXTENDED: u64 = 0x10 << 16;
/// Reserved bit for the BEP 6 fast extension (`reserved[7] & 0x04`).
pub const RESERVED_FAST: u64 = 0x04;
/// Reserved bit for BEP 5 DHT (`reserved[7] & 0x01`).
pub const RESERVED_DHT: u64 = 0x01;

/// Largest block a `piece` message may carry: 16 KiB, the size every client
/// requests. Larger ones are refused from the frame header alone.
pub const MAX_BLOCK: u32 = 16 * 1024;

/// Largest frame length (the 4-byte prefix: id plus payload) accepted, 1 MiB.
/// The largest legal messages are bitfields (1 MiB holds 8 Mi pieces) and
/// extended messages; anything longer is refused before its payload is read.
pub const MAX_FRAME_LEN: u32 = 1024 * 1024;

const CHOKE: u8 = 0;
const UNCHOKE: u8 = 1;
const INTERESTED: u8 = 2;
const NOT_INTERESTED: u8 = 3;
const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const REQUEST: u8 = 6;
/// The `piece` message id.
pub const PIECE: u8 = 7;
const CANCEL: u8 = 8;
const PORT: u8 = 9;
const SUGGEST: u8 = 0x0D;
const HAVE_ALL: u8 = 0x0E;
const HAVE_NONE: u8 = 0x0F;
const REJECT: u8 = 0x10;
const ALLOWED_FAST: u8 = 0x11;
const EXTENDED: u8 = 20;

/// Frame length of a `piece` message without its data: id, index, begin.
const PIECE_HEADER_LEN: u32 = 9;

/// The name and allowed frame lengths (id byte included) of message `id`.
fn spec(id: u8) -> (&'static str, u32, u32) {
    match id {
        CHOKE => ("choke", 1, 1),
        UNCHOKE => ("unchoke", 1, 1),
        INTERESTED => ("interested", 1, 1),
        NOT_INTERESTED => ("not interested", 1, 1),
        HAVE => ("have", 5, 5),
        BITFIELD => ("bitfield", 1, MAX_FRAME_LEN),
        REQUEST => ("request", 13, 13),
        PIECE => ("piece", PIECE_HEADER_LEN, PIECE_HEADER_LEN + MAX_BLOCK),
        CANCEL => ("cancel", 13, 13),
        PORT => ("port", 3, 3),
        SUGGEST => ("suggest piece", 5, 5),
        HAVE_ALL => ("have all", 1, 1),
        HAVE_NONE => ("have none", 1, 1),
        REJECT => ("reject request", 13, 13),
        ALLOWED_FAST => ("allowed fast", 5, 5),
        EXTENDED => ("extended", 2, MAX_FRAME_LEN),
        _ => ("unknown", 1, MAX_FRAME_LEN),
    }
}

/// A malformed handshake or frame. Every one drops the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A frame's length prefix is over the limit; refused before reading
    /// the payload.
    FrameTooLarge { len: u32, limit: u32 },
    /// A fixed-size message (choke, have, request, port, ...) whose frame
    /// length is not its size. Lengths count the id byte, as on the wire.
    BadLength {
        msg: &'static str,
        expected: u32,
        actual: u32,
    },
    /// A variable-size message whose frame length is outside its bounds: a
    /// `piece` over [`MAX_BLOCK`] or shorter than its header, an `extended`
    /// without its extended id byte.
    LengthOutOfRange {
        msg: &'static str,
        min: u32,
        max: u32,
        actual: u32,
    },
    /// The handshake does not start with 19 and "BitTorrent protocol": not
    /// a BitTorrent peer, or an encrypted one, which shoal does not speak.
    /// `actual` holds the first bytes received (up to 20), which is enough
    /// to refuse as soon as they differ.
    BadHandshake { actual: Vec<u8> },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::FrameTooLarge { len, limit } => {
                write!(f, "frame length {len} exceeds the limit of {limit} bytes")
            }
            WireError::BadLength {
                msg,
                expected,
                actual,
            } => write!(f, "{msg} message has length {actual}, expected {expected}"),
            WireError::LengthOutOfRange {
                msg,
                min,
                max,
                actual,
            } => write!(
                f,
                "{msg} message has length {actual}, expected {min} to {max}"
            ),
            WireError::BadHandshake { actual } => write!(
                f,
                "handshake starts with \"{}\", expected \"{}\"",
                actual.escape_ascii(),
                PROTOCOL_PREFIX.escape_ascii()
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// Splits the first `N` bytes off `buf`.
fn take<const N: usize>(buf: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>()?;
    *buf = rest;
    Some(*head)
}

/// Splits `N` big-endian u32s off `buf`.
fn take_u32s<const N: usize>(buf: &mut &[u8]) -> Option<[u32; N]> {
    let mut out = [0; N];
    for v in &mut out {
        *v = u32::from_be_bytes(take(buf)?);
    }
    Some(out)
}

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The opening message of every connection, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// A handshake with the given reserved bytes, e.g.
    /// `(RESERVED_EXTENDED | RESERVED_FAST).to_be_bytes()`.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20], reserved: [u8; 8]) -> Self {
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0; HANDSHAKE_LEN];
        let parts = PROTOCOL_PREFIX
            .iter()
            .chain(&self.reserved)
            .chain(&self.info_hash)
            .chain(&self.peer_id);
        for (dst, src) in out.iter_mut().zip(parts) {
            *dst = *src;
        }
        out
    }

    /// Decodes a handshake from the start of `buf`; `Ok(None)` while fewer
    /// than [`HANDSHAKE_LEN`] bytes are there. A wrong protocol prefix is an
    /// error as soon as its first differing byte arrives.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let seen = &buf[..buf.len().min(PROTOCOL_PREFIX.len())];
        if !PROTOCOL_PREFIX.starts_with(seen) {
            return Err(WireError::BadHandshake {
                actual: seen.to_vec(),
            });
        }
        Ok(Self::fields(&buf[seen.len()..]))
    }

    /// Reserved bytes, info hash and peer id, if all there.
    fn fields(mut rest: &[u8]) -> Option<Handshake> {
        Some(Handshake {
            reserved: take(&mut rest)?,
            info_hash: take(&mut rest)?,
            peer_id: take(&mut rest)?,
        })
    }

    fn has(&self, bit: u64) -> bool {
        u64::from_be_bytes(self.reserved) & bit != 0
    }

    /// BEP 10 extended messages ([`RESERVED_EXTENDED`]).
    pub fn supports_extended(&self) -> bool {
        self.has(RESERVED_EXTENDED)
    }

    /// BEP 6 fast extension ([`RESERVED_FAST`]).
    pub fn supports_fast(&self) -> bool {
        self.has(RESERVED_FAST)
    }

    /// BEP 5 DHT ([`RESERVED_DHT`]).
    pub fn supports_dht(&self) -> bool {
        self.has(RESERVED_DHT)
    }
}

/// One framed message. Byte payloads borrow from the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A zero-length frame.
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw bytes; check them with [`crate::proto::bitfield::Bitfield::from_bytes`].
    Bitfield(&'a [u8]),
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// At most [`MAX_BLOCK`] bytes of data.
    Piece {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    Cancel {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// The sender's DHT port.
    Port(u16),
    /// BEP 6.
    Suggest(u32),
    /// BEP 6.
    HaveAll,
    /// BEP 6.
    HaveNone,
    /// BEP 6: the peer will not serve this request.
    Reject {
        index: u32,
        begin: u32,
        length: u32,
    },
    /// BEP 6: the peer serves this piece even while choking us.
    AllowedFast(u32),
    /// BEP 10: `id` 0 is the extension handshake, others are what the
    /// handshakes agreed; `payload` is usually bencoded.
    Extended {
        id: u8,
        payload: &'a [u8],
    },
    /// An id shoal does not know; BEP 3 says to ignore it. Still subject to
    /// [`MAX_FRAME_LEN`].
    Unknown {
        id: u8,
        payload: &'a [u8],
    },
}

impl Message<'_> {
    /// The message id byte; `None` for a keep-alive, which has none.
    pub fn id(&self) -> Option<u8> {
        Some(match *self {
            Message::KeepAlive => return None,
            Message::Choke => CHOKE,
            Message::Unchoke => UNCHOKE,
            Message::Interested => INTERESTED,
            Message::NotInterested => NOT_INTERESTED,
            Message::Have(_) => HAVE,
            Message::Bitfield(_) => BITFIELD,
            Message::Request { .. } => REQUEST,
            Message::Piece { .. } => PIECE,
            Message::Cancel { .. } => CANCEL,
            Message::Port(_) => PORT,
            Message::Suggest(_) => SUGGEST,
            Message::HaveAll => HAVE_ALL,
            Message::HaveNone => HAVE_NONE,
            Message::Reject { .. } => REJECT,
            Message::AllowedFast(_) => ALLOWED_FAST,
            Message::Extended { .. } => EXTENDED,
            Message::Unknown { id, .. } => id,
        })
    }

    /// A readable name for logs, e.g. "request".
    pub fn name(&self) -> &'static str {
        self.id().map_or("keep-alive", |id| spec(id).0)
    }

    /// Appends the framed message (length prefix, id, payload) to `out`.
    ///
    /// Encoding does not check limits: a message over [`MAX_FRAME_LEN`] is
    /// refused by the receiving peer, and one over 4 GiB gets the length
    /// prefix `u32::MAX`, so it is refused rather than misframed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]); // frame length, filled in below
        let Some(id) = self.id() else { return };
        out.push(id);
        match *self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
            Message::Have(index) | Message::Suggest(index) | Message::AllowedFast(index) => {
                put_u32s(out, &[index]);
            }
            Message::Request {
                index,
                begin,
                length,
            }
            | Message::Cancel {
                index,
                begin,
                length,
            }
            | Message::Reject {
                index,
                begin,
                length,
            } => put_u32s(out, &[index, begin, length]),
            Message::Piece { index, begin, data } => {
                put_u32s(out, &[index, begin]);
                out.extend_from_slice(data);
            }
            Message::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Message::Extended { id, payload } => {
                out.push(id);
                out.extend_from_slice(payload);
            }
            Message::Bitfield(payload) | Message::Unknown { payload, .. } => {
                out.extend_from_slice(payload);
            }
        }
        let len = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Appends the 13-byte header of a `piece` frame carrying `data_len` bytes,
/// so an uploader can send the block itself straight from storage (e.g. a
/// vectored write of this header and the mapped bytes).
pub fn encode_piece_header(index: u32, begin: u32, data_len: u32, out: &mut Vec<u8>) {
    put_u32s(out, &[PIECE_HEADER_LEN.saturating_add(data_len)]);
    out.push(PIECE);
    put_u32s(out, &[index, begin]);
}

/// The result of [`decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole message and the number of bytes it used from the buffer.
    Message(Message<'a>, usize),
    /// The buffer holds part of a frame; at least this many more bytes
    /// (always > 0) are needed, never more than the rest of the frame.
    NeedMore(usize),
}

/// Reads a frame's 4-byte length prefix and refuses it when over
/// [`MAX_FRAME_LEN`]. A length of 0 is a keep-alive; any other length
/// counts the id byte that follows and the payload.
pub fn frame_len(prefix: [u8; 4]) -> Result<u32, WireError> {
    let len = u32::from_be_bytes(prefix);
    if len > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLarge {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Checks a frame length (id byte included) against what message `id`
/// allows, before its payload is read.
pub fn check_frame(id: u8, len: u32) -> Result<(), WireError> {
    let (_, min, max) = spec(id);
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(length_error(id, len))
    }
}

fn length_error(id: u8, len: u32) -> WireError {
    match spec(id) {
        (msg, min, max) if min == max => WireError::BadLength {
            msg,
            expected: min,
            actual: len,
        },
        (msg, min, max) => WireError::LengthOutOfRange {
            msg,
            min,
            max,
            actual: len,
        },
    }
}

/// Parses the payload of message `id` (the frame without its length prefix
/// and id byte), checking its length as [`check_frame`] does.
pub fn decode_payload(id: u8, payload: &[u8]) -> Result<Message<'_>, WireError> {
    let len = u32::try_from(payload.len())
        .ok()
        .and_then(|n| n.checked_add(1))
        .unwrap_or(u32::MAX);
    check_frame(id, len)?;
    // After `check_frame` the fixed-size fields are all there, so `parse`
    // returns `Some`; the error only guards against the two disagreeing.
    parse(id, payload).ok_or_else(|| length_error(id, len))
}

fn parse(id: u8, payload: &[u8]) -> Option<Message<'_>> {
    let mut rest = payload;
    Some(match id {
        CHOKE => Message::Choke,
        UNCHOKE => Message::Unchoke,
        INTERESTED => Message::Interested,
        NOT_INTERESTED => Message::NotInterested,
        HAVE => Message::Have(u32::from_be_bytes(take(&mut rest)?)),
        BITFIELD => Message::Bitfield(payload),
        REQUEST | CANCEL | REJECT => {
            let [index, begin, length] = take_u32s(&mut rest)?;
            match id {
                REQUEST => Message::Request {
                    index,
                    begin,
                    length,
                },
                CANCEL => Message::Cancel {
                    index,
                    begin,
                    length,
                },
                _ => Message::Reject {
                    index,
                    begin,
                    length,
                },
            }
        }
        PIECE => {
            let [index, begin] = take_u32s(&mut rest)?;
            Message::Piece {
                index,
                begin,
                data: rest,
            }
        }
        PORT => Message::Port(u16::from_be_bytes(take(&mut rest)?)),
        SUGGEST => Message::Suggest(u32::from_be_bytes(take(&mut rest)?)),
        HAVE_ALL => Message::HaveAll,
        HAVE_NONE => Message::HaveNone,
        ALLOWED_FAST => Message::AllowedFast(u32::from_be_bytes(take(&mut rest)?)),
        EXTENDED => {
            let [ext_id] = take(&mut rest)?;
            Message::Extended {
                id: ext_id,
                payload: rest,
            }
        }
        _ => Message::Unknown { id, payload },
    })
}

/// Decodes one frame from the start of `buf`.
///
/// Limits are checked as soon as the header is there: an oversized length
/// prefix fails with 4 bytes in the buffer, a wrong size for the message id
/// with 5, so a caller never reads or allocates for a payload it would
/// refuse.
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, WireError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(Decoded::NeedMore(4 - buf.len()));
    };
    let len = frame_len(*prefix)?;
    if len == 0 {
        return Ok(Decoded::Message(Message::KeepAlive, 4));
    }
    let Some(&id) = rest.first() else {
        return Ok(Decoded::NeedMore(1));
    };
    check_frame(id, len)?;
    let frame_bytes = len as usize; // at most MAX_FRAME_LEN
    match rest.get(1..frame_bytes) {
        None => Ok(Decoded::NeedMore(frame_bytes - rest.len())),
        Some(payload) => Ok(Decoded::Message(
            decode_payload(id, payload)?,
            4 + frame_bytes,
        )),
    }
}

#[cfg(test)]
mod tests;
