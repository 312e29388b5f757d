//! The upload side (issue 4, "Tests: in-process"): `shoal seed` serving
//! `shoal get`; fake leechers built from `shoal::proto::wire` that misbehave on
//! purpose and must be disconnected while others are still served;
//! `cancel`; `get --seed-ratio/--seed-time`; `seed` and `check` on damaged
//! data; the `create` command line.
//!
//! Every `shoal` process runs under `timeout` and is stopped by its PID
//! (common::daemon, common::process); every wait has a deadline.

use crate::common::daemon::Daemon;
use crate::common::peer::{blocks_of, FakePeer, Got};
use crate::common::{
    json_num, json_str, make_torrent, random_bytes, run_get, run_shoal, Behaviour, FakeSeeder, Run,
    TempDir, Torrent,
};
use shoal::proto::wire::{Message, MAX_BLOCK};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Longest a download of a few MiB may take on a loaded 2-core machine.
const GET_WITHIN: Duration = Duration::from_secs(30);
/// A seeder must have dropped a misbehaving peer within this (it takes
/// milliseconds; the margin is for a loaded machine).
const DROP_WITHIN: Duration = Duration::from_secs(5);
/// A well-behaved request is answered within this.
const SERVE_WITHIN: Duration = Duration::from_secs(10);

/// A single-file torrent of `len` random bytes.
fn single(name: &str, seed: u64, len: usize, piece_len: u32) -> Torrent {
    let data = random_bytes(seed, len);
    make_torrent(name, &[("", &data)], piece_len, None, false)
}

/// Bytes of real (non-padding) data in a torrent.
fn real_bytes(t: &Torrent) -> u64 {
    t.files.iter().filter(|f| !f.padding).map(|f| f.len).sum()
}

/// A temp dir with `NAME.torrent`, the data under `src/` and an empty
/// `out/`.
struct Setup {
    tmp: TempDir,
    torrent: PathBuf,
    src: PathBuf,
    out: PathBuf,
}

fn setup(tag: &str, t: &Torrent) -> Setup {
    let tmp = TempDir::new(tag);
    let torrent = t.write_torrent(tmp.path());
    let src = tmp.subdir("src");
    t.write_data(&src);
    let out = tmp.subdir("out");
    Setup {
        tmp,
        torrent,
        src,
        out,
    }
}

