//! Magnet links, BEP 9 metadata and BEP 11 peer exchange (issue 12):
//! `shoal get MAGNET` from a shoal seeder and from libtorrent (by `x.pe`
//! and by the link's tracker), a libtorrent leecher starting from a magnet
//! against `shoal seed`, `shoal info MAGNET`, and hostile peers: wrong
//! metadata gets its sender banned, and a peer learned only by PEX serves
//! the torrent.

use crate::common::daemon::{shoal_tracker, Daemon};
use crate::common::interop::{tools_present, LtPeer};
use crate::common::peer::{FakePeer, Got};
use crate::common::{free_port, make_torrent, random_bytes, run_get, run_shoal, TempDir, Torrent};
use shoal::proto::bencode::Owned;
use shoal::proto::wire::{self, Message};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const WITHIN: Duration = Duration::from_secs(60);

fn torrent(name: &str, seed: u64, announce: Option<&str>) -> Torrent {
    let a = random_bytes(seed, 3 * MIB + 77);
    let b = random_bytes(seed + 1, 1000);
    let files: &[(&str, &[u8])] = &[("a.bin", &a), ("b/c.txt", &b), ("b/empty", b"")];
    make_torrent(name, files, 64 * 1024, announce, true)
}

fn magnet(t: &Torrent, extra: &str) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn={}{extra}",
        t.info_hash_hex(),
        t.name
    )
}

/// A temp dir with the data under `src/` and the `.torrent`.
fn setup(tag: &str, t: &Torrent) -> (TempDir, PathBuf, PathBuf) {
    let tmp = TempDir::new(tag);
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    (tmp, src, file)
}

