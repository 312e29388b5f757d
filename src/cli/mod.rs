//! Command line: parse arguments, dispatch to a command, map the outcome to
//! an exit code (0 success, 1 failure, 2 bad usage).
//!
//! Owns: argument syntax, help texts and the one-line error format
//! `error: FILE: what is wrong`. Does not own: what a command does.

pub mod ctl;
pub mod info;
pub mod progress;
mod serve;

use crate::cli::progress::{Mode, Progress};
use crate::engine::selection::Selector;
use crate::engine::session::{LsdOff, Session};
use crate::engine::torrent::{self, Options, TorrentError};
use crate::net::peer::Encryption;
use crate::proto::magnet::Magnet;
use crate::proto::metainfo::Metainfo;
use crate::util::units::{format_bytes, parse_duration};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "\
shoal: a small, fast BitTorrent client

usage:
  shoal get FILE.torrent [-o DIR] [options]   download (also: shoal FILE.torrent)
  shoal seed FILE.torrent DATA_PATH [options] serve complete data
  shoal check FILE.torrent DATA_PATH          verify data against a torrent
  shoal create PATH [-t URL] [-o OUT.torrent] make a torrent of a file or directory
  shoal info FILE.torrent [--json] [--scrape] show what a torrent holds
  shoal tracker [--listen ADDR:PORT]          a small HTTP + UDP tracker for private swarms
  shoal dht [--listen ADDR:PORT]              a DHT node (a bootstrap node for a fleet)
  shoal serve [--data DIR] [--watch DIR]      many torrents in one process, with an HTTP API
  shoal ctl [--api ADDR:PORT] COMMAND         drive a running 'shoal serve' through its API

'shoal COMMAND --help' describes each command.

options:
  -h, --help       this help
  -V, --version    print the version
";

const INFO_USAGE: &str = "\
usage: shoal info FILE.torrent [--json] [--scrape [--timeout DURATION]]

Prints the torrent's name, info hash, size, piece length and count, private
flag, trackers by tier, web seeds and file list.

  --json       one JSON object instead of text
  --scrape     also ask every tracker (HTTP and UDP, BEP 48 / BEP 15) for
               its seeders, leechers and completed downloads, all at once
  --timeout D  how long each tracker may take (default 10s)
";

const GET_USAGE: &str = "\
usage: shoal get FILE.torrent|MAGNET [-o DIR] [options]
       shoal FILE.torrent|MAGNET [-o DIR] [options]

Downloads every file of the torrent into DIR (default: the current
directory), which receives the torrent's file or folder. Data already there
is checked first and only missing pieces are fetched. Exits 0 only when all
data is on disk and verified; by default it exits as soon as it is. A magnet
link ('magnet:?xt=urn:btih:...') first fetches the torrent from its peers.

  -o, --output DIR       where the torrent's file or folder goes
  --save-torrent FILE    (magnet) save the fetched torrent to FILE
  --web-seed URL         also fetch from this HTTP server (BEP 19, repeatable),
                         like the torrent's own url-list: only what the
                         swarm lacks, or when peers are slow
  --seed-ratio R         keep seeding until we uploaded R x the torrent's size
  --seed-time DURATION   keep seeding this long after completion
                         (with both, whichever comes first)
  --timeout DURATION     give up (exit 1) if not complete by then
";

const SEED_USAGE: &str = "\
usage: shoal seed FILE.torrent DATA_PATH [options]

Verifies the data, then serves it until Ctrl-C (or a --seed-ratio /
--seed-time limit). DATA_PATH is the directory holding the torrent's file or
folder, or that file or folder itself. Refuses to start if pieces are
missing.

  --super-seed           initial seeding (BEP 16, relaxed): hand every piece
                         out once, to one peer each, before sending any
                         twice, then only the rarest; every interested peer
                         is unchoked. For the first seeder of a swarm that
                         starts together
";

const CHECK_USAGE: &str = "\
usage: shoal check FILE.torrent DATA_PATH [--json] [--only GLOB] [--files LIST]

Hashes the data on all cores and says how many pieces are good. Exits 0 if
all are, 1 otherwise. DATA_PATH as for 'shoal seed'. With --only/--files
(as for 'get'), only the chosen files' pieces count, and the bytes of
other files are read from the parts file a selective 'get' left.
";

const CREATE_USAGE: &str = "\
usage: shoal create PATH [-t URL ...] [options]

