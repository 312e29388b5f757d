//! Tests of the BEP 15 codec: round trips and a table of rejections. The
//! fixtures here (a request, peers, a correct tracker's answer) also serve
//! the client's tests in `net::udp_tracker`.

use super::*;
use crate::util::random::Rng;
use std::net::SocketAddr;

/// The connection id our fake trackers hand out.
pub(crate) const CONN_ID: u64 = 0x1122_3344_5566_7788;

pub(crate) const STATS: ScrapeStats = ScrapeStats {
    complete: 4,
    downloaded: 9,
    incomplete: 3,
};

pub(crate) fn hash() -> InfoHash {
    InfoHash([0xab; 20])
}

pub(crate) fn request() -> Announce {
    Announce {
        info_hash: hash(),
        peer_id: *b"-SH0100-abcdefghijkl",
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event: Some(Event::Started),
        numwant: Some(50),
        key: 0xdead_beef,
        tracker_id: None,
        address: None,
    }
}

pub(crate) fn v4_peers() -> Vec<SocketAddr> {
    vec![
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:51413".parse().unwrap(),
    ]
}

pub(crate) fn v6_peers() -> Vec<SocketAddr> {
    vec![
        "[2001:db8::1]:6881".parse().unwrap(),
        "[2001:db8::2]:7".parse().unwrap(),
    ]
}

pub(crate) fn peers(family: Family) -> Vec<SocketAddr> {
    match family {
        Family::V4 => v4_peers(),
        Family::V6 => v6_peers(),
    }
}

pub(crate) fn tid_of(d: &[u8]) -> u32 {
    request_header(d).map_or(0, |(_, _, tid)| tid)
}

pub(crate) fn action_of(d: &[u8]) -> u32 {
    request_header(d).map_or(u32::MAX, |(_, action, _)| action)
}

pub(crate) fn error_reply(tid: u32, message: &str) -> Vec<u8> {
    ErrorResponse {
        transaction_id: tid,
        message: message.into(),
    }
    .encode()
}

/// What a correct tracker that issued [`CONN_ID`] answers.
pub(crate) fn proper(d: &[u8], family: Family) -> Vec<u8> {
    let (conn, action, tid) = request_header(d).expect("a request header");
    match action {
        ACTION_CONNECT => ConnectResponse {
            transaction_id: tid,
            connection_id: CONN_ID,
        }
        .encode()
        .to_vec(),
        _ if conn != CONN_ID => error_reply(tid, "bad connection id"),
        ACTION_ANNOUNCE => AnnounceResponse {
            transaction_id: tid,
            interval: 900,
            leechers: 3,
            seeders: 4,
            peers: peers(family),
        }
        .encode(family),
        ACTION_SCRAPE => {
            let asked = ScrapeRequest::decode(d).expect("a scrape request");
            ScrapeResponse {
                transaction_id: tid,
                stats: vec![STATS; asked.info_hashes.len()],
            }
            .encode()
        }
        _ => error_reply(tid, "unknown action"),
    }
}

/// Every shorter prefix of `full` is reported as too short.
fn prefixes_too_short<T: fmt::Debug>(
    full: &[u8],
    message: &'static str,
    min: usize,
    decode: impl Fn(&[u8]) -> Result<T, DecodeError>,
) {
    for len in 0..min {
        assert_eq!(
            decode(&full[..len]).unwrap_err(),
            DecodeError::TooShort { message, len, min },
            "{message} cut at {len}"
        );
    }
}

