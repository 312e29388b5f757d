//! `shoal get` against fake seeders and a fake tracker on 127.0.0.1
//! (tests/common): good peers, peers that misbehave on purpose, resume from
//! existing data, and the exit status contract (issue 3, "Tests").
//!
//! Every run of the binary has a deadline (`run_get` kills it and fails the
//! test), every fake peer a lifetime, and every download is checked byte for
//! byte against the source. The `harness_*` tests check the fakes themselves,
//! the seeder through the fake peer that dials it (tests/common/peer.rs).

use crate::common;
use crate::common::peer::{FakePeer, Got};
use crate::common::seeder::SeederStats;
use crate::common::tracker::{query_param, query_param_bytes};
use crate::common::{
    dead_addr, free_port, json_num, json_str_array, make_torrent, random_bytes, run_get, run_shoal,
    Behaviour, FakeSeeder, FakeTracker, Run, SeederConfig, TempDir, Torrent, TrackerMode,
};
use sha1::{Digest, Sha1};
use shoal::proto::bitfield::Bitfield;
use shoal::proto::wire::{self, Message};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Longest any one download may take before the test fails. Loopback
/// downloads of a few MiB take well under a second; this is for a loaded
/// 2-core CI machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// A test's temp dir holding `NAME.torrent` and an empty `out/`.
struct Setup {
    /// Removes everything on drop.
    _tmp: TempDir,
    torrent_path: PathBuf,
    out: PathBuf,
}

fn setup(tag: &str, t: &Torrent) -> Setup {
    let tmp = TempDir::new(tag);
    let torrent_path = t.write_torrent(tmp.path());
    let out = tmp.subdir("out");
    Setup {
        _tmp: tmp,
        torrent_path,
        out,
    }
}

impl Setup {
    /// `shoal get NAME.torrent -o out --json ARGS...`
    fn get(&self, args: &[&str]) -> Run {
        self.get_within(args, DEADLINE)
    }

    fn get_within(&self, args: &[&str], deadline: Duration) -> Run {
        let mut full: Vec<String> = vec![
            self.torrent_path.display().to_string(),
            "-o".into(),
            self.out.display().to_string(),
            "--json".into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        run_get(&full, deadline)
    }
}

/// `--peer ADDR` for each seeder.
fn peer_args(seeders: &[&FakeSeeder]) -> Vec<String> {
    seeders
        .iter()
        .flat_map(|s| ["--peer".to_string(), s.peer_arg()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A download succeeded and the bytes on disk are the torrent's.
fn assert_complete(run: &Run, t: &Torrent, out: &Path) {
    run.assert_success();
    t.assert_downloaded(out);
}

/// The client never asked this seeder for something out of range or that
/// it does not have, and never sent a frame shoal::proto::wire refuses.
fn assert_clean(name: &str, s: &FakeSeeder) {
    let st = s.stats();
    assert_eq!(
        SeederStats::get(&st.bad_requests),
        0,
        "{name}: bad requests: {}",
        st.summary()
    );
    assert_eq!(
        SeederStats::get(&st.protocol_errors),
        0,
        "{name}: malformed frames: {}",
        st.summary()
    );
}

/// A single-file torrent of `len` random bytes.
fn single(name: &str, seed: u64, len: usize, piece_len: u32, announce: Option<&str>) -> Torrent {
    let data = random_bytes(seed, len);
    make_torrent(name, &[("", &data)], piece_len, announce, false)
}

// ---------------------------------------------------------------------------
// Downloads from good peers

/// Issue 3: single-file torrent, odd last piece, one good seeder via --peer.
#[test]
fn single_file_from_one_seeder() {
    let t = single("odd.bin", 1, 3 * MIB + 12345, 256 * KIB as u32, None);
    assert_eq!(t.num_pieces(), 13);
    let s = setup("single", &t);
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    let run = s.get(&strs(&peer_args(&[&seeder])));
    assert_complete(&run, &t, &s.out);
    assert_clean("seeder", &seeder);
    // Each block was asked for once or, in endgame, a few times; never the
    // whole torrent over again.
    let blocks = t.total_len().div_ceil(16 * 1024);
    let requests = seeder.stats().requests();
    assert!(
        requests >= blocks && requests < blocks * 2,
        "{requests} requests for {blocks} blocks: {}",
        seeder.stats().summary()
    );
    let done = run.events("done");
    assert_eq!(done.len(), 1, "one done event\n{}", run.describe());
    let checked = run.events("checked");
    assert!(
        checked
            .iter()
            .any(|l| json_num(l, "have") == Some(0.0) && json_num(l, "pieces") == Some(13.0)),
        "checked event with have 0 of 13\n{}",
        run.describe()
    );
}

/// Issue 3: multi-file with BEP 47 padding, 0-byte files, nested
/// directories, odd sizes. Padding files are never written; 0-byte files and
/// the directory that holds only a 0-byte file are created.
#[test]
fn multi_file_with_padding_and_empty_files() {
    let a = random_bytes(2, 100_001);
    let b = random_bytes(3, 70_000);
    let c = random_bytes(4, 7);
    let d = random_bytes(5, 32 * KIB); // ends exactly on a piece
    let e = random_bytes(6, 12_345);
    let files: &[(&str, &[u8])] = &[
        ("readme.txt", b"hello from shoal's test seeder\n"),
        ("empty.dat", b""),
        ("sub/a.bin", &a),
        ("sub/deeper/b.bin", &b),
        ("sub/deeper/tiny.bin", &c),
        ("only-empty/nothing.dat", b""),
        ("aligned.bin", &d),
        ("z.bin", &e),
    ];
    let t = make_torrent("multi", files, 32 * KIB as u32, None, true);
    assert!(t.files.iter().any(|f| f.padding), "torrent has padding");
    let s = setup("multi", &t);
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    let run = s.get(&strs(&peer_args(&[&seeder])));
    assert_complete(&run, &t, &s.out);
    assert!(s.out.join("multi/empty.dat").is_file());
    assert!(s.out.join("multi/only-empty/nothing.dat").is_file());
    assert!(!s.out.join("multi/.pad").exists(), "no .pad directory");
    assert_clean("seeder", &seeder);
}

/// Issue 10: a peer that joins after our first announce (and never dials
/// us) is found by an early re-announce, not at the tracker's 30-minute
/// interval.
#[test]
fn a_peer_that_joins_later_is_found_by_an_early_announce() {
    let tracker = FakeTracker::start(&[]);
    let t = single(
        "later.bin",
        8,
        MIB,
        64 * KIB as u32,
        Some(&tracker.announce_url()),
    );
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    let s = setup("later", &t);
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            // It joins once we have announced and heard of nobody.
            assert!(tracker.wait_for_event("started", Duration::from_secs(20)));
            tracker.set_peers(&[seeder.addr()]);
        });
        s.get(&[])
    });
    assert_complete(&run, &t, &s.out);
    let requests = tracker.requests();
    assert!(
        requests.len() >= 3,
        "started, an early one, stopped: {requests:#?}"
    );
}

