//! What the user sees while a torrent runs: a redrawn line on a terminal,
//! a plain line every few seconds otherwise, one JSON object per line with
//! `--json`, or nothing with `-q`. Notes (tracker errors, bans) go above
//! the progress line.
//!
//! Owns: formatting and pacing. Does not own: the figures (the engine
//! reports typed [`Note`]s).

use crate::engine::address_book::Source;
use crate::engine::notes::{Note, Snapshot};
use crate::util::json::{self, Object};
use crate::util::units::{format_bytes, format_duration};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    /// Human text on stderr: redrawn on a terminal, plain lines otherwise.
    Human,
    /// JSON lines on stdout.
    Json,
}

/// The text of a snapshot (a local trait: the type is the engine's).
trait Render {
    fn eta(&self) -> Option<Duration>;
    fn percent(&self) -> f64;
    fn line(&self) -> String;
    fn json(&self) -> String;
}

impl Render for Snapshot {
    fn eta(&self) -> Option<Duration> {
        (self.down_rate > 1.0 && self.bytes < self.total)
            .then(|| Duration::from_secs_f64((self.total - self.bytes) as f64 / self.down_rate))
    }

    fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.bytes as f64 * 100.0 / self.total as f64
        }
    }

    fn line(&self) -> String {
        let eta = self.eta().map_or("--".into(), format_duration);
        // Where the connected peers came from, when any is connected.
        let from: Vec<String> = Source::ALL
            .iter()
            .zip(self.sources)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{} {n}", s.name()))
            .collect();
        let from = if from.is_empty() {
            String::new()
        } else {
            format!(" ({})", from.join(", "))
        };
        format!(
            "{:5.1}%  {} / {}  down {}/s  up {}/s  peers {}/{}{from}  eta {eta}",
            self.percent(),
            format_bytes(self.bytes),
            format_bytes(self.total),
            format_bytes(self.down_rate as u64),
            format_bytes(self.up_rate as u64),
            self.peers,
            self.known
        )
    }

    fn json(&self) -> String {
        Object::new()
            .str("event", "progress")
            .num("have", self.have)
            .num("pieces", self.pieces)
            .num("bytes", self.bytes)
            .num("total", self.total)
            .num("rate", self.down_rate.round())
            .num("up_rate", self.up_rate.round())
            .num("uploaded", self.uploaded)
            .num("peers", self.peers)
            .num("known", self.known)
            .raw("sources", &self.sources_json())
            .finish()
    }
}

impl Snapshot {
    /// `{"given":0,"tracker":2,...}`: connected peers by source.
    fn sources_json(&self) -> String {
        Source::ALL
            .iter()
            .zip(self.sources)
            .fold(Object::new(), |o, (s, n)| o.num(s.name(), n))
            .finish()
    }
}

pub struct Progress {
    mode: Mode,
    /// The torrent's name, for notes.
    name: String,
    terminal: bool,
    last: Option<Instant>,
    /// A progress line is on screen and must be cleared before a note.
    drawn: bool,
}

