//! The real-client interop matrix: for each client C in {libtorrent, aria2,
//! Transmission, qBittorrent}, `shoal get` downloads from C seeding, and C
//! downloads from `shoal seed`, for a 32 MiB single-file torrent and a
//! multi-file torrent with BEP 47 padding files and a 0-byte file. Every
//! peer is a host of its own in a network namespace (common::netns), all
//! found through one `shoal tracker` on a host of its own; every client
//! keeps its default uTP and encryption settings (common::clients).
//!
//! Each cell has its own hosts and its own torrent (its name is in the info
//! hash, so no cell's tracker answer names another cell's peer), so cells
//! run concurrently, `MATRIX_JOBS` at once (default 8). A cell prints its
//! time when it ends and, when it fails, why, with the end of both peers'
//! logs; a table of all cells is printed at the end, and the test fails if
//! any cell did. Run it with
//! `cargo test --test tests matrix -- --nocapture`.
//!
//! `MATRIX_KEEP=1` keeps the temp dir (every client's log and data).
//!
//! Not root, or no `ip netns`: the test says SKIPPED and passes, except
//! under `CI=true`. A missing client skips its cells the same way.

use crate::common::clients::{self, Client, Kind, Role};
use crate::common::daemon::Daemon;
use crate::common::netns::{self, Netns};
use crate::common::{in_ci, make_torrent, random_bytes, wait_until, TempDir, Torrent};
use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// A seeder checks its data and announces within this (qBittorrent and
/// Transmission hash 32 MiB on a loaded 2-core machine).
const READY_WITHIN: Duration = Duration::from_secs(90);
/// One transfer, leecher start to done. A healthy cell takes seconds;
/// Transmission unchokes on a 10 s timer. uTP-first clients reach `shoal
/// seed` over uTP; shoal dials TCP.
const TRANSFER_WITHIN: Duration = Duration::from_secs(90);
/// Bytes reach the files soon after a client says it is done (write
/// caches).
const FLUSHED_WITHIN: Duration = Duration::from_secs(15);
/// No shoal process lives longer than this.
const SHOAL_LIMIT: Duration = Duration::from_secs(400);
const TRACKER_PORT: u16 = 6969;
const SHOAL_PORT: u16 = 6881;
/// Log lines shown per process when a cell fails.
const LOG_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// `shoal get` from the client seeding.
    ShoalGets,
    /// The client leeches from `shoal seed`.
    ClientGets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One 32 MiB file.
    Single,
    /// Several files, BEP 47 padding, a 0-byte file.
    Padded,
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    client: Kind,
    direction: Direction,
    shape: Shape,
    /// Hosts in the namespace set: shoal's and the client's.
    shoal_host: usize,
    client_host: usize,
}

impl Cell {
    fn name(&self) -> String {
        let (from, to) = match self.direction {
            Direction::ShoalGets => (self.client.name(), "shoal"),
            Direction::ClientGets => ("shoal", self.client.name()),
        };
        let shape = match self.shape {
            Shape::Single => "32MiB single",
            Shape::Padded => "padded multi",
        };
        format!("{from} -> {to}, {shape}")
    }

    /// Torrent name and directory: unique per cell.
    fn slug(&self) -> String {
        let d = match self.direction {
            Direction::ShoalGets => "get",
            Direction::ClientGets => "seed",
        };
        let s = match self.shape {
            Shape::Single => "single",
            Shape::Padded => "padded",
        };
        format!("m-{}-{d}-{s}", self.client.name())
    }
}

/// The content of both torrents, made once.
struct Data {
    single: Vec<u8>,
    big: Vec<u8>,
    mid: Vec<u8>,
    small: Vec<u8>,
}

impl Data {
    fn new() -> Data {
        Data {
            single: random_bytes(7000, 32 * MIB),
            big: random_bytes(7001, 9 * MIB + 12_345),
            mid: random_bytes(7002, 2 * MIB + 999),
            small: random_bytes(7003, 1000),
        }
    }

