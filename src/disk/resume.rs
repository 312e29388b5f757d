//! Resume state: which pieces were verified, so that a restart (and `shoal
//! seed` of complete data) need not rehash everything.
//!
//! Owns: the file format and when it may be trusted. Does not own: when it
//! is written (the orchestrator saves it only after the data is flushed, so
//! it never claims a piece that is not on disk) or the hashing it replaces.
//!
//! The file sits beside the data, outside the torrent's own folder:
//! `DIR/.NAME.shoal-resume`. It is text:
//!
//! ```text
//! shoal-resume 1
//! info_hash <40 hex>
//! file <length> <mtime seconds>.<nanoseconds>     (one per non-padding file)
//! have <bitfield as hex>
//! ```
//!
//! It is written only when every data file is as shoal left it (the
//! orchestrator checks with `Storage::changed_files`; otherwise it removes
//! the resume file with [`discard`]), so it never vouches for bytes someone
//! else changed. It is trusted only if the info hash matches and every file
//! still has the recorded length and modification time; anything else (a missing or
//! damaged resume file, a touched data file) means a full check. It is
//! written to a temporary name and renamed, so a crash leaves the old state
//! or the new one, never half of one.

use crate::proto::bitfield::Bitfield;
use crate::proto::metainfo::Metainfo;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

const MAGIC: &str = "shoal-resume 1";

/// Where the resume state of a torrent under `root` lives.
pub fn path(meta: &Metainfo, root: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(crate::disk::storage::os_path(&meta.name));
    name.push(".shoal-resume");
    root.join(name)
}

/// A data file's (length, mtime in nanoseconds), as recorded; `None` for
/// padding.
pub type FileStamp = Option<(u64, u128)>;

/// What the file system says of a file now, as a [`FileStamp`].
pub fn stamp_of(m: &std::fs::Metadata) -> Option<(u64, u128)> {
    let mtime = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((m.len(), mtime.as_nanos()))
}

/// Each data file's stamp as the file system has it now.
fn stamps(paths: &[Option<PathBuf>]) -> Option<Vec<FileStamp>> {
    paths
        .iter()
        .map(|p| match p {
            None => Some(None),
            Some(p) => stamp_of(&std::fs::metadata(p).ok()?).map(Some),
        })
        .collect()
}

/// The verified pieces, if a resume file exists and still matches the data
/// (laid out for `selection`: files not selected are in the parts file).
pub fn load(meta: &Metainfo, root: &Path, selection: Option<&[bool]>) -> Option<Bitfield> {
    let text = std::fs::read_to_string(path(meta, root)).ok()?;
    let paths = crate::disk::storage::placed_paths(meta, root, selection).ok()?;
    let now = stamps(&paths)?;
    parse(&text, meta, &now)
}

fn parse(text: &str, meta: &Metainfo, now: &[Option<(u64, u128)>]) -> Option<Bitfield> {
    let mut lines = text.lines();
    (lines.next()? == MAGIC).then_some(())?;
    (lines.next()?.strip_prefix("info_hash ")? == meta.info_hash.hex()).then_some(())?;
    for stamp in now.iter().flatten() {
        let (len, mtime) = lines.next()?.strip_prefix("file ")?.split_once(' ')?;
        let (secs, nanos) = mtime.split_once('.')?;
        let recorded = u128::from(secs.parse::<u64>().ok()?) * 1_000_000_000
            + u128::from(nanos.parse::<u32>().ok()?);
        (*stamp == (len.parse().ok()?, recorded)).then_some(())?;
    }
    let bytes = crate::util::hex::decode(lines.next()?.strip_prefix("have ")?)?;
    lines.next().is_none().then_some(())?;
    Bitfield::from_bytes(&bytes, meta.geometry.num_pieces()).ok()
}

/// Records `have` for the files as `stamps` say they are — the very stamps
/// that were checked to be unchanged (statting again here would bless a
/// change made in between). Call only after the data of every piece in it
/// was flushed. Failing to save costs a rehash later, nothing else: the
/// caller warns with the error, and no temporary file is left behind.
pub fn save(
    meta: &Metainfo,
    root: &Path,
    have: &Bitfield,
    stamps: &[FileStamp],
) -> std::io::Result<()> {
    let dest = path(meta, root);
    let tmp = dest.with_extension("shoal-resume.tmp");
    crate::disk::write_replacing(&dest, &tmp, render(meta, stamps, have).as_bytes())
}