/// Issue 3: peers from the tracker alone. The tracker sees `started` first,
/// `completed` when the data is complete (left=0) and `stopped` on exit.
#[test]
fn tracker_only_announces_started_completed_stopped() {
    let seeder_t = single("via-tracker.bin", 7, MIB + 1, 64 * KIB as u32, None);
    let seeder = FakeSeeder::start(&seeder_t, Behaviour::Good);
    let tracker = FakeTracker::start(&[seeder.addr()]);
    let t = single(
        "via-tracker.bin",
        7,
        MIB + 1,
        64 * KIB as u32,
        Some(&tracker.announce_url()),
    );
    assert_eq!(t.info_hash, seeder_t.info_hash, "announce is outside info");
    let s = setup("tracker", &t);
    let port = free_port().to_string();
    let run = s.get(&["--port", &port]);
    assert_complete(&run, &t, &s.out);
    assert!(
        tracker.wait_for_event("stopped", Duration::from_secs(2)),
        "no event=stopped: {:?}",
        tracker.requests()
    );
    let requests = tracker.requests();
    let events = tracker.events();
    assert_eq!(
        events.first().map(String::as_str),
        Some("started"),
        "{requests:#?}"
    );
    let pos = |e: &str| events.iter().position(|x| x == e);
    let (Some(completed), Some(stopped)) = (pos("completed"), pos("stopped")) else {
        panic!("completed and stopped expected: {requests:#?}");
    };
    assert!(
        completed < stopped,
        "completed before stopped: {requests:#?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("stopped"));
    for line in &requests {
        assert_eq!(
            query_param_bytes(line, "info_hash").as_deref(),
            Some(&t.info_hash[..]),
            "info_hash in {line}"
        );
        assert_eq!(
            query_param(line, "port").as_deref(),
            Some(port.as_str()),
            "{line}"
        );
        assert_eq!(
            query_param_bytes(line, "peer_id").map(|p| p.len()),
            Some(20),
            "{line}"
        );
    }
    let left = |i: usize| query_param(&requests[i], "left");
    assert_eq!(left(0), Some(t.total_len().to_string()), "started: left");
    assert_eq!(left(completed).as_deref(), Some("0"), "completed: left");
    assert!(seeder.stats().requests() > 0);
}

/// Issue 3: two good seeders are both used for a larger torrent.
#[test]
fn two_seeders_both_used() {
    let t = single("big.bin", 8, 16 * MIB, 256 * KIB as u32, None);
    let s = setup("two", &t);
    let a = FakeSeeder::start(&t, Behaviour::Good);
    let b = FakeSeeder::start(&t, Behaviour::Good);
    let run = s.get_within(&strs(&peer_args(&[&a, &b])), Duration::from_secs(45));
    assert_complete(&run, &t, &s.out);
    for (name, seeder) in [("a", &a), ("b", &b)] {
        assert_clean(name, seeder);
        assert!(
            seeder.stats().blocks_sent() > 0,
            "seeder {name} unused: {}",
            seeder.stats().summary()
        );
    }
}

/// Two seeders that each have half the pieces: the client assembles the
/// torrent from both and asks neither for a piece it lacks.
#[test]
fn partial_seeders_complement_each_other() {
    let t = single("halves.bin", 9, 2 * MIB + 777, 128 * KIB as u32, None);
    let n = t.num_pieces();
    let even: Vec<u32> = (0..n).filter(|i| i % 2 == 0).collect();
    let odd: Vec<u32> = (0..n).filter(|i| i % 2 == 1).collect();
    let s = setup("halves", &t);
    let a = FakeSeeder::with(&t, SeederConfig::new(Behaviour::Good).pieces(even));
    let b = FakeSeeder::with(&t, SeederConfig::new(Behaviour::Good).pieces(odd));
    let run = s.get(&strs(&peer_args(&[&a, &b])));
    assert_complete(&run, &t, &s.out);
    assert_clean("even", &a);
    assert_clean("odd", &b);
}

/// Issue 3: a peer that announces its pieces with `have` only (no
/// bitfield) is enough on its own.
#[test]
fn have_only_seeder_alone() {
    let t = single("have-only.bin", 10, MIB + 5, 64 * KIB as u32, None);
    let s = setup("haveonly", &t);
    let seeder = FakeSeeder::start(&t, Behaviour::HaveOnly);
    let run = s.get(&strs(&peer_args(&[&seeder])));
    assert_complete(&run, &t, &s.out);
    assert_clean("have-only", &seeder);
}

// ---------------------------------------------------------------------------
// Misbehaving peers next to a good one. The good seeder waits a second
// before unchoking, so the bad one is certainly tried first.

fn delayed_good(t: &Torrent, delay: Duration) -> FakeSeeder {
    FakeSeeder::with(t, SeederConfig::new(Behaviour::Good).unchoke_delay(delay))
}

/// A 2 MiB torrent of 8 pieces of 256 KiB (16 blocks each).
fn eight_pieces(name: &str, seed: u64) -> Torrent {
    single(name, seed, 2 * MIB, 256 * KIB as u32, None)
}

/// Issue 3: corrupt one piece. The piece fails its hash check, is reported
/// with the peer that sent it, and is fetched again from the good seeder.
#[test]
fn corrupt_piece_is_refetched() {
    let t = eight_pieces("corrupt.bin", 11);
    let s = setup("corrupt", &t);
    let bad = FakeSeeder::start(&t, Behaviour::CorruptPiece(3));
    let good = delayed_good(&t, Duration::from_secs(1));
    let run = s.get(&strs(&peer_args(&[&bad, &good])));
    assert_complete(&run, &t, &s.out);
    let failed = run.events("piece_failed");
    assert!(
        failed.iter().any(|l| json_num(l, "piece") == Some(3.0)
            && json_str_array(l, "peers").is_some_and(|p| p.contains(&bad.peer_arg()))),
        "piece_failed for piece 3 naming {}\n{}",
        bad.peer_arg(),
        run.describe()
    );
    assert!(
        failed.iter().all(|l| json_num(l, "piece") == Some(3.0)),
        "only piece 3 is bad\n{}",
        run.describe()
    );
    assert_clean("corrupt", &bad);
    assert_clean("good", &good);
}

/// Issue 3: a peer that disconnects in the middle of a piece (on every
/// connection); its unfinished blocks go to the good seeder.
#[test]
fn disconnect_mid_piece() {
    let t = eight_pieces("disconnect.bin", 12);
    let s = setup("disconnect", &t);
    let bad = FakeSeeder::start(&t, Behaviour::DisconnectAfterBlocks(5));
    let good = delayed_good(&t, Duration::from_secs(1));
    let run = s.get(&strs(&peer_args(&[&bad, &good])));
    assert_complete(&run, &t, &s.out);
    assert!(
        bad.stats().blocks_sent() >= 5,
        "the disconnecting seeder was used: {}",
        bad.stats().summary()
    );
    assert_clean("disconnecting", &bad);
}

/// Issue 3: a peer that unchokes, sends a few blocks, then chokes for good;
/// the requests outstanding at the choke are re-issued to the good seeder.
#[test]
fn choke_after_unchoke() {
    let t = eight_pieces("choke.bin", 13);
    let s = setup("choke", &t);
    let bad = FakeSeeder::start(&t, Behaviour::ChokeAfterBlocks(5));
    let good = delayed_good(&t, Duration::from_secs(1));
    let run = s.get(&strs(&peer_args(&[&bad, &good])));
    assert_complete(&run, &t, &s.out);
    assert!(
        bad.stats().blocks_sent() >= 5,
        "the choking seeder was used: {}",
        bad.stats().summary()
    );
    assert_clean("choking", &bad);
}

/// Issue 3: a peer that sends garbage after the handshake is dropped.
#[test]
fn garbage_peer_is_dropped() {
    let t = eight_pieces("garbage.bin", 14);
    let s = setup("garbage", &t);
    let bad = FakeSeeder::start(&t, Behaviour::Garbage);
    let good = delayed_good(&t, Duration::from_millis(500));
    let run = s.get(&strs(&peer_args(&[&bad, &good])));
    assert_complete(&run, &t, &s.out);
    assert!(
        SeederStats::get(&bad.stats().handshakes) > 0,
        "the garbage seeder was reached: {}",
        bad.stats().summary()
    );
}

/// Issue 3: a peer that accepts requests and never answers (but sends
/// keep-alives) is dropped after --peer-timeout, before the good seeder has
/// sent anything: the good one unchokes only after 5 s.
#[test]
fn stalled_peer_times_out() {
    let t = eight_pieces("stall.bin", 15);
    let s = setup("stall", &t);
    let bad = FakeSeeder::start(&t, Behaviour::Stall);
    let good = delayed_good(&t, Duration::from_secs(5));
    let run = s.get(&[
        "--peer",
        &bad.peer_arg(),
        "--peer",
        &good.peer_arg(),
        "--peer-timeout",
        "2s",
    ]);
    assert_complete(&run, &t, &s.out);
    let st = bad.stats();
    assert!(
        st.requests() > 0,
        "the staller got requests: {}",
        st.summary()
    );
    let dropped = st.first_close_by_peer_at();
    let first_good_block = good.stats().first_block_at();
    assert!(
        matches!((dropped, first_good_block), (Some(d), Some(g)) if d < g),
        "the stalled peer was dropped (at {dropped:?}) before the good seeder sent data \
         (at {first_good_block:?}): {}\n{}",
        st.summary(),
        run.describe()
    );
}

/// Issue 3: a peer that answers with another info hash is dropped before
/// anything is requested from it.
#[test]
fn wrong_info_hash_peer_is_dropped() {
    let t = eight_pieces("wronghash.bin", 16);
    let s = setup("wronghash", &t);
    let bad = FakeSeeder::start(&t, Behaviour::WrongInfoHash);
    let good = delayed_good(&t, Duration::from_secs(1));
    let run = s.get(&strs(&peer_args(&[&bad, &good])));
    assert_complete(&run, &t, &s.out);
    let st = bad.stats();
    assert!(SeederStats::get(&st.handshakes) > 0, "{}", st.summary());
    assert_eq!(
        st.requests(),
        0,
        "requests to a wrong-hash peer: {}",
        st.summary()
    );
}

// ---------------------------------------------------------------------------
// Existing data

/// A multi-file torrent whose pieces cross file boundaries (no padding).
fn spanning(name: &str) -> Torrent {
    let a = random_bytes(20, 500_000);
    let b = random_bytes(21, 333_333);
    let c = random_bytes(22, 123_456);
    let files: &[(&str, &[u8])] = &[("a.bin", &a), ("dir/b.bin", &b), ("dir/c.bin", &c)];
    make_torrent(name, files, 64 * KIB as u32, None, false)
}

/// Issue 3: resume from a half-complete directory. Odd pieces are garbage,
/// b.bin is cut short and c.bin is missing; only the pieces that are not
/// intact on disk are requested.
#[test]
fn resume_requests_only_missing_pieces() {
    let t = spanning("resume");
    let s = setup("resume", &t);
    let mut image = t.data.clone();
    for i in (1..t.num_pieces()).step_by(2) {
        let r = t.piece_range(i);
        let junk = random_bytes(100 + u64::from(i), r.len());
        image[r].copy_from_slice(&junk);
    }
    for f in &t.files {
        let p = t.path_in(&s.out, f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let bytes = &image[f.offset as usize..(f.offset + f.len) as usize];
        match f.path.as_str() {
            "a.bin" => std::fs::write(&p, bytes).unwrap(),
            "dir/b.bin" => std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap(),
            _ => {} // c.bin missing
        }
    }
    let present: Vec<u32> = (0..t.num_pieces())
        .filter(|&i| t.piece_on_disk(&s.out, i))
        .collect();
    assert!(
        present.len() >= 4 && present.len() < t.num_pieces() as usize / 2 + 1,
        "{present:?}"
    );
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    let run = s.get(&strs(&peer_args(&[&seeder])));
    assert_complete(&run, &t, &s.out);
    assert_clean("seeder", &seeder);
    let requested = seeder.stats().requested_pieces();
    let missing: Vec<u32> = (0..t.num_pieces())
        .filter(|i| !present.contains(i))
        .collect();
    assert_eq!(
        requested, missing,
        "pieces requested vs. pieces missing on disk (present: {present:?})"
    );
    let checked = run.events("checked");
    assert!(
        checked
            .iter()
            .any(|l| json_num(l, "have") == Some(present.len() as f64)
                && json_num(l, "pieces") == Some(f64::from(t.num_pieces()))),
        "checked event with have {} of {}\n{}",
        present.len(),
        t.num_pieces(),
        run.describe()
    );
}

/// Issue 3: all data already there: exit 0 at once, not one request.
#[test]
fn complete_directory_makes_no_requests() {
    let tracker = FakeTracker::start(&[]);
    let t = {
        let a = random_bytes(30, 200_000);
        let b = random_bytes(31, 1);
        let files: &[(&str, &[u8])] = &[("a.bin", &a), ("e/empty", b""), ("b.bin", &b)];
        make_torrent(
            "done-already",
            files,
            16 * KIB as u32,
            Some(&tracker.announce_url()),
            true,
        )
    };
    let s = setup("complete", &t);
    t.write_data(&s.out);
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    tracker.set_peers(&[seeder.addr()]);
    let run = s.get(&strs(&peer_args(&[&seeder])));
    assert_complete(&run, &t, &s.out);
    assert_eq!(
        seeder.stats().requests(),
        0,
        "requests for complete data: {}",
        seeder.stats().summary()
    );
    let checked = run.events("checked");
    assert!(
        checked
            .iter()
            .any(|l| json_num(l, "have") == json_num(l, "pieces")),
        "checked event with every piece\n{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// Failure and usage

/// `--timeout 3s` with nothing to download from: exit 1 soon after the
/// timeout, with one `error: ` line. "Soon": within 10 s of the start, which
/// is the 3 s timeout, at most 5 s for a last `stopped` announce to a
/// tracker that does not answer, and 2 s of slack for a loaded machine.
fn assert_times_out(run: &Run) {
    run.assert_code(1);
    assert!(
        run.elapsed >= Duration::from_millis(2500) && run.elapsed < Duration::from_secs(10),
        "exit 1 about 3 s in\n{}",
        run.describe()
    );
    assert_eq!(run.error_lines().len(), 1, "{}", run.describe());
}

/// Issue 3: no peers, tracker refuses connections, `--timeout 3s`.
#[test]
fn timeout_with_dead_tracker() {
    let url = format!("http://{}/announce", dead_addr());
    let t = single("nobody.bin", 40, 100_000, 16 * KIB as u32, Some(&url));
    let s = setup("deadtracker", &t);
    let run = s.get_within(&["--timeout", "3s"], Duration::from_secs(20));
    assert_times_out(&run);
}

/// A tracker that accepts and never answers must not hold up the exit.
#[test]
fn timeout_with_hanging_tracker() {
    let tracker = FakeTracker::with_mode(&[], TrackerMode::Hang);
    let t = single(
        "hang.bin",
        41,
        100_000,
        16 * KIB as u32,
        Some(&tracker.announce_url()),
    );
    let s = setup("hangtracker", &t);
    let run = s.get_within(&["--timeout", "3s"], Duration::from_secs(20));
    assert_times_out(&run);
    assert!(!tracker.requests().is_empty(), "the tracker was asked");
}

/// A tracker's `failure reason` is reported as a `tracker_error` event.
#[test]
fn tracker_failure_is_reported() {
    let tracker = FakeTracker::with_mode(&[], TrackerMode::Failure("go away, test".into()));
    let t = single(
        "refused.bin",
        42,
        100_000,
        16 * KIB as u32,
        Some(&tracker.announce_url()),
    );
    let s = setup("failtracker", &t);
    let run = s.get_within(&["--timeout", "3s"], Duration::from_secs(20));
    assert_times_out(&run);
    let errors = run.events("tracker_error");
    assert!(
        errors.iter().any(|l| l.contains("go away, test")
            && common::json_str(l, "tracker").as_deref() == Some(tracker.announce_url().as_str())),
        "tracker_error event with the tracker's URL and message\n{}",
        run.describe()
    );
}

/// Issue 3 / DESIGN: bad usage exits 2 with an `error: ` line; a missing
/// torrent file is a failure (1) that names the file.
#[test]
fn bad_usage_exits_2() {
    let t = single("usage.bin", 43, 1000, 16 * KIB as u32, None);
    let tmp = TempDir::new("usage");
    let torrent = t.write_torrent(tmp.path()).display().to_string();
    let cases: &[&[&str]] = &[
        &["get"],
        &["get", &torrent, "--frobnicate"],
        &["get", &torrent, "--max-peers", "lots"],
        &["get", &torrent, "--timeout", "soon"],
        &["get", &torrent, "--peer-timeout", "-3s"],
        &["get", &torrent, "--port", "70000"],
        &["get", &torrent, "--encryption", "maybe"],
        &["get", &torrent, &torrent],
    ];
    for args in cases {
        let run = run_shoal(args, Duration::from_secs(10));
        assert_eq!(run.code(), Some(2), "shoal {args:?}\n{}", run.describe());
        assert!(
            !run.error_lines().is_empty(),
            "shoal {args:?}: an error line\n{}",
            run.describe()
        );
    }
    let missing = tmp.path().join("no-such.torrent");
    let run = run_get(
        &[
            missing.to_str().unwrap(),
            "-o",
            tmp.path().to_str().unwrap(),
        ],
        Duration::from_secs(10),
    );
    run.assert_code(1);
    assert!(
        run.error_lines()
            .iter()
            .any(|l| l.contains("no-such.torrent")),
        "{}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------
// The harness itself: the fakes checked with the fake peer from
// tests/common/peer.rs.

/// A piece from a fake seeder on 127.0.0.1 comes in milliseconds; this is
/// for a loaded machine.
const PIECE_WITHIN: Duration = Duration::from_secs(5);
/// How long [`harness_misbehaving_seeders_misbehave`] waits for the blocks
/// that a stalling seeder never sends.
const STALL_WAIT: Duration = Duration::from_secs(2);

fn sha1(b: &[u8]) -> [u8; 20] {
    Sha1::digest(b).into()
}

#[test]
fn harness_make_torrent_is_what_shoal_parses() {
    let a = random_bytes(50, 40_000);
    let files: &[(&str, &[u8])] = &[("x/a.bin", &a), ("e", b""), ("b", b"bb")];
    for padding in [false, true] {
        let t = make_torrent(
            "h",
            files,
            16 * KIB as u32,
            Some("http://127.0.0.1:1/a"),
            padding,
        );
        let m = shoal::proto::metainfo::Metainfo::from_bytes(&t.bytes).unwrap();
        assert_eq!(m.info_hash.0, t.info_hash);
        assert_eq!(m.geometry.num_pieces(), t.num_pieces());
        assert_eq!(m.geometry.total_len(), t.total_len());
        assert!(m.multi_file);
        let got: Vec<(String, u64, bool)> = m
            .files
            .iter()
            .map(|f| (f.display_path(), f.length, f.padding))
            .collect();
        let want: Vec<(String, u64, bool)> = t
            .files
            .iter()
            .map(|f| (f.path.clone(), f.len, f.padding))
            .collect();
        assert_eq!(got, want);
        assert_eq!(m.trackers, vec![vec!["http://127.0.0.1:1/a".to_string()]]);
        for i in 0..t.num_pieces() {
            let p = m.geometry.piece(i).unwrap();
            assert_eq!(m.piece_hash(p), sha1(t.piece(i)));
        }
        // 40 000 = 2 pieces + 7232 bytes, padded by 9152 zeros.
        assert_eq!(t.files.iter().any(|f| f.path == ".pad/9152"), padding);
    }
    let single = make_torrent("s.bin", &[("", b"abc")], 16 * KIB as u32, None, true);
    let m = shoal::proto::metainfo::Metainfo::from_bytes(&single.bytes).unwrap();
    assert!(!m.multi_file);
    assert_eq!(m.info_hash.0, single.info_hash);
    assert!(m.trackers.is_empty());
}

#[test]
fn harness_write_data_and_compare() {
    let a = random_bytes(51, 20_000);
    let files: &[(&str, &[u8])] = &[("a", &a), ("d/e", b""), ("d/f", b"f")];
    let t = make_torrent("w", files, 16 * KIB as u32, None, true);
    let tmp = TempDir::new("harness-write");
    let src = t.write_data(&tmp.subdir("src"));
    let dst = t.write_data(&tmp.subdir("dst"));
    t.assert_downloaded(&tmp.path().join("dst"));
    common::assert_same_files(&src, &dst);
    for i in 0..t.num_pieces() {
        assert!(t.piece_on_disk(&tmp.path().join("dst"), i));
    }
    // A padding file on disk is caught.
    let pad = t.files.iter().find(|f| f.padding).unwrap();
    let pad_path = t.path_in(&tmp.path().join("dst"), pad);
    std::fs::create_dir_all(pad_path.parent().unwrap()).unwrap();
    std::fs::write(&pad_path, vec![0; pad.len as usize]).unwrap();
    let caught = std::panic::catch_unwind(|| t.assert_downloaded(&tmp.path().join("dst")));
    assert!(
        caught.is_err(),
        "a padding file on disk must fail the check"
    );
    std::fs::remove_file(&pad_path).unwrap();
    // A changed byte is caught, and the piece is no longer on disk.
    let a_path = tmp.path().join("dst/w/a");
    let mut bytes = std::fs::read(&a_path).unwrap();
    bytes[17_000] ^= 1;
    std::fs::write(&a_path, &bytes).unwrap();
    assert!(std::panic::catch_unwind(|| common::assert_same_files(&src, &dst)).is_err());
    assert!(t.piece_on_disk(&tmp.path().join("dst"), 0));
    assert!(!t.piece_on_disk(&tmp.path().join("dst"), 1));
    let path = tmp.path().to_path_buf();
    drop(tmp);
    assert!(!path.exists(), "TempDir removes itself");
}

#[test]
fn harness_good_seeder_serves_pieces() {
    let t = single("h1.bin", 52, 100_000, 32 * KIB as u32, None);
    let seeder = FakeSeeder::start(&t, Behaviour::Good);
    let mut c = FakePeer::connect(seeder.addr(), t.info_hash);
    assert_eq!(c.theirs.info_hash, t.info_hash);
    assert_eq!(
        c.next(Duration::from_secs(2)),
        Got::Bitfield(Bitfield::full(t.num_pieces()).as_bytes().to_vec())
    );
    // Requests before unchoke are dropped.
    c.send(&[Message::Request {
        index: 0,
        begin: 0,
        length: 16384,
    }])
    .unwrap();
    c.interested(Duration::from_secs(5));
    for i in [0, t.num_pieces() - 1] {
        let piece = c.fetch_piece(&t, i, PIECE_WITHIN);
        assert_eq!(sha1(&piece), t.hashes[i as usize], "piece {i}");
    }
    let st = seeder.stats();
    assert_eq!(st.requests(), 1 + 2 + 1);
    assert_eq!(SeederStats::get(&st.requests_while_choked), 1);
    assert_eq!(st.requested_pieces(), vec![0, t.num_pieces() - 1]);
    assert_eq!(st.requests_for(0), 3);
    assert_eq!(st.connections(), 1);
    // A bad request closes the connection and is counted.
    c.send(&[Message::Request {
        index: 0,
        begin: 0,
        length: 32768,
    }])
    .unwrap();
    assert_eq!(c.next_significant(Duration::from_secs(2)), Got::Closed);
    assert_eq!(SeederStats::get(&st.bad_requests), 1);
    // A client with the wrong info hash is refused: closed, no handshake.
    let refused = FakePeer::try_connect(seeder.addr(), [9; 20]).map(|p| p.theirs);
    assert_eq!(refused.err(), Some(Got::Closed));
    // Cancel removes a queued request: ask for many blocks slowly, cancel
    // the last before its turn.
    drop(seeder);
    let slow = FakeSeeder::with(
        &t,
        SeederConfig::new(Behaviour::Good).block_delay(Duration::from_millis(100)),
    );
    let mut c = FakePeer::connect(slow.addr(), t.info_hash);
    assert!(matches!(c.next(Duration::from_secs(2)), Got::Bitfield(_)));
    c.interested(Duration::from_secs(5));
    for begin in [0, 16384] {
        c.send(&[Message::Request {
            index: 1,
            begin,
            length: 16384,
        }])
        .unwrap();
    }
    c.send(&[Message::Cancel {
        index: 1,
        begin: 16384,
        length: 16384,
    }])
    .unwrap();
    assert!(matches!(
        c.next_significant(Duration::from_secs(2)),
        Got::Piece {
            index: 1,
            begin: 0,
            ..
        }
    ));
    assert_eq!(c.next_significant(Duration::from_millis(500)), Got::Quiet);
    assert_eq!(SeederStats::get(&slow.stats().cancels), 1);
}

#[test]
fn harness_misbehaving_seeders_misbehave() {
    let t = single("h2.bin", 53, 200_000, 64 * KIB as u32, None);
    let n = t.num_pieces();
    let quiet = Duration::from_millis(300);
    let unchoke = Duration::from_secs(5);

    let s = FakeSeeder::start(&t, Behaviour::CorruptPiece(1));
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    assert!(matches!(c.next(quiet), Got::Bitfield(_)));
    c.interested(unchoke);
    assert_eq!(sha1(&c.fetch_piece(&t, 0, PIECE_WITHIN)), t.hashes[0]);
    let bad = c.fetch_blocks(&t, 1, PIECE_WITHIN).0;
    assert_eq!(bad.len(), t.piece(1).len());
    assert_ne!(sha1(&bad), t.hashes[1]);
    let diff = bad.iter().zip(t.piece(1)).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 4, "one byte per block");

    let s = FakeSeeder::start(&t, Behaviour::DisconnectAfterBlocks(3));
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    c.next(quiet);
    c.interested(unchoke);
    let (got, after) = c.fetch_blocks(&t, 0, PIECE_WITHIN);
    assert_eq!((got.len(), after), (3 * 16384, Some(Got::Closed)));

    let s = FakeSeeder::start(&t, Behaviour::ChokeAfterBlocks(2));
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    c.next(quiet);
    c.interested(unchoke);
    let (got, after) = c.fetch_blocks(&t, 0, PIECE_WITHIN);
    assert_eq!((got.len(), after), (2 * 16384, Some(Got::Choke)));
    assert_eq!(c.next(quiet), Got::Quiet, "queued requests dropped");
    c.send(&[Message::Interested]).unwrap();
    assert_eq!(c.next(quiet), Got::Quiet, "never unchokes again");

    let s = FakeSeeder::start(&t, Behaviour::Garbage);
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    assert!(matches!(
        c.next(quiet),
        Got::Malformed(wire::WireError::FrameTooLarge { .. })
    ));

    let s = FakeSeeder::start(&t, Behaviour::Stall);
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    c.next(quiet);
    c.interested(unchoke);
    let (got, after) = c.fetch_blocks(&t, 0, STALL_WAIT);
    assert_eq!((got.len(), after), (0, Some(Got::Quiet)));
    assert_eq!(s.stats().requests(), 4);
    assert_eq!(c.next(Duration::from_millis(1500)), Got::KeepAlive);

    let s = FakeSeeder::start(&t, Behaviour::WrongInfoHash);
    let c = FakePeer::try_connect(s.addr(), t.info_hash).expect("a handshake");
    assert_ne!(c.theirs.info_hash, t.info_hash);

    let s = FakeSeeder::start(&t, Behaviour::HaveOnly);
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    for i in 0..n {
        assert_eq!(c.next(quiet), Got::Have(i));
    }
    assert_eq!(c.next(quiet), Got::Quiet);

    let s = FakeSeeder::start(&t, Behaviour::Silent);
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    assert_eq!(c.next(quiet), Got::Quiet);

    let s = FakeSeeder::with(
        &t,
        SeederConfig::new(Behaviour::Good).unchoke_delay(Duration::from_millis(500)),
    );
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    c.next(quiet);
    let asked = Instant::now();
    c.interested(unchoke);
    assert!(asked.elapsed() >= Duration::from_millis(450));

    let s = FakeSeeder::with(&t, SeederConfig::new(Behaviour::Good).pieces(vec![1]));
    let mut c = FakePeer::connect(s.addr(), t.info_hash);
    let mut want = Bitfield::new(n);
    want.set(1);
    assert_eq!(c.next(quiet), Got::Bitfield(want.as_bytes().to_vec()));
}

#[test]
fn harness_tracker_answers_and_records() {
    let peers: Vec<SocketAddr> = vec![
        "127.0.0.1:6881".parse().unwrap(),
        "127.0.0.2:1".parse().unwrap(),
    ];
    let tracker = FakeTracker::start(&peers);
    let ask = |event: Option<shoal::proto::tracker::Event>| -> Vec<u8> {
        let a = shoal::proto::tracker::Announce {
            info_hash: shoal::proto::metainfo::InfoHash([0xAB; 20]),
            peer_id: [b'x'; 20],
            port: 7000,
            uploaded: 0,
            downloaded: 0,
            left: 5,
            event,
            numwant: None,
            key: 1,
            tracker_id: None,
            address: None,
        };
        let url = a.url(&tracker.announce_url());
        let target = &url[url.find("/announce").unwrap()..];
        let mut s = TcpStream::connect(tracker.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let at = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        resp.split_off(at + 4)
    };
    let body = ask(Some(shoal::proto::tracker::Event::Started));
    let r = shoal::proto::tracker::parse_response(&body).unwrap();
    assert_eq!(r.peers, peers);
    assert_eq!(r.interval, Some(1800));
    ask(None);
    tracker.set_mode(TrackerMode::Failure("nope".into()));
    let body = ask(Some(shoal::proto::tracker::Event::Stopped));
    assert!(shoal::proto::tracker::parse_response(&body).is_err());
    assert_eq!(tracker.events(), vec!["started", "", "stopped"]);
    let line = &tracker.requests()[0];
    assert_eq!(query_param_bytes(line, "info_hash"), Some(vec![0xAB; 20]));
    assert_eq!(query_param(line, "port").as_deref(), Some("7000"));
}

#[test]
fn harness_run_shoal_reports_and_json_helpers() {
    let run = run_shoal(&["--version"], Duration::from_secs(10));
    run.assert_success();
    assert!(run.stdout.starts_with("shoal "));
    let line = r#"{"event":"piece_failed","piece":3,"peers":["127.0.0.1:1","127.0.0.1:2"]}"#;
    assert_eq!(
        common::json_str(line, "event").as_deref(),
        Some("piece_failed")
    );
    assert_eq!(json_num(line, "piece"), Some(3.0));
    assert_eq!(
        json_str_array(line, "peers"),
        Some(vec!["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()])
    );
    let spaced = r#"{ "event" : "done", "bytes" : 12, "seconds": 0.5 }"#;
    assert_eq!(common::json_str(spaced, "event").as_deref(), Some("done"));
    assert_eq!(json_num(spaced, "seconds"), Some(0.5));
}
