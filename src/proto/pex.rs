//! BEP 11 `ut_pex` messages, pure: peers a neighbour connected to
//! (`added`, `added6`, with one flag byte each in `added.f`/`added6.f`) and
//! left (`dropped`, `dropped6`), all compact.

use crate::proto::bencode::{self, Owned};
use crate::proto::tracker::{compact_peers, encode_compact};
use std::fmt;
use std::net::SocketAddr;

/// Peers we send in one message at most (BEP 11's advice).
pub const MAX_SEND: usize = 50;
/// Peers we take from one message at most: more is dropped unread.
pub const MAX_TAKE: usize = 200;
/// Values a message may hold (four lists and their flags).
const MAX_ITEMS: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pex {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PexError {
    Bencode(bencode::Error),
    NotADict,
    /// A list whose length is not a multiple of its entry size.
    BadList(&'static str),
}

impl fmt::Display for PexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PexError::Bencode(e) => write!(f, "ut_pex: {e}"),
            PexError::NotADict => f.write_str("ut_pex: not a dictionary"),
            PexError::BadList(key) => write!(f, "ut_pex: malformed {key}"),
        }
    }
}

impl std::error::Error for PexError {}

pub fn parse(payload: &[u8]) -> Result<Pex, PexError> {
    let v = bencode::decode_limited(payload, MAX_ITEMS).map_err(PexError::Bencode)?;
    if v.as_dict().is_none() {
        return Err(PexError::NotADict);
    }
    let list = |key: &'static str, ip_len: usize| -> Result<Vec<SocketAddr>, PexError> {
        let Some(bytes) = v.get(key).and_then(|b| b.as_bytes()) else {
            return Ok(Vec::new());
        };
        // Only the first MAX_TAKE entries are looked at.
        let entry = ip_len + 2;
        let bytes = &bytes[..bytes.len().min(MAX_TAKE * entry)];
        compact_peers(bytes, key, ip_len).map_err(|_| PexError::BadList(key))
    };
    let mut added = list("added", 4)?;
    added.extend(list("added6", 16)?);
    added.truncate(MAX_TAKE);
    let mut dropped = list("dropped", 4)?;
    dropped.extend(list("dropped6", 16)?);
    dropped.truncate(MAX_TAKE);
    Ok(Pex { added, dropped })
}

impl Pex {
    /// The message, with no flags set for the added peers.
    pub fn encode(&self) -> Vec<u8> {
        let (a4, a6) = encode_compact(&self.added);
        let (d4, d6) = encode_compact(&self.dropped);
        let (f4, f6) = (vec![0u8; a4.len() / 6], vec![0u8; a6.len() / 18]);
        Owned::dict()
            .insert("added", a4)
            .insert("added.f", f4)
            .insert("added6", a6)
            .insert("added6.f", f6)
            .insert("dropped", d4)
            .insert("dropped6", d6)
            .encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn round_trip_both_families() {
        let pex = Pex {
            added: addrs(&["10.0.0.1:6881", "[2001:db8::1]:7000"]),
            dropped: addrs(&["10.0.0.2:1"]),
        };
        assert_eq!(parse(&pex.encode()).unwrap(), pex);
    }

    #[test]
    fn hostile_messages_cost_nothing_beyond_the_cap() {
        // 100,000 added peers: only MAX_TAKE are read.
        let many: Vec<u8> = (0..100_000u32)
            .flat_map(|i| {
                let mut e = (0x0a00_0000u32 + i).to_be_bytes().to_vec();
                e.extend_from_slice(&6881u16.to_be_bytes());
                e
            })
            .collect();
        let msg = Owned::dict().insert("added", many).encode();
        assert_eq!(parse(&msg).unwrap().added.len(), MAX_TAKE);
        let table: Vec<(&[u8], &str)> = vec![
            (b"le", "ut_pex: not a dictionary"),
            (b"d5:added5:abcdee", "ut_pex: malformed added"),
        ];
        for (input, want) in table {
            assert_eq!(parse(input).unwrap_err().to_string(), want);
        }
        assert_eq!(parse(b"de").unwrap(), Pex::default());
    }
}
