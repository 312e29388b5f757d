//! A real swarm on 127.0.0.1 (issue 4, "Tests: a real swarm"): `shoal
//! tracker`, one `shoal seed` with two upload slots, and eight `shoal get`
//! processes that find each other through the tracker alone. All eight must
//! end with the right bytes, and the seeder must upload clearly less than
//! eight times the file: the leechers traded pieces among themselves. The
//! same with an initial seeder (`--super-seed`), and then a ninth leecher
//! that comes when the others are gone and gets everything from it.
//!
//! Every process runs under `timeout` and is stopped by its PID when the
//! test ends (common::daemon, common::process).

use crate::common::daemon::{shoal_tracker, wait_for_seeders, Daemon};
use crate::common::{assert_same_files, free_port, json_num, random_bytes, run_shoal, TempDir};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
/// The file: 32 MiB in 128 pieces of 256 KiB.
const SIZE: usize = 32 * MIB;
const LEECHERS: usize = 8;
/// Each leecher keeps seeding this long after it completes, so that the
/// early finishers serve the late ones.
const SEED_TIME: &str = "3s";
/// Seeder upload slots: few, so that most leechers must get most pieces
/// from each other.
const SEEDER_SLOTS: &str = "2";
/// The bound on the seeder's upload, as a multiple of the file. Observed on
/// a 2-core machine: about 1.5-2.5x (leechers finish in about a second and
/// trade most pieces); 8x would mean no trading at all.
const MAX_SEEDER_MULTIPLE: f64 = 4.0;
/// The whole swarm, on a loaded 2-core CI machine.
const SWARM_WITHIN: Duration = Duration::from_secs(90);

fn hex20(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    assert_eq!(s.len(), 40, "an info hash in hex: {s:?}");
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

/// A tracker, a torrent of the file and a seeder the tracker lists.
struct Swarm {
    tmp: TempDir,
    file: PathBuf,
    torrent: PathBuf,
    tracker: Daemon,
    seeder: Daemon,
}

impl Swarm {
    fn start(name: &str, seeder_args: &[&str]) -> Swarm {
        let tmp = TempDir::new(name);
        let src = tmp.subdir("src");
        let file = src.join("artefact.bin");
        std::fs::write(&file, random_bytes(70, SIZE)).unwrap();

        let port = free_port();
        // A short interval: peers that start later are in the answers sooner
        // (shoal clients still re-announce no more than every 30 s).
        let (tracker, url) = shoal_tracker(port, "2s", tmp.path());

        let torrent = tmp.path().join("artefact.torrent");
        let made = run_shoal(
            &[
                "create".to_string(),
                file.display().to_string(),
                "-t".into(),
                url.clone(),
                "-o".into(),
                torrent.display().to_string(),
                "--piece-size".into(),
                "256K".into(),
                "--no-date".into(),
                "-q".into(),
            ],
            Duration::from_secs(60),
        );
        made.assert_success();
        let info_hash = hex20(made.stdout.trim());

        let (mut seeder, _) = Daemon::seed("shoal seed", &torrent, &src, seeder_args, tmp.path());
        seeder.expect_event("seeding", Duration::from_secs(30));
        // Start the leechers once the tracker knows the seeder, so that their
        // first announce already finds it.
        assert!(
            wait_for_seeders(port, &info_hash, 1, Duration::from_secs(30)),
            "the tracker never listed the seeder\n{}\n{}",
            seeder.describe(),
            tracker.describe()
        );
        Swarm {
            tmp,
            file,
            torrent,
            tracker,
            seeder,
        }
    }

    fn leecher(&self, name: &str) -> (Daemon, PathBuf) {
        let out = self.tmp.subdir(name);
        let args = [
            "get".to_string(),
            self.torrent.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
            "--json".into(),
            "--seed-time".into(),
            SEED_TIME.into(),
        ];
        let d = Daemon::start(
            &format!("shoal get {name}"),
            SWARM_WITHIN + Duration::from_secs(30),
            &args,
            self.tmp.path(),
        );
        (d, out)
    }

    /// Starts `count` leechers together (`name`0, `name`1, ...) and waits until each completed
    /// and exited with the right bytes: (seconds run, uploaded,
    /// downloaded) per leecher.
    fn leechers(&mut self, name: &str, count: usize) -> Vec<(f64, f64, f64)> {
        let start = Instant::now();
        let mut leechers: Vec<(Daemon, PathBuf)> = (0..count)
            .map(|i| self.leecher(&format!("{name}{i}")))
            .collect();

        // When each leecher completes (its `seeding` event).
        let mut completed: Vec<Option<Duration>> = vec![None; count];
        while completed.iter().any(Option::is_none) {
            for (i, (d, _)) in leechers.iter_mut().enumerate() {
                if completed[i].is_some() {
                    continue;
                }
                if d.wait_event("seeding", Duration::from_millis(10)).is_some() {
                    completed[i] = Some(start.elapsed());
                } else if d.wait_exit(Duration::ZERO).is_some() || start.elapsed() > SWARM_WITHIN {
                    panic!(
                        "leecher #{i} did not complete ({:.1?} after the start)\n{}\n{}\n{}",
                        start.elapsed(),
                        d.describe(),
                        self.seeder.describe(),
                        self.tracker.describe()
                    );
                }
            }
        }
        let last = completed.iter().flatten().max().unwrap().as_secs_f64();
        let first = completed.iter().flatten().min().unwrap().as_secs_f64();
        eprintln!(
            "swarm: the {count} leechers completed {first:.1}s to {last:.1}s after they \
             started, then seeded {SEED_TIME}"
        );

        let mut figures = Vec::new();
        for (i, (d, out)) in leechers.iter_mut().enumerate() {
            let left = SWARM_WITHIN.saturating_sub(start.elapsed());
            let status = d.wait_exit(left);
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "leecher #{i} ({status:?} after {:.1?})\n{}\n{}",
                start.elapsed(),
                d.describe(),
                self.seeder.describe()
            );
            let done = d.final_event();
            let num = |k: &str| json_num(&done, k).unwrap_or_else(|| panic!("no {k} in {done}"));
            figures.push((num("seconds"), num("uploaded"), num("downloaded")));
            assert_same_files(&self.file, &out.join("artefact.bin"));
        }
        figures
    }
}