impl Setup {
    /// `shoal seed` of `src/`, listening on 127.0.0.1.
    fn seed(&self, extra: &[&str]) -> (Daemon, SocketAddr) {
        Daemon::seed(
            "shoal seed",
            &self.torrent,
            &self.src,
            extra,
            self.tmp.path(),
        )
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

// ---------------------------------------------------------------------------
// shoal seed → shoal get

/// Issue 4: a shoal seeder serves a shoal leecher (multi-file, BEP 47
/// padding, a 0-byte file); the seeder's final event counts the upload.
#[test]
fn shoal_seed_serves_shoal_get() {
    let a = random_bytes(10, 2 * MIB + 4321);
    let b = random_bytes(11, 700_001);
    let c = random_bytes(12, 999);
    let files: &[(&str, &[u8])] = &[
        ("a.bin", &a),
        ("sub/b.bin", &b),
        ("sub/empty.dat", b""),
        ("z.txt", &c),
    ];
    let t = make_torrent("served", files, 64 * KIB as u32, None, true);
    let s = setup("upload-serve", &t);
    let (mut seeder, addr) = s.seed(&[]);
    seeder.expect_event("seeding", Duration::from_secs(10));

    let run = run_get(
        &[
            path_str(&s.torrent),
            "-o".into(),
            path_str(&s.out),
            "--peer".into(),
            addr.to_string(),
            "--json".into(),
        ],
        GET_WITHIN,
    );
    assert_eq!(
        run.code(),
        Some(0),
        "{}\n{}",
        run.describe(),
        seeder.describe()
    );
    t.assert_downloaded(&s.out);

    let uploaded = seeder.stop_seeding();
    eprintln!(
        "upload: {} bytes served in {:.1?}, seeder says uploaded {uploaded}",
        real_bytes(&t),
        run.elapsed
    );
    assert!(
        uploaded >= real_bytes(&t),
        "seeder's final event says uploaded {uploaded}, the torrent holds {} bytes\n{}",
        real_bytes(&t),
        seeder.describe()
    );
}

// ---------------------------------------------------------------------------
// Fake leechers against shoal seed

/// What a misbehaving leecher does before its offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Nothing: the offence is its first message.
    Nothing,
    /// `interested`, then waits for `unchoke` (so only the offence is
    /// wrong, not the timing).
    Unchoked,
}

/// One way to misbehave: (name, setup, the frames of the offence).
type Abuse = (&'static str, Before, Vec<u8>);

fn frames(msgs: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        m.encode(&mut out);
    }
    out
}

fn request(index: u32, begin: u32, length: u32) -> Vec<u8> {
    frames(&[Message::Request {
        index,
        begin,
        length,
    }])
}

/// The table of offences for a torrent: each must cost the connection.
fn abuses(t: &Torrent) -> Vec<Abuse> {
    let n = t.num_pieces();
    let pl = t.piece_len;
    let last_len = t.piece_range(n - 1).len() as u32;
    assert!(last_len < MAX_BLOCK, "the last piece should be short");
    let bf_len = n.div_ceil(8) as usize;
    let mut spare = vec![0u8; bf_len];
    assert!(n % 8 != 0, "the bitfield should have spare bits");
    *spare.last_mut().unwrap() = 1; // the very last bit: past piece n-1
    use Before::*;
    vec![
        (
            "request for the piece past the end",
            Unchoked,
            request(n, 0, MAX_BLOCK),
        ),
        (
            "request for piece u32::MAX",
            Unchoked,
            request(u32::MAX, 0, MAX_BLOCK),
        ),
        (
            "request running past the end of a piece",
            Unchoked,
            request(0, pl - MAX_BLOCK / 2, MAX_BLOCK),
        ),
        (
            "request starting at the end of a piece",
            Unchoked,
            request(1, pl, 1),
        ),
        (
            "request with begin near u32::MAX",
            Unchoked,
            request(0, u32::MAX - 10, MAX_BLOCK),
        ),
        (
            "request past the end of the short last piece",
            Unchoked,
            request(n - 1, 0, MAX_BLOCK),
        ),
        (
            "request of 16 KiB + 1",
            Unchoked,
            request(0, 0, MAX_BLOCK + 1),
        ),
        ("request of 128 KiB", Unchoked, request(0, 0, 128 * 1024)),
        ("request of 0 bytes", Unchoked, request(0, 0, 0)),
        (
            "request while choked (never interested)",
            Nothing,
            request(0, 0, MAX_BLOCK),
        ),
        (
            "bitfield one byte short",
            Nothing,
            frames(&[Message::Bitfield(&vec![0; bf_len - 1])]),
        ),
        (
            "bitfield one byte long",
            Nothing,
            frames(&[Message::Bitfield(&vec![0; bf_len + 1])]),
        ),
        (
            "bitfield with a spare bit set",
            Nothing,
            frames(&[Message::Bitfield(&spare)]),
        ),
        (
            "have_all without the fast extension",
            Nothing,
            frames(&[Message::HaveAll]),
        ),
    ]
}

/// Issue 4: a peer that requests out of range, oversize or while choked,
/// or sends a bitfield of the wrong size, is disconnected, and the seeder
/// keeps serving others: a leecher connected throughout, and a new one
/// after each offence, each verify a whole piece by its SHA-1.
#[test]
fn misbehaving_leechers_are_dropped_and_others_still_served() {
    // Four pieces of 256 KiB and a short fifth: the last piece is shorter
    // than a block, and 5 pieces leave spare bits in the bitfield.
    let t = single("abused.bin", 20, 4 * 256 * KIB + 12_345, 256 * KIB as u32);
    assert_eq!(t.num_pieces(), 5);
    let s = setup("upload-abuse", &t);
    let (mut seeder, addr) = s.seed(&[]);
    seeder.expect_event("seeding", Duration::from_secs(10));

    let mut steady = FakePeer::connect(addr, t.info_hash);
    let bf = steady.expect_bitfield(SERVE_WITHIN);
    assert_eq!(
        bf,
        shoal::proto::bitfield::Bitfield::full(5).as_bytes(),
        "seeder's bitfield"
    );
    steady.interested(SERVE_WITHIN);
    steady.fetch_piece(&t, 0, SERVE_WITHIN);

    let cases = abuses(&t);
    let mut failures = Vec::new();
    for (k, (name, before, offence)) in cases.iter().enumerate() {
        let mut bad = FakePeer::connect(addr, t.info_hash);
        bad.expect_bitfield(SERVE_WITHIN);
        if *before == Before::Unchoked {
            if let Err(e) = bad.try_interested(SERVE_WITHIN) {
                panic!("{name}: {e}\n{}", seeder.describe());
            }
        }
        // A write error means it is closed already, which is fine.
        let _ = bad.send_raw(offence);
        match bad.closed_within(DROP_WITHIN) {
            Ok(after) => eprintln!("{name}: dropped after {after:.1?}"),
            Err(what) => failures.push(format!("{name}: not disconnected: {what}")),
        }
        drop(bad);

        // The others are still served: the leecher connected all along...
        let i = (k as u32 + 1) % t.num_pieces();
        steady.fetch_piece(&t, i, SERVE_WITHIN);
        // ...and a new one.
        let mut good = FakePeer::connect(addr, t.info_hash);
        good.expect_bitfield(SERVE_WITHIN);
        good.interested(SERVE_WITHIN);
        good.fetch_piece(&t, t.num_pieces() - 1 - i, SERVE_WITHIN);
    }
    assert!(
        failures.is_empty(),
        "{} of {} offences were not punished:\n{}\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n"),
        seeder.describe()
    );
    drop(steady);
    seeder.stop_seeding();
}

