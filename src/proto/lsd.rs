//! BEP 14 (Local Service Discovery) announces: the `BT-SEARCH` datagram a
//! client multicasts to say which torrents it serves on which port.
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n       (or [ff15::efc0:988f]:6771)
//! Port: 6881\r\n
//! Infohash: 40 hex digits\r\n      (one or more)
//! cookie: ours\r\n                 (to recognise our own announces)
//! \r\n
//! \r\n
//! ```
//!
//! Owns: the format, in both directions. A datagram is hostile: over
//! [`MAX_DATAGRAM`] bytes or [`MAX_INFOHASHES`] info hashes it is refused
//! before anything is kept, and every other defect is a typed
//! [`LsdError`]. Header names are case-insensitive, unknown headers are
//! ignored, a bare `\n` ends a line as well as `\r\n`. `Host` names the
//! group the datagram was sent to, [`GROUP_V4`] or [`GROUP_V6`]: we write
//! the one we send to and read any (the socket says where it came from).
//! Does not own: the socket, or what an announce means (`net::lsd`).

use crate::proto::metainfo::InfoHash;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The IPv4 multicast group and port of BEP 14.
pub const GROUP_V4: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);
/// The IPv6 multicast group and port of BEP 14 (site-local scope, `ff15`).
pub const GROUP_V6: SocketAddrV6 = SocketAddrV6::new(
    Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f),
    6771,
    0,
    0,
);
/// Announces are single datagrams; anything larger is not one.
pub const MAX_DATAGRAM: usize = 1400;
/// Info hashes in one announce at most: what fits in [`MAX_DATAGRAM`]
/// (52 bytes a line) with room for the other headers.
pub const MAX_INFOHASHES: usize = 20;
/// A cookie longer than this is not one of ours, nor anyone's.
pub const MAX_COOKIE: usize = 64;

const REQUEST_LINE: &str = "BT-SEARCH * HTTP/1.1";

/// One announce: "I serve these torrents on `port`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub port: u16,
    pub info_hashes: Vec<InfoHash>,
    pub cookie: Option<String>,
}

/// Why a datagram is not an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsdError {
    /// The datagram is over [`MAX_DATAGRAM`] bytes.
    TooLong { len: usize },
    /// A line is not UTF-8 text.
    NotText,
    /// The first line is not `BT-SEARCH * HTTP/1.1`.
    NotASearch,
    /// A header line has no `:`.
    BadHeader,
    /// `Port` is missing.
    NoPort,
    /// `Port` is not a number from 1 to 65535, or is given twice.
    BadPort,
    /// An `Infohash` is not 40 hex digits.
    BadInfohash,
    /// There is no `Infohash`.
    NoInfohash,
    /// More than [`MAX_INFOHASHES`] info hashes.
    TooManyInfohashes,
    /// The cookie is over [`MAX_COOKIE`] bytes.
    BadCookie,
}

impl fmt::Display for LsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LsdError::TooLong { len } => {
                write!(f, "datagram of {len} bytes, over {MAX_DATAGRAM}")
            }
            LsdError::NotText => f.write_str("not text"),
            LsdError::NotASearch => write!(f, "not a '{REQUEST_LINE}'"),
            LsdError::BadHeader => f.write_str("a header line without ':'"),
            LsdError::NoPort => f.write_str("no Port header"),
            LsdError::BadPort => f.write_str("Port is not one port from 1 to 65535"),
            LsdError::BadInfohash => f.write_str("an Infohash that is not 40 hex digits"),
            LsdError::NoInfohash => f.write_str("no Infohash header"),
            LsdError::TooManyInfohashes => write!(f, "over {MAX_INFOHASHES} info hashes"),
            LsdError::BadCookie => write!(f, "a cookie over {MAX_COOKIE} bytes"),
        }
    }
}

impl std::error::Error for LsdError {}

