//! The files of one torrent on disk: where they live, writing blocks into
//! them through memory maps, reading and hashing pieces back.
//!
//! Owns: the on-disk layout (`root/<name>` for a single-file torrent,
//! `root/<name>/<path…>` for a multi-file one), creating and preallocating
//! files, the windowed memory maps of pieces being written, and hashing
//! pieces as stored ([`verify`] checks them all on several threads). Does
//! not own: piece arithmetic ([`crate::proto::geometry`]), path validation
//! ([`crate::proto::metainfo::check_component`], re-checked here as a second
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

use crate::disk::resume::{self, FileStamp};
use crate::proto::bitfield::Bitfield;
use crate::proto::geometry::{FileSlice, PieceIndex};
use crate::proto::metainfo::Metainfo;
use memmap2::{MmapMut, MmapOptions};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

// A piece slice is a `u32` long and becomes a `usize` map length.
const _: () = assert!(usize::BITS >= 32);

/// Hashing reads a piece in chunks of at most this much: big enough that
/// syscalls cost little next to SHA-1, small enough to stay in cache and to
/// never hold a whole 16 MiB piece.
const HASH_CHUNK: usize = 1 << 20;

/// What [`Storage`] and [`Reader`] share: the torrent and a bounded cache
/// of its open files.
struct Files {
    meta: Arc<Metainfo>,
    /// Where each file lives on disk; `None` for padding.
    paths: Vec<Option<PathBuf>>,
    /// For a file not selected (`--only`, `--files`), its offset in the
    /// parts file, where its bytes of boundary pieces are kept (its path
    /// is the parts file's).
    parted: Vec<Option<u64>>,
    /// Open read-write (`Storage::create`) or read-only.
    writable: bool,
    /// Each file's (device, inode) when storage was made: a file reopened
    /// from the cache must be the same file, not one put at its path since
    /// (whose bytes nobody verified).
    identity: Vec<Option<(u64, u64)>>,
    open: Mutex<OpenFiles>,
}

/// The open descriptors, at most `cap`: a torrent may have far more files
/// than a process may open (100,000 against a common limit of 1024), so
/// files are opened when used and the least recently used one is closed
/// to make room. Maps stay valid when their file is closed.
struct OpenFiles {
    files: HashMap<usize, (Arc<File>, u64)>,
    clock: u64,
    cap: usize,
}

/// The files of one torrent, written through memory maps. Owned by one
/// thread; hand [`Storage::reader`] to others.
pub struct Storage {
    shared: Arc<Files>,
    /// Made by [`Storage::open_existing`]: reads only.
    read_only: bool,
    /// The maps of pieces being written, until [`Storage::release`].
    maps: HashMap<PieceIndex, Vec<Window>>,
    /// Each file as we found it when opening it (`None`: padding, or
    /// missing), so that a change by someone else can be told from ours.
    stamps: Vec<Option<Stamp>>,
    /// Files we wrote to (their modification time is ours to change).
    written: Vec<bool>,
}

/// How someone else changed a data file under us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Another file is at its path now (or none is): our handle points to
    /// the old one.
    Replaced,
    /// Truncated, or written to by someone else, in place.
    Modified,
}

