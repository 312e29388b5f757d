//! Tests of the announce thread against fake HTTP trackers on 127.0.0.1
//! (timing, tiers, events, errors), and of the one-off announce and scrape.
//! The UDP arm is tested with the UDP client, in `udp_tracker`.

use super::*;
use crate::proto::bencode::Owned;
use crossbeam_channel::unbounded;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// How long any single wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// What a fake tracker does with one request.
enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// This status with this body.
    Status(u16, Vec<u8>),
    /// Keep the connection open and never answer.
    Hang,
}

struct Fake {
    url: String,
    /// The head of each request (request line and headers), in order,
    /// sent before the reply is written.
    requests: crossbeam_channel::Receiver<String>,
}

/// A tracker on 127.0.0.1 answering the `n`th request (from 0) with
/// `respond(n, head)`. Its thread ends at the first connection after
/// the test dropped `requests`.
fn fake(mut respond: impl FnMut(usize, &str) -> Reply + Send + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let (tx, requests) = unbounded();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let head = read_head(&mut stream);
            let reply = respond(n, &head);
            if tx.send(head).is_err() {
                return;
            }
            let (code, body) = match reply {
                Reply::Body(b) => (200, b),
                Reply::Status(code, b) => (code, b),
                Reply::Hang => {
                    held.push(stream);
                    continue;
                }
            };
            let head = format!(
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    Fake { url, requests }
}

fn read_head(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The value of `name` in the request line's query, if present.
fn param<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    let line = head.lines().next()?;
    let target = line.split(' ').nth(1)?;
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn peers_body(interval: i64, peers: &[SocketAddr]) -> Vec<u8> {
    Owned::dict()
        .insert("interval", interval)
        .insert("peers", tracker::encode_compact(peers).0)
        .encode()
}

fn some_peers() -> Vec<SocketAddr> {
    vec![
        "10.0.0.1:6881".parse().unwrap(),
        "10.0.0.2:51413".parse().unwrap(),
    ]
}

/// A tracker that always answers with [`some_peers`] and `interval`.
fn good(interval: i64) -> Fake {
    fake(move |_, _| Reply::Body(peers_body(interval, &some_peers())))
}

/// A URL on which nothing listens.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/announce", l.local_addr().unwrap())
}

fn config(tiers: Vec<Vec<String>>) -> Config {
    Config {
        request_timeout: Duration::from_secs(2),
        retry_base: Duration::from_millis(100),
        min_interval: Duration::from_millis(100),
        ..Config::new(tiers, InfoHash([7; 20]), *b"-SH0100-testtesttest", 6881)
    }
}

struct Running {
    commands: Handle,
    reports: crossbeam_channel::Receiver<Report>,
}

fn start(config: Config, counters: Counters) -> Running {
    start_in(None, config, counters)
}

/// An announcer on its own thread, or in `pool`.
fn start_in(pool: Option<&Pool>, config: Config, counters: Counters) -> Running {
    let (report_tx, reports) = unbounded();
    let report: Box<dyn Fn(Report) + Send> = Box::new(move |r| {
        let _ = report_tx.send(r);
    });
    let commands = match pool {
        Some(pool) => pool.add(config, Arc::new(counters), report),
        None => spawn(config, Arc::new(counters), report),
    };
    Running { commands, reports }
}

impl Running {
    /// The next report matching `want`, with the ones skipped on the way.
    fn wait_for(&self, want: impl Fn(&Report) -> bool) -> (Report, Vec<Report>) {
        let deadline = Instant::now() + PATIENCE;
        let mut skipped = Vec::new();
        loop {
            match self.reports.recv_deadline(deadline) {
                Ok(r) if want(&r) => return (r, skipped),
                Ok(r) => skipped.push(r),
                Err(e) => panic!("no matching report ({e}); got {skipped:?}"),
            }
        }
    }

    /// Sends `Stop` and waits for the thread to end.
    fn stop(self) -> Vec<Report> {
        self.commands.send(Command::Stop);
        finish(self.reports, Some(&self.commands))
    }
}

/// Waits for the announcer to end (its callback, and so the report
/// channel, is dropped when it does).
fn finish(reports: crossbeam_channel::Receiver<Report>, handle: Option<&Handle>) -> Vec<Report> {
    let deadline = Instant::now() + PATIENCE;
    let mut rest = Vec::new();
    loop {
        match reports.recv_deadline(deadline) {
            Ok(r) => rest.push(r),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("announce thread did not end"),
        }
    }
    if let Some(h) = handle {
        assert!(h.wait_ended(Instant::now() + PATIENCE));
    }
    rest
}

fn next_request(fake: &Fake) -> String {
    fake.requests
        .recv_timeout(PATIENCE)
        .expect("tracker got no request")
}

fn error(url: &str, reason: &str) -> Report {
    Report::Error {
        tracker: url.to_string(),
        message: format!("{url}: {reason}"),
    }
}

fn is_peers(r: &Report) -> bool {
    matches!(r, Report::Peers { .. })
}

#[test]
fn started_announce_sends_exact_query_and_reports_peers() {
    let tracker = good(1800);
    let mut info_hash = [0x41; 20];
    info_hash[..8].copy_from_slice(&[0x00, 0xff, b'%', b' ', b'+', b'&', b'=', b'~']);
    let peer_id = *b"-SH0100-\x00\x01\xfe\xff%+ &=a.~";
    let cfg = Config {
        info_hash: InfoHash(info_hash),
        peer_id,
        ..config(vec![vec![tracker.url.clone()]])
    };
    let counters = Counters::default();
    counters.left.store(12345, Ordering::Relaxed);
    counters.uploaded.store(7, Ordering::Relaxed);
    let run = start(cfg, counters);

    let (report, _) = run.wait_for(is_peers);
    assert_eq!(
        report,
        Report::Peers {
            tracker: tracker.url.clone(),
            peers: some_peers()
        }
    );
    let head = next_request(&tracker);
    let line = head.lines().next().unwrap();
    assert!(line.starts_with("GET /announce?info_hash="), "{line}");
    assert!(line.ends_with(" HTTP/1.1"), "{line}");
    // Byte for byte as encoded, not re-encoded or decoded by the client.
    assert_eq!(
        param(&head, "info_hash"),
        Some("%00%FF%25%20%2B%26%3D~AAAAAAAAAAAA")
    );
    assert_eq!(
        param(&head, "peer_id"),
        Some("-SH0100-%00%01%FE%FF%25%2B%20%26%3Da.~")
    );
    assert_eq!(param(&head, "port"), Some("6881"));
    assert_eq!(param(&head, "left"), Some("12345"));
    assert_eq!(param(&head, "uploaded"), Some("7"));
    assert_eq!(param(&head, "downloaded"), Some("0"));
    assert_eq!(param(&head, "event"), Some("started"));
    assert_eq!(param(&head, "compact"), Some("1"));
    assert_eq!(param(&head, "numwant"), Some("50"));
    assert_eq!(param(&head, "key").map(str::len), Some(8));
    assert!(
        head.to_ascii_lowercase().contains("\r\nuser-agent: shoal/"),
        "{head}"
    );

    run.stop();
}

#[test]
fn tier_fallback_reports_each_failure_then_peers() {
    let garbage = fake(|_, _| Reply::Body(b"<html>".to_vec()));
    let dead = dead_url();
    let tracker = good(1800);
    let run = start(
        config(vec![
            vec![dead.clone(), garbage.url.clone()],
            vec![tracker.url.clone()],
        ]),
        Counters::default(),
    );
    let (report, mut errors) = run.wait_for(is_peers);
    assert_eq!(
        report,
        Report::Peers {
            tracker: tracker.url.clone(),
            peers: some_peers()
        }
    );
    // Tier 1 was shuffled: either order.
    errors.sort_by_key(|r| r.to_string());
    let mut want = vec![
        error(&dead, "connection refused"),
        error(
            &garbage.url,
            "tracker response: bencode error at byte 0: unexpected byte '<'",
        ),
    ];
    want.sort_by_key(|r| r.to_string());
    assert_eq!(errors, want);
    // Display is the message, which names the tracker.
    assert_eq!(
        error(&dead, "connection refused").to_string(),
        format!("{dead}: connection refused")
    );
    run.stop();
}

#[test]
fn tracker_that_answers_moves_to_front_of_its_tier() {
    let bad = fake(|_, _| Reply::Status(500, Vec::new()));
    // interval 0: re-announce as soon as the 100 ms floor allows.
    let tracker = good(0);
    let run = start(
        config(vec![vec![bad.url.clone(), tracker.url.clone()]]),
        Counters::default(),
    );
    for _ in 0..3 {
        next_request(&tracker);
    }
    run.stop();
    // Tried at most once, in the first round, if the shuffle put it first.
    assert!(bad.requests.try_iter().count() <= 1);
}

#[test]
fn failed_rounds_retry_with_backoff() {
    let tracker = fake(|n, _| {
        if n < 2 {
            Reply::Status(500, b"<h1>oops</h1>".to_vec())
        } else {
            Reply::Body(peers_body(1800, &some_peers()))
        }
    });
    let began = Instant::now();
    let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
    let (_, before) = run.wait_for(is_peers);
    // 100 ms after the first failure, 200 ms after the second.
    assert!(began.elapsed() >= Duration::from_millis(300));
    let e = error(&tracker.url, "HTTP 500");
    assert_eq!(before, vec![e.clone(), e]);
    run.stop();
    let heads: Vec<String> = tracker.requests.try_iter().collect();
    assert_eq!(heads.len(), 4, "{heads:?}");
    // Every attempt until one is accepted says `started`.
    let events: Vec<_> = heads.iter().map(|h| param(h, "event")).collect();
    assert_eq!(
        events,
        [
            Some("started"),
            Some("started"),
            Some("started"),
            Some("stopped")
        ]
    );
}

#[test]
fn hanging_tracker_times_out() {
    let hang = fake(|_, _| Reply::Hang);
    let cfg = Config {
        request_timeout: Duration::from_millis(300),
        retry_base: Duration::from_secs(60),
        ..config(vec![vec![hang.url.clone()]])
    };
    let began = Instant::now();
    let run = start(cfg, Counters::default());
    let (report, _) = run.wait_for(|r| matches!(r, Report::Error { .. }));
    let took = began.elapsed();
    assert_eq!(report, error(&hang.url, "timed out"));
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(2300), "{took:?}");
    // Waiting out a 60 s backoff, yet it stops at once; nothing answered,
    // so there is no `stopped` to send.
    let stop = Instant::now();
    run.stop();
    assert!(stop.elapsed() < Duration::from_secs(1));
}