impl Announce {
    /// Parses one datagram. Everything after the first blank line is
    /// ignored.
    pub fn parse(datagram: &[u8]) -> Result<Announce, LsdError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(LsdError::TooLong {
                len: datagram.len(),
            });
        }
        let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotText)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        if lines.next() != Some(REQUEST_LINE) {
            return Err(LsdError::NotASearch);
        }
        let mut port = None;
        let mut info_hashes = Vec::new();
        let mut cookie = None;
        for line in lines.take_while(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or(LsdError::BadHeader)?;
            let value = value.trim();
            if name.eq_ignore_ascii_case("port") {
                let p = value.parse::<u16>().ok().filter(|&p| p > 0);
                if port.is_some() || p.is_none() {
                    return Err(LsdError::BadPort);
                }
                port = p;
            } else if name.eq_ignore_ascii_case("infohash") {
                if info_hashes.len() == MAX_INFOHASHES {
                    return Err(LsdError::TooManyInfohashes);
                }
                info_hashes.push(parse_info_hash(value)?);
            } else if name.eq_ignore_ascii_case("cookie") && cookie.is_none() {
                if value.len() > MAX_COOKIE {
                    return Err(LsdError::BadCookie);
                }
                cookie = Some(value.to_owned());
            }
        }
        let port = port.ok_or(LsdError::NoPort)?;
        if info_hashes.is_empty() {
            return Err(LsdError::NoInfohash);
        }
        Ok(Announce {
            port,
            info_hashes,
            cookie,
        })
    }

    /// The datagram, addressed to `group` ([`GROUP_V4`] or [`GROUP_V6`]:
    /// its `Host` header). At most [`MAX_INFOHASHES`] info hashes and a
    /// cookie of at most [`MAX_COOKIE`] bytes keep it under
    /// [`MAX_DATAGRAM`] (callers send more hashes in several announces).
    pub fn build(&self, group: SocketAddr) -> Vec<u8> {
        debug_assert!(self.info_hashes.len() <= MAX_INFOHASHES);
        debug_assert!(self.cookie.as_ref().is_none_or(|c| c.len() <= MAX_COOKIE));
        // SocketAddrV6 displays as `[ip]:port`, the form BEP 14 shows.
        let mut s = format!("{REQUEST_LINE}\r\nHost: {group}\r\nPort: {}\r\n", self.port);
        for h in &self.info_hashes {
            s.push_str(&format!("Infohash: {}\r\n", h.hex()));
        }
        if let Some(c) = &self.cookie {
            s.push_str(&format!("cookie: {c}\r\n"));
        }
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }
}

