//! Command line: parse arguments, dispatch to a command, map the outcome to
//! an exit code (0 success, 1 failure, 2 bad usage).
//!
//! Owns: argument syntax, help texts and the one-line error format
//! `error: FILE: what is wrong`. Does not own: what a command does.

use crate::metainfo::Metainfo;
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
shoal: a small, fast BitTorrent client

usage:
  shoal info FILE.torrent [--json]    show what a torrent holds

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
