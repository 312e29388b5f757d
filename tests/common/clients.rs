//! Real BitTorrent clients as peers on a namespace host (common::netns):
//! python3-libtorrent (tests/interop/lt.py), aria2c, transmission-cli and
//! qbittorrent-nox, each seeding or leeching one torrent.
//!
//! Every client runs headless with DHT, LSD, PEX, UPnP and NAT-PMP off and
//! its **default** uTP and encryption settings (what users meet), bound to
//! its host's address, under `timeout`, and is stopped by its PID when the
//! [`Client`] is dropped (common::process::External). Its log stays in its
//! own directory and [`Client::log`] returns the end of it for a failure
//! message. Setup facts: ../shared/INTEROP.md.
//!
//! A seeder is ready when the tracker lists it (every client announces
//! `left=0`), which the caller waits for; a leecher is done when the client
//! itself says so ([`Client::done`]), not when bytes appear on disk.

use super::interop::{LT_PY, PYTHON};
use super::netns::Netns;
use super::process::{on_path, tool_works, External};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// No client lives longer than this, whatever happens.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(400);
/// The peer port every client listens on (each host has its own address).
pub const PEER_PORT: u16 = 6882;
/// qBittorrent's Web API, on 127.0.0.1 inside its host.
const QBT_WEBUI_PORT: u16 = 8080;

/// Which real client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Libtorrent,
    Aria2,
    Transmission,
    Qbittorrent,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Libtorrent,
        Kind::Aria2,
        Kind::Transmission,
        Kind::Qbittorrent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Libtorrent => "libtorrent",
            Kind::Aria2 => "aria2",
            Kind::Transmission => "transmission",
            Kind::Qbittorrent => "qbittorrent",
        }
    }

    /// Whether it knows BEP 47 padding files (never writes them, never
    /// needs them to seed). aria2 1.36 and Transmission 3.00 treat them as
    /// ordinary files of zeros.
    pub fn knows_padding(self) -> bool {
        matches!(self, Kind::Libtorrent | Kind::Qbittorrent)
    }

    /// What is missing to run this client here, if anything.
    pub fn missing(self) -> Option<&'static str> {
        let ok = match self {
            Kind::Libtorrent => tool_works(PYTHON, &["-c", "import libtorrent"]),
            Kind::Aria2 => on_path("aria2c"),
            Kind::Transmission => on_path("transmission-cli"),
            Kind::Qbittorrent => on_path("qbittorrent-nox"),
        };
        let what = match self {
            Kind::Libtorrent => "python3-libtorrent (for /usr/bin/python3)",
            Kind::Aria2 => "aria2c",
            Kind::Transmission => "transmission-cli",
            Kind::Qbittorrent => "qbittorrent-nox",
        };
        (!ok).then_some(what)
    }
}

/// Seeding complete data, or leeching into an empty directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Seed,
    Leech,
}

/// A running client.
pub struct Client {
    pub kind: Kind,
    pub proc: External,
    /// Its host, for the Web API (qBittorrent).
    host: usize,
    /// Its own log file, if it writes one.
    log_file: Option<PathBuf>,
    /// Written by Transmission's finish script.
    done_marker: PathBuf,
}

