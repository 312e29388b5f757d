//! `GET /metrics`: [`Metrics`] in the Prometheus text exposition format
//! (version 0.0.4), pure.
//!
//! Owns: metric names, help texts, types and label escaping. Session-wide
//! series have no labels (`shoal_downloaded_bytes_total`); per-torrent
//! series are a separate family with `info_hash` and `name` labels
//! (`shoal_torrent_downloaded_bytes_total{info_hash="…",name="…"}`), so
//! that summing a family never counts a byte twice. Counters end in
//! `_total`. Does not own: where the numbers come from (the manager's
//! [`crate::serve::control::Control::metrics`]).

use crate::serve::control::{Counters, Metrics, TorrentMetrics};
use std::fmt::Write;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every counter, as (name without `shoal_`/`_total`, help, getter).
type Counter = (&'static str, &'static str, fn(&Counters) -> u64);

const COUNTERS: [Counter; 6] = [
    (
        "downloaded_bytes",
        "Payload bytes received from peers and web seeds.",
        |c| c.downloaded_bytes,
    ),
    ("uploaded_bytes", "Payload bytes sent to peers.", |c| {
        c.uploaded_bytes
    }),
    ("pieces_verified", "Pieces whose SHA-1 matched.", |c| {
        c.pieces_verified
    }),
    ("pieces_failed", "Pieces whose SHA-1 did not match.", |c| {
        c.pieces_failed
    }),
    ("bans", "Peers banned for sending bad data.", |c| c.bans),
    (
        "tracker_errors",
        "Announces that failed or were refused.",
        |c| c.tracker_errors,
    ),
];

/// The states counted by `shoal_torrents`, every one listed (0 included)
/// so that a series does not vanish when its count drops to 0.
const STATES: [&str; 8] = [
    "checking",
    "metadata",
    "downloading",
    "seeding",
    "idle",
    "paused",
    "finished",
    "error",
];

/// The whole `/metrics` page.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    for (name, help, get) in COUNTERS {
        family(&mut out, &format!("shoal_{name}_total"), help, "counter");
        sample(
            &mut out,
            &format!("shoal_{name}_total"),
            "",
            get(&m.session),
        );
    }
    for (name, help, get) in COUNTERS {
        let name = format!("shoal_torrent_{name}_total");
        family(&mut out, &name, &format!("{help} Per torrent."), "counter");
        for t in &m.torrents {
            sample(&mut out, &name, &torrent_labels(t), get(&t.counters));
        }
    }
    family(&mut out, "shoal_peers", "Peers connected.", "gauge");
    sample(&mut out, "shoal_peers", "", m.peers);
    let name = "shoal_torrent_peers";
    family(&mut out, name, "Peers connected, per torrent.", "gauge");
    for t in &m.torrents {
        sample(&mut out, name, &torrent_labels(t), t.peers);
    }
    let name = "shoal_torrents";
    family(&mut out, name, "Torrents, by state.", "gauge");
    for state in STATES {
        let n = m
            .torrents
            .iter()
            .filter(|t| t.state.name() == state)
            .count();
        sample(&mut out, name, &format!("state=\"{state}\""), n);
    }
    let name = "shoal_torrent_state";
    let help = "The state of each torrent: 1 for the state it is in.";
    family(&mut out, name, help, "gauge");
    for t in &m.torrents {
        let labels = format!("{},state=\"{}\"", torrent_labels(t), t.state.name());
        sample(&mut out, name, &labels, 1);
    }
    if let Some(nodes) = m.dht_nodes {
        let name = "shoal_dht_nodes";
        family(&mut out, name, "Nodes in the DHT routing table.", "gauge");
        sample(&mut out, name, "", nodes);
    }
    out
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn torrent_labels(t: &TorrentMetrics) -> String {
    format!(
        "info_hash=\"{}\",name=\"{}\"",
        t.info_hash.hex(),
        escape_label(&t.name)
    )
}

/// A label value as the exposition format wants it: `\`, `"` and line
/// feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metainfo::InfoHash;
    use crate::serve::control::State;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("plain é"), "plain é");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn renders_the_exposition_format() {
        let counters = Counters {
            downloaded_bytes: 100,
            uploaded_bytes: 50,
            pieces_verified: 3,
            pieces_failed: 1,
            bans: 0,
            tracker_errors: 2,
        };
        let m = Metrics {
            torrents: vec![TorrentMetrics {
                info_hash: InfoHash([0xab; 20]),
                name: "say \"hi\"\\\n".into(),
                state: State::Downloading,
                peers: 4,
                counters: counters.clone(),
            }],
            session: Counters {
                downloaded_bytes: 1000,
                ..counters
            },
            peers: 4,
            dht_nodes: Some(120),
        };
        let text = render(&m);
        let hash = "ab".repeat(20);
        let labels = format!("info_hash=\"{hash}\",name=\"say \\\"hi\\\"\\\\\\n\"");
        for line in [
            "# HELP shoal_downloaded_bytes_total Payload bytes received from peers and web seeds."
                .to_string(),
            "# TYPE shoal_downloaded_bytes_total counter".into(),
            "shoal_downloaded_bytes_total 1000".into(),
            "shoal_tracker_errors_total 2".into(),
            "# TYPE shoal_torrent_uploaded_bytes_total counter".into(),
            format!("shoal_torrent_uploaded_bytes_total{{{labels}}} 50"),
            format!("shoal_torrent_pieces_failed_total{{{labels}}} 1"),
            "# TYPE shoal_peers gauge".into(),
            "shoal_peers 4".into(),
            format!("shoal_torrent_peers{{{labels}}} 4"),
            "shoal_torrents{state=\"downloading\"} 1".into(),
            "shoal_torrents{state=\"seeding\"} 0".into(),
            format!("shoal_torrent_state{{{labels},state=\"downloading\"}} 1"),
            "shoal_dht_nodes 120".into(),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        // Every family is declared once, before its samples.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{name} sampled before its TYPE");
            }
        }
        // No DHT, no torrents: no DHT family, empty per-torrent families.
        let empty = render(&Metrics {
            torrents: vec![],
            session: Counters::default(),
            peers: 0,
            dht_nodes: None,
        });
        assert!(!empty.contains("shoal_dht_nodes"));
        assert!(empty.contains("shoal_bans_total 0\n"));
    }
}