impl Progress {
    pub fn new(mode: Mode, name: String) -> Progress {
        Progress {
            mode,
            name,
            terminal: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn interval(&self) -> Duration {
        match (self.mode, self.terminal) {
            (Mode::Human, true) => Duration::from_millis(200),
            (Mode::Json, _) => Duration::from_secs(1),
            _ => Duration::from_secs(5),
        }
    }

    /// Renders one of the engine's notes.
    pub fn show(&mut self, note: Note) {
        let name = &self.name;
        let (json, text) = match note {
            Note::Progress { snapshot, last } => {
                self.update(&snapshot, last);
                if last {
                    self.clear();
                }
                return;
            }
            // A `shoal serve` API matter.
            Note::Peers(_) => return,
            Note::Checked { have, pieces } => (
                Object::new()
                    .str("event", "checked")
                    .num("have", have)
                    .num("pieces", pieces)
                    .finish(),
                format!("{name}: {have} of {pieces} pieces already on disk"),
            ),
            Note::Metadata { bytes, peers } => (
                Object::new()
                    .str("event", "metadata")
                    .num("bytes", bytes)
                    .num("peers", peers)
                    .finish(),
                format!("{name}: metadata fetched ({bytes} bytes, {peers} peers connected)"),
            ),
            Note::Listening(addr) => (
                Object::new()
                    .str("event", "listening")
                    .str("addr", &addr.to_string())
                    .finish(),
                format!("listening on {addr}"),
            ),
            Note::PieceFailed { piece, peers } => {
                let addrs: Vec<String> = peers.iter().map(|a| a.to_string()).collect();
                (
                    Object::new()
                        .str("event", "piece_failed")
                        .num("piece", piece)
                        .raw("peers", &json::array(addrs.iter().map(|a| json::string(a))))
                        .finish(),
                    format!(
                        "piece {piece} failed its hash check (from {})",
                        addrs.join(", ")
                    ),
                )
            }
            Note::PeerBanned { who, strikes } => (
                Object::new()
                    .str("event", "peer_banned")
                    .str("peer", &who)
                    .finish(),
                format!("banned {who}: {strikes} pieces failed the hash check"),
            ),
            Note::FileChanged { path } => (
                Object::new()
                    .str("event", "file_changed")
                    .str("path", &path.display().to_string())
                    .finish(),
                format!(
                    "{}: changed by someone else while shoal ran; its pieces will be checked again",
                    path.display()
                ),
            ),
            Note::ResumeNotSaved { path, reason } => (
                Object::new()
                    .str("event", "resume_not_saved")
                    .str("path", &path.display().to_string())
                    .str("reason", &reason)
                    .finish(),
                format!(
                    "warning: cannot save resume state {}: {reason} (the next start checks the data)",
                    path.display()
                ),
            ),
            Note::TrackerWarning { tracker, message } => (
                tracker_json("tracker_warning", &tracker, &message),
                format!("tracker warning: {tracker}: {message}"),
            ),
            Note::TrackerError { tracker, message } => (
                tracker_json("tracker_error", &tracker, &message),
                format!("tracker error: {message}"),
            ),
            Note::Seeding(limit) => {
                let until = match (limit.ratio, limit.time) {
                    (Some(r), Some(t)) => format!("ratio {r} or {}", format_duration(t)),
                    (Some(r), None) => format!("ratio {r}"),
                    (None, Some(t)) => format_duration(t),
                    (None, None) => "interrupted".into(),
                };
                (
                    Object::new().str("event", "seeding").finish(),
                    format!("{name}: complete, seeding until {until}"),
                )
            }
        };
        self.note(|| json, &text);
    }

    /// Reports progress if it is time to (or `force`).
    fn update(&mut self, s: &Snapshot, force: bool) {
        let due = self.last.is_none_or(|t| t.elapsed() >= self.interval());
        if self.mode == Mode::Quiet || !(due || force) {
            return;
        }
        self.last = Some(Instant::now());
        match self.mode {
            Mode::Json => println!("{}", s.json()),
            Mode::Human if self.terminal => {
                eprint!("\r\x1b[K{}", s.line());
                let _ = std::io::stderr().flush();
                self.drawn = true;
            }
            _ => eprintln!("{}", s.line()),
        }
    }

    /// An event: `json` in JSON mode, `text` on stderr in human mode.
    pub fn note(&mut self, json: impl FnOnce() -> String, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => println!("{}", json()),
            Mode::Human => {
                self.clear();
                eprintln!("{text}");
            }
        }
    }

    /// Leaves the terminal on a fresh line.
    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

fn tracker_json(event: &str, tracker: &str, message: &str) -> String {
    Object::new()
        .str("event", event)
        .str("tracker", tracker)
        .str("message", message)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_json_show_the_figures() {
        let s = Snapshot {
            have: 5,
            pieces: 10,
            bytes: 512 << 20,
            total: 1 << 30,
            down_rate: (64 << 20) as f64,
            up_rate: 0.0,
            uploaded: 0,
            peers: 2,
            known: 3,
            sources: [0, 1, 1, 0, 0, 0],
        };
        assert_eq!(
            s.line(),
            " 50.0%  512.0 MiB / 1.0 GiB  down 64.0 MiB/s  up 0 B/s  peers 2/3 (tracker 1, dht 1)  eta 8s"
        );
        assert_eq!(
            s.json(),
            r#"{"event":"progress","have":5,"pieces":10,"bytes":536870912,"total":1073741824,"rate":67108864,"up_rate":0,"uploaded":0,"peers":2,"known":3,"sources":{"given":0,"tracker":1,"dht":1,"pex":0,"lsd":0,"incoming":0}}"#
        );
    }
}