/// BEP 6 (issue 10): a seeder tells a fast peer `have_all`, gives it the
/// allowed-fast set BEP 6 defines for its address, serves those pieces
/// while it still chokes the peer, rejects any other request instead of
/// dropping the peer, and takes a second bitfield (aria2 sends them).
#[test]
fn a_fast_peer_is_served_its_allowed_pieces_and_told_of_refusals() {
    let t = single("fast.bin", 22, 40 * 16 * KIB, 16 * KIB as u32);
    let s = setup("upload-fast", &t);
    let (mut seeder, addr) = s.seed(&[]);
    seeder.expect_event("seeding", Duration::from_secs(10));
    let mut p = FakePeer::connect_fast(addr, t.info_hash);
    let first = p.next(SERVE_WITHIN);
    assert_eq!(first, Got::Other("have all"), "{}", seeder.describe());
    let ip = addr.ip();
    let expected = shoal::proto::allowed_fast::allowed_fast_set(ip, &t.info_hash, 40, 10);
    let mut allowed = Vec::new();
    while allowed.len() < expected.len() {
        match p.next(SERVE_WITHIN) {
            Got::AllowedFast(i) => allowed.push(i),
            other => panic!("expected allowed_fast, got {}", other.brief()),
        }
    }
    assert_eq!(allowed, expected);
    let refused = (0..40).find(|i| !allowed.contains(i)).unwrap();
    let bits = vec![0u8; 5];
    p.send(&[Message::Bitfield(&bits), Message::Bitfield(&bits)])
        .unwrap();
    // Still choked (never interested): an allowed piece comes, another is
    // refused, and the connection stays.
    for (round, &piece) in allowed.iter().take(2).enumerate() {
        p.send_raw(&request(refused, 0, 16 * KIB as u32)).unwrap();
        let want = Got::Reject {
            index: refused,
            begin: 0,
            length: 16 * KIB as u32,
        };
        assert_eq!(p.next_significant(SERVE_WITHIN), want, "round {round}");
        let data = p.fetch_piece(&t, piece, SERVE_WITHIN);
        assert_eq!(data.len(), 16 * KIB);
    }
    seeder.stop_seeding();
}

/// Issue 4: leechers that come and go do not keep their upload slots. With
/// `--upload-slots 2` (plus one catch-up slot), six leechers in turn connect,
/// get unchoked, fetch a piece and leave; each must be unchoked, so the
/// seeder must have let go of those that left.
#[test]
fn leechers_that_leave_free_their_slots() {
    let t = single("slots.bin", 21, MIB + 3, 256 * KIB as u32);
    let s = setup("upload-slots", &t);
    let (mut seeder, addr) = s.seed(&["--upload-slots", "2"]);
    seeder.expect_event("seeding", Duration::from_secs(10));
    for k in 0..6 {
        let mut l = FakePeer::connect(addr, t.info_hash);
        l.expect_bitfield(SERVE_WITHIN);
        if let Err(e) = l.try_interested(SERVE_WITHIN) {
            panic!(
                "leecher {k} (after {k} that left): {e}\n{}",
                seeder.describe()
            );
        }
        l.fetch_piece(&t, k % t.num_pieces(), SERVE_WITHIN);
    }
    seeder.stop_seeding();
}