#[test]
fn stop_is_noticed_between_trackers_of_a_round() {
    let hangs: Vec<Fake> = (0..3).map(|_| fake(|_, _| Reply::Hang)).collect();
    let cfg = Config {
        request_timeout: Duration::from_millis(500),
        ..config(hangs.iter().map(|f| vec![f.url.clone()]).collect())
    };
    let run = start(cfg, Counters::default());
    run.wait_for(|r| matches!(r, Report::Error { .. }));
    run.stop();
    assert_eq!(hangs[2].requests.try_iter().count(), 0);
}

#[test]
fn reannounce_never_sooner_than_our_floor() {
    // A hostile `interval: 0`; our floor is 200 ms.
    let tracker = fake(|_, _| {
        Reply::Body(
            Owned::dict()
                .insert("interval", 0)
                .insert("tracker id", "tid/1")
                .insert("peers", Vec::<u8>::new())
                .encode(),
        )
    });
    let cfg = Config {
        min_interval: Duration::from_millis(200),
        ..config(vec![vec![tracker.url.clone()]])
    };
    let run = start(cfg, Counters::default());
    let mut heads = Vec::new();
    let mut times = Vec::new();
    for _ in 0..3 {
        heads.push(next_request(&tracker));
        times.push(Instant::now());
    }
    run.stop();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(200),
            "{:?}",
            w[1] - w[0]
        );
    }
    assert_eq!(param(&heads[0], "event"), Some("started"));
    assert_eq!(param(&heads[0], "trackerid"), None);
    for h in &heads[1..] {
        assert_eq!(param(h, "event"), None);
        assert_eq!(param(h, "trackerid"), Some("tid%2F1"));
        assert_eq!(param(h, "key"), param(&heads[0], "key"));
    }
}

