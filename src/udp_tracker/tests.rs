//! Tests of the BEP 15 codec and client: round trips, a table of
//! rejections, and the client against fake trackers on 127.0.0.1 (and
//! ::1 where it exists) that lose, forge, cut and refuse on purpose.

use super::client::{resolve, MIN_RETRY_BASE};
use super::*;
use crate::random::Rng;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The connection id our fake trackers hand out.
const CONN_ID: u64 = 0x1122_3344_5566_7788;

const STATS: ScrapeStats = ScrapeStats {
    complete: 4,
    downloaded: 9,
    incomplete: 3,
};

fn hash() -> InfoHash {
    InfoHash([0xab; 20])
}

fn request() -> Announce {
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

fn v4_peers() -> Vec<SocketAddr> {
    vec![
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:51413".parse().unwrap(),
    ]
}

fn v6_peers() -> Vec<SocketAddr> {
    vec![
        "[2001:db8::1]:6881".parse().unwrap(),
        "[2001:db8::2]:7".parse().unwrap(),
    ]
}

fn peers(family: Family) -> Vec<SocketAddr> {
    match family {
        Family::V4 => v4_peers(),
        Family::V6 => v6_peers(),
    }
}

fn tid_of(d: &[u8]) -> u32 {
    request_header(d).map_or(0, |(_, _, tid)| tid)
}

fn action_of(d: &[u8]) -> u32 {
    request_header(d).map_or(u32::MAX, |(_, action, _)| action)
}

fn error_reply(tid: u32, message: &str) -> Vec<u8> {
    ErrorResponse {
        transaction_id: tid,
        message: message.into(),
    }
    .encode()
}

/// What a correct tracker that issued [`CONN_ID`] answers.
fn proper(d: &[u8], family: Family) -> Vec<u8> {
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

/// What a fake tracker sends back for one datagram.
enum Out {
    /// From the tracker's own address.
    Reply(Vec<u8>),
    /// From another port of the same host: a client must ignore it.
    FromOtherPort(Vec<u8>),
}

type Respond = dyn FnMut(usize, &[u8], Family) -> Vec<Out> + Send;

/// A fake UDP tracker answering the `n`th datagram (from 0) as `respond`
/// says; an empty list drops it.
struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Vec<u8>>>>,
}

impl Fake {
    fn url(&self) -> String {
        format!("udp://{}", self.addr)
    }

    /// Stops the fake and returns every datagram it received, in order.
    /// The client's sends are done when it returns, and loopback delivers
    /// at once, so none is missed: the thread reads what is queued before
    /// it looks at the stop flag again.
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(seen)) => seen,
            _ => panic!("fake tracker thread failed"),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A fake on `bind`, or `None` if that address cannot be bound.
fn fake_on(
    bind: &str,
    respond: impl FnMut(usize, &[u8], Family) -> Vec<Out> + Send + 'static,
) -> Option<Fake> {
    let mut respond: Box<Respond> = Box::new(respond);
    let socket = UdpSocket::bind(bind).ok()?;
    let addr = socket.local_addr().ok()?;
    let other = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .ok()?;
    // A test before us may have had a tracker on this port.
    forget_tracker(addr);
    let family = Family::of(addr.ip());
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let d = buf[..n].to_vec();
                    for out in respond(seen.len(), &d, family) {
                        let _ = match out {
                            Out::Reply(b) => socket.send_to(&b, from),
                            Out::FromOtherPort(b) => other.send_to(&b, from),
                        };
                    }
                    seen.push(d);
                }
                Err(_) if stopped.load(Ordering::SeqCst) => return seen,
                Err(_) => {}
            }
        }
    });
    Some(Fake {
        addr,
        stop,
        handle: Some(handle),
    })
}

fn fake(respond: impl FnMut(usize, &[u8], Family) -> Vec<Out> + Send + 'static) -> Fake {
    fake_on("127.0.0.1:0", respond).expect("binding 127.0.0.1")
}

/// A tracker that answers everything correctly.
fn good() -> Fake {
    fake(|_, d, family| vec![Out::Reply(proper(d, family))])
}

/// No retransmission expected: exact packet counts.
fn patient() -> UdpConfig {
    UdpConfig {
        retry_base: Duration::from_secs(5),
        max_retries: 2,
        deadline: Duration::from_secs(15),
    }
}

fn quick(base_ms: u64, max_retries: u32) -> UdpConfig {
    UdpConfig {
        retry_base: Duration::from_millis(base_ms),
        max_retries,
        deadline: Duration::from_secs(15),
    }
}

fn actions(seen: &[Vec<u8>]) -> Vec<u32> {
    seen.iter().map(|d| action_of(d)).collect()
}

