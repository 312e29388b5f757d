//! The files of one torrent on disk: where they live, writing blocks into
//! them through memory maps, reading and hashing pieces back.
//!
//! Owns: the on-disk layout (`root/<name>` for a single-file torrent,
//! `root/<name>/<path…>` for a multi-file one), creating and preallocating
//! files, the windowed memory maps of pieces being written, and hashing
//! pieces as stored ([`verify`] checks them all on several threads). Does
//! not own: piece arithmetic ([`crate::geometry`]), path validation
//! ([`crate::metainfo::check_component`], re-checked here as a second
//! line), or piece states and resume data (the orchestrator's).
//!
//! Threads: a [`Storage`] belongs to one thread, the orchestrator, which
//! alone writes. [`Reader`] is a cheap `Send + Sync` handle for reads
//! (uploads, checks) from any thread, using `pread` on shared descriptors.
//!
//! Memory: a piece is mapped on its first write, one map per file the piece
//! touches, each covering exactly that piece's slice of the file (memmap2
//! aligns the offset down to a page itself), and unmapped by
//! [`Storage::release`]. Address space is therefore pieces-in-progress ×
//! piece length, not the torrent's size, so a torrent larger than a 32-bit
//! address space (or `ulimit -v`) still downloads. File offsets stay `u64`
//! all the way to `mmap64`; the only `usize` is a window length, a piece
//! slice, which is a `u32`.
//!
//! Padding files (BEP 47) are never created, written or read: they read as
//! zeros and hash as zeros, and block bytes that fall in them are dropped.
#![allow(unsafe_code)]

use crate::bitfield::Bitfield;
use crate::geometry::{FileSlice, PieceIndex};
use crate::metainfo::Metainfo;
use memmap2::{MmapMut, MmapOptions};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

// A piece slice is a `u32` long and becomes a `usize` map length.
const _: () = assert!(usize::BITS >= 32);

/// Hashing reads a piece in chunks of at most this much: big enough that
/// syscalls cost little next to SHA-1, small enough to stay in cache and to
/// never hold a whole 16 MiB piece.
const HASH_CHUNK: usize = 1 << 20;

/// Zeros to hash in place of padding.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// What [`Storage`] and [`Reader`] share: the torrent and its open files.
struct Files {
    meta: Arc<Metainfo>,
    /// Where each file lives on disk; `None` for padding.
    paths: Vec<Option<PathBuf>>,
    /// The open file; `None` for padding, or for a file
    /// [`Storage::open_existing`] did not find.
    files: Vec<Option<File>>,
}

/// The files of one torrent, written through memory maps. Owned by one
/// thread; hand [`Storage::reader`] to others.
pub struct Storage {
    shared: Arc<Files>,
    /// Made by [`Storage::open_existing`]: reads only.
    read_only: bool,
    /// The maps of pieces being written, until [`Storage::release`].
    maps: HashMap<PieceIndex, Vec<Window>>,
    /// Reused by [`Storage::hash_piece`] for unmapped pieces.
    scratch: Vec<u8>,
}

/// One file slice of a mapped piece: `map` covers exactly the slice's bytes
/// of its file, or is `None` for padding.
struct Window {
    slice: FileSlice,
    map: Option<MmapMut>,
}