Makes a v1 torrent of a file or a directory, hashing on all cores.
Directories: files are taken recursively in sorted order; hidden files are
included; symbolic links inside the directory, sockets and devices are
skipped with a warning; empty directories cannot be expressed and are left
out.

  -t, --tracker URL      announce URL (repeatable; each its own tier; with
                         none, the torrent is found through --peer only)
  -o, --output FILE      where to write the torrent (default: NAME.torrent
                         in the current directory)
  --piece-size SIZE      a power of two from 16K to 256M (default: chosen
                         for about 1,000-2,000 pieces, 16K to 16M)
  --private              private torrent (BEP 27): no DHT or peer exchange
  --comment TEXT
  --web-seed URL         BEP 19 web seed (repeatable)
  --no-date              leave out the creation date (reproducible output)
  -q, --quiet            no progress line
";

const TRACKER_USAGE: &str = "\
usage: shoal tracker [--listen ADDR:PORT] [options]

A small tracker for private swarms: HTTP (BEP 3, compact peers BEP 23,
peers6 BEP 7, scrape BEP 48 at /scrape) and UDP (BEP 15) on the same port
number. Peers silent for two intervals are forgotten. Runs until Ctrl-C.

  --listen ADDR:PORT     where to listen (default 0.0.0.0:6969; [::]:6969
                         for IPv6)
  --interval DURATION    how often peers re-announce (default 30m)
  --max-torrents N       info hashes tracked at most (default 10000)
  --max-peers N          peers kept per torrent at most (default 5000)
  --no-udp               HTTP only
  -q, --quiet            no log line at start
";

const DHT_USAGE: &str = "\
usage: shoal dht [--listen ADDR:PORT] [--dht-bootstrap HOST:PORT ...] [options]