/// Removes the resume state (the data changed under us: the next start
/// must check it). A missing file is fine.
pub fn discard(meta: &Metainfo, root: &Path) {
    let p = path(meta, root);
    match std::fs::remove_file(&p) {
        Ok(()) => log::warn!("{}: removed, the data changed", p.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", p.display()),
    }
}

fn render(meta: &Metainfo, stamps: &[Option<(u64, u128)>], have: &Bitfield) -> String {
    let mut s = format!("{MAGIC}\ninfo_hash {}\n", meta.info_hash.hex());
    for (len, mtime) in stamps.iter().flatten() {
        let secs = mtime / 1_000_000_000;
        let nanos = mtime % 1_000_000_000;
        s.push_str(&format!("file {len} {secs}.{nanos:09}\n"));
    }
    s.push_str(&format!(
        "have {}\n",
        crate::util::hex::encode(have.as_bytes())
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bencode::Owned;

    fn meta() -> Metainfo {
        let info = Owned::dict()
            .insert("name", "d")
            .insert("piece length", 16384)
            .insert("pieces", vec![0u8; 40])
            .insert(
                "files",
                vec![
                    Owned::dict()
                        .insert("length", 20000)
                        .insert("path", vec![Owned::from("a")]),
                    Owned::dict()
                        .insert("length", 12768)
                        .insert("path", vec![Owned::from(".pad"), Owned::from("1")])
                        .insert("attr", "p"),
                ],
            );
        Metainfo::from_bytes(&Owned::dict().insert("info", info).encode()).unwrap()
    }

    #[test]
    fn round_trip_and_every_mismatch_is_refused() {
        let m = meta();
        let t = 1_700_000_000_123_456_789;
        let stamps = vec![Some((20000, t)), None];
        let mut have = Bitfield::new(2);
        have.set(1);
        let text = render(&m, &stamps, &have);
        assert_eq!(parse(&text, &m, &stamps), Some(have));

        let touched = vec![Some((20000, t + 1)), None];
        assert_eq!(parse(&text, &m, &touched), None, "mtime changed");
        let grown = vec![Some((20001, t)), None];
        assert_eq!(parse(&text, &m, &grown), None, "length changed");
        for broken in [
            text.replace("shoal-resume 1", "shoal-resume 2"),
            text.replace(&m.info_hash.hex(), &"0".repeat(40)),
            text.replace("have 40", "have 60"), // spare bit set
            text.replace("have 40", "have 4"),
            format!("{text}extra\n"),
            text[..text.len() / 2].to_string(),
            String::new(),
        ] {
            assert_eq!(parse(&broken, &m, &stamps), None, "{broken:?}");
        }
    }

    #[test]
    fn save_then_load_on_disk() {
        let m = meta();
        let root = std::env::temp_dir().join(format!("shoal-resume-{}", std::process::id()));
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/a"), vec![1u8; 20000]).unwrap();
        let have = Bitfield::full(2);
        let now = stamps(&crate::disk::storage::file_paths(&m, &root).unwrap()).unwrap();
        save(&m, &root, &have, &now).unwrap();
        assert_eq!(load(&m, &root, None), Some(have));
        assert!(path(&m, &root).ends_with(".d.shoal-resume"));
        // A touched data file makes the state stale.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        let f = std::fs::File::options()
            .write(true)
            .open(root.join("d/a"))
            .unwrap();
        f.set_modified(later).unwrap();
        assert_eq!(load(&m, &root, None), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Regression (issue 11, item 9): a failed save (a full disk, here a
    /// directory in the way) is reported and leaves no temporary file.
    #[test]
    fn a_failed_save_says_so_and_leaves_nothing() {
        let m = meta();
        let dir = crate::util::testutil::TempDir::new("resume-fail");
        std::fs::create_dir_all(dir.0.join("d")).unwrap();
        std::fs::write(dir.0.join("d/a"), vec![1u8; 20000]).unwrap();
        std::fs::create_dir_all(path(&m, &dir.0).join("in-the-way")).unwrap();
        let now = stamps(&crate::disk::storage::file_paths(&m, &dir.0).unwrap()).unwrap();
        assert!(save(&m, &dir.0, &Bitfield::full(2), &now).is_err());
        let tmp = path(&m, &dir.0).with_extension("shoal-resume.tmp");
        assert!(!tmp.exists(), "{} left behind", tmp.display());
    }
}
