//! Making a `.torrent` from a file or a directory (`shoal create`).
//!
//! Owns: choosing what goes in (the walk of a directory, its order, and
//! what it leaves out), the automatic piece size ([`auto_piece_len`]),
//! hashing the data on several threads, and writing the metainfo as
//! canonical bencode. Does not own: the bencode grammar
//! ([`crate::proto::bencode::Owned`] writes it), piece arithmetic
//! ([`crate::proto::geometry`]), the rules for safe path components
//! ([`crate::proto::metainfo::check_component`], applied here to every name we put
//! in), or the command line and the progress line (that is [`crate::cli`]).
//!
//! What goes in, and why:
//! - **A file** makes a single-file torrent named after the file; **a
//!   directory**, a multi-file torrent named after the directory, even when
//!   it holds one file (as libtorrent and mktorrent do). The path given on
//!   the command line is followed if it is a symlink: the user named it.
//! - **Every regular file below the directory, hidden ones included**
//!   (names starting with `.`), as mktorrent and libtorrent's `add_files`
//!   do: the torrent holds what `cp -r` would copy. 0-byte files are kept.
//! - **Symlinks inside the directory are skipped**, with a warning (to a
//!   file or to a directory alike). Following them could put files from
//!   outside the directory into a torrent meant to share only that
//!   directory, and a link to a parent would loop. (libtorrent's default
//!   and mktorrent follow them, mktorrent into linked directories too.)
//! - **A file or directory that cannot be read is an error**, not skipped
//!   as mktorrent does with a warning: a torrent silently missing a file
//!   is worse than no torrent.
//! - **Empty directories** cannot be expressed in a v1 torrent and are
//!   skipped; **sockets, FIFOs and devices** are skipped with a warning.
//! - **Order:** files sorted by their path as a list of byte strings,
//!   component by component, so `c/x` comes before `c-d` (mktorrent sorts
//!   the whole path with `strcmp`, which puts `c-d` first; BEP 52's file
//!   tree and libtorrent's v2 order are component-wise). The order is
//!   part of the info hash, so the same directory always gives the same
//!   torrent.
//! - **Names are bytes**, taken exactly from the filesystem; a name that is
//!   not UTF-8 is kept (with a warning: other clients may rename the file
//!   when saving it, though the info hash stays the same).
//! - **No padding files** (BEP 47): a v1 torrent as mktorrent makes it.
//!
//! Trackers: the first `-t` URL is `announce`; with more than one, each
//! also gets its own tier of `announce-list`, in the order given, as
//! mktorrent does with repeated `-a` (BEP 12: later tiers are backups).
//! Web seeds (BEP 19) are `url-list`: a string for one URL, a list for
//! several, as both libtorrent and mktorrent write it.
//!
//! Hashing: the files are one stream cut into pieces. Each of
//! [`Options::threads`] threads takes the next piece number from a shared
//! counter, reads that piece's bytes with `pread` (across file boundaries)
//! in chunks of at most [`CHUNK`] into its own buffer, and hashes as it
//! reads; memory is one chunk per thread whatever the piece size. `sha1`
//! uses the CPU's SHA instructions when it has them. Each thread keeps the
//! file it is reading open, so a tree of many files costs about one `open`
//! per file. A file whose size, modification time or inode differs from
//! what the walk saw, when a thread opens it or after all hashing, is an
//! error naming it: the hashes would not match the data anyone serves.

use crate::proto::bencode::Owned;
use crate::proto::geometry::{Geometry, GeometryError, PieceIndex};
use crate::proto::metainfo::{check_component, MAX_PIECE_LEN};
use sha1::{Digest, Sha1};
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The smallest piece [`auto_piece_len`] picks and [`create`] accepts: one
/// 16 KiB request block.
pub const MIN_PIECE_LEN: u32 = 16 << 10;

/// The largest piece [`auto_piece_len`] picks (larger ones may be asked
/// for, up to [`MAX_PIECE_LEN`]).
pub const MAX_AUTO_PIECE_LEN: u32 = 16 << 20;

/// Hashing reads at most this much at a time per thread: big enough that
/// a `pread` costs nothing next to SHA-1 of its bytes, small enough that
/// the bytes are still in the CPU's cache when they are hashed. (Measured
/// on 1 GiB in the page cache, 2 threads: 64 KiB to 4 MiB all hash at the
/// same ~2.7 GiB/s, so the smaller memory wins.)
pub const CHUNK: usize = 1 << 20;

