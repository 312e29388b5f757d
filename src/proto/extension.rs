//! The BEP 10 extension handshake, pure: what we tell a peer that supports
//! the extension protocol, and what we take from its answer.
//!
//! Owns: the handshake dictionary: the extension messages each side
//! speaks (`m`: we offer `ut_metadata`, BEP 9, and `ut_pex`, BEP 11, under
//! the ids [`UT_METADATA`] and [`UT_PEX`]), `metadata_size`, `reqq` (how
//! many requests the peer will queue from us, which caps our request
//! pipeline to it), `p` (its listen port) and `v` (its client name, for
//! logs). Does not own: the reserved bit ([`crate::proto::wire`]), the
//! messages themselves ([`crate::proto::ut_metadata`],
//! [`crate::proto::pex`]) or the pipeline (the orchestrator).

use crate::proto::bencode::{self, Owned};
use std::fmt;

/// Extended message id of the handshake.
pub const HANDSHAKE_ID: u8 = 0;
/// The ids under which peers send us these messages (ours to choose).
pub const UT_PEX: u8 = 1;
pub const UT_METADATA: u8 = 2;

/// The most values an extension handshake may hold. Real ones have a few
/// dozen (libtorrent's, with every extension: about 30); a parsed value
/// costs tens of bytes, so a 1 MiB handshake of tiny items must be refused
/// early, not built (50 such peers once cost a seeder a gigabyte).
pub const MAX_HANDSHAKE_ITEMS: usize = 1024;

/// What a peer that does not say `reqq` is assumed to queue (BEP 10's
/// figure for libtorrent's default of its day; conservative for others).
pub const DEFAULT_REQQ: u32 = 250;

/// What we learned from a peer's extension handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    /// Requests the peer will queue from us.
    pub reqq: Option<u32>,
    /// Client name and version (`v`), lossy UTF-8, at most 64 characters.
    pub client: Option<String>,
    /// The ids under which the peer takes `ut_metadata` and `ut_pex`.
    pub ut_metadata: Option<u8>,
    pub ut_pex: Option<u8>,
    /// The size of the info dictionary, as the peer says.
    pub metadata_size: Option<u64>,
    /// The port the peer listens on (`p`).
    pub listen_port: Option<u16>,
}

/// What we offer in our handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Requests we queue from a peer.
    pub reqq: u32,
    pub listen_port: Option<u16>,
    /// The info dictionary's size, once we have it.
    pub metadata_size: Option<usize>,
    /// Peer exchange (never on a private torrent).
    pub pex: bool,
}

/// Our handshake payload.
pub fn our_handshake(offer: Offer) -> Vec<u8> {
    let mut m = Owned::dict().insert("ut_metadata", i64::from(UT_METADATA));
    if offer.pex {
        m = m.insert("ut_pex", i64::from(UT_PEX));
    }
    let mut d = Owned::dict()
        .insert("m", m)
        .insert("reqq", i64::from(offer.reqq))
        .insert("v", concat!("shoal ", env!("CARGO_PKG_VERSION")));
    if let Some(p) = offer.listen_port {
        d = d.insert("p", i64::from(p));
    }
    if let Some(size) = offer.metadata_size {
        d = d.insert("metadata_size", size as i64);
    }
    d.encode()
}

/// Why a peer's extension handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionError {
    /// The payload is not bencode.
    Bencode(bencode::Error),
    /// The payload is bencode but not a dictionary.
    NotADict,
}

impl fmt::Display for ExtensionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtensionError::Bencode(e) => write!(f, "extension handshake: {e}"),
            ExtensionError::NotADict => f.write_str("extension handshake is not a dictionary"),
        }
    }
}

impl std::error::Error for ExtensionError {}