/// Checks that the leechers traded: every byte they got was uploaded by
/// someone, and the seeder sent clearly less than a copy each.
fn assert_traded(seeder_up: f64, figures: &[(f64, f64, f64)]) {
    let size = SIZE as f64;
    let multiple = seeder_up / size;
    eprintln!("swarm: seeder uploaded {multiple:.2}x the file");
    for (i, (secs, up, down)) in figures.iter().enumerate() {
        eprintln!(
            "swarm: leecher #{i}: ran {secs:.1}s, uploaded {:.2}x, downloaded {:.2}x",
            up / size,
            down / size
        );
    }
    let uploads = seeder_up + figures.iter().map(|f| f.1).sum::<f64>();
    assert!(
        uploads >= figures.len() as f64 * size,
        "seeder and leechers uploaded {:.2}x the file in all, the leechers got {}x",
        uploads / size,
        figures.len()
    );
    assert!(
        multiple < MAX_SEEDER_MULTIPLE,
        "the seeder uploaded {multiple:.2}x the file to {} leechers \
         (bound {MAX_SEEDER_MULTIPLE}x): they did not trade enough",
        figures.len()
    );
}

/// Issue 4: one seed and eight leechers through `shoal tracker`.
#[test]
fn eight_leechers_trade_pieces_through_shoal_tracker() {
    let mut swarm = Swarm::start("swarm", &["--upload-slots", SEEDER_SLOTS]);
    let figures = swarm.leechers("leecher", LEECHERS);
    let seeder_up = swarm.seeder.stop_seeding() as f64;
    swarm.tracker.proc.stop();
    assert_traded(seeder_up, &figures);
}

/// An initial seeder announces pieces a few at a time, each to one peer
/// first: eight leechers still get the whole file, trading; a ninth that
/// comes when they are gone gets every piece from the seeder alone (the
/// rarest pieces, all of them held by nobody else).
#[test]
fn a_super_seeder_starts_a_swarm_and_then_serves_a_latecomer_alone() {
    let mut swarm = Swarm::start("superseed", &["--super-seed"]);
    let figures = swarm.leechers("leecher", LEECHERS);
    let late = swarm.leechers("latecomer", 1);
    assert!(
        late[0].2 >= SIZE as f64,
        "the latecomer downloaded {} bytes",
        late[0].2
    );
    let seeder_up = swarm.seeder.stop_seeding() as f64;
    swarm.tracker.proc.stop();
    assert_traded(seeder_up - late[0].2, &figures);
}