#[test]
fn connect_round_trip() {
    let req = ConnectRequest {
        transaction_id: 0x0102_0304,
    };
    let b = req.encode();
    assert_eq!(
        b,
        [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
    );
    assert_eq!(ConnectRequest::decode(&b), Ok(req));
    prefixes_too_short(&b, "connect request", 16, ConnectRequest::decode);

    let resp = ConnectResponse {
        transaction_id: 7,
        connection_id: CONN_ID,
    };
    let b = resp.encode();
    assert_eq!(ConnectResponse::decode(&b, 7), Ok(resp));
    prefixes_too_short(&b, "connect response", 16, |d| {
        ConnectResponse::decode(d, 7)
    });
}

#[test]
fn announce_round_trip() {
    let req = AnnounceRequest::new(CONN_ID, 9, &request());
    let b = req.encode();
    assert_eq!(b.len(), 98);
    assert_eq!(&b[80..84], &[0, 0, 0, 2], "started is 2");
    assert_eq!(&b[84..88], &[0, 0, 0, 0], "ip is 0");
    assert_eq!(&b[88..92], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&b[92..96], &[0, 0, 0, 50]);
    assert_eq!(&b[96..98], &6881u16.to_be_bytes());
    assert_eq!(AnnounceRequest::decode(&b), Ok(req.clone()));
    prefixes_too_short(&b, "announce request", 98, AnnounceRequest::decode);
    // BEP 41 options after the 98 bytes are ignored.
    let mut with_options = b.to_vec();
    with_options.extend_from_slice(&[2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', 1, 0]);
    assert_eq!(AnnounceRequest::decode(&with_options), Ok(req));

    // Event codes, the default numwant, totals that do not fit i64.
    for (event, code) in [
        (None, 0u8),
        (Some(Event::Completed), 1),
        (Some(Event::Started), 2),
        (Some(Event::Stopped), 3),
    ] {
        let r = Announce {
            event,
            numwant: None,
            left: u64::MAX,
            ..request()
        };
        let b = AnnounceRequest::new(1, 2, &r).encode();
        assert_eq!(b[83], code);
        assert_eq!(&b[92..96], &[0xff; 4], "numwant -1");
        let back = AnnounceRequest::decode(&b).unwrap();
        assert_eq!(
            (back.event, back.num_want, back.left),
            (event, -1, i64::MAX)
        );
    }

    for family in [Family::V4, Family::V6] {
        let resp = AnnounceResponse {
            transaction_id: 3,
            interval: 1800,
            leechers: 5,
            seeders: 6,
            peers: peers(family),
        };
        let b = resp.encode(family);
        assert_eq!(b.len(), 20 + 2 * family.peer_len());
        assert_eq!(AnnounceResponse::decode(&b, 3, family), Ok(resp.clone()));
        prefixes_too_short(&b, "announce response", 20, |d| {
            AnnounceResponse::decode(d, 3, family)
        });
    }
    // A reply carries one family: the other is left out.
    let mixed = AnnounceResponse {
        transaction_id: 1,
        interval: 1,
        leechers: 0,
        seeders: 0,
        peers: [v4_peers(), v6_peers()].concat(),
    };
    assert_eq!(mixed.encode(Family::V4).len(), 20 + 12);
    assert_eq!(mixed.encode(Family::V6).len(), 20 + 36);
    // Negative counts are absent, not huge.
    let r = AnnounceResponse {
        interval: u32::MAX,
        seeders: 1 << 31,
        ..mixed
    }
    .into_response();
    assert_eq!(
        (r.interval, r.complete, r.incomplete),
        (None, None, Some(0))
    );
}

#[test]
fn scrape_and_error_round_trip() {
    let req = ScrapeRequest {
        connection_id: CONN_ID,
        transaction_id: 4,
        info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20])],
    };
    let b = req.encode();
    assert_eq!(b.len(), 16 + 60);
    assert_eq!(ScrapeRequest::decode(&b), Ok(req));
    prefixes_too_short(&b, "scrape request", 16, ScrapeRequest::decode);
    let many = ScrapeRequest {
        connection_id: 1,
        transaction_id: 1,
        info_hashes: vec![InfoHash([9; 20]); 100],
    };
    let b = many.encode();
    assert_eq!(b.len(), 16 + 20 * MAX_SCRAPE_HASHES);
    assert_eq!(ScrapeRequest::decode(&b).unwrap().info_hashes.len(), 74);

    let resp = ScrapeResponse {
        transaction_id: 4,
        stats: vec![STATS, ScrapeStats::default()],
    };
    let b = resp.encode();
    assert_eq!(b.len(), 8 + 24);
    assert_eq!(ScrapeResponse::decode(&b, 4, 2), Ok(resp));
    prefixes_too_short(&b, "scrape response", 32, |d| {
        ScrapeResponse::decode(d, 4, 2)
    });

    let err = ErrorResponse {
        transaction_id: 5,
        message: "unregistered torrent".into(),
    };
    let b = err.encode();
    assert_eq!(ErrorResponse::decode(&b, 5), Ok(err));
    prefixes_too_short(&b, "error response", 8, |d| ErrorResponse::decode(d, 5));
    // Not UTF-8: replaced, not refused.
    let odd = [&b[..8], &[b'x', 0xff]].concat();
    assert_eq!(ErrorResponse::decode(&odd, 5).unwrap().message, "x\u{fffd}");
    // Any other decoder sees the error action as a wrong action.
    assert_eq!(
        AnnounceResponse::decode(&b, 5, Family::V4),
        Err(DecodeError::WrongAction {
            expected: 1,
            got: 3
        })
    );
}