fn parse_info_hash(value: &str) -> Result<InfoHash, LsdError> {
    crate::util::hex::decode(value)
        .and_then(|bytes| bytes.try_into().ok())
        .map(InfoHash)
        .ok_or(LsdError::BadInfohash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "0123456789abcdef0123456789abcdef01234567";
    const H2: &str = "FEDCBA9876543210FEDCBA9876543210FEDCBA98";

    fn hash(hex: &str) -> InfoHash {
        parse_info_hash(hex).unwrap()
    }

    #[test]
    fn builds_what_bep_14_shows_and_parses_it_back() {
        let a = Announce {
            port: 6881,
            info_hashes: vec![hash(H1), hash(H2)],
            cookie: Some("c00k1e".into()),
        };
        let table: [(SocketAddr, &str); 2] = [
            (GROUP_V4.into(), "239.192.152.143:6771"),
            (GROUP_V6.into(), "[ff15::efc0:988f]:6771"),
        ];
        for (group, host) in table {
            let bytes = a.build(group);
            assert_eq!(
                String::from_utf8(bytes.clone()).unwrap(),
                format!(
                    "BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: 6881\r\n\
                     Infohash: {H1}\r\nInfohash: {}\r\ncookie: c00k1e\r\n\r\n\r\n",
                    H2.to_lowercase()
                )
            );
            assert_eq!(Announce::parse(&bytes), Ok(a.clone()));
        }
    }

    /// Either group's `Host`, with or without its port, or none: `Host`
    /// says nothing we use (the socket knows the group), so no form of it
    /// makes an otherwise good announce unreadable.
    #[test]
    fn reads_both_groups_host_headers() {
        for host in [
            "Host: 239.192.152.143:6771\r\n",
            "Host: [ff15::efc0:988f]:6771\r\n",
            "HOST:[FF15::EFC0:988F]:6771\r\n",
            "Host: ff15::efc0:988f\r\n",
            "",
        ] {
            let text =
                format!("BT-SEARCH * HTTP/1.1\r\n{host}Port: 6881\r\nInfohash: {H1}\r\n\r\n");
            let got = Announce::parse(text.as_bytes());
            assert_eq!(got.map(|a| a.port), Ok(6881), "{host:?}");
        }
    }

    /// libtorrent's announce: its own header case, no cookie trailer.
    #[test]
    fn reads_other_clients_spelling() {
        let lt = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n\
             Infohash: {H2}\r\ncookie: 1a2b\r\n\r\n\r\n"
        );
        let bare = format!("BT-SEARCH * HTTP/1.1\nPORT:6881\nINFOHASH:  {H1}\nX-Other: y\n\n");
        let got = Announce::parse(lt.as_bytes()).unwrap();
        assert_eq!((got.port, got.info_hashes), (51413, vec![hash(H2)]));
        assert_eq!(got.cookie.as_deref(), Some("1a2b"));
        let got = Announce::parse(bare.as_bytes()).unwrap();
        assert_eq!((got.port, got.cookie), (6881, None));
    }

    #[test]
    fn every_defect_has_its_error() {
        let ok_hash = format!("Infohash: {H1}\r\n");
        let search = |headers: &str| format!("BT-SEARCH * HTTP/1.1\r\n{headers}\r\n");
        let many: String = (0..=MAX_INFOHASHES).map(|_| ok_hash.as_str()).collect();
        let cases: Vec<(Vec<u8>, LsdError)> = vec![
            (
                vec![b'a'; MAX_DATAGRAM + 1],
                LsdError::TooLong { len: 1401 },
            ),
            (
                b"BT-SEARCH * HTTP/1.1\r\n\xff\r\n".to_vec(),
                LsdError::NotText,
            ),
            (b"".to_vec(), LsdError::NotASearch),
            (
                b"M-SEARCH * HTTP/1.1\r\n\r\n".to_vec(),
                LsdError::NotASearch,
            ),
            (
                search(&format!("Port 1\r\n{ok_hash}")).into(),
                LsdError::BadHeader,
            ),
            (search(&ok_hash).into(), LsdError::NoPort),
            (
                search(&format!("Port: 0\r\n{ok_hash}")).into(),
                LsdError::BadPort,
            ),
            (
                search(&format!("Port: 65536\r\n{ok_hash}")).into(),
                LsdError::BadPort,
            ),
            (
                search(&format!("Port: -1\r\n{ok_hash}")).into(),
                LsdError::BadPort,
            ),
            (
                search(&format!("Port: 1\r\nPort: 2\r\n{ok_hash}")).into(),
                LsdError::BadPort,
            ),
            (
                search("Port: 1\r\nInfohash: 0123\r\n").into(),
                LsdError::BadInfohash,
            ),
            (
                search(&format!("Port: 1\r\nInfohash: {}zz\r\n", &H1[..38])).into(),
                LsdError::BadInfohash,
            ),
            (search("Port: 1\r\n").into(), LsdError::NoInfohash),
            (
                search(&format!("Port: 1\r\n{many}")).into(),
                LsdError::TooManyInfohashes,
            ),
            (
                search(&format!(
                    "Port: 1\r\n{ok_hash}cookie: {}\r\n",
                    "c".repeat(65)
                ))
                .into(),
                LsdError::BadCookie,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Announce::parse(&input),
                Err(want.clone()),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            assert!(!want.to_string().is_empty());
        }
    }

    /// The largest announce we build fits in a datagram.
    #[test]
    fn the_largest_announce_fits() {
        let a = Announce {
            port: 65535,
            info_hashes: vec![hash(H1); MAX_INFOHASHES],
            cookie: Some("c".repeat(MAX_COOKIE)),
        };
        // The IPv6 group's Host header is the longer.
        let bytes = a.build(GROUP_V6.into());
        assert!(bytes.len() <= MAX_DATAGRAM, "{}", bytes.len());
        assert_eq!(Announce::parse(&bytes), Ok(a));
    }

    /// Any prefix of an announce parses to the same announce or an error,
    /// never a panic (a truncated datagram).
    #[test]
    fn every_prefix_is_an_announce_or_an_error() {
        let a = Announce {
            port: 7000,
            info_hashes: vec![hash(H1), hash(H2)],
            cookie: Some("x".into()),
        };
        let bytes = a.build(GROUP_V6.into());
        for cut in 0..bytes.len() {
            if let Ok(got) = Announce::parse(&bytes[..cut]) {
                assert_eq!(got.port, 7000);
            }
        }
    }
}
