//! The HTTP API of `shoal serve` over real sockets, with an in-memory
//! manager: curl and `shoal ctl` as clients, `promtool` on `/metrics`,
//! the token rule, oversize requests, and a flood of slow connections
//! that must not lock a well-behaved client out.

use crate::common::{in_ci, run_shoal, Run};
use shoal::proto::magnet::Magnet;
use shoal::proto::metainfo::{InfoHash, Metainfo};
use shoal::serve::control::{
    Control, Counters, Detail, Metrics, Refusal, Source, State, Status, TorrentMetrics,
};
use shoal::serve::{serve_api, ApiServer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

const TORRENT_HASH: &str = "c9c56477501b8684764910f68ff254194739dcd5";

/// A manager that keeps torrents in a list and does nothing else.
#[derive(Default)]
struct Memory {
    torrents: Mutex<Vec<Status>>,
}

impl Memory {
    fn index(&self, hash: &InfoHash) -> Result<usize, Refusal> {
        let list = self.torrents.lock().unwrap();
        list.iter()
            .position(|t| t.info_hash == *hash)
            .ok_or(Refusal::Unknown(*hash))
    }

    fn set_state(&self, hash: &InfoHash, state: State) -> Result<(), Refusal> {
        let i = self.index(hash)?;
        self.torrents.lock().unwrap()[i].state = state;
        Ok(())
    }
}

impl Control for Memory {
    fn list(&self) -> Vec<Status> {
        self.torrents.lock().unwrap().clone()
    }

    fn detail(&self, hash: &InfoHash) -> Result<Detail, Refusal> {
        let i = self.index(hash)?;
        Ok(Detail {
            status: self.torrents.lock().unwrap()[i].clone(),
            files: vec![],
            peers: vec![],
            pieces: 10,
            have: 10,
            trackers: vec![],
        })
    }

    fn add(&self, source: Source, dir: Option<PathBuf>) -> Result<InfoHash, Refusal> {
        let (hash, name) = match source {
            Source::Torrent(b) => {
                let m = Metainfo::from_bytes(&b).map_err(|e| Refusal::BadTorrent(e.to_string()))?;
                (m.info_hash, m.display_name())
            }
            Source::Magnet(uri) => {
                let m = Magnet::parse(&uri).map_err(|e| Refusal::BadTorrent(e.to_string()))?;
                (m.info_hash, m.name.unwrap_or_default())
            }
        };
        if self.index(&hash).is_ok() {
            return Err(Refusal::Exists(hash));
        }
        self.torrents.lock().unwrap().push(Status {
            info_hash: hash,
            name,
            state: State::Seeding,
            done: 100,
            size: 100,
            down_rate: 0.0,
            up_rate: 0.0,
            downloaded: 0,
            uploaded: 250,
            peers: 1,
            data_dir: Path::new("/data").join(dir.unwrap_or_default()),
        });
        Ok(hash)
    }

    fn remove(&self, hash: &InfoHash, _delete_data: bool) -> Result<(), Refusal> {
        let i = self.index(hash)?;
        self.torrents.lock().unwrap().remove(i);
        Ok(())
    }

    fn pause(&self, hash: &InfoHash) -> Result<(), Refusal> {
        self.set_state(hash, State::Paused)
    }

    fn resume(&self, hash: &InfoHash) -> Result<(), Refusal> {
        self.set_state(hash, State::Seeding)
    }

    fn metrics(&self) -> Metrics {
        let torrents: Vec<TorrentMetrics> = self
            .list()
            .into_iter()
            .map(|t| TorrentMetrics {
                info_hash: t.info_hash,
                name: t.name,
                state: t.state,
                peers: t.peers,
                counters: Counters {
                    uploaded_bytes: t.uploaded,
                    ..Counters::default()
                },
            })
            .collect();
        Metrics {
            peers: torrents.iter().map(|t| t.peers).sum(),
            session: Counters {
                uploaded_bytes: torrents.iter().map(|t| t.counters.uploaded_bytes).sum(),
                pieces_verified: 12,
                ..Counters::default()
            },
            torrents,
            dht_nodes: Some(7),
        }
    }
}

fn start(token: Option<&str>) -> (ApiServer, Arc<Memory>) {
    let memory = Arc::new(Memory::default());
    let addr = "127.0.0.1:0".parse().unwrap();
    let server = serve_api(addr, token.map(str::to_owned), memory.clone()).unwrap();
    (server, memory)
}

/// `curl ARGS` against `addr`: the status and body.
fn curl(addr: SocketAddr, args: &[&str], path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// One raw exchange: sends `request`, reads to the end.
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn curl_drives_every_route() {
    let (server, memory) = start(None);
    let addr = server.local_addr();
    let torrent = testdata("mktorrent-single.torrent");
    let file = format!("@{}", torrent.display());
    let (code, body) = curl(addr, &["--data-binary", &file], "/torrents?dir=tv");
    assert_eq!(
        (code, body.as_str()),
        (201, &*format!("{{\"info_hash\":\"{TORRENT_HASH}\"}}"))
    );
    let (code, _) = curl(addr, &["--data-binary", &file], "/torrents");
    assert_eq!(code, 409);
    let magnet =
        r#"{"magnet":"magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=a%22b"}"#;
    assert_eq!(curl(addr, &["--data-binary", magnet], "/torrents").0, 201);
    let (code, body) = curl(addr, &[], "/torrents");
    assert_eq!(code, 200);
    assert!(body.contains("\"data_dir\":\"/data/tv\""), "{body}");
    assert!(body.contains("\"name\":\"a\\\"b\""), "{body}");
    let one = format!("/torrents/{TORRENT_HASH}");
    assert_eq!(curl(addr, &[], &one).0, 200);
    assert_eq!(curl(addr, &["-X", "POST"], &format!("{one}/pause")).0, 200);
    assert_eq!(memory.list()[0].state, State::Paused);
    assert_eq!(curl(addr, &["-X", "POST"], &format!("{one}/resume")).0, 200);
    assert_eq!(
        curl(addr, &["-X", "DELETE"], &format!("{one}?delete_data=true")).0,
        200
    );
    assert_eq!(curl(addr, &["-X", "DELETE"], &one).0, 404);
    // Bad input: 4xx with a JSON error, and nothing changes.
    let before = memory.list();
    for (args, path, want) in [
        (vec!["--data-binary", "{\"magnet\":"], "/torrents", 400),
        (vec!["--data-binary", "not a torrent"], "/torrents", 400),
        (
            vec!["--data-binary", "magnet:?xt=urn:btih:xyz"],
            "/torrents",
            400,
        ),
        (vec!["--data-binary", &file], "/torrents?dir=../etc", 400),
        (vec!["--data-binary", &file], "/torrents?dir=%2Fetc", 400),
        (vec![], "/torrents/123", 400),
        (vec![], "/nowhere", 404),
        (vec!["-X", "PUT"], "/torrents", 405),
    ] {
        let (code, body) = curl(addr, &args, path);
        assert_eq!(code, want, "{args:?} {path}: {body}");
        assert!(body.starts_with("{\"error\":\""), "{body}");
    }
    assert_eq!(memory.list(), before);
    // A body over the cap is refused from its Content-Length alone.
    let big = format!(
        "POST /torrents HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\nd",
        16 * 1024 * 1024 + 1
    );
    let answer = raw(addr, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(
        answer.ends_with("{\"error\":\"request body over 16777216 bytes\"}"),
        "{answer}"
    );
    let mut head = b"GET /torrents HTTP/1.1\r\nX: ".to_vec();
    head.resize(9000, b'a');
    let answer = raw(addr, &head);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(server.stop());
}

#[test]
fn metrics_pass_promtool() {
    let (server, memory) = start(None);
    let addr = server.local_addr();
    let tricky = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567\
                  &dn=quote%22%20back%5Cslash%0Anewline";
    memory.add(Source::Magnet(tricky.into()), None).unwrap();
    let (code, text) = curl(addr, &[], "/metrics");
    assert_eq!(code, 200);
    assert!(
        text.contains("name=\"quote\\\" back\\\\slash\\nnewline\""),
        "{text}"
    );
    assert!(text.contains("shoal_dht_nodes 7\n"), "{text}");
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("!!! promtool missing: /metrics not checked (Debian package prometheus)");
        assert!(!in_ci(), "promtool is missing in CI");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- page ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop());
}

#[test]
fn the_token_rule_over_the_wire() {
    let (server, _) = start(Some("open-sesame"));
    let addr = server.local_addr();
    assert_eq!(curl(addr, &[], "/torrents").0, 401);
    let wrong = ["-H", "Authorization: Bearer open-sesamE"];
    assert_eq!(curl(addr, &wrong, "/torrents").0, 401);
    let right = ["-H", "Authorization: Bearer open-sesame"];
    assert_eq!(curl(addr, &right, "/torrents"), (200, "[]".into()));
    assert_eq!(curl(addr, &right, "/metrics").0, 200);
    assert!(server.stop());
    // Reachable from other hosts without a token: refused at start.
    let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let e = serve_api(any, None, Arc::new(Memory::default())).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // With one, it starts (and we talk to it over loopback only).
    let server = serve_api(any, Some("t".into()), Arc::new(Memory::default())).unwrap();
    let local = SocketAddr::from(([127, 0, 0, 1], server.local_addr().port()));
    assert_eq!(
        curl(local, &["-H", "Authorization: Bearer t"], "/torrents").0,
        200
    );
    assert!(server.stop());
}

/// 1,000 connections that send nothing or a byte: each is answered
/// (408 when cut off for a newer one) or closed at the deadline, and a
/// well-behaved request made meanwhile gets its answer.
#[test]
fn slow_connections_do_not_lock_out_a_good_client() {
    let _ = shoal::disk::sys::raise_open_file_limit();
    let (server, memory) = start(None);
    let addr = server.local_addr();
    memory
        .add(
            Source::Torrent(std::fs::read(testdata("mktorrent-single.torrent")).unwrap()),
            None,
        )
        .unwrap();
    let slow: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).unwrap();
            if i % 2 == 0 {
                let _ = s.write_all(b"GET /torr");
            }
            s
        })
        .collect();
    // Curl's own deadline (20 s) is far beyond the API's 5 s.
    let (code, body) = curl(addr, &[], "/torrents");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(TORRENT_HASH), "{body}");
    let mut cut = 0;
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut answer = Vec::new();
        // A reset (the server closed with our bytes unread) is a cut-off too.
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("HTTP/1.1 408 ") {
            cut += 1;
        } else {
            assert!(answer.is_empty(), "{answer}");
        }
    }
    // All but those still holding a worker at the end (cut off by the
    // deadline) were cut loose for a newer one.
    let held = shoal::serve::api::WORKERS;
    assert!(
        cut >= 1000 - held,
        "only {cut} slow connections were answered 408"
    );
    assert!(server.stop());
}