impl Storage {
    /// Creates the directories and files of the torrent under `root` as
    /// needed (zero-length files too, padding never) and preallocates each
    /// file to its length with [`crate::sys::fallocate`], so that a full disk
    /// is a clear error now rather than a `SIGBUS` mid-download.
    ///
    /// Existing files are opened and kept, never truncated (their data is
    /// checked against the hashes later). A file longer than its torrent
    /// length is left as it is; only its first bytes are used.
    pub fn create(meta: Arc<Metainfo>, root: &Path) -> Result<Storage, StorageError> {
        let paths = file_paths(&meta, root)?;
        let mut files = Vec::with_capacity(paths.len());
        for (info, path) in meta.files.iter().zip(&paths) {
            let Some(path) = path else {
                files.push(None);
                continue;
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|cause| StorageError::Create {
                    path: dir.to_path_buf(),
                    cause,
                })?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|cause| StorageError::Create {
                    path: path.clone(),
                    cause,
                })?;
            crate::sys::fallocate(&file, info.length).map_err(|cause| {
                StorageError::Preallocate {
                    path: path.clone(),
                    len: info.length,
                    cause,
                }
            })?;
            files.push(Some(file));
        }
        Ok(Storage::new(meta, paths, files, false))
    }

    /// Opens the torrent's existing files under `root` read-only, for
    /// `seed` and `check`. A missing file is not an error here: reads from
    /// it fail, so its pieces fail verification; a short file likewise fails
    /// reads past its end. Any other failure to open (permission denied, a
    /// directory where a file should be) is an error.
    pub fn open_existing(meta: Arc<Metainfo>, root: &Path) -> Result<Storage, StorageError> {
        let paths = file_paths(&meta, root)?;
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            let Some(path) = path else {
                files.push(None);
                continue;
            };
            let open = |cause| StorageError::Open {
                path: path.clone(),
                cause,
            };
            match File::open(path) {
                Ok(file) => {
                    if !file.metadata().map_err(open)?.is_file() {
                        return Err(open(io::Error::other("not a regular file")));
                    }
                    files.push(Some(file));
                }
                Err(e) if is_missing(&e) => files.push(None),
                Err(e) => return Err(open(e)),
            }
        }
        Ok(Storage::new(meta, paths, files, true))
    }

    fn new(
        meta: Arc<Metainfo>,
        paths: Vec<Option<PathBuf>>,
        files: Vec<Option<File>>,
        read_only: bool,
    ) -> Storage {
        Storage {
            shared: Arc::new(Files { meta, paths, files }),
            read_only,
            maps: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Copies a block into the piece's memory maps, mapping the piece on its
    /// first write. Bytes that fall in padding are dropped.
    pub fn write(
        &mut self,
        piece: PieceIndex,
        begin: u32,
        data: &[u8],
    ) -> Result<(), StorageError> {
        if self.read_only {
            return Err(StorageError::ReadOnly { piece });
        }
        let end = check_range(&self.shared.meta, piece, begin, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let windows = match self.maps.entry(piece) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(map_piece(&self.shared, piece)?)
            }
        };
        for w in windows {
            let (s, Some(map)) = (&w.slice, &mut w.map) else {
                continue;
            };
            let from = begin.max(s.piece_offset);
            let to = end.min(s.piece_offset + s.len);
            if from >= to {
                continue;
            }
            let dst = (from - s.piece_offset) as usize..(to - s.piece_offset) as usize;
            let src = (from - begin) as usize..(to - begin) as usize;
            map[dst].copy_from_slice(&data[src]);
        }
        Ok(())
    }

    /// SHA-1 of the piece as stored: through its maps if it is mapped, else
    /// read with `pread`. Padding hashes as zeros.
    pub fn hash_piece(&mut self, piece: PieceIndex) -> Result<[u8; 20], StorageError> {
        let Some(windows) = self.maps.get(&piece) else {
            return Reader {
                shared: self.shared.clone(),
            }
            .hash_piece(piece, &mut self.scratch);
        };
        let mut hasher = Sha1::new();
        for w in windows {
            match &w.map {
                Some(map) => hasher.update(&map[..]),
                None => hash_zeros(&mut hasher, w.slice.len as usize),
            }
        }
        Ok(hasher.finalize().into())
    }

    /// Done with a piece, verified or failed: starts writeback of its range
    /// (`msync(MS_ASYNC)`, which on Linux only marks pages, so also
    /// `sync_file_range(WRITE)` there) and unmaps it, so resident memory
    /// does not grow with the download. The data stays in the page cache and
    /// reaches the disk by the kernel's writeback; [`Storage::sync`] waits
    /// for it. Releasing a piece that is not mapped does nothing; the piece
    /// is unmapped even when this returns an error.
    pub fn release(&mut self, piece: PieceIndex) -> Result<(), StorageError> {
        let Some(windows) = self.maps.remove(&piece) else {
            return Ok(());
        };
        for w in windows {
            let Some(map) = w.map else { continue };
            let flush = |cause| StorageError::Flush {
                path: self.path_of(w.slice.file),
                cause,
            };
            map.flush_async().map_err(flush)?;
            if let Some(file) = &self.shared.files[w.slice.file] {
                crate::sys::start_writeback(file, w.slice.file_offset, u64::from(w.slice.len))
                    .map_err(flush)?;
            }
            // Dropping `map` unmaps it.
        }
        Ok(())
    }

    /// Flushes every mapped piece and `fdatasync`s every file, so that all
    /// data written so far is on disk (before writing resume state, and on
    /// shutdown). A no-op for read-only storage.
    pub fn sync(&self) -> Result<(), StorageError> {
        if self.read_only {
            return Ok(());
        }
        for w in self.maps.values().flatten() {
            if let Some(map) = &w.map {
                map.flush().map_err(|cause| StorageError::Sync {
                    path: self.path_of(w.slice.file),
                    cause,
                })?;
            }
        }
        for (i, file) in self.shared.files.iter().enumerate() {
            if let Some(file) = file {
                file.sync_data().map_err(|cause| StorageError::Sync {
                    path: self.path_of(i),
                    cause,
                })?;
            }
        }
        Ok(())
    }

    /// A handle for reads from other threads.
    pub fn reader(&self) -> Reader {
        Reader {
            shared: self.shared.clone(),
        }
    }

    /// Where file `file` of the torrent lives on disk; `None` for padding.
    /// Panics if `file` is not an index into the torrent's file list.
    pub fn path(&self, file: usize) -> Option<&Path> {
        self.shared.paths[file].as_deref()
    }

    fn path_of(&self, file: usize) -> PathBuf {
        self.shared.path_of(file)
    }

    /// How many pieces are mapped now.
    #[cfg(test)]
    fn mapped(&self) -> usize {
        self.maps.len()
    }
}