/// What one round of [`cancel_round`] saw.
struct CancelRound {
    /// Cancelled blocks that arrived before the uploader's `interested`
    /// (written before it had read the cancels: allowed).
    leaked_before: usize,
    /// Cancelled blocks that arrived after it (must be none).
    leaked_after: Vec<(u32, u32)>,
    /// Blocks requested, not cancelled, that never came (must be none).
    missing: Vec<(u32, u32)>,
    /// Blocks that came more than once (must be none).
    twice: Vec<(u32, u32)>,
}

/// Pieces requested and kept, and requested then cancelled at once.
const KEPT: std::ops::Range<u32> = 0..17;
const CANCELLED: std::ops::Range<u32> = 17..30;

/// One connection to `addr` (a peer that has pieces 0..30 of `t` and
/// lacks 31): asks for pieces 0..30, cancels 17..30 at once, announces
/// `have 31`, asks again for one cancelled block (the sentinel), all in
/// one write, then reads until the sentinel arrives.
fn cancel_round(addr: SocketAddr, t: &Torrent, uploader: &Daemon) -> CancelRound {
    let mut l = FakePeer::connect(addr, t.info_hash);
    l.expect_bitfield(SERVE_WITHIN);
    l.interested(SERVE_WITHIN);
    let req = |i: u32| {
        blocks_of(t, i).map(move |(begin, length)| Message::Request {
            index: i,
            begin,
            length,
        })
    };
    let cancel = |i: u32| {
        blocks_of(t, i).map(move |(begin, length)| Message::Cancel {
            index: i,
            begin,
            length,
        })
    };
    let mut msgs: Vec<Message<'_>> = (KEPT.start..CANCELLED.end).flat_map(req).collect();
    msgs.extend(CANCELLED.flat_map(cancel));
    msgs.push(Message::Have(31));
    let sentinel = (CANCELLED.end - 1, 0);
    msgs.push(Message::Request {
        index: sentinel.0,
        begin: sentinel.1,
        length: MAX_BLOCK,
    });
    l.send(&msgs).expect("send requests and cancels");

    let mut got: HashMap<(u32, u32), u32> = HashMap::new();
    let mut barrier_seen = false;
    let (mut leaked_before, mut leaked_after) = (0, Vec::new());
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match l.next(left) {
            Got::Piece { index, begin, data } => {
                let at = t.piece_range(index).start + begin as usize;
                assert!(
                    data == t.data[at..at + data.len()],
                    "block ({index}, {begin}) has wrong bytes"
                );
                if barrier_seen && (index, begin) == sentinel {
                    break;
                }
                *got.entry((index, begin)).or_default() += 1;
                if CANCELLED.contains(&index) {
                    match barrier_seen {
                        false => leaked_before += 1,
                        true => leaked_after.push((index, begin)),
                    }
                }
            }
            Got::Interested => barrier_seen = true,
            Got::KeepAlive | Got::Have(_) => {}
            other => panic!(
                "waiting for blocks: {} after {} blocks (interested seen: {barrier_seen})\n{}",
                other.brief(),
                got.len(),
                uploader.describe()
            ),
        }
    }
    CancelRound {
        leaked_before,
        leaked_after,
        missing: KEPT
            .flat_map(|i| blocks_of(t, i).map(move |(b, _)| (i, b)))
            .filter(|k| !got.contains_key(k))
            .collect(),
        twice: got
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(k, _)| *k)
            .collect(),
    }
}

