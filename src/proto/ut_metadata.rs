//! BEP 9 `ut_metadata` messages, pure: asking for, sending and refusing
//! 16 KiB pieces of a torrent's info dictionary. A message is a bencoded
//! dictionary (`msg_type`, `piece`, and for data `total_size`), the data
//! piece's bytes following it.

use crate::proto::bencode::{self, Owned};
use std::fmt;

/// Bytes per metadata piece (the last may be shorter).
pub const PIECE_LEN: usize = 16 * 1024;
/// The largest info dictionary we fetch: a peer announcing more is not
/// asked (a torrent of a million files has about 40 MiB of info, real ones
/// far less; libtorrent's own limit is 30 MiB by default).
pub const MAX_METADATA_SIZE: u64 = 32 << 20;
/// Values a message's dictionary may hold (real ones have three).
const MAX_ITEMS: usize = 16;

const REQUEST: i64 = 0;
const DATA: i64 = 1;
const REJECT: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Request(u32),
    Data {
        piece: u32,
        total_size: u64,
        data: &'a [u8],
    },
    Reject(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    Bencode(bencode::Error),
    /// No (or a non-integer, or an out-of-range) `msg_type`, `piece` or
    /// `total_size`.
    Missing(&'static str),
    UnknownType(i64),
    /// Bytes after the dictionary of a message that carries none.
    Trailing,
    /// A data piece longer than [`PIECE_LEN`].
    PieceTooLong(usize),
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::Bencode(e) => write!(f, "ut_metadata: {e}"),
            MetadataError::Missing(k) => write!(f, "ut_metadata: no valid {k}"),
            MetadataError::UnknownType(t) => write!(f, "ut_metadata: unknown msg_type {t}"),
            MetadataError::Trailing => f.write_str("ut_metadata: bytes after the message"),
            MetadataError::PieceTooLong(n) => {
                write!(f, "ut_metadata: a {n}-byte piece (at most {PIECE_LEN})")
            }
        }
    }
}

impl std::error::Error for MetadataError {}

/// Pieces of metadata of `size` bytes.
pub fn piece_count(size: u64) -> u32 {
    size.div_ceil(PIECE_LEN as u64) as u32
}

pub fn parse(payload: &[u8]) -> Result<Message<'_>, MetadataError> {
    // The dictionary is small; a data piece follows it.
    let head = &payload[..payload.len().min(1024)];
    let (dict, used) =
        bencode::decode_prefix_limited(head, MAX_ITEMS).map_err(MetadataError::Bencode)?;
    let int = |key: &'static str| {
        dict.get(key)
            .and_then(|v| v.as_int())
            .ok_or(MetadataError::Missing(key))
    };
    let piece = u32::try_from(int("piece")?).map_err(|_| MetadataError::Missing("piece"))?;
    let rest = &payload[used..];
    let msg = match int("msg_type")? {
        DATA => {
            let total_size = u64::try_from(int("total_size")?)
                .map_err(|_| MetadataError::Missing("total_size"))?;
            if rest.len() > PIECE_LEN {
                return Err(MetadataError::PieceTooLong(rest.len()));
            }
            return Ok(Message::Data {
                piece,
                total_size,
                data: rest,
            });
        }
        REQUEST => Message::Request(piece),
        REJECT => Message::Reject(piece),
        other => return Err(MetadataError::UnknownType(other)),
    };
    if !rest.is_empty() {
        return Err(MetadataError::Trailing);
    }
    Ok(msg)
}

impl Message<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, piece) = match self {
            Message::Request(p) => (REQUEST, p),
            Message::Data { piece, .. } => (DATA, piece),
            Message::Reject(p) => (REJECT, p),
        };
        let mut d = Owned::dict()
            .insert("msg_type", kind)
            .insert("piece", i64::from(*piece));
        if let Message::Data { total_size, .. } = self {
            d = d.insert("total_size", *total_size as i64);
        }
        let mut out = d.encode();
        if let Message::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_the_spec_examples() {
        let data = vec![7u8; 100];
        for m in [
            Message::Request(3),
            Message::Reject(0),
            Message::Data {
                piece: 1,
                total_size: 16_484,
                data: &data,
            },
        ] {
            assert_eq!(parse(&m.encode()).unwrap(), m);
        }
        assert_eq!(Message::Request(0).encode(), b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(
            parse(b"d8:msg_typei2e5:piecei0ee").unwrap(),
            Message::Reject(0)
        );
        assert_eq!(piece_count(16_384), 1);
        assert_eq!(piece_count(16_385), 2);
        assert_eq!(piece_count(0), 0);
    }

    #[test]
    fn hostile_messages_are_errors() {
        let big = [
            b"d8:msg_typei1e5:piecei0e10:total_sizei1ee".as_slice(),
            &[0; PIECE_LEN + 1],
        ]
        .concat();
        let table: Vec<(&[u8], &str)> = vec![
            (b"d5:piecei0ee", "ut_metadata: no valid msg_type"),
            (b"d8:msg_typei0ee", "ut_metadata: no valid piece"),
            (b"d8:msg_typei0e5:piecei-1ee", "ut_metadata: no valid piece"),
            (
                b"d8:msg_typei1e5:piecei0ee",
                "ut_metadata: no valid total_size",
            ),
            (
                b"d8:msg_typei9e5:piecei0ee",
                "ut_metadata: unknown msg_type 9",
            ),
            (
                b"d8:msg_typei0e5:piecei0eeXX",
                "ut_metadata: bytes after the message",
            ),
            (&big, "ut_metadata: a 16385-byte piece (at most 16384)"),
        ];
        for (input, msg) in table {
            assert_eq!(parse(input).unwrap_err().to_string(), msg);
        }
        assert!(parse(b"le").is_err());
        assert!(parse(b"").is_err());
    }
}