A DHT node (BEP 5) and nothing else: a bootstrap node for a private fleet
(give its address to every host's --dht-bootstrap). It answers ping,
find_node, get_peers and announce_peer, keeps announced peers 30 minutes,
and runs until Ctrl-C.

  --listen ADDR:PORT       UDP address (default 0.0.0.0:6881)
  --dht-bootstrap HOST:PORT  join the DHT through this node (repeatable;
                           default: the public routers and the nodes saved
                           by the last run)
  --json                   print the listening line as a JSON object
  -q, --quiet              print nothing
";

/// Options common to `get` and `seed`, shown in both helps.
const SESSION_OPTIONS: &str = "
  --peer ADDR            connect to this peer too (repeatable), e.g.
                         127.0.0.1:6881 or [::1]:6881
  --port N               listen for peers on this port (default 6881; if
                         taken, a free one; 0: any free port)
  --bind IP              listen on this address, and dial peers from it
                         when it is a specific one (default :: , which
                         takes IPv4 and IPv6; 0.0.0.0 where there is no IPv6)
  --no-listen            accept no inbound connections
  --no-lsd               no local service discovery (BEP 14: announcing
                         our torrents to the LAN by multicast, and learning
                         peers from others' announces). It is on by default,
                         except for private torrents and when we listen on
                         loopback only or not at all
  --max-peers N          peers connected at once (default 50)
  --max-peers-per-ip N   connections with one IP address at most (default 8)
  --upload-slots N       peers we upload to at once, plus one for a peer
                         far behind (default 6)
  --peer-timeout DURATION  drop a peer that owes us data but sends none for
                         this long (default 20s)
  --only GLOB            only the files whose path (as 'shoal info' prints
                         it) matches: * within a directory, ** across, ?
                         one character (repeatable)
  --files LIST           only these files, numbered as 'shoal info' does,
                         e.g. 1,4-7 (repeatable; with --only, either)
  --max-download-rate RATE, --max-upload-rate RATE
                         bytes per second for the whole process, e.g. 20M
                         or 512K (default: unlimited)
  --encryption MODE      MSE/PE stream encryption (RC4): prefer (default:
                         dial encrypted, retry a peer in plaintext if it
                         hangs up; accept both), require (encrypted only,
                         both ways), off (plaintext only, both ways)
  --utp on|off           accept uTP (BEP 29) connections on the listening
                         port's UDP side (default: on); off resets them, so
                         uTP-first clients dial TCP at once (peers are
                         always dialled over TCP)
  --no-dht               no DHT (BEP 5); it is on by default, and always
                         off for private torrents
  --dht-bootstrap HOST:PORT  join the DHT through this node (repeatable;
                         default: router.bittorrent.com:6881,
                         dht.transmissionbt.com:6881, router.utorrent.com:6881
                         and the nodes saved by the last run in
                         $XDG_STATE_HOME/shoal/dht.nodes)
  -q, --quiet            no progress output
  --json                 one JSON object per line on stdout: checked,
                         listening, progress, piece_failed, peer_banned,
                         tracker_error, tracker_warning, seeding, done
  -v, --verbose          log to stderr (-v info, -vv debug; RUST_LOG works too)

Durations: 90, 90s, 15m, 2h, 1d.
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
    // Storage keeps one descriptor per file of a torrent: a torrent of more
    // files than the usual soft limit of 1024 needs the hard limit.
    match crate::disk::sys::raise_open_file_limit() {
        Ok(n) => log::debug!("open file limit: {n}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
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
        "seed" => seed(p),
        "check" => check(p),
        "create" => create(p),
        "tracker" => tracker(p),
        "dht" => dht(p),
        "serve" => serve::serve(p),
        "ctl" => ctl::run(p),
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
        if text == GET_USAGE || text == SEED_USAGE {
            print!("{SESSION_OPTIONS}");
        }
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
    let bytes = crate::disk::torrent_file::read(path)
        .map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))?;
    Metainfo::from_bytes(&bytes).map_err(|e| Failure::Failed(format!("{}: {e}", path.display())))
}

fn info(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, INFO_USAGE) {
        return Ok(());
    }
    let json = p.contains("--json");
    let scrape = p.contains("--scrape");
    let timeout = parse_value(&mut p, "--timeout", "duration", parse_duration)?;
    let [file] = positionals(p, ["FILE.torrent"])?;
    if let Some(uri) = file.to_str().filter(|f| f.starts_with("magnet:")) {
        let m = parse_magnet(uri)?;
        match json {
            true => println!("{}", crate::cli::info::magnet_json(&m)),
            false => print!("{}", crate::cli::info::magnet_text(&m)),
        }
        return Ok(());
    }
    let m = load_torrent(Path::new(&file))?;
    let scraped = scrape.then(|| {
        crate::cli::info::scrape_all(&m, timeout.unwrap_or(std::time::Duration::from_secs(10)))
    });
    if json {
        println!("{}", crate::cli::info::json(&m, scraped.as_deref()));
    } else {
        print!("{}", crate::cli::info::text(&m, scraped.as_deref()));
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
fn output_mode(p: &mut pico_args::Arguments) -> Mode {
    let json = p.contains("--json");
    let quiet = p.contains(["-q", "--quiet"]);
    // -v/-vv were read by init_logging.
    while p.contains(["-v", "--verbose"]) || p.contains("-vv") {}
    match (json, quiet) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Quiet,
        (false, false) => Mode::Human,
    }
}

/// The port we listen on by default.
const DEFAULT_PORT: u16 = 6881;

/// Where shoal keeps state between runs: `$XDG_STATE_HOME/shoal`, else
/// `~/.local/state/shoal`.
fn state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
    Some(base.join("shoal"))
}

/// Where the DHT node's routing table is kept between runs.
fn dht_state_file() -> Option<PathBuf> {
    Some(state_dir()?.join("dht.nodes"))
}

/// `--dht-bootstrap` (repeatable): the given nodes only; without it the
/// public routers and the nodes saved by the last run (saved again at exit).
fn dht_config(p: &mut pico_args::Arguments) -> Result<crate::net::dht::Config, Failure> {
    let bootstrap: Vec<String> = p
        .values_from_str("--dht-bootstrap")
        .map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(bad) = bootstrap.iter().find(|b| b.rsplit_once(':').is_none()) {
        return Err(Failure::Usage(format!(
            "invalid DHT node '{bad}' (HOST:PORT)"
        )));
    }
    Ok(if bootstrap.is_empty() {
        crate::net::dht::Config {
            bootstrap: crate::net::dht::ROUTERS.map(String::from).to_vec(),
            state_file: dht_state_file(),
        }
    } else {
        crate::net::dht::Config {
            bootstrap,
            state_file: None,
        }
    })
}

/// How the session is set up: where it listens (`None`: nowhere), its
/// DHT node (`None`: off) and whether it runs local service discovery
/// (unless `--no-lsd`).
struct Setup {
    listen: Option<SocketAddr>,
    dht: Option<crate::net::dht::Config>,
    lsd: bool,
    /// Accept uTP on the listening port's UDP side (else reset it).
    utp: bool,
}