/// `shoal ctl` (the binary) against the API.
fn ctl(addr: SocketAddr, args: &[&str]) -> Run {
    let api = addr.to_string();
    let mut full = vec!["ctl", "--api", &api];
    full.extend_from_slice(args);
    run_shoal(&full, LIMIT)
}

#[test]
fn ctl_commands() {
    let (server, memory) = start(Some("tok"));
    let addr = server.local_addr();
    let torrent = testdata("mktorrent-single.torrent");
    let torrent = torrent.to_str().unwrap();
    let run = ctl(addr, &["--token", "tok", "add", torrent, "--dir", "a b"]);
    run.assert_success();
    assert_eq!(run.stdout, format!("added {TORRENT_HASH}\n"));
    assert_eq!(memory.list()[0].data_dir, Path::new("/data/a b"));
    let magnet = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=m";
    let run = ctl(addr, &["--token", "tok", "--json", "add", magnet]);
    run.assert_success();
    assert_eq!(
        run.stdout,
        "{\"info_hash\":\"0123456789abcdef0123456789abcdef01234567\"}\n"
    );

    let run = ctl(addr, &["--token", "tok", "list"]);
    run.assert_success();
    assert!(run.stdout.starts_with("INFO HASH"), "{}", run.stdout);
    assert!(run.stdout.contains(TORRENT_HASH), "{}", run.stdout);
    let run = ctl(addr, &["--token", "tok", "list", "--json"]);
    run.assert_success();
    assert!(run.stdout.starts_with("[{\"info_hash\":"), "{}", run.stdout);
    let run = ctl(addr, &["--token", "tok", "show", TORRENT_HASH]);
    run.assert_success();
    assert!(run.stdout.contains("state:      seeding"), "{}", run.stdout);

    for (cmd, state) in [("pause", State::Paused), ("resume", State::Seeding)] {
        let run = ctl(addr, &["--token", "tok", cmd, TORRENT_HASH]);
        run.assert_success();
        assert_eq!(memory.list()[0].state, state);
    }
    let run = ctl(addr, &["--token", "tok", "stats"]);
    run.assert_success();
    assert!(
        run.stdout.contains("torrents:        2 (2 seeding)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("dht nodes:       7"), "{}", run.stdout);
    let run = ctl(addr, &["--token", "tok", "stats", "--json"]);
    run.assert_success();
    assert!(
        run.stdout.contains("\"uploaded_bytes_total\":500"),
        "{}",
        run.stdout
    );

    let run = ctl(
        addr,
        &["--token", "tok", "remove", TORRENT_HASH, "--delete-data"],
    );
    run.assert_success();
    assert_eq!(run.stdout, format!("removed {TORRENT_HASH}\n"));
    assert_eq!(memory.list().len(), 1);

    // Failures: one line, exit 1.
    for (args, message) in [
        (
            vec!["--token", "tok", "remove", TORRENT_HASH],
            format!("error: API: 404: no torrent {TORRENT_HASH}"),
        ),
        (
            vec!["--token", "tok", "pause", "xyz"],
            "error: API: 400: bad info hash \"xyz\": expected 40 hex digits".into(),
        ),
        (
            vec!["--token", "nope", "list"],
            "error: API: 401: missing or wrong token (send Authorization: Bearer TOKEN)".into(),
        ),
        (
            vec!["list"],
            "error: API: 401: missing or wrong token (send Authorization: Bearer TOKEN)".into(),
        ),
        (
            vec!["--token", "tok", "add", "/no/such.torrent"],
            "error: /no/such.torrent: ".into(),
        ),
    ] {
        let run = ctl(addr, &args);
        run.assert_code(1);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with(&message), "{args:?}: {}", run.stderr);
    }
    // The token from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["ctl", "--api", &addr.to_string(), "list", "--json"])
        .env("SHOAL_API_TOKEN", "tok")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.stop());
    // Nobody there.
    let run = ctl(addr, &["list"]);
    run.assert_code(1);
    assert!(
        run.stderr
            .starts_with("error: cannot reach the API at http://"),
        "{}",
        run.stderr
    );
    // Usage errors exit 2.
    ctl(addr, &["frobnicate"]).assert_code(2);
    ctl(addr, &["pause"]).assert_code(2);
}
