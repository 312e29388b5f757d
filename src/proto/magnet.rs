//! Magnet links (BEP 9's URI form), pure: `magnet:?xt=urn:btih:…` with
//! the info hash in 40 hex digits or 32 base32 characters, `dn` (a display
//! name), repeated `tr` (trackers: each its own BEP 12 tier, as libtorrent
//! takes them) and repeated `x.pe` (peer addresses). Unknown parameters are
//! ignored; anything malformed is a [`MagnetError`] that says what.

use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{percent_decode, query_pairs};
use std::fmt;
use std::net::SocketAddr;

/// Parameters of one kind we keep at most (a hostile link may repeat
/// `tr` a million times).
pub const MAX_REPEATS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    pub name: Option<String>,
    /// One tier per tracker, in the link's order.
    pub trackers: Vec<Vec<String>>,
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagnetError {
    NotAMagnet,
    /// No `xt=urn:btih:` parameter.
    NoInfoHash,
    /// More than one BitTorrent info hash.
    TwoInfoHashes,
    /// An `xt` hash neither 40 hex digits nor 32 base32 characters.
    BadInfoHash(String),
    /// A `%` not followed by two hex digits, or a value that is not UTF-8.
    BadEncoding(&'static str),
    /// An `x.pe` that is not `HOST:PORT` with an IP address.
    BadPeer(String),
}

impl fmt::Display for MagnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MagnetError::NotAMagnet => f.write_str("not a magnet link (expected magnet:?…)"),
            MagnetError::NoInfoHash => f.write_str("magnet link without xt=urn:btih:…"),
            MagnetError::TwoInfoHashes => f.write_str("magnet link with two btih info hashes"),
            MagnetError::BadInfoHash(h) => write!(
                f,
                "magnet info hash {h:?} is neither 40 hex digits nor 32 base32 characters"
            ),
            MagnetError::BadEncoding(what) => write!(f, "magnet link: bad encoding in {what}"),
            MagnetError::BadPeer(p) => write!(f, "magnet x.pe {p:?} is not IP:PORT"),
        }
    }
}

impl std::error::Error for MagnetError {}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        let query = uri
            .strip_prefix("magnet:?")
            .ok_or(MagnetError::NotAMagnet)?;
        let mut info_hash = None;
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
        };
        for (key, raw) in query_pairs(query.as_bytes()) {
            let text = |what| {
                percent_decode(raw)
                    .and_then(|v| String::from_utf8(v).ok())
                    .ok_or(MagnetError::BadEncoding(what))
            };
            match key {
                b"xt" => {
                    let xt = text("xt")?;
                    let Some(hash) = xt.strip_prefix("urn:btih:") else {
                        continue; // another kind of hash (BEP 52's btmh, ed2k, …)
                    };
                    if info_hash.is_some() {
                        return Err(MagnetError::TwoInfoHashes);
                    }
                    info_hash = Some(parse_btih(hash)?);
                }
                b"dn" => m.name = Some(text("dn")?.replace('+', " ")),
                b"tr" if m.trackers.len() < MAX_REPEATS => m.trackers.push(vec![text("tr")?]),
                b"x.pe" if m.peers.len() < MAX_REPEATS => {
                    let p = text("x.pe")?;
                    m.peers
                        .push(p.parse().map_err(|_| MagnetError::BadPeer(p))?);
                }
                _ => {}
            }
        }
        m.info_hash = info_hash.ok_or(MagnetError::NoInfoHash)?;
        Ok(m)
    }

    /// The link for `info_hash` with these trackers and name (what
    /// `shoal info --magnet` prints).
    pub fn to_uri(&self) -> String {
        let enc = |s: &str| crate::proto::tracker::percent_encode(s.as_bytes());
        let mut uri = format!("magnet:?xt=urn:btih:{}", self.info_hash.hex());
        if let Some(n) = &self.name {
            uri += &format!("&dn={}", enc(n));
        }
        for tr in self.trackers.iter().flatten() {
            uri += &format!("&tr={}", enc(tr));
        }
        for p in &self.peers {
            uri += &format!("&x.pe={}", enc(&p.to_string()));
        }
        uri
    }
}

fn parse_btih(hash: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(hash.chars().take(64).collect());
    let bytes = match hash.len() {
        40 => crate::util::hex::decode(hash),
        32 => base32(hash),
        _ => None,
    };
    bytes
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(InfoHash)
        .ok_or_else(bad)
}

/// RFC 4648 base32 (either case, no padding): 32 characters, 20 bytes.
fn base32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            b @ b'A'..=b'Z' => b - b'A',
            b @ b'2'..=b'7' => b - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn a_full_link() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Some+File%20.iso&tr=http%3A%2F%2Ft1%2Fa\
             &tr=udp://t2:80&x.pe=10.0.0.1:6881&x.pe=[::1]:7000&foo=bar&xl=123"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.info_hash.hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("Some File .iso"));
        assert_eq!(
            m.trackers,
            vec![vec!["http://t1/a".to_string()], vec!["udp://t2:80".into()]]
        );
        assert_eq!(
            m.peers,
            vec![
                "10.0.0.1:6881".parse().unwrap(),
                "[::1]:7000".parse().unwrap()
            ]
        );
        assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m, "round trip");
    }

    #[test]
    fn base32_and_hex_name_the_same_hash() {
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap();
        let b = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", b32.to_lowercase())).unwrap();
        assert_eq!(a.info_hash.hex(), HEX);
        assert_eq!(a, b);
    }

    #[test]
    fn malformed_links_say_what_is_wrong() {
        let table = [
            ("http://x", "not a magnet link (expected magnet:?…)"),
            ("magnet:?dn=x", "magnet link without xt=urn:btih:…"),
            ("magnet:?xt=urn:btih:abc", "magnet info hash \"abc\" is neither 40 hex digits nor 32 base32 characters"),
            ("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1", "magnet info hash \"YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKE1\" is neither 40 hex digits nor 32 base32 characters"),
            ("magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a", "magnet link with two btih info hashes"),
            ("magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&x.pe=host:1", "magnet x.pe \"host:1\" is not IP:PORT"),
            ("magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&tr=%zz", "magnet link: bad encoding in tr"),
        ];
        for (uri, msg) in table {
            assert_eq!(Magnet::parse(uri).unwrap_err().to_string(), msg, "{uri}");
        }
        // Other hash kinds are skipped; repeats are bounded.
        let mut long = format!("magnet:?xt=urn:btmh:1220ab&xt=urn:btih:{HEX}");
        for i in 0..1000 {
            long += &format!("&tr=http://t{i}/");
        }
        assert_eq!(Magnet::parse(&long).unwrap().trackers.len(), MAX_REPEATS);
    }
}
