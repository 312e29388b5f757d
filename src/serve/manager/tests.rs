//! The manager with a real session on 127.0.0.1 and no trackers: the life
//! of a torrent (checked, seeding, idle, paused, resumed, removed), the
//! refusals, and a restart from the state directory.

use super::*;
use crate::net::peer::Encryption;
use crate::util::testutil::{within, TempDir};

fn torrent_of(path: &Path) -> Vec<u8> {
    let opts = crate::create::Options {
        path: path.to_path_buf(),
        trackers: Vec::new(),
        web_seeds: Vec::new(),
        piece_len: Some(16 * 1024),
        private: false,
        comment: None,
        created_by: String::new(),
        creation_date: None,
        threads: 1,
    };
    crate::create::create(&opts, &|_| {}).unwrap()
}

fn manager(dir: &TempDir) -> Manager {
    let session = Session::new(
        Some("127.0.0.1:0".parse().unwrap()),
        Encryption::Prefer,
        None,
    )
    .unwrap();
    let config = Config {
        data: dir.0.join("data"),
        state: dir.0.join("state"),
        opts: Options::new(dir.0.join("data")),
        idle_after: Duration::from_millis(300),
        max_active: 2,
    };
    Manager::start(Arc::new(session), config).unwrap()
}

/// `bytes` as the file `name` in the manager's data directory.
fn data_file(dir: &TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join(name);
    std::fs::write(&file, bytes).unwrap();
    file
}

/// Steps the manager until `hash` is in `state`.
fn until(m: &Manager, hash: &InfoHash, state: State) {
    loop {
        let now = m.control().detail(hash).map(|d| d.status.state);
        if now.as_ref() == Ok(&state) {
            return;
        }
        m.step(Duration::from_millis(20));
    }
}

/// A torrent whose data is there is checked, seeds, goes idle (no run),
/// pauses and resumes; a restart brings it back idle at once (resume
/// state); removing it with its data deletes the file.
#[test]
fn a_torrent_is_checked_goes_idle_pauses_resumes_and_survives_a_restart() {
    within(|| {
        let dir = TempDir::new("serve-life");
        let file = data_file(&dir, "a.bin", &[7u8; 100_000]);
        let bytes = torrent_of(&file);
        let m = manager(&dir);
        let control = m.control();
        let hash = control.add(Source::Torrent(bytes.clone()), None).unwrap();
        until(&m, &hash, State::Idle);
        let d = control.detail(&hash).unwrap();
        assert_eq!((d.have, d.pieces), (7, 7));
        assert_eq!(d.status.done, 100_000);
        assert!(
            lock(&m.shared.torrents)[&hash].run.is_none(),
            "idle: no run"
        );
        assert_eq!(
            control.add(Source::Torrent(bytes), None),
            Err(Refusal::Exists(hash))
        );
        control.pause(&hash).unwrap();
        assert_eq!(control.list()[0].state, State::Paused);
        control.resume(&hash).unwrap();
        assert_eq!(
            control.list()[0].state,
            State::Idle,
            "resume state: no check"
        );
        m.shutdown();

        let m = manager(&dir);
        assert_eq!(
            m.control().list()[0].state,
            State::Idle,
            "back after a restart"
        );
        m.control().remove(&hash, true).unwrap();
        assert!(!file.exists(), "data deleted");
        assert!(m.control().list().is_empty());
        m.shutdown();
        assert!(manager(&dir).control().list().is_empty(), "forgotten");
    });
}

/// A pause as soon as a torrent's run starts (while its data is being
/// checked, mostly: 512 pieces) leaves the torrent paused, not failed,
/// and once resumed it has every piece. (That the check stops at all is
/// `storage::tests::verify_stops_when_asked`.)
#[test]
fn a_pause_during_the_check_stops_it() {
    within(|| {
        let dir = TempDir::new("serve-pause-check");
        let bytes: Vec<u8> = (0..8u32 << 20).map(|i| (i / 4093) as u8).collect();
        let file = data_file(&dir, "big.bin", &bytes);
        let m = manager(&dir);
        let control = m.control();
        let hash = control
            .add(Source::Torrent(torrent_of(&file)), None)
            .unwrap();
        while control.list()[0].state == State::Queued {
            m.step(Duration::from_millis(1));
        }
        control.pause(&hash).unwrap();
        for _ in 0..3 {
            m.step(Duration::from_millis(10));
            assert_eq!(control.list()[0].state, State::Paused);
        }
        control.resume(&hash).unwrap();
        until(&m, &hash, State::Idle);
        let d = control.detail(&hash).unwrap();
        assert_eq!((d.have, d.pieces), (512, 512));
        m.shutdown();
    });
}

/// A second torrent for the same path, a directory outside `--data`, and
/// bytes that are not a torrent are refused; missing data is being
/// fetched (nobody has it here).
#[test]
fn clashes_escapes_and_garbage_are_refused() {
    within(|| {
        let dir = TempDir::new("serve-refuse");
        let src = dir.0.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.bin"), vec![1u8; 50_000]).unwrap();
        let first = torrent_of(&src.join("a.bin"));
        std::fs::write(src.join("a.bin"), vec![2u8; 50_000]).unwrap();
        let second = torrent_of(&src.join("a.bin"));
        let m = manager(&dir);
        let control = m.control();
        let a = control.add(Source::Torrent(first), None).unwrap();
        match control.add(Source::Torrent(second.clone()), None) {
            Err(Refusal::Clash { other, .. }) => assert_eq!(other, a),
            other => panic!("expected a clash, got {other:?}"),
        }
        let b = control
            .add(Source::Torrent(second), Some(PathBuf::from("elsewhere")))
            .unwrap();
        assert_ne!(a, b);
        for bad in ["../up", "/abs"] {
            let r = control.add(Source::Magnet("x".into()), Some(PathBuf::from(bad)));
            assert!(matches!(r, Err(Refusal::OutsideData(_))), "{bad}: {r:?}");
        }
        let r = control.add(Source::Torrent(b"not bencode".to_vec()), None);
        assert!(matches!(r, Err(Refusal::BadTorrent(_))), "{r:?}");
        let r = control.add(Source::Magnet("magnet:?xt=urn:btih:zz".into()), None);
        assert!(matches!(r, Err(Refusal::BadTorrent(_))), "{r:?}");
        let stranger = InfoHash([9; 20]);
        assert_eq!(
            control.remove(&stranger, false),
            Err(Refusal::Unknown(stranger))
        );
        until(&m, &a, State::Downloading);
        m.shutdown();
    });
}
