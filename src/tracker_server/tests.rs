use super::*;
use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{self, Announce, Event, ScrapeStats};
use std::io::{Read, Write};
use std::net::TcpStream;

/// Waits for `cond` (the test's own `within` deadline bounds the wait).
fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        thread::sleep(Duration::from_millis(5));
    }
}

fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        interval: Duration::from_secs(60),
        workers: 4,
        ..Config::default()
    }
}

/// One HTTP exchange: sends `request` as is and reads to the end.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let end = crate::proto::http::head_end(&buf).unwrap_or(buf.len());
    let status = buf
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..end]);
    if status != 0 {
        assert!(head.contains("Connection: close"), "{head}");
        let len = format!("Content-Length: {}", buf.len() - end);
        assert!(head.contains(&len), "{head}");
    }
    Ok((status, buf[end..].to_vec()))
}

/// GET of a full URL (`http://host:port/path?query`) on `addr`.
fn get(addr: SocketAddr, url: &str) -> (u16, Vec<u8>) {
    let target = url
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n");
    exchange(addr, request.as_bytes()).unwrap()
}

fn announce(hash: InfoHash, id: u8, port: u16) -> Announce {
    Announce {
        info_hash: hash,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left: 1000,
        event: Some(Event::Started),
        numwant: None,
        key: 1,
        tracker_id: None,
        address: None,
    }
}

fn base(addr: SocketAddr) -> String {
    format!("http://{addr}/announce")
}

#[test]
fn announce_and_scrape_over_http() {
    crate::util::testutil::within(|| {
        let server = start(config()).unwrap();
        let addr = server.local_addr;
        let hash = InfoHash([0x25; 20]); // '%' bytes: escaping matters
        let (status, body) = get(addr, &announce(hash, 1, 7001).url(&base(addr)));
        assert_eq!(status, 200);
        let r = tracker::parse_response(&body).unwrap();
        assert_eq!(r.peers, vec![]);
        assert_eq!((r.interval, r.min_interval), (Some(60), Some(5)));
        assert_eq!((r.complete, r.incomplete), (Some(0), Some(1)));

        let mut done = announce(hash, 2, 7002);
        (done.left, done.event) = (0, Some(Event::Completed));
        let r = tracker::parse_response(&get(addr, &done.url(&base(addr))).1).unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7001".parse().unwrap()]);
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
        let r = tracker::parse_response(&get(addr, &announce(hash, 1, 7001).url(&base(addr))).1)
            .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7002".parse().unwrap()]);

        // Non-compact, for old clients.
        let q = announce(hash, 1, 7001)
            .query()
            .replace("compact=1", "compact=0");
        let (_, body) = get(addr, &format!("{}?{q}", base(addr)));
        let r = tracker::parse_response(&body).unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7002".parse().unwrap()]);

        let scrape = tracker::scrape_url(&base(addr)).unwrap();
        let url = tracker::with_query(
            &scrape,
            &format!("info_hash={}", tracker::percent_encode(&hash.0)),
        );
        let (status, body) = get(addr, &url);
        assert_eq!(status, 200);
        let want = ScrapeStats {
            complete: 1,
            downloaded: 1,
            incomplete: 1,
        };
        assert_eq!(tracker::parse_scrape(&body, &hash).unwrap(), Some(want));
        let (_, all) = get(addr, &scrape);
        assert_eq!(tracker::parse_scrape(&all, &hash).unwrap(), Some(want));

        // Refusals are bencoded failure reasons with 200.
        let (status, body) = get(addr, &format!("{}?port=1", base(addr)));
        assert_eq!(status, 200);
        assert_eq!(
            tracker::parse_response(&body).unwrap_err().to_string(),
            "tracker refused: missing info_hash"
        );
        let (_, body) = get(addr, &format!("{scrape}?info_hash=abc"));
        assert_eq!(
            tracker::parse_scrape(&body, &hash).unwrap_err().to_string(),
            "tracker refused: info_hash must be 20 bytes, got 3"
        );
        let swarms = server.swarms();
        assert_eq!(lock(&swarms).peer_count(), 2);
        assert!(server.stop());
    });
}