    fn torrent(&self, cell: &Cell, url: &str) -> Torrent {
        let name = cell.slug();
        match cell.shape {
            Shape::Single => make_torrent(
                &name,
                &[("", &self.single)],
                256 * KIB as u32,
                Some(url),
                false,
            ),
            Shape::Padded => make_torrent(
                &name,
                &[
                    ("big.bin", &self.big),
                    ("sub/mid.bin", &self.mid),
                    ("sub/empty.dat", b""),
                    ("z.txt", &self.small),
                ],
                256 * KIB as u32,
                Some(url),
                true,
            ),
        }
    }
}

/// What a cell came to: the transfer time and notes, or why it failed.
struct Outcome {
    cell: String,
    secs: Option<f64>,
    result: Result<String, String>,
}

/// What every cell shares.
struct World<'a> {
    net: &'a Netns,
    tmp: &'a Path,
    url: String,
    tracker: SocketAddr,
    data: &'a Data,
}

#[test]
fn matrix() {
    let test = "matrix";
    if !netns::available(test) {
        return;
    }
    let mut missing = Vec::new();
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| match k.missing() {
            None => true,
            Some(what) => {
                missing.push(what);
                false
            }
        })
        .collect();
    if !missing.is_empty() {
        let what = missing.join(", ");
        assert!(
            !in_ci(),
            "{test}: {what} not installed, and CI=true: a missing client is a failure"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {test}: cells of {what}: not installed (.ci/run installs them) ***\n"
        );
    }

    // Host 0 is the tracker; each cell has two more.
    let mut cells = Vec::new();
    for shape in [Shape::Single, Shape::Padded] {
        for direction in [Direction::ShoalGets, Direction::ClientGets] {
            for &client in &kinds {
                let n = cells.len();
                cells.push(Cell {
                    client,
                    direction,
                    shape,
                    shoal_host: 1 + 2 * n,
                    client_host: 2 + 2 * n,
                });
            }
        }
    }
    let net = Netns::new(1 + 2 * cells.len());
    let tmp = TempDir::new("matrix");
    if std::env::var_os("MATRIX_KEEP").is_some() {
        eprintln!("matrix: keeping {} (MATRIX_KEEP)", tmp.path().display());
    }
    let tracker = SocketAddr::from((net.host(0).ip, TRACKER_PORT));
    let listen = tracker.to_string();
    let mut tracker_proc = Daemon::start_in(
        "shoal tracker",
        &net.exec_prefix(0),
        SHOAL_LIMIT,
        &["tracker", "--listen", &listen],
        tmp.path(),
    );
    let up = wait_until(Duration::from_secs(20), || {
        net.connect(0, tracker).is_some()
    });
    assert!(
        up,
        "shoal tracker did not listen on {tracker}\n{}",
        tracker_proc.describe()
    );
    let data = Data::new();
    let world = World {
        net: &net,
        tmp: tmp.path(),
        url: format!("http://{tracker}/announce"),
        tracker,
        data: &data,
    };

    let jobs: usize = std::env::var("MATRIX_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(8);
    let started = Instant::now();
    let queue = Mutex::new(cells.iter().copied().collect::<VecDeque<Cell>>());
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(cells.len()) {
            s.spawn(|| loop {
                let Some(cell) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let outcome = run_cell(&cell, &world);
                match &outcome.result {
                    Ok(note) => eprintln!(
                        "matrix: {}: ok in {:.1} s{}",
                        outcome.cell,
                        outcome.secs.unwrap_or(0.0),
                        note_suffix(note)
                    ),
                    Err(why) => eprintln!("matrix: {}: FAILED\n{why}\n", outcome.cell),
                }
                outcomes.lock().unwrap().push(outcome);
            });
        }
    });
    tracker_proc.proc.stop();
    if std::env::var_os("MATRIX_KEEP").is_some() {
        std::mem::forget(tmp);
    }

    // The table, in the order of the cells.
    let outcomes = outcomes.into_inner().unwrap();
    let mut table = format!(
        "\ninterop matrix ({} cells, {jobs} at once, {:.0} s in all)\n{:<42} {:<6} {:>8}  note\n",
        cells.len(),
        started.elapsed().as_secs_f64(),
        "cell",
        "result",
        "time"
    );
    let mut failed = Vec::new();
    for cell in &cells {
        let name = cell.name();
        let Some(o) = outcomes.iter().find(|o| o.cell == name) else {
            continue;
        };
        let time = o.secs.map_or("-".to_string(), |s| format!("{s:.1} s"));
        let (result, note) = match &o.result {
            Ok(note) => ("ok", note.clone()),
            Err(why) => {
                failed.push(name.clone());
                ("FAIL", why.lines().next().unwrap_or("").to_string())
            }
        };
        table.push_str(&format!("{name:<42} {result:<6} {time:>8}  {note}\n"));
    }
    eprintln!("{table}");
    assert!(
        failed.is_empty(),
        "{} of {} matrix cells failed: {}",
        failed.len(),
        cells.len(),
        failed.join("; ")
    );
}

