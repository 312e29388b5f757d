//! The tracker protocol's pure part (BEP 3, 7, 23, 48): the announce query
//! string and the parsing of announce and scrape responses.
//!
//! Owns: encoding (binary values percent-encoded byte by byte), the
//! response keys and their meaning, compact peer lists. Does not own:
//! sockets, retries or timing (the announce client does that).

use crate::proto::bencode::{self, Value};
use crate::proto::metainfo::InfoHash;
use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// What we tell a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    pub numwant: Option<u32>,
    /// Random per session; lets a tracker recognise us across IP changes.
    pub key: u32,
    /// Echoed from an earlier response's `tracker id`.
    pub tracker_id: Option<Vec<u8>>,
    /// The address we accept peers on, when it is a specific one: sent as
    /// `ipv4=` or `ipv6=` (BEP 7) so a tracker reached over the other
    /// family can still hand it out.
    pub address: Option<IpAddr>,
}

impl Announce {
    /// The query string (without `?`).
    pub fn query(&self) -> String {
        let mut q = String::with_capacity(256);
        q.push_str("info_hash=");
        percent_encode_into(&mut q, &self.info_hash.0);
        q.push_str("&peer_id=");
        percent_encode_into(&mut q, &self.peer_id);
        let _ = write!(
            q,
            "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
            self.port, self.uploaded, self.downloaded, self.left, self.key
        );
        if let Some(e) = self.event {
            let _ = write!(q, "&event={}", e.as_str());
        }
        if let Some(n) = self.numwant {
            let _ = write!(q, "&numwant={n}");
        }
        if let Some(id) = &self.tracker_id {
            q.push_str("&trackerid=");
            percent_encode_into(&mut q, id);
        }
        match self.address {
            Some(IpAddr::V4(ip)) => {
                let _ = write!(q, "&ipv4={ip}");
            }
            Some(IpAddr::V6(ip)) => {
                q.push_str("&ipv6=");
                percent_encode_into(&mut q, ip.to_string().as_bytes());
            }
            None => {}
        }
        q
    }

    /// The full announce URL for a tracker's base URL.
    pub fn url(&self, base: &str) -> String {
        with_query(base, &self.query())
    }
}

/// `base` with `query` appended after `?` or `&` as the URL needs.
pub fn with_query(base: &str, query: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

/// Percent-encodes every byte except RFC 3986 unreserved characters.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    percent_encode_into(&mut s, bytes);
    s
}

/// [`percent_encode`], appending to `out`.
pub fn percent_encode_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// What a tracker answered to an announce.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// Seconds until the next regular announce, if the tracker said.
    pub interval: Option<u32>,
    /// Seconds we must wait at least between announces.
    pub min_interval: Option<u32>,
    pub tracker_id: Option<Vec<u8>>,
    pub warning: Option<String>,
    /// Seeders.
    pub complete: Option<u32>,
    /// Leechers.
    pub incomplete: Option<u32>,
    /// IPv4 and IPv6 peers, from `peers` (compact or dictionaries) and `peers6`.
    pub peers: Vec<SocketAddr>,
}

/// Why an announce or scrape response is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Not bencode.
    Bencode(bencode::Error),
    /// Valid bencode, but not a dictionary.
    NotADict,
    /// The tracker refused: its `failure reason`.
    Failure(String),
    /// A compact peer string whose length is not a multiple of the entry size.
    CompactLength {
        key: &'static str,
        len: usize,
        entry: usize,
    },
    /// A key holds the wrong type of value.
    WrongType(&'static str),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Bencode(e) => write!(f, "tracker response: {e}"),
            ResponseError::NotADict => write!(f, "tracker response is not a dictionary"),
            ResponseError::Failure(r) => write!(f, "tracker refused: {r}"),
            ResponseError::CompactLength { key, len, entry } => write!(
                f,
                "tracker response '{key}' is {len} bytes, not a multiple of {entry}"
            ),
            ResponseError::WrongType(k) => {
                write!(f, "tracker response '{k}' has the wrong type")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

fn root(body: &[u8]) -> Result<Value<'_>, ResponseError> {
    let v = bencode::decode(body).map_err(ResponseError::Bencode)?;
    if v.as_dict().is_none() {
        return Err(ResponseError::NotADict);
    }
    if let Some(reason) = v.get("failure reason") {
        let r = reason
            .as_bytes()
            .ok_or(ResponseError::WrongType("failure reason"))?;
        return Err(ResponseError::Failure(
            String::from_utf8_lossy(r).into_owned(),
        ));
    }
    Ok(v)
}

/// Parses an announce response body.
pub fn parse_response(body: &[u8]) -> Result<Response, ResponseError> {
    let v = root(body)?;
    let mut r = Response {
        interval: count(&v, "interval")?,
        min_interval: count(&v, "min interval")?,
        tracker_id: opt_bytes(&v, "tracker id")?.map(<[u8]>::to_vec),
        warning: opt_bytes(&v, "warning message")?.map(|w| String::from_utf8_lossy(w).into_owned()),
        complete: count(&v, "complete")?,
        incomplete: count(&v, "incomplete")?,
        peers: Vec::new(),
    };
    match v.get("peers") {
        None => {}
        Some(p) if p.as_bytes().is_some() => {
            r.peers = compact_peers(p.as_bytes().unwrap_or_default(), "peers", 4)?;
        }
        Some(p) => {
            let list = p.as_list().ok_or(ResponseError::WrongType("peers"))?;
            r.peers = list.iter().filter_map(dict_peer).collect();
        }
    }
    if let Some(p6) = opt_bytes(&v, "peers6")? {
        r.peers.extend(compact_peers(p6, "peers6", 16)?);
    }
    Ok(r)
}

/// A non-negative integer that fits `u32`; other values count as absent
/// (a hostile tracker cannot make us wrap).
fn count(v: &Value, key: &'static str) -> Result<Option<u32>, ResponseError> {
    match v.get(key) {
        None => Ok(None),
        Some(n) => {
            let n = n.as_int().ok_or(ResponseError::WrongType(key))?;
            Ok(u32::try_from(n).ok())
        }
    }
}

fn opt_bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<Option<&'a [u8]>, ResponseError> {
    v.get(key)
        .map(|b| b.as_bytes().ok_or(ResponseError::WrongType(key)))
        .transpose()
}

