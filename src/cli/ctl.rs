//! `shoal ctl`: a thin client of the HTTP API of a running `shoal serve`
//! (as transmission-remote is of transmission-daemon), for scripts.
//!
//! Owns: turning a command line into one API request, and the answer
//! into text (or, with `--json`, passing the API's JSON through). Does not
//! own: the wire format ([`crate::serve::api`] documents it) or anything
//! the server decides. Every failure — a 4xx/5xx (with the API's
//! `{"error": …}`), a refused connection, a timeout — is one line and
//! exit 1.

use super::Failure;
use crate::proto::tracker::percent_encode;
use crate::util::json::{self, Value};
use crate::util::units::{format_bytes, parse_duration};
use std::ffi::OsString;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

pub const USAGE: &str = "\
usage: shoal ctl [--api ADDR:PORT] [--token TOKEN] [--json] COMMAND [ARGS]

Talks to the HTTP API of a running 'shoal serve'.

commands:
  list                       every torrent: info hash, state, progress,
                             rates, peers, ratio, name
  show HASH                  one torrent with its files, peers, trackers
  add FILE.torrent|MAGNET [--dir SUBDIR]
                             add a torrent; its data goes to SUBDIR of
                             serve's --data (default: --data itself)
  remove HASH [--delete-data]
                             remove a torrent (and with --delete-data, its
                             files)
  pause HASH, resume HASH    stop serving a torrent / start again
  stats                      the session's totals (bytes, pieces, peers,
                             bans, tracker errors, torrents by state)

options:
  --api ADDR:PORT     the API (default 127.0.0.1:6880; http://... works too)
  --token TOKEN       bearer token, if serve has --api-token (default: the
                      SHOAL_API_TOKEN environment variable)
  --json              print the API's JSON as it comes (stats: the session's
                      numbers from /metrics as one JSON object)
  --timeout DURATION  give up on the API after this long (default 30s)

Exit status: 0 done, 1 the API refused or could not be reached (one line on
stderr says why), 2 bad usage.
";

/// The API's address unless told.
const DEFAULT_API: &str = "127.0.0.1:6880";

/// The largest answer we read: a list of many thousand torrents.
const MAX_RESPONSE: u64 = 64 << 20;

/// What the command line asks.
struct Ctl {
    base: String,
    token: Option<String>,
    json: bool,
    timeout: Duration,
}

/// Runs `shoal ctl ARGS`.
pub fn run(mut p: pico_args::Arguments) -> Result<(), Failure> {
    if p.contains(["-h", "--help"]) {
        print!("{USAGE}");
        return Ok(());
    }
    let usage = |e: pico_args::Error| Failure::Usage(e.to_string());
    let api: Option<String> = p.opt_value_from_str("--api").map_err(usage)?;
    let token: Option<String> = p.opt_value_from_str("--token").map_err(usage)?;
    let dir: Option<String> = p.opt_value_from_str("--dir").map_err(usage)?;
    let timeout: Option<String> = p.opt_value_from_str("--timeout").map_err(usage)?;
    let delete_data = p.contains("--delete-data");
    let json = p.contains("--json");
    let timeout = match timeout {
        Some(t) => {
            parse_duration(&t).ok_or_else(|| Failure::Usage(format!("invalid duration '{t}'")))?
        }
        None => Duration::from_secs(30),
    };
    let ctl = Ctl {
        base: base_url(api.as_deref().unwrap_or(DEFAULT_API))?,
        token: token
            .or_else(|| std::env::var("SHOAL_API_TOKEN").ok())
            .filter(|t| !t.is_empty()),
        json,
        timeout,
    };
    let rest = words(p.finish())?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    if dir.is_some() && rest.first() != Some(&"add") {
        return Err(Failure::Usage("--dir goes with 'add'".into()));
    }
    if delete_data && rest.first() != Some(&"remove") {
        return Err(Failure::Usage("--delete-data goes with 'remove'".into()));
    }
    match rest.as_slice() {
        ["list"] => ctl.list(),
        ["show", hash] => ctl.show(hash),
        ["add", what] => ctl.add(what, dir.as_deref()),
        ["remove", hash] => {
            let query = if delete_data { "?delete_data=true" } else { "" };
            ctl.act(
                "DELETE",
                &format!("/torrents/{hash}{query}"),
                "removed",
                hash,
            )
        }
        ["pause", hash] => ctl.act("POST", &format!("/torrents/{hash}/pause"), "paused", hash),
        ["resume", hash] => ctl.act("POST", &format!("/torrents/{hash}/resume"), "resumed", hash),
        ["stats"] => ctl.stats(),
        [] => Err(Failure::Usage("no ctl command given".into())),
        [cmd @ ("list" | "show" | "add" | "remove" | "pause" | "resume" | "stats"), ..] => Err(
            Failure::Usage(format!("wrong number of arguments for 'ctl {cmd}'")),
        ),
        [other, ..] => Err(Failure::Usage(format!("unknown ctl command '{other}'"))),
    }
}