fn note_suffix(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!(" ({note})")
    }
}

/// Runs one cell; a panic in it (a harness bug) is a failed cell too.
fn run_cell(cell: &Cell, w: &World) -> Outcome {
    let mut secs = None;
    let result =
        catch_unwind(AssertUnwindSafe(|| cell_body(cell, w, &mut secs))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        });
    Outcome {
        cell: cell.name(),
        secs,
        result,
    }
}

fn cell_body(cell: &Cell, w: &World, secs: &mut Option<f64>) -> Result<String, String> {
    let t = w.data.torrent(cell, &w.url);
    let dir = w.tmp.join(cell.slug());
    let (src, out, work) = (dir.join("src"), dir.join("out"), dir.join("client"));
    for d in [&src, &out, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    let torrent = t.write_torrent(&dir);
    t.write_data(&src);
    let mut notes: Vec<String> = Vec::new();
    if cell.direction == Direction::ShoalGets && !cell.client.knows_padding() {
        // Its data as that client has it: it wrote the padding files when
        // it downloaded, and checks them before it seeds.
        for f in t.files.iter().filter(|f| f.padding) {
            let p = t.path_in(&src, f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![0u8; f.len as usize]).unwrap();
            notes.push("seeds padding files as data".to_string());
        }
        notes.dedup();
    }
    let shoal_ip = w.net.host(cell.shoal_host).ip.to_string();
    let shoal_prefix = w.net.exec_prefix(cell.shoal_host);
    let port = SHOAL_PORT.to_string();
    let s = |p: &Path| p.display().to_string();

    match cell.direction {
        Direction::ShoalGets => {
            let start_seeder = || {
                Client::start(
                    cell.client,
                    Role::Seed,
                    w.net,
                    cell.client_host,
                    &torrent,
                    &src,
                    &work,
                )
            };
            let mut seeder = start_seeder();
            let mut listed = wait_listed(w, cell.shoal_host, &t, || {
                seeder.proc.wait(Duration::ZERO).is_some()
            });
            // transmission-cli 3.00 can quit right after it checked the
            // data: its loop ends when a poll sees the torrent stopped,
            // which it is between the check and the restart that follows
            // (cli/cli.c; seen once in a loaded run). Its resume file then
            // vouches for the data, so a second start seeds at once.
            if listed.is_err()
                && cell.client == Kind::Transmission
                && seeder.proc.wait(Duration::ZERO).is_some()
            {
                notes.push("transmission-cli quit after its check; started again".to_string());
                seeder = start_seeder();
                listed = wait_listed(w, cell.shoal_host, &t, || {
                    seeder.proc.wait(Duration::ZERO).is_some()
                });
            }
            if let Err(why) = listed {
                return Err(format!("{why}\n{}", seeder.log(LOG_LINES)));
            }
            if let Some(status) = seeder.proc.wait(Duration::ZERO) {
                return Err(format!(
                    "the seeder exited with {status}\n{}",
                    seeder.log(LOG_LINES)
                ));
            }
            let start = Instant::now();
            let mut get = Logged::new(
                &dir,
                Daemon::start_in(
                    "shoal get",
                    &shoal_prefix,
                    SHOAL_LIMIT,
                    &[
                        "get",
                        &s(&torrent),
                        "-o",
                        &s(&out),
                        "--json",
                        "-vv",
                        "--bind",
                        &shoal_ip,
                        "--port",
                        &port,
                    ],
                    &dir,
                ),
            );
            let logs = |get: &Daemon, seeder: &Client| {
                format!(
                    "{}\n{}",
                    clients::tail(&get.describe(), LOG_LINES),
                    seeder.log(LOG_LINES)
                )
            };
            let status = match get.wait_exit(TRANSFER_WITHIN) {
                Some(status) => status,
                None => {
                    get.proc.stop();
                    return Err(format!(
                        "shoal get not done within {TRANSFER_WITHIN:?}{}\n{}",
                        summary_suffix(&get),
                        logs(&get, &seeder)
                    ));
                }
            };
            *secs = Some(start.elapsed().as_secs_f64());
            if !status.success() {
                return Err(format!(
                    "shoal get exited with {status}{}\n{}",
                    summary_suffix(&get),
                    logs(&get, &seeder)
                ));
            }
            catch_unwind(AssertUnwindSafe(|| t.assert_downloaded(&out)))
                .map_err(|_| format!("shoal's download is wrong\n{}", logs(&get, &seeder)))?;
            notes.extend(peer_summary(&get.describe()));
            Ok(notes.join(", "))
        }
        Direction::ClientGets => {
            let mut seeder = Logged::new(
                &dir,
                Daemon::start_in(
                    "shoal seed",
                    &shoal_prefix,
                    SHOAL_LIMIT,
                    &[
                        "seed",
                        &s(&torrent),
                        &s(&src),
                        "--json",
                        "-vv",
                        "--bind",
                        &shoal_ip,
                        "--port",
                        &port,
                    ],
                    &dir,
                ),
            );
            if seeder.wait_event("seeding", READY_WITHIN).is_none() {
                return Err(format!(
                    "shoal seed not seeding within {READY_WITHIN:?}\n{}",
                    clients::tail(&seeder.describe(), LOG_LINES)
                ));
            }
            let exited = || seeder.proc.wait(Duration::ZERO).is_some();
            if let Err(why) = wait_listed(w, cell.client_host, &t, exited) {
                return Err(format!(
                    "{why}\n{}",
                    clients::tail(&seeder.describe(), LOG_LINES)
                ));
            }
            let start = Instant::now();
            let mut leecher = Client::start(
                cell.client,
                Role::Leech,
                w.net,
                cell.client_host,
                &torrent,
                &out,
                &work,
            );
            let logs = |leecher: &Client, seeder: &Daemon| {
                format!(
                    "{}\n{}",
                    leecher.log(LOG_LINES),
                    clients::tail(&seeder.describe(), LOG_LINES)
                )
            };
            if let Err(why) = leecher.wait_done(w.net, TRANSFER_WITHIN) {
                return Err(format!(
                    "{why}{}\n{}",
                    summary_suffix(&seeder),
                    logs(&leecher, &seeder)
                ));
            }
            *secs = Some(start.elapsed().as_secs_f64());
            let mut last = Err(String::new());
            wait_until(FLUSHED_WITHIN, || {
                last = client_download(&t, &out);
                last.is_ok()
            });
            let mut notes = vec![last.map_err(|why| {
                format!(
                    "{} says done, but {why}\n{}",
                    cell.client.name(),
                    logs(&leecher, &seeder)
                )
            })?];
            notes.extend(peer_summary(&seeder.describe()));
            notes.retain(|n| !n.is_empty());
            Ok(notes.join(", "))
        }
    }
}

/// What shoal's `-vv` log says about its peers, for the table: why it
/// dropped any (other than the ordinary ends: both seeds, closed by the
/// other side), or that no peer ever finished a handshake with it.
fn peer_summary(log: &str) -> Option<String> {
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for line in log.lines() {
        let Some((_, reason)) = line.split_once(") gone: ") else {
            continue;
        };
        if reason == "both seeds" || reason == "closed" {
            continue;
        }
        match reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => reasons.push((reason.to_string(), 1)),
        }
    }
    if !reasons.is_empty() {
        let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
        return Some(format!("shoal dropped the peer: {}", list.join("; ")));
    }
    // The extension handshake is logged once a peer is through the
    // BitTorrent handshake.
    let met = log
        .lines()
        .any(|l| l.contains("shoal::engine::torrent] peer ") && l.contains(" is "));
    (!met).then(|| "no peer finished a handshake with shoal".to_string())
}

