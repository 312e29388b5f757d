//! Every fixture in testdata/: valid ones give the info hash that the tool
//! which made them computed; each defect fixture gives its one exact error,
//! both from the library and from `shoal info` (one line, exit 1).

use shoal::proto::metainfo::Metainfo;
use std::path::{Path, PathBuf};
use std::process::Command;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn load(name: &str) -> Result<Metainfo, String> {
    let bytes = std::fs::read(testdata(name)).expect("fixture exists");
    Metainfo::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// `(info hash hex, file)` from testdata/info-hashes.txt.
fn expected_hashes() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(testdata("info-hashes.txt")).unwrap();
    let rows: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (hash, file) = l.split_once("  ").expect("sha1sum format");
            (hash.to_string(), file.to_string())
        })
        .collect();
    assert!(rows.len() >= 8, "info-hashes.txt lists the valid fixtures");
    rows
}

fn shoal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("run shoal")
}

#[test]
fn info_hash_matches_the_tool_that_made_each_fixture() {
    for (hash, file) in expected_hashes() {
        let m = load(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.info_hash.hex(), hash, "{file}");
    }
}

#[test]
fn shoal_info_prints_the_right_hash_for_every_fixture() {
    for (hash, file) in expected_hashes() {
        let path = testdata(&file);
        let out = shoal(&["info", path.to_str().unwrap()]);
        assert!(out.status.success(), "{file}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("info hash:   {hash}\n")),
            "{file}: {text}"
        );
        let out = shoal(&["info", "--json", path.to_str().unwrap()]);
        let json = String::from_utf8(out.stdout).unwrap();
        assert!(
            json.contains(&format!("\"info_hash\":\"{hash}\"")),
            "{file}: {json}"
        );
        assert_eq!(json.lines().count(), 1);
    }
}

const DEFECTS: &[(&str, &str)] = &[
    ("missing-info", "missing key 'info'"),
    ("missing-name", "missing key 'info.name'"),
    ("missing-piece-length", "missing key 'info.piece length'"),
    ("missing-pieces", "missing key 'info.pieces'"),
    ("missing-length", "info has neither 'length' nor 'files'"),
    (
        "both-length-and-files",
        "info has both 'length' and 'files'",
    ),
    (
        "pieces-not-multiple-of-20",
        "'info.pieces' is 59 bytes, not a multiple of 20",
    ),
    (
        "piece-count-mismatch",
        "'info.pieces' has 2 hashes but the total length needs 3",
    ),
    (
        "zero-piece-length",
        "piece length 0 is out of range (1 to 268435456 bytes)",
    ),
    (
        "absurd-piece-length",
        "piece length 1099511627776 is out of range (1 to 268435456 bytes)",
    ),
    (
        "negative-piece-length",
        "piece length -16384 is out of range (1 to 268435456 bytes)",
    ),
    ("negative-length", "file length -40000 is negative"),
    ("total-length-overflow", "total length is over 2^63-1 bytes"),
    ("empty-file-list", "'info.files' is empty"),
    ("empty-path", "unsafe file path \"\": the path is empty"),
    (
        "path-dotdot",
        "unsafe file path \"../b.bin\": a path component is '.' or '..'",
    ),
    (
        "path-absolute",
        "unsafe file path \"/etc/passwd\": the path is absolute",
    ),
    (
        "path-empty-component",
        "unsafe file path \"sub//b.bin\": a path component is empty",
    ),
    (
        "path-slash-in-component",
        "unsafe file path \"sub/b.bin\": a path component contains '/'",
    ),
    (
        "path-nul",
        "unsafe file path \"sub/b\\0.bin\": a path component contains a NUL byte",
    ),
    (
        "name-dotdot",
        "unsafe file path \"..\": a path component is '.' or '..'",
    ),
    (
        "duplicate-key",
        "bencode error at byte 82: duplicate dictionary key \"name\"",
    ),
    (
        "trailing-garbage",
        "bencode error at byte 177: trailing bytes after the value",
    ),
    (
        "truncated",
        "bencode error at byte 82: string of 12 bytes runs past the end (3 bytes left)",
    ),
    (
        "not-a-dict",
        "'(top level)' should be a dictionary, found a list",
    ),
    (
        "info-not-a-dict",
        "'info' should be a dictionary, found a list",
    ),
    (
        "wrong-type-length",
        "'info.length' should be an integer, found a string",
    ),
];

#[test]
fn each_defect_fixture_has_its_exact_error() {
    // The bases the defects were cut from are valid.
    load("defect-base.torrent").unwrap();
    load("defect-base-multi.torrent").unwrap();
    for (name, want) in DEFECTS {
        let file = format!("{name}.torrent");
        assert_eq!(load(&file).expect_err(name), *want, "{file}");
    }
}

#[test]
fn shoal_info_on_a_bad_file_prints_one_line_and_exits_1() {
    for (name, want) in DEFECTS {
        let path = testdata(&format!("{name}.torrent"));
        let out = shoal(&["info", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err,
            format!("error: {}: {want}\n", path.display()),
            "{name}"
        );
    }
    let out = shoal(&["info", "/nonexistent/x.torrent"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "error: /nonexistent/x.torrent: No such file or directory\n"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["info"][..],
        &["info", "a", "b"],
        &["info", "--bogus", "a"],
        &["frobnicate"],
        &[],
    ] {
        let out = shoal(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("error: "));
    }
    assert!(shoal(&["info", "--help"]).status.success());
}

/// `(path below the output dir, length, padding)` of every file.
fn file_list(m: &Metainfo) -> Vec<(String, u64, bool)> {
    m.files
        .iter()
        .map(|f| (f.display_path(), f.length, f.padding))
        .collect()
}

#[test]
fn multi_file_fixtures_list_their_files() {
    let m = load("mktorrent-multi.torrent").unwrap();
    assert!(m.private && m.multi_file);
    assert_eq!(m.display_name(), "shoal-multi");
    assert_eq!(
        (m.geometry.piece_len(), m.geometry.num_pieces()),
        (32768, 3)
    );
    assert_eq!(
        file_list(&m),
        vec![
            ("README.txt".into(), 1000, false),
            ("café-ü.txt".into(), 4321, false),
            ("empty.dat".into(), 0, false),
            ("sub/data.bin".into(), 70000, false),
            ("sub/deeper/tiny.bin".into(), 7, false),
        ]
    );

    let m = load("libtorrent-multi-padded.torrent").unwrap();
    assert_eq!(
        (m.geometry.piece_len(), m.geometry.num_pieces()),
        (16384, 8)
    );
    assert_eq!(m.geometry.total_len(), 131072);
    let files = file_list(&m);
    let pads: Vec<u64> = files.iter().filter(|f| f.2).map(|f| f.1).collect();
    assert_eq!(pads, vec![12768, 4039, 15607, 9152, 16381]);
    assert!(files.contains(&("sub/nested/日本.bin".into(), 3, false)));
    assert_eq!(m.trackers.len(), 2, "two tiers");
    assert_eq!(
        m.web_seeds,
        vec!["http://127.0.0.1:8080/files/".to_string()]
    );
}

#[test]
fn single_file_fixture_has_odd_last_piece_and_trackers() {
    let m = load("mktorrent-single.torrent").unwrap();
    assert!(!m.multi_file && !m.private);
    let g = &m.geometry;
    let last = g.piece(g.num_pieces() - 1).unwrap();
    assert!(g.piece_size(last) < g.piece_len());
    assert_eq!(m.trackers.iter().flatten().count(), 2);
}