/// The free arguments as strings, refusing unknown options.
fn words(rest: Vec<OsString>) -> Result<Vec<String>, Failure> {
    rest.into_iter()
        .map(|a| {
            let s = a
                .into_string()
                .map_err(|a| Failure::Usage(format!("argument {a:?} is not UTF-8")))?;
            if s.starts_with('-') && s.len() > 1 {
                return Err(Failure::Usage(format!("unknown option '{s}'")));
            }
            Ok(s)
        })
        .collect()
}

/// `http://ADDR:PORT` from `ADDR:PORT` or a URL.
fn base_url(api: &str) -> Result<String, Failure> {
    if api.starts_with("https://") {
        return Err(Failure::Usage(
            "the API speaks plain HTTP (put a TLS proxy in front of it for remote use)".into(),
        ));
    }
    let host = api.strip_prefix("http://").unwrap_or(api);
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || !host.contains(':') {
        return Err(Failure::Usage(format!(
            "invalid --api '{api}': expected ADDR:PORT"
        )));
    }
    Ok(format!("http://{host}"))
}

impl Ctl {
    /// Sends one request; the body of a 2xx answer, or the failure.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&[u8], &str)>,
    ) -> Result<String, Failure> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(self.timeout))
            .max_redirects(0)
            // Never from the environment: the API is local.
            .proxy(None)
            .user_agent(concat!("shoal-ctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (method, body) {
            ("GET", _) => with_auth(agent.get(&url), &auth).call(),
            ("DELETE", _) => with_auth(agent.delete(&url), &auth).call(),
            (_, Some((bytes, content_type))) => with_auth(agent.post(&url), &auth)
                .header("Content-Type", content_type)
                .send(bytes),
            (_, None) => with_auth(agent.post(&url), &auth).send_empty(),
        };
        let mut response = sent.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        if status.is_success() {
            return Ok(text);
        }
        let why = json::parse(text.as_bytes())
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.trim().chars().take(200).collect());
        Err(Failure::Failed(format!("API: {}: {why}", status.as_u16())))
    }

    fn unreachable(&self, e: ureq::Error) -> Failure {
        let why = match &e {
            ureq::Error::Io(io) => crate::disk::sys::io_reason(io),
            ureq::Error::Timeout(_) => format!("no answer within {:?}", self.timeout),
            other => other.to_string(),
        };
        Failure::Failed(format!(
            "cannot reach the API at {}: {why} (is shoal serve running with --api?)",
            self.base
        ))
    }

    /// The API's JSON, or what `human` makes of it.
    fn print(&self, body: &str, human: impl FnOnce(&Value) -> String) -> Result<(), Failure> {
        if self.json {
            println!("{}", body.trim_end());
            return Ok(());
        }
        let value = json::parse(body.as_bytes())
            .map_err(|e| Failure::Failed(format!("API answered something else than JSON: {e}")))?;
        print!("{}", human(&value));
        Ok(())
    }

    fn list(&self) -> Result<(), Failure> {
        let body = self.request("GET", "/torrents", None)?;
        self.print(&body, list_text)
    }

    fn show(&self, hash: &str) -> Result<(), Failure> {
        let body = self.request("GET", &format!("/torrents/{hash}"), None)?;
        self.print(&body, detail_text)
    }

    fn add(&self, what: &str, dir: Option<&str>) -> Result<(), Failure> {
        let query = dir.map_or(String::new(), |d| {
            format!("?dir={}", percent_encode(d.as_bytes()))
        });
        let body = if what.starts_with("magnet:") {
            self.request(
                "POST",
                &format!("/torrents{query}"),
                Some((what.as_bytes(), "text/plain")),
            )?
        } else {
            let bytes = crate::disk::torrent_file::read(Path::new(what))
                .map_err(|e| Failure::Failed(format!("{what}: {e}")))?;
            let body = Some((&bytes[..], "application/x-bittorrent"));
            self.request("POST", &format!("/torrents{query}"), body)?
        };
        self.print(&body, |v| format!("added {}\n", str_field(v, "info_hash")))
    }

    /// remove, pause, resume: `{"ok":true}` back.
    fn act(&self, method: &str, path: &str, done: &str, hash: &str) -> Result<(), Failure> {
        let body = self.request(method, path, None)?;
        self.print(&body, |_| format!("{done} {hash}\n"))
    }

    fn stats(&self) -> Result<(), Failure> {
        let text = self.request("GET", "/metrics", None)?;
        let stats = session_stats(&text);
        if self.json {
            println!("{}", stats_json(&stats));
        } else {
            print!("{}", stats_text(&stats));
        }
        Ok(())
    }
}