fn summary_suffix(shoal: &Daemon) -> String {
    peer_summary(&shoal.describe()).map_or(String::new(), |s| format!(" ({s})"))
}

/// A shoal process whose whole output is saved as `DIR/shoal.log` when it
/// is dropped (kept with `MATRIX_KEEP`).
struct Logged {
    daemon: Daemon,
    path: std::path::PathBuf,
}

impl Logged {
    fn new(dir: &Path, daemon: Daemon) -> Logged {
        Logged {
            daemon,
            path: dir.join("shoal.log"),
        }
    }
}

impl std::ops::Deref for Logged {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for Logged {
    fn deref_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.daemon.proc.stop();
        let _ = std::fs::write(&self.path, self.daemon.describe());
    }
}

/// Waits until the tracker lists the torrent's seeder (asked from `from`),
/// or the seeder exits (`exited()`).
fn wait_listed(
    w: &World,
    from: usize,
    t: &Torrent,
    mut exited: impl FnMut() -> bool,
) -> Result<(), String> {
    let mut gone = false;
    let listed = wait_until(READY_WITHIN, || {
        gone = exited();
        gone || clients::scrape_complete(w.net, from, w.tracker, &t.info_hash)
            .is_some_and(|n| n >= 1)
    });
    match (listed, gone) {
        (true, false) => Ok(()),
        (_, true) => Err("the seeder exited before the tracker listed it".to_string()),
        (false, false) => Err(format!(
            "the tracker did not list the seeder within {READY_WITHIN:?}"
        )),
    }
}

