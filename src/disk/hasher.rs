//! The hasher: a thread that SHA-1s completed pieces, so that the
//! orchestrator goes on receiving and writing while a piece is hashed.
//! The orchestrator still decides what a hash means.
//!
//! A piece's blocks may be fed to it as they are written
//! ([`Hasher::feed`]): while they come in order from the piece's start,
//! it keeps a running SHA-1, and the piece's verdict needs no read-back.
//! A piece whose blocks were not all fed in order is read back from the
//! page cache with `pread` (coherent with the map writes) and hashed
//! whole. Feeding saves a copy of every byte and the read-back's system
//! calls; blocks wait in a bounded queue, so the orchestrator waits for
//! the hasher rather than the queue growing.
//!
//! After verdicts on [`WRITEBACK_BATCH`] bytes of pieces, the hasher
//! starts their writeback to disk, so that the `fdatasync` at the end of a
//! download (or before resume state is saved) waits for the last pieces
//! only.
//!
//! The thread ends when its [`Hasher`] is dropped. If it ends early (it
//! cannot, short of a bug), [`Hasher::results`] disconnects: the
//! orchestrator treats that as an error, it never waits on it again.

use crate::disk::storage::{Reader, StorageError};
use crate::proto::geometry::PieceIndex;
use crate::util::bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::io;

/// A piece and its SHA-1 as stored, or why it could not be read.
pub type Hashed = (PieceIndex, Result<[u8; 20], StorageError>);

/// Jobs queued at most: 64 blocks, each holding the read buffer it shares
/// (64 KiB), so 4 MiB at most.
const QUEUE: usize = 64;

/// Bytes of pieces whose writeback is started together. One call after
/// another costs the kernel less than one per piece between the map
/// writes: for 1 GiB of 256 KiB pieces, about 1.05 system CPU-seconds
/// against 1.24 (populate, copy, unmap and start writeback, medians of 6).
/// In a download of that torrent, shoal's CPU fell from 2.13–2.19 s to
/// 2.02–2.05 s (`bench.py --cases swarm --sizes 1G --pieces 256K`).
const WRITEBACK_BATCH: u64 = 4 << 20;

enum Job {
    /// Bytes of `piece` from `begin`, as written.
    Block {
        piece: PieceIndex,
        begin: u32,
        data: Bytes,
    },
    /// Every byte of the piece (`size` of them) is written: a verdict.
    Piece { piece: PieceIndex, size: u32 },
}

pub struct Hasher {
    jobs: Sender<Job>,
    results: Receiver<Hashed>,
}

impl Hasher {
    pub fn spawn(reader: Reader) -> io::Result<Hasher> {
        let disk = reader.clone();
        Self::spawn_with(
            move |piece, scratch| reader.hash_piece(piece, scratch),
            move |pieces| disk.start_writeback(pieces),
        )
    }

    /// A hasher reading pieces back with `hash` (tests give it one that
    /// fails on purpose, or counts) and, once verdicts on
    /// [`WRITEBACK_BATCH`] bytes of pieces are sent (and at its end),
    /// starting their writeback to disk with `written`.
    pub fn spawn_with(
        hash: impl Fn(PieceIndex, &mut Vec<u8>) -> Result<[u8; 20], StorageError> + Send + 'static,
        written: impl Fn(&[PieceIndex]) + Send + 'static,
    ) -> io::Result<Hasher> {
        let (jobs, todo) = bounded::<Job>(QUEUE);
        let (done, results) = unbounded();
        std::thread::Builder::new()
            .name("hasher".into())
            .spawn(move || {
                let mut scratch = Vec::new();
                let mut feeds = Feeds::default();
                let (mut fed, mut read) = (0u64, 0u64);
                let (mut unwritten, mut bytes) = (Vec::new(), 0u64);
                for job in todo {
                    match job {
                        Job::Block { piece, begin, data } => feeds.feed(piece, begin, data),
                        Job::Piece { piece, size } => {
                            let verdict = match feeds.finish(piece, size) {
                                Some(hash) => {
                                    fed += 1;
                                    Ok(hash)
                                }
                                None => {
                                    read += 1;
                                    hash(piece, &mut scratch)
                                }
                            };
                            if done.send((piece, verdict)).is_err() {
                                break;
                            }
                            unwritten.push(piece);
                            bytes += u64::from(size);
                            if bytes >= WRITEBACK_BATCH {
                                written(&unwritten);
                                unwritten.clear();
                                bytes = 0;
                            }
                        }
                    }
                }
                if !unwritten.is_empty() {
                    written(&unwritten);
                }
                log::debug!("hasher: {fed} pieces hashed as written, {read} read back");
            })?;
        Ok(Hasher { jobs, results })
    }

