//! `shoal` processes that keep running while a test talks to them (`seed`,
//! `get --seed-*`, `tracker`), and an HTTP scrape to learn when a tracker
//! knows a seeder.
//!
//! Each runs under `timeout` through [`External`], so it dies with the test
//! and is stopped by its PID; its `--json` lines are read as they come.

use super::process::{signal, External};
use super::{json_num, json_str, wait_until};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A running `shoal` subcommand.
pub struct Daemon {
    pub proc: External,
    name: String,
}

impl Daemon {
    /// Starts `shoal ARGS` in `cwd`; it is killed after `limit` whatever
    /// happens.
    pub fn start<S: AsRef<str>>(name: &str, limit: Duration, args: &[S], cwd: &Path) -> Daemon {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        Daemon {
            proc: External::start(name, limit, SHOAL, &args, cwd),
            name: name.to_string(),
        }
    }

    /// [`Daemon::start`] behind `prefix` (`ip netns exec NS`: common::netns).
    pub fn start_in<S: AsRef<str>>(
        name: &str,
        prefix: &[String],
        limit: Duration,
        args: &[S],
        cwd: &Path,
    ) -> Daemon {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        Daemon {
            proc: External::start_in(name, prefix, limit, SHOAL, &args, cwd),
            name: name.to_string(),
        }
    }

    /// `shoal seed TORRENT DATA --bind 127.0.0.1 --port 0 --json EXTRA...`,
    /// waiting until it listens; returns it and its address.
    pub fn seed(
        name: &str,
        torrent: &Path,
        data: &Path,
        extra: &[&str],
        cwd: &Path,
    ) -> (Daemon, SocketAddr) {
        let mut args: Vec<String> = vec![
            "seed".into(),
            torrent.display().to_string(),
            data.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon::start(name, Duration::from_secs(170), &args, cwd);
        let addr = d.listening(Duration::from_secs(30));
        (d, addr)
    }

    /// Waits for `{"event":"NAME",...}` and returns the line (the first one
    /// if it came already); panics with the output if it does not come.
    pub fn expect_event(&mut self, event: &str, within: Duration) -> String {
        self.proc
            .expect_line(&format!("{{\"event\":\"{event}\""), within)
    }

    /// Like [`Daemon::expect_event`], `None` instead of a panic.
    pub fn wait_event(&mut self, event: &str, within: Duration) -> Option<String> {
        self.proc
            .wait_for_line(&format!("{{\"event\":\"{event}\""), within)
    }

    /// The address from the `listening` event (`--json` and a listener).
    pub fn listening(&mut self, within: Duration) -> SocketAddr {
        let line = self.expect_event("listening", within);
        json_str(&line, "addr")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad listening event: {line}", self.name))
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        self.proc.wait(within)
    }

    /// SIGTERM (to the `timeout` wrapper, which passes it on), then waits
    /// up to `within` for the exit; panics with the output if it hangs.
    pub fn terminate(&mut self, within: Duration) -> ExitStatus {
        let asked = Instant::now();
        signal(self.proc.pid(), "TERM");
        match self.proc.wait(within) {
            Some(s) => s,
            None => panic!(
                "{} still running {:.1?} after SIGTERM\n{}",
                self.name,
                asked.elapsed(),
                self.proc.describe()
            ),
        }
    }

    /// The final `done` event (after the process exited, or while it ends).
    pub fn final_event(&mut self) -> String {
        self.expect_event("done", Duration::from_secs(10))
    }

    /// The "uploaded" figure of the final `done` event.
    pub fn final_uploaded(&mut self) -> u64 {
        let line = self.final_event();
        json_num(&line, "uploaded")
            .unwrap_or_else(|| panic!("{}: no uploaded in {line}", self.name)) as u64
    }

    /// Stops a `shoal seed` (or a seeding `get`) with SIGTERM: it must exit
    /// 0, since its data is complete, and print a final `done` event, whose
    /// "uploaded" this returns.
    pub fn stop_seeding(&mut self) -> u64 {
        let status = self.terminate(Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(0),
            "{}: exit status after SIGTERM\n{}",
            self.name,
            self.describe()
        );
        self.final_uploaded()
    }

    pub fn describe(&self) -> String {
        self.proc.describe()
    }

    /// The PID of its `timeout` wrapper.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// `shoal tracker --listen 127.0.0.1:PORT --interval INTERVAL`, waiting
/// until it accepts connections. Returns it and its announce URL.
pub fn shoal_tracker(port: u16, interval: &str, cwd: &Path) -> (Daemon, String) {
    let listen = format!("127.0.0.1:{port}");
    let mut d = Daemon::start(
        "shoal tracker",
        Duration::from_secs(170),
        &["tracker", "--listen", &listen, "--interval", interval],
        cwd,
    );
    let up = wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    if !up {
        d.proc.stop();
        panic!("shoal tracker did not listen on {listen}\n{}", d.describe());
    }
    (d, format!("http://{listen}/announce"))
}

/// One HTTP GET on 127.0.0.1 (HTTP/1.0, the whole answer read): the body,
/// or `None` when there is no answer.
pub fn http_get(port: u16, path_and_query: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(resp[split + 4..].to_vec())
}

/// The `complete` count (seeders) a tracker at 127.0.0.1:PORT reports for
/// the info hash in its BEP 48 scrape, `None` if it says nothing.
pub fn scrape_complete(port: u16, info_hash: &[u8; 20]) -> Option<i64> {
    let q: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let body = http_get(port, &format!("/scrape?info_hash={q}"))?;
    let v = shoal::proto::bencode::decode(&body).ok()?;
    let files = v.get("files")?.as_dict()?;
    let (_, entry) = files.iter().find(|(k, _)| *k == info_hash.as_slice())?;
    entry.get("complete")?.as_int()
}

/// Waits until the tracker at 127.0.0.1:PORT lists at least `seeders`
/// seeders for the torrent (so a peer that announces next will be told
/// about them). False after `within`.
pub fn wait_for_seeders(port: u16, info_hash: &[u8; 20], seeders: i64, within: Duration) -> bool {
    wait_until(within, || {
        scrape_complete(port, info_hash).is_some_and(|n| n >= seeders)
    })
}
