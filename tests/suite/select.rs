//! Selective downloads (issue 14): `--only GLOB` and `--files LIST` fetch
//! only the chosen files; the other files are never created, and their
//! bytes in pieces shared with chosen files are kept in the parts file so
//! those pieces verify; a second run choosing more fetches only what is
//! missing; `check` and `seed` take the same selection.

use crate::common::daemon::Daemon;
use crate::common::{json_num, make_torrent, random_bytes, run_get, run_shoal, TempDir, Torrent};
use std::path::Path;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(60);

/// Four files of odd sizes in 32 KiB pieces, no padding: most pieces
/// straddle two files.
fn torrent() -> Torrent {
    let (a, b, c, d) = (
        random_bytes(80, 100_000),
        random_bytes(81, 70_000),
        random_bytes(82, 50_000),
        random_bytes(83, 30_000),
    );
    let files: &[(&str, &[u8])] = &[
        ("a.bin", &a),
        ("b.bin", &b),
        ("sub/c.dat", &c),
        ("sub/d.bin", &d),
    ];
    make_torrent("sel", files, 32 * 1024, None, false)
}

/// The chosen files are on disk with the right bytes; the others are not.
fn assert_only(t: &Torrent, out: &Path, chosen: &[&str]) {
    for f in &t.files {
        let p = t.path_in(out, f);
        if chosen.contains(&f.path.as_str()) {
            let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            crate::common::assert_same_bytes(t.file_data(f), &got, &p);
        } else {
            assert!(!p.exists(), "{} was created", p.display());
        }
    }
}

fn get(file: &Path, out: &Path, seed: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        seed,
        "--no-listen",
        "--json",
    ];
    args.extend_from_slice(extra);
    run_get(&args, WITHIN)
}

#[test]
fn only_the_chosen_files_are_fetched_and_more_can_follow() {
    let t = torrent();
    let tmp = TempDir::new("select");
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    let (mut seed, addr) = Daemon::seed("shoal seed", &file, &src, &[], tmp.path());
    let peer = addr.to_string();
    let out = tmp.subdir("out");

    let first = get(&file, &out, &peer, &["--only", "sel/b*"]);
    first.assert_success();
    assert_only(&t, &out, &["b.bin"]);
    assert!(
        out.join(".sel.shoal-parts").exists(),
        "boundary bytes are kept aside"
    );
    let done = first
        .stdout
        .lines()
        .find(|l| l.contains("\"done\""))
        .unwrap();
    let fetched = json_num(done, "downloaded").unwrap() as u64;
    assert!(
        fetched < 150_000,
        "fetched {fetched} bytes for a 70,000-byte file"
    );

    // More files: only what is missing comes.
    let second = get(&file, &out, &peer, &["--files", "2,4"]);
    second.assert_success();
    assert_only(&t, &out, &["b.bin", "sub/d.bin"]);
    let done = second
        .stdout
        .lines()
        .find(|l| l.contains("\"done\""))
        .unwrap();
    let fetched = json_num(done, "downloaded").unwrap() as u64;
    assert!(fetched < 100_000, "fetched {fetched} bytes again");

    // A complete download seeded or checked in part uses the files that
    // are there (no parts file needed).
    let full = tmp.subdir("full");
    get(&file, &full, &peer, &[]).assert_success();
    let full_s = full.to_str().unwrap();
    run_shoal(
        &["check", file.to_str().unwrap(), full_s, "--files", "1"],
        WITHIN,
    )
    .assert_success();

    // check and seed take the same selection.
    let (file_s, out_s) = (file.to_str().unwrap(), out.to_str().unwrap());
    run_shoal(&["check", file_s, out_s, "--files", "2,4"], WITHIN).assert_success();
    let whole = run_shoal(&["check", file_s, out_s], WITHIN);
    assert_eq!(whole.code(), Some(1), "{}", whole.describe());
    let (mut partial, partial_addr) =
        Daemon::seed("partial seed", &file, &out, &["--files", "2,4"], tmp.path());
    seed.stop_seeding();
    let again = tmp.subdir("again");
    get(
        &file,
        &again,
        &partial_addr.to_string(),
        &["--only", "sel/sub/d.bin"],
    )
    .assert_success();
    assert_only(&t, &again, &["sub/d.bin"]);
    partial.stop_seeding();
}

/// A partial `shoal seed` (files 2 and 4 of 4) serves a libtorrent
/// leecher that wants only those files.
#[test]
fn a_partial_seed_serves_libtorrent_the_chosen_files() {
    if !crate::common::interop::tools_present(
        "a_partial_seed_serves_libtorrent_the_chosen_files",
        false,
    ) {
        return;
    }
    let t = torrent();
    let tmp = TempDir::new("select-lt");
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    let partial = tmp.subdir("partial");
    let (mut seed, addr) = Daemon::seed("full seed", &file, &src, &[], tmp.path());
    get(&file, &partial, &addr.to_string(), &["--files", "2,4"]).assert_success();
    seed.stop_seeding();
    let (mut seed, addr) = Daemon::seed(
        "partial seed",
        &file,
        &partial,
        &["--files", "2,4"],
        tmp.path(),
    );
    let out = tmp.subdir("lt");
    let peer = addr.to_string();
    let mut lt = crate::common::interop::LtPeer::leech(
        "libtorrent leecher",
        &file,
        &out,
        &["--peer", &peer, "--no-tracker", "--files", "1,3"],
        tmp.path(),
    );
    lt.done(WITHIN);
    for f in t
        .files
        .iter()
        .filter(|f| f.path == "b.bin" || f.path == "sub/d.bin")
    {
        let p = t.path_in(&out, f);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        crate::common::assert_same_bytes(t.file_data(f), &got, &p);
    }
    seed.stop_seeding();
}

#[test]
fn a_selection_of_nothing_or_past_the_end_is_a_usage_error() {
    let t = torrent();
    let tmp = TempDir::new("select-bad");
    let file = t.write_torrent(tmp.path());
    let out = tmp.subdir("out");
    for bad in [
        ["--only", "nothing/*"],
        ["--files", "9"],
        ["--files", "3-1"],
    ] {
        let run = get(&file, &out, "127.0.0.1:9", &bad);
        assert_eq!(run.code(), Some(2), "{bad:?}: {}", run.describe());
    }
    assert!(
        std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing created"
    );
}
