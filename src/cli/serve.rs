//! `shoal serve`: the command line of the many-torrent daemon.

use super::{open_session, parse_value, session_options, state_dir, Failure};
use crate::serve::api::{serve_api, DEFAULT_ADDR};
use crate::serve::manager::{Config, Manager};
use crate::serve::watch::{Watch, SCAN_EVERY};
use crate::util::json::Object;
use crate::util::units::parse_duration;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVE_USAGE: &str = "\
usage: shoal serve [--data DIR] [--watch DIR] [--state DIR] [options]

Serves many torrents in one process, on one port: each torrent's data is
checked (cheaply, through its resume state), downloaded if incomplete, and
seeded. Runs until SIGTERM or Ctrl-C, which announce `stopped` for every
torrent and save resume state; SIGHUP rescans the watch folder.

  --data DIR          where each torrent's file or folder is (default: .)
  --watch DIR         serve every *.torrent and *.magnet (one magnet URI)
                      file in DIR; removing the file stops its torrent
                      (its data is kept). Looked at every 2 s.
  --state DIR         torrents added through the API (default:
                      $XDG_STATE_HOME/shoal, else ~/.local/state/shoal)
  --api ADDR:PORT     the HTTP API (default 127.0.0.1:6880; see 'shoal ctl')
  --api-token TOKEN   required of API clients as 'Authorization: Bearer
                      TOKEN' (also from $SHOAL_API_TOKEN); needed to bind
                      the API to anything but loopback
  --no-api            no HTTP API (the watch folder only)
  --json              the start-up lines as JSON objects
  --max-active N      checks and downloads at once (default 8; the others
                      wait as 'queued'; seeding is never queued)
  --idle-after DUR    a complete torrent with no peer for this long gives
                      up its threads until a peer dials in (default 60s)
  --seed-ratio R, --seed-time DUR
                      stop seeding a torrent there (default: never)
  --max-peers N       peers of all torrents together (default 500)
  --max-peers-per-torrent N
                      peers of one torrent (default 50)
  --max-upload-rate RATE, --max-download-rate RATE
                      limits for the whole process (e.g. 20M, in bytes/s)
  --port N, --bind ADDR, --encryption MODE, --utp on|off, --no-dht, --no-lsd,
  --dht-bootstrap HOST:PORT, --peer-timeout DUR
                      as for 'shoal get'
";

pub fn serve(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if super::help_requested(&mut p, SERVE_USAGE) {
        return Ok(());
    }
    let usage = |e: pico_args::Error| Failure::Usage(e.to_string());
    let path = |s: &std::ffi::OsStr| Ok::<_, String>(PathBuf::from(s));
    let data = p
        .opt_value_from_os_str("--data", path)
        .map_err(usage)?
        .unwrap_or_else(|| PathBuf::from("."));
    let watch = p.opt_value_from_os_str("--watch", path).map_err(usage)?;
    let state = match p.opt_value_from_os_str("--state", path).map_err(usage)? {
        Some(s) => s,
        None => {
            state_dir().ok_or_else(|| Failure::Usage("no --state and no home directory".into()))?
        }
    };
    let positive = |s: &str| s.parse().ok().filter(|&n: &usize| n > 0);
    let api = parse_value(&mut p, "--api", "address", |s| s.parse::<SocketAddr>().ok())?
        .unwrap_or(DEFAULT_ADDR);
    let token = p
        .opt_value_from_str::<_, String>("--api-token")
        .map_err(usage)?
        .or_else(|| {
            std::env::var("SHOAL_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty())
        });
    let no_api = p.contains("--no-api");
    let json = p.contains("--json");
    let max_active = parse_value(&mut p, "--max-active", "count", positive)?.unwrap_or(8);
    let idle_after = parse_value(&mut p, "--idle-after", "duration", parse_duration)?
        .unwrap_or(Duration::from_secs(60));
    // Here --max-peers is the session's; each torrent's has its own name.
    let max_peers = parse_value(&mut p, "--max-peers", "peer count", positive)?.unwrap_or(500);
    let per_torrent = parse_value(&mut p, "--max-peers-per-torrent", "peer count", positive)?;
    let (mut opts, setup) = session_options(&mut p, data.clone())?;
    if let Some(n) = per_torrent {
        opts.max_peers = n;
    }
    super::positionals(p, [])?;
    for dir in [Some(&data), Some(&state), watch.as_ref()]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?;
    }
    crate::disk::sys::install_serve_handlers();
    let mut session = open_session(setup, &opts, false)?;
    session.limit_peers(max_peers);
    let session = Arc::new(session);
    if let Some(addr) = session.local_addr() {
        say(json, "listening", addr);
    }
    let config = Config {
        data,
        state: state.clone(),
        opts,
        idle_after,
        max_active,
    };
    let manager = Manager::start(session, config)
        .map_err(|e| Failure::Failed(format!("{}: {e}", state.display())))?;
    let _api = match no_api {
        true => None,
        false => {
            let server = serve_api(api, token, manager.control())
                .map_err(|e| Failure::Failed(format!("API on {api}: {e}")))?;
            say(json, "api", server.local_addr());
            Some(server)
        }
    };
    let mut watch = watch.map(Watch::new);
    let mut last_scan: Option<Instant> = None;
    while !crate::disk::sys::stop_requested() {
        let hangup = crate::disk::sys::take_hangup();
        if let Some(w) = watch.as_mut() {
            if hangup || last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
                last_scan = Some(Instant::now());
                w.scan(&manager);
            }
        }
        manager.step(Duration::from_millis(250));
    }
    log::info!("stopping");
    manager.shutdown();
    Ok(())
}

/// A start-up line: `listening on ADDR`, or `{"event":"listening","addr":...}`.
fn say(json: bool, event: &str, addr: SocketAddr) {
    if json {
        let line = Object::new()
            .str("event", event)
            .str("addr", &addr.to_string())
            .finish();
        println!("{line}");
    } else {
        println!("{event} on {addr}");
    }
}
