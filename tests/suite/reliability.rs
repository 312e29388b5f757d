//! Nothing lost, nothing vouched for that shoal did not verify (issue 11).

use crate::common::process::External;
use crate::common::{json_num, json_str, make_torrent, random_bytes, run_get, TempDir};
use shoal::proto::wire::Handshake;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
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
    let t = make_torrent(
        "flooded.bin",
        &[("", &random_bytes(23, 4 << 20))],
        64 * 1024,
        None,
        false,
    );
    let tmp = TempDir::new("flood-idle");
    let torrent = t.write_torrent(tmp.path());
    let dir = tmp.subdir("data");
    t.write_data(&dir);
    let (torrent, dir_s) = (torrent.to_str().unwrap(), dir.to_str().unwrap());
    let mut seed = External::start(
        "shoal seed",
        Duration::from_secs(90),
        SHOAL,
        &[
            "seed",
            torrent,
            dir_s,
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
    let idle: Vec<TcpStream> = (0..30u8)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            let hello = Handshake::new(t.info_hash, [i; 20], [0; 8]).encode();
            s.write_all(&hello).unwrap();
            s
        })
        .collect();
    let silent: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let out = tmp.subdir("out");
    let run = run_get(
        &[
            torrent,
            "-o",
            out.to_str().unwrap(),
            "--peer",
            &addr.to_string(),
            "--no-listen",
            "--timeout",
            "60s",
        ],
        Duration::from_secs(90),
    );
    run.assert_success();
    t.assert_downloaded(&out);
    drop((idle, silent));
    seed.stop();
}