fn with_auth<B>(r: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => r.header("Authorization", a),
        None => r,
    }
}

fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn num_field(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", format_bytes(bytes_per_s.max(0.0) as u64))
}

/// `shoal ctl list`: one line per torrent under a header.
pub fn list_text(v: &Value) -> String {
    let Value::Array(items) = v else {
        return String::new();
    };
    let mut out = format!(
        "{:<40}  {:<11} {:>6} {:>12} {:>12} {:>5} {:>6}  NAME\n",
        "INFO HASH", "STATE", "DONE", "DOWN", "UP", "PEERS", "RATIO"
    );
    for t in items {
        let _ = writeln!(
            out,
            "{:<40}  {:<11} {:>5.1}% {:>12} {:>12} {:>5} {:>6.2}  {}",
            str_field(t, "info_hash"),
            str_field(t, "state"),
            num_field(t, "progress") * 100.0,
            rate(num_field(t, "down_rate")),
            rate(num_field(t, "up_rate")),
            num_field(t, "peers"),
            num_field(t, "ratio"),
            str_field(t, "name"),
        );
        if let Some(why) = t.get("error").and_then(Value::as_str) {
            let _ = writeln!(out, "{:<40}  error: {why}", "");
        }
    }
    out
}

/// `shoal ctl show HASH`.
pub fn detail_text(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name:       {}", str_field(v, "name"));
    let _ = writeln!(out, "info hash:  {}", str_field(v, "info_hash"));
    let _ = writeln!(out, "state:      {}", str_field(v, "state"));
    if let Some(why) = v.get("error").and_then(Value::as_str) {
        let _ = writeln!(out, "error:      {why}");
    }
    let _ = writeln!(
        out,
        "progress:   {:.1}% of {} ({} of {} pieces)",
        num_field(v, "progress") * 100.0,
        format_bytes(num_field(v, "size") as u64),
        num_field(v, "have"),
        num_field(v, "pieces"),
    );
    let _ = writeln!(
        out,
        "rates:      down {}, up {}",
        rate(num_field(v, "down_rate")),
        rate(num_field(v, "up_rate"))
    );
    let _ = writeln!(
        out,
        "totals:     downloaded {}, uploaded {}, ratio {:.2}",
        format_bytes(num_field(v, "downloaded") as u64),
        format_bytes(num_field(v, "uploaded") as u64),
        num_field(v, "ratio"),
    );
    let _ = writeln!(out, "data dir:   {}", str_field(v, "data_dir"));
    let list = |key: &str| match v.get(key) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let trackers = list("trackers");
    if !trackers.is_empty() {
        let _ = writeln!(out, "trackers:");
        for t in trackers.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "  {t}");
        }
    }
    let files = list("files");
    let _ = writeln!(out, "files: {}", files.len());
    for f in &files {
        let skipped = if f.get("wanted").and_then(Value::as_bool) == Some(false) {
            " (skipped)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:>10}  {}{skipped}",
            format_bytes(num_field(f, "length") as u64),
            str_field(f, "path")
        );
    }
    let peers = list("peers");
    let _ = writeln!(out, "peers: {}", peers.len());
    for p in &peers {
        let direction = if p.get("inbound").and_then(Value::as_bool) == Some(true) {
            "in "
        } else {
            "out"
        };
        let _ = writeln!(
            out,
            "  {direction} {:<45} down {:>12} up {:>12}  {}",
            str_field(p, "addr"),
            rate(num_field(p, "down_rate")),
            rate(num_field(p, "up_rate")),
            str_field(p, "client"),
        );
    }
    out
}

/// The session's numbers in a `/metrics` page: the samples without
/// labels (`shoal_peers 3`) by name without `shoal_`, and the torrents by
/// state (`shoal_torrents{state="seeding"} 2`).
#[derive(Debug, Default, PartialEq)]
pub struct SessionStats {
    pub values: Vec<(String, f64)>,
    pub torrents: Vec<(String, f64)>,
}

