//! uTP (BEP 29) against real clients (issue 10, "uTP-first clients must
//! reach us"): python3-libtorrent with TCP disabled fetches from `shoal
//! seed` over uTP, and says so; `shoal get` downloads from a uTP-only
//! libtorrent seeder that dials it; with `--utp off` shoal resets uTP and
//! libtorrent falls back to TCP; Transmission 3.00 with its **default**
//! settings (uTP on, which never falls back to TCP) dials `shoal seed`,
//! which never dials it, and downloads; so does qBittorrent-nox.
//!
//! A missing client or no `ip netns` (not root) prints `SKIPPED` and
//! passes, except under `CI=true`, where it fails. Every helper runs
//! under `timeout` and is stopped by its PID (common::process::External);
//! run them with `cargo test --test tests utp -- --nocapture`.

use crate::common::clients::{self, Client, Kind, Role};
use crate::common::daemon::Daemon;
use crate::common::interop::{tools_present_with, LtPeer};
use crate::common::netns::{self, Netns};
use crate::common::tracker::{FakeTracker, TrackerMode};
use crate::common::{in_ci, make_torrent, random_bytes, wait_until, TempDir};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// libtorrent fetches 32 MiB from shoal within this (it takes about a
/// second on loopback; the margin is for two busy cores).
const LEECH_WITHIN: Duration = Duration::from_secs(90);

/// `shoal seed` on loopback with a 32 MiB torrent, and a libtorrent
/// leecher dialling it with `lt_args`; checks the bytes and returns
/// lt.py's `VIA` (the transports that carried payload) and shoal's log.
fn lt_leeches(test: &str, seed_args: &[&str], lt_args: &[&str]) -> (String, String) {
    let tmp = TempDir::new(test);
    let data = random_bytes(2900, 32 * MIB);
    let t = make_torrent(test, &[("", &data)], 256 * KIB as u32, None, false);
    let torrent = t.write_torrent(tmp.path());
    let src = tmp.subdir("src");
    t.write_data(&src);
    let out = tmp.subdir("out");
    let mut args = vec!["-vv"];
    args.extend_from_slice(seed_args);
    let (mut seeder, addr) = Daemon::seed("shoal seed", &torrent, &src, &args, tmp.path());
    let peer = addr.to_string();
    let mut lt_args: Vec<&str> = lt_args.to_vec();
    lt_args.extend_from_slice(&["--no-tracker", "--peer", &peer]);
    let mut lt = LtPeer::leech("lt leech", &torrent, &out, &lt_args, tmp.path());
    if lt.proc.wait_for_line("DONE ", LEECH_WITHIN).is_none() {
        panic!(
            "{test}: libtorrent did not complete within {LEECH_WITHIN:?}\n{}\n{}",
            lt.proc.describe(),
            seeder.describe()
        );
    }
    let secs = lt.done(Duration::ZERO);
    lt.proc.close_stdin();
    let via = lt.proc.expect_line("VIA ", Duration::from_secs(20))["VIA ".len()..].to_string();
    let (_, downloaded) = lt.finish();
    eprintln!("{test}: libtorrent done in {secs:.2} s via {via}");
    assert_eq!(downloaded, data.len() as u64);
    t.assert_downloaded(&out);
    seeder.proc.stop();
    (via, seeder.proc.stderr())
}

/// libtorrent with TCP off (`--utp-only`) fetches 32 MiB from `shoal
/// seed`: the bytes are right, libtorrent's peer info says the
/// connection was uTP, and so does shoal's log.
#[test]
fn libtorrent_fetches_from_shoal_seed_over_utp_only() {
    let test = "libtorrent_fetches_from_shoal_seed_over_utp_only";
    if !tools_present_with(test, &[]) {
        return;
    }
    let (via, log) = lt_leeches(test, &[], &["--utp-only"]);
    assert_eq!(via, "utp", "libtorrent's peer info");
    assert!(
        log.contains("over uTP"),
        "shoal's log names no uTP peer:\n{log}"
    );
}