#[test]
fn rejections() {
    let connect = ConnectResponse {
        transaction_id: 7,
        connection_id: 1,
    }
    .encode();
    let v4 = AnnounceResponse {
        transaction_id: 7,
        interval: 1,
        leechers: 1,
        seeders: 1,
        peers: v4_peers(),
    }
    .encode(Family::V4);
    let one = ScrapeResponse {
        transaction_id: 7,
        stats: vec![STATS],
    }
    .encode();
    let mut bad_event = AnnounceRequest::new(1, 7, &request()).encode();
    bad_event[83] = 4;
    let mut bad_magic = ConnectRequest { transaction_id: 7 }.encode();
    bad_magic[7] = 0x81;
    let scrape_header = &ScrapeRequest {
        connection_id: 1,
        transaction_id: 7,
        info_hashes: vec![],
    }
    .encode();
    let table: Vec<(Result<(), DecodeError>, &str)> = vec![
        (
            ConnectResponse::decode(&connect, 8).map(drop),
            "transaction id 00000007, expected 00000008",
        ),
        (
            ConnectResponse::decode(&v4, 7).map(drop),
            "action 1, expected 0",
        ),
        (
            ConnectResponse::decode(&[&connect[..], &[0]].concat(), 7).map(drop),
            "connect response is 17 bytes, expected 16",
        ),
        (
            AnnounceResponse::decode(&[&v4[..], &[1, 2, 3, 4, 5]].concat(), 7, Family::V4)
                .map(drop),
            "peer list is 17 bytes, not a multiple of 6",
        ),
        (
            AnnounceResponse::decode(&v4, 7, Family::V6).map(drop),
            "peer list is 12 bytes, not a multiple of 18",
        ),
        (
            AnnounceResponse::decode(&connect, 7, Family::V4).map(drop),
            "action 0, expected 1",
        ),
        (
            AnnounceResponse::decode(&v4, 6, Family::V4).map(drop),
            "transaction id 00000007, expected 00000006",
        ),
        (
            ScrapeResponse::decode(&one, 7, 2).map(drop),
            "scrape response is 20 bytes, need at least 32",
        ),
        (
            ScrapeResponse::decode(&[&one[..], &one[8..]].concat(), 7, 1).map(drop),
            "scrape response is 32 bytes, expected 20",
        ),
        (
            ErrorResponse::decode(&connect, 7).map(drop),
            "action 0, expected 3",
        ),
        (
            ConnectRequest::decode(&bad_magic).map(drop),
            "protocol id 0x41727101981 is not BEP 15's",
        ),
        (
            AnnounceRequest::decode(&bad_event).map(drop),
            "unknown announce event 4",
        ),
        (
            AnnounceRequest::decode(&[&bad_magic[..], &[0; 82]].concat()).map(drop),
            "action 0, expected 1",
        ),
        (
            ScrapeRequest::decode(scrape_header).map(drop),
            "scrape request has 0 bytes of info hashes: need 1 to 74 hashes of 20 bytes",
        ),
        (
            ScrapeRequest::decode(&[&scrape_header[..], &[0; 21]].concat()).map(drop),
            "scrape request has 21 bytes of info hashes: need 1 to 74 hashes of 20 bytes",
        ),
        (
            ScrapeRequest::decode(&[&scrape_header[..], &[0; 20 * 75]].concat()).map(drop),
            "scrape request has 1500 bytes of info hashes: need 1 to 74 hashes of 20 bytes",
        ),
    ];
    for (n, (got, want)) in table.into_iter().enumerate() {
        assert_eq!(got.unwrap_err().to_string(), want, "row {n}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(15);
    let mut d = vec![0u8; 300];
    for _ in 0..20_000 {
        let len = rng.below(d.len());
        for b in &mut d[..len] {
            *b = rng.next_u64() as u8;
        }
        // Often a plausible header, so the later checks run too.
        if len >= 12 && rng.below(2) == 0 {
            d[8..12].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
            d[..4].copy_from_slice(&(rng.below(4) as u32).to_be_bytes());
            d[4..8].copy_from_slice(&[0, 0, 0, 1]);
        }
        let d = &d[..len];
        let _ = ConnectRequest::decode(d);
        let _ = ConnectResponse::decode(d, 1);
        let _ = AnnounceRequest::decode(d);
        let _ = AnnounceResponse::decode(d, 1, Family::V4);
        let _ = AnnounceResponse::decode(d, 1, Family::V6);
        let _ = ScrapeRequest::decode(d);
        let _ = ScrapeResponse::decode(d, 1, rng.below(80));
        let _ = ErrorResponse::decode(d, 1);
        let _ = request_header(d);
    }
}