/// Options shared by `get` and `seed`: the torrent's and the session's.
fn session_options(
    p: &mut pico_args::Arguments,
    out_dir: PathBuf,
) -> Result<(Options, Setup), Failure> {
    let mut opts = Options::new(out_dir);
    let mut listen = Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, DEFAULT_PORT)));
    while let Some(addr) = parse_value(p, "--peer", "peer address", |s| s.parse().ok())? {
        opts.peers.push(addr);
    }
    let positive = |s: &str| s.parse().ok().filter(|&n: &usize| n > 0);
    if let Some(n) = parse_value(p, "--max-peers", "peer count", positive)? {
        opts.max_peers = n;
    }
    if let Some(n) = parse_value(p, "--max-peers-per-ip", "peer count", positive)? {
        opts.max_peers_per_ip = n;
    }
    if let Some(n) = parse_value(p, "--upload-slots", "slot count", |s| s.parse().ok())? {
        opts.upload_slots = n;
    }
    let port = parse_value(p, "--port", "port", |s| s.parse::<u16>().ok())?;
    let bind = parse_value(p, "--bind", "address", |s| s.parse::<IpAddr>().ok())?;
    if let Some(addr) = listen.as_mut() {
        if let Some(port) = port {
            addr.set_port(port);
        }
        if let Some(ip) = bind {
            addr.set_ip(ip);
        }
    }
    opts.source = bind.filter(|ip| !ip.is_unspecified());
    if p.contains("--no-listen") {
        listen = None;
    }
    opts.timeout = parse_value(p, "--timeout", "duration", parse_duration)?;
    if let Some(t) = parse_value(p, "--peer-timeout", "duration", parse_duration)? {
        opts.peer_timeout = t;
    }
    opts.seed.ratio = parse_value(p, "--seed-ratio", "ratio", |s| {
        s.parse().ok().filter(|r: &f64| r.is_finite() && *r >= 0.0)
    })?;
    opts.seed.time = parse_value(p, "--seed-time", "duration", parse_duration)?;
    if let Some(e) = parse_value(p, "--encryption", "encryption mode", Encryption::from_name)? {
        opts.encryption = e;
    }
    let utp = parse_value(p, "--utp", "uTP setting (on or off)", |s| match s {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    })?
    .unwrap_or(true);
    opts.select = selectors(p)?;
    opts.max_download_rate = parse_value(p, "--max-download-rate", "rate", parse_rate)?;
    opts.max_upload_rate = parse_value(p, "--max-upload-rate", "rate", parse_rate)?;
    let no_dht = p.contains("--no-dht");
    let lsd = !p.contains("--no-lsd");
    let dht = dht_config(p)?;
    Ok((
        opts,
        Setup {
            listen,
            dht: (!no_dht).then_some(dht),
            lsd,
            utp,
        },
    ))
}

