//! Tests of the UDP front end: connection ids, the reply to every kind of
//! datagram without sockets, and `shoal tracker` over UDP with our own
//! client (and next to HTTP).

use super::*;
use crate::net::udp_tracker::{self, UdpConfig};
use crate::proto::metainfo::InfoHash;
use crate::proto::tracker::{Announce, Event};
use crate::proto::udp_tracker::{ACTION_ERROR, CONNECT_LEN, MAX_SCRAPE_HASHES};
use crate::tracker_server::{start, Config, Limits};
use crate::util::random::Rng;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn hash() -> InfoHash {
    InfoHash([0x42; 20])
}

/// What the store-side tests need: a store, connection ids, a clock.
struct Front {
    swarms: Mutex<Swarms>,
    connections: Connections,
    now: Instant,
}

impl Front {
    fn new() -> Front {
        let now = Instant::now();
        Front {
            swarms: Mutex::new(Swarms::new(Limits::default(), 1)),
            connections: Connections::new([7; 16], now),
            now,
        }
    }

    fn answer(&self, d: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        answer(d, from, self.now, &self.connections, &self.swarms)
    }

    fn connect(&self, from: SocketAddr) -> u64 {
        let reply = self
            .answer(&ConnectRequest { transaction_id: 5 }.encode(), from)
            .expect("a connect reply");
        ConnectResponse::decode(&reply, 5).unwrap().connection_id
    }

    /// Announces `port` for `hash()` from `from`, connecting first; the
    /// peer id is made from the port.
    fn announce(&self, from: SocketAddr, port: u16, left: u64) -> Vec<u8> {
        let conn = self.connect(from);
        let req = AnnounceRequest::new(conn, 9, &announce_req(port as u8, port, left));
        self.answer(&req.encode(), from).expect("an announce reply")
    }
}

fn announce_req(id: u8, port: u16, left: u64) -> Announce {
    Announce {
        info_hash: hash(),
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Some(Event::Started),
        numwant: None,
        key: 1,
        tracker_id: None,
        address: None,
    }
}

/// The message of an error reply, or what the reply was instead.
fn error_message(reply: &[u8], tid: u32) -> String {
    match ErrorResponse::decode(reply, tid) {
        Ok(e) => e.message,
        Err(e) => format!("not an error reply: {e}"),
    }
}

#[test]
fn connection_ids_last_two_to_three_minutes() {
    let epoch = Instant::now();
    let c = Connections::new([1; 16], epoch);
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let s = Duration::from_secs;
    // Issued at the very end of a minute: still good two minutes later.
    let id = c.issue(ip, epoch + s(59));
    assert!(c.check(id, ip, epoch + s(59)));
    assert!(c.check(id, ip, epoch + s(179)));
    assert!(!c.check(id, ip, epoch + s(180)));
    // Issued at the start: good for just under three minutes.
    let id = c.issue(ip, epoch);
    assert!(c.check(id, ip, epoch + s(179)));
    assert!(!c.check(id, ip, epoch + s(180)));
    // The IP is in it (its IPv4-mapped form is the same IP); another
    // secret gives other ids.
    assert!(!c.check(id, "192.0.2.2".parse().unwrap(), epoch));
    assert!(c.check(id, "::ffff:192.0.2.1".parse().unwrap(), epoch));
    assert!(!Connections::new([2; 16], epoch).check(id, ip, epoch));
}

#[test]
fn what_gets_no_reply_or_a_short_one() {
    let f = Front::new();
    let from = sa("192.0.2.1:5000");
    let connect = ConnectRequest { transaction_id: 5 }.encode();
    // Shorter than any request: nothing.
    for len in 0..REQUEST_HEADER_LEN {
        assert_eq!(f.answer(&connect[..len], from), None, "{len} bytes");
    }
    // A connect without the protocol id: nothing.
    let mut bad_magic = connect;
    bad_magic[0] = 1;
    assert_eq!(f.answer(&bad_magic, from), None);
    // A connect: its 16 bytes.
    assert_eq!(f.answer(&connect, from).map(|r| r.len()), Some(CONNECT_LEN));
    // Any other request with an id we did not issue: the short error.
    let stranger = AnnounceRequest::new(0x1234, 6, &announce_req(1, 7001, 0)).encode();
    let reply = f.answer(&stranger, from).unwrap();
    assert_eq!(error_message(&reply, 6), UNCONNECTED);
    assert!(reply.len() <= CONNECT_LEN);
    // An id issued to another IP is not good here.
    let other_conn = f.connect(sa("192.0.2.9:5000"));
    let borrowed = AnnounceRequest::new(other_conn, 6, &announce_req(1, 7001, 0)).encode();
    assert_eq!(
        error_message(&f.answer(&borrowed, from).unwrap(), 6),
        UNCONNECTED
    );
    // Nothing stored from any of that.
    assert_eq!(super::lock(&f.swarms).peer_count(), 0);
    // ... but the same IP from another port is fine.
    let conn = f.connect(sa("192.0.2.1:1"));
    let ok = AnnounceRequest::new(conn, 6, &announce_req(1, 7001, 0)).encode();
    let reply = f.answer(&ok, from).unwrap();
    assert!(AnnounceResponse::decode(&reply, 6, Family::V4).is_ok());
}