impl Files {
    fn path_of(&self, file: usize) -> PathBuf {
        self.paths[file].clone().unwrap_or_default()
    }
}

/// Maps each non-padding slice of a piece, writable.
fn map_piece(shared: &Files, piece: PieceIndex) -> Result<Vec<Window>, StorageError> {
    shared
        .meta
        .geometry
        .piece_slices(piece)
        .map(|slice| {
            if slice.padding {
                return Ok(Window { slice, map: None });
            }
            let path = || shared.path_of(slice.file);
            let map_err = |cause| StorageError::Map {
                path: path(),
                cause,
            };
            let file = shared.files[slice.file]
                .as_ref()
                .ok_or_else(|| map_err(io::Error::from_raw_os_error(libc::ENOENT)))?;
            // Touching a map past the end of its file is a SIGBUS, not an
            // error: refuse a file someone shortened since `create`.
            let file_len = file.metadata().map_err(map_err)?.len();
            if file_len < slice.file_offset + u64::from(slice.len) {
                return Err(map_err(io::Error::other(format!(
                    "the file is {file_len} bytes, shorter than the torrent says"
                ))));
            }
            // SAFETY: the file is open read-write and at least as long as
            // the window (checked just above; `create` preallocated it and
            // shoal never shrinks a file), so every byte of the map is
            // backed. The map is only touched through this `MmapMut` by the
            // one thread that owns the Storage; readers use `pread`, which
            // copies in the kernel and makes no Rust reference into it.
            // Another process truncating or rewriting the file meanwhile
            // would break this, as it would for any program that maps files;
            // the download directory is assumed to be ours.
            let map = unsafe {
                MmapOptions::new()
                    .offset(slice.file_offset)
                    .len(slice.len as usize)
                    .map_mut(file)
            }
            .map_err(map_err)?;
            Ok(Window {
                slice,
                map: Some(map),
            })
        })
        .collect()
}

/// A cheap, cloneable, `Send + Sync` handle for reading a torrent's data
/// from any thread, with `pread`.
#[derive(Clone)]
pub struct Reader {
    shared: Arc<Files>,
}

impl Reader {
    /// The torrent this reads.
    pub fn meta(&self) -> &Arc<Metainfo> {
        &self.shared.meta
    }

    /// Fills `buf` with the bytes of `piece` from `begin`, zeros for
    /// padding. Fails if the range is outside the piece, or a file is
    /// missing or shorter than the torrent says.
    pub fn read(&self, piece: PieceIndex, begin: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let end = check_range(&self.shared.meta, piece, begin, buf.len())?;
        for s in self.shared.meta.geometry.slices(piece, begin..end) {
            let part = &mut buf[(s.piece_offset - begin) as usize..][..s.len as usize];
            if s.padding {
                part.fill(0);
                continue;
            }
            let read = |cause| StorageError::Read {
                path: self.shared.path_of(s.file),
                cause,
            };
            let file = self.shared.files[s.file]
                .as_ref()
                .ok_or_else(|| read(io::Error::from_raw_os_error(libc::ENOENT)))?;
            file.read_exact_at(part, s.file_offset).map_err(|e| {
                read(if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(e.kind(), "the file is shorter than the torrent says")
                } else {
                    e
                })
            })?;
        }
        Ok(())
    }

    /// SHA-1 of a whole piece as stored, reading it in chunks of up to
    /// 1 MiB into `scratch` (reuse it across calls).
    pub fn hash_piece(
        &self,
        piece: PieceIndex,
        scratch: &mut Vec<u8>,
    ) -> Result<[u8; 20], StorageError> {
        let size = self.shared.meta.geometry.piece_size(piece);
        let chunk = (size as usize).min(HASH_CHUNK);
        if scratch.len() < chunk {
            scratch.resize(chunk, 0);
        }
        let mut hasher = Sha1::new();
        let mut at = 0u32;
        while at < size {
            let n = (size - at).min(chunk as u32);
            let buf = &mut scratch[..n as usize];
            self.read(piece, at, buf)?;
            hasher.update(&*buf);
            at += n;
        }
        Ok(hasher.finalize().into())
    }
}

/// Which pieces on disk match their hashes. Hashes every piece on `threads`
/// threads (at least one), each taking the next piece number as it goes, and
/// calls `progress(pieces done so far)` from any of them every so often
/// (at most about a thousand times, and once at the end with the piece
/// count). A piece that cannot be read (missing or short file, I/O error)
/// counts as not valid.
pub fn verify(reader: &Reader, threads: usize, progress: &(dyn Fn(u32) + Sync)) -> Bitfield {
    let meta = &reader.shared.meta;
    let total = meta.geometry.num_pieces();
    let next = AtomicU32::new(0);
    let done = AtomicU32::new(0);
    let step = (total / 1000).max(1);
    let threads = threads.clamp(1, total.max(1) as usize);
    let valid: Vec<u32> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut scratch = Vec::new();
                    let mut valid = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(piece) = meta.geometry.piece(i) else {
                            break;
                        };
                        if reader
                            .hash_piece(piece, &mut scratch)
                            .is_ok_and(|h| h == meta.piece_hash(piece))
                        {
                            valid.push(i);
                        }
                        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if n % step == 0 && n < total {
                            progress(n);
                        }
                    }
                    valid
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a verify thread panicked"))
            .collect()
    });
    progress(total);
    let mut have = Bitfield::new(total);
    for i in valid {
        have.set(i);
    }
    have
}