#[test]
fn reannounce_respects_trackers_min_interval() {
    let tracker = fake(|_, _| {
        Reply::Body(
            Owned::dict()
                .insert("interval", 0)
                .insert("min interval", 1)
                .insert("peers", Vec::<u8>::new())
                .encode(),
        )
    });
    let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
    next_request(&tracker);
    let first = Instant::now();
    next_request(&tracker);
    assert!(first.elapsed() >= Duration::from_secs(1));
    run.stop();
}

/// Issue 10: while the torrent wants peers it announces again long before
/// the tracker's 30-minute interval (EARLY_FIRST after the answer).
#[test]
fn wanting_peers_announces_early() {
    let tracker = good(1800);
    let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
    next_request(&tracker);
    let answered = Instant::now();
    run.commands.send(Command::WantPeers(true));
    let early = next_request(&tracker);
    assert!(answered.elapsed() >= EARLY_FIRST);
    assert_eq!(param(&early, "event"), None);
    run.stop();
}

/// A download announced to one tracker, which has just completed.
fn started_then_completed() -> (Fake, Running) {
    let tracker = good(1800);
    let counters = Counters::default();
    counters.left.store(1, Ordering::Relaxed);
    let run = start(config(vec![vec![tracker.url.clone()]]), counters);
    run.wait_for(is_peers);
    run.commands.send(Command::Completed);
    (tracker, run)
}

