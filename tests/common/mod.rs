//! Test harness shared by the integration tests: temporary directories,
//! deterministic data, torrents built in memory ([`torrent`]), fake peers
//! (one that listens and seeds, [`seeder`]; one that dials and is driven
//! message by message, [`peer`]) and a fake HTTP tracker ([`tracker`]) on
//! 127.0.0.1, external processes that die with the test ([`process`],
//! [`daemon`]), real peers and trackers for interop ([`interop`]), hosts in
//! network namespaces ([`netns`]) and real clients on them ([`clients`]), and
//! running the `shoal` binary with a deadline.
//!
//! Every blocking step here has a deadline, so a hung test fails in seconds
//! and leaves no thread or process behind for long.

pub mod clients;
pub mod daemon;
pub mod interop;
pub mod netns;
pub mod peer;
pub mod process;
pub mod seeder;
pub mod torrent;
pub mod tracker;
pub mod web;

pub use seeder::{Behaviour, FakeSeeder, SeederConfig};
pub use torrent::{make_torrent, Torrent};
pub use tracker::{FakeTracker, TrackerMode};

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A directory under the system temp dir, removed (with its contents) on
/// drop. The name is unique per process, test and call.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "shoal-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self/rel`, with its parent directories created.
    pub fn join(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dir in temp dir");
        }
        p
    }

    /// A new empty subdirectory.
    pub fn subdir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).expect("create dir in temp dir");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// xorshift64*: small and deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero (xorshift would stay at zero), and seeds 0, 1, 2... far apart.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` pseudo-random bytes; the same seed gives the same bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    Rng::new(seed).fill(&mut out);
    out
}

/// A port that was free on 127.0.0.1 for both TCP and UDP a moment ago.
/// (Bound, then released: another process may take it in between, which is
/// rare enough for tests.)
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// An address on 127.0.0.1 where nothing listens (connections are refused).
pub fn dead_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap()
}

/// The outcome of one run of the `shoal` binary.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Exit status and both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), Some(code), "{}", self.describe());
        self
    }

    pub fn assert_success(&self) -> &Run {
        self.assert_code(0)
    }

    /// The `--json` lines whose "event" is `name`.
    pub fn events(&self, name: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| json_str(l, "event").as_deref() == Some(name))
            .collect()
    }

    /// Lines of stderr that start with `error: `.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect()
    }
}

/// Where `"key"` starts a member of the flat JSON object `line`: the rest of
/// the line after the colon, leading spaces skipped.
fn json_value_start<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\"");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let after = line[from + i + pat.len()..].trim_start();
        if let Some(v) = after.strip_prefix(':') {
            return Some(v.trim_start());
        }
        from += i + pat.len();
    }
    None
}

