//! Tests of [`super`].
use super::*;
use crate::proto::metainfo::Metainfo;
use std::process::Command;

/// A directory under the system temp dir, removed when dropped.
use crate::util::testutil::TempDir;

/// Deterministic junk: `n` bytes from `seed`.
fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn options(path: &Path) -> Options {
    Options {
        path: path.to_path_buf(),
        trackers: vec!["http://127.0.0.1:6969/announce".into()],
        web_seeds: Vec::new(),
        piece_len: Some(16 << 10),
        private: false,
        comment: None,
        created_by: "shoal 0.1.0".into(),
        creation_date: None,
        threads: 2,
    }
}

fn make(opts: &Options) -> Vec<u8> {
    create(opts, &|_| {}).unwrap()
}

/// The SHA-1 of each `piece_len` piece of `stream`, computed without
/// any of the code under test.
fn expected_hashes(stream: &[u8], piece_len: usize) -> Vec<[u8; 20]> {
    stream
        .chunks(piece_len)
        .map(|p| Sha1::digest(p).into())
        .collect()
}

fn hashes(m: &Metainfo) -> Vec<[u8; 20]> {
    m.geometry.pieces().map(|p| m.piece_hash(p)).collect()
}

#[test]
fn single_file_with_odd_size() {
    let tmp = TempDir::new("create-single");
    let bytes = data(1, 5 * 16384 + 1234);
    let file = tmp.0.join("disk image.bin");
    write(&file, &bytes);
    let opts = Options {
        trackers: vec![
            "http://a/announce".into(),
            "udp://b:1337".into(),
            "http://a/announce".into(),
        ],
        web_seeds: vec!["http://seed/files/".into()],
        private: true,
        comment: Some("build 42".into()),
        creation_date: Some(1_700_000_000),
        ..options(&file)
    };
    let max_seen = AtomicU64::new(0);
    let buf = create(&opts, &|n| {
        max_seen.fetch_max(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(max_seen.into_inner(), bytes.len() as u64);

    let m = Metainfo::from_bytes(&buf).unwrap();
    assert_eq!(m.name, b"disk image.bin");
    assert!(!m.multi_file);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].length, bytes.len() as u64);
    assert_eq!(m.geometry.piece_len(), 16384);
    assert_eq!(hashes(&m), expected_hashes(&bytes, 16384));
    assert_eq!(m.announce.as_deref(), Some("http://a/announce"));
    assert_eq!(
        m.trackers,
        vec![
            vec!["http://a/announce".to_string()],
            vec!["udp://b:1337".to_string()]
        ]
    );
    assert!(m.private);
    assert_eq!(m.comment.as_deref(), Some("build 42"));
    assert_eq!(m.created_by.as_deref(), Some("shoal 0.1.0"));
    assert_eq!(m.creation_date, Some(1_700_000_000));
    assert_eq!(m.web_seeds, vec!["http://seed/files/".to_string()]);
    // One web seed is written as a string, as libtorrent and mktorrent do.
    let root = crate::proto::bencode::decode(&buf).unwrap();
    assert!(root.get("url-list").unwrap().as_bytes().is_some());
}

#[test]
fn one_tracker_no_announce_list_several_web_seeds_a_list() {
    let tmp = TempDir::new("create-keys");
    let file = tmp.0.join("f");
    write(&file, &data(2, 100));
    let opts = Options {
        web_seeds: vec!["http://x/".into(), "http://y/".into()],
        created_by: String::new(),
        ..options(&file)
    };
    let buf = make(&opts);
    let root = crate::proto::bencode::decode(&buf).unwrap();
    let keys: Vec<&[u8]> = root.as_dict().unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [&b"announce"[..], b"info", b"url-list"]);
    let info = root.get("info").unwrap();
    let keys: Vec<&[u8]> = info.as_dict().unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [&b"length"[..], b"name", b"piece length", b"pieces"]);
    let m = Metainfo::from_bytes(&buf).unwrap();
    assert_eq!(m.web_seeds, vec!["http://x/", "http://y/"]);
    assert!(!m.private);
}