/// What a data file looked like: enough to tell that someone else replaced,
/// truncated or rewrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
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
    /// file to its length with [`crate::disk::sys::fallocate`], so that a full disk
    /// is a clear error now rather than a `SIGBUS` mid-download.
    ///
    /// Existing files are opened and kept, never truncated (their data is
    /// checked against the hashes later). A file longer than its torrent
    /// length is left as it is; only its first bytes are used.
    ///
    /// With a `selection`, files not selected are not created: their bytes
    /// in pieces shared with selected files go to the parts file
    /// ([`parts_path`]), a sparse file as long as the torrent.
    pub fn create(
        meta: Arc<Metainfo>,
        root: &Path,
        selection: Option<&[bool]>,
    ) -> Result<Storage, StorageError> {
        // Writes go through maps: a file truncated under one must cost an
        // error, not the process.
        crate::disk::sys::install_bus_guard();
        let Layout { paths, parted } = layout(&meta, root, selection)?;
        // Files this call creates: removed again if it fails, so a failed
        // start (a full disk) leaves nothing behind.
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for ((info, path), parted) in meta.files.iter().zip(&paths).zip(&parted) {
                let Some(path) = path else {
                    continue;
                };
                // The parts file: sparse, grown once to the torrent's size.
                let len = match parted {
                    Some(_) => meta.geometry.total_len(),
                    None => info.length,
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|cause| StorageError::Create {
                        path: dir.to_path_buf(),
                        cause,
                    })?;
                }
                let existed = path.exists();
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
                if !existed {
                    created.push(path.clone());
                }
                let grown = match parted {
                    Some(_) => grow(&file, len),
                    None => crate::disk::sys::fallocate(&file, len),
                };
                grown.map_err(|cause| StorageError::Preallocate {
                    path: path.clone(),
                    len,
                    cause,
                })?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for path in created {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        Ok(Storage::new(meta, Layout { paths, parted }, false))
    }

    /// Opens the torrent's existing files under `root` read-only, for
    /// `seed` and `check`. A missing file is not an error here: reads from
    /// it fail, so its pieces fail verification; a short file likewise fails
    /// reads past its end. Any other failure to open (permission denied, a
    /// directory where a file should be) is an error.
    pub fn open_existing(
        meta: Arc<Metainfo>,
        root: &Path,
        selection: Option<&[bool]>,
    ) -> Result<Storage, StorageError> {
        let Layout { paths, parted } = layout(&meta, root, selection)?;
        for path in paths.iter().flatten() {
            let open = |cause| StorageError::Open {
                path: path.clone(),
                cause,
            };
            // Opened once to check it can be; the cache opens it again.
            match File::open(path) {
                Ok(file) => {
                    if !file.metadata().map_err(open)?.is_file() {
                        return Err(open(io::Error::other("not a regular file")));
                    }
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(open(e)),
            }
        }
        Ok(Storage::new(meta, Layout { paths, parted }, true))
    }

    fn new(meta: Arc<Metainfo>, Layout { paths, parted }: Layout, read_only: bool) -> Storage {
        let stamps: Vec<Option<Stamp>> = paths
            .iter()
            .map(|p| {
                p.as_ref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| Stamp::of(&m))
            })
            .collect();
        let written = vec![false; paths.len()];
        let open = Mutex::new(OpenFiles {
            files: HashMap::new(),
            clock: 0,
            cap: open_files_cap(),
        });
        let identity = stamps.iter().map(|s| s.map(|s| (s.dev, s.ino))).collect();
        Storage {
            shared: Arc::new(Files {
                meta,
                paths,
                parted,
                writable: !read_only,
                identity,
                open,
            }),
            read_only,
            maps: HashMap::new(),
            stamps,
            written,
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
            mark_written(&mut self.written, &self.shared.parted, s.file);
            if !crate::disk::sys::guarded_copy(&mut map[dst], &data[src]) {
                // The file shrank under the map: the SIGBUS guard put a
                // throw-away page where the data went.
                return Err(StorageError::Truncated {
                    path: self.shared.path_of(s.file),
                });
            }
        }
        Ok(())
    }

    /// Done writing a piece: unmaps it, so address space and resident
    /// memory do not grow with the download. The data stays in the page
    /// cache (where `pread` and the hasher see it) and reaches the disk by
    /// the kernel's writeback; [`Storage::sync`] waits
    /// for it. Releasing a piece that is not mapped does nothing.
    pub fn release(&mut self, piece: PieceIndex) {
        let Some(windows) = self.maps.remove(&piece) else {
            return;
        };
        // Dropping the maps unmaps them; the dirty pages stay in the page
        // cache for the kernel to write back, and `sync` makes them durable.
        drop(windows);
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
        // Through any descriptor of a file, fdatasync flushes the file's
        // dirty pages, also those written through a map of a descriptor
        // closed since.
        // The files kept in the parts file are flushed once, as one.
        let first_parted = self.shared.parted.iter().position(Option::is_some);
        let once = |i: &usize| self.shared.parted[*i].is_none() || Some(*i) == first_parted;
        for i in (0..self.written.len())
            .filter(|&i| self.written[i])
            .filter(once)
        {
            self.shared
                .file(i)
                .and_then(|f| f.sync_data())
                .map_err(|cause| StorageError::Sync {
                    path: self.path_of(i),
                    cause,
                })?;
        }
        Ok(())
    }

    /// Files among `files` (indices into the torrent's list) that someone
    /// else changed since we opened them, and how. Their verified pieces
    /// can no longer be vouched for. A file missing when we opened it is
    /// not checked.
    pub fn changed_files(&self, files: std::ops::Range<usize>) -> Vec<(usize, Change)> {
        files
            .filter_map(|i| self.change(i, &self.metadata(i)?).map(|c| (i, c)))
            .collect()
    }

    /// Every file's resume stamp, from one look at each that also found it
    /// unchanged — or the files that changed.
    pub fn unchanged_stamps(&self) -> Result<Vec<FileStamp>, Vec<(usize, Change)>> {
        let mut stamps = Vec::with_capacity(self.stamps.len());
        let mut changed = Vec::new();
        for i in 0..self.stamps.len() {
            let Some(now) = self.metadata(i) else {
                stamps.push(None);
                continue;
            };
            match self.change(i, &now) {
                Some(c) => changed.push((i, c)),
                None => stamps.push(now.ok().as_ref().and_then(resume::stamp_of)),
            }
        }
        if changed.is_empty() {
            Ok(stamps)
        } else {
            Err(changed)
        }
    }

    /// File `i`'s metadata now; `None` for a file not checked (padding, or
    /// missing when we opened it).
    fn metadata(&self, i: usize) -> Option<std::io::Result<std::fs::Metadata>> {
        let (Some(Some(_)), Some(Some(path))) = (self.stamps.get(i), self.shared.paths.get(i))
        else {
            return None;
        };
        Some(std::fs::metadata(path))
    }

    /// How file `i` changed since we opened it, given its metadata now.
    fn change(&self, i: usize, now: &std::io::Result<std::fs::Metadata>) -> Option<Change> {
        let then = self.stamps.get(i).copied().flatten()?;
        let Ok(now) = now.as_ref().map(Stamp::of) else {
            return Some(Change::Replaced);
        };
        if (now.dev, now.ino) != (then.dev, then.ino) {
            Some(Change::Replaced)
        } else if now.len < self.shared.parted[i].unwrap_or(0) + self.shared.meta.files[i].length
            || (!self.written[i] && (now.len, now.mtime) != (then.len, then.mtime))
        {
            Some(Change::Modified)
        } else {
            None
        }
    }

    /// File `file` was modified in place by someone else and its pieces
    /// given up: restores its length (the space reserved again) and takes
    /// it as it is now, to be written anew.
    pub fn reclaim(&mut self, file: usize) -> Result<(), StorageError> {
        let Some(Some(path)) = self.shared.paths.get(file) else {
            return Ok(());
        };
        let parted = self.shared.parted[file];
        let len = parted.unwrap_or(0) + self.shared.meta.files[file].length;
        let handle = self
            .shared
            .file(file)
            .and_then(|h| {
                match parted {
                    Some(_) => grow(&h, len),
                    None => crate::disk::sys::fallocate(&h, len),
                }
                .map(|()| h)
            })
            .map_err(|cause| StorageError::Preallocate {
                path: path.clone(),
                len,
                cause,
            })?;
        self.stamps[file] = handle.metadata().ok().map(|m| Stamp::of(&m));
        mark_written(&mut self.written, &self.shared.parted, file);
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

    /// Where a slice's bytes are in the file that holds them.
    fn offset(&self, slice: &FileSlice) -> u64 {
        self.parted[slice.file].unwrap_or(0) + slice.file_offset
    }

    /// File `index`, open (from the cache, or opened now, closing the least
    /// recently used one if the cache is full). Padding has no file.
    fn file(&self, index: usize) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.clock += 1;
        let now = open.clock;
        if let Some((file, used)) = open.files.get_mut(&index) {
            *used = now;
            return Ok(Arc::clone(file));
        }
        let path = self.paths[index]
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let file = OpenOptions::new()
            .read(true)
            .write(self.writable)
            .open(path)?;
        if let Some(Some(known)) = self.identity.get(index) {
            let now = Stamp::of(&file.metadata()?);
            if (now.dev, now.ino) != *known {
                return Err(io::Error::other(
                    "another file is at this path now (replaced while shoal ran)",
                ));
            }
        }
        let file = Arc::new(file);
        if open.files.len() >= open.cap {
            let oldest = open
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(i, _)| *i);
            if let Some(i) = oldest {
                open.files.remove(&i);
            }
        }
        open.files.insert(index, (Arc::clone(&file), now));
        Ok(file)
    }
}

