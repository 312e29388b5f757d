//! Nothing lost, nothing vouched for that shoal did not verify (issue 11).

use crate::common::process::{children, signal, External};
use crate::common::{
    json_num, json_str, make_torrent, random_bytes, run_get, wait_until, Behaviour, FakeSeeder,
    SeederConfig, TempDir, Torrent,
};
use shoal::disk::resume;
use shoal::proto::metainfo::Metainfo;
use shoal::proto::wire::Handshake;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// Regression (issue 11, item 1): a data file truncated while `seed` runs
/// used to be blessed at shutdown (resume state stamped with the file's new
/// length), so the next `get` said "all pieces already on disk" and exited
/// 0 with an empty file. Now the seed stops with an error naming the file
/// (it will not serve bytes it did not verify), the resume state vouches
/// for nothing, and the next `get` checks the data.
#[test]
fn a_file_truncated_under_a_seed_is_never_vouched_for() {
    let t = make_torrent(
        "data.bin",
        &[("", &random_bytes(21, 2 << 20))],
        64 * 1024,
        None,
        false,
    );
    let tmp = TempDir::new("truncate-seed");
    let torrent = t.write_torrent(tmp.path());
    let dir = tmp.subdir("data");
    let data = t.write_data(&dir);
    let (torrent, dir_s) = (torrent.to_str().unwrap(), dir.to_str().unwrap());
    let mut seed = External::start(
        "shoal seed",
        Duration::from_secs(60),
        SHOAL,
        &["seed", torrent, dir_s, "--no-listen", "--json"],
        tmp.path(),
    );
    seed.expect_line("{\"event\":\"seeding\"", Duration::from_secs(20));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(0)
        .unwrap();
    // The file watch looks every few seconds; the seed then stops.
    let status = seed.wait(Duration::from_secs(30)).expect("the seed stops");
    assert_eq!(status.code(), Some(1), "{}", seed.describe());
    assert!(
        seed.stderr()
            .contains("truncated or rewritten while shoal ran"),
        "{}",
        seed.describe()
    );
    let run = run_get(
        &[
            torrent,
            "-o",
            dir_s,
            "--no-listen",
            "--json",
            "--timeout",
            "2s",
        ],
        Duration::from_secs(30),
    );
    run.assert_code(1);
    let checked = run.events("checked");
    assert_eq!(
        checked.first().and_then(|l| json_num(l, "have")),
        Some(0.0),
        "{}",
        run.describe()
    );
}

/// Regression (issue 11, item 4): connections that send a valid handshake
/// and then nothing used to fill every peer slot of a seeder (keep-alives
/// would hold them forever), and silent ones every handshake slot, so a
/// real leecher was turned away ("no peer reachable"). Now a newcomer takes
/// the slot of a peer of no use to either side, and the oldest pending
/// handshake makes room for a new one.
#[test]
fn idle_and_silent_floods_do_not_lock_out_a_leecher() {
    let f = FloodedSeed::start("flood-idle");
    let idle: Vec<TcpStream> = (0..30u8)
        .map(|i| {
            let mut s = flood_connect(f.addr).unwrap();
            let hello = Handshake::new(f.t.info_hash, [i; 20], [0; 8]).encode();
            s.write_all(&hello).unwrap();
            s
        })
        .collect();
    let silent: Vec<TcpStream> = (0..100).map(|_| flood_connect(f.addr).unwrap()).collect();
    f.leecher_completes();
    drop((idle, silent));
}

/// Issue 11, item 4: 100 connections that dribble their handshake a byte
/// at a time, and a client that connects, shakes hands and hangs up in a
/// loop, do not keep a real leecher from downloading.
#[test]
fn dribbling_and_reconnecting_floods_do_not_lock_out_a_leecher() {
    let f = FloodedSeed::start("flood-dribble");
    let (addr, info_hash) = (f.addr, f.t.info_hash);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut dribblers: Vec<TcpStream> =
                (0..100).filter_map(|_| flood_connect(addr).ok()).collect();
            let hello = Handshake::new(info_hash, [7; 20], [0; 8]).encode();
            let mut at = 0;
            while !stop.load(Ordering::Relaxed) {
                // One byte per connection per round; cut-off ones reconnect.
                for d in &mut dribblers {
                    if d.write_all(&hello[at % hello.len()..][..1]).is_err() {
                        if let Ok(fresh) = flood_connect(addr) {
                            *d = fresh;
                        }
                    }
                }
                at += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        scope.spawn(|| {
            let mut i = 0u8;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut s) = flood_connect(addr) {
                    let hello = Handshake::new(info_hash, [i; 20], [0; 8]).encode();
                    let _ = s.write_all(&hello);
                }
                i = i.wrapping_add(1);
                // About a thousand a second: a flood, not a CPU benchmark.
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        f.leecher_completes();
        stop.store(true, Ordering::Relaxed);
    });
}

/// A connection from the flooding host, 127.0.0.2 (the leecher is on
/// 127.0.0.1).
fn flood_connect(to: SocketAddr) -> std::io::Result<TcpStream> {
    let flooder = std::net::Ipv4Addr::new(127, 0, 0, 2).into();
    shoal::disk::sys::connect_from(flooder, to, Duration::from_secs(10))
}

