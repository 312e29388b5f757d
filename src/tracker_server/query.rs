//! The tracker server's request parsing: the query string of an announce
//! (BEP 3, with BEP 23's `compact`) and of a scrape (BEP 48), percent-decoded
//! byte by byte.
//!
//! Owns: which keys we read, their defaults and limits, and the exact text
//! a client sees in `failure reason` when its query is wrong. Does not own:
//! the peer store and what an announce does ([`super::swarms`]), or HTTP
//! framing ([`super`]). A UDP front-end (BEP 15) builds an [`AnnounceQuery`]
//! from its binary request instead of calling [`parse_announce`].
//!
//! Decoding follows RFC 3986, not HTML forms: `%XX` is one byte and `+` is
//! a literal `+` (a raw `+` inside a binary info hash must stay 0x2B).
//! Unknown keys are ignored. The keys we use may appear once each; a repeat
//! is an error rather than a silent choice between two values. `ip`, `ipv4`
//! and `ipv6` are ignored on purpose: a peer is stored at the source address
//! of its connection, so no one can enter someone else's address in a swarm.

use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{percent_decode, query_pairs, Event};
use std::net::SocketAddr;

/// Peers returned when the client does not say how many it wants: what
/// most trackers give, and plenty for a client that connects to 50 or so.
pub const DEFAULT_NUMWANT: usize = 50;

/// The most peers one announce returns, whatever `numwant` asks: 200 is
/// what libtorrent and uTorrent ask for, and it keeps a compact reply
/// near 1.2 KB and the selection work per request small.
pub const MAX_NUMWANT: usize = 200;

/// The most info hashes one scrape may name. An 8 KiB request head holds
/// about 110 of them (`info_hash=` and 60 escaped characters each); the cap
/// keeps the reply and the time spent under the store's lock small even if
/// that limit grows.
pub const MAX_SCRAPE_HASHES: usize = 100;

/// Which address families an announce wants peers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// Both: IPv4 peers in `peers`, IPv6 in `peers6` (HTTP, BEP 7).
    Both,
    /// IPv4 only: a BEP 15 reply to a request that came over IPv4.
    V4,
    /// IPv6 only: a BEP 15 reply to a request that came over IPv6.
    V6,
}

impl Families {
    pub fn allows(self, addr: SocketAddr) -> bool {
        match self {
            Families::Both => true,
            Families::V4 => addr.is_ipv4(),
            Families::V6 => addr.is_ipv6(),
        }
    }
}

/// A parsed announce: what the peer told us, independent of the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceQuery {
    pub info_hash: InfoHash,
    pub peer_id: [u8; 20],
    /// The port the peer accepts connections on (never 0).
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes the peer still lacks; `None` when it did not say, which
    /// counts as a leecher. `Some(0)` is a seeder.
    pub left: Option<u64>,
    pub event: Option<Event>,
    /// Peers wanted, already defaulted ([`DEFAULT_NUMWANT`]) and capped
    /// ([`MAX_NUMWANT`]).
    pub numwant: usize,
    /// BEP 23 compact peer strings (the default) or the original list of
    /// dictionaries (`compact=0`).
    pub compact: bool,
    /// Leave `peer id` out of the dictionary list (`no_peer_id=1`).
    pub no_peer_id: bool,
    /// The client's session key, kept for logging. Not used for identity:
    /// a peer is its (address, port), see [`super::swarms`].
    pub key: Option<Vec<u8>>,
    /// Which families the reply may contain; [`Families::Both`] for HTTP.
    pub families: Families,
}

/// `numwant` as the store uses it: the default when absent or negative
/// (BEP 15 sends -1 for "default"), at most [`MAX_NUMWANT`].
pub fn numwant(requested: Option<i64>) -> usize {
    match requested {
        Some(n) if n >= 0 => usize::try_from(n).map_or(MAX_NUMWANT, |n| n.min(MAX_NUMWANT)),
        _ => DEFAULT_NUMWANT,
    }
}