/// Issue 4: `cancel` removes a queued request.
///
/// The uploader is a `shoal get` that has 30 of 32 pieces: every connection
/// uploads, and a peer that lacks a piece gives the test a barrier. The
/// leecher's `have 31`, sent right after its cancels, makes the uploader
/// interested; that `interested` is queued behind the cancels, and the
/// uploader writes control messages before blocks, so no block that
/// arrives after it may be a cancelled one. Blocks before it may be: the
/// uploader may have written them before it read the cancels (it is
/// printed); its upload is rate-limited so that the kept pieces take
/// seconds to write and the cancelled ones are still queued when the
/// cancels are read, however busy the machine. A round in which every
/// cancelled block came before the barrier shows nothing, so up to three
/// rounds are run until one shows cancelled blocks dropped.
#[test]
fn cancel_removes_queued_requests() {
    let t = single("cancel.bin", 30, 8 * MIB, 256 * KIB as u32);
    assert_eq!(t.num_pieces(), 32);
    let s = setup("upload-cancel", &t);
    // 30 pieces on disk, the last two zeros.
    let mut partial = t.data.clone();
    let keep = t.piece_range(30).start;
    partial[keep..].fill(0);
    std::fs::write(s.out.join(&t.name), &partial).unwrap();
    let args = [
        "get",
        &path_str(&s.torrent),
        "-o",
        &path_str(&s.out),
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--json",
        // Writing the 17 kept pieces ahead of the cancelled ones then
        // takes two seconds, far longer than taking in the cancels (which
        // arrive with the requests): otherwise loopback buffers let the
        // writer send all 30 pieces before the orchestrator reaches the
        // cancels on a loaded machine.
        "--max-upload-rate",
        "2M",
    ];
    let mut uploader = Daemon::start(
        "shoal get (30 of 32 pieces)",
        Duration::from_secs(120),
        &args,
        s.tmp.path(),
    );
    let addr = uploader.listening(Duration::from_secs(30));
    let checked = uploader.expect_event("checked", Duration::from_secs(30));
    assert_eq!(json_num(&checked, "have"), Some(30.0), "{checked}");

    let cancelled = CANCELLED.len() * 16;
    let mut shown = false;
    for round in 1..=3 {
        let r = cancel_round(addr, &t, &uploader);
        eprintln!(
            "cancel round {round}: of {cancelled} cancelled blocks, {} were sent before the \
             uploader read the cancels, {} after",
            r.leaked_before,
            r.leaked_after.len()
        );
        assert!(
            r.leaked_after.is_empty(),
            "cancelled blocks sent after the cancels were read: {:?}",
            r.leaked_after
        );
        assert!(r.twice.is_empty(), "blocks sent twice: {:?}", r.twice);
        assert!(
            r.missing.is_empty(),
            "requested, not cancelled, never served: {:?}",
            r.missing
        );
        if r.leaked_before < cancelled {
            shown = true;
            break;
        }
    }
    assert!(
        shown,
        "in every round the uploader wrote all {cancelled} cancelled blocks before it read \
         the cancels, so the test could not see cancel work"
    );
    uploader.proc.stop();
}

// ---------------------------------------------------------------------------
// get keeps seeding with --seed-ratio / --seed-time

