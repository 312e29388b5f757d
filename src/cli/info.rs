//! `shoal info`: what a torrent holds, as text for people or JSON for
//! scripts. Pure rendering of a [`Metainfo`]; reading the file is the CLI's.

use crate::proto::magnet::Magnet;
use crate::proto::metainfo::Metainfo;
use crate::proto::tracker::ScrapeStats;
use crate::util::json::{self, Object};
use crate::util::units::format_bytes;
use std::fmt::Write;
use std::time::Duration;

/// One tracker's answer to a scrape (the error as printable text).
pub type Scraped = (String, Result<ScrapeStats, String>);

/// Scrapes every tracker of the torrent at once (each on its own thread, so
/// a dead one costs its own timeout only), in tier order.
pub fn scrape_all(m: &Metainfo, timeout: Duration) -> Vec<Scraped> {
    let urls: Vec<&String> = m.trackers.iter().flatten().collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|url| {
                s.spawn(move || {
                    crate::net::announce::scrape_once(url, &m.info_hash, timeout)
                        .map_err(|e| crate::net::announce::printable(&e.to_string()))
                })
            })
            .collect();
        urls.iter()
            .zip(handles)
            .map(|(url, h)| {
                let result = h.join().unwrap_or_else(|_| Err("scrape failed".into()));
                (url.to_string(), result)
            })
            .collect()
    })
}

/// The human-readable report (with scrape results, if asked for).
pub fn text(m: &Metainfo, scraped: Option<&[Scraped]>) -> String {
    let g = &m.geometry;
    let mut s = String::new();
    let _ = writeln!(s, "name:        {}", m.display_name());
    let _ = writeln!(s, "info hash:   {}", m.info_hash.hex());
    let _ = writeln!(
        s,
        "size:        {} ({} bytes)",
        format_bytes(g.total_len()),
        g.total_len()
    );
    let _ = writeln!(
        s,
        "pieces:      {} x {}",
        g.num_pieces(),
        format_bytes(u64::from(g.piece_len()))
    );
    let _ = writeln!(s, "private:     {}", if m.private { "yes" } else { "no" });
    if m.trackers.is_empty() {
        let _ = writeln!(s, "trackers:    none");
    }
    for (i, tier) in m.trackers.iter().enumerate() {
        for (j, url) in tier.iter().enumerate() {
            let label = if i == 0 && j == 0 { "trackers:" } else { "" };
            let tier_label = if j == 0 {
                format!("tier {}:", i + 1)
            } else {
                String::new()
            };
            let _ = writeln!(s, "{label:<12} {tier_label:<8} {url}");
        }
    }
    for (i, url) in m.web_seeds.iter().enumerate() {
        let label = if i == 0 { "web seeds:" } else { "" };
        let _ = writeln!(s, "{label:<12} {url}");
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(s, "comment:     {c}");
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(s, "created by:  {c}");
    }
    if let Some(d) = m.creation_date {
        let _ = writeln!(s, "created:     {d} (unix time)");
    }
    for (url, result) in scraped.unwrap_or_default() {
        let _ = match result {
            Ok(st) => writeln!(
                s,
                "scrape:      {url}: {} seeders, {} leechers, {} completed",
                st.complete, st.incomplete, st.downloaded
            ),
            Err(e) => writeln!(s, "scrape:      {url}: {e}"),
        };
    }
    let real = m.files.iter().filter(|f| !f.padding).count();
    let _ = writeln!(s, "files:       {real}");
    // Numbered as `--files` takes them: padding files have no number.
    let mut n = 0;
    for f in &m.files {
        let path = m.file_display_path(f);
        let (number, pad) = if f.padding {
            (String::new(), "  [padding]")
        } else {
            n += 1;
            (n.to_string(), "")
        };
        let _ = writeln!(
            s,
            "  {number:>4}  {:>12}  {path}{pad}",
            format_bytes(f.length)
        );
    }
    s
}

/// One JSON object with the same facts; sizes in bytes.
pub fn json(m: &Metainfo, scraped: Option<&[Scraped]>) -> String {
    let g = &m.geometry;
    let tiers = json::array(
        m.trackers
            .iter()
            .map(|t| json::array(t.iter().map(|u| json::string(u)))),
    );
    let files = json::array(m.files.iter().map(|f| {
        Object::new()
            .str("path", &m.file_display_path(f))
            .num("length", f.length)
            .bool("padding", f.padding)
            .finish()
    }));
    let obj = Object::new()
        .str("name", &m.display_name())
        .str("info_hash", &m.info_hash.hex())
        .num("total_length", g.total_len())
        .num("piece_length", g.piece_len())
        .num("piece_count", g.num_pieces())
        .bool("private", m.private)
        .raw("trackers", &tiers)
        .raw(
            "web_seeds",
            &json::array(m.web_seeds.iter().map(|u| json::string(u))),
        )
        .opt_str("comment", m.comment.as_deref())
        .opt_str("created_by", m.created_by.as_deref())
        .raw(
            "creation_date",
            &m.creation_date.map_or("null".into(), |d| d.to_string()),
        )
        .raw("files", &files);
    match scraped {
        None => obj.finish(),
        Some(list) => obj
            .raw("scrape", &json::array(list.iter().map(scrape_json)))
            .finish(),
    }
}

fn scrape_json((url, result): &Scraped) -> String {
    let o = Object::new().str("tracker", url);
    match result {
        Ok(st) => o
            .num("seeders", st.complete)
            .num("leechers", st.incomplete)
            .num("completed", st.downloaded),
        Err(e) => o.str("error", e),
    }
    .finish()
}

/// A file's path as the user will see it on disk, below the output dir.
/// What a magnet link says, without the network (`shoal info MAGNET`).
pub fn magnet_text(m: &Magnet) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "magnet link");
    let _ = writeln!(s, "name:        {}", m.name.as_deref().unwrap_or("(none)"));
    let _ = writeln!(s, "info hash:   {}", m.info_hash.hex());
    let trackers: Vec<&String> = m.trackers.iter().flatten().collect();
    let _ = writeln!(s, "trackers:    {}", list_or_none(&trackers));
    let peers: Vec<String> = m.peers.iter().map(|p| p.to_string()).collect();
    let _ = writeln!(s, "peers:       {}", list_or_none(&peers));
    s
}

fn list_or_none(items: &[impl AsRef<str>]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn magnet_json(m: &Magnet) -> String {
    let mut o = Object::new().str("info_hash", &m.info_hash.hex());
    if let Some(n) = &m.name {
        o = o.str("name", n);
    }
    o.raw(
        "trackers",
        &json::array(m.trackers.iter().flatten().map(|u| json::string(u))),
    )
    .raw(
        "peers",
        &json::array(m.peers.iter().map(|p| json::string(&p.to_string()))),
    )
    .finish()
}