    /// Hands over bytes of `piece` from `begin` just written; `false` if
    /// the thread is gone. Waits while the queue is full.
    pub fn feed(&self, piece: PieceIndex, begin: u32, data: Bytes) -> bool {
        self.jobs.send(Job::Block { piece, begin, data }).is_ok()
    }

    /// Queues a verdict on a piece of `size` bytes, all written; `false`
    /// if the thread is gone.
    pub fn hash(&self, piece: PieceIndex, size: u32) -> bool {
        self.jobs.send(Job::Piece { piece, size }).is_ok()
    }

    /// Verdicts, in the order the pieces were queued.
    pub fn results(&self) -> &Receiver<Hashed> {
        &self.results
    }
}

/// Blocks held back, over all pieces, waiting for an earlier block of
/// their piece (a seeder may answer requests a little out of order): at
/// most 1 MiB.
const HELD_BACK: usize = 64;

/// The running hashes (`None`: given up, the piece will be read back),
/// and the number of blocks that came ahead of their turn.
#[derive(Default)]
struct Feeds {
    running: HashMap<PieceIndex, Option<Running>>,
    held: usize,
}

/// The running SHA-1 of a piece's first `next` bytes, and blocks of it
/// that came early.
struct Running {
    sha: Sha1,
    next: u32,
    early: Vec<(u32, Vec<u8>)>,
}

impl Feeds {
    /// A piece's first block fed begins its running hash, and so does a
    /// block at its start after others (a piece downloaded again). A
    /// block that follows on extends it (with any early blocks that then
    /// follow on); one that comes early waits, while there is room; any
    /// other ends the running hash, and the piece will be read back.
    fn feed(&mut self, piece: PieceIndex, begin: u32, data: Bytes) {
        let restart = match self.running.get(&piece) {
            None => true,
            Some(Some(r)) => begin == 0 && r.next > 0,
            Some(None) => begin == 0,
        };
        if restart {
            self.forget(piece);
            let fresh = Running {
                sha: Sha1::new(),
                next: 0,
                early: Vec::new(),
            };
            self.running.insert(piece, Some(fresh));
        }
        let Some(Some(r)) = self.running.get_mut(&piece) else {
            return;
        };
        if begin > r.next && self.held < HELD_BACK {
            // A copy: held for long, the block would keep the whole read
            // buffer it shares from being reused.
            r.early.push((begin, data.to_vec()));
            self.held += 1;
            return;
        }
        if begin != r.next {
            log::trace!("hasher: piece {} got {begin} after {}", piece.get(), r.next);
            self.forget(piece);
            self.running.insert(piece, None);
            return;
        }
        r.extend(&data);
        while let Some(i) = r.early.iter().position(|(b, _)| *b == r.next) {
            let (_, data) = r.early.swap_remove(i);
            self.held -= 1;
            r.extend(&data);
        }
    }

    /// The piece's hash, if all `size` of its bytes were fed.
    fn finish(&mut self, piece: PieceIndex, size: u32) -> Option<[u8; 20]> {
        let r = self.forget(piece)?;
        (r.next == size).then(|| r.sha.finalize().into())
    }

    fn forget(&mut self, piece: PieceIndex) -> Option<Running> {
        let r = self.running.remove(&piece).flatten()?;
        self.held -= r.early.len();
        Some(r)
    }
}