fn get_magnet(uri: &str, out: &Path, extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        uri.to_string(),
        "-o".into(),
        out.display().to_string(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_get(&args, WITHIN)
}

#[test]
fn shoal_gets_a_magnet_from_shoal_seed_and_saves_the_torrent() {
    let t = torrent("mag-shoal", 40, None);
    let (tmp, src, file) = setup("magnet-shoal", &t);
    let (mut seed, addr) = Daemon::seed("shoal seed", &file, &src, &[], tmp.path());
    let out = tmp.subdir("out");
    let saved = tmp.path().join("saved.torrent");
    let uri = magnet(&t, &format!("&x.pe={addr}&tr=http://127.0.0.1:9/announce"));
    let run = get_magnet(&uri, &out, &["--save-torrent", saved.to_str().unwrap()]);
    run.assert_success();
    assert!(
        run.stdout.contains("{\"event\":\"metadata\""),
        "{}",
        run.describe()
    );
    t.assert_downloaded(&out);
    // The saved torrent has the same info hash and the link's tracker.
    let info = run_shoal(&["info", "--json", saved.to_str().unwrap()], WITHIN);
    info.assert_success();
    assert!(
        info.stdout.contains(&t.info_hash_hex()),
        "{}",
        info.describe()
    );
    assert!(
        info.stdout.contains("http://127.0.0.1:9/announce"),
        "{}",
        info.describe()
    );
    seed.stop_seeding();
}

#[test]
fn info_reads_a_magnet_without_the_network_and_refuses_a_bad_one() {
    let uri = "magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=a+b&tr=udp%3A%2F%2Ft%3A1&x.pe=10.0.0.1:5";
    let run = run_shoal(&["info", uri], WITHIN);
    run.assert_success();
    for want in [
        "c12fe1c06bba254a9dc9f519b335aa7c1367a88a",
        "name:        a b",
        "udp://t:1",
        "10.0.0.1:5",
    ] {
        assert!(run.stdout.contains(want), "{want}: {}", run.describe());
    }
    for (bad, says) in [
        ("magnet:?dn=x", "without xt=urn:btih"),
        ("magnet:?xt=urn:btih:123", "neither 40 hex digits"),
    ] {
        for cmd in ["info", "get"] {
            let run = run_shoal(&[cmd, bad], WITHIN);
            assert_eq!(run.code(), Some(2), "{cmd} {bad}: {}", run.describe());
            assert!(run.stderr.contains(says), "{}", run.describe());
        }
    }
}

/// libtorrent seeding; `shoal get MAGNET` by `x.pe`, then by the link's
/// tracker (`shoal tracker`).
#[test]
fn shoal_gets_a_magnet_from_libtorrent() {
    if !tools_present("shoal_gets_a_magnet_from_libtorrent", false) {
        return;
    }
    let tmp = TempDir::new("magnet-lt");
    let port = free_port();
    let (_tracker, url) = shoal_tracker(port, "30s", tmp.path());
    let t = torrent("mag-lt", 42, Some(&url));
    let src = tmp.subdir("src");
    t.write_data(&src);
    let file = t.write_torrent(tmp.path());
    let seeder = LtPeer::seed("libtorrent seeder", &file, &src, tmp.path());
    let by_peer = tmp.subdir("by-peer");
    get_magnet(
        &magnet(&t, &format!("&x.pe={}", seeder.addr())),
        &by_peer,
        &[],
    )
    .assert_success();
    t.assert_downloaded(&by_peer);
    let by_tracker = tmp.subdir("by-tracker");
    let tr = shoal::proto::tracker::percent_encode(url.as_bytes());
    get_magnet(&magnet(&t, &format!("&tr={tr}")), &by_tracker, &[]).assert_success();
    t.assert_downloaded(&by_tracker);
}

/// A libtorrent leecher that starts from a magnet gets the metadata and
/// the data from `shoal seed`.
#[test]
fn libtorrent_gets_a_magnet_from_shoal_seed() {
    if !tools_present("libtorrent_gets_a_magnet_from_shoal_seed", false) {
        return;
    }
    let t = torrent("mag-lt-leech", 44, None);
    let (tmp, src, file) = setup("magnet-lt-leech", &t);
    let (mut seed, addr) = Daemon::seed("shoal seed", &file, &src, &[], tmp.path());
    let out = tmp.subdir("out");
    let uri = magnet(&t, "");
    let peer = addr.to_string();
    let mut lt = LtPeer::leech(
        "libtorrent leecher",
        Path::new(&uri),
        &out,
        &["--peer", &peer, "--no-tracker"],
        tmp.path(),
    );
    lt.done(WITHIN);
    t.assert_downloaded(&out);
    seed.stop_seeding();
}

/// A peer that sends metadata failing the info hash is banned (its
/// connection closed); a peer that only tells us, by PEX, where a seeder
/// is gets the download done.
#[test]
fn wrong_metadata_costs_its_sender_and_pex_finds_the_seeder() {
    let t = torrent("mag-hostile", 46, None);
    let (tmp, src, file) = setup("magnet-hostile", &t);
    let (mut seed, seed_addr) = Daemon::seed("shoal seed", &file, &src, &[], tmp.path());
    let out = tmp.subdir("out");
    let uri = magnet(&t, "");
    let args = [
        "get",
        &uri,
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--timeout",
        "60s",
    ];
    let mut get = Daemon::start("shoal get", WITHIN, &args, tmp.path());
    let addr = get.listening(WITHIN);
    let extended = wire::RESERVED_EXTENDED.to_be_bytes();
    let info_size = t.info_bytes_len();
    let hello = |m: Owned| {
        Owned::dict()
            .insert("m", m)
            .insert("metadata_size", info_size as i64)
            .encode()
    };

    // The liar offers the metadata and answers every request with junk.
    let mut liar = FakePeer::try_connect_with(addr, t.info_hash, extended).unwrap();
    let payload = hello(Owned::dict().insert("ut_metadata", 3));
    liar.send(&[Message::Extended {
        id: 0,
        payload: &payload,
    }])
    .unwrap();
    let pieces = info_size.div_ceil(16384);
    let mut answered = 0;
    while answered < pieces {
        match liar.next(WITHIN) {
            Got::Extended { id: 3, payload } => {
                let piece = shoal::proto::ut_metadata::parse(&payload).unwrap();
                let shoal::proto::ut_metadata::Message::Request(i) = piece else {
                    continue;
                };
                let len = (info_size - i as usize * 16384).min(16384);
                let junk = vec![0x55; len];
                let data = shoal::proto::ut_metadata::Message::Data {
                    piece: i,
                    total_size: info_size as u64,
                    data: &junk,
                }
                .encode();
                liar.send(&[Message::Extended {
                    id: 2,
                    payload: &data,
                }])
                .unwrap();
                answered += 1;
            }
            Got::Closed | Got::Quiet => panic!("no requests for the metadata\n{}", get.describe()),
            _ => {}
        }
    }
    liar.closed_within(WITHIN)
        .unwrap_or_else(|e| panic!("the liar was not dropped: {e}"));

    // The gossip knows where the seeder is.
    let mut gossip = FakePeer::try_connect_with(addr, t.info_hash, extended).unwrap();
    let payload = hello(Owned::dict().insert("ut_pex", 5));
    let pex = shoal::proto::pex::Pex {
        added: vec![seed_addr],
        dropped: vec![],
    }
    .encode();
    gossip
        .send(&[
            Message::Extended {
                id: 0,
                payload: &payload,
            },
            Message::Extended {
                id: 1,
                payload: &pex,
            },
        ])
        .unwrap();
    let status = get.wait_exit(WITHIN);
    assert!(status.is_some_and(|s| s.success()), "{}", get.describe());
    t.assert_downloaded(&out);
    seed.stop_seeding();
}
