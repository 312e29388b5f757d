//! MSE/PE (`--encryption`) against python3-libtorrent 2.0 both ways, with
//! libtorrent forced to each policy: plaintext only (`pe_disabled`),
//! either (`pe_enabled`, its default) and RC4 only (`pe_forced`,
//! `allowed_enc_level` rc4); and shoal against shoal with `require`. The
//! bytes are compared every time, and shoal's log says which stream each
//! connection used where the policies leave one choice.
//!
//! When `/usr/bin/python3 -c 'import libtorrent'` fails, the libtorrent
//! tests print `SKIPPED: ...` to stderr and pass — except under `CI=true`,
//! where a missing tool fails the test. Every helper process runs under
//! `timeout` and is stopped by its PID (common::process::External).

use crate::common::daemon::Daemon;
use crate::common::interop::{tools_present, LtPeer};
use crate::common::{assert_same_files, make_torrent, random_bytes, run_get, TempDir, Torrent};
use std::path::PathBuf;
use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const WITHIN: Duration = Duration::from_secs(90);

/// The log line shoal writes (at -vv) when a handshake is done.
fn stream_line(kind: &str) -> String {
    format!("handshake done, {kind}")
}

/// (libtorrent's `--enc`, shoal's `--encryption`, the stream the two must
/// agree on, if only one is possible).
const CASES: [(&str, &str, Option<&str>); 5] = [
    ("disabled", "prefer", Some("plaintext")),
    ("enabled", "prefer", None),
    ("forced", "prefer", Some("RC4")),
    ("forced", "require", Some("RC4")),
    ("disabled", "off", Some("plaintext")),
];

struct Setup {
    tmp: TempDir,
    t: Torrent,
    src: PathBuf,
    torrent: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let data = random_bytes(4242, 3 * MIB + 4321);
    let t = make_torrent(tag, &[("", &data)], 256 * KIB as u32, None, false);
    let tmp = TempDir::new(tag);
    let src = tmp.subdir("src");
    t.write_data(&src);
    let torrent = t.write_torrent(tmp.path());
    Setup {
        tmp,
        t,
        src,
        torrent,
    }
}

/// shoal dials a libtorrent seeder (shoal's outbound MSE, and under
/// `prefer` against `disabled`, its plaintext retry).
#[test]
fn shoal_gets_from_libtorrent_under_each_encryption_policy() {
    let test = "shoal_gets_from_libtorrent_under_each_encryption_policy";
    if !tools_present(test, false) {
        return;
    }
    for (lt_enc, ours, stream) in CASES {
        let case = format!("libtorrent {lt_enc}, shoal {ours}");
        let s = setup(&format!("enc-get-{lt_enc}-{ours}"));
        let extra = ["--no-tracker", "--no-utp", "--enc", lt_enc];
        let mut seeder = LtPeer::start(&case, "seed", &s.torrent, &s.src, &extra, s.tmp.path());
        seeder.proc.expect_line("READY", WITHIN);
        let out = s.tmp.subdir("out");
        let run = run_get(
            &[
                s.torrent.display().to_string(),
                "-o".into(),
                out.display().to_string(),
                "--peer".into(),
                seeder.addr(),
                "--no-listen".into(),
                "--encryption".into(),
                ours.into(),
                "-vv".into(),
            ],
            WITHIN,
        );
        let uploaded = seeder.finish().0;
        assert_eq!(run.code(), Some(0), "{case}\n{}", run.describe());
        s.t.assert_downloaded(&out);
        assert_same_files(&s.src.join(&s.t.name), &out.join(&s.t.name));
        assert!(uploaded > 0, "{case}: libtorrent uploaded nothing");
        if let Some(kind) = stream {
            assert!(
                run.stderr.contains(&stream_line(kind)),
                "{case}: expected a {kind} stream\n{}",
                run.describe()
            );
        }
        eprintln!("{case}: {:.1?}", run.elapsed);
    }
}

/// A libtorrent leecher dials `shoal seed` (the greeter's detection of
/// plaintext and MSE, and its refusals: libtorrent `enabled` retries).
#[test]
fn libtorrent_leeches_from_shoal_under_each_encryption_policy() {
    let test = "libtorrent_leeches_from_shoal_under_each_encryption_policy";
    if !tools_present(test, false) {
        return;
    }
    for (lt_enc, ours, stream) in CASES {
        let case = format!("shoal {ours}, libtorrent {lt_enc}");
        let s = setup(&format!("enc-seed-{lt_enc}-{ours}"));
        let extra = ["--encryption", ours, "-vv"];
        let (mut seeder, addr) = Daemon::seed(&case, &s.torrent, &s.src, &extra, s.tmp.path());
        let out = s.tmp.subdir("out");
        let peer = addr.to_string();
        // --verbose: a failure shows libtorrent's own view of the dial.
        let args = [
            "--peer",
            &peer,
            "--no-tracker",
            "--no-utp",
            "--enc",
            lt_enc,
            "--verbose",
        ];
        let mut lt = LtPeer::leech(&case, &s.torrent, &out, &args, s.tmp.path());
        if lt.proc.wait_for_line("DONE ", WITHIN).is_none() {
            panic!(
                "{case}: libtorrent did not complete within {WITHIN:?}\n{}\n{}",
                lt.proc.describe(),
                seeder.describe()
            );
        }
        let downloaded = lt.finish().1;
        let uploaded = seeder.stop_seeding();
        assert_same_files(&s.src.join(&s.t.name), &out.join(&s.t.name));
        assert!(
            downloaded > 0 && uploaded > 0,
            "{case}: {downloaded} / {uploaded}"
        );
        if let Some(kind) = stream {
            let log = seeder.proc.stderr();
            assert!(
                log.contains(&stream_line(kind)),
                "{case}: expected a {kind} stream\n{log}"
            );
        }
    }
}

/// shoal to shoal with `--encryption require` on both sides: RC4 both
/// ways; a plaintext-only shoal is refused by the seeder and gets nothing.
#[test]
fn shoal_to_shoal_with_required_encryption() {
    let s = setup("enc-shoal-shoal");
    let extra = ["--encryption", "require", "-vv"];
    let (mut seeder, addr) = Daemon::seed("seeder", &s.torrent, &s.src, &extra, s.tmp.path());
    let get = |out: &PathBuf, mode: &str, more: &[&str]| {
        let mut args = vec![
            s.torrent.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--peer".into(),
            addr.to_string(),
            "--no-listen".into(),
            "--encryption".into(),
            mode.into(),
            "-vv".into(),
        ];
        args.extend(more.iter().map(|a| a.to_string()));
        run_get(&args, WITHIN)
    };
    let out = s.tmp.subdir("out");
    let run = get(&out, "require", &[]);
    assert_eq!(run.code(), Some(0), "{}", run.describe());
    assert_same_files(&s.src.join(&s.t.name), &out.join(&s.t.name));
    assert!(
        run.stderr.contains(&stream_line("RC4")),
        "{}",
        run.describe()
    );

    let plain = s.tmp.subdir("plain");
    let refused = get(&plain, "off", &["--timeout", "3s"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.describe());
    assert!(
        !refused.stderr.contains("handshake done"),
        "{}",
        refused.describe()
    );
    seeder.stop_seeding();
    assert!(
        seeder
            .proc
            .stderr()
            .contains("plaintext connection refused"),
        "{}",
        seeder.describe()
    );
}