const C: u32 = ACTION_CONNECT;
const A: u32 = ACTION_ANNOUNCE;
const S: u32 = ACTION_SCRAPE;

fn expected_response(family: Family) -> Response {
    Response {
        interval: Some(900),
        complete: Some(4),
        incomplete: Some(3),
        peers: peers(family),
        ..Response::default()
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

#[test]
fn urls() {
    let ok = |h: &str, p| Ok((h.to_string(), p));
    let bad = |why: &str| Err(format!("bad udp tracker URL: {why}"));
    let table = [
        ("udp://127.0.0.1:6969", ok("127.0.0.1", 6969)),
        ("udp://127.0.0.1:6969/announce", ok("127.0.0.1", 6969)),
        ("UDP://t.example:80/announce?passkey=x", ok("t.example", 80)),
        ("udp://t.example:80?x=1", ok("t.example", 80)),
        ("udp://[::1]:6969/announce", ok("::1", 6969)),
        ("udp://t.example/announce", bad("no port")),
        ("udp://[::1]", bad("no port")),
        ("udp://[::1]6969", bad("no port")),
        ("udp://::1:6969", bad("an IPv6 address needs brackets")),
        ("udp://[::1:6969", bad("no ']' after the IPv6 address")),
        (
            "udp://[t.example]:1",
            bad("not an IPv6 address in brackets"),
        ),
        ("udp://:6969", bad("no host")),
        ("udp://t:0", bad("bad port")),
        ("udp://t:65536", bad("bad port")),
        ("udp://t:x/announce", bad("bad port")),
        ("udp://u@t:1", bad("user info is not supported")),
        ("http://t:1/announce", bad("not udp://")),
        ("udp:", bad("not udp://")),
    ];
    for (url, want) in table {
        assert_eq!(parse_url(url), want, "{url}");
    }
}

#[test]
fn announce_with_and_without_path_reuses_the_connection_id() {
    crate::testutil::within(|| {
        let tracker = good();
        for url in [tracker.url(), format!("{}/announce", tracker.url())] {
            let got = announce(&url, &request(), &patient());
            assert_eq!(got, Ok(expected_response(Family::V4)), "{url}");
        }
        let seen = tracker.finish();
        // One connect: the second announce, within a minute, reused the id.
        assert_eq!(actions(&seen), [C, A, A]);
        let req = AnnounceRequest::decode(&seen[1]).unwrap();
        assert_eq!(
            req,
            AnnounceRequest {
                connection_id: CONN_ID,
                transaction_id: tid_of(&seen[1]),
                info_hash: hash(),
                peer_id: *b"-SH0100-abcdefghijkl",
                downloaded: 20,
                left: 30,
                uploaded: 10,
                event: Some(Event::Started),
                ip: 0,
                key: 0xdead_beef,
                num_want: 50,
                port: 6881,
            }
        );
    });
}

#[test]
fn an_expired_connection_id_is_not_used() {
    crate::testutil::within(|| {
        let tracker = good();
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(61)) else {
            eprintln!("skipped: the clock started less than a minute ago");
            return;
        };
        remember_at(tracker.addr, 0x5555, long_ago);
        assert!(announce(&tracker.url(), &request(), &patient()).is_ok());
        assert_eq!(actions(&tracker.finish()), [C, A]);
    });
}

#[test]
fn lost_datagrams_are_sent_again_with_backoff() {
    crate::testutil::within(|| {
        // The first three datagrams are lost.
        let tracker = fake(|n, d, family| match n {
            0..=2 => vec![],
            _ => vec![Out::Reply(proper(d, family))],
        });
        let began = Instant::now();
        let got = announce(&tracker.url(), &request(), &quick(50, 8));
        let took = began.elapsed();
        assert_eq!(got, Ok(expected_response(Family::V4)));
        // Waited 50 + 100 + 200 ms before the fourth connect.
        assert!(took >= Duration::from_millis(350), "{took:?}");
        let seen = tracker.finish();
        assert_eq!(actions(&seen), [C, C, C, C, A]);
        let mut tids: Vec<u32> = seen.iter().map(|d| tid_of(d)).collect();
        tids.sort_unstable();
        tids.dedup();
        assert_eq!(tids.len(), 5, "a fresh transaction id per request");
    });
}

#[test]
fn an_unanswered_announce_reconnects() {
    crate::testutil::within(|| {
        // The first connect and the first announce are lost.
        let tracker = fake(|n, d, family| match n {
            0 | 2 => vec![],
            _ => vec![Out::Reply(proper(d, family))],
        });
        let began = Instant::now();
        let got = announce(&tracker.url(), &request(), &quick(100, 8));
        assert_eq!(got, Ok(expected_response(Family::V4)));
        assert!(began.elapsed() >= Duration::from_millis(300));
        assert_eq!(actions(&tracker.finish()), [C, C, A, C, A]);
    });
}

#[test]
fn gives_up_after_max_retries() {
    crate::testutil::within(|| {
        let tracker = fake(|_, _, _| vec![]);
        let got = announce(&tracker.url(), &request(), &quick(20, 2));
        assert_eq!(got, Err("no answer after 3 requests".to_string()));
        assert_eq!(actions(&tracker.finish()), [C, C, C]);
        // The cap is the spec's 8, whatever the configuration says.
        let cfg = UdpConfig {
            max_retries: 1000,
            ..quick(1, 0)
        };
        let tracker = fake(|_, _, _| vec![]);
        let got = announce(&tracker.url(), &request(), &cfg);
        assert_eq!(got, Err("no answer after 9 requests".to_string()));
        assert_eq!(tracker.finish().len(), 9);
    });
}

#[test]
fn the_deadline_bounds_the_exchange() {
    crate::testutil::within(|| {
        let tracker = fake(|_, _, _| vec![]);
        let cfg = UdpConfig {
            retry_base: Duration::from_secs(10),
            max_retries: 8,
            deadline: Duration::from_millis(300),
        };
        let began = Instant::now();
        let got = announce(&tracker.url(), &request(), &cfg);
        let took = began.elapsed();
        assert_eq!(got, Err("timed out".to_string()));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(tracker.finish().len(), 1);
    });
}

#[test]
fn wrong_transaction_ids_and_actions_are_ignored() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, family| {
            let tid = tid_of(d);
            let decoy = match action_of(d) {
                // Another transaction's connect, with an id the tracker
                // never accepts.
                ACTION_CONNECT => ConnectResponse {
                    transaction_id: tid.wrapping_add(1),
                    connection_id: 0xbad,
                }
                .encode()
                .to_vec(),
                // Our transaction id, but a scrape's action.
                _ => ScrapeResponse {
                    transaction_id: tid,
                    stats: vec![],
                }
                .encode(),
            };
            let late = AnnounceResponse {
                transaction_id: tid ^ 0xffff_ffff,
                interval: 1,
                leechers: 0,
                seeders: 0,
                peers: vec![],
            }
            .encode(family);
            vec![
                Out::Reply(decoy),
                Out::Reply(late),
                Out::Reply(proper(d, family)),
            ]
        });
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(got, Ok(expected_response(Family::V4)));
        // Nothing was sent again: the right answers came within the wait.
        assert_eq!(actions(&tracker.finish()), [C, A]);
    });
}