/// What to make a torrent of, and what to write in it.
#[derive(Debug, Clone)]
pub struct Options {
    /// A file (single-file torrent) or a directory (multi-file torrent).
    pub path: PathBuf,
    /// Tracker URLs in order: the first is `announce`; with more than one,
    /// each is its own tier of `announce-list`. Empty strings and repeats
    /// are dropped. None at all makes a trackerless torrent (peers are then
    /// given with `--peer`).
    pub trackers: Vec<String>,
    /// BEP 19 web seed URLs (`url-list`).
    pub web_seeds: Vec<String>,
    /// A power of two from 16 KiB to 256 MiB; `None` picks
    /// [`auto_piece_len`] of the total size.
    pub piece_len: Option<u32>,
    /// BEP 27: `private = 1` in the info dictionary (no DHT, PEX, LSD).
    pub private: bool,
    pub comment: Option<String>,
    /// `created by`, e.g. `shoal 0.1.0`; left out when empty.
    pub created_by: String,
    /// Seconds since the Unix epoch; `None` leaves the key out, so the same
    /// data and options always give the same bytes.
    pub creation_date: Option<i64>,
    /// Hashing threads; 0 counts as 1.
    pub threads: usize,
}

/// The automatic piece length for `total` bytes: the smallest power of two
/// that cuts them into at most 2048 pieces, so a torrent has between 1025
/// and 2048 pieces, within 16 KiB ..= 16 MiB.
///
/// Why these numbers: libtorrent before 2.0 used exactly this rule (aim for
/// a 40 KiB `pieces` string, i.e. 2048 hashes; a power of two from 16 KiB),
/// capped at 2 MiB; libtorrent 2.0 grows the piece count with the square
/// root of the size instead (512 KiB at 1 GiB, 4 MiB at 100 GiB, 16 MiB
/// from 655 GiB); mktorrent aims at 800–1600 pieces from 32 KiB (1 MiB at
/// 1 GiB) up to 16 MiB above 12.5 GiB. So 1 GiB → 512 KiB here, as
/// libtorrent 2.0 has it. The floor is one request block. The cap is both
/// tools' largest automatic size: a piece is what a peer must fetch before
/// it can check and share it, and what a failed hash costs, and storage
/// maps pieces in flight × piece length of address space; above 32 GiB the
/// piece count grows instead (1 TiB is 65536 pieces, a 1.3 MB `.torrent`).
pub fn auto_piece_len(total: u64) -> u32 {
    let per_piece = total.div_ceil(2048).max(1).next_power_of_two();
    per_piece.clamp(u64::from(MIN_PIECE_LEN), u64::from(MAX_AUTO_PIECE_LEN)) as u32
}

/// Makes the `.torrent` for `opts.path` and returns its bytes.
///
/// `progress` is called with the total number of bytes hashed so far, from
/// the hashing threads after each chunk read (at most [`CHUNK`] bytes), and
/// once at the end with the total from the calling thread. Calls from
/// different threads can arrive slightly out of order: keep the largest.
/// Whether a piece length may be asked for: a power of two from 16 KiB to
/// [`MAX_PIECE_LEN`].
pub fn valid_piece_len(n: u32) -> bool {
    n.is_power_of_two() && n >= MIN_PIECE_LEN && i64::from(n) <= MAX_PIECE_LEN
}

pub fn create(opts: &Options, progress: &(dyn Fn(u64) + Sync)) -> Result<Vec<u8>, CreateError> {
    create_with_chunk(opts, progress, CHUNK)
}