/// How many files storage keeps open at most: a quarter of what the
/// process may open (sockets need the rest), between 8 and 256.
fn open_files_cap() -> usize {
    let limit = crate::disk::sys::open_file_limit().unwrap_or(1024);
    usize::try_from(limit / 4).unwrap_or(256).clamp(8, 256)
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
            let file = shared.file(slice.file).map_err(map_err)?;
            // Touching a map past the end of its file is a SIGBUS, not an
            // error: refuse a file someone shortened since `create`.
            let at = shared.offset(&slice);
            let file_len = file.metadata().map_err(map_err)?.len();
            if file_len < at + u64::from(slice.len) {
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
            // Another process truncating the file meanwhile makes a write
            // fault: the SIGBUS guard (`sys::install_bus_guard`) turns that
            // into an error. The map stays valid when the cache closes the
            // descriptor.
            let map = unsafe {
                MmapOptions::new()
                    .offset(at)
                    .len(slice.len as usize)
                    .map_mut(&*file)
            }
            .map_err(map_err)?;
            // Fault the whole window in with one call instead of one trap
            // per 4 KiB page as blocks arrive (Linux 5.14+; where it is
            // missing, pages fault in one by one as before).
            let _ = map.advise(memmap2::Advice::PopulateWrite);
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
            let file = self.shared.file(s.file).map_err(read)?;
            file.read_exact_at(part, self.shared.offset(&s))
                .map_err(|e| {
                    read(if e.kind() == io::ErrorKind::UnexpectedEof {
                        io::Error::new(e.kind(), "the file is shorter than the torrent says")
                    } else {
                        e
                    })
                })?;
        }
        Ok(())
    }

    /// Starts writing the pieces' bytes to disk, without waiting (see
    /// [`crate::disk::sys::start_writeback`]): the final `fdatasync` then
    /// waits for the last pieces only, not for the whole download.
    pub fn start_writeback(&self, pieces: &[PieceIndex]) {
        for &piece in pieces {
            for s in self.shared.meta.geometry.piece_slices(piece) {
                if s.padding {
                    continue;
                }
                let started = self.shared.file(s.file).and_then(|f| {
                    crate::disk::sys::start_writeback(&f, self.shared.offset(&s), u64::from(s.len))
                });
                if let Err(e) = started {
                    log::debug!("writeback of piece {}: {e}", piece.get());
                }
            }
        }
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
/// counts as not valid. `None` if `stop()` said so before a piece: a check
/// of a large file ends within a piece's hash of being asked to, and what
/// it found so far is not taken for what is there.
pub fn verify(
    reader: &Reader,
    threads: usize,
    progress: &(dyn Fn(u32) + Sync),
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Bitfield> {
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
                        if stop() {
                            break;
                        }
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
    if done.into_inner() < total {
        return None; // stopped
    }
    progress(total);
    let mut have = Bitfield::new(total);
    for i in valid {
        have.set(i);
    }
    Some(have)
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
/// component first ([`crate::proto::metainfo::check_component`]) before pushing it
/// onto a path.
pub fn os_path(component: &[u8]) -> &OsStr {
    OsStr::from_bytes(component)
}

/// We wrote to `file`. The files kept in the parts file are one file on
/// disk: a write through one of them is ours for all of them.
fn mark_written(written: &mut [bool], parted: &[Option<u64>], file: usize) {
    if parted[file].is_some() {
        for (w, p) in written.iter_mut().zip(parted) {
            *w |= p.is_some();
        }
    } else {
        written[file] = true;
    }
}

/// Where each file's bytes go: its own path, or for one not selected the
/// parts file at the file's offset in the torrent.
struct Layout {
    paths: Vec<Option<PathBuf>>,
    parted: Vec<Option<u64>>,
}

fn layout(
    meta: &Metainfo,
    root: &Path,
    selection: Option<&[bool]>,
) -> Result<Layout, StorageError> {
    let paths = placed_paths(meta, root, selection)?;
    let parts = parts_path(meta, root);
    let parted = meta
        .geometry
        .files()
        .iter()
        .zip(&paths)
        .map(|(span, path)| (path.as_ref() == Some(&parts)).then_some(span.offset))
        .collect();
    Ok(Layout { paths, parted })
}

/// The hidden file beside the data that holds the bytes of files not
/// selected that share a piece with selected ones: `.NAME.shoal-parts`.
pub fn parts_path(meta: &Metainfo, root: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(os_path(&meta.name));
    name.push(".shoal-parts");
    root.join(name)
}

/// [`file_paths`], with each file not in `selection` at the parts file —
/// unless it is on disk already (a complete download seeded or checked in
/// part, or a file chosen by an earlier run): its bytes are used there.
pub fn placed_paths(
    meta: &Metainfo,
    root: &Path,
    selection: Option<&[bool]>,
) -> Result<Vec<Option<PathBuf>>, StorageError> {
    let mut paths = file_paths(meta, root)?;
    if let Some(sel) = selection {
        let parts = parts_path(meta, root);
        for (path, chosen) in paths.iter_mut().zip(sel) {
            if path.as_ref().is_some_and(|p| !chosen && !p.exists()) {
                *path = Some(parts.clone());
            }
        }
    }
    Ok(paths)
}

/// Makes `file` at least `len` bytes long without allocating (sparse).
fn grow(file: &File, len: u64) -> io::Result<()> {
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Each file's path under `root`, `None` for padding, built only by
/// pushing components that pass [`crate::proto::metainfo::check_component`].
pub fn file_paths(meta: &Metainfo, root: &Path) -> Result<Vec<Option<PathBuf>>, StorageError> {
    fn checked(c: &[u8]) -> Result<&OsStr, StorageError> {
        crate::proto::metainfo::check_component(c).map_err(|reason| StorageError::UnsafePath {
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
                if !f.has_path() {
                    return Err(StorageError::UnsafePath {
                        path: String::new(),
                        reason: "the path is empty",
                    });
                }
                for c in f.components() {
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

/// A file that is not there: not found, or a path component that is a file.
fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

mod error;

pub use error::StorageError;

#[cfg(test)]
mod tests;
