//! shoal's upload side and `create` against real peers (issue 4, "Interop,
//! in CI"): a python3-libtorrent 2.0 leecher downloads from `shoal seed`,
//! found through opentracker and through `shoal tracker`; libtorrent loads
//! torrents made by `shoal create` with the same info hash, files and
//! pieces, and finds their source data complete.
//!
//! When `/usr/bin/python3 -c 'import libtorrent'` fails or `opentracker` is
//! not on PATH, each test prints `SKIPPED: ...` to stderr and passes —
//! except under `CI=true`, where a missing tool fails the test.
//!
//! Every helper process runs under `timeout` and is stopped by its PID when
//! the test ends, passed or failed (common::process::External).

use crate::common::daemon::{shoal_tracker, wait_for_seeders, Daemon};
use crate::common::interop::{tools_present, LtPeer, OpenTracker, PYTHON};
use crate::common::process::External;
use crate::common::{
    assert_same_files, free_port, list_files, make_torrent, random_bytes, run_shoal, TempDir,
    Torrent,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// How long libtorrent may take to fetch the test torrents from shoal.
const LEECH_WITHIN: Duration = Duration::from_secs(90);
/// The seeder's tracker lists it within this.
const ANNOUNCED_WITHIN: Duration = Duration::from_secs(30);

/// Bytes of real (non-padding) data in a torrent.
fn real_bytes(t: &Torrent) -> u64 {
    t.files.iter().filter(|f| !f.padding).map(|f| f.len).sum()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A libtorrent leecher fetches from `seeder` (found through the torrent's
/// tracker alone) into `out`; returns what libtorrent says it downloaded
/// and the seeder's final upload figure.
fn leech_from_shoal(
    name: &str,
    torrent: &Path,
    out: &Path,
    cwd: &Path,
    seeder: &mut Daemon,
    tracker: &External,
) -> (u64, u64) {
    let mut lt = LtPeer::leech(name, torrent, out, &[], cwd);
    if lt.proc.wait_for_line("DONE ", LEECH_WITHIN).is_none() {
        panic!(
            "libtorrent did not complete within {LEECH_WITHIN:?}\n{}\n{}\n{}",
            lt.proc.describe(),
            seeder.describe(),
            tracker.describe()
        );
    }
    let secs = lt.done(Duration::ZERO);
    let (_, downloaded) = lt.finish();
    let uploaded = seeder.stop_seeding();
    eprintln!("{name}: done in {secs:.1}s, downloaded {downloaded}; shoal uploaded {uploaded}");
    (downloaded, uploaded)
}

/// Issue 4: a libtorrent leecher downloads a multi-file torrent (BEP 47
/// padding, a 0-byte file, odd sizes) from `shoal seed`, both behind
/// opentracker.
#[test]
fn libtorrent_leecher_from_shoal_seed_via_opentracker() {
    let test = "libtorrent_leecher_from_shoal_seed_via_opentracker";
    if !tools_present(test, true) {
        return;
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let big = random_bytes(80, 9 * MIB + 12_345);
    let mid = random_bytes(81, 2 * MIB + 999);
    let small = random_bytes(82, 1000);
    let files: &[(&str, &[u8])] = &[
        ("big.bin", &big),
        ("sub/mid.bin", &mid),
        ("sub/empty.dat", b""),
        ("z.txt", &small),
    ];
    let t = make_torrent("lt-from-shoal", files, 256 * KIB as u32, Some(&url), true);
    let tmp = TempDir::new("interop-up-ot");
    let src = tmp.subdir("src");
    t.write_data(&src);
    let out = tmp.subdir("out");
    let torrent = t.write_torrent(tmp.path());
    let tracker = OpenTracker::start(&tmp.subdir("ot"), port, &[t.info_hash_hex()]);
    assert_eq!(tracker.announce_url(), url);

    let (mut seeder, _) = Daemon::seed("shoal seed", &torrent, &src, &[], tmp.path());
    seeder.expect_event("seeding", Duration::from_secs(30));
    assert!(
        wait_for_seeders(port, &t.info_hash, 1, ANNOUNCED_WITHIN),
        "opentracker never listed shoal seed\n{}\n{}",
        seeder.describe(),
        tracker.proc.describe()
    );
    let (downloaded, uploaded) = leech_from_shoal(
        "libtorrent leecher",
        &torrent,
        &out,
        tmp.path(),
        &mut seeder,
        &tracker.proc,
    );
    t.assert_downloaded(&out);
    assert!(
        downloaded >= real_bytes(&t) && uploaded >= real_bytes(&t),
        "libtorrent downloaded {downloaded}, shoal uploaded {uploaded}, data {}",
        real_bytes(&t)
    );
}

/// A directory to share: nested, hidden and 0-byte files, odd sizes.
fn make_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("a.bin"), random_bytes(seed, 5 * MIB + 7)).unwrap();
    std::fs::write(root.join("sub/b.bin"), random_bytes(seed + 1, 700_001)).unwrap();
    std::fs::write(root.join("sub/deeper/c.txt"), b"deep\n").unwrap();
    std::fs::write(root.join(".hidden"), b"hidden files are shared\n").unwrap();
    std::fs::write(root.join("empty.dat"), b"").unwrap();
}

/// `shoal create PATH -o OUT ARGS...`: the info hash it printed.
fn create(path: &Path, out: &Path, args: &[&str]) -> String {
    let mut full = vec![
        "create".to_string(),
        path_str(path),
        "-o".into(),
        path_str(out),
        "--no-date".into(),
        "-q".into(),
    ];
    full.extend(args.iter().map(|s| s.to_string()));
    let run = run_shoal(&full, Duration::from_secs(60));
    run.assert_success();
    let hash = run.stdout.trim().to_string();
    assert_eq!(
        hash.len(),
        40,
        "create prints the info hash\n{}",
        run.describe()
    );
    hash
}

/// Issue 4, the fleet workflow: `shoal create` of a directory, `shoal
/// tracker`, `shoal seed`; a libtorrent leecher finds the seeder through
/// `shoal tracker` and fetches every file.
#[test]
fn libtorrent_leecher_from_shoal_seed_via_shoal_tracker() {
    let test = "libtorrent_leecher_from_shoal_seed_via_shoal_tracker";
    if !tools_present(test, false) {
        return;
    }
    let tmp = TempDir::new("interop-up-st");
    let src = tmp.subdir("src");
    let tree = src.join("fleet");
    make_tree(&tree, 90);
    let port = free_port();
    let (mut tracker, url) = shoal_tracker(port, "30s", tmp.path());
    let torrent = tmp.path().join("fleet.torrent");
    let hash = create(&tree, &torrent, &["-t", &url, "--piece-size", "64K"]);
    let info_hash: [u8; 20] =
        shoal::proto::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
            .expect("the created torrent parses")
            .info_hash
            .0;
    assert_eq!(shoal::util::hex::encode(&info_hash), hash);

    // DATA_PATH is the folder itself here (the other test gives the parent).
    let (mut seeder, _) = Daemon::seed("shoal seed", &torrent, &tree, &[], tmp.path());
    seeder.expect_event("seeding", Duration::from_secs(30));
    assert!(
        wait_for_seeders(port, &info_hash, 1, ANNOUNCED_WITHIN),
        "shoal tracker never listed shoal seed\n{}\n{}",
        seeder.describe(),
        tracker.describe()
    );
    let out = tmp.subdir("out");
    let (downloaded, uploaded) = leech_from_shoal(
        "libtorrent leecher",
        &torrent,
        &out,
        tmp.path(),
        &mut seeder,
        &tracker.proc,
    );
    tracker.proc.stop();
    assert_same_files(&tree, &out.join("fleet"));
    let size: u64 = list_files(&tree)
        .iter()
        .map(|f| std::fs::metadata(tree.join(f)).unwrap().len())
        .sum();
    assert!(
        downloaded >= size && uploaded >= size,
        "libtorrent downloaded {downloaded}, shoal uploaded {uploaded}, data {size}"
    );
}

/// What libtorrent makes of a .torrent file: one `KEY value` per line
/// (files as `FILE <size> <path>`, padding files left out).
fn libtorrent_reads(torrent: &Path) -> Vec<String> {
    const SCRIPT: &str = r#"
import sys
import libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print("HASH", str(ti.info_hash()))
print("NAME", ti.name())
print("TOTAL", ti.total_size())
print("PIECES", ti.num_pieces())
print("PIECE_LENGTH", ti.piece_length())
print("PRIVATE", int(ti.priv()))
for i in range(fs.num_files()):
    if not fs.file_flags(i) & lt.file_storage.flag_pad_file:
        print("FILE", fs.file_size(i), fs.file_path(i))
for t in ti.trackers():
    print("TRACKER", t.tier, t.url)
for w in ti.web_seeds():
    print("WEB_SEED", w["url"])
print("COMMENT", ti.comment())
"#;
    let out = Command::new("timeout")
        .args(["60", PYTHON, "-c", SCRIPT])
        .arg(torrent)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "libtorrent cannot load {}: {}",
        torrent.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What libtorrent should see: the same lines built from shoal's printed
/// info hash and the source files on disk.
#[allow(clippy::too_many_arguments)]
fn expected(
    hash: &str,
    input: &Path,
    piece_len: u64,
    private: bool,
    trackers: &[&str],
    web_seeds: &[&str],
    comment: &str,
) -> Vec<String> {
    let name = input.file_name().unwrap().to_string_lossy().to_string();
    let mut files: Vec<(PathBuf, u64)> = list_files(input)
        .into_iter()
        .map(|rel| {
            let p = if rel.as_os_str().is_empty() {
                input.to_path_buf()
            } else {
                input.join(&rel)
            };
            let shown = if input.is_dir() {
                Path::new(&name).join(&rel)
            } else {
                PathBuf::from(&name)
            };
            (shown, std::fs::metadata(&p).unwrap().len())
        })
        .collect();
    files.sort();
    let total: u64 = files.iter().map(|f| f.1).sum();
    let mut lines = vec![
        format!("HASH {hash}"),
        format!("NAME {name}"),
        format!("TOTAL {total}"),
        format!("PIECES {}", total.div_ceil(piece_len)),
        format!("PIECE_LENGTH {piece_len}"),
        format!("PRIVATE {}", u8::from(private)),
    ];
    lines.extend(
        files
            .iter()
            .map(|(p, n)| format!("FILE {n} {}", p.display())),
    );
    lines.extend(
        trackers
            .iter()
            .enumerate()
            .map(|(tier, url)| format!("TRACKER {tier} {url}")),
    );
    lines.extend(web_seeds.iter().map(|w| format!("WEB_SEED {w}")));
    lines.push(format!("COMMENT {comment}"));
    lines
}

/// Issue 4: torrents made by `shoal create` — a directory (nested, hidden
/// and 0-byte files; private, two trackers, a web seed, a comment) and a
/// single file (automatic piece size) — load in libtorrent with the info
/// hash shoal printed, the same files, pieces and keys; and libtorrent,
/// seeding from the source data, finds every piece good.
#[test]
fn libtorrent_loads_torrents_made_by_shoal_create() {
    let test = "libtorrent_loads_torrents_made_by_shoal_create";
    if !tools_present(test, false) {
        return;
    }
    let tmp = TempDir::new("interop-create");
    let src = tmp.subdir("src");
    let tree = src.join("pkg");
    make_tree(&tree, 95);
    let single = src.join("image.iso");
    std::fs::write(&single, random_bytes(97, 3 * MIB + 5)).unwrap();

    let a = "http://127.0.0.1:1/announce";
    let b = "http://127.0.0.1:2/announce";
    let ws = "http://127.0.0.1:3/files/";
    let dir_torrent = tmp.path().join("pkg.torrent");
    let hash = create(
        &tree,
        &dir_torrent,
        &[
            "-t",
            a,
            "-t",
            b,
            "--private",
            "--piece-size",
            "32K",
            "--web-seed",
            ws,
            "--comment",
            "made by shoal's tests",
        ],
    );
    let want = expected(
        &hash,
        &tree,
        32 * KIB as u64,
        true,
        &[a, b],
        &[ws],
        "made by shoal's tests",
    );
    assert_eq!(
        libtorrent_reads(&dir_torrent),
        want,
        "{}",
        dir_torrent.display()
    );

    // No tracker: lt.py's seeder is READY once its check finds all pieces.
    let file_torrent = tmp.path().join("image.torrent");
    let hash = create(&single, &file_torrent, &[]);
    let meta = shoal::proto::metainfo::Metainfo::from_bytes(&std::fs::read(&file_torrent).unwrap())
        .expect("the created torrent parses");
    let piece_len = u64::from(meta.geometry.piece_len());
    let want = expected(&hash, &single, piece_len, false, &[], &[], "");
    assert_eq!(
        libtorrent_reads(&file_torrent),
        want,
        "{}",
        file_torrent.display()
    );

    // libtorrent checks the source data against shoal's piece hashes (the
    // directory again without trackers, so that lt.py need not announce).
    let bare = tmp.path().join("pkg-bare.torrent");
    create(&tree, &bare, &["--piece-size", "32K"]);
    for torrent in [&file_torrent, &bare] {
        let name = format!("libtorrent seeding {}", torrent.display());
        let mut lt = LtPeer::seed(&name, torrent, &src, tmp.path());
        let (up, _) = lt.finish();
        assert_eq!(up, 0, "{name}: nobody to upload to");
    }
}
