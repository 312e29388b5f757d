//! Tests of the BEP 15 client against fake trackers on 127.0.0.1 (and ::1
//! where it exists) that lose, forge, cut and refuse on purpose.

use super::*;
use crate::proto::tracker::Event;
use crate::proto::udp_tracker::tests::*;
use crate::proto::udp_tracker::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

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

#[test]
fn urls() {
    let ok = |h: &str, p| Ok((h.to_string(), p));
    let bad = |why: &'static str| Err(TrackerError::BadUdpUrl(why));
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
        let tracker = fake(|_, _, _| vec![]);
        let got = announce(&tracker.url(), &request(), &quick(20, 2));
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("no answer after 3 requests".to_string())
        );
        assert_eq!(actions(&tracker.finish()), [C, C, C]);
        // The cap is the spec's 8, whatever the configuration says.
        let cfg = UdpConfig {
            max_retries: 1000,
            ..quick(1, 0)
        };
        let tracker = fake(|_, _, _| vec![]);
        let got = announce(&tracker.url(), &request(), &cfg);
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("no answer after 9 requests".to_string())
        );
        assert_eq!(tracker.finish().len(), 9);
    });
}

#[test]
fn the_deadline_bounds_the_exchange() {
    crate::util::testutil::within(|| {
        let tracker = fake(|_, _, _| vec![]);
        let cfg = UdpConfig {
            retry_base: Duration::from_secs(10),
            max_retries: 8,
            deadline: Duration::from_millis(300),
        };
        let began = Instant::now();
        let got = announce(&tracker.url(), &request(), &cfg);
        let took = began.elapsed();
        assert_eq!(got.map_err(|e| e.to_string()), Err("timed out".to_string()));
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert_eq!(tracker.finish().len(), 1);
    });
}

#[test]
fn wrong_transaction_ids_and_actions_are_ignored() {
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
        let tracker = fake(|_, d, family| vec![Out::Reply(proper(d, family)[..10].to_vec())]);
        let got = announce(&tracker.url(), &request(), &quick(20, 1));
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("no answer after 2 requests (last unusable reply: \
                 connect response is 10 bytes, need at least 16)"
                .to_string())
        );
        assert_eq!(actions(&tracker.finish()), [C, C]);
    });
}

#[test]
fn the_error_action_is_reported() {
    crate::util::testutil::within(|| {
        let tracker = fake(|_, d, family| match action_of(d) {
            ACTION_ANNOUNCE => vec![Out::Reply(error_reply(tid_of(d), "unregistered torrent"))],
            _ => vec![Out::Reply(proper(d, family))],
        });
        for _ in 0..2 {
            let got = announce(&tracker.url(), &request(), &patient());
            assert_eq!(
                got.map_err(|e| e.to_string()),
                Err("tracker error: unregistered torrent".to_string())
            );
        }
        // The second time the cached id drew the error, so it was tried
        // once more after a fresh connect.
        assert_eq!(actions(&tracker.finish()), [C, A, A, C, A]);
    });
}

#[test]
fn a_stale_cached_id_is_replaced_at_once() {
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
        let tracker = fake(|_, d, _| vec![Out::Reply(error_reply(tid_of(d), "go away"))]);
        let got = announce(&tracker.url(), &request(), &patient());
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("tracker error: go away".to_string())
        );
        assert_eq!(actions(&tracker.finish()), [C]);
    });
}

#[test]
fn a_closed_port_is_refused_quickly() {
    crate::util::testutil::within(|| {
        let addr = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap();
        let began = Instant::now();
        let got = announce(&format!("udp://{addr}/announce"), &request(), &patient());
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err("connection refused".to_string())
        );
        assert!(began.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn scrape_one_torrent() {
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
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
    crate::util::testutil::within(|| {
        let tracker = good();
        let url = format!("{}/announce", tracker.url());
        let t = Duration::from_secs(5);
        assert_eq!(
            crate::net::announce::announce_once(&url, &request(), t),
            Ok(expected_response(Family::V4))
        );
        assert_eq!(
            crate::net::announce::scrape_once(&url, &hash(), t),
            Ok(STATS)
        );
        assert_eq!(actions(&tracker.finish()), [C, A, S]);
        assert_eq!(
            crate::net::announce::announce_once("udp://127.0.0.1/announce", &request(), t)
                .map_err(|e| e.to_string()),
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