/// A tree made in an unsorted order, with a hidden file, a 0-byte
/// file, an empty directory, symlinks to a file and to a directory, and
/// names whose component order differs from whole-path order. Returns
/// the files in the order the torrent must list them.
fn tree(root: &Path) -> Vec<(Vec<&'static str>, Vec<u8>)> {
    let files: Vec<(Vec<&str>, Vec<u8>)> = vec![
        (vec!["z.bin"], data(3, 20000)),
        (vec!["c-d"], data(4, 7)),
        (vec!["b", "z.bin"], data(5, 40000)),
        (vec!["empty"], Vec::new()),
        (vec!["b", "a", "deep.bin"], data(6, 16384)),
        (vec![".hidden"], data(7, 10000)),
        (vec!["c", "x"], data(8, 3)),
    ];
    for (path, bytes) in &files {
        write(
            &path.iter().fold(root.to_path_buf(), |p, c| p.join(c)),
            bytes,
        );
    }
    fs::create_dir_all(root.join("b").join("nothing-here")).unwrap();
    std::os::unix::fs::symlink(root.join("z.bin"), root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink(root, root.join("b").join("loop")).unwrap();
    let mut sorted = files;
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
}

#[test]
fn directory_sorted_hashed_and_deterministic() {
    let tmp = TempDir::new("create-dir");
    let root = tmp.0.join("release");
    let files = tree(&root);
    let order: Vec<String> = files.iter().map(|(p, _)| p.join("/")).collect();
    assert_eq!(
        order,
        [
            ".hidden",
            "b/a/deep.bin",
            "b/z.bin",
            "c/x",
            "c-d",
            "empty",
            "z.bin"
        ]
    );

    let opts = Options {
        threads: 1,
        ..options(&root)
    };
    // A chunk smaller than a piece and not dividing it, to cut pieces
    // into several reads that also cross files.
    let buf = create_with_chunk(&opts, &|_| {}, 5000).unwrap();
    let m = Metainfo::from_bytes(&buf).unwrap();
    assert_eq!(m.name, b"release");
    assert!(m.multi_file);
    let listed: Vec<(String, u64)> = m
        .files
        .iter()
        .map(|f| (f.display_path(), f.length))
        .collect();
    let want: Vec<(String, u64)> = files
        .iter()
        .map(|(p, b)| (p.join("/"), b.len() as u64))
        .collect();
    assert_eq!(listed, want);
    let stream: Vec<u8> = files.iter().flat_map(|(_, b)| b.clone()).collect();
    // The first piece holds .hidden (10000 bytes) and the start of
    // deep.bin: pieces span files.
    assert!(files[0].1.len() < 16384);
    assert_eq!(hashes(&m), expected_hashes(&stream, 16384));

    // Same data, same options: the same bytes, whatever the threads
    // and the chunk size.
    for threads in [1, 4] {
        let again = make(&Options {
            threads,
            ..opts.clone()
        });
        assert_eq!(again, buf, "{threads} threads");
    }
    // A date changes the file but not the info hash.
    let dated = make(&Options {
        creation_date: Some(1),
        threads: 4,
        ..opts.clone()
    });
    assert_ne!(dated, buf);
    assert_eq!(Metainfo::from_bytes(&dated).unwrap().info_hash, m.info_hash);
}

#[test]
fn pieces_larger_than_a_chunk() {
    let tmp = TempDir::new("create-bigpiece");
    let file = tmp.0.join("big");
    let bytes = data(9, 3 * CHUNK + 12345);
    write(&file, &bytes);
    let opts = Options {
        piece_len: Some(2 * CHUNK as u32),
        ..options(&file)
    };
    let m = Metainfo::from_bytes(&make(&opts)).unwrap();
    assert_eq!(hashes(&m), expected_hashes(&bytes, 2 * CHUNK));
}

#[test]
fn names_of_dot_and_dot_dot() {
    let tmp = TempDir::new("create-names");
    let root = tmp.0.join("named");
    write(&root.join("sub").join("f"), b"x");
    for path in [root.join("."), root.join("sub").join(".."), root.join("")] {
        let m = Metainfo::from_bytes(&make(&options(&path))).unwrap();
        assert_eq!(m.display_name(), "named", "{}", path.display());
    }
}

#[test]
fn auto_piece_len_table() {
    const K: u64 = 1 << 10;
    const M: u64 = 1 << 20;
    const G: u64 = 1 << 30;
    let table = [
        (0, 16 * K),
        (1, 16 * K),
        (M, 16 * K),
        (32 * M, 16 * K),
        (32 * M + 1, 32 * K),
        (50 * M, 32 * K),
        (700 * M, 512 * K),
        (G, 512 * K),
        (G + 1, M),
        (4 * G, 2 * M),
        (8 * G, 4 * M),
        (32 * G, 16 * M),
        (100 * G, 16 * M),
        (1 << 50, 16 * M),
        (i64::MAX as u64, 16 * M),
    ];
    for (total, want) in table {
        let got = auto_piece_len(total);
        assert_eq!(u64::from(got), want, "total {total}");
        let pieces = total.div_ceil(want);
        if (64 * M..=32 * G).contains(&total) {
            assert!((1025..=2048).contains(&pieces), "{total}: {pieces}");
        }
    }
}

#[test]
fn errors_name_the_path_and_the_cause() {
    let tmp = TempDir::new("create-errors");
    let empty = tmp.0.join("empty");
    fs::create_dir_all(empty.join("sub").join("deeper")).unwrap();
    let zeros = tmp.0.join("zeros");
    write(&zeros.join("a"), b"");
    write(&zeros.join("b").join("c"), b"");
    let zero_file = tmp.0.join("zero.bin");
    write(&zero_file, b"");
    let missing = tmp.0.join("missing");
    let table = [
        (
            options(&empty),
            format!("nothing to share: {} has no data", empty.display()),
        ),
        (
            options(&zeros),
            format!("nothing to share: {} has no data", zeros.display()),
        ),
        (
            options(&zero_file),
            format!("nothing to share: {} has no data", zero_file.display()),
        ),
        (
            options(&missing),
            format!(
                "cannot read {}: No such file or directory",
                missing.display()
            ),
        ),
        (
            options(Path::new("/")),
            "unsafe name /: it has no name to give the torrent".to_string(),
        ),
        (
            options(Path::new("/dev/null")),
            "cannot share /dev/null: not a regular file or directory".to_string(),
        ),
        (
            Options {
                piece_len: Some(48 << 10),
                ..options(&zero_file)
            },
            "piece size 49152 is not a power of two from 16 KiB to 256.0 MiB".to_string(),
        ),
        (
            Options {
                piece_len: Some(8 << 10),
                ..options(&zero_file)
            },
            "piece size 8192 is not a power of two from 16 KiB to 256.0 MiB".to_string(),
        ),
    ];
    for (opts, want) in table {
        let got = create(&opts, &|_| {}).expect_err(&want).to_string();
        assert_eq!(got, want);
    }
}

/// A file that grows while hashing is an error naming it: caught when
/// a thread opens it (`later`), or by the check after hashing when it
/// had been read already (`first`).
#[test]
fn a_file_changing_during_hashing_is_an_error() {
    let tmp = TempDir::new("create-changing");
    let root = tmp.0.join("d");
    let first = root.join("a");
    let later = root.join("b");
    write(&first, &data(10, 40000));
    write(&later, &data(11, 40000));
    for victim in [&later, &first] {
        let touched = AtomicBool::new(false);
        let grow = |_| {
            if !touched.swap(true, Ordering::SeqCst) {
                let mut f = fs::OpenOptions::new().append(true).open(victim).unwrap();
                io::Write::write_all(&mut f, b"more").unwrap();
            }
        };
        let opts = Options {
            threads: 1,
            ..options(&root)
        };
        let err = create(&opts, &grow).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} changed while it was being hashed; try again once nothing is writing to it",
                victim.display()
            )
        );
    }
}