/// The download directory to give [`Storage::open_existing`] for a
/// `DATA_PATH` that may be either that directory or the torrent's own file
/// (single-file) or folder (multi-file).
///
/// If `path` ends in the torrent's name and is a file (single-file) or a
/// directory (multi-file), it is the torrent's own, and its parent is the
/// root; otherwise `path` is the root. One case reads both ways: a
/// multi-file torrent named `x` and a path `…/x` that also holds a directory
/// `x`. Then whichever reading finds the torrent's first real file wins,
/// `path` itself if both or neither do.
pub fn resolve_root(meta: &Metainfo, path: &Path) -> PathBuf {
    let own_kind = |p: &Path| {
        if meta.multi_file {
            p.is_dir()
        } else {
            p.is_file()
        }
    };
    let names_torrent = path.file_name() == Some(OsStr::from_bytes(&meta.name));
    if !(names_torrent && own_kind(path)) {
        return path.to_path_buf();
    }
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => return path.to_path_buf(),
    };
    if meta.multi_file && own_kind(&path.join(OsStr::from_bytes(&meta.name))) {
        let first = file_paths(meta, Path::new(""))
            .ok()
            .and_then(|paths| paths.into_iter().flatten().next());
        if let Some(first) = first {
            if path.join(&first).is_file() && !parent.join(&first).is_file() {
                return path.to_path_buf();
            }
        }
    }
    parent
}

/// A sensible default for [`verify`]'s thread count: the CPUs available to
/// this process, or 1 if that is unknown.
pub fn available_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A torrent path component (bytes, as in the metainfo) as an OS path
/// component. Unix paths are bytes, so this is exact, not lossy. Check the
/// component first ([`crate::metainfo::check_component`]) before pushing it
/// onto a path.
pub fn os_path(component: &[u8]) -> &OsStr {
    OsStr::from_bytes(component)
}

/// Each file's path under `root`, `None` for padding, built only by
/// pushing components that pass [`crate::metainfo::check_component`].
pub fn file_paths(meta: &Metainfo, root: &Path) -> Result<Vec<Option<PathBuf>>, StorageError> {
    fn checked(c: &[u8]) -> Result<&OsStr, StorageError> {
        crate::metainfo::check_component(c).map_err(|reason| StorageError::UnsafePath {
            path: String::from_utf8_lossy(c).into_owned(),
            reason,
        })?;
        Ok(os_path(c))
    }
    let mut base = root.to_path_buf();
    base.push(checked(&meta.name)?);
    meta.files
        .iter()
        .map(|f| {
            if f.padding {
                return Ok(None);
            }
            let mut path = base.clone();
            if meta.multi_file {
                if f.path.is_empty() {
                    return Err(StorageError::UnsafePath {
                        path: String::new(),
                        reason: "the path is empty",
                    });
                }
                for c in &f.path {
                    path.push(checked(c)?);
                }
            }
            Ok(Some(path))
        })
        .collect()
}

/// Checks that `len` bytes from `begin` lie inside the piece; returns the
/// end offset.
fn check_range(
    meta: &Metainfo,
    piece: PieceIndex,
    begin: u32,
    len: usize,
) -> Result<u32, StorageError> {
    let piece_len = meta.geometry.piece_size(piece);
    u32::try_from(len)
        .ok()
        .and_then(|n| begin.checked_add(n))
        .filter(|&end| end <= piece_len)
        .ok_or(StorageError::OutOfRange {
            piece,
            begin,
            len,
            piece_len,
        })
}

fn hash_zeros(hasher: &mut Sha1, mut n: usize) {
    while n > 0 {
        let k = n.min(ZEROS.len());
        hasher.update(&ZEROS[..k]);
        n -= k;
    }
}