#[test]
fn completed_once_then_stopped_then_exit() {
    let (tracker, run) = started_then_completed();
    let head = next_request(&tracker); // started
    assert_eq!(param(&head, "event"), Some("started"));
    let head = next_request(&tracker);
    assert_eq!(param(&head, "event"), Some("completed"));
    // A second `Completed` is not announced again.
    run.commands.send(Command::Completed);
    run.stop();
    let rest: Vec<String> = tracker.requests.try_iter().collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(param(&rest[0], "event"), Some("stopped"));
    assert_eq!(param(&rest[0], "numwant"), Some("0"));
    assert_eq!(param(&rest[0], "key"), param(&head, "key"));
}

fn events(fake: &Fake) -> Vec<String> {
    fake.requests
        .try_iter()
        .map(|h| param(&h, "event").unwrap_or("").to_string())
        .collect()
}

#[test]
fn completed_owed_at_stop_goes_before_stopped() {
    let (tracker, run) = started_then_completed();
    run.stop();
    assert_eq!(events(&tracker), ["started", "completed", "stopped"]);
}

#[test]
fn no_completed_when_complete_from_the_start() {
    let tracker = good(1800);
    // left = 0: seeding from the start.
    let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
    run.wait_for(is_peers);
    run.commands.send(Command::Completed);
    run.stop();
    assert_eq!(events(&tracker), ["started", "stopped"]);
}

#[test]
fn dropped_command_sender_means_stop() {
    let tracker = good(1800);
    let run = start(config(vec![vec![tracker.url.clone()]]), Counters::default());
    run.wait_for(is_peers);
    let Running { commands, reports } = run;
    drop(commands);
    finish(reports, None);
    next_request(&tracker);
    assert_eq!(param(&next_request(&tracker), "event"), Some("stopped"));
}

#[test]
fn failure_reason_is_an_error_and_warning_a_warning() {
    let refusing = fake(|_, _| {
        Reply::Body(
            Owned::dict()
                .insert("failure reason", "unregistered torrent\x1b[2J")
                .encode(),
        )
    });
    let warning = fake(|_, _| {
        Reply::Body(
            Owned::dict()
                .insert("interval", 1800)
                .insert("warning message", "be nice")
                .insert("peers", Vec::<u8>::new())
                .encode(),
        )
    });
    let run = start(
        config(vec![vec![refusing.url.clone()], vec![warning.url.clone()]]),
        Counters::default(),
    );
    let (_, before) = run.wait_for(is_peers);
    assert_eq!(
        before,
        vec![
            // The escape sequence is defused.
            error(
                &refusing.url,
                "tracker refused: unregistered torrent\u{fffd}[2J"
            ),
            Report::Warning {
                tracker: warning.url.clone(),
                message: "be nice".into()
            },
        ]
    );
    run.stop();
}

