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