#[test]
fn random_datagrams_are_never_amplified() {
    let f = Front::new();
    let mut rng = Rng::new(15);
    let mut d = [0u8; 200];
    for _ in 0..20_000 {
        let len = rng.below(d.len());
        for b in &mut d[..len] {
            *b = rng.next_u64() as u8;
        }
        if len >= 12 {
            // Mostly real actions, so every branch runs.
            d[8..12].copy_from_slice(&(rng.below(5) as u32).to_be_bytes());
        }
        if let Some(reply) = f.answer(&d[..len], sa("192.0.2.1:5000")) {
            assert!(reply.len() <= CONNECT_LEN, "{} bytes back", reply.len());
        }
    }
}

#[test]
fn connected_requests_that_are_wrong_get_an_error_saying_why() {
    let f = Front::new();
    let from = sa("192.0.2.1:5000");
    let conn = f.connect(from);
    let good = AnnounceRequest::new(conn, 6, &announce_req(1, 7001, 0)).encode();
    let mut bad_event = good;
    bad_event[83] = 9;
    let port_zero = AnnounceRequest::new(conn, 6, &announce_req(1, 0, 0)).encode();
    let scrape = |n: usize| {
        ScrapeRequest {
            connection_id: conn,
            transaction_id: 6,
            info_hashes: vec![hash(); n],
        }
        .encode()
    };
    let mut unknown = good;
    unknown[11] = 7;
    let too_many = [&scrape(MAX_SCRAPE_HASHES)[..], &[0; 20]].concat();
    let no_hashes = scrape(0);
    let table: Vec<(&[u8], &str)> = vec![
        (
            &good[..97],
            "announce request is 97 bytes, need at least 98",
        ),
        (&bad_event, "unknown announce event 9"),
        (&port_zero, "invalid port"),
        (
            &no_hashes,
            "scrape request has 0 bytes of info hashes: need 1 to 74 hashes of 20 bytes",
        ),
        (
            &too_many,
            "scrape request has 1500 bytes of info hashes: need 1 to 74 hashes of 20 bytes",
        ),
        (&unknown[..16], "unknown action 7"),
    ];
    for (d, want) in table {
        let reply = f.answer(d, from).expect("a reply");
        assert_eq!(
            u32::from_be_bytes(reply[..4].try_into().unwrap()),
            ACTION_ERROR
        );
        assert_eq!(error_message(&reply, 6), want);
    }
    assert_eq!(super::lock(&f.swarms).peer_count(), 0);
}

#[test]
fn replies_carry_the_family_the_request_came_in() {
    let f = Front::new();
    let v4 = sa("192.0.2.1:5000");
    let v6 = sa("[2001:db8::2]:5000");
    let mapped = sa("[::ffff:192.0.2.3]:5000");
    f.announce(v4, 7001, 0);
    f.announce(v6, 7002, 0);
    // The mapped source is stored and answered as IPv4: 6-byte peers.
    let r = AnnounceResponse::decode(&f.announce(mapped, 7003, 10), 9, Family::V4).unwrap();
    assert_eq!(r.peers, vec![sa("192.0.2.1:7001")]);
    assert_eq!((r.seeders, r.leechers), (2, 1));
    let r = AnnounceResponse::decode(&f.announce(v6, 7002, 0), 9, Family::V6).unwrap();
    assert_eq!(r.peers, vec![]);
    assert_eq!(r.interval, 1800);
    let r = AnnounceResponse::decode(&f.announce(v4, 7001, 0), 9, Family::V4).unwrap();
    assert_eq!(r.peers, vec![sa("192.0.2.3:7003")]);
}

#[test]
fn scrape_answers_every_hash_in_order() {
    let f = Front::new();
    let from = sa("192.0.2.1:5000");
    f.announce(from, 7001, 0);
    f.announce(from, 7002, 5);
    let conn = f.connect(from);
    let unknown = InfoHash([1; 20]);
    let req = ScrapeRequest {
        connection_id: conn,
        transaction_id: 3,
        info_hashes: vec![unknown, hash(), unknown],
    };
    let reply = f.answer(&req.encode(), from).unwrap();
    let stats = ScrapeResponse::decode(&reply, 3, 3).unwrap().stats;
    let known = ScrapeStats {
        complete: 1,
        downloaded: 0,
        incomplete: 1,
    };
    assert_eq!(
        stats,
        [ScrapeStats::default(), known, ScrapeStats::default()]
    );
}