/// A file that is not there: not found, or a path component that is a file.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Why storage failed. Each names the file and the OS's reason; the
/// message is complete in itself (`source` is not set, so printing a chain
/// does not repeat the cause).
#[derive(Debug)]
pub enum StorageError {
    /// A directory or file could not be created or opened for writing
    /// ([`Storage::create`]).
    Create { path: PathBuf, cause: io::Error },
    /// An existing file could not be opened for reading, or is not a
    /// regular file ([`Storage::open_existing`]; a missing file is not an
    /// error there).
    Open { path: PathBuf, cause: io::Error },
    /// The disk space for a file could not be reserved, usually because the
    /// disk is full ([`Storage::create`]).
    Preallocate {
        path: PathBuf,
        len: u64,
        cause: io::Error,
    },
    /// A piece's window of a file could not be memory-mapped
    /// ([`Storage::write`]): out of address space, or the file shrank.
    Map { path: PathBuf, cause: io::Error },
    /// Starting writeback of a released piece failed ([`Storage::release`]).
    Flush { path: PathBuf, cause: io::Error },
    /// Reading failed: a missing file, one shorter than the torrent says,
    /// or an I/O error ([`Reader::read`], hashing).
    Read { path: PathBuf, cause: io::Error },
    /// `msync`/`fdatasync` failed ([`Storage::sync`]): the data may not be
    /// on disk.
    Sync { path: PathBuf, cause: io::Error },
    /// A read or write range that is not inside the piece: a caller's bug,
    /// since requests are checked by [`crate::geometry::Geometry::checked_block`].
    OutOfRange {
        piece: PieceIndex,
        begin: u32,
        len: usize,
        piece_len: u32,
    },
    /// A write to storage opened with [`Storage::open_existing`].
    ReadOnly { piece: PieceIndex },
    /// A path component that could leave the download directory. The
    /// metainfo parser refuses these already; this is the second check.
    UnsafePath { path: String, reason: &'static str },
}

impl StorageError {
    /// The file or directory concerned, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            StorageError::Create { path, .. }
            | StorageError::Open { path, .. }
            | StorageError::Preallocate { path, .. }
            | StorageError::Map { path, .. }
            | StorageError::Flush { path, .. }
            | StorageError::Read { path, .. }
            | StorageError::Sync { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The OS's error, if one caused this.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StorageError::Create { cause, .. }
            | StorageError::Open { cause, .. }
            | StorageError::Preallocate { cause, .. }
            | StorageError::Map { cause, .. }
            | StorageError::Flush { cause, .. }
            | StorageError::Read { cause, .. }
            | StorageError::Sync { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let io = |f: &mut fmt::Formatter<'_>, what: &str, path: &Path, cause: &io::Error| {
            write!(f, "cannot {what} {}: {}", path.display(), os_message(cause))
        };
        match self {
            StorageError::Create { path, cause } => io(f, "create", path, cause),
            StorageError::Open { path, cause } => io(f, "open", path, cause),
            StorageError::Preallocate { path, len, cause } => write!(
                f,
                "cannot preallocate {} ({}): {}",
                path.display(),
                crate::units::format_bytes(*len),
                os_message(cause)
            ),
            StorageError::Map { path, cause } => io(f, "map", path, cause),
            StorageError::Flush { path, cause } => io(f, "flush", path, cause),
            StorageError::Read { path, cause } => io(f, "read", path, cause),
            StorageError::Sync { path, cause } => io(f, "sync", path, cause),
            StorageError::OutOfRange {
                piece,
                begin,
                len,
                piece_len,
            } => write!(
                f,
                "{len} bytes at offset {begin} do not fit in piece {piece} ({piece_len} bytes)"
            ),
            StorageError::ReadOnly { piece } => {
                write!(
                    f,
                    "cannot write piece {piece}: the data was opened read-only"
                )
            }
            StorageError::UnsafePath { path, reason } => {
                write!(f, "unsafe file path {path:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for StorageError {}

/// An `io::Error`'s message without Rust's " (os error N)" suffix.
fn os_message(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::Owned;
    use crate::geometry::BLOCK_LEN;

    /// A directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("shoal-storage-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// (path components, length, is padding)
    type Spec<'a> = (&'a [&'a str], u64, bool);

    /// A torrent of the given files, and its data: `source` has junk where
    /// padding is (what a careless peer might send), `data` has the zeros
    /// that the hashes are computed over.
    struct Fixture {
        meta: Arc<Metainfo>,
        source: Vec<u8>,
        data: Vec<u8>,
    }

    fn fixture(name: &str, piece_len: u32, files: &[Spec], single: bool) -> Fixture {
        let total: u64 = files.iter().map(|f| f.1).sum();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let source: Vec<u8> = (0..total)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut data = source.clone();
        let mut at = 0usize;
        for &(_, len, pad) in files {
            if pad {
                data[at..at + len as usize].fill(0);
            }
            at += len as usize;
        }
        let hashes: Vec<u8> = data
            .chunks(piece_len as usize)
            .flat_map(|p| <[u8; 20]>::from(Sha1::digest(p)))
            .collect();
        let mut info = Owned::dict()
            .insert("name", name)
            .insert("piece length", i64::from(piece_len))
            .insert("pieces", hashes);
        if single {
            info = info.insert("length", total as i64);
        } else {
            let list: Vec<Owned> = files
                .iter()
                .map(|&(path, len, pad)| {
                    let parts: Vec<Owned> = path.iter().map(|c| Owned::from(*c)).collect();
                    let entry = Owned::dict()
                        .insert("length", len as i64)
                        .insert("path", parts);
                    if pad {
                        entry.insert("attr", "p")
                    } else {
                        entry
                    }
                })
                .collect();
            info = info.insert("files", list);
        }
        let bytes = Owned::dict().insert("info", info).encode();
        Fixture {
            meta: Arc::new(Metainfo::from_bytes(&bytes).unwrap()),
            source,
            data,
        }
    }

    const PIECE: u32 = 32 * 1024;

    /// Five pieces of 32 KiB, the last 10064 bytes. Piece 1 holds the end of
    /// `a.bin` and padding (a block crosses that boundary); piece 4 spans
    /// five files.
    fn multi() -> Fixture {
        fixture(
            "t",
            PIECE,
            &[
                (&["dir", "a.bin"], 40_000, false),
                (&[".pad", "25536"], 25_536, true),
                (&["b", "c", "empty"], 0, false),
                (&["b", "e.bin"], 70_000, false),
                (&["f1"], 100, false),
                (&["f2"], 200, false),
                (&["f3"], 300, false),
                (&["g.bin"], 5_000, false),
            ],
            false,
        )
    }

    /// Writes every block of every piece from `f.source` (last block
    /// first), checking the hash through the maps, then releases it.
    fn write_all(storage: &mut Storage, f: &Fixture) {
        let g = &f.meta.geometry;
        for p in g.pieces() {
            let base = g.piece_offset(p) as usize;
            let blocks: Vec<_> = g.blocks(p).collect();
            for b in blocks.iter().rev() {
                let at = base + b.begin as usize;
                storage
                    .write(p, b.begin, &f.source[at..at + b.len as usize])
                    .unwrap();
            }
            assert_eq!(storage.mapped(), 1);
            let want: [u8; 20] = Sha1::digest(
                &f.data[g.piece_range(p).start as usize..][..g.piece_size(p) as usize],
            )
            .into();
            assert_eq!(want, f.meta.piece_hash(p));
            assert_eq!(storage.hash_piece(p).unwrap(), want, "piece {p} mapped");
            storage.release(p).unwrap();
            assert_eq!(storage.mapped(), 0);
            assert_eq!(storage.hash_piece(p).unwrap(), want, "piece {p} via pread");
        }
    }

    /// Every non-padding file on disk holds exactly its bytes of `f.data`.
    fn check_files(root: &Path, f: &Fixture) {
        let g = &f.meta.geometry;
        let paths = file_paths(&f.meta, root).unwrap();
        for (span, path) in g.files().iter().zip(&paths) {
            let Some(path) = path else {
                continue;
            };
            let on_disk = std::fs::read(path).unwrap();
            let want = &f.data[span.offset as usize..][..span.len as usize];
            assert!(on_disk == want, "{} differs", path.display());
        }
    }

    fn piece(f: &Fixture, i: u32) -> PieceIndex {
        f.meta.geometry.piece(i).unwrap()
    }

    fn valid(b: &Bitfield) -> Vec<u32> {
        b.iter_set().collect()
    }

    #[test]
    fn create_write_verify_and_read_back() {
        let tmp = TempDir::new("roundtrip");
        let f = multi();
        let root = tmp.0.join("downloads");
        let mut storage = Storage::create(f.meta.clone(), &root).unwrap();

        // Layout: files preallocated, the empty file there, no padding.
        let top = root.join("t");
        assert_eq!(
            std::fs::metadata(top.join("dir/a.bin")).unwrap().len(),
            40_000
        );
        assert_eq!(std::fs::metadata(top.join("b/c/empty")).unwrap().len(), 0);
        assert_eq!(std::fs::metadata(top.join("g.bin")).unwrap().len(), 5_000);
        assert!(!top.join(".pad").exists());
        assert_eq!(storage.path(0), Some(top.join("dir/a.bin").as_path()));
        assert_eq!(storage.path(1), None);

        write_all(&mut storage, &f);
        storage.sync().unwrap();
        check_files(&root, &f);

        // A read across a file boundary into padding.
        let reader = storage.reader();
        let mut buf = vec![0xAA; 300];
        reader
            .read(piece(&f, 1), 40_000 - PIECE - 100, &mut buf)
            .unwrap();
        assert_eq!(buf, f.data[39_900..40_200]);
        // Across five files of the last piece.
        let mut buf = vec![0; 1000];
        reader
            .read(piece(&f, 4), 135_500 - 4 * PIECE, &mut buf)
            .unwrap();
        assert_eq!(buf, f.data[135_500..136_500]);

        let calls = AtomicU32::new(0);
        let last = AtomicU32::new(0);
        let have = verify(&reader, 2, &|n| {
            calls.fetch_add(1, Ordering::Relaxed);
            last.fetch_max(n, Ordering::Relaxed);
        });
        assert!(have.is_complete());
        assert_eq!(last.load(Ordering::Relaxed), 5);
        assert!(calls.load(Ordering::Relaxed) >= 1);
        drop(storage);

        // A second create keeps the data.
        let storage = Storage::create(f.meta.clone(), &root).unwrap();
        assert!(verify(&storage.reader(), 1, &|_| {}).is_complete());
        check_files(&root, &f);
    }

    #[test]
    fn verify_finds_corrupt_missing_and_short_files() {
        let tmp = TempDir::new("verify");
        let f = multi();
        let mut storage = Storage::create(f.meta.clone(), &tmp.0).unwrap();
        write_all(&mut storage, &f);
        storage.sync().unwrap();
        drop(storage);
        let top = tmp.0.join("t");

        let check = || {
            let s = Storage::open_existing(f.meta.clone(), &tmp.0).unwrap();
            valid(&verify(&s.reader(), 3, &|_| {}))
        };
        assert_eq!(check(), vec![0, 1, 2, 3, 4]);

        // One flipped byte of e.bin at torrent offset 65536 + 50000 (piece 3).
        let e = OpenOptions::new()
            .write(true)
            .read(true)
            .open(top.join("b/e.bin"))
            .unwrap();
        let mut byte = [0u8];
        e.read_exact_at(&mut byte, 50_000).unwrap();
        e.write_all_at(&[byte[0] ^ 1], 50_000).unwrap();
        assert_eq!(check(), vec![0, 1, 2, 4]);
        e.write_all_at(&byte, 50_000).unwrap();
        assert_eq!(check(), vec![0, 1, 2, 3, 4]);

        // a.bin missing: pieces 0 and 1, reads say why.
        std::fs::remove_file(top.join("dir/a.bin")).unwrap();
        assert_eq!(check(), vec![2, 3, 4]);
        let s = Storage::open_existing(f.meta.clone(), &tmp.0).unwrap();
        let err = s.reader().read(piece(&f, 0), 0, &mut [0; 10]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: No such file or directory",
                top.join("dir/a.bin").display()
            )
        );

        // g.bin short: the last piece.
        std::fs::File::options()
            .write(true)
            .open(top.join("g.bin"))
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(check(), vec![2, 3]);
        let mut scratch = Vec::new();
        let s = Storage::open_existing(f.meta.clone(), &tmp.0).unwrap();
        let err = s
            .reader()
            .hash_piece(piece(&f, 4), &mut scratch)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: the file is shorter than the torrent says",
                top.join("g.bin").display()
            )
        );

        // The whole folder missing: nothing valid, and no error opening.
        std::fs::remove_dir_all(&top).unwrap();
        assert_eq!(check(), Vec::<u32>::new());
    }

    #[test]
    fn piece_spanning_three_files_writes_correctly() {
        let tmp = TempDir::new("three");
        let f = fixture(
            "three",
            PIECE,
            &[
                (&["x"], 10_000, false),
                (&["y"], 12_000, false),
                (&["z"], 20_000, false),
            ],
            false,
        );
        let p0: Vec<FileSlice> = f.meta.geometry.piece_slices(piece(&f, 0)).collect();
        assert_eq!(p0.len(), 3);
        let mut storage = Storage::create(f.meta.clone(), &tmp.0).unwrap();
        write_all(&mut storage, &f);
        check_files(&tmp.0, &f);
        assert!(verify(&storage.reader(), 2, &|_| {}).is_complete());
    }

    #[test]
    fn single_file_keeps_existing_data_and_longer_files() {
        let tmp = TempDir::new("single");
        let f = fixture("s.bin", 16_384, &[(&[], 50_000, false)], true);
        let path = tmp.0.join("s.bin");
        // Piece 1 already there, and 100 bytes past the torrent's end.
        let mut old = vec![0u8; 50_100];
        old[16_384..32_768].copy_from_slice(&f.data[16_384..32_768]);
        std::fs::write(&path, &old).unwrap();

        let mut storage = Storage::create(f.meta.clone(), &tmp.0).unwrap();
        assert_eq!(storage.path(0), Some(path.as_path()));
        assert_eq!(valid(&verify(&storage.reader(), 2, &|_| {})), vec![1]);
        write_all(&mut storage, &f);
        storage.sync().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 50_100, "never truncated");
        assert!(on_disk[..50_000] == f.data[..]);
    }

    #[test]
    fn pieces_larger_than_a_hash_chunk() {
        let tmp = TempDir::new("large");
        let piece_len = (3 << 20) / 2 + 7;
        let f = fixture(
            "big",
            piece_len,
            &[(&["one"], (3 << 20) + 100, false)],
            false,
        );
        assert_eq!(f.meta.geometry.num_pieces(), 3);
        let mut storage = Storage::create(f.meta.clone(), &tmp.0).unwrap();
        write_all(&mut storage, &f);
        let mut scratch = Vec::new();
        let reader = storage.reader();
        for p in f.meta.geometry.pieces() {
            assert_eq!(
                reader.hash_piece(p, &mut scratch).unwrap(),
                f.meta.piece_hash(p)
            );
        }
        assert_eq!(scratch.len(), HASH_CHUNK);
    }

    #[test]
    fn errors_name_the_file_and_the_reason() {
        let tmp = TempDir::new("errors");
        let f = multi();

        // The download directory is a file.
        let not_dir = tmp.0.join("file");
        std::fs::write(&not_dir, b"x").unwrap();
        let err = Storage::create(f.meta.clone(), &not_dir).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot create {}: Not a directory",
                not_dir.join("t/dir").display()
            )
        );
        assert_eq!(err.path(), Some(not_dir.join("t/dir").as_path()));
        assert_eq!(
            err.io_error().and_then(|e| e.raw_os_error()),
            Some(libc::ENOTDIR)
        );

        let mut storage = Storage::create(f.meta.clone(), &tmp.0).unwrap();
        let p0 = piece(&f, 0);
        let p4 = piece(&f, 4);
        let table: Vec<(Result<(), StorageError>, &str)> = vec![
            (
                storage.write(p0, 20_000, &[0; BLOCK_LEN as usize]),
                "16384 bytes at offset 20000 do not fit in piece 0 (32768 bytes)",
            ),
            (
                storage.write(p4, 10_000, &[0; 65]),
                "65 bytes at offset 10000 do not fit in piece 4 (10064 bytes)",
            ),
            (
                storage.write(p0, u32::MAX, &[0; 2]),
                "2 bytes at offset 4294967295 do not fit in piece 0 (32768 bytes)",
            ),
            (
                storage.reader().read(p4, 10_064, &mut [0; 1]),
                "1 bytes at offset 10064 do not fit in piece 4 (10064 bytes)",
            ),
        ];
        for (got, want) in table {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
        assert_eq!(storage.mapped(), 0, "a bad write maps nothing");
        // An empty write at the end is fine.
        storage.write(p4, 10_064, &[]).unwrap();
        drop(storage);

        let mut ro = Storage::open_existing(f.meta.clone(), &tmp.0).unwrap();
        assert_eq!(
            ro.write(p0, 0, &[1]).unwrap_err().to_string(),
            "cannot write piece 0: the data was opened read-only"
        );
        ro.sync().unwrap();

        // A directory where a file should be.
        let g = tmp.0.join("t/g.bin");
        std::fs::remove_file(&g).unwrap();
        std::fs::create_dir(&g).unwrap();
        let err = Storage::open_existing(f.meta.clone(), &tmp.0)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("cannot open {}: not a regular file", g.display())
        );
    }