#[test]
fn other_paths_and_methods() {
    crate::util::testutil::within(|| {
        let server = start(config()).unwrap();
        let addr = server.local_addr;
        for (request, want) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], 404),
            (b"GET /announce/x?info_hash=1 HTTP/1.1\r\n\r\n", 404),
            (b"GET /favicon.ico HTTP/1.0\r\n\r\n", 404),
            (b"POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
            (b"hello\n\n", 400),
            (b"GET /scrape HTTP/1.1\n\n", 200),
        ] {
            let (status, _) = exchange(addr, request).unwrap();
            assert_eq!(status, want, "{}", String::from_utf8_lossy(request));
        }
        assert!(server.stop());
    });
}

#[test]
fn silent_clients_do_not_block_others() {
    crate::util::testutil::within(|| {
        let server = start(Config {
            request_timeout: Duration::from_secs(60),
            ..config()
        })
        .unwrap();
        let addr = server.local_addr;
        // Three of the four workers held by clients that say nothing.
        let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        wait_for(|| server.busy_workers() == 3);
        let (status, body) = get(addr, &announce(InfoHash([1; 20]), 1, 7001).url(&base(addr)));
        assert_eq!(status, 200);
        tracker::parse_response(&body).unwrap();
        // Answered while the silent clients still held their workers (their
        // deadline is a minute away), not after the deadline freed one. (The
        // worker that answered may not have counted itself free yet.)
        assert!(server.busy_workers() >= 3);
        for s in &silent {
            s.set_nonblocking(true).unwrap();
            let err = (&*s).read(&mut [0u8; 1]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "still open");
        }
        drop(silent);
        assert!(server.stop());
    });
}

#[test]
fn a_silent_client_is_cut_off_at_the_deadline() {
    crate::util::testutil::within(|| {
        let server = start(Config {
            workers: 1,
            request_timeout: Duration::from_millis(300),
            ..config()
        })
        .unwrap();
        let addr = server.local_addr;
        let mut silent = TcpStream::connect(addr).unwrap();
        wait_for(|| server.busy_workers() == 1);
        // It waits for the only worker, which the deadline frees.
        let (status, _) = get(addr, &announce(InfoHash([1; 20]), 1, 7001).url(&base(addr)));
        assert_eq!(status, 200);
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            silent.read_to_end(&mut rest).unwrap_or(0),
            0,
            "closed unanswered"
        );
        assert!(server.stop());
    });
}

#[test]
fn busy_server_answers_503() {
    crate::util::testutil::within(|| {
        let server = start(Config {
            workers: 1,
            max_connections: 2,
            request_timeout: Duration::from_secs(3),
            ..config()
        })
        .unwrap();
        let addr = server.local_addr;
        // One held by the worker, one queued.
        let first = TcpStream::connect(addr).unwrap();
        wait_for(|| server.busy_workers() == 1);
        let second = TcpStream::connect(addr).unwrap();
        wait_for(|| server.queued() == 1);
        let (status, body) = get(addr, "/scrape");
        assert_eq!(
            (status, &body[..]),
            (503, &b"tracker busy, retry later\n"[..])
        );
        drop((first, second));
        assert!(server.stop());
    });
}

#[test]
fn oversize_head_is_refused_and_the_server_lives() {
    crate::util::testutil::within(|| {
        let server = start(config()).unwrap();
        let addr = server.local_addr;
        let mut huge = b"GET /announce?".to_vec();
        huge.resize(4 * MAX_HEAD, b'a');
        // The server drains what we sent before closing (it lingers), so
        // its close does not reset the connection and the 431 arrives.
        let (status, body) = exchange(addr, &huge).unwrap();
        assert_eq!(status, 431);
        assert_eq!(body, b"request head over 8192 bytes\n");
        // Just under the cap is fine.
        let mut big = b"GET /scrape?x=".to_vec();
        big.resize(MAX_HEAD - 13, b'a');
        big.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(big.len(), MAX_HEAD);
        assert_eq!(exchange(addr, &big).unwrap().0, 200);
        let (status, _) = get(addr, &announce(InfoHash([1; 20]), 1, 7001).url(&base(addr)));
        assert_eq!(status, 200);
        assert!(server.stop());
    });
}

