//! Why storage failed.

use crate::proto::geometry::PieceIndex;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Reading failed: a missing file, one shorter than the torrent says,
    /// or an I/O error ([`Reader::read`], hashing).
    Read { path: PathBuf, cause: io::Error },
    /// `msync`/`fdatasync` failed ([`Storage::sync`]): the data may not be
    /// on disk.
    Sync { path: PathBuf, cause: io::Error },
    /// A read or write range that is not inside the piece: a caller's bug,
    /// since requests are checked by [`crate::proto::geometry::Geometry::checked_block`].
    OutOfRange {
        piece: PieceIndex,
        begin: u32,
        len: usize,
        piece_len: u32,
    },
    /// A file was truncated (or its pages became unreadable) while we wrote
    /// to it through its map ([`Storage::write`]); the write was lost.
    Truncated { path: PathBuf },
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
            | StorageError::Read { path, .. }
            | StorageError::Sync { path, .. }
            | StorageError::Truncated { path } => Some(path),
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
            | StorageError::Read { cause, .. }
            | StorageError::Sync { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let io = |f: &mut fmt::Formatter<'_>, what: &str, path: &Path, cause: &io::Error| {
            write!(
                f,
                "cannot {what} {}: {}",
                path.display(),
                crate::disk::sys::io_reason(cause)
            )
        };
        match self {
            StorageError::Create { path, cause } => io(f, "create", path, cause),
            StorageError::Open { path, cause } => io(f, "open", path, cause),
            StorageError::Preallocate { path, len, cause } => write!(
                f,
                "cannot preallocate {} ({}): {}",
                path.display(),
                crate::util::units::format_bytes(*len),
                crate::disk::sys::io_reason(cause)
            ),
            StorageError::Map { path, cause } => io(f, "map", path, cause),
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
            StorageError::Truncated { path } => write!(
                f,
                "{}: truncated or unreadable while writing",
                path.display()
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
