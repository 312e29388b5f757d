//! Trackers the real world uses (issue 5), with shoal on both ends: UDP
//! (BEP 15) through `shoal tracker`, a tier whose HTTP tracker is dead but
//! whose UDP one answers, `shoal info --scrape` over both schemes, and HTTP
//! over IPv6 loopback.

use crate::common;
use crate::common::process::External;
use crate::common::{free_port, json_num, random_bytes, run_shoal, TempDir};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const LIMIT: Duration = Duration::from_secs(60);

/// A directory with `data.bin` (3 MiB + a bit) and its torrent.
struct Swarm {
    tmp: TempDir,
    torrent: PathBuf,
    data: Vec<u8>,
}

/// Makes the data and a torrent whose tiers are `tiers` (one `-t` each).
fn swarm(tag: &str, tiers: &[String]) -> Swarm {
    let tmp = TempDir::new(tag);
    let data = random_bytes(0x7ac, 3 * 1024 * 1024 + 777);
    let src = tmp.subdir("src");
    std::fs::write(src.join("data.bin"), &data).unwrap();
    let torrent = tmp.join("data.torrent");
    let mut args: Vec<String> = vec!["create".into(), src.join("data.bin").display().to_string()];
    for t in tiers {
        args.extend(["-t".into(), t.clone()]);
    }
    args.extend([
        "-o".into(),
        torrent.display().to_string(),
        "-q".into(),
        "--piece-size".into(),
        "64K".into(),
    ]);
    run_shoal(&args, LIMIT).assert_success();
    Swarm { tmp, torrent, data }
}

impl Swarm {
    /// `shoal seed` of the source data, listening on `bind`.
    fn seed(&self, bind: &str) -> External {
        External::start(
            "shoal seed",
            LIMIT,
            SHOAL,
            &[
                "seed",
                self.torrent.to_str().unwrap(),
                self.tmp.join("src").to_str().unwrap(),
                "--bind",
                bind,
                "--port",
                "0",
                "--json",
            ],
            self.tmp.path(),
        )
    }

    /// `shoal get` into `out/` with no `--peer`: trackers only.
    fn get(&self, bind: &str) -> common::Run {
        let out = self.tmp.subdir("out");
        let run = run_shoal(
            &[
                "get",
                self.torrent.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--bind",
                bind,
                "--port",
                "0",
                "--json",
                "--timeout",
                "40s",
            ],
            LIMIT,
        );
        run.assert_success();
        let got = std::fs::read(out.join("data.bin")).unwrap();
        assert!(got == self.data, "downloaded bytes differ from the source");
        run
    }
}

fn tracker(listen: &str) -> External {
    External::start(
        "shoal tracker",
        LIMIT,
        SHOAL,
        &["tracker", "--listen", listen, "--interval", "2s", "-q"],
        Path::new("/"),
    )
}

/// Waits until the tracker knows a seeder for the torrent (scrape).
fn wait_for_seeder(torrent: &Path) {
    let seen = common::wait_until(Duration::from_secs(20), || {
        let run = run_shoal(
            &[
                "info",
                torrent.to_str().unwrap(),
                "--scrape",
                "--json",
                "--timeout",
                "2s",
            ],
            LIMIT,
        );
        run.stdout.contains("\"seeders\":1")
    });
    assert!(seen, "the seeder never showed up at the tracker");
}

#[test]
fn get_through_a_udp_only_tracker() {
    let port = free_port();
    let _tracker = tracker(&format!("127.0.0.1:{port}"));
    let s = swarm("trk-udp", &[format!("udp://127.0.0.1:{port}")]);
    let _seed = s.seed("127.0.0.1");
    wait_for_seeder(&s.torrent);
    let run = s.get("127.0.0.1");
    assert!(run.events("tracker_error").is_empty(), "{}", run.describe());
}

#[test]
fn dead_http_tracker_does_not_stop_a_live_udp_one() {
    let port = free_port();
    let dead = common::dead_addr();
    let _tracker = tracker(&format!("127.0.0.1:{port}"));
    // Both trackers in ONE tier (BEP 12): made with two -t (two tiers),
    // then the tier boundary between them removed. announce-list sits
    // outside the info dictionary, so the info hash does not change.
    let dead_url = format!("http://{dead}/announce");
    let live_url = format!("udp://127.0.0.1:{port}/announce");
    let s = swarm("trk-tier", &[dead_url.clone(), live_url.clone()]);
    let bytes = std::fs::read(&s.torrent).unwrap();
    let two_tiers = format!(
        "{}:{dead_url}el{}:{live_url}",
        dead_url.len(),
        live_url.len()
    );
    let one_tier = format!("{}:{dead_url}{}:{live_url}", dead_url.len(), live_url.len());
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(text.contains(&two_tiers), "announce-list as created");
    let idx = bytes
        .windows(two_tiers.len())
        .position(|w| w == two_tiers.as_bytes())
        .unwrap();
    let mut edited = bytes[..idx].to_vec();
    edited.extend_from_slice(one_tier.as_bytes());
    edited.extend_from_slice(&bytes[idx + two_tiers.len()..]);
    std::fs::write(&s.torrent, &edited).unwrap();
    let info = run_shoal(&["info", "--json", s.torrent.to_str().unwrap()], LIMIT);
    info.assert_success();
    assert!(
        info.stdout
            .contains(&format!("\"trackers\":[[\"{dead_url}\",\"{live_url}\"]]")),
        "{}",
        info.stdout
    );

    let _seed = s.seed("127.0.0.1");
    wait_for_seeder(&s.torrent);
    s.get("127.0.0.1");
}

#[test]
fn info_scrape_reports_every_tracker() {
    let port = free_port();
    let _tracker = tracker(&format!("127.0.0.1:{port}"));
    let dead = common::dead_addr();
    let s = swarm(
        "trk-scrape",
        &[
            format!("udp://127.0.0.1:{port}/announce"),
            format!("http://127.0.0.1:{port}/announce"),
            format!("http://{dead}/announce"),
        ],
    );
    let _seed = s.seed("127.0.0.1");
    wait_for_seeder(&s.torrent);
    let run = run_shoal(
        &[
            "info",
            s.torrent.to_str().unwrap(),
            "--scrape",
            "--timeout",
            "3s",
        ],
        LIMIT,
    );
    run.assert_success();
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("scrape:"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].contains("udp://") && lines[0].contains("1 seeders, 0 leechers"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("http://") && lines[1].contains("1 seeders, 0 leechers"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with("connection refused"), "{}", lines[2]);
    let json = run_shoal(
        &["info", s.torrent.to_str().unwrap(), "--scrape", "--json"],
        LIMIT,
    );
    assert_eq!(
        json_num(&json.stdout, "seeders"),
        Some(1.0),
        "{}",
        json.stdout
    );
}

/// HTTP tracker, seeder and leecher all on [::1]. Debian's opentracker is
/// built IPv4-only, so this uses shoal's own tracker.
#[test]
fn http_tracker_and_peers_over_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        // No IPv6 loopback on this host (some containers): nothing to test.
        eprintln!(
            "*** SKIPPED http_tracker_and_peers_over_ipv6_loopback: ::1 is not available here ***"
        );
        return;
    }
    let port = free_port();
    let _tracker = tracker(&format!("[::1]:{port}"));
    let s = swarm("trk-v6", &[format!("http://[::1]:{port}/announce")]);
    let mut seed = s.seed("::1");
    let listening = seed.expect_line("{\"event\":\"listening\"", Duration::from_secs(20));
    assert!(listening.contains("[::1]:"), "{listening}");
    wait_for_seeder(&s.torrent);
    s.get("::1");
}