    #[test]
    fn error_messages_drop_the_os_error_number() {
        let err = StorageError::Preallocate {
            path: PathBuf::from("/x/y"),
            len: 1 << 30,
            cause: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(
            err.to_string(),
            "cannot preallocate /x/y (1.0 GiB): No space left on device"
        );
        let err = StorageError::Create {
            path: PathBuf::from("/x/y"),
            cause: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(err.to_string(), "cannot create /x/y: Permission denied");
    }

    #[test]
    fn resolve_root_accepts_the_parent_or_the_data_itself() {
        let tmp = TempDir::new("resolve");
        let d = &tmp.0;
        let multi = fixture(
            "m",
            16,
            &[(&["a"], 10, false), (&["m", "b"], 10, false)],
            false,
        );
        let single = fixture("s.bin", 16, &[(&[], 10, false)], true);
        let other = fixture("x", 16, &[(&["a"], 10, false)], false);
        std::fs::create_dir_all(d.join("m/m")).unwrap();
        std::fs::write(d.join("m/a"), b"").unwrap();
        std::fs::write(d.join("s.bin"), b"").unwrap();
        std::fs::write(d.join("x"), b"").unwrap();
        // Ambiguous: `amb/m` is the torrent folder (it has the first file,
        // `a`), and also holds a folder `m` (the torrent's own `m/b` needs it).
        std::fs::create_dir_all(d.join("amb/m/m")).unwrap();
        std::fs::write(d.join("amb/m/a"), b"").unwrap();

        let table: Vec<(&Fixture, PathBuf, PathBuf)> = vec![
            (&multi, d.clone(), d.clone()),
            (&multi, d.join("m"), d.clone()),
            (&multi, d.join("m/"), d.clone()),
            (&multi, d.join("amb/m"), d.join("amb")),
            (&single, d.join("s.bin"), d.clone()),
            (&single, d.clone(), d.clone()),
            // The name matches but the kind does not: a file for a folder.
            (&other, d.join("x"), d.join("x")),
            (&multi, d.join("nowhere/m"), d.join("nowhere/m")),
            (&single, PathBuf::from("s.bin"), PathBuf::from("s.bin")),
        ];
        for (fx, path, want) in table {
            assert_eq!(resolve_root(&fx.meta, &path), want, "{}", path.display());
        }

        // The other reading of `amb/m`: the download directory, holding
        // the torrent folder `m` whose first file `m/a` exists there.
        std::fs::write(d.join("amb/m/m/a"), b"").unwrap();
        std::fs::remove_file(d.join("amb/m/a")).unwrap();
        assert_eq!(resolve_root(&multi.meta, &d.join("amb/m")), d.join("amb/m"));
    }

    #[test]
    fn readers_cross_threads_and_storage_moves() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Reader>();
        send::<Storage>();
        send_sync::<StorageError>();
        assert!(available_parallelism() >= 1);
    }
}