fn server() -> crate::tracker_server::Server {
    let server = start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        interval: Duration::from_secs(60),
        workers: 2,
        ..Config::default()
    })
    .unwrap();
    // An earlier test's tracker may have had this port.
    udp_tracker::forget_tracker(server.local_addr);
    server
}

fn cfg() -> UdpConfig {
    UdpConfig {
        retry_base: Duration::from_secs(2),
        max_retries: 2,
        deadline: Duration::from_secs(10),
    }
}

#[test]
fn two_udp_clients_see_each_other_and_scrape_counts_them() {
    crate::util::testutil::within(|| {
        let server = server();
        assert_eq!(server.udp_addr(), Some(server.local_addr));
        let url = format!("udp://{}/announce", server.local_addr);
        let r = udp_tracker::announce(&url, &announce_req(1, 7001, 1000), &cfg()).unwrap();
        assert_eq!(r.peers, vec![]);
        assert_eq!(
            (r.interval, r.complete, r.incomplete),
            (Some(60), Some(0), Some(1))
        );
        let mut done = announce_req(2, 7002, 0);
        done.event = Some(Event::Completed);
        let r = udp_tracker::announce(&url, &done, &cfg()).unwrap();
        assert_eq!(r.peers, vec![sa("127.0.0.1:7001")]);
        assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
        let r = udp_tracker::announce(&url, &announce_req(1, 7001, 1000), &cfg()).unwrap();
        assert_eq!(r.peers, vec![sa("127.0.0.1:7002")]);
        let stats = udp_tracker::scrape(&url, &hash(), &cfg()).unwrap();
        assert_eq!(
            stats,
            ScrapeStats {
                complete: 1,
                downloaded: 1,
                incomplete: 1
            }
        );
        let mut stopped = announce_req(1, 7001, 1000);
        stopped.event = Some(Event::Stopped);
        udp_tracker::announce(&url, &stopped, &cfg()).unwrap();
        assert_eq!(super::lock(&server.swarms()).peer_count(), 1);
        assert!(server.stop());
    });
}

#[test]
fn http_and_udp_announces_share_the_swarm() {
    crate::util::testutil::within(|| {
        let server = server();
        let http = format!("http://{}/announce", server.local_addr);
        let udp = format!("udp://{}/announce", server.local_addr);
        let t = Duration::from_secs(10);
        let r = crate::net::announce::announce_once(&http, &announce_req(1, 7001, 5), t).unwrap();
        assert_eq!(r.peers, vec![]);
        let r = crate::net::announce::announce_once(&udp, &announce_req(2, 7002, 0), t).unwrap();
        assert_eq!(r.peers, vec![sa("127.0.0.1:7001")]);
        let r = crate::net::announce::announce_once(&http, &announce_req(1, 7001, 5), t).unwrap();
        assert_eq!(r.peers, vec![sa("127.0.0.1:7002")]);
        // Scrape agrees over both.
        let want = ScrapeStats {
            complete: 1,
            downloaded: 0,
            incomplete: 1,
        };
        assert_eq!(
            crate::net::announce::scrape_once(&http, &hash(), t),
            Ok(want)
        );
        assert_eq!(
            crate::net::announce::scrape_once(&udp, &hash(), t),
            Ok(want)
        );
        assert!(server.stop());
    });
}

#[test]
fn stop_ends_the_udp_thread_and_udp_can_be_off() {
    crate::util::testutil::within(|| {
        let server = server();
        let url = format!("udp://{}", server.local_addr);
        let began = Instant::now();
        assert!(server.stop());
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        // The socket is closed: nothing answers.
        assert!(udp_tracker::announce(&url, &announce_req(1, 7001, 0), &cfg()).is_err());

        let server = start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            udp: false,
            workers: 1,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(server.udp_addr(), None);
        assert!(server.stop());
    });
}

#[test]
fn ipv6_udp() {
    crate::util::testutil::within(|| {
        let Ok(server) = start(Config {
            listen: "[::1]:0".parse().unwrap(),
            workers: 1,
            ..Config::default()
        }) else {
            eprintln!("skipped: cannot listen on [::1] (no IPv6 loopback here)");
            return;
        };
        udp_tracker::forget_tracker(server.local_addr);
        let url = format!("udp://[::1]:{}/announce", server.local_addr.port());
        udp_tracker::announce(&url, &announce_req(1, 7001, 0), &cfg()).unwrap();
        let r = udp_tracker::announce(&url, &announce_req(2, 7002, 5), &cfg()).unwrap();
        // Over IPv6: 18-byte peers.
        assert_eq!(r.peers, vec![sa("[::1]:7001")]);
        assert!(server.stop());
    });
}