/// `name=value` pairs split at `&`; empty pieces skipped, a piece without
/// `=` has an empty value.
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (&p[..i], &p[i + 1..]),
            None => (p, &p[p.len()..]),
        })
}

/// RFC 3986 percent-decoding; `None` for a `%` not followed by two hex
/// digits.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex_digit(*bytes.next()?)?;
            let lo = hex_digit(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// BEP 23 / BEP 7 compact peers: `ip_len` address bytes then a port, big-endian.
pub fn compact_peers(
    bytes: &[u8],
    key: &'static str,
    ip_len: usize,
) -> Result<Vec<SocketAddr>, ResponseError> {
    let entry = ip_len + 2;
    if bytes.len() % entry != 0 {
        return Err(ResponseError::CompactLength {
            key,
            len: bytes.len(),
            entry,
        });
    }
    Ok(bytes
        .chunks_exact(entry)
        .filter_map(|c| {
            let ip = if ip_len == 4 {
                IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&c[..4]).ok()?))
            } else {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).ok()?))
            };
            let port = u16::from_be_bytes([c[ip_len], c[ip_len + 1]]);
            usable(SocketAddr::new(ip, port))
        })
        .collect())
}

/// Encodes peers compactly: IPv4 into the first vector, IPv6 into the second.
pub fn encode_compact(peers: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in peers {
        match p.ip() {
            IpAddr::V4(ip) => {
                v4.extend_from_slice(&ip.octets());
                v4.extend_from_slice(&p.port().to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v6.extend_from_slice(&ip.octets());
                v6.extend_from_slice(&p.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

/// A peer from the original (non-compact) list form. Entries with a host
/// name instead of an address, or a bad port, are skipped.
fn dict_peer(entry: &Value) -> Option<SocketAddr> {
    let ip = std::str::from_utf8(entry.get("ip")?.as_bytes()?).ok()?;
    let port = u16::try_from(entry.get("port")?.as_int()?).ok()?;
    usable(SocketAddr::new(ip.parse().ok()?, port))
}

/// Drops addresses no one can connect to (port 0, unspecified address).
fn usable(addr: SocketAddr) -> Option<SocketAddr> {
    (addr.port() != 0 && !addr.ip().is_unspecified()).then_some(addr)
}

/// BEP 48: the scrape URL for an announce URL, if it has one (the last
/// path segment must start with `announce`).
pub fn scrape_url(announce: &str) -> Option<String> {
    let (path, query) = match announce.find('?') {
        Some(i) => announce.split_at(i),
        None => (announce, ""),
    };
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    Some(format!("{}/scrape{rest}{query}", &path[..slash]))
}

/// Scrape figures for one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub complete: u32,
    pub downloaded: u32,
    pub incomplete: u32,
}

/// Parses a scrape response and returns the entry for `info_hash`, if any.
pub fn parse_scrape(
    body: &[u8],
    info_hash: &InfoHash,
) -> Result<Option<ScrapeStats>, ResponseError> {
    let v = root(body)?;
    let Some(files) = v.get("files") else {
        return Ok(None);
    };
    let files = files.as_dict().ok_or(ResponseError::WrongType("files"))?;
    let Some((_, entry)) = files.iter().find(|(k, _)| *k == info_hash.0) else {
        return Ok(None);
    };
    let get = |key| count(entry, key).map(Option::unwrap_or_default);
    Ok(Some(ScrapeStats {
        complete: get("complete")?,
        downloaded: get("downloaded")?,
        incomplete: get("incomplete")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bencode::Owned;

    fn announce() -> Announce {
        let mut info_hash = [0u8; 20];
        info_hash[..4].copy_from_slice(&[0x00, 0xff, b'a', b' ']);
        Announce {
            info_hash: InfoHash(info_hash),
            peer_id: *b"-SH0100-abcdefghij~.",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(Event::Started),
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: Some(b"t/1".to_vec()),
            address: None,
        }
    }

    #[test]
    fn query_encodes_binary_byte_by_byte() {
        let q = announce().query();
        assert_eq!(
            q,
            "info_hash=%00%FFa%20%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00\
             &peer_id=-SH0100-abcdefghij~.&port=6881&uploaded=1&downloaded=2&left=3\
             &compact=1&key=deadbeef&event=started&numwant=50&trackerid=t%2F1"
        );
        assert!(announce()
            .url("http://t/announce?pk=1")
            .starts_with("http://t/announce?pk=1&info_hash="));
        assert!(announce()
            .url("http://t/announce")
            .starts_with("http://t/announce?info_hash="));
    }

    #[test]
    fn parses_compact_and_dict_peers() {
        let body = Owned::dict()
            .insert("interval", 1800)
            .insert("min interval", 60)
            .insert("tracker id", "tid")
            .insert("warning message", "be nice")
            .insert("complete", 5)
            .insert("incomplete", 7)
            .insert(
                "peers",
                &[127u8, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 0][..],
            )
            .insert("peers6", {
                let mut v = vec![0u8; 15];
                v.push(1);
                v.extend_from_slice(&[0x1a, 0xe2]);
                v
            })
            .encode();
        let r = parse_response(&body).unwrap();
        assert_eq!(r.interval, Some(1800));
        assert_eq!(r.min_interval, Some(60));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"tid"[..]));
        assert_eq!(r.warning.as_deref(), Some("be nice"));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(7)));
        // The port-0 entry is dropped.
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "[::1]:6882".parse().unwrap()
            ]
        );

        let dicts = Owned::dict()
            .insert("interval", 900)
            .insert(
                "peers",
                vec![
                    Owned::dict()
                        .insert("ip", "10.1.2.3")
                        .insert("port", 51413)
                        .insert("peer id", "x"),
                    Owned::dict()
                        .insert("ip", "tracker.example")
                        .insert("port", 1),
                    Owned::dict().insert("ip", "::2").insert("port", 70000),
                    Owned::dict().insert("ip", "::3").insert("port", 7),
                ],
            )
            .encode();
        let r = parse_response(&dicts).unwrap();
        assert_eq!(
            r.peers,
            vec![
                "10.1.2.3:51413".parse().unwrap(),
                "[::3]:7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn response_errors() {
        let table: Vec<(Vec<u8>, &str)> = vec![
            (
                Owned::dict()
                    .insert("failure reason", "unregistered torrent")
                    .encode(),
                "tracker refused: unregistered torrent",
            ),
            (
                b"<html>".to_vec(),
                "tracker response: bencode error at byte 0: unexpected byte '<'",
            ),
            (b"le".to_vec(), "tracker response is not a dictionary"),
            (
                Owned::dict().insert("peers", vec![1u8; 7]).encode(),
                "tracker response 'peers' is 7 bytes, not a multiple of 6",
            ),
            (
                Owned::dict().insert("peers6", vec![1u8; 17]).encode(),
                "tracker response 'peers6' is 17 bytes, not a multiple of 18",
            ),
            (
                Owned::dict().insert("interval", "soon").encode(),
                "tracker response 'interval' has the wrong type",
            ),
        ];
        for (body, want) in table {
            assert_eq!(parse_response(&body).unwrap_err().to_string(), want);
        }
        // Out-of-range numbers count as absent rather than wrapping.
        let r = parse_response(&Owned::dict().insert("interval", -5).encode()).unwrap();
        assert_eq!(r.interval, None);
    }

    #[test]
    fn compact_round_trip() {
        let peers: Vec<SocketAddr> =
            vec!["1.2.3.4:5".parse().unwrap(), "[::9]:10".parse().unwrap()];
        let (v4, v6) = encode_compact(&peers);
        let mut back = compact_peers(&v4, "peers", 4).unwrap();
        back.extend(compact_peers(&v6, "peers6", 16).unwrap());
        assert_eq!(back, peers);
    }

    #[test]
    fn scrape_urls() {
        let table = [
            ("http://t/announce", Some("http://t/scrape")),
            (
                "http://t/x/announce.php?k=1",
                Some("http://t/x/scrape.php?k=1"),
            ),
            ("http://t/announce_v2", Some("http://t/scrape_v2")),
            ("http://t/a", None),
            ("http://t/x/announce/", None),
        ];
        for (a, want) in table {
            assert_eq!(scrape_url(a).as_deref(), want, "{a}");
        }
    }

    #[test]
    fn scrape_parse() {
        let ih = InfoHash([3; 20]);
        let body = Owned::dict()
            .insert(
                "files",
                Owned::Dict(
                    [(
                        vec![3u8; 20],
                        Owned::dict()
                            .insert("complete", 2)
                            .insert("downloaded", 9)
                            .insert("incomplete", 4),
                    )]
                    .into_iter()
                    .collect(),
                ),
            )
            .encode();
        assert_eq!(
            parse_scrape(&body, &ih).unwrap(),
            Some(ScrapeStats {
                complete: 2,
                downloaded: 9,
                incomplete: 4
            })
        );
        assert_eq!(parse_scrape(&body, &InfoHash([4; 20])).unwrap(), None);
    }
}