/// Reads a peer's handshake payload. Anything malformed is an error (the
/// peer said it speaks BEP 10); unknown keys are ignored, out-of-range
/// numbers count as absent.
pub fn parse_handshake(payload: &[u8]) -> Result<PeerInfo, ExtensionError> {
    let v =
        bencode::decode_limited(payload, MAX_HANDSHAKE_ITEMS).map_err(ExtensionError::Bencode)?;
    if v.as_dict().is_none() {
        return Err(ExtensionError::NotADict);
    }
    let int = |dict: &bencode::Value, key: &str| dict.get(key).and_then(|n| n.as_int());
    // An id of 0 means the peer does not (or no longer) take the message.
    let id = |name: &str| {
        v.get("m")
            .and_then(|m| int(m, name))
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n != 0)
    };
    Ok(PeerInfo {
        reqq: int(&v, "reqq")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0),
        ut_metadata: id("ut_metadata"),
        ut_pex: id("ut_pex"),
        metadata_size: int(&v, "metadata_size").and_then(|n| u64::try_from(n).ok()),
        listen_port: int(&v, "p")
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n != 0),
        client: v.get("v").and_then(|c| c.as_bytes()).map(|c| {
            String::from_utf8_lossy(c)
                .chars()
                .take(64)
                .map(|ch| if ch.is_control() { '?' } else { ch })
                .collect()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_handshake_round_trips() {
        let ours = our_handshake(Offer {
            reqq: 512,
            listen_port: Some(6881),
            metadata_size: Some(31_337),
            pex: true,
        });
        assert_eq!(
            ours,
            b"d1:md11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31337e1:pi6881e4:reqqi512e1:v11:shoal 0.1.0e".to_vec()
        );
        let back = parse_handshake(&ours).unwrap();
        assert_eq!(back.reqq, Some(512));
        assert_eq!(back.client.as_deref(), Some("shoal 0.1.0"));
        assert_eq!(
            (back.ut_metadata, back.ut_pex),
            (Some(UT_METADATA), Some(UT_PEX))
        );
        assert_eq!(
            (back.metadata_size, back.listen_port),
            (Some(31_337), Some(6881))
        );
        let private = our_handshake(Offer {
            reqq: 512,
            listen_port: None,
            metadata_size: None,
            pex: false,
        });
        assert_eq!(parse_handshake(&private).unwrap().ut_pex, None);
    }

    /// Regression (issue 11, item 6): a handshake of 150,000 tiny keys is
    /// refused at its 1025th value instead of being built.
    #[test]
    fn a_handshake_of_many_items_is_refused_early() {
        let mut h = b"d".to_vec();
        for i in 0..150_000 {
            h.extend_from_slice(format!("6:k{i:05}i0e").as_bytes());
        }
        h.push(b'e');
        let err = parse_handshake(&h).unwrap_err();
        assert!(err.to_string().ends_with("more than 1024 values"), "{err}");
    }

    #[test]
    fn hostile_handshakes() {
        let table: Vec<(&[u8], Result<PeerInfo, &str>)> = vec![
            (b"de", Ok(PeerInfo::default())),
            (b"d4:reqqi-5ee", Ok(PeerInfo::default())),
            (b"d4:reqqi0ee", Ok(PeerInfo::default())),
            (b"d4:reqqi99999999999ee", Ok(PeerInfo::default())),
            (b"d4:reqq3:abce", Ok(PeerInfo::default())),
            (
                b"d1:v5:a\x1bb\xffce",
                Ok(PeerInfo {
                    client: Some("a?b\u{fffd}c".into()),
                    ..PeerInfo::default()
                }),
            ),
            (b"le", Err("extension handshake is not a dictionary")),
            (
                b"d",
                Err("extension handshake: bencode error at byte 1: input ends inside a value"),
            ),
        ];
        for (input, want) in table {
            let got = parse_handshake(input);
            match want {
                Ok(info) => assert_eq!(got, Ok(info)),
                Err(msg) => assert_eq!(got.unwrap_err().to_string(), msg),
            }
        }
    }
}
