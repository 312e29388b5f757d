//! The disk: the torrent's files (preallocation, memory-mapped piece
//! writes, `pread` reads, verification on all cores), the resume file, and
//! the libc calls std lacks. All of shoal's `unsafe` is here.
//!
//! Owns: bytes at rest. Does not own: which bytes to fetch or what a hash
//! means (that is [`crate::engine`]).
//! Uses: [`crate::proto`], [`crate::util`].

pub mod hasher;
pub mod resume;
pub mod storage;
pub mod sys;
pub mod torrent_file;

/// Writes `bytes` to `dest` through `tmp` and a rename, so that a crash
/// leaves the old file or the new one, never half of one; `tmp` is removed
/// if anything fails.
pub fn write_replacing(
    dest: &std::path::Path,
    tmp: &std::path::Path,
    bytes: &[u8],
) -> std::io::Result<()> {
    let result = std::fs::write(tmp, bytes).and_then(|()| std::fs::rename(tmp, dest));
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
