//! The uTP packet codec (BEP 29): the 20-byte header, the extension chain
//! and the selective-ack bitmask, with strict bounds on hostile input.
//!
//! A header is big-endian: type (high nibble) and version (low nibble),
//! first extension, connection id (u16), timestamp (µs, u32), timestamp
//! difference (u32), window size (u32), sequence number (u16), ack number
//! (u16). Each extension is `[next, len, len bytes]`; extension 1 is the
//! selective ack, a bitmask whose bit `i` (byte `i / 8`, bit `i % 8`,
//! least significant first) acknowledges `ack_nr + 2 + i`.

use std::fmt;

pub const HEADER_LEN: usize = 20;
/// The protocol version every client speaks.
pub const VERSION: u8 = 1;
/// Extension 1: selective ack.
const EXT_SACK: u8 = 1;
/// Extensions looked at per packet at most (real clients send one or two).
const MAX_EXTENSIONS: usize = 8;
/// The longest selective-ack bitmask we accept (libtorrent sends at most
/// 32 bytes; a longer one is not an error, its bits past this are unused).
pub const MAX_SACK_LEN: usize = 32;

/// The five packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data = 0,
    Fin = 1,
    /// An ack (also the reply to a SYN).
    State = 2,
    Reset = 3,
    Syn = 4,
}

impl Kind {
    fn from_nibble(n: u8) -> Option<Kind> {
        Some(match n {
            0 => Kind::Data,
            1 => Kind::Fin,
            2 => Kind::State,
            3 => Kind::Reset,
            4 => Kind::Syn,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub connection_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
}

/// A decoded datagram, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// The selective-ack bitmask, at most [`MAX_SACK_LEN`] bytes of it.
    pub sack: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Why a datagram is not a uTP packet we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Shorter than a header.
    Short { len: usize },
    /// A version other than 1.
    Version(u8),
    /// A type nibble above 4.
    Type(u8),
    /// An extension's length runs past the end of the datagram.
    Extension { at: usize, len: usize, left: usize },
    /// More extensions than [`MAX_EXTENSIONS`].
    TooManyExtensions,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Short { len } => write!(f, "uTP packet of {len} bytes, under a header"),
            PacketError::Version(v) => write!(f, "uTP version {v}, expected 1"),
            PacketError::Type(t) => write!(f, "uTP packet type {t}"),
            PacketError::Extension { at, len, left } => write!(
                f,
                "uTP extension at byte {at} of {len} bytes, only {left} left"
            ),
            PacketError::TooManyExtensions => {
                write!(f, "more than {MAX_EXTENSIONS} uTP extensions")
            }
        }
    }
}

impl std::error::Error for PacketError {}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one datagram; never panics, never allocates.
pub fn decode(d: &[u8]) -> Result<Packet<'_>, PacketError> {
    if d.len() < HEADER_LEN {
        return Err(PacketError::Short { len: d.len() });
    }
    if d[0] & 0x0f != VERSION {
        return Err(PacketError::Version(d[0] & 0x0f));
    }
    let kind = Kind::from_nibble(d[0] >> 4).ok_or(PacketError::Type(d[0] >> 4))?;
    let header = Header {
        kind,
        connection_id: be16(&d[2..]),
        timestamp_us: be32(&d[4..]),
        timestamp_diff_us: be32(&d[8..]),
        wnd_size: be32(&d[12..]),
        seq_nr: be16(&d[16..]),
        ack_nr: be16(&d[18..]),
    };
    let mut next = d[1];
    let mut at = HEADER_LEN;
    let mut sack = None;
    let mut count = 0;
    while next != 0 {
        count += 1;
        if count > MAX_EXTENSIONS {
            return Err(PacketError::TooManyExtensions);
        }
        let left = d.len() - at;
        if left < 2 {
            return Err(PacketError::Extension { at, len: 2, left });
        }
        let (ext, len) = (d[at], usize::from(d[at + 1]));
        if len > left - 2 {
            return Err(PacketError::Extension {
                at,
                len,
                left: left - 2,
            });
        }
        let body = &d[at + 2..at + 2 + len];
        if next == EXT_SACK && sack.is_none() {
            sack = Some(&body[..len.min(MAX_SACK_LEN)]);
        }
        next = ext;
        at += 2 + len;
    }
    Ok(Packet {
        header,
        sack,
        payload: &d[at..],
    })
}

/// Appends the datagram for `header`, a selective ack if `sack` (at most
/// [`MAX_SACK_LEN`] bytes, a multiple of 4) and `payload` to `out`.
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    out.push(((header.kind as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if let Some(s) = sack {
        out.push(0);
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: Kind) -> Header {
        Header {
            kind,
            connection_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 7,
            wnd_size: 1 << 20,
            seq_nr: 0xfffe,
            ack_nr: 3,
        }
    }

    #[test]
    fn packets_round_trip() {
        for kind in [Kind::Data, Kind::Fin, Kind::State, Kind::Reset, Kind::Syn] {
            for sack in [None, Some(&[0b101u8, 0, 0, 0x80][..])] {
                let mut out = Vec::new();
                encode(&header(kind), sack, b"payload", &mut out);
                let p = decode(&out).unwrap();
                assert_eq!(p.header, header(kind));
                assert_eq!(p.sack, sack);
                assert_eq!(p.payload, b"payload");
            }
        }
    }

    #[test]
    fn hostile_datagrams_are_errors() {
        let mut good = Vec::new();
        encode(&header(Kind::Data), Some(&[1, 2, 3, 4]), b"", &mut good);
        let mut bad_version = good.clone();
        bad_version[0] = 0x02;
        let mut bad_type = good.clone();
        bad_type[0] = 0x51;
        let mut huge_ext = good.clone();
        huge_ext[21] = 255;
        let mut chained = good.clone();
        chained[20] = 9; // promises another extension after the sack
        let mut many = good[..20].to_vec();
        many[1] = 2;
        for _ in 0..20 {
            many.extend_from_slice(&[2, 0]);
        }
        let table: &[(&[u8], PacketError)] = &[
            (&good[..19], PacketError::Short { len: 19 }),
            (b"", PacketError::Short { len: 0 }),
            (&bad_version, PacketError::Version(2)),
            (&bad_type, PacketError::Type(5)),
            (
                &huge_ext,
                PacketError::Extension {
                    at: 20,
                    len: 255,
                    left: 4,
                },
            ),
            (
                &chained,
                PacketError::Extension {
                    at: 26,
                    len: 2,
                    left: 0,
                },
            ),
            (&many, PacketError::TooManyExtensions),
        ];
        for (bytes, want) in table {
            assert_eq!(decode(bytes), Err(*want));
        }
        // No input panics: every prefix and every first-byte value.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for b in 0..=255u8 {
            let mut g = good.clone();
            g[0] = b;
            let _ = decode(&g);
            g[1] = b;
            let _ = decode(&g);
        }
    }

    #[test]
    fn a_long_sack_is_cut_to_the_cap() {
        let mut out = Vec::new();
        let long = [0xffu8; 64];
        encode(&header(Kind::State), Some(&long), b"", &mut out);
        assert_eq!(decode(&out).unwrap().sack.unwrap().len(), MAX_SACK_LEN);
    }
}