/// Parses an announce query string (the part after `?`).
pub fn parse_announce(query: &[u8]) -> Result<AnnounceQuery, String> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let mut uploaded = None;
    let mut downloaded = None;
    let mut left = None;
    let mut event = None;
    let mut numwant_raw = None;
    let mut compact = None;
    let mut no_peer_id = None;
    let mut key = None;
    for (name, raw) in query_pairs(query) {
        let name = percent_decode(name).ok_or("bad percent-encoding in the query")?;
        let value = || {
            percent_decode(raw).ok_or_else(|| {
                format!("bad percent-encoding in {}", String::from_utf8_lossy(&name))
            })
        };
        match &name[..] {
            b"info_hash" => once(&mut info_hash, "info_hash", twenty("info_hash", &value()?)?)?,
            b"peer_id" => once(&mut peer_id, "peer_id", twenty("peer_id", &value()?)?)?,
            b"port" => {
                let p = parse_u64(&value()?)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|&p| p != 0)
                    .ok_or("invalid port")?;
                once(&mut port, "port", p)?;
            }
            b"uploaded" => once(&mut uploaded, "uploaded", number("uploaded", &value()?)?)?,
            b"downloaded" => once(
                &mut downloaded,
                "downloaded",
                number("downloaded", &value()?)?,
            )?,
            b"left" => once(&mut left, "left", number("left", &value()?)?)?,
            b"event" => once(&mut event, "event", parse_event(&value()?)?)?,
            b"numwant" => once(&mut numwant_raw, "numwant", parse_numwant(&value()?)?)?,
            b"compact" => {
                let c = match &value()?[..] {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err("invalid compact: expected 0 or 1".into()),
                };
                once(&mut compact, "compact", c)?;
            }
            b"no_peer_id" => once(&mut no_peer_id, "no_peer_id", value()? != b"0")?,
            b"key" => once(&mut key, "key", value()?)?,
            _ => {}
        }
    }
    Ok(AnnounceQuery {
        info_hash: InfoHash(info_hash.ok_or("missing info_hash")?),
        peer_id: peer_id.ok_or("missing peer_id")?,
        port: port.ok_or("missing port")?,
        uploaded: uploaded.unwrap_or(0),
        downloaded: downloaded.unwrap_or(0),
        left,
        event: event.flatten(),
        numwant: numwant(numwant_raw),
        compact: compact.unwrap_or(true),
        no_peer_id: no_peer_id.unwrap_or(false),
        key,
        families: Families::Both,
    })
}

/// Parses a scrape query: every `info_hash` it names, in order (none means
/// "all torrents"). Other keys are ignored.
pub fn parse_scrape(query: &[u8]) -> Result<Vec<InfoHash>, String> {
    let mut hashes = Vec::new();
    for (name, raw) in query_pairs(query) {
        if percent_decode(name).as_deref() != Some(b"info_hash") {
            continue;
        }
        if hashes.len() == MAX_SCRAPE_HASHES {
            return Err(format!(
                "too many info_hash values: at most {MAX_SCRAPE_HASHES} per scrape"
            ));
        }
        let value = percent_decode(raw).ok_or("bad percent-encoding in info_hash")?;
        hashes.push(InfoHash(twenty("info_hash", &value)?));
    }
    Ok(hashes)
}

fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} given more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn twenty(name: &str, bytes: &[u8]) -> Result<[u8; 20], String> {
    <[u8; 20]>::try_from(bytes).map_err(|_| format!("{name} must be 20 bytes, got {}", bytes.len()))
}

/// ASCII decimal digits only (no sign, no spaces), without overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

fn number(name: &str, s: &[u8]) -> Result<u64, String> {
    parse_u64(s).ok_or_else(|| format!("invalid {name}: expected a non-negative integer"))
}

/// `Some(None)` for a regular announce: empty, `empty` (some clients spell
/// it out) and `paused` (BEP 21, a partial seed that stopped downloading;
/// it is still in the swarm).
fn parse_event(s: &[u8]) -> Result<Option<Event>, String> {
    match s {
        b"started" => Ok(Some(Event::Started)),
        b"completed" => Ok(Some(Event::Completed)),
        b"stopped" => Ok(Some(Event::Stopped)),
        b"" | b"empty" | b"paused" => Ok(None),
        _ => Err("invalid event: expected started, completed, stopped or empty".into()),
    }
}