/// MSE with RC4 (libtorrent forced to encrypt) over uTP: the cipher sits
/// at the stream's boundary, whatever the transport.
#[test]
fn libtorrent_fetches_over_utp_with_rc4() {
    let test = "libtorrent_fetches_over_utp_with_rc4";
    if !tools_present_with(test, &[]) {
        return;
    }
    let (via, log) = lt_leeches(test, &[], &["--utp-only", "--enc", "forced"]);
    assert_eq!(via, "utp", "libtorrent's peer info");
    assert!(log.contains("RC4 over uTP"), "shoal's log:\n{log}");
}

/// `--utp off`: shoal resets libtorrent's uTP SYN, and libtorrent (uTP
/// first by default) fetches over TCP instead.
#[test]
fn with_utp_off_libtorrent_falls_back_to_tcp() {
    let test = "with_utp_off_libtorrent_falls_back_to_tcp";
    if !tools_present_with(test, &[]) {
        return;
    }
    let (via, log) = lt_leeches(test, &["--utp", "off"], &[]);
    // Payload over TCP; that none went over uTP is shoal's to say (its
    // log, below): lt.py credits a connection that ends (here the uTP
    // attempt we reset) by the torrent's totals, which TCP may already
    // have moved by the time it reads that alert.
    assert!(
        via.split(',').any(|v| v == "tcp"),
        "libtorrent's peer info: {via}"
    );
    assert!(
        !log.contains("over uTP"),
        "a uTP peer with --utp off:\n{log}"
    );
}

/// `shoal get` downloads over uTP: a libtorrent seeder that speaks uTP
/// only dials it (the tracker hands out shoal's address only, so shoal
/// never learns the seeder's and cannot dial it). This is the receiving
/// side: our window, reordering and acks against libtorrent's sender.
#[test]
fn shoal_get_downloads_from_a_libtorrent_seeder_dialling_over_utp() {
    let test = "shoal_get_downloads_from_a_libtorrent_seeder_dialling_over_utp";
    if !tools_present_with(test, &[]) {
        return;
    }
    let tmp = TempDir::new(test);
    // The tracker learns shoal's address once shoal listens (port 0: no
    // port picked here that another test could take meanwhile).
    let tracker = FakeTracker::start(&[]);
    let data = random_bytes(2902, 32 * MIB);
    let url = tracker.announce_url();
    let t = make_torrent(test, &[("", &data)], 256 * KIB as u32, Some(&url), false);
    let torrent = t.write_torrent(tmp.path());
    let (src, out) = (tmp.subdir("src"), tmp.subdir("out"));
    t.write_data(&src);
    let s = |p: &std::path::Path| p.display().to_string();
    let mut get = Daemon::start(
        "shoal get",
        Duration::from_secs(170),
        &[
            "get",
            &s(&torrent),
            "-o",
            &s(&out),
            "--json",
            "-vv",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
        ],
        tmp.path(),
    );
    tracker.set_peers(&[get.listening(Duration::from_secs(30))]);
    let mut seeder = LtPeer::start(
        "lt seed",
        "seed",
        &torrent,
        &src,
        &["--utp-only"],
        tmp.path(),
    );
    seeder.proc.expect_line("READY", Duration::from_secs(60));
    let start = Instant::now();
    let Some(status) = get.wait_exit(LEECH_WITHIN) else {
        panic!(
            "{test}: shoal get not done within {LEECH_WITHIN:?}\n{}\n{}",
            get.describe(),
            seeder.proc.describe()
        );
    };
    let secs = start.elapsed().as_secs_f64();
    assert!(status.success(), "{test}: {status}\n{}", get.describe());
    t.assert_downloaded(&out);
    let log = get.proc.stderr();
    assert!(log.contains("over uTP"), "{test}: no uTP peer\n{log}");
    eprintln!("{test}: shoal got 32 MiB in {secs:.2} s over uTP");
}

/// A real client leeches within this. Transmission unchokes on a 10 s
/// timer; the margin is for two busy cores.
const CLIENT_WITHIN: Duration = Duration::from_secs(120);