#[test]
fn stop_joins_promptly_and_closes_the_port() {
    crate::util::testutil::within(|| {
        let server = start(config()).unwrap();
        let addr = server.local_addr;
        // A worker held by a silent client notices the stop too.
        let _silent = TcpStream::connect(addr).unwrap();
        wait_for(|| server.busy_workers() == 1);
        // `stop` waits for the request deadline plus a second at most;
        // it returns true only if the held worker noticed the stop.
        assert!(server.stop());
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    });
}

#[test]
fn ipv6_listener() {
    crate::util::testutil::within(|| {
        let Ok(server) = start(Config {
            listen: "[::1]:0".parse().unwrap(),
            ..config()
        }) else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let addr = server.local_addr;
        let hash = InfoHash([2; 20]);
        get(addr, &announce(hash, 1, 7001).url(&base(addr)));
        let (_, body) = get(addr, &announce(hash, 2, 7002).url(&base(addr)));
        let r = tracker::parse_response(&body).unwrap();
        assert_eq!(r.peers, vec!["[::1]:7001".parse().unwrap()]);
        let v = crate::proto::bencode::decode(&body).unwrap();
        assert_eq!(
            v.get("peers6").and_then(|p| p.as_bytes()).map(<[u8]>::len),
            Some(18)
        );
        assert!(server.stop());
    });
}

#[test]
fn answer_without_sockets() {
    let swarms = Mutex::new(Swarms::new(Limits::default(), 1));
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let (status, body) = answer(b"GET /nope HTTP/1.1\r\n\r\n", ip, &swarms);
    assert_eq!(status, crate::proto::http::NOT_FOUND);
    assert_eq!(
        body,
        b"not found: this tracker serves /announce and /scrape\n"
    );
    let (status, body) = answer(b"GET /announce?port=1 HTTP/1.1\r\n\r\n", ip, &swarms);
    assert_eq!(status, crate::proto::http::OK);
    assert_eq!(body, encode_failure("missing info_hash"));
}

/// Regression (issue 11, item 8): slow clients from one address used to
/// take every worker and the queue, so everybody else got 503. Now one
/// address holds at most half the workers; the rest answer others.
#[test]
fn slow_clients_from_one_address_cost_only_that_address() {
    crate::util::testutil::within(|| {
        let server = start(Config {
            workers: 4,
            request_timeout: Duration::from_secs(60),
            ..config()
        })
        .unwrap();
        let addr = server.local_addr;
        let from = |ip: [u8; 4]| {
            crate::disk::sys::connect_from(ip.into(), addr, Duration::from_secs(10)).unwrap()
        };
        // Ten slow clients from 127.0.0.2: a byte each, then nothing.
        let slow: Vec<TcpStream> = (0..10)
            .map(|_| {
                let mut s = from([127, 0, 0, 2]);
                s.write_all(b"G").unwrap();
                s
            })
            .collect();
        wait_for(|| server.busy_workers() == 2);
        // The first two (accepted in order) hold their share of the
        // workers; the other eight were answered 503 at once.
        let refused = slow[2..]
            .iter()
            .filter(|s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut head = [0u8; 12];
                (&**s).read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 503"
            })
            .count();
        assert_eq!(refused, 8);
        // Another address is served by the free workers.
        let mut s = from([127, 0, 0, 3]);
        let req = announce(InfoHash([1; 20]), 1, 7001).url(&base(addr));
        let path = req.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&reply)
        );
        drop(slow);
        assert!(server.stop());
    });
}