fn get(mut p: pico_args::Arguments, torrent: Option<OsString>) -> Result<(), Failure> {
    if help_requested(&mut p, GET_USAGE) {
        return Ok(());
    }
    let out_dir: PathBuf = p
        .opt_value_from_os_str(["-o", "--output"], |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| Failure::Usage(e.to_string()))?
        .unwrap_or_else(|| PathBuf::from("."));
    let (mut opts, setup) = session_options(&mut p, out_dir)?;
    opts.save_torrent = p
        .opt_value_from_os_str("--save-torrent", |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(|e| Failure::Usage(e.to_string()))?;
    while let Some(url) = parse_value(&mut p, "--web-seed", "web seed URL", |s| {
        (s.starts_with("http://") || s.starts_with("https://")).then(|| s.to_string())
    })? {
        opts.web_seeds.push(url);
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
    let target = match file.to_str().filter(|f| f.starts_with("magnet:")) {
        Some(uri) => Target::Magnet(parse_magnet(uri)?),
        None => {
            let meta = Arc::new(load_torrent(Path::new(&file))?);
            opts.selection = selection(&opts.select, &meta)?;
            Target::Torrent(meta)
        }
    };
    run_session(target, opts, setup, mode)
}

/// `--only GLOB` and `--files LIST`, repeatable.
fn selectors(p: &mut pico_args::Arguments) -> Result<Selector, Failure> {
    let usage = |e: pico_args::Error| Failure::Usage(e.to_string());
    let mut select = Selector {
        globs: p.values_from_str("--only").map_err(usage)?,
        numbers: Vec::new(),
    };
    let lists: Vec<String> = p.values_from_str("--files").map_err(usage)?;
    for list in lists {
        select
            .add_numbers(&list)
            .map_err(|e| Failure::Usage(e.to_string()))?;
    }
    Ok(select)
}

/// The files `select` chooses in `meta` (`None`: all); choosing nothing
/// or a number past the end is a usage error.
fn selection(select: &Selector, meta: &Metainfo) -> Result<Option<Vec<bool>>, Failure> {
    if select.is_empty() {
        return Ok(None);
    }
    select
        .resolve(meta)
        .map(Some)
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// A rate in bytes per second (`20M`, `512K`, `1000000`): more than 0 and
/// at most 1 TiB/s.
fn parse_rate(s: &str) -> Option<u64> {
    crate::util::units::parse_size(s).filter(|&n| n > 0 && n <= 1 << 40)
}

/// A magnet link from the command line; a malformed one is a usage error.
fn parse_magnet(uri: &str) -> Result<Magnet, Failure> {
    Magnet::parse(uri).map_err(|e| Failure::Usage(e.to_string()))
}

/// What `get` downloads.
enum Target {
    Torrent(Arc<Metainfo>),
    Magnet(Magnet),
}

fn seed(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, SEED_USAGE) {
        return Ok(());
    }
    let (mut opts, setup) = session_options(&mut p, PathBuf::new())?;
    let mode = output_mode(&mut p);
    opts.super_seed = p.contains("--super-seed");
    let [file, data] = positionals(p, ["FILE.torrent", "DATA_PATH"])?;
    let meta = Arc::new(load_torrent(Path::new(&file))?);
    opts.selection = selection(&opts.select, &meta)?;
    opts.out_dir = crate::disk::storage::resolve_root(&meta, Path::new(&data));
    opts.seed_only = true;
    opts.seed.forever = opts.seed.ratio.is_none() && opts.seed.time.is_none();
    run_session(Target::Torrent(meta), opts, setup, mode)
}

/// The session `setup` and `opts` describe: listening, DHT, rate limits,
/// and local discovery unless `private` (BEP 27: a private torrent is
/// never announced to the LAN).
fn open_session(setup: Setup, opts: &Options, private: bool) -> Result<Session, Failure> {
    let listen = setup.listen;
    let mut session =
        Session::with_utp(listen, opts.encryption, setup.dht, setup.utp).map_err(|e| {
            let addr = listen.map_or_else(String::new, |a| a.to_string());
            Failure::Failed(format!(
                "cannot listen on {addr}: {}",
                crate::disk::sys::io_reason(&e)
            ))
        })?;
    session.limit_rates(opts.max_download_rate, opts.max_upload_rate);
    if setup.lsd && !private {
        match session.start_lsd() {
            Ok(on) => log::info!("local discovery on {on}"),
            Err(why @ (LsdOff::Socket { .. } | LsdOff::Thread(_))) => {
                log::warn!("no local discovery: {why}")
            }
            Err(why) => log::info!("no local discovery: {why}"),
        }
    }
    Ok(session)
}

/// Runs a download or seed to its end and reports it.
fn run_session(target: Target, opts: Options, setup: Setup, mode: Mode) -> Result<(), Failure> {
    crate::disk::sys::install_stop_handlers();
    // A magnet link's torrent decides once its metadata says.
    let private = matches!(&target, Target::Torrent(meta) if meta.private);
    let session = open_session(setup, &opts, private)?;
    let name = match &target {
        Target::Torrent(meta) => meta.display_name(),
        Target::Magnet(m) => m.name.clone().unwrap_or_else(|| m.info_hash.hex()),
    };
    let seeding = opts.seed_only;
    let mut progress = Progress::new(mode, name);
    let mut show = |note| progress.show(note);
    let (meta, summary) = match target {
        Target::Torrent(meta) => torrent::run(&session, meta.clone(), opts, None, &mut show)
            .map(|summary| (meta, summary)),
        Target::Magnet(m) => torrent::run_magnet(&session, &m, opts, None, &mut show),
    }
    .map_err(|e| Failure::Failed(e.to_string()))?;
    let secs = summary.elapsed.as_secs_f64();
    let total = meta.geometry.total_len();
    progress.note(
        || {
            crate::util::json::Object::new()
                .str("event", if summary.complete { "done" } else { "stopped" })
                .bool("complete", summary.complete)
                .num("bytes", total)
                .num("downloaded", summary.downloaded)
                .num("web_seed_bytes", summary.web_seed_bytes)
                .num("uploaded", summary.uploaded)
                .num("seconds", format!("{secs:.3}"))
                .finish()
        },
        &format!(
            "{}: {} ({}) after {:.1}s: downloaded {} ({}/s) and {} from web seeds, uploaded {}",
            if summary.complete { "done" } else { "stopped" },
            meta.display_name(),
            format_bytes(total),
            secs,
            format_bytes(summary.downloaded),
            format_bytes((summary.downloaded as f64 / secs.max(1e-3)) as u64),
            format_bytes(summary.web_seed_bytes),
            format_bytes(summary.uploaded),
        ),
    );
    match summary.stopped {
        // `seed` stopped during its check: it was only to seed.
        Some(TorrentError::Interrupted) if summary.complete || seeding => Ok(()),
        Some(why) => Err(Failure::Failed(format!("{}: {why}", meta.display_name()))),
        None => Ok(()),
    }
}

fn check(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, CHECK_USAGE) {
        return Ok(());
    }
    let json = p.contains("--json");
    let select = selectors(&mut p)?;
    let [file, data] = positionals(p, ["FILE.torrent", "DATA_PATH"])?;
    let meta = Arc::new(load_torrent(Path::new(&file))?);
    let chosen = selection(&select, &meta)?;
    let root = crate::disk::storage::resolve_root(&meta, Path::new(&data));
    let storage =
        crate::disk::storage::Storage::open_existing(meta.clone(), &root, chosen.as_deref())
            .map_err(|e| Failure::Failed(e.to_string()))?;
    let start = std::time::Instant::now();
    let threads = crate::disk::storage::available_parallelism();
    // Nothing to stop: SIGINT ends `check` at once, as it writes nothing.
    let have = crate::disk::storage::verify(&storage.reader(), threads, &|_| {}, &|| false)
        .expect("a check never asked to stop ends whole");
    // With a selection, only the pieces of the chosen files count.
    let wanted = match &chosen {
        Some(c) => torrent::wanted_pieces(&meta.geometry, c),
        None => crate::proto::bitfield::Bitfield::full(have.len()),
    };
    let good = wanted.iter_set().filter(|&p| have.get(p)).count() as u32;
    let (pieces, complete) = (wanted.count(), good == wanted.count());
    let secs = start.elapsed().as_secs_f64();
    let total = meta.geometry.total_len();
    if json {
        println!(
            "{}",
            crate::util::json::Object::new()
                .bool("complete", complete)
                .num("have", good)
                .num("pieces", pieces)
                .num("bytes", total)
                .num("seconds", format!("{secs:.3}"))
                .finish()
        );
    } else {
        println!(
            "{}: {} of {} pieces good ({} checked in {:.2}s, {}/s)",
            meta.display_name(),
            good,
            pieces,
            format_bytes(total),
            secs,
            format_bytes((total as f64 / secs.max(1e-6)) as u64)
        );
    }
    if complete {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{}: {} pieces missing or damaged",
            root.display(),
            pieces - good
        )))
    }
}