/// Transmission 3.00 with its default settings leeches from `shoal seed`
/// on hosts of their own. The tracker (a fake one, on a third host) hands
/// every announcer shoal's address only, so shoal never learns
/// Transmission's and never dials it: the only way the bytes can flow is
/// Transmission dialling shoal — over uTP, its default, with no TCP retry
/// (INTEROP.md).
#[test]
fn transmission_with_default_settings_fetches_from_shoal_over_utp() {
    client_fetches_over_utp(
        "transmission_with_default_settings_fetches_from_shoal_over_utp",
        Kind::Transmission,
    );
}

/// The same for qBittorrent-nox (libtorrent inside) with its defaults: it
/// dials uTP first, and now gets through at once.
#[test]
fn qbittorrent_with_default_settings_fetches_from_shoal_over_utp() {
    client_fetches_over_utp(
        "qbittorrent_with_default_settings_fetches_from_shoal_over_utp",
        Kind::Qbittorrent,
    );
}

fn client_fetches_over_utp(test: &str, kind: Kind) {
    if !netns::available(test) {
        return;
    }
    if let Some(what) = kind.missing() {
        assert!(!in_ci(), "{test}: {what} not installed, and CI=true");
        eprintln!("\n*** SKIPPED: {test}: {what} not installed ***\n");
        return;
    }
    let net = Netns::new(3);
    let tmp = TempDir::new(test);
    let shoal = SocketAddr::from((net.host(1).ip, 6881));
    let tracker_addr = SocketAddr::from((net.host(0).ip, 6969));
    let tracker = net.in_host(0, move || {
        FakeTracker::on(tracker_addr, &[shoal], TrackerMode::Peers)
    });
    let data = random_bytes(2901, 32 * MIB);
    let url = tracker.announce_url();
    let name = format!("utp-{}", kind.name());
    let t = make_torrent(&name, &[("", &data)], 256 * KIB as u32, Some(&url), false);
    let torrent = t.write_torrent(tmp.path());
    let (src, out, work) = (tmp.subdir("src"), tmp.subdir("out"), tmp.subdir("client"));
    t.write_data(&src);
    let s = |p: &std::path::Path| p.display().to_string();
    let mut seeder = Daemon::start_in(
        "shoal seed",
        &net.exec_prefix(1),
        Duration::from_secs(300),
        &[
            "seed",
            &s(&torrent),
            &s(&src),
            "--json",
            "-vv",
            "--bind",
            &net.host(1).ip.to_string(),
            "--port",
            "6881",
            "--no-dht",
            "--no-lsd",
        ],
        tmp.path(),
    );
    seeder.expect_event("seeding", Duration::from_secs(60));
    let start = Instant::now();
    let mut leecher = Client::start(kind, Role::Leech, &net, 2, &torrent, &out, &work);
    if let Err(why) = leecher.wait_done(&net, CLIENT_WITHIN) {
        panic!(
            "{test}: {why}\n{}\n{}",
            leecher.log(60),
            clients::tail(&seeder.proc.stderr(), 60)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let complete = wait_until(Duration::from_secs(15), || {
        std::fs::read(t.path_in(&out, &t.files[0])).is_ok_and(|d| d == data)
    });
    assert!(complete, "{test}: the client says done, the bytes differ");
    let log = seeder.proc.stderr();
    seeder.proc.stop();
    assert!(
        log.contains("over uTP"),
        "{test}: no uTP peer in shoal's log\n{}",
        clients::tail(&log, 60)
    );
    assert!(
        !log.contains("over TCP"),
        "{test}: a TCP peer, so shoal dialled or the client fell back\n{}",
        clients::tail(&log, 60)
    );
    eprintln!("{test}: {} done in {secs:.1} s over uTP", kind.name());
}

/// `--utp` takes `on` or `off`; anything else is a usage error (exit 2).
#[test]
fn a_bad_utp_value_is_a_usage_error() {
    let run = crate::common::run_shoal(
        &["seed", "/nonexistent.torrent", "/tmp", "--utp", "maybe"],
        Duration::from_secs(30),
    );
    run.assert_code(2);
    assert!(run.stderr.contains("uTP setting"), "{}", run.describe());
}