/// `shoal get --json --bind 127.0.0.1 --port 0 EXTRA` from a fake seeder,
/// as a process that keeps running; returns it once it is seeding.
fn get_then_seed(
    name: &str,
    s: &Setup,
    t: &Torrent,
    from: &FakeSeeder,
    extra: &[&str],
) -> (Daemon, SocketAddr) {
    let mut args = vec![
        "get".to_string(),
        path_str(&s.torrent),
        "-o".into(),
        path_str(&s.out),
        "--peer".into(),
        from.peer_arg(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        "0".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut first = Daemon::start(name, Duration::from_secs(120), &args, s.tmp.path());
    let addr = first.listening(Duration::from_secs(30));
    first.expect_event("seeding", GET_WITHIN);
    t.assert_downloaded(&s.out);
    (first, addr)
}

/// A second `shoal get` into `dir` whose only peer is `addr`.
fn get_from(s: &Setup, dir: &Path, addr: SocketAddr) -> Run {
    run_get(
        &[
            path_str(&s.torrent),
            "-o".into(),
            path_str(dir),
            "--peer".into(),
            addr.to_string(),
            "--json".into(),
        ],
        GET_WITHIN,
    )
}

/// Issue 4: `get --seed-ratio 1` keeps serving after completion; a second
/// get fetches everything from it; then the first has uploaded 1x and exits
/// 0 by itself.
#[test]
fn get_with_seed_ratio_serves_until_the_ratio() {
    let t = single("ratio.bin", 40, 2 * MIB + 777, 64 * KIB as u32);
    let s = setup("upload-ratio", &t);
    let fake = FakeSeeder::start(&t, Behaviour::Good);
    let (mut first, addr) =
        get_then_seed("get --seed-ratio 1", &s, &t, &fake, &["--seed-ratio", "1"]);

    let second_out = s.tmp.subdir("second");
    let run = get_from(&s, &second_out, addr);
    assert_eq!(
        run.code(),
        Some(0),
        "{}\n{}",
        run.describe(),
        first.describe()
    );
    t.assert_downloaded(&second_out);

    let status = first.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the first get should exit 0 once it uploaded 1x ({status:?})\n{}",
        first.describe()
    );
    let up = first.final_uploaded();
    assert!(
        up >= t.total_len(),
        "first get uploaded {up} of {}",
        t.total_len()
    );
}

/// Issue 4: `get --seed-time 4s` keeps serving for 4 s after completion (a
/// second get fetches from it meanwhile), then exits 0 by itself.
#[test]
fn get_with_seed_time_serves_for_that_long() {
    let t = single("time.bin", 41, 2 * MIB + 555, 64 * KIB as u32);
    let s = setup("upload-time", &t);
    let fake = FakeSeeder::start(&t, Behaviour::Good);
    let seed_time = Duration::from_secs(4);
    let (mut first, addr) =
        get_then_seed("get --seed-time 4s", &s, &t, &fake, &["--seed-time", "4s"]);
    let seeding_since = Instant::now();

    let second_out = s.tmp.subdir("second");
    let run = get_from(&s, &second_out, addr);
    assert_eq!(
        run.code(),
        Some(0),
        "{}\n{}",
        run.describe(),
        first.describe()
    );
    t.assert_downloaded(&second_out);

    let status = first.wait_exit(seed_time + Duration::from_secs(10));
    let seeded = seeding_since.elapsed();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the first get should exit 0 after seeding {seed_time:?} ({status:?})\n{}",
        first.describe()
    );
    // It was seeding (slightly) before we saw the event: a second of slack.
    assert!(
        seeded + Duration::from_secs(1) >= seed_time,
        "exited {seeded:.1?} after it started seeding, before --seed-time 4s"
    );
    let up = first.final_uploaded();
    assert!(
        up >= t.total_len(),
        "first get uploaded {up} of {}",
        t.total_len()
    );
}

// ---------------------------------------------------------------------------
// seed and check on damaged data; DATA_PATH forms

/// The message part of an `error: PATH: message` line.
fn message_of(line: &str) -> &str {
    line.rsplit_once(": ").map_or(line, |(_, m)| m)
}

/// Whether `text` has `n` as a whole number (not inside another number).
fn has_number(text: &str, n: u32) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|w| w == n.to_string())
}

/// Flips one byte of the file at `path`.
fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xFF;
    std::fs::write(path, bytes).unwrap();
}

/// `shoal check TORRENT PATH --json`: (exit code, "have", "pieces").
fn check(torrent: &Path, data: &Path) -> (Run, u32, u32) {
    let run = run_shoal(
        &[
            "check".into(),
            path_str(torrent),
            path_str(data),
            "--json".into(),
        ],
        Duration::from_secs(30),
    );
    let line = run
        .stdout
        .lines()
        .find(|l| json_num(l, "have").is_some())
        .unwrap_or_else(|| panic!("no JSON with have from check\n{}", run.describe()))
        .to_string();
    let have = json_num(&line, "have").unwrap() as u32;
    let pieces = json_num(&line, "pieces").unwrap() as u32;
    (run, have, pieces)
}

/// A single-file and a multi-file torrent, each with its data written
/// under `dir/NAME`.
fn two_torrents(dir: &Path) -> Vec<(Torrent, PathBuf)> {
    let one = single("one.bin", 50, MIB + 1000, 64 * KIB as u32);
    let x = random_bytes(51, 300_000);
    let y = random_bytes(52, 123_457);
    let files: &[(&str, &[u8])] = &[("x.bin", &x), ("deep/y.bin", &y), ("deep/e", b"")];
    let tree = make_torrent("tree", files, 32 * KIB as u32, None, false);
    [one, tree]
        .into_iter()
        .map(|t| {
            let torrent = t.write_torrent(dir);
            t.write_data(&dir.join("data"));
            (t, torrent)
        })
        .collect()
}