#[test]
fn replies_from_another_port_are_ignored() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, family| {
            let forged = match action_of(d) {
                ACTION_CONNECT => ConnectResponse {
                    transaction_id: tid_of(d),
                    connection_id: 0xbad,
                }
                .encode()
                .to_vec(),
                _ => AnnounceResponse {
                    transaction_id: tid_of(d),
                    interval: 1,
                    leechers: 0,
                    seeders: 0,
                    peers: vec!["10.9.9.9:1".parse().unwrap()],
                }
                .encode(family),
            };
            vec![Out::FromOtherPort(forged), Out::Reply(proper(d, family))]
        });
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(got, Ok(expected_response(Family::V4)));
        assert_eq!(actions(&tracker.finish()), [C, A]);
    });
}

#[test]
fn truncated_replies_are_ignored() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, family| {
            let good = proper(d, family);
            let mut outs = vec![Out::Reply(good[..good.len() - 1].to_vec())];
            if action_of(d) == ACTION_ANNOUNCE {
                outs.push(Out::Reply(good[..19].to_vec()));
                outs.push(Out::Reply(good[..3].to_vec()));
            }
            outs.push(Out::Reply(good));
            outs
        });
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(got, Ok(expected_response(Family::V4)));
        assert_eq!(actions(&tracker.finish()), [C, A]);
    });
}

#[test]
fn only_truncated_replies_end_in_a_clear_error() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, family| vec![Out::Reply(proper(d, family)[..10].to_vec())]);
        let got = announce(&tracker.url(), &request(), &quick(20, 1));
        assert_eq!(
            got,
            Err("no answer after 2 requests (last unusable reply: \
                 connect response is 10 bytes, need at least 16)"
                .to_string())
        );
        assert_eq!(actions(&tracker.finish()), [C, C]);
    });
}

#[test]
fn the_error_action_is_reported() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, family| match action_of(d) {
            ACTION_ANNOUNCE => vec![Out::Reply(error_reply(tid_of(d), "unregistered torrent"))],
            _ => vec![Out::Reply(proper(d, family))],
        });
        for _ in 0..2 {
            let got = announce(&tracker.url(), &request(), &patient());
            assert_eq!(got, Err("tracker error: unregistered torrent".to_string()));
        }
        // The second time the cached id drew the error, so it was tried
        // once more after a fresh connect.
        assert_eq!(actions(&tracker.finish()), [C, A, A, C, A]);
    });
}