/// A count, or -1 (and other negatives) for the default; huge counts
/// saturate, as they are capped anyway.
fn parse_numwant(s: &[u8]) -> Result<i64, String> {
    let bad = || "invalid numwant: expected an integer".to_string();
    match s.strip_prefix(b"-") {
        Some(digits) => parse_u64(digits).map(|_| -1).ok_or_else(bad),
        None if !s.is_empty() && s.iter().all(u8::is_ascii_digit) => Ok(parse_u64(s)
            .and_then(|n| i64::try_from(n).ok())
            .unwrap_or(i64::MAX)),
        None => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::tracker::percent_encode;

    const HASH: [u8; 20] = [
        0x00, 0xff, b'+', b'%', b'&', b'=', 0x80, b' ', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];

    fn good() -> String {
        format!(
            "info_hash={}&peer_id=-SH0100-abcdefghijkl&port=6881&uploaded=1&downloaded=2\
             &left=3&event=started&numwant=20&compact=1&key=beef&ip=10.9.9.9",
            percent_encode(&HASH)
        )
    }

    #[test]
    fn parses_a_good_announce() {
        let q = parse_announce(good().as_bytes()).unwrap();
        assert_eq!(
            q,
            AnnounceQuery {
                info_hash: InfoHash(HASH),
                peer_id: *b"-SH0100-abcdefghijkl",
                port: 6881,
                uploaded: 1,
                downloaded: 2,
                left: Some(3),
                event: Some(Event::Started),
                numwant: 20,
                compact: true,
                no_peer_id: false,
                key: Some(b"beef".to_vec()),
                families: Families::Both,
            }
        );
        // Lower-case escapes, a raw `+`, and the minimal query.
        let minimal = b"info_hash=%00%ff+%25%26%3d%80%20%01%02%03%04%05%06%07%08%09%0a%0b%0c\
                        &peer_id=%41AAAAAAAAAAAAAAAAAAA&port=1";
        let q = parse_announce(minimal).unwrap();
        assert_eq!(q.info_hash, InfoHash(HASH));
        assert_eq!(q.peer_id, [b'A'; 20]);
        assert_eq!((q.left, q.event, q.numwant), (None, None, DEFAULT_NUMWANT));
        assert!(q.compact && !q.no_peer_id);
    }

    #[test]
    fn announce_fields_table() {
        let base = good();
        let with = |extra: &str| format!("{}&{extra}", base.replace("&numwant=20", ""));
        /// numwant, event, compact, no_peer_id
        type Fields = (usize, Option<Event>, bool, bool);
        let table: Vec<(String, Result<Fields, &str>)> = vec![
            (
                with("numwant=0"),
                Ok((0, Some(Event::Started), true, false)),
            ),
            (
                with("numwant=200"),
                Ok((200, Some(Event::Started), true, false)),
            ),
            (
                with("numwant=201"),
                Ok((MAX_NUMWANT, Some(Event::Started), true, false)),
            ),
            (
                with("numwant=99999999999999999999999"),
                Ok((MAX_NUMWANT, Some(Event::Started), true, false)),
            ),
            (
                with("numwant=-1"),
                Ok((DEFAULT_NUMWANT, Some(Event::Started), true, false)),
            ),
            (
                with("numwant=many"),
                Err("invalid numwant: expected an integer"),
            ),
            (
                with("numwant=-x"),
                Err("invalid numwant: expected an integer"),
            ),
        ];
        for (query, want) in table {
            let got = parse_announce(query.as_bytes())
                .map(|q| (q.numwant, q.event, q.compact, q.no_peer_id));
            assert_eq!(got, want.map_err(String::from), "{query}");
        }
        let event =
            |e: &str| parse_announce(base.replace("event=started", e).as_bytes()).map(|q| q.event);
        assert_eq!(event("event=completed"), Ok(Some(Event::Completed)));
        assert_eq!(event("event=stopped"), Ok(Some(Event::Stopped)));
        assert_eq!(event("event="), Ok(None));
        assert_eq!(event("event=empty"), Ok(None));
        assert_eq!(event("event=paused"), Ok(None));
        assert_eq!(event("x=y"), Ok(None));
        assert_eq!(
            event("event=finished"),
            Err("invalid event: expected started, completed, stopped or empty".into())
        );
        let q = parse_announce(
            base.replace("compact=1", "compact=0&no_peer_id=1")
                .as_bytes(),
        )
        .unwrap();
        assert!(!q.compact && q.no_peer_id);
    }

    #[test]
    fn announce_errors() {
        let base = good();
        let hash = percent_encode(&HASH);
        let table: Vec<(String, &str)> = vec![
            (
                base.replace(&format!("info_hash={hash}&"), ""),
                "missing info_hash",
            ),
            (
                base.replace(&hash, "%00%01%02"),
                "info_hash must be 20 bytes, got 3",
            ),
            (
                base.replace(&hash, &format!("{hash}%00")),
                "info_hash must be 20 bytes, got 21",
            ),
            (
                base.replace(&hash, "%0"),
                "bad percent-encoding in info_hash",
            ),
            (
                base.replace(&hash, "%zz"),
                "bad percent-encoding in info_hash",
            ),
            (
                base.replace("peer_id=-SH0100-abcdefghijkl&", ""),
                "missing peer_id",
            ),
            (
                base.replace("-SH0100-abcdefghijkl", "short"),
                "peer_id must be 20 bytes, got 5",
            ),
            (base.replace("port=6881&", ""), "missing port"),
            (base.replace("port=6881", "port=0"), "invalid port"),
            (base.replace("port=6881", "port=65536"), "invalid port"),
            (base.replace("port=6881", "port=-1"), "invalid port"),
            (base.replace("port=6881", "port=68a"), "invalid port"),
            (base.replace("port=6881", "port="), "invalid port"),
            (
                base.replace("left=3", "left=18446744073709551616"),
                "invalid left: expected a non-negative integer",
            ),
            (
                base.replace("uploaded=1", "uploaded=1.5"),
                "invalid uploaded: expected a non-negative integer",
            ),
            (format!("{base}&port=6882"), "port given more than once"),
            (
                format!("{base}&info_hash={hash}"),
                "info_hash given more than once",
            ),
            (
                base.replace("compact=1", "compact=yes"),
                "invalid compact: expected 0 or 1",
            ),
            (format!("{base}&%=1"), "bad percent-encoding in the query"),
            (String::new(), "missing info_hash"),
        ];
        for (query, want) in table {
            assert_eq!(
                parse_announce(query.as_bytes()),
                Err(want.to_string()),
                "{query}"
            );
        }
    }

    #[test]
    fn scrape_queries() {
        let a = percent_encode(&[1; 20]);
        let b = percent_encode(&HASH);
        assert_eq!(parse_scrape(b""), Ok(vec![]));
        assert_eq!(
            parse_scrape(format!("info_hash={a}&x=1&info_hash={b}").as_bytes()),
            Ok(vec![InfoHash([1; 20]), InfoHash(HASH)])
        );
        assert_eq!(
            parse_scrape(b"info_hash=abc"),
            Err("info_hash must be 20 bytes, got 3".into())
        );
        assert_eq!(
            parse_scrape(b"info_hash=%q1"),
            Err("bad percent-encoding in info_hash".into())
        );
        let many = vec![format!("info_hash={a}"); MAX_SCRAPE_HASHES + 1].join("&");
        assert_eq!(
            parse_scrape(many.as_bytes()),
            Err("too many info_hash values: at most 100 per scrape".into())
        );
        let enough = vec![format!("info_hash={a}"); MAX_SCRAPE_HASHES].join("&");
        assert_eq!(parse_scrape(enough.as_bytes()).map(|h| h.len()), Ok(100));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b+%7e%7E"), Some(b"a b+~~".to_vec()));
        assert_eq!(percent_decode(b"%"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%g0"), None);
        assert_eq!(percent_decode(b""), Some(vec![]));
        assert_eq!(numwant(None), 50);
        assert_eq!(numwant(Some(-1)), 50);
        assert_eq!(numwant(Some(7)), 7);
        assert_eq!(numwant(Some(i64::MAX)), 200);
    }
}
