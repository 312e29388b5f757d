//! The watch folder: every `*.torrent` and `*.magnet` (a file holding one
//! magnet URI) in it is served; a file removed stops its torrent (the
//! data is kept). Polled (no inotify: no new dependency), every
//! [`SCAN_EVERY`] and on SIGHUP.
//!
//! A file that does not parse is retried each time it changes (it may be
//! half-written) and logged once per version; a torrent the manager
//! refuses (a clash of data paths, a duplicate) is logged once likewise.

use super::control::Source;
use super::manager::Manager;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the folder is looked at.
pub const SCAN_EVERY: Duration = Duration::from_secs(2);
/// A watched file larger than this is not a torrent we serve.
const MAX_FILE: u64 = 64 << 20;

/// A file's version: its length and modification time.
type Stamp = (u64, Option<SystemTime>);

pub struct Watch {
    dir: PathBuf,
    /// Files whose torrent is served.
    added: HashMap<PathBuf, Stamp>,
    /// Files that failed (to parse, or were refused), by the version that
    /// failed: tried again only once they change.
    failed: HashMap<PathBuf, Stamp>,
}

impl Watch {
    pub fn new(dir: PathBuf) -> Watch {
        Watch {
            dir,
            added: HashMap::new(),
            failed: HashMap::new(),
        }
    }

    /// Adds new files' torrents and removes those whose file is gone.
    pub fn scan(&mut self, manager: &Manager) {
        let present = match list(&self.dir) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("watch folder {}: {e}", self.dir.display());
                return;
            }
        };
        let gone: Vec<PathBuf> = self
            .added
            .keys()
            .filter(|f| !present.contains_key(*f))
            .cloned()
            .collect();
        for file in gone {
            log::info!("{}: removed from the watch folder", file.display());
            manager.remove_watched(&file);
            self.added.remove(&file);
        }
        self.failed.retain(|f, _| present.contains_key(f));
        for (file, stamp) in present {
            if self.added.contains_key(&file) || self.failed.get(&file) == Some(&stamp) {
                continue;
            }
            match read(&file, stamp.0).and_then(|source| {
                manager
                    .add_watched(source, &file)
                    .map_err(|e| e.to_string())
            }) {
                Ok(hash) => {
                    log::info!("{}: serving {}", file.display(), hash.hex());
                    self.failed.remove(&file);
                    self.added.insert(file, stamp);
                }
                Err(why) => {
                    log::warn!(
                        "{}: {why} (tried again when the file changes)",
                        file.display()
                    );
                    self.failed.insert(file, stamp);
                }
            }
        }
    }
}

/// The folder's `.torrent` and `.magnet` files with their versions.
fn list(dir: &Path) -> std::io::Result<HashMap<PathBuf, Stamp>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let wanted = path
            .extension()
            .is_some_and(|e| e == "torrent" || e == "magnet");
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if wanted && meta.is_file() {
            out.insert(path, (meta.len(), meta.modified().ok()));
        }
    }
    Ok(out)
}

fn read(file: &Path, len: u64) -> Result<Source, String> {
    if len > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    if file.extension().is_some_and(|e| e == "magnet") {
        let text = String::from_utf8(bytes).map_err(|_| "not a magnet URI".to_string())?;
        return Ok(Source::Magnet(text.trim().to_string()));
    }
    Ok(Source::Torrent(bytes))
}