/// Checks a client's download in `out`: every non-empty file has exactly
/// its bytes. What is the client's own business is a note, not a failure:
/// a 0-byte file not created (Transmission), padding files written (clients
/// without BEP 47 support).
fn client_download(t: &Torrent, out: &Path) -> Result<String, String> {
    let mut notes: Vec<&str> = Vec::new();
    for f in &t.files {
        let p = t.path_in(out, f);
        if f.padding {
            if p.exists() && !notes.contains(&"wrote padding files") {
                notes.push("wrote padding files");
            }
            continue;
        }
        if f.len == 0 {
            if !p.exists() {
                notes.push("no 0-byte file");
            }
            continue;
        }
        let got = std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        if got != t.file_data(f) {
            let first = got.iter().zip(t.file_data(f)).position(|(a, b)| a != b);
            return Err(format!(
                "{}: {} bytes, expected {}; first difference at {:?}",
                p.display(),
                got.len(),
                f.len,
                first
            ));
        }
    }
    Ok(notes.join(", "))
}

/// The namespace guard itself: hosts reach each other on their addresses
/// (a socket opened by `in_host` lives in that host), and every namespace
/// is gone after the guard is dropped, also by a panic.
#[test]
fn netns_hosts_talk_and_vanish_on_drop() {
    if !netns::available("netns_hosts_talk_and_vanish_on_drop") {
        return;
    }
    let names = |net: &Netns| -> Vec<String> {
        let mut v: Vec<String> = (0..net.len()).map(|i| net.host(i).ns.clone()).collect();
        v.push(format!("shoal-sw-{}", net.subnet()));
        v
    };
    let listed = || {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let exists = |name: &str| {
        listed()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };

    let net = Netns::new(3);
    let ip = net.host(1).ip;
    assert_eq!(ip.octets()[..3], [10, 77, net.subnet()]);
    let listener = net.in_host(1, move || std::net::TcpListener::bind((ip, 0)).unwrap());
    let addr = listener.local_addr().unwrap();
    let mut conn = net.connect(2, addr).expect("host 2 reaches host 1");
    let (mut accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), net.host(2).ip);
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    std::io::Read::read_exact(&mut accepted, &mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    // Nothing on 10.77.S.x answers from the root namespace: the hosts are
    // on their own switch.
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "the root namespace reached a namespace host"
    );
    let made = names(&net);
    assert!(
        made.iter().all(|n| exists(n)),
        "{made:?} not all in {}",
        listed()
    );
    drop((conn, accepted, listener));
    drop(net);
    assert!(
        !made.iter().any(|n| exists(n)),
        "{made:?} left in {}",
        listed()
    );

    let net = Netns::new(2);
    let made = names(&net);
    catch_unwind(AssertUnwindSafe(|| {
        let _net = net;
        panic!("a failing test (on purpose: the guard must clean up)");
    }))
    .unwrap_err();
    assert!(
        !made.iter().any(|n| exists(n)),
        "{made:?} left after a panic"
    );
}