fn create(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, CREATE_USAGE) {
        return Ok(());
    }
    let usage = |e: pico_args::Error| Failure::Usage(e.to_string());
    let trackers: Vec<String> = p.values_from_str(["-t", "--tracker"]).map_err(usage)?;
    let web_seeds: Vec<String> = p.values_from_str("--web-seed").map_err(usage)?;
    let out: Option<PathBuf> = p
        .opt_value_from_os_str(["-o", "--output"], |s| Ok::<_, String>(PathBuf::from(s)))
        .map_err(usage)?;
    let piece_len = parse_value(
        &mut p,
        "--piece-size",
        "piece size (a power of two, 16K to 256M)",
        |s| {
            crate::util::units::parse_size(s)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| crate::create::valid_piece_len(n))
        },
    )?;
    let private = p.contains("--private");
    let comment: Option<String> = p.opt_value_from_str("--comment").map_err(usage)?;
    let no_date = p.contains("--no-date");
    let quiet = p.contains(["-q", "--quiet"]);
    let [path] = positionals(p, ["PATH"])?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let opts = crate::create::Options {
        path: PathBuf::from(&path),
        trackers,
        web_seeds,
        piece_len,
        private,
        comment,
        created_by: format!("shoal {}", env!("CARGO_PKG_VERSION")),
        creation_date: (!no_date).then_some(now),
        threads: crate::disk::storage::available_parallelism(),
    };
    let start = std::time::Instant::now();
    let hashed = std::sync::atomic::AtomicU64::new(0);
    let show = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bytes = crate::create::create(&opts, &|n| {
        let before = hashed.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        if show && n / (64 << 20) != before / (64 << 20) {
            eprint!("\r\x1b[Khashing: {}", format_bytes(n));
        }
    })
    .map_err(|e| Failure::Failed(e.to_string()))?;
    if show {
        eprint!("\r\x1b[K");
    }
    let meta = Metainfo::from_bytes(&bytes)
        .map_err(|e| Failure::Failed(format!("the torrent made is invalid: {e}")))?;
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", meta.display_name())));
    std::fs::write(&out, &bytes).map_err(|e| {
        Failure::Failed(format!(
            "{}: {}",
            out.display(),
            crate::disk::sys::io_reason(&e)
        ))
    })?;
    let secs = start.elapsed().as_secs_f64();
    let total = meta.geometry.total_len();
    if !quiet {
        eprintln!(
            "{}: {} pieces of {}, {} hashed in {:.2}s ({}/s)",
            out.display(),
            meta.geometry.num_pieces(),
            format_bytes(u64::from(meta.geometry.piece_len())),
            format_bytes(total),
            secs,
            format_bytes((total as f64 / secs.max(1e-6)) as u64)
        );
    }
    println!("{}", meta.info_hash.hex());
    Ok(())
}