/// Issue 4: `check` and `seed` accept DATA_PATH as the parent directory or
/// as the torrent's file/folder itself; complete data checks good (exit 0)
/// and seeds.
#[test]
fn check_and_seed_accept_both_data_path_forms() {
    let tmp = TempDir::new("upload-datapath");
    for (t, torrent) in two_torrents(tmp.path()) {
        let parent = tmp.path().join("data");
        for data in [parent.clone(), parent.join(&t.name)] {
            let (run, have, pieces) = check(&torrent, &data);
            assert_eq!(
                run.code(),
                Some(0),
                "check {}\n{}",
                data.display(),
                run.describe()
            );
            assert_eq!(
                (have, pieces),
                (t.num_pieces(), t.num_pieces()),
                "{}",
                run.describe()
            );

            let (mut seeder, addr) = Daemon::seed("shoal seed", &torrent, &data, &[], tmp.path());
            seeder.expect_event("seeding", Duration::from_secs(10));
            let mut l = FakePeer::connect(addr, t.info_hash);
            l.expect_bitfield(SERVE_WITHIN);
            l.interested(SERVE_WITHIN);
            l.fetch_piece(&t, t.num_pieces() - 1, SERVE_WITHIN);
            drop(l);
            seeder.stop_seeding();
        }
    }
}