pub fn session_stats(metrics: &str) -> SessionStats {
    let mut stats = SessionStats::default();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if let Some(state) = series
            .strip_prefix("shoal_torrents{state=\"")
            .and_then(|s| s.strip_suffix("\"}"))
        {
            stats.torrents.push((state.to_string(), value));
        } else if let Some(name) = series.strip_prefix("shoal_").filter(|n| !n.contains('{')) {
            stats.values.push((name.to_string(), value));
        }
    }
    stats
}

/// `stats --json`: `{"downloaded_bytes_total": …, …, "torrents":
/// {"seeding": …, …}}`.
pub fn stats_json(s: &SessionStats) -> String {
    let mut by_state = json::Object::new();
    for (state, n) in &s.torrents {
        by_state = by_state.num(state, n);
    }
    let mut o = json::Object::new();
    for (name, v) in &s.values {
        o = o.num(name, v);
    }
    o.raw("torrents", &by_state.finish()).finish()
}

fn stats_text(s: &SessionStats) -> String {
    let get = |name: &str| s.values.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let mut out = String::new();
    let total: f64 = s.torrents.iter().map(|(_, n)| n).sum();
    let states: Vec<String> = s
        .torrents
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let _ = writeln!(out, "torrents:        {total} ({})", states.join(", "));
    for (label, name, bytes) in [
        ("downloaded:", "downloaded_bytes_total", true),
        ("uploaded:", "uploaded_bytes_total", true),
        ("peers:", "peers", false),
        ("pieces verified:", "pieces_verified_total", false),
        ("pieces failed:", "pieces_failed_total", false),
        ("bans:", "bans_total", false),
        ("tracker errors:", "tracker_errors_total", false),
        ("dht nodes:", "dht_nodes", false),
    ] {
        let Some(v) = get(name) else { continue };
        let shown = if bytes {
            format_bytes(v as u64)
        } else {
            v.to_string()
        };
        let _ = writeln!(out, "{label:<16} {shown}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("127.0.0.1:6880").ok(),
            Some("http://127.0.0.1:6880".into())
        );
        assert_eq!(
            base_url("http://[::1]:1/").ok(),
            Some("http://[::1]:1".into())
        );
        assert_eq!(base_url("host:1").ok(), Some("http://host:1".into()));
        for bad in ["", "127.0.0.1", "https://x:1", "http://x:1/torrents"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_session_stats_from_metrics() {
        let page = "# HELP shoal_downloaded_bytes_total x\n\
                    # TYPE shoal_downloaded_bytes_total counter\n\
                    shoal_downloaded_bytes_total 2048\n\
                    shoal_torrent_downloaded_bytes_total{info_hash=\"ab\",name=\"a b\"} 2048\n\
                    shoal_peers 3\n\
                    shoal_torrents{state=\"seeding\"} 2\n\
                    shoal_torrents{state=\"paused\"} 0\n\
                    shoal_dht_nodes 40\n";
        let s = session_stats(page);
        assert_eq!(
            s.values,
            vec![
                ("downloaded_bytes_total".into(), 2048.0),
                ("peers".into(), 3.0),
                ("dht_nodes".into(), 40.0)
            ]
        );
        assert_eq!(
            stats_json(&s),
            "{\"downloaded_bytes_total\":2048,\"peers\":3,\"dht_nodes\":40,\
             \"torrents\":{\"seeding\":2,\"paused\":0}}"
        );
        let text = stats_text(&s);
        assert!(text.contains("torrents:        2 (2 seeding)\n"), "{text}");
        assert!(text.contains("downloaded:      2.0 KiB\n"), "{text}");
        assert!(text.contains("dht nodes:       40\n"), "{text}");
    }

    #[test]
    fn human_lists() {
        let v = json::parse(
            br#"[{"info_hash":"ab","name":"x y","state":"error","progress":0.5,
                 "down_rate":2048,"up_rate":0,"peers":3,"ratio":1.25,"error":"disk full"}]"#,
        )
        .unwrap();
        let text = list_text(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("INFO HASH"));
        assert!(lines[1].contains(" 50.0% "), "{text}");
        assert!(lines[1].contains("2.0 KiB/s"), "{text}");
        assert!(lines[1].ends_with("1.25  x y"), "{text}");
        assert!(lines[2].ends_with("error: disk full"), "{text}");
    }
}
