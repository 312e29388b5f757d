//! The hasher: a thread that SHA-1s completed pieces, reading them back
//! from the page cache with `pread` (coherent with the map writes), so
//! that the orchestrator goes on receiving and writing while a piece is
//! hashed. The orchestrator still decides what a hash means.
//!
//! The thread ends when its [`Hasher`] is dropped. If it ends early (it
//! cannot, short of a bug), [`Hasher::results`] disconnects: the
//! orchestrator treats that as an error, it never waits on it again.

use crate::disk::storage::{Reader, StorageError};
use crate::proto::geometry::PieceIndex;
use crossbeam_channel::{unbounded, Receiver, Sender};
use std::io;

/// A piece and its SHA-1 as stored, or why it could not be read.
pub type Hashed = (PieceIndex, Result<[u8; 20], StorageError>);

pub struct Hasher {
    pieces: Sender<PieceIndex>,
    results: Receiver<Hashed>,
}

impl Hasher {
    pub fn spawn(reader: Reader) -> io::Result<Hasher> {
        Self::spawn_with(move |piece, scratch| reader.hash_piece(piece, scratch))
    }

    /// A hasher running `hash` (tests give it one that fails on purpose).
    pub fn spawn_with(
        hash: impl Fn(PieceIndex, &mut Vec<u8>) -> Result<[u8; 20], StorageError> + Send + 'static,
    ) -> io::Result<Hasher> {
        let (pieces, todo) = unbounded::<PieceIndex>();
        let (done, results) = unbounded();
        std::thread::Builder::new()
            .name("hasher".into())
            .spawn(move || {
                let mut scratch = Vec::new();
                for piece in todo {
                    if done.send((piece, hash(piece, &mut scratch))).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Hasher { pieces, results })
    }

    /// Queues a piece; `false` if the thread is gone.
    pub fn hash(&self, piece: PieceIndex) -> bool {
        self.pieces.send(piece).is_ok()
    }

    /// Verdicts, in the order the pieces were queued.
    pub fn results(&self) -> &Receiver<Hashed> {
        &self.results
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
            let hasher = Hasher::spawn_with(|_, _| panic!("hasher bug")).unwrap();
            hasher.hash(piece);
            assert!(hasher.results().recv().is_err());
            assert!(!hasher.hash(piece), "queueing reports the dead thread");
        });
    }

    #[test]
    fn verdicts_come_in_order() {
        within(|| {
            let g = Geometry::new(16, [(64, false)]).unwrap();
            let hasher = Hasher::spawn_with(|p, _| Ok([p.get() as u8; 20])).unwrap();
            for p in g.pieces() {
                assert!(hasher.hash(p));
            }
            for p in g.pieces() {
                let (got, hash) = hasher.results().recv().unwrap();
                assert_eq!((got, hash.unwrap()), (p, [p.get() as u8; 20]));
            }
        });
    }
}
