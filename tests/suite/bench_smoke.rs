//! The benchmark script still works (issue 6): `tests/tools/bench.py
//! --smoke` fetches an 8 MiB torrent once with `shoal get` and once with a
//! python3-libtorrent leecher through opentracker, runs a tiny download
//! through its delay proxy and a tiny hash case, prints its tables and
//! verifies every download's bytes. `make test` never runs the real
//! benchmark (`make bench`).
//!
//! When `/usr/bin/python3 -c 'import libtorrent'` fails or `opentracker`,
//! `openssl` or `sha1sum` is missing, the test prints `SKIPPED: ...` to
//! stderr and passes — except under `CI=true`, where it fails (as in
//! tests/suite/interop.rs).

use crate::common::interop::{tools_present_with, PYTHON};
use crate::common::TempDir;
use std::process::Command;

const BENCH_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/bench.py");
/// `timeout` for the whole script: the smoke run takes seconds, this is
/// generous for a loaded CI machine. Its helpers have their own limits and
/// die with it.
const LIMIT_SECS: &str = "240";

/// A table row in `text` whose first two columns are `case` and `client`
/// and whose third is a number (a median, not `FAILED`).
fn row<'a>(text: &'a str, case: &str, client: &str) -> Option<&'a str> {
    text.lines().find(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() > 4 && w[0] == case && w[1] == client && w[2].parse::<f64>().is_ok()
    })
}

#[test]
fn bench_script_smoke() {
    if !tools_present_with("bench_script_smoke", &["opentracker", "openssl", "sha1sum"]) {
        return;
    }
    let tmp = TempDir::new("bench-smoke");
    let out = Command::new("timeout")
        .args(["-k", "5", LIMIT_SECS, PYTHON, BENCH_PY, "--smoke"])
        .args(["--shoal", env!("CARGO_BIN_EXE_shoal"), "--tmp-root"])
        .arg(tmp.path())
        .current_dir(tmp.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run timeout /usr/bin/python3 tests/tools/bench.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!(
        "--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "bench.py --smoke: {}\n{all}",
        out.status
    );

    let summary = stdout
        .split_once("shoal bench summary")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no summary printed\n{all}"));
    let header = summary
        .lines()
        .find(|l| l.starts_with("case ") && l.contains("client"))
        .unwrap_or_else(|| panic!("no table header in the summary\n{all}"));
    for column in ["wall s", "MiB/s", "CPU s", "RSS MiB", "anon MiB", "threads"] {
        assert!(header.contains(column), "no {column:?} column\n{all}");
    }
    // The swarm (through opentracker) and the latency proxy, both clients.
    for (case, client) in [
        ("8M/256K", "shoal"),
        ("8M/256K", "libtorrent"),
        ("4M/256K", "shoal"),
        ("4M/256K", "libtorrent"),
    ] {
        assert!(
            row(summary, case, client).is_some(),
            "no {case} row for {client} in the summary\n{all}"
        );
    }
    for tool in ["shoal check", "shoal create", "openssl sha1", "sha1sum"] {
        assert!(
            summary.lines().any(|l| l.starts_with(tool)),
            "no hash row for {tool}\n{all}"
        );
    }
    // Four, and a fifth where aria2c is installed (the swarm's second
    // reference leecher).
    let expected = 4 + u32::from(crate::common::process::on_path("aria2c"));
    let verified = summary
        .split_once("OK: bytes verified in all ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse::<u32>().ok());
    assert!(
        verified == Some(expected),
        "bytes not verified ({expected} downloads)\n{all}"
    );
    // Shown with --nocapture.
    eprintln!("{stdout}");
}