#[test]
fn a_stale_cached_id_is_replaced_at_once() {
    crate::testutil::within(|| {
        // A tracker that restarted: it refuses the id we cached.
        let tracker = good();
        remember_at(tracker.addr, 0x0bad, Instant::now());
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(got, Ok(expected_response(Family::V4)));
        let seen = tracker.finish();
        assert_eq!(actions(&seen), [A, C, A]);
        assert_eq!(request_header(&seen[0]).map(|h| h.0), Some(0x0bad));
    });
}

#[test]
fn an_error_to_the_connect_is_reported() {
    crate::testutil::within(|| {
        let tracker = fake(|_, d, _| vec![Out::Reply(error_reply(tid_of(d), "go away"))]);
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(got, Err("tracker error: go away".to_string()));
        assert_eq!(actions(&tracker.finish()), [C]);
    });
}

#[test]
fn a_closed_port_is_refused_quickly() {
    crate::testutil::within(|| {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap();
        let began = Instant::now();
        let got = announce(&format!("udp://{addr}/announce"), &request(), &patient());
        assert_eq!(got, Err("connection refused".to_string()));
        assert!(began.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn scrape_one_torrent() {
    crate::testutil::within(|| {
        let tracker = good();
        assert_eq!(scrape(&tracker.url(), &hash(), &patient()), Ok(STATS));
        let seen = tracker.finish();
        assert_eq!(actions(&seen), [C, S]);
        let req = ScrapeRequest::decode(&seen[1]).unwrap();
        assert_eq!(req.info_hashes, vec![hash()]);
        assert_eq!(req.connection_id, CONN_ID);
    });
}

#[test]
fn ipv6_tracker() {
    crate::testutil::within(|| {
        let Some(tracker) = fake_on("[::1]:0", |_, d, family| {
            vec![Out::Reply(proper(d, family))]
        }) else {
            eprintln!("skipped: cannot bind [::1] (no IPv6 loopback here)");
            return;
        };
        let url = format!("udp://[::1]:{}/announce", tracker.addr.port());
        let got = announce(&url, &request(), &patient());
        // Over IPv6, 18-byte IPv6 peers.
        assert_eq!(got, Ok(expected_response(Family::V6)));
        assert_eq!(scrape(&url, &hash(), &patient()), Ok(STATS));
        assert_eq!(actions(&tracker.finish()), [C, A, S]);
    });
}

#[test]
fn a_host_name_tries_each_address() {
    crate::testutil::within(|| {
        let tracker = good();
        let url = format!("udp://localhost:{}/announce", tracker.addr.port());
        match resolve(
            "localhost",
            tracker.addr.port(),
            Instant::now() + Duration::from_secs(10),
        ) {
            Ok(addrs) if addrs.contains(&tracker.addr) => {}
            other => {
                eprintln!("skipped: localhost does not resolve to 127.0.0.1 here: {other:?}");
                return;
            }
        }
        // If ::1 comes first, it is refused (or cannot be reached) and
        // 127.0.0.1 answers.
        let got = announce(&url, &request(), &patient());
        assert_eq!(got, Ok(expected_response(Family::V4)));
    });
}

#[test]
fn announce_once_and_scrape_once_speak_udp() {
    crate::testutil::within(|| {
        let tracker = good();
        let url = format!("{}/announce", tracker.url());
        let t = Duration::from_secs(5);
        assert_eq!(
            crate::announce::announce_once(&url, &request(), t),
            Ok(expected_response(Family::V4))
        );
        assert_eq!(crate::announce::scrape_once(&url, &hash(), t), Ok(STATS));
        assert_eq!(actions(&tracker.finish()), [C, A, S]);
        assert_eq!(
            crate::announce::announce_once("udp://127.0.0.1/announce", &request(), t),
            Err("bad udp tracker URL: no port".to_string())
        );
    });
}

#[test]
fn within_a_deadline_retransmissions_are_spaced_by_a_third() {
    let c = UdpConfig::within(Duration::from_secs(15));
    assert_eq!(
        (c.retry_base, c.max_retries, c.deadline),
        (Duration::from_secs(5), 8, Duration::from_secs(15))
    );
    assert_eq!(
        UdpConfig::within(Duration::from_secs(600)).retry_base,
        SPEC_RETRY_BASE
    );
    assert_eq!(UdpConfig::within(Duration::ZERO).retry_base, MIN_RETRY_BASE);
}