fn create_with_chunk(
    opts: &Options,
    progress: &(dyn Fn(u64) + Sync),
    chunk: usize,
) -> Result<Vec<u8>, CreateError> {
    if let Some(n) = opts.piece_len.filter(|&n| !valid_piece_len(n)) {
        return Err(CreateError::BadPieceLength(n));
    }
    let (name, files, multi_file) = scan(&opts.path)?;
    let total: u64 = files.iter().map(|f| f.id.len).sum();
    if total == 0 {
        return Err(CreateError::NothingToShare {
            path: opts.path.clone(),
        });
    }
    let piece_len = opts.piece_len.unwrap_or_else(|| auto_piece_len(total));
    let geometry =
        Geometry::new(piece_len, files.iter().map(|f| (f.id.len, false))).map_err(|error| {
            CreateError::Geometry {
                path: opts.path.clone(),
                error,
            }
        })?;
    log::debug!(
        "create: {} files, {} bytes, {} pieces of {piece_len}",
        files.len(),
        total,
        geometry.num_pieces()
    );
    let pieces = hash_pieces(&files, &geometry, opts.threads, chunk, progress)?;
    for f in &files {
        let now = fs::metadata(&f.path).map_err(|cause| CreateError::Read {
            path: f.path.clone(),
            cause,
        })?;
        if FileId::of(&now) != f.id {
            return Err(CreateError::Changed {
                path: f.path.clone(),
            });
        }
    }
    progress(total);
    Ok(encode(opts, name, &files, multi_file, piece_len, pieces))
}

/// One file to share: where it is, its path in the torrent, and what it
/// looked like when the walk found it.
struct Source {
    path: PathBuf,
    /// Below the torrent's name; empty for a single-file torrent.
    components: Vec<Vec<u8>>,
    id: FileId,
}