fn plain_request() -> Announce {
    Announce {
        info_hash: InfoHash([1; 20]),
        peer_id: [2; 20],
        port: 1,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: None,
        numwant: None,
        key: 0,
        tracker_id: None,
        address: None,
    }
}

#[test]
fn http_error_bodies_and_size_cap() {
    let refusing = fake(|_, _| {
        Reply::Status(
            403,
            Owned::dict().insert("failure reason", "passkey").encode(),
        )
    });
    let huge = fake(|_, _| Reply::Body(vec![b'x'; MAX_RESPONSE_BYTES as usize + 1]));
    let t = Duration::from_secs(2);
    let req = plain_request();
    assert_eq!(
        announce_once(&refusing.url, &req, t).map_err(|e| e.to_string()),
        Err("HTTP 403: tracker refused: passkey".to_string())
    );
    assert_eq!(
        announce_once(&huge.url, &req, t).map_err(|e| e.to_string()),
        Err(format!("response larger than {MAX_RESPONSE_BYTES} bytes"))
    );
}

#[test]
fn schemes_without_network() {
    let req = plain_request();
    let t = Duration::from_secs(1);
    let table = [
        ("udp://127.0.0.1/announce", "bad udp tracker URL: no port"),
        ("wss://127.0.0.1:1/", "unsupported tracker scheme 'wss'"),
        ("127.0.0.1:1/announce", "not a tracker URL"),
    ];
    for (url, want) in table {
        assert_eq!(
            announce_once(url, &req, t).map_err(|e| e.to_string()),
            Err(want.to_string()),
            "{url}"
        );
    }
    #[cfg(not(feature = "tls"))]
    assert_eq!(
        announce_once("HTTPS://127.0.0.1:1/announce", &req, t).map_err(|e| e.to_string()),
        Err("https trackers need shoal built with --features tls".to_string())
    );
}

#[test]
fn interval_table() {
    let floor = Duration::from_secs(30);
    let resp = |interval, min_interval| Response {
        interval,
        min_interval,
        ..Response::default()
    };
    let table = [
        (None, None, DEFAULT_INTERVAL),
        (Some(0), None, floor),
        (Some(900), None, Duration::from_secs(900)),
        (Some(60), Some(120), Duration::from_secs(120)),
        (Some(600), Some(60), Duration::from_secs(600)),
        (Some(u32::MAX), None, MAX_INTERVAL),
        (None, Some(u32::MAX), MAX_INTERVAL),
    ];
    for (i, m, want) in table {
        assert_eq!(next_interval(&resp(i, m), floor), want, "{i:?} {m:?}");
    }
}

#[test]
fn backoff_table() {
    let s = Duration::from_secs;
    let table = [
        (s(15), 1, s(15)),
        (s(15), 2, s(30)),
        (s(15), 3, s(60)),
        (s(15), 8, s(1920).min(MAX_BACKOFF)),
        (s(15), u32::MAX, MAX_BACKOFF),
        (s(3600), 5, s(3600)),
    ];
    for (base, n, want) in table {
        assert_eq!(backoff(base, n), want, "{base:?} {n}");
    }
}

#[test]
fn printable_defuses_and_truncates() {
    assert_eq!(printable("ok\r\n\x07"), "ok\u{fffd}\u{fffd}\u{fffd}");
    let long = "é".repeat(MAX_MESSAGE_CHARS + 5);
    let cut = printable(&long);
    assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(cut.ends_with('…'));
}

