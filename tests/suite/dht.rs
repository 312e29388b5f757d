//! The DHT (BEP 5) end to end on 127.0.0.1, never outside: every shoal
//! here bootstraps from a node of the test (`--dht-bootstrap`). A DHT of
//! 20 nodes (19 in this process through the library, one `shoal dht`),
//! a `shoal seed` and a `shoal get` of a torrent with no tracker and no
//! `--peer`: the leecher finds the seeder through the DHT only, whether
//! the seeder came first or last (then either side's lookup finds the
//! other: a leecher announces itself too, as BEP 5 clients do). And a node under hostile input: a
//! `get_peers` flood from one IP, replies with wrong transaction ids,
//! garbage.

use crate::common::daemon::Daemon;
use crate::common::process::children;
use crate::common::{make_torrent, random_bytes, run_get, TempDir};
use shoal::net::dht::Config;
use shoal::net::udp_port::UdpPort;
use shoal::proto::krpc::{self, Body, Message, Method};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// Nodes of the test's DHT: the first (bootstrap of all) and the others
/// in this process, plus a `shoal dht` process.
pub(crate) struct Fleet {
    nodes: Vec<UdpPort>,
    _process: Daemon,
    pub(crate) boot: String,
}

pub(crate) fn fleet(tmp: &TempDir) -> Fleet {
    let first = UdpPort::start("127.0.0.1:0".parse().unwrap(), Some(Config::default())).unwrap();
    let boot = first.local_addr.to_string();
    let mut process = Daemon::start(
        "shoal dht",
        LIMIT,
        &[
            "dht",
            "--listen",
            "127.0.0.1:0",
            "--dht-bootstrap",
            &boot,
            "--json",
        ],
        tmp.path(),
    );
    process.listening(Duration::from_secs(10));
    let config = Config {
        bootstrap: vec![boot.clone()],
        state_file: None,
    };
    let mut nodes = vec![first];
    for _ in 0..18 {
        nodes.push(UdpPort::start("127.0.0.1:0".parse().unwrap(), Some(config.clone())).unwrap());
    }
    // Formed: every node knows a few others.
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &nodes {
        let dht = node.dht().unwrap();
        while dht
            .stats(Duration::from_secs(1))
            .is_none_or(|s| s.nodes < 4)
        {
            assert!(Instant::now() < deadline, "the DHT did not form");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Fleet {
        nodes,
        _process: process,
        boot,
    }
}

impl Fleet {
    /// Waits until the nodes of this process hold a few announces (the
    /// seeder's reached the DHT); without it, a leecher that starts at
    /// once may look before the seeder announced and find it only on its
    /// next lookup, 10 s later.
    pub(crate) fn wait_announced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stored = || -> usize {
            self.nodes
                .iter()
                .filter_map(|n| n.dht().unwrap().stats(Duration::from_secs(1)))
                .map(|s| s.stored_peers)
                .sum()
        };
        while stored() < 4 {
            assert!(Instant::now() < deadline, "the seeder never announced");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A torrent with no tracker, its data, and where the seeder finds it.
fn trackerless(tmp: &TempDir) -> (crate::common::Torrent, PathBuf, PathBuf) {
    let data = random_bytes(0xd47, 2 * 1024 * 1024 + 333);
    let t = make_torrent("dht.bin", &[("", &data)], 64 * 1024, None, false);
    let torrent = t.write_torrent(tmp.path());
    let src = tmp.subdir("src");
    t.write_data(&src);
    (t, torrent, src)
}

fn seed(torrent: &Path, src: &Path, boot: &str, cwd: &Path) -> Daemon {
    Daemon::seed("shoal seed", torrent, src, &["--dht-bootstrap", boot], cwd).0
}

fn get_args(torrent: &Path, out: &Path, boot: &str) -> Vec<String> {
    [
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "--dht-bootstrap",
        boot,
        "--timeout",
        "60s",
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn shoal_get_finds_its_seeder_through_the_dht_only() {
    let tmp = TempDir::new("dht-get");
    let f = fleet(&tmp);
    let (t, torrent, src) = trackerless(&tmp);
    let mut seeder = seed(&torrent, &src, &f.boot, tmp.path());
    f.wait_announced();
    let out = tmp.subdir("out");
    run_get(&get_args(&torrent, &out, &f.boot), LIMIT).assert_success();
    t.assert_downloaded(&out);
    assert!(seeder.stop_seeding() >= t.total_len());
    assert!(f.nodes.len() + 1 >= 20);
}

/// A magnet link with no tracker and no `x.pe`: the metadata's peers come
/// from the DHT alone (issue 12, "DHT only").
#[test]
fn a_magnet_is_fetched_through_the_dht_only() {
    let tmp = TempDir::new("dht-magnet");
    let f = fleet(&tmp);
    let (t, torrent, src) = trackerless(&tmp);
    let mut seeder = seed(&torrent, &src, &f.boot, tmp.path());
    f.wait_announced();
    let out = tmp.subdir("out");
    let magnet = format!("magnet:?xt=urn:btih:{}", t.info_hash_hex());
    let mut args = get_args(Path::new(&magnet), &out, &f.boot);
    args[0] = magnet;
    let run = run_get(&args, LIMIT);
    run.assert_success();
    assert!(
        run.stdout.contains("{\"event\":\"metadata\""),
        "{}",
        run.describe()
    );
    t.assert_downloaded(&out);
    seeder.stop_seeding();
}

#[test]
fn a_seeder_that_joins_last_is_found() {
    let tmp = TempDir::new("dht-late");
    let f = fleet(&tmp);
    let (t, torrent, src) = trackerless(&tmp);
    let out = tmp.subdir("out");
    let mut args = vec!["get".to_string()];
    args.extend(get_args(&torrent, &out, &f.boot));
    args.extend(["--port".into(), "0".into()]);
    let mut leecher = Daemon::start("shoal get", LIMIT, &args, tmp.path());
    leecher.listening(Duration::from_secs(10));
    // The first progress line comes a second after the start: its lookup
    // (milliseconds on loopback) is over by then, and found nobody.
    let progress = leecher.expect_event("progress", Duration::from_secs(10));
    assert!(progress.contains("\"known\":0"), "{progress}");
    let mut seeder = seed(&torrent, &src, &f.boot, tmp.path());
    let status = leecher.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        leecher.describe()
    );
    t.assert_downloaded(&out);
    seeder.stop_seeding();
}

fn get_peers(tid: u32) -> Vec<u8> {
    Message {
        tid: tid.to_be_bytes().to_vec(),
        body: Body::Query {
            id: [tid as u8; 20],
            method: Method::GetPeers {
                info_hash: [(tid >> 8) as u8; 20],
            },
        },
    }
    .encode()
}

/// Resident memory of the `shoal dht` behind its `timeout` wrapper, KiB.
fn rss_kib(wrapper: u32) -> u64 {
    let pid = children(wrapper)[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 100,000 `get_peers` from one IP (127.0.0.2) are answered at the
/// per-IP rate only and leave the node's memory bounded; replies with
/// transaction ids it never sent and garbage get nothing; and through it
/// all the node still answers others.
#[test]
fn hostile_input_costs_the_sender_only() {
    let tmp = TempDir::new("dht-hostile");
    let mut node = Daemon::start(
        "shoal dht",
        LIMIT,
        &[
            "dht",
            "--listen",
            "127.0.0.1:0",
            "--dht-bootstrap",
            "127.0.0.1:9",
            "--json",
        ],
        tmp.path(),
    );
    let addr: SocketAddr = node.listening(Duration::from_secs(10));
    let pid = node.pid();
    let before = rss_kib(pid);
    let hostile = UdpSocket::bind("127.0.0.2:0").unwrap();
    hostile
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    for i in 0..100_000u32 {
        let _ = hostile.send_to(&get_peers(i), addr);
        // Forged replies and garbage in between.
        if i % 100 == 0 {
            let forged = Message {
                tid: (i as u16).to_be_bytes().to_vec(),
                body: Body::Response(krpc::Response {
                    id: [1; 20],
                    ..krpc::Response::default()
                }),
            };
            let _ = hostile.send_to(&forged.encode(), addr);
            let _ = hostile.send_to(b"d1:t\xff\xff", addr);
        }
    }
    let mut answers = 0;
    let mut buf = [0u8; 1500];
    while hostile.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_kib(pid);
    eprintln!(
        "100,000 hostile get_peers in {secs:.2}s: {answers} answered; RSS {before} KiB before, {after} KiB after"
    );
    // Burst 50, then 20/s (the limiter's figures), with a margin.
    assert!(
        f64::from(answers) <= 50.0 + 20.0 * secs + 5.0,
        "{answers} in {secs:.1}s"
    );
    assert!(after < before + 8 * 1024, "RSS {before} -> {after} KiB");
    // Others are still served.
    let friend = UdpSocket::bind("127.0.0.1:0").unwrap();
    friend
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    friend.send_to(&get_peers(7), addr).unwrap();
    let (n, _) = friend.recv_from(&mut buf).unwrap();
    assert!(matches!(
        krpc::decode(&buf[..n]).unwrap().body,
        Body::Response(_)
    ));
    node.terminate(Duration::from_secs(5));
}

/// Time from start to the first data of a DHT-only download in the
/// 20-node DHT, median of 5: the wall time from spawning `shoal get` to its
/// exit, for a torrent of one 16 KiB piece (so an upper bound: it includes
/// the process's start and exit, the lookup, the connection, the piece and
/// its hash check). Not in `make test` (it measures): `cargo test --release
/// --test tests dht::time_to_first_byte -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_to_first_byte() {
    let tmp = TempDir::new("dht-ttfb");
    let f = fleet(&tmp);
    let data = random_bytes(0xf1b, 16 * 1024);
    let t = make_torrent("ttfb.bin", &[("", &data)], 16 * 1024, None, false);
    let torrent = t.write_torrent(tmp.path());
    let src = tmp.subdir("src");
    t.write_data(&src);
    let mut seeder = seed(&torrent, &src, &f.boot, tmp.path());
    // Measure from when the seeder's announce is in the DHT.
    f.wait_announced();
    let magnet = format!("magnet:?xt=urn:btih:{}", t.info_hash_hex());
    for (what, target) in [
        ("torrent", torrent.clone()),
        ("magnet", PathBuf::from(&magnet)),
    ] {
        let mut times = Vec::new();
        for run in 0..5 {
            let out = tmp.subdir(&format!("out-{what}{run}"));
            let start = Instant::now();
            let mut args = get_args(&target, &out, &f.boot);
            args[0] = target.to_string_lossy().into_owned();
            run_get(&args, LIMIT).assert_success();
            let took = start.elapsed();
            t.assert_downloaded(&out);
            eprintln!("{what} run {run}: start to complete {took:?}");
            times.push(took);
        }
        times.sort();
        eprintln!("{what} median: {:?}", times[2]);
    }
    seeder.stop_seeding();
}

/// Interop: a python3-libtorrent seeder whose DHT is bootstrapped from a
/// shoal node (its filters of one-IP and private-range nodes off, as
/// everything is on 127.0.0.1) announces itself into the shoal DHT, and
/// `shoal get` with no tracker and no `--peer` finds it there.
#[test]
fn shoal_get_finds_a_libtorrent_seeder_through_the_dht() {
    if !crate::common::interop::tools_present("dht interop", false) {
        return;
    }
    let tmp = TempDir::new("dht-lt");
    let f = fleet(&tmp);
    let (t, torrent, src) = trackerless(&tmp);
    let extra = ["--no-tracker", "--no-utp", "--dht", &f.boot];
    let mut seeder = crate::common::interop::LtPeer::start(
        "lt.py seed (DHT)",
        "seed",
        &torrent,
        &src,
        &extra,
        tmp.path(),
    );
    seeder.proc.expect_line("READY", Duration::from_secs(30));
    let out = tmp.subdir("out");
    run_get(&get_args(&torrent, &out, &f.boot), LIMIT).assert_success();
    t.assert_downloaded(&out);
    let (uploaded, _) = seeder.finish();
    assert!(uploaded > 0, "the bytes came from libtorrent");
}