impl Running {
    fn extend(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.next = self
            .next
            .saturating_add(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::geometry::Geometry;
    use crate::util::testutil::within;

    /// Regression (issue 9): a hasher that dies must disconnect its
    /// results, so that the orchestrator's `select!` sees the end instead
    /// of spinning on (or waiting for) a channel nobody feeds.
    #[test]
    fn a_dead_hasher_disconnects_its_results() {
        within(|| {
            let piece = Geometry::new(16, [(32, false)]).unwrap().piece(1).unwrap();
            let hasher = Hasher::spawn_with(|_, _| panic!("hasher bug"), |_: &[_]| {}).unwrap();
            hasher.hash(piece, 16);
            assert!(hasher.results().recv().is_err());
            assert!(!hasher.hash(piece, 16), "queueing reports the dead thread");
        });
    }

    #[test]
    fn verdicts_come_in_order() {
        within(|| {
            let g = Geometry::new(16, [(64, false)]).unwrap();
            let hasher = Hasher::spawn_with(|p, _| Ok([p.get() as u8; 20]), |_: &[_]| {}).unwrap();
            for p in g.pieces() {
                assert!(hasher.hash(p, 16));
            }
            for p in g.pieces() {
                let (got, hash) = hasher.results().recv().unwrap();
                assert_eq!((got, hash.unwrap()), (p, [p.get() as u8; 20]));
            }
        });
    }

    /// Writeback is started for pieces in batches of WRITEBACK_BATCH
    /// bytes, in the order of their verdicts, and for the rest at the end.
    #[test]
    fn writeback_starts_in_batches() {
        within(|| {
            const MIB: u32 = 1 << 20;
            let g = Geometry::new(MIB, [(6 * u64::from(MIB), false)]).unwrap();
            let (batch, batches) = unbounded();
            let hasher = Hasher::spawn_with(
                |_, _| Ok([0; 20]),
                move |pieces: &[PieceIndex]| {
                    batch
                        .send(pieces.iter().map(|p| p.get()).collect::<Vec<_>>())
                        .unwrap()
                },
            )
            .unwrap();
            for p in g.pieces() {
                assert!(hasher.hash(p, MIB));
            }
            assert_eq!(batches.recv().unwrap(), [0, 1, 2, 3]);
            // Every verdict is sent before the rest's writeback waits for
            // the end.
            assert_eq!(hasher.results().iter().take(6).count(), 6);
            drop(hasher);
            assert_eq!(batches.recv().unwrap(), [4, 5]);
            assert!(batches.recv().is_err(), "nothing more once the thread ends");
        });
    }

    /// Fed whole, a piece is hashed as it was written, without a
    /// read-back (a block that came early waits for its turn); a piece
    /// fed in part or not at all is read back; a piece fed again from its
    /// start (downloaded again) is hashed afresh.
    #[test]
    fn fed_pieces_need_no_read_back() {
        within(|| {
            let g = Geometry::new(8, [(40, false)]).unwrap();
            let piece = |i| g.piece(i).unwrap();
            let (read_back, reads) = unbounded();
            let hasher = Hasher::spawn_with(
                move |p, _| {
                    read_back.send(p).unwrap();
                    Ok([0xee; 20])
                },
                |_: &[_]| {},
            )
            .unwrap();
            let sha = |b: &[u8]| -> [u8; 20] { Sha1::digest(b).into() };
            let data: Vec<u8> = (0..40).collect();
            // Piece 0: in order.
            assert!(hasher.feed(piece(0), 0, data[0..4].to_vec().into()));
            assert!(hasher.feed(piece(0), 4, data[4..8].to_vec().into()));
            // Piece 1: a block ahead of its turn waits for the one before.
            hasher.feed(piece(1), 4, data[12..16].to_vec().into());
            hasher.feed(piece(1), 0, data[8..12].to_vec().into());
            // Piece 2: its first block never fed (a web seed wrote it).
            hasher.feed(piece(2), 4, data[20..24].to_vec().into());
            // Piece 3: a bad first try, then again from the start.
            hasher.feed(piece(3), 0, vec![9; 4].into());
            hasher.feed(piece(3), 0, data[24..28].to_vec().into());
            hasher.feed(piece(3), 4, data[28..32].to_vec().into());
            for i in 0..5 {
                assert!(hasher.hash(piece(i), 8));
            }
            let verdicts: Vec<_> = (0..5)
                .map(|_| hasher.results().recv().unwrap())
                .map(|(p, h)| (p.get(), h.unwrap()))
                .collect();
            assert_eq!(
                verdicts,
                [
                    (0, sha(&data[0..8])),
                    (1, sha(&data[8..16])),
                    (2, [0xee; 20]),
                    (3, sha(&data[24..32])),
                    (4, [0xee; 20]),
                ]
            );
            let read: Vec<u32> = reads.try_iter().map(|p| p.get()).collect();
            assert_eq!(read, [2, 4], "only pieces not fed whole are read");
        });
    }
}