#[test]
fn http_scrape_once() {
    let hash = InfoHash([0x25; 20]);
    let entry = Owned::dict()
        .insert("complete", 2)
        .insert("downloaded", 9)
        .insert("incomplete", 4);
    let body = Owned::dict()
        .insert(
            "files",
            Owned::Dict([(hash.0.to_vec(), entry)].into_iter().collect()),
        )
        .encode();
    let tracker = fake(move |_, _| Reply::Body(body.clone()));
    let t = Duration::from_secs(2);
    let want = ScrapeStats {
        complete: 2,
        downloaded: 9,
        incomplete: 4,
    };
    assert_eq!(scrape_once(&tracker.url, &hash, t), Ok(want));
    let head = next_request(&tracker);
    let line = format!(
        "GET /scrape?info_hash={} ",
        tracker::percent_encode(&hash.0)
    );
    assert!(head.starts_with(&line), "{head}");
    assert_eq!(
        scrape_once(&tracker.url, &InfoHash([1; 20]), t).map_err(|e| e.to_string()),
        Err("the tracker does not know this torrent".to_string())
    );
    let missing = fake(|_, _| Reply::Status(404, Vec::new()));
    assert_eq!(
        scrape_once(&missing.url, &hash, t).map_err(|e| e.to_string()),
        Err("HTTP 404".to_string())
    );
    assert_eq!(
        scrape_once("http://127.0.0.1:1/tracker", &hash, t).map_err(|e| e.to_string()),
        Err("no scrape URL: the announce URL's path does not end in /announce".to_string())
    );
    assert_eq!(
        scrape_once("wss://127.0.0.1:1/", &hash, t).map_err(|e| e.to_string()),
        Err("unsupported tracker scheme 'wss'".to_string())
    );
}

/// Pooled announcers behave as threaded ones: `started` at once, the
/// tracker's interval, `completed` when told, `stopped` on `Stop`; many
/// torrents share the pool's few threads.
#[test]
fn a_pool_announces_many_torrents_on_few_threads() {
    let tracker = good(1);
    let pool = Pool::start().unwrap();
    let runs: Vec<Running> = (0..3 * pool::WORKERS as u8)
        .map(|i| {
            let mut c = config(vec![vec![tracker.url.clone()]]);
            c.info_hash = InfoHash([i; 20]);
            let counters = Counters::default();
            counters.left.store(1, Ordering::Relaxed);
            start_in(Some(&pool), c, counters)
        })
        .collect();
    for run in &runs {
        run.wait_for(is_peers);
    }
    // Each re-announces on the 1 s interval.
    for run in &runs {
        run.wait_for(is_peers);
    }
    runs[0].commands.send(Command::Completed);
    runs[0].wait_for(is_peers);
    let mut events_seen = Vec::new();
    for run in runs {
        run.stop();
    }
    while let Ok(head) = tracker.requests.try_recv() {
        if let Some(e) = param(&head, "event") {
            events_seen.push(e.to_string());
        }
    }
    let count = |e: &str| events_seen.iter().filter(|x| *x == e).count();
    assert_eq!(count("started"), 3 * pool::WORKERS);
    assert_eq!(count("completed"), 1);
    assert_eq!(count("stopped"), 3 * pool::WORKERS);
}

/// Dropping the pool stops every announcer in it (`stopped` sent).
#[test]
fn dropping_a_pool_stops_its_announcers() {
    let tracker = good(1800);
    let pool = Pool::start().unwrap();
    let run = start_in(
        Some(&pool),
        config(vec![vec![tracker.url.clone()]]),
        Counters::default(),
    );
    run.wait_for(is_peers);
    drop(pool);
    assert!(run.commands.wait_ended(Instant::now() + PATIENCE));
    next_request(&tracker);
    assert_eq!(param(&next_request(&tracker), "event"), Some("stopped"));
}

/// Past the pool's quit budget, announces still queued are dropped
/// unsent, so that a shutdown does not wait a tracker's timeout once per
/// torrent: with no budget at all, dropping the pool ends its announcers
/// without a `stopped`.
#[test]
fn a_dropped_pool_gives_up_on_queued_announces_past_its_budget() {
    let tracker = good(1800);
    let mut pool = Pool::start().unwrap();
    pool.quit_budget = Duration::ZERO;
    let runs: Vec<Running> = (0..2u8)
        .map(|i| {
            let mut c = config(vec![vec![tracker.url.clone()]]);
            c.info_hash = InfoHash([i; 20]);
            start_in(Some(&pool), c, Counters::default())
        })
        .collect();
    for run in &runs {
        run.wait_for(is_peers);
    }
    drop(pool);
    for run in &runs {
        assert!(run.commands.wait_ended(Instant::now() + PATIENCE));
    }
    let events: Vec<String> = tracker
        .requests
        .try_iter()
        .filter_map(|head| param(&head, "event").map(str::to_string))
        .collect();
    assert_eq!(events, ["started", "started"]);
}