/// A string member of a one-line JSON object (escapes other than `\"` and
/// `\\` are kept as written). Tolerant, not a JSON parser.
pub fn json_str(line: &str, key: &str) -> Option<String> {
    let v = json_value_start(line, key)?.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// A number member of a one-line JSON object.
pub fn json_num(line: &str, key: &str) -> Option<f64> {
    let v = json_value_start(line, key)?;
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(v.len());
    v[..end].parse().ok()
}

/// The strings of an array member, e.g. `"peers":["a","b"]`.
pub fn json_str_array(line: &str, key: &str) -> Option<Vec<String>> {
    let v = json_value_start(line, key)?.strip_prefix('[')?;
    let end = v.find(']')?;
    Some(
        v[..end]
            .split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Kills a child process when dropped, unless it was reaped already.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Arguments for the shoal binary as tests run it: `get` and `seed` get
/// `--no-dht` unless the test is about the DHT (it names
/// `--dht-bootstrap` or `--no-dht` itself), so no test ever asks the
/// public DHT routers; and, unless it runs in a namespace host
/// (`in_namespace`, common::netns: a private bridge that only the test's
/// hosts share), `--no-lsd`, so no test multicasts local discovery
/// announces on the machine's network (shoal has it off on loopback
/// anyway).
pub fn shoal_args<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    in_namespace: bool,
) -> Vec<std::ffi::OsString> {
    let mut full: Vec<std::ffi::OsString> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let session = full.first().is_some_and(|c| {
        c == "get" || c == "seed" || c == "serve" || c.to_string_lossy().ends_with(".torrent")
    });
    let chosen = full
        .iter()
        .any(|a| a == "--dht-bootstrap" || a == "--no-dht");
    if session && !chosen {
        full.push("--no-dht".into());
    }
    if session && !in_namespace {
        full.push("--no-lsd".into());
    }
    full
}

/// Where shoal processes of the tests keep state (the DHT's saved nodes):
/// never the real home directory.
pub fn state_home() -> PathBuf {
    std::env::temp_dir().join("shoal-test-state")
}

/// Runs `shoal ARGS`, waiting at most `deadline`. On the deadline the
/// process is killed and the test panics with what it printed. Both output
/// streams are drained while it runs, so a chatty run never blocks on a full
/// pipe.
pub fn run_shoal<S: AsRef<std::ffi::OsStr>>(args: &[S], deadline: Duration) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(shoal_args(args, false))
        .env("XDG_STATE_HOME", state_home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(std::env::temp_dir())
        .spawn()
        .expect("start shoal");
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let mut guard = KillOnDrop(Some(child));
    let child = guard.0.as_mut().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for shoal") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            guard.0 = None;
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            panic!(
                "shoal {} still running after {deadline:?}: killed\n--- stdout ---\n{stdout}\n\
                 --- stderr ---\n{stderr}",
                args.join(" ")
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    guard.0 = None;
    let elapsed = start.elapsed();
    Run {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    }
}

/// Runs `shoal get ARGS` with a deadline (see [`run_shoal`]). Unless ARGS
/// name a `--port`, a free one is added, so that parallel tests never fight
/// over shoal's default listening port.
pub fn run_get<S: AsRef<std::ffi::OsStr>>(args: &[S], deadline: Duration) -> Run {
    let mut full: Vec<std::ffi::OsString> = vec!["get".into()];
    full.extend(args.iter().map(|a| a.as_ref().to_owned()));
    if !full.iter().any(|a| a == "--port") {
        full.push("--port".into());
        full.push(free_port().to_string().into());
    }
    run_shoal(&full, deadline)
}

/// Reads a pipe to the end on its own thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Every regular file under `root`, as paths relative to it (sorted). A
/// file `root` itself gives one empty path.
pub fn list_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read dir {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut out);
    } else {
        out.push(PathBuf::new());
    }
    out.sort();
    out
}

/// `src` and `dst` (two files, or two directory trees) hold the same files
/// with the same bytes, and `dst` has no file that `src` lacks — so a
/// padding file, which the source tree never has, must not exist in `dst`.
pub fn assert_same_files(src: &Path, dst: &Path) {
    assert!(dst.exists(), "{} was not created", dst.display());
    assert_eq!(
        src.is_dir(),
        dst.is_dir(),
        "{} and {}: one is a directory, the other is not",
        src.display(),
        dst.display()
    );
    let want = list_files(src);
    let got = list_files(dst);
    assert_eq!(
        got,
        want,
        "files under {} differ from those under {}",
        dst.display(),
        src.display()
    );
    for rel in &want {
        // An empty path is the root itself (two single files).
        let under = |root: &Path| match rel.as_os_str().is_empty() {
            true => root.to_path_buf(),
            false => root.join(rel),
        };
        let (a, b) = (under(src), under(dst));
        let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (a_bytes, b_bytes) = (read(&a), read(&b));
        assert_same_bytes(&a_bytes, &b_bytes, &b);
    }
}

/// Equal bytes, or a panic naming the first difference (not a 16 MiB dump).
pub fn assert_same_bytes(want: &[u8], got: &[u8], what: &Path) {
    if want == got {
        return;
    }
    let first = want.iter().zip(got).position(|(a, b)| a != b);
    panic!(
        "{}: {} bytes, expected {}; first difference at byte {:?}",
        what.display(),
        got.len(),
        want.len(),
        first.or(Some(want.len().min(got.len())))
    );
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the interop tests must fail (rather than skip) when a tool is
/// missing: `CI=true` in the environment.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