/// Issue 4: one flipped byte, a truncated file, a missing file: `check`
/// exits 1 and says how many pieces are bad; `seed` refuses to start (exit
/// 1, `error:` saying pieces are missing) and leaves the data as it was.
#[test]
fn check_and_seed_on_damaged_data() {
    let tmp = TempDir::new("upload-damaged");
    for (t, torrent) in two_torrents(tmp.path()) {
        let parent = tmp.path().join("data");
        let first = t.files.iter().find(|f| f.len > 0).unwrap();
        let first_path = t.path_in(&parent, first);
        let pl = t.piece_len as usize;
        let cut = first.len as usize - pl - pl / 2;
        for damage in ["flip", "truncate", "remove"] {
            // Fresh data, then one kind of damage.
            t.write_data(&parent);
            match damage {
                "flip" => flip_byte(&first_path, 3 * pl + 100),
                "truncate" => {
                    let bytes = std::fs::read(&first_path).unwrap();
                    std::fs::write(&first_path, &bytes[..cut]).unwrap();
                }
                _ => std::fs::remove_file(&first_path).unwrap(),
            }
            let bad = (0..t.num_pieces())
                .filter(|&i| !t.piece_on_disk(&parent, i))
                .count() as u32;
            assert!(
                bad >= 1 && (damage == "flip") == (bad == 1),
                "{damage}: {bad} bad"
            );
            let before = std::fs::read(&first_path).ok();
            for data in [parent.clone(), parent.join(&t.name)] {
                let ctx = format!(
                    "{}: {damage}, {bad} bad, DATA_PATH {}",
                    t.name,
                    data.display()
                );
                let (run, have, pieces) = check(&torrent, &data);
                assert_eq!(run.code(), Some(1), "check, {ctx}\n{}", run.describe());
                assert_eq!(
                    (have, pieces),
                    (t.num_pieces() - bad, t.num_pieces()),
                    "check, {ctx}\n{}",
                    run.describe()
                );
                assert!(
                    run.error_lines()
                        .iter()
                        .any(|l| has_number(message_of(l), bad)),
                    "check should say {bad} pieces are bad, {ctx}\n{}",
                    run.describe()
                );

                let run = run_shoal(
                    &[
                        "seed".into(),
                        path_str(&torrent),
                        path_str(&data),
                        "--bind".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        "0".into(),
                    ],
                    Duration::from_secs(30),
                );
                assert_eq!(run.code(), Some(1), "seed, {ctx}\n{}", run.describe());
                assert!(
                    run.error_lines()
                        .iter()
                        .any(|l| l.contains("missing") && has_number(message_of(l), bad)),
                    "seed should say {bad} pieces are missing, {ctx}\n{}",
                    run.describe()
                );
                assert!(
                    std::fs::read(&first_path).ok() == before,
                    "seed changed (or created) {}, {ctx}",
                    first_path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// shoal create

/// Issue 4: `create` of a directory (nested, hidden and 0-byte files) and
/// of a single file: the torrent parses, the printed info hash is the one
/// `info --json` reports, and `check` finds the source data complete.
#[test]
fn create_makes_a_torrent_that_info_and_check_accept() {
    let tmp = TempDir::new("upload-create");
    let pkg = tmp.subdir("pkg");
    std::fs::write(pkg.join("a.bin"), random_bytes(60, 300 * KIB + 1)).unwrap();
    std::fs::create_dir_all(pkg.join("sub/deeper")).unwrap();
    std::fs::write(pkg.join("sub/deeper/b.bin"), random_bytes(61, 70_001)).unwrap();
    std::fs::write(pkg.join(".hidden"), b"hidden files are included\n").unwrap();
    std::fs::write(pkg.join("empty.dat"), b"").unwrap();
    let file = tmp.join("single.iso");
    std::fs::write(&file, random_bytes(62, MIB + 3)).unwrap();

    for (input, piece) in [(&pkg, None), (&file, Some("16K")), (&file, None)] {
        let out = tmp.join("made.torrent");
        let mut args = vec![
            "create".to_string(),
            path_str(input),
            "-t".into(),
            "http://127.0.0.1:6969/announce".into(),
            "-o".into(),
            path_str(&out),
            "--no-date".into(),
        ];
        if let Some(p) = piece {
            args.extend(["--piece-size".into(), p.into()]);
        }
        let run = run_shoal(&args, Duration::from_secs(30));
        run.assert_success();
        let printed = run.stdout.trim();
        assert!(
            printed.len() == 40 && printed.bytes().all(|b| b.is_ascii_hexdigit()),
            "create should print the info hash in hex\n{}",
            run.describe()
        );
        let info = run_shoal(
            &["info".into(), path_str(&out), "--json".into()],
            Duration::from_secs(10),
        );
        info.assert_success();
        assert_eq!(
            json_str(&info.stdout, "info_hash").as_deref(),
            Some(printed),
            "info --json of the created torrent\n{}",
            info.describe()
        );
        if piece.is_some() {
            assert_eq!(json_num(&info.stdout, "piece_length"), Some(16384.0));
        }
        let meta = shoal::proto::metainfo::Metainfo::from_bytes(&std::fs::read(&out).unwrap())
            .expect("the created torrent parses");
        assert_eq!(meta.info_hash.hex(), printed);
        let (run, have, pieces) = check(&out, input.parent().unwrap());
        assert_eq!(run.code(), Some(0), "{}", run.describe());
        assert_eq!(have, pieces);
        let (run, _, _) = check(&out, input);
        assert_eq!(run.code(), Some(0), "{}", run.describe());
    }
}

/// Issue 4: bad piece sizes are bad usage (exit 2); a PATH that does not
/// exist is a failure (exit 1) whose `error:` names it.
#[test]
fn create_refuses_bad_input() {
    let tmp = TempDir::new("upload-create-bad");
    let file = tmp.join("f.bin");
    std::fs::write(&file, random_bytes(63, 100_000)).unwrap();
    let out = tmp.join("never.torrent");
    let create = |path: &Path, extra: &[&str]| {
        let mut args = vec![
            "create".to_string(),
            path_str(path),
            "-t".into(),
            "http://127.0.0.1:6969/announce".into(),
            "-o".into(),
            path_str(&out),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_shoal(&args, Duration::from_secs(30))
    };
    for size in ["3K", "8K", "512M", "48K", "lots"] {
        let run = create(&file, &["--piece-size", size]);
        assert_eq!(
            run.code(),
            Some(2),
            "--piece-size {size} is bad usage (exit 2)\n{}",
            run.describe()
        );
        assert!(
            run.error_lines().iter().any(|l| l.contains("piece size")),
            "--piece-size {size}: the error should name the piece size\n{}",
            run.describe()
        );
        assert!(!out.exists(), "--piece-size {size} wrote a torrent");
    }
    let nowhere = tmp.path().join("no-such-dir");
    let run = create(&nowhere, &[]);
    assert_eq!(run.code(), Some(1), "{}", run.describe());
    assert!(
        run.error_lines()
            .iter()
            .any(|l| l.contains(&path_str(&nowhere))),
        "the error should name {}\n{}",
        nowhere.display(),
        run.describe()
    );
    assert!(!out.exists());
}
