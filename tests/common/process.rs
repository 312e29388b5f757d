//! External helper processes (libtorrent via lt.py, opentracker) that cannot
//! outlive the test: each runs under `timeout -k 5 SECS`, and dropping the
//! handle stops it by its PID — SIGTERM to `timeout`, which passes it on to
//! the tool; SIGKILL to both if that is not enough within 3 s.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub struct External {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line seen so far.
    stdout_log: Vec<String>,
    stderr_log: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl External {
    /// Starts `timeout -k 5 SECS PROGRAM ARGS...` in `cwd` with piped stdin,
    /// stdout and stderr.
    pub fn start(
        name: &str,
        limit: Duration,
        program: &str,
        args: &[&str],
        cwd: &Path,
    ) -> External {
        External::start_in::<&str>(name, &[], limit, program, args, cwd)
    }

    /// [`External::start`] behind `prefix`, a command that execs the rest
    /// (`ip netns exec NS`: see common::netns), so that the PID is still
    /// the `timeout` wrapper's.
    pub fn start_in<S: AsRef<str>>(
        name: &str,
        prefix: &[S],
        limit: Duration,
        program: &str,
        args: &[&str],
        cwd: &Path,
    ) -> External {
        let (first, rest) = match prefix.split_first() {
            Some((first, rest)) => (first.as_ref(), rest),
            None => ("timeout", &[][..]),
        };
        let mut cmd = Command::new(first);
        cmd.args(rest.iter().map(AsRef::as_ref));
        if !prefix.is_empty() {
            cmd.arg("timeout");
        }
        if program == crate::common::daemon::SHOAL {
            cmd.env("XDG_STATE_HOME", crate::common::state_home());
        }
        let args = if program == crate::common::daemon::SHOAL {
            crate::common::shoal_args(args, !prefix.is_empty())
        } else {
            args.iter().map(Into::into).collect()
        };
        let mut child = cmd
            .arg("-k")
            .arg("5")
            .arg(limit.as_secs().max(1).to_string())
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({program}): {e}"));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_log = Arc::new(Mutex::new(String::new()));
        let log = Arc::clone(&stderr_log);
        let mut err = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        External {
            name: name.to_string(),
            stdin: child.stdin.take(),
            child,
            lines,
            stdout_log: Vec::new(),
            stderr_log,
            status: None,
        }
    }

    /// The PID of the `timeout` wrapper.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr_log.lock().unwrap().clone()
    }

    /// Stdout lines so far and stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {}): status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name,
            self.pid(),
            self.status,
            self.stdout_log.join("\n"),
            self.stderr()
        )
    }

    /// Waits for a stdout line starting with `prefix` and returns it (the
    /// first such line, if one came already); `None` when the deadline
    /// passes or the process closes stdout first.
    pub fn wait_for_line(&mut self, prefix: &str, deadline: Duration) -> Option<String> {
        if let Some(l) = self.stdout_log.iter().find(|l| l.starts_with(prefix)) {
            return Some(l.clone());
        }
        self.next_line_with(prefix, deadline)
    }

    /// The next stdout line starting with `prefix` that has not been read
    /// yet; `None` when the deadline passes or stdout closes first.
    pub fn next_line_with(&mut self, prefix: &str, deadline: Duration) -> Option<String> {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    self.stdout_log.push(line.clone());
                    if hit {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Like [`External::wait_for_line`], but panics with the process's output
    /// when the line does not come.
    pub fn expect_line(&mut self, prefix: &str, deadline: Duration) -> String {
        match self.wait_for_line(prefix, deadline) {
            Some(l) => l,
            None => panic!(
                "no '{prefix}' line from {} within {deadline:?}\n{}",
                self.name,
                self.describe()
            ),
        }
    }

    /// Closes the process's stdin (lt.py's signal to finish).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `deadline` for the process to exit.
    pub fn wait(&mut self, deadline: Duration) -> Option<ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
                return self.status;
            }
            if Instant::now() > end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process: SIGTERM to the `timeout` wrapper (which passes it
    /// on), then SIGKILL to the wrapper's children and the wrapper after 3 s.
    pub fn stop(&mut self) {
        if self.wait(Duration::ZERO).is_some() {
            return;
        }
        signal(self.pid(), "TERM");
        if self.wait(Duration::from_secs(3)).is_some() {
            return;
        }
        for pid in children(self.pid()) {
            signal(pid, "KILL");
        }
        let _ = self.child.kill();
        self.status = self.child.wait().ok();
    }
}

impl Drop for External {
    fn drop(&mut self) {
        self.stdin = None;
        self.stop();
    }
}

/// Sends a signal with kill(1): one PID, never a name.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The direct children of `pid` (Linux /proc), e.g. the tool that a
/// `timeout` wrapper runs.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether `program args...` runs and exits 0 (a quick presence check).
pub fn tool_works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `name` is an executable file in a `PATH` directory.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(name);
            std::fs::metadata(&p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}