/// A `shoal seed` of a 4 MiB torrent on 127.0.0.1 with `--max-peers 10`
/// (and the default 8 per IP), to be flooded from another host.
struct FloodedSeed {
    t: Torrent,
    tmp: TempDir,
    torrent: PathBuf,
    seed: External,
    addr: SocketAddr,
}

impl FloodedSeed {
    fn start(tag: &str) -> FloodedSeed {
        let t = make_torrent(
            "flooded.bin",
            &[("", &random_bytes(23, 4 << 20))],
            64 * 1024,
            None,
            false,
        );
        let tmp = TempDir::new(tag);
        let torrent = t.write_torrent(tmp.path());
        let dir = tmp.subdir("data");
        t.write_data(&dir);
        let mut seed = External::start(
            "shoal seed",
            Duration::from_secs(90),
            SHOAL,
            &[
                "seed",
                torrent.to_str().unwrap(),
                dir.to_str().unwrap(),
                "--bind",
                "127.0.0.1",
                "--port",
                "0",
                "--max-peers",
                "10",
                "--json",
            ],
            tmp.path(),
        );
        let listening = seed.expect_line("{\"event\":\"listening\"", Duration::from_secs(20));
        let addr: SocketAddr = json_str(&listening, "addr").unwrap().parse().unwrap();
        seed.expect_line("{\"event\":\"seeding\"", Duration::from_secs(20));
        FloodedSeed {
            t,
            tmp,
            torrent,
            seed,
            addr,
        }
    }

    /// A real leecher downloads the whole torrent, bytes verified; its time
    /// is printed (`--nocapture`) for the notes.
    fn leecher_completes(&self) {
        let out = self.tmp.subdir("out");
        let start = std::time::Instant::now();
        let run = run_get(
            &[
                self.torrent.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--peer",
                &self.addr.to_string(),
                "--no-listen",
                "--timeout",
                "60s",
            ],
            Duration::from_secs(90),
        );
        run.assert_success();
        eprintln!("flooded leecher: 4 MiB in {:.2?}", start.elapsed());
        self.t.assert_downloaded(&out);
    }
}

impl Drop for FloodedSeed {
    fn drop(&mut self) {
        self.seed.stop();
    }
}

/// `kill -9` at ten instants of a throttled download (issue 11, "keep it
/// tested"): after each, whatever resume state exists vouches only for
/// pieces that are good on disk, and the last restart, from a fast seeder,
/// fetches only the pieces still missing.
#[test]
fn kill_9_at_ten_instants_loses_nothing_vouched_for() {
    let t = make_torrent(
        "killed.bin",
        &[("", &random_bytes(29, 4 << 20))],
        64 * 1024,
        None,
        false,
    );
    let tmp = TempDir::new("kill-9");
    let torrent = t.write_torrent(tmp.path());
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let out = tmp.subdir("out");
    let get = |peer: SocketAddr, name: &str| {
        External::start(
            name,
            Duration::from_secs(60),
            SHOAL,
            &[
                "get",
                torrent.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--peer",
                &peer.to_string(),
                "--no-listen",
                "--json",
            ],
            tmp.path(),
        )
    };
    let on_disk = || {
        (0..t.num_pieces())
            .filter(|&i| t.piece_on_disk(&out, i))
            .count()
    };
    // About 60 ms a piece: the whole download takes ~4 s.
    let slow = FakeSeeder::with(
        &t,
        SeederConfig::new(Behaviour::Good).block_delay(Duration::from_millis(15)),
    );
    // Kill after 1 to 6 more pieces each time (fixed, so a failure repeats).
    let steps = [3, 1, 6, 2, 5, 4, 1, 3, 6, 2];
    for (round, more) in steps.into_iter().enumerate() {
        let target = (on_disk() + more).min(t.num_pieces() as usize - 1);
        let mut run = get(slow.addr(), "shoal get (to be killed)");
        assert!(
            wait_until(Duration::from_secs(30), || on_disk() >= target),
            "round {round}: {}",
            run.describe()
        );
        if let Some(&pid) = children(run.pid()).first() {
            signal(pid, "KILL");
        }
        run.wait(Duration::from_secs(15))
            .expect("exits after kill -9");
        if let Some(claimed) = resume::load(&meta, &out, None) {
            for i in (0..t.num_pieces()).filter(|&i| claimed.get(i)) {
                assert!(
                    t.piece_on_disk(&out, i),
                    "round {round}: resume vouches for bad piece {i}"
                );
            }
        }
    }
    let fast = FakeSeeder::start(&t, Behaviour::Good);
    let mut last = get(fast.addr(), "shoal get (resumed after kills)");
    let checked = last.expect_line("{\"event\":\"checked\"", Duration::from_secs(30));
    let had = json_num(&checked, "have").unwrap_or(0.0) as usize;
    let status = last.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{}", last.describe());
    t.assert_downloaded(&out);
    let fetched = fast.stats().requested_pieces().len();
    assert!(
        fetched <= t.num_pieces() as usize - had,
        "{fetched} pieces fetched again, {had} of {} were already good",
        t.num_pieces()
    );
}
