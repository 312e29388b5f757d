//! The torrents added through the API, kept in the state directory so a
//! restart (or a crash) brings them back: `torrents/HASH.torrent` (or
//! `HASH.magnet` until its metadata is in), `HASH.dir` (the data
//! directory, relative to `--data`; absent: `--data` itself) and
//! `HASH.paused` (present while paused). Each is written to a temporary
//! name and renamed, so a crash leaves the old file or the new one.

use crate::proto::metainfo::InfoHash;
use std::io;
use std::path::{Path, PathBuf};

/// One torrent as saved.
pub struct Saved {
    pub info_hash: InfoHash,
    /// The `.torrent` bytes, or a magnet URI.
    pub source: crate::serve::control::Source,
    pub dir: Option<PathBuf>,
    pub paused: bool,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(state: &Path) -> io::Result<Store> {
        let dir = state.join("torrents");
        std::fs::create_dir_all(&dir)?;
        Ok(Store { dir })
    }

    fn file(&self, hash: &InfoHash, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", hash.hex()))
    }

    pub fn save(&self, saved: &Saved) -> io::Result<()> {
        use crate::serve::control::Source;
        let h = &saved.info_hash;
        match &saved.source {
            Source::Torrent(bytes) => write(&self.file(h, "torrent"), bytes)?,
            Source::Magnet(uri) => write(&self.file(h, "magnet"), uri.as_bytes())?,
        }
        match &saved.dir {
            Some(d) => write(&self.file(h, "dir"), d.as_os_str().as_encoded_bytes())?,
            None => remove(&self.file(h, "dir"))?,
        }
        self.set_paused(h, saved.paused)
    }

    /// Replaces a magnet with its torrent once the metadata is in.
    pub fn save_torrent(&self, hash: &InfoHash, bytes: &[u8]) -> io::Result<()> {
        write(&self.file(hash, "torrent"), bytes)?;
        remove(&self.file(hash, "magnet"))
    }

    pub fn set_paused(&self, hash: &InfoHash, paused: bool) -> io::Result<()> {
        let f = self.file(hash, "paused");
        if paused {
            write(&f, b"")
        } else {
            remove(&f)
        }
    }

    pub fn forget(&self, hash: &InfoHash) -> io::Result<()> {
        for ext in ["torrent", "magnet", "dir", "paused"] {
            remove(&self.file(hash, ext))?;
        }
        Ok(())
    }

    /// Every saved torrent; a file that cannot be read is logged and
    /// skipped.
    pub fn load(&self) -> Vec<Saved> {
        use crate::serve::control::Source;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(hash) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(InfoHash::from_hex)
            else {
                continue;
            };
            let source = match path.extension().and_then(|e| e.to_str()) {
                Some("torrent") => std::fs::read(&path).map(Source::Torrent),
                Some("magnet") if !self.file(&hash, "torrent").exists() => {
                    std::fs::read_to_string(&path).map(|s| Source::Magnet(s.trim().to_string()))
                }
                _ => continue,
            };
            let source = match source {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("{}: {e}", path.display());
                    continue;
                }
            };
            // The API takes directories as UTF-8 text.
            let dir = std::fs::read(self.file(&hash, "dir"))
                .ok()
                .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
            out.push(Saved {
                info_hash: hash,
                source,
                dir,
                paused: self.file(&hash, "paused").exists(),
            });
        }
        out
    }
}

fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