fn tracker(mut p: pico_args::Arguments) -> Result<(), Failure> {
    use crate::tracker_server::{self, Config};
    if help_requested(&mut p, TRACKER_USAGE) {
        return Ok(());
    }
    let mut config = Config::default();
    if let Some(addr) = parse_value(&mut p, "--listen", "address", |s| s.parse().ok())? {
        config.listen = addr;
    }
    if let Some(i) = parse_value(&mut p, "--interval", "duration", parse_duration)? {
        config.interval = i;
    }
    let positive = |s: &str| s.parse().ok().filter(|&n: &usize| n > 0);
    if let Some(n) = parse_value(&mut p, "--max-torrents", "count", positive)? {
        config.max_torrents = n;
    }
    if let Some(n) = parse_value(&mut p, "--max-peers", "count", positive)? {
        config.max_peers_per_torrent = n;
    }
    config.udp = !p.contains("--no-udp");
    let quiet = p.contains(["-q", "--quiet"]);
    positionals(p, [])?;
    crate::disk::sys::install_stop_handlers();
    let listen = config.listen;
    tracker_server::run(config, |server| {
        if !quiet {
            let udp = match server.udp_addr() {
                Some(addr) => format!(" and udp://{addr}/announce"),
                None => String::new(),
            };
            eprintln!(
                "shoal tracker: listening on http://{}/announce{udp}",
                server.local_addr
            );
        }
    })
    .map_err(|e| {
        Failure::Failed(format!(
            "tracker on {listen}: {}",
            crate::disk::sys::io_reason(&e)
        ))
    })
}

fn dht(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if help_requested(&mut p, DHT_USAGE) {
        return Ok(());
    }
    let listen = parse_value(&mut p, "--listen", "address", |s| s.parse().ok())?
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)));
    let config = dht_config(&mut p)?;
    let json = p.contains("--json");
    let quiet = p.contains(["-q", "--quiet"]);
    positionals(p, [])?;
    crate::disk::sys::install_stop_handlers();
    let port = crate::net::udp_port::UdpPort::start(listen, Some(config)).map_err(|e| {
        Failure::Failed(format!(
            "DHT node on {listen}: {}",
            crate::disk::sys::io_reason(&e)
        ))
    })?;
    if json {
        let line = crate::util::json::Object::new()
            .str("event", "listening")
            .str("addr", &port.local_addr.to_string())
            .finish();
        println!("{line}");
    } else if !quiet {
        eprintln!("shoal dht: listening on udp {}", port.local_addr);
    }
    while !crate::disk::sys::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}
