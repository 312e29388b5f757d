//! Command line: parse arguments, dispatch to a command, map the outcome to
//! an exit code (0 success, 1 failure, 2 bad usage).
//!
//! Owns: argument syntax, help texts and the one-line error format
//! `error: FILE: what is wrong`. Does not own: what a command does.

use crate::metainfo::Metainfo;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
shoal: a small, fast BitTorrent client

usage:
  shoal get FILE.torrent [-o DIR] [options]   download (also: shoal FILE.torrent)
  shoal info FILE.torrent [--json]            show what a torrent holds

options:
  -h, --help       this help
  -V, --version    print the version
";

const INFO_USAGE: &str = "\
usage: shoal info FILE.torrent [--json]

Prints the torrent's name, info hash, size, piece length and count, private
flag, trackers by tier, web seeds and file list.

  --json    one JSON object instead of text
";

const GET_USAGE: &str = "\
usage: shoal get FILE.torrent [-o DIR] [options]
       shoal FILE.torrent [-o DIR] [options]

Downloads every file of the torrent into DIR (default: the current
directory), which receives the torrent's file or folder. Data already there
is checked first and only missing pieces are fetched. Exits 0 only when all
data is on disk and verified.

  -o, --output DIR       where the torrent's file or folder goes
  --peer ADDR            connect to this peer too (repeatable), e.g.
                         127.0.0.1:6881 or [::1]:6881
  --max-peers N          peers connected at once (default 50)
  --port N               the port announced to trackers (default 6881)
  --timeout DURATION     give up (exit 1) if not complete by then: 90s, 15m, 2h
  --peer-timeout DURATION  drop a peer that owes us data but sends none for
                         this long (default 20s)
  -q, --quiet            no progress output
  --json                 one JSON object per line on stdout: checked,
                         progress, piece_failed, peer_banned, tracker_error,
                         tracker_warning, done
  -v, --verbose          log to stderr (-v info, -vv debug; RUST_LOG works too)
";

/// How a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The arguments are wrong: print the message and usage, exit 2.
    Usage(String),
    /// The command ran and failed: print `error: ...`, exit 1.
    Failed(String),
}

pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    init_logging(&args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}\n(see 'shoal --help')");
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// Runs one command line (without the program name).
pub fn run(mut args: Vec<OsString>) -> Result<(), Failure> {
    let Some(first) = args.first().and_then(|a| a.to_str()).map(str::to_owned) else {
        print!("{USAGE}");
        return Err(Failure::Usage("no command given".into()));
    };
    args.remove(0);
    let p = pico_args::Arguments::from_vec(args);
    match first.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "-V" | "--version" => {
            println!("shoal {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "info" => info(p),
        "get" => get(p, None),
        other if other.ends_with(".torrent") && !other.starts_with('-') => {
            get(p, Some(OsString::from(other)))
        }
        other => Err(Failure::Usage(format!("unknown command '{other}'"))),
    }
}

fn help_requested(p: &mut pico_args::Arguments, text: &str) -> bool {
    let asked = p.contains(["-h", "--help"]);
    if asked {
        print!("{text}");
    }
    asked
}

/// The remaining arguments must be exactly the named positionals.
fn positionals<const N: usize>(
    p: pico_args::Arguments,
    names: [&str; N],
) -> Result<[OsString; N], Failure> {
    let rest = p.finish();
    if let Some(flag) = rest.iter().find(|a| {
        a.to_str()
            .is_some_and(|s| s.starts_with('-') && s.len() > 1)
    }) {
        return Err(Failure::Usage(format!(
            "unknown option '{}'",
            flag.to_string_lossy()
        )));
    }
    rest.try_into().map_err(|rest: Vec<OsString>| {
        Failure::Usage(format!(
            "expected {} argument(s) ({}), got {}",
            N,
            names.join(", "),
            rest.len()
        ))
    })
}

/// Reads and parses a torrent file; errors name the file.
pub fn load_torrent(path: &Path) -> Result<Metainfo, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::Failed(format!("{}: {}", path.display(), io_reason(&e))))?;
    Metainfo::from_bytes(&bytes).map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
}