/// What must not change between the walk and the end of hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileId {
    fn of(m: &Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// The torrent's name, its files in torrent order, and whether it is a
/// multi-file torrent.
fn scan(path: &Path) -> Result<(Vec<u8>, Vec<Source>, bool), CreateError> {
    let read = |p: &Path| {
        let p = p.to_path_buf();
        move |cause| CreateError::Read { path: p, cause }
    };
    let meta = fs::metadata(path).map_err(read(path))?;
    let name = match path.file_name() {
        Some(n) => n.as_bytes().to_vec(),
        // `.`, `..`, `/`: name it after what it is.
        None => fs::canonicalize(path)
            .map_err(read(path))?
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default(),
    };
    if name.is_empty() {
        return Err(CreateError::UnsafeName {
            path: path.to_path_buf(),
            reason: "it has no name to give the torrent",
        });
    }
    check_name(path, &name)?;
    if meta.is_file() {
        let source = Source {
            path: path.to_path_buf(),
            components: Vec::new(),
            id: FileId::of(&meta),
        };
        return Ok((name, vec![source], false));
    }
    if !meta.is_dir() {
        return Err(CreateError::NotFileOrDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut files = Vec::new();
    // Directories still to list, with their components below the root. No
    // symlink is followed, so this cannot loop.
    let mut dirs: Vec<(PathBuf, Vec<Vec<u8>>)> = vec![(path.to_path_buf(), Vec::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(read(&dir))? {
            let entry = entry.map_err(read(&dir))?;
            let at = entry.path();
            let kind = entry.file_type().map_err(read(&at))?;
            let mut components = prefix.clone();
            components.push(entry.file_name().as_bytes().to_vec());
            if kind.is_symlink() {
                log::warn!("skipping symlink {}", at.display());
            } else if kind.is_dir() {
                check_name(&at, components.last().expect("just pushed"))?;
                dirs.push((at, components));
            } else if kind.is_file() {
                check_name(&at, components.last().expect("just pushed"))?;
                let meta = entry.metadata().map_err(read(&at))?;
                files.push(Source {
                    path: at,
                    components,
                    id: FileId::of(&meta),
                });
            } else {
                log::warn!("skipping {}: not a regular file or directory", at.display());
            }
        }
    }
    files.sort_by(|a, b| a.components.cmp(&b.components));
    Ok((name, files, true))
}

/// A name must be a safe path component to go in a torrent. Names read
/// from a directory always are; the name of the input may not be (`/`).
fn check_name(path: &Path, name: &[u8]) -> Result<(), CreateError> {
    check_component(name).map_err(|reason| CreateError::UnsafeName {
        path: path.to_path_buf(),
        reason,
    })?;
    if std::str::from_utf8(name).is_err() {
        log::warn!(
            "{}: the name is not UTF-8; other clients may save it under another name",
            path.display()
        );
    }
    Ok(())
}

/// The SHA-1 of every piece, concatenated, hashed on `threads` threads.
fn hash_pieces(
    files: &[Source],
    geometry: &Geometry,
    threads: usize,
    chunk: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, CreateError> {
    let num_pieces = geometry.num_pieces();
    let threads = threads.clamp(1, num_pieces as usize);
    let chunk = chunk.min(geometry.piece_len() as usize).max(1);
    // u64 so that threads counting past the last piece cannot wrap.
    let next = AtomicU64::new(0);
    let hashed = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<CreateError>> = Mutex::new(None);
    let results: Vec<Vec<(PieceIndex, [u8; 20])>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut reader = Reader { files, open: None };
                    let mut buf = vec![0u8; chunk];
                    let mut done = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(piece) = u32::try_from(i).ok().and_then(|i| geometry.piece(i))
                        else {
                            break;
                        };
                        let hash = reader.hash_piece(geometry, piece, &mut buf, |n| {
                            progress(hashed.fetch_add(n, Ordering::Relaxed) + n)
                        });
                        match hash {
                            Ok(h) => done.push((piece, h)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                let mut slot =
                                    first_error.lock().unwrap_or_else(|p| p.into_inner());
                                slot.get_or_insert(e);
                                break;
                            }
                        }
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a hashing thread panicked"))
            .collect()
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut pieces = vec![0u8; num_pieces as usize * 20];
    let mut count = 0;
    for (piece, h) in results.into_iter().flatten() {
        pieces[piece.usize() * 20..][..20].copy_from_slice(&h);
        count += 1;
    }
    assert_eq!(count, num_pieces, "every piece hashed once");
    Ok(pieces)
}

/// One hashing thread's view of the files: the one it has open.
struct Reader<'a> {
    files: &'a [Source],
    open: Option<(usize, File)>,
}

impl Reader<'_> {
    /// SHA-1 of one piece, read in chunks of `buf.len()`; calls `hashed`
    /// with the size of each chunk.
    fn hash_piece(
        &mut self,
        geometry: &Geometry,
        piece: PieceIndex,
        buf: &mut [u8],
        hashed: impl Fn(u64),
    ) -> Result<[u8; 20], CreateError> {
        let size = geometry.piece_size(piece);
        let mut hasher = Sha1::new();
        let mut at = 0u32;
        while at < size {
            let n = (size - at).min(buf.len() as u32);
            let part = &mut buf[..n as usize];
            self.read(geometry, piece, at..at + n, part)?;
            hasher.update(&*part);
            hashed(u64::from(n));
            at += n;
        }
        Ok(hasher.finalize().into())
    }

    /// Fills `buf` with the bytes of `range` of `piece`.
    fn read(
        &mut self,
        geometry: &Geometry,
        piece: PieceIndex,
        range: Range<u32>,
        buf: &mut [u8],
    ) -> Result<(), CreateError> {
        for s in geometry.slices(piece, range.clone()) {
            let part = &mut buf[(s.piece_offset - range.start) as usize..][..s.len as usize];
            let files = self.files;
            let source = &files[s.file];
            self.file(s.file)?
                .read_exact_at(part, s.file_offset)
                .map_err(|cause| {
                    if cause.kind() == io::ErrorKind::UnexpectedEof {
                        CreateError::Changed {
                            path: source.path.clone(),
                        }
                    } else {
                        CreateError::Read {
                            path: source.path.clone(),
                            cause,
                        }
                    }
                })?;
        }
        Ok(())
    }

    /// File `index`, opened (and checked unchanged) unless it already is.
    fn file(&mut self, index: usize) -> Result<&File, CreateError> {
        if self.open.as_ref().is_none_or(|(i, _)| *i != index) {
            let files = self.files;
            let source = &files[index];
            let read = |cause| CreateError::Read {
                path: source.path.clone(),
                cause,
            };
            let file = File::open(&source.path).map_err(read)?;
            if FileId::of(&file.metadata().map_err(read)?) != source.id {
                return Err(CreateError::Changed {
                    path: source.path.clone(),
                });
            }
            self.open = Some((index, file));
        }
        Ok(&self.open.as_ref().expect("opened above").1)
    }
}

/// The metainfo as canonical bencode.
fn encode(
    opts: &Options,
    name: Vec<u8>,
    files: &[Source],
    multi_file: bool,
    piece_len: u32,
    pieces: Vec<u8>,
) -> Vec<u8> {
    // Geometry::new refused totals over i64::MAX, so every length fits.
    let int = |n: u64| i64::try_from(n).expect("lengths fit in i64");
    let mut info = Owned::dict()
        .insert("name", name)
        .insert("piece length", i64::from(piece_len))
        .insert("pieces", pieces);
    if multi_file {
        let list: Vec<Owned> = files
            .iter()
            .map(|f| {
                let path: Vec<Owned> = f.components.iter().map(|c| Owned::from(&c[..])).collect();
                Owned::dict()
                    .insert("length", int(f.id.len))
                    .insert("path", path)
            })
            .collect();
        info = info.insert("files", list);
    } else {
        info = info.insert("length", int(files[0].id.len));
    }
    if opts.private {
        info = info.insert("private", 1);
    }

    let mut root = Owned::dict().insert("info", info);
    let mut trackers: Vec<&str> = Vec::new();
    for t in &opts.trackers {
        if !t.is_empty() && !trackers.contains(&t.as_str()) {
            trackers.push(t);
        }
    }
    if let Some(first) = trackers.first() {
        root = root.insert("announce", *first);
    }
    if trackers.len() > 1 {
        let tiers: Vec<Owned> = trackers
            .iter()
            .map(|t| Owned::List(vec![Owned::from(*t)]))
            .collect();
        root = root.insert("announce-list", tiers);
    }
    let seeds: Vec<&str> = opts
        .web_seeds
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    match seeds[..] {
        [] => {}
        [one] => root = root.insert("url-list", one),
        _ => {
            let list: Vec<Owned> = seeds.iter().map(|s| Owned::from(*s)).collect();
            root = root.insert("url-list", list);
        }
    }
    if let Some(c) = &opts.comment {
        root = root.insert("comment", c.as_str());
    }
    if !opts.created_by.is_empty() {
        root = root.insert("created by", opts.created_by.as_str());
    }
    if let Some(date) = opts.creation_date {
        root = root.insert("creation date", date);
    }
    root.encode()
}

/// Why a torrent could not be made. Each names the path concerned; the
/// message is complete in itself (`source` is not set).
#[derive(Debug)]
pub enum CreateError {
    /// The input, a directory below it or one of its files could not be
    /// examined, listed, opened or read (missing, permission denied, I/O
    /// error).
    Read { path: PathBuf, cause: io::Error },
    /// A file's size, modification time or inode changed between the walk
    /// and the end of hashing (someone is writing it, or replaced it).
    Changed { path: PathBuf },
    /// The input is neither a regular file nor a directory (a FIFO, a
    /// device, a socket).
    NotFileOrDirectory { path: PathBuf },
    /// A name a torrent cannot carry; in practice only an input with no
    /// name, such as `/`.
    UnsafeName { path: PathBuf, reason: &'static str },
    /// The input holds no bytes: an empty file, or a directory with no
    /// files or only empty ones.
    NothingToShare { path: PathBuf },
    /// [`Options::piece_len`] is not a power of two from 16 KiB to 256 MiB.
    BadPieceLength(u32),
    /// The sizes do not make a torrent: over 2^63-1 bytes in all, or more
    /// pieces than the protocol numbers (a tiny piece size for a huge input).
    Geometry { path: PathBuf, error: GeometryError },
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreateError::Read { path, cause } => {
                write!(
                    f,
                    "cannot read {}: {}",
                    path.display(),
                    crate::disk::sys::io_reason(cause)
                )
            }
            CreateError::Changed { path } => write!(
                f,
                "{} changed while it was being hashed; try again once nothing is writing to it",
                path.display()
            ),
            CreateError::NotFileOrDirectory { path } => write!(
                f,
                "cannot share {}: not a regular file or directory",
                path.display()
            ),
            CreateError::UnsafeName { path, reason } => {
                write!(f, "unsafe name {}: {reason}", path.display())
            }
            CreateError::NothingToShare { path } => {
                write!(f, "nothing to share: {} has no data", path.display())
            }
            CreateError::BadPieceLength(n) => write!(
                f,
                "piece size {n} is not a power of two from 16 KiB to {}",
                crate::util::units::format_bytes(MAX_PIECE_LEN as u64)
            ),
            CreateError::Geometry { path, error } => {
                write!(f, "cannot share {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for CreateError {}

#[cfg(test)]
mod tests;