const PYTHON: &str = "/usr/bin/python3";

/// Whether an external tool is there; if not, says so loudly, and fails
/// under `CI=true` when `required_in_ci`.
fn have(tool: &str, probe: &mut Command, required_in_ci: bool) -> bool {
    if probe.output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    if required_in_ci && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{tool} not installed, and CI=true: a missing tool is a failure");
    }
    eprintln!("*** SKIPPED: {tool} not installed ***");
    false
}

/// libtorrent loads the torrent and computes the same info hash.
#[test]
fn libtorrent_agrees_on_the_info_hash() {
    if !have(
        "python3-libtorrent",
        Command::new(PYTHON).args(["-c", "import libtorrent"]),
        true,
    ) {
        return;
    }
    let tmp = TempDir::new("create-libtorrent");
    let root = tmp.0.join("shared");
    tree(&root);
    let single = tmp.0.join("one.bin");
    write(&single, &data(12, 70000));
    for path in [&root, &single] {
        let opts = Options {
            private: true,
            web_seeds: vec!["http://seed/".into()],
            ..options(path)
        };
        let buf = make(&opts);
        let m = Metainfo::from_bytes(&buf).unwrap();
        let out = tmp.0.join("out.torrent");
        fs::write(&out, &buf).unwrap();
        let script = "import libtorrent as lt, sys\n\
                      ti = lt.torrent_info(sys.argv[1])\n\
                      print(ti.info_hashes().v1, ti.num_files(), ti.num_pieces())";
        let run = Command::new(PYTHON)
            .args(["-c", script])
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        let got = String::from_utf8(run.stdout).unwrap();
        let want = format!(
            "{} {} {}\n",
            m.info_hash.hex(),
            m.files.len(),
            m.geometry.num_pieces()
        );
        assert_eq!(got, want, "{}", path.display());
    }
}

/// mktorrent, given the same tree and piece size, makes the same info
/// dictionary (a tree whose names sort the same both ways: see the
/// module header).
#[test]
fn mktorrent_makes_the_same_info_hash() {
    if !have("mktorrent", Command::new("mktorrent").arg("-h"), false) {
        return;
    }
    let tmp = TempDir::new("create-mktorrent");
    let root = tmp.0.join("shared");
    let files = [
        ("z.bin", data(13, 50000)),
        (".hidden", data(14, 10)),
        ("sub/a", data(15, 70000)),
        ("sub/empty", Vec::new()),
        ("m.txt", data(16, 33333)),
    ];
    for (path, bytes) in &files {
        write(&root.join(path), bytes);
    }
    let out = tmp.0.join("mk.torrent");
    let run = Command::new("mktorrent")
        .args(["-l", "15", "-d", "-p", "-a", "http://t/announce", "-o"])
        .arg(&out)
        .arg(&root)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let theirs = Metainfo::from_bytes(&fs::read(&out).unwrap()).unwrap();
    let ours = Metainfo::from_bytes(&make(&Options {
        piece_len: Some(32 << 10),
        private: true,
        ..options(&root)
    }))
    .unwrap();
    assert_eq!(ours.info_bytes, theirs.info_bytes);
    assert_eq!(ours.info_hash, theirs.info_hash);
}