/// An I/O error's reason without Rust's "(os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn info(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, INFO_USAGE) {
        return Ok(());
    }
    let json = p.contains("--json");
    let [file] = positionals(p, ["FILE.torrent"])?;
    let m = load_torrent(Path::new(&file))?;
    if json {
        println!("{}", crate::info::json(&m));
    } else {
        print!("{}", crate::info::text(&m));
    }
    Ok(())
}

/// `RUST_LOG` as env_logger users expect; `-v`/`-vv` raise the default.
fn init_logging(args: &[OsString]) {
    let level = if args.iter().any(|a| a == "-vv") {
        "debug"
    } else if args.iter().any(|a| a == "-v" || a == "--verbose") {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
}

fn parse_value<T>(
    p: &mut pico_args::Arguments,
    keys: impl Into<pico_args::Keys>,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Failure> {
    let raw: Option<String> = p
        .opt_value_from_str(keys)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    raw.map(|r| parse(&r).ok_or_else(|| Failure::Usage(format!("invalid {what} '{r}'"))))
        .transpose()
}

/// The output mode from `-q` and `--json`.
fn output_mode(p: &mut pico_args::Arguments) -> crate::progress::Mode {
    let json = p.contains("--json");
    let quiet = p.contains(["-q", "--quiet"]);
    // -v/-vv were read by init_logging.
    while p.contains(["-v", "--verbose"]) || p.contains("-vv") {}
    match (json, quiet) {
        (true, _) => crate::progress::Mode::Json,
        (false, true) => crate::progress::Mode::Quiet,
        (false, false) => crate::progress::Mode::Human,
    }
}

fn get(mut p: pico_args::Arguments, torrent: Option<OsString>) -> Result<(), Failure> {
    use crate::orchestrator::{self, Options};
    use crate::units::parse_duration;
    if help_requested(&mut p, GET_USAGE) {
        return Ok(());
    }
    let out_dir: PathBuf = p
        .opt_value_from_os_str(["-o", "--output"], |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| Failure::Usage(e.to_string()))?
        .unwrap_or_else(|| PathBuf::from("."));
    let mut opts = Options::new(out_dir);
    while let Some(addr) = parse_value(&mut p, "--peer", "peer address", |s| s.parse().ok())? {
        opts.peers.push(addr);
    }
    if let Some(n) = parse_value(&mut p, "--max-peers", "peer count", |s| {
        s.parse().ok().filter(|&n: &usize| n > 0)
    })? {
        opts.max_peers = n;
    }
    if let Some(port) = parse_value(&mut p, "--port", "port", |s| s.parse().ok())? {
        opts.port = port;
    }
    opts.timeout = parse_value(&mut p, "--timeout", "duration", parse_duration)?;
    if let Some(t) = parse_value(&mut p, "--peer-timeout", "duration", parse_duration)? {
        opts.peer_timeout = t;
    }
    let mode = output_mode(&mut p);
    let file = match torrent {
        Some(f) => {
            positionals(p, [])?;
            f
        }
        None => {
            let [f] = positionals(p, ["FILE.torrent"])?;
            f
        }
    };
    let meta = std::sync::Arc::new(load_torrent(Path::new(&file))?);
    crate::sys::install_stop_handlers();
    let mut progress = crate::progress::Progress::new(mode);
    let summary = orchestrator::run(meta.clone(), opts, &mut progress).map_err(Failure::Failed)?;
    if let Some(why) = summary.stopped {
        return Err(Failure::Failed(format!("{}: {why}", meta.display_name())));
    }
    let secs = summary.elapsed.as_secs_f64();
    let total = meta.geometry.total_len();
    progress.note(
        || {
            crate::json::Object::new()
                .str("event", "done")
                .num("bytes", total)
                .num("downloaded", summary.downloaded)
                .num("seconds", format!("{secs:.3}"))
                .finish()
        },
        &format!(
            "done: {} ({}) in {:.1}s, {}/s",
            meta.display_name(),
            crate::units::format_bytes(total),
            secs,
            crate::units::format_bytes((summary.downloaded as f64 / secs.max(1e-3)) as u64)
        ),
    );
    Ok(())
}
