//! Real peers and trackers for the interop tests: python3-libtorrent
//! through tests/interop/lt.py, and opentracker in whitelist mode, all on
//! 127.0.0.1 (setup facts in ../shared/INTEROP.md). Each runs under
//! `timeout` and is stopped by its PID (common::process::External).
//!
//! A missing tool skips the test loudly, or fails it under `CI=true`
//! ([`tools_present`]).

use super::process::{on_path, tool_works, External};
use super::{free_port, in_ci, wait_until};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

/// Debian's interpreter, the one python3-libtorrent is installed for.
pub const PYTHON: &str = "/usr/bin/python3";
pub const LT_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/lt.py");
/// No helper process lives longer than this, whatever happens.
pub const HELPER_LIMIT: Duration = Duration::from_secs(180);
/// libtorrent checks seed data and announces before it is ready; generous
/// for a loaded CI machine.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Whether the real tools are here (opentracker only if `tracker`).
/// Missing tools skip the test loudly, or fail it under CI=true.
pub fn tools_present(test: &str, tracker: bool) -> bool {
    let commands: &[&str] = if tracker { &["opentracker"] } else { &[] };
    tools_present_with(test, commands)
}

/// python3-libtorrent and these commands on PATH, as [`tools_present`].
pub fn tools_present_with(test: &str, commands: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !tool_works(PYTHON, &["-c", "import libtorrent"]) {
        missing.push("python3-libtorrent (for /usr/bin/python3)");
    }
    missing.extend(commands.iter().filter(|c| !on_path(c)));
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(" and ");
    if in_ci() {
        panic!("{test}: {what} not installed, and CI=true: a missing tool is a failure");
    }
    // Straight to stderr, past the test harness's capture, so that it shows
    // even though the test passes.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {test}: {what} not installed \
         (.ci/run installs them) ***\n"
    );
    false
}

/// An opentracker on 127.0.0.1:PORT (TCP and UDP) in whitelist mode,
/// tracking exactly the given info hashes.
pub struct OpenTracker {
    pub proc: External,
    pub port: u16,
}

impl OpenTracker {
    /// Writes `dir/whitelist` and starts opentracker with `-d dir` (it
    /// chroots there when run as root and drops to `nobody`; as another user
    /// the chroot fails quietly and it runs in `dir`, its working directory,
    /// so the relative whitelist path works either way).
    pub fn start(dir: &Path, port: u16, info_hashes: &[String]) -> OpenTracker {
        std::fs::write(dir.join("whitelist"), info_hashes.join("\n") + "\n").unwrap();
        // opentracker runs as `nobody` after dropping root: it must be able
        // to read the whitelist.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port_s = port.to_string();
        let dir_s = dir.display().to_string();
        let mut proc = External::start(
            "opentracker",
            HELPER_LIMIT,
            "opentracker",
            &[
                "-i",
                "127.0.0.1",
                "-p",
                &port_s,
                "-P",
                &port_s,
                "-d",
                &dir_s,
                "-w",
                "whitelist",
            ],
            dir,
        );
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            proc.stop();
            panic!(
                "opentracker did not listen on 127.0.0.1:{port}\n{}",
                proc.describe()
            );
        }
        OpenTracker { proc, port }
    }

    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }
}

/// A python3-libtorrent peer (lt.py) listening on its own port.
pub struct LtPeer {
    pub proc: External,
    pub port: u16,
}

impl LtPeer {
    /// `lt.py MODE TORRENT DIR PORT EXTRA...` (not waiting for anything).
    pub fn start(
        name: &str,
        mode: &str,
        torrent: &Path,
        dir: &Path,
        extra: &[&str],
        cwd: &Path,
    ) -> LtPeer {
        let port = free_port();
        let (torrent, dir, port_s) = (
            torrent.display().to_string(),
            dir.display().to_string(),
            port.to_string(),
        );
        let mut args = vec![LT_PY, mode, &torrent, &dir, &port_s];
        args.extend_from_slice(extra);
        let proc = External::start(name, HELPER_LIMIT, PYTHON, &args, cwd);
        LtPeer { proc, port }
    }

    /// `lt.py seed TORRENT DATA_DIR PORT`, waiting for `READY` (the data
    /// checked complete and, if the torrent names a tracker, announced).
    pub fn seed(name: &str, torrent: &Path, data_dir: &Path, cwd: &Path) -> LtPeer {
        let mut p = LtPeer::start(name, "seed", torrent, data_dir, &[], cwd);
        p.proc.expect_line("READY", READY_WITHIN);
        p
    }

    /// `lt.py leech TORRENT OUT_DIR PORT EXTRA...`; see [`LtPeer::done`].
    pub fn leech(name: &str, torrent: &Path, out_dir: &Path, extra: &[&str], cwd: &Path) -> LtPeer {
        LtPeer::start(name, "leech", torrent, out_dir, extra, cwd)
    }

    /// Waits for a leecher's `DONE <seconds>` and returns the seconds.
    pub fn done(&mut self, within: Duration) -> f64 {
        let line = self.proc.expect_line("DONE ", within);
        line["DONE ".len()..]
            .trim()
            .parse()
            .expect("DONE <seconds>")
    }

    /// Closes stdin (lt.py's signal to finish) and returns the payload
    /// bytes it says it uploaded and downloaded.
    pub fn finish(&mut self) -> (u64, u64) {
        self.proc.close_stdin();
        let mut figure = |what: &str| -> u64 {
            let line = self.proc.expect_line(what, Duration::from_secs(20));
            line[what.len()..].trim().parse().expect("a byte count")
        };
        let up = figure("UPLOADED ");
        let down = figure("DOWNLOADED ");
        (up, down)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