impl Client {
    /// Starts `kind` on host `host` of `net`, seeding the data in `dir`
    /// (the directory holding the torrent's file or folder) or leeching
    /// into it. `work` is a directory of its own for configuration and logs.
    pub fn start(
        kind: Kind,
        role: Role,
        net: &Netns,
        host: usize,
        torrent: &Path,
        dir: &Path,
        work: &Path,
    ) -> Client {
        std::fs::create_dir_all(work).expect("create client work dir");
        let ip = net.host(host).ip;
        let prefix = net.exec_prefix(host);
        let s = |p: &Path| p.display().to_string();
        let done_marker = work.join("DONE");
        let mut log_file = None;
        let (program, args): (&str, Vec<String>) = match kind {
            Kind::Libtorrent => {
                let mode = if role == Role::Seed { "seed" } else { "leech" };
                let args = vec![
                    LT_PY.into(),
                    mode.into(),
                    s(torrent),
                    s(dir),
                    PEER_PORT.to_string(),
                    "--host".into(),
                    ip.to_string(),
                    "--verbose".into(),
                ];
                (PYTHON, args)
            }
            Kind::Aria2 => {
                let log = work.join("aria2.log");
                let mut args: Vec<String> = [
                    "--no-conf=true",
                    "--disable-ipv6=true",
                    "--enable-dht=false",
                    "--enable-dht6=false",
                    "--bt-enable-lpd=false",
                    "--enable-peer-exchange=false",
                    "--summary-interval=0",
                    "--file-allocation=none",
                    "--log-level=debug",
                    "--console-log-level=notice",
                ]
                .map(String::from)
                .to_vec();
                args.push(format!("--dir={}", s(dir)));
                args.push(format!("--listen-port={PEER_PORT}"));
                args.push(format!("--interface={ip}"));
                args.push(format!("--log={}", s(&log)));
                if role == Role::Seed {
                    // Check the data, then seed until stopped.
                    args.push("--check-integrity=true".into());
                    args.push("--seed-ratio=0.0".into());
                } else {
                    // Exit as soon as the download is complete.
                    args.push("--seed-time=0".into());
                    args.push("--bt-stop-timeout=0".into());
                }
                args.push(s(torrent));
                log_file = Some(log);
                ("aria2c", args)
            }
            Kind::Transmission => {
                let conf = work.join("conf");
                std::fs::create_dir_all(&conf).unwrap();
                // Only what keeps it private and quiet; uTP and encryption
                // keep their defaults (utp-enabled true, encryption 1).
                let settings = format!(
                    "{{\n\"dht-enabled\": false,\n\"lpd-enabled\": false,\n\
                     \"pex-enabled\": false,\n\"port-forwarding-enabled\": false,\n\
                     \"rpc-enabled\": false,\n\"bind-address-ipv4\": \"{ip}\",\n\
                     \"bind-address-ipv6\": \"::1\",\n\"message-level\": 3\n}}\n"
                );
                std::fs::write(conf.join("settings.json"), settings).unwrap();
                let script = work.join("finished.sh");
                std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\n", s(&done_marker)))
                    .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
                let mut args = vec![
                    "-g".into(),
                    s(&conf),
                    "-w".into(),
                    s(dir),
                    "-p".into(),
                    PEER_PORT.to_string(),
                    "-M".into(),
                    "-B".into(),
                    "-f".into(),
                    s(&script),
                ];
                if role == Role::Seed {
                    // Check the data before seeding it.
                    args.push("-v".into());
                }
                args.push(s(torrent));
                ("transmission-cli", args)
            }
            Kind::Qbittorrent => {
                let profile = work.join("profile");
                let conf_dir = profile.join("qBittorrent/config");
                std::fs::create_dir_all(&conf_dir).unwrap();
                // BTProtocol and Encryption are left out: the defaults
                // (TCP and uTP, encryption allowed).
                let conf = format!(
                    "[LegalNotice]\nAccepted=true\n\n\
                     [BitTorrent]\nSession\\DHTEnabled=false\nSession\\LSDEnabled=false\n\
                     Session\\PeXEnabled=false\nSession\\Port={PEER_PORT}\n\
                     Session\\Interface=eth0\nSession\\InterfaceName=eth0\n\
                     Session\\InterfaceAddress={ip}\n\
                     Session\\MultiConnectionsPerIp=true\nSession\\SSRFMitigation=false\n\n\
                     [Network]\nPortForwardingEnabled=false\n\n\
                     [Preferences]\nConnection\\ResolvePeerCountries=false\n\
                     General\\UseRandomPort=false\n\
                     WebUI\\Address=127.0.0.1\nWebUI\\Port={QBT_WEBUI_PORT}\n\
                     WebUI\\LocalHostAuth=false\nWebUI\\CSRFProtection=false\n\
                     WebUI\\HostHeaderValidation=false\n"
                );
                std::fs::write(conf_dir.join("qBittorrent.conf"), conf).unwrap();
                log_file = Some(profile.join("qBittorrent/data/logs/qbittorrent.log"));
                let args = vec![
                    format!("--profile={}", s(&profile)),
                    format!("--save-path={}", s(dir)),
                    "--skip-dialog=true".into(),
                    s(torrent),
                ];
                ("qbittorrent-nox", args)
            }
        };
        let (program, args) = match kind {
            // Its peer-level log (TR_DEBUG_FD) goes with the rest of its
            // stderr to a file: `sh` redirects and execs it, so the PID
            // under `timeout` is still Transmission's.
            Kind::Transmission => {
                let log = work.join("transmission.log");
                let mut sh = vec![
                    "-c".to_string(),
                    format!("TR_DEBUG_FD=2 exec \"$0\" \"$@\" 2>>'{}'", s(&log)),
                    program.to_string(),
                ];
                sh.extend(args);
                log_file = Some(log);
                ("sh", sh)
            }
            _ => (program, args),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let name = format!("{} {:?} on {ip}", kind.name(), role);
        let proc = External::start_in(&name, &prefix, CLIENT_LIMIT, program, &args, work);
        Client {
            kind,
            proc,
            host,
            log_file,
            done_marker,
        }
    }

    /// Whether a leecher has the whole torrent, by the client's own account:
    /// lt.py's `DONE`, aria2's exit status 0, Transmission's finish script,
    /// qBittorrent's Web API (progress 1). `Err` when it exited without.
    pub fn done(&mut self, net: &Netns) -> Result<bool, String> {
        match self.kind {
            Kind::Libtorrent => {
                if self
                    .proc
                    .wait_for_line("DONE ", Duration::from_millis(50))
                    .is_some()
                {
                    return Ok(true);
                }
            }
            Kind::Aria2 => {
                if let Some(status) = self.proc.wait(Duration::ZERO) {
                    return match status.success() {
                        true => Ok(true),
                        false => Err(format!("aria2c exited with {status}")),
                    };
                }
                return Ok(false);
            }
            Kind::Transmission => {
                if self.done_marker.exists() {
                    return Ok(true);
                }
            }
            Kind::Qbittorrent => {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, QBT_WEBUI_PORT));
                if let Some(body) = http_get(net, self.host, addr, "/api/v2/torrents/info") {
                    let body = String::from_utf8_lossy(&body);
                    let state = super::json_str(&body, "state").unwrap_or_default();
                    let progress = super::json_num(&body, "progress").unwrap_or(0.0);
                    // "uploading", "stalledUP", "queuedUP", ...: it checked
                    // every piece and switched to seeding.
                    if progress >= 1.0 && (state.ends_with("UP") || state == "uploading") {
                        return Ok(true);
                    }
                }
            }
        }
        match self.proc.wait(Duration::ZERO) {
            Some(status) => Err(format!("{} exited early with {status}", self.kind.name())),
            None => Ok(false),
        }
    }

    /// Waits up to `within` for [`Client::done`]; `Err` says why not.
    pub fn wait_done(&mut self, net: &Netns, within: Duration) -> Result<(), String> {
        let end = std::time::Instant::now() + within;
        loop {
            if self.done(net)? {
                return Ok(());
            }
            if std::time::Instant::now() > end {
                return Err(format!(
                    "{} did not finish within {within:?}",
                    self.kind.name()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of the client's output and of its log file.
    pub fn log(&self, lines: usize) -> String {
        let mut out = tail(&self.proc.describe(), lines);
        if let Some(f) = &self.log_file {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| format!("({e})"));
            out.push_str(&format!(
                "\n--- {} ---\n{}",
                f.display(),
                tail(&text, lines)
            ));
        }
        out
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = String::new();
    if from > 0 {
        out.push_str(&format!("[... {from} lines before]\n"));
    }
    out.push_str(&lines[from..].join("\n"));
    out
}

/// One HTTP/1.0 GET from host `from` to `addr`: the body of a 200 answer,
/// `None` otherwise (5 s deadlines). The body ends at its Content-Length
/// (qBittorrent keeps the connection open), else at the end of the stream.
pub fn http_get(net: &Netns, from: usize, addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut s = net.connect(from, addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut want: Option<usize> = None;
    loop {
        if let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
            if head.split(' ').nth(1) != Some("200") {
                return None;
            }
            want = want.or_else(|| {
                head.lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .map(|n: usize| split + 4 + n)
            });
            if want.is_some_and(|n| resp.len() >= n) {
                return Some(resp[split + 4..want.unwrap()].to_vec());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(resp[split + 4..].to_vec())
}

/// The seeders (`complete`) the tracker at `tracker` lists for the torrent
/// in its BEP 48 scrape, asked from host `from`.
pub fn scrape_complete(
    net: &Netns,
    from: usize,
    tracker: SocketAddr,
    info_hash: &[u8; 20],
) -> Option<i64> {
    let q: String = info_hash.iter().map(|b| format!("%{b:02X}")).collect();
    let body = http_get(net, from, tracker, &format!("/scrape?info_hash={q}"))?;
    let v = shoal::proto::bencode::decode(&body).ok()?;
    let files = v.get("files")?.as_dict()?;
    let (_, entry) = files.iter().find(|(k, _)| *k == info_hash.as_slice())?;
    entry.get("complete")?.as_int()
}
