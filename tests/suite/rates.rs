//! Rate limits (issue 14): `--max-download-rate` from a libtorrent seeder
//! and `--max-upload-rate` to eight libtorrent leechers (more than the
//! upload slots, so slots freed by finished leechers must be refilled at
//! once), each measured from
//! shoal's own `--json` progress (one sample a second, timed on arrival)
//! over the steady part of the transfer, within ±10 % of the limit.

use crate::common::daemon::Daemon;
use crate::common::interop::{tools_present, LtPeer};
use crate::common::process::External;
use crate::common::{json_num, make_torrent, random_bytes, TempDir};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const LIMIT: u64 = 8 * MIB;
const WITHIN: Duration = Duration::from_secs(90);

/// `(arrival, value of key)` for each `--json` progress line until `key`
/// reaches `until` (or the process ends, or the deadline passes).
fn samples(proc: &mut External, key: &str, until: u64) -> Vec<(Instant, u64)> {
    let end = Instant::now() + WITHIN;
    let mut out = Vec::new();
    while let Some(line) = proc.next_line_with("{\"event\":\"progress\"", end - Instant::now()) {
        let v = json_num(&line, key).unwrap_or(0.0) as u64;
        out.push((Instant::now(), v));
        if v >= until || Instant::now() >= end {
            break;
        }
    }
    out
}

/// Bytes per second over the steady part: from the first sample a second
/// after the transfer started to the last sample before it ended.
fn steady_rate(s: &[(Instant, u64)], total: u64) -> f64 {
    let start = s.iter().position(|(_, v)| *v > 0).expect("no progress");
    let from = s[start..]
        .iter()
        .find(|(t, _)| *t >= s[start].0 + Duration::from_secs(1))
        .expect("a second of samples");
    let to = s
        .iter()
        .rev()
        .find(|(_, v)| *v < total)
        .expect("a sample before the end");
    (to.1 - from.1) as f64 / (to.0 - from.0).as_secs_f64()
}

fn assert_near(what: &str, rate: f64) {
    let error = (rate - LIMIT as f64) / LIMIT as f64;
    eprintln!(
        "{what}: {:.2} MiB/s, {:+.1} % of the limit",
        rate / MIB as f64,
        error * 100.0
    );
    assert!(
        error.abs() <= 0.10,
        "{what}: {rate:.0} B/s against a limit of {LIMIT}"
    );
}

#[test]
fn the_download_limit_holds_against_a_libtorrent_seeder() {
    if !tools_present(
        "the_download_limit_holds_against_a_libtorrent_seeder",
        false,
    ) {
        return;
    }
    let t = make_torrent(
        "rate-down.bin",
        &[("", &random_bytes(70, 64 * MIB as usize))],
        256 * 1024,
        None,
        false,
    );
    let tmp = TempDir::new("rate-down");
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    let seeder = LtPeer::seed("libtorrent seeder", &file, &src, tmp.path());
    let out = tmp.subdir("out");
    let peer = seeder.addr();
    let args = [
        "get",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &peer,
        "--no-listen",
        "--json",
        "--max-download-rate",
        "8M",
    ];
    let mut get = Daemon::start("shoal get", WITHIN, &args, tmp.path());
    let total = 64 * MIB;
    let s = samples(&mut get.proc, "bytes", total);
    assert!(
        get.wait_exit(WITHIN).is_some_and(|st| st.success()),
        "{}",
        get.describe()
    );
    t.assert_downloaded(&out);
    assert_near("download", steady_rate(&s, total));
}

#[test]
fn the_upload_limit_holds_to_eight_libtorrent_leechers() {
    if !tools_present("the_upload_limit_holds_to_eight_libtorrent_leechers", false) {
        return;
    }
    let t = make_torrent(
        "rate-up.bin",
        &[("", &random_bytes(71, 32 * MIB as usize))],
        256 * 1024,
        None,
        false,
    );
    let tmp = TempDir::new("rate-up");
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    let (mut seed, addr) = Daemon::seed(
        "shoal seed",
        &file,
        &src,
        &["--max-upload-rate", "8M"],
        tmp.path(),
    );
    let peer = addr.to_string();
    let mut leechers: Vec<(LtPeer, std::path::PathBuf)> = (0..8)
        .map(|i| {
            let out = tmp.subdir(&format!("out{i}"));
            let lt = LtPeer::leech(
                &format!("libtorrent leecher {i}"),
                &file,
                &out,
                &["--peer", &peer, "--no-tracker", "--no-utp"],
                tmp.path(),
            );
            (lt, out)
        })
        .collect();
    let total = 8 * 8 * MIB;
    let s = samples(&mut seed.proc, "uploaded", total);
    for (lt, out) in &mut leechers {
        lt.done(WITHIN);
        t.assert_downloaded(out);
    }
    assert_near("upload", steady_rate(&s, total));
    seed.stop_seeding();
}

/// A rate of 0, a negative, malformed or absurd one is a usage error.
#[test]
fn bad_rates_are_usage_errors() {
    for bad in ["0", "-5M", "fast", "12X", "99999999G"] {
        for flag in ["--max-download-rate", "--max-upload-rate"] {
            let run = crate::common::run_shoal(&["get", "x.torrent", flag, bad], WITHIN);
            assert_eq!(run.code(), Some(2), "{flag} {bad}: {}", run.describe());
            assert!(run.stderr.contains("invalid rate"), "{}", run.describe());
        }
    }
}
