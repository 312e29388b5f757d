//! The orchestrator's watch over its data files: resume state and uploads
//! only ever vouch for bytes that shoal itself wrote or verified and that
//! nobody changed since.
//!
//! Every few seconds a batch of files is compared with what storage saw
//! when it opened them (`Storage::changed_files`). A file replaced under us,
//! or any change while we only seed (read-only data), stops the torrent
//! with an error: we will not upload bytes we have not verified. A file
//! truncated or rewritten in place while downloading gives up its verified
//! pieces (they are fetched and verified again) and gets its length back.
//! Resume state is written only if no file changed; otherwise the old one
//! is removed, so the next start checks the data.

use super::*;
use crate::disk::storage::Change;

/// How often a batch of files is checked, and how many files a batch has
/// at most (a `stat` each).
pub(super) const WATCH_EVERY: Duration = Duration::from_secs(5);
const WATCH_BATCH: usize = 256;

impl Orchestrator<'_> {
    /// Checks the next batch of files.
    pub(super) fn watch_files(&mut self) -> Result<(), TorrentError> {
        let n = self.meta.files.len();
        let start = self.watch_next.min(n);
        let end = (start + WATCH_BATCH).min(n);
        self.watch_next = if end == n { 0 } else { end };
        for (file, change) in self.storage.changed_files(start..end) {
            self.on_file_changed(file, change)?;
        }
        Ok(())
    }

    fn on_file_changed(&mut self, file: usize, change: Change) -> Result<(), TorrentError> {
        let path = self
            .storage
            .path(file)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if self.opts.seed_only || change == Change::Replaced {
            return Err(TorrentError::DataChanged { path, change });
        }
        (self.notes)(Note::FileChanged { path });
        let mut lost = 0;
        for index in self.meta.geometry.pieces_of_file(file) {
            let Some(piece) = self.meta.geometry.piece(index) else {
                continue;
            };
            if self.picker.unverify(piece) {
                if self.picker.wanted_pieces().get(index) {
                    let size = u64::from(self.meta.geometry.piece_size(piece));
                    self.verified_bytes -= size;
                    self.swarm.counters.left.fetch_add(size, Ordering::Relaxed);
                }
                self.lost.set(index);
                lost += 1;
                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                for k in keys {
                    self.send(k, Command::DropPiece(index));
                }
            } else {
                // In progress: its blocks on disk may be gone. Start it
                // over (nobody is blamed) and ignore a verdict the hasher
                // may already owe on the old bytes.
                self.picker.failed(piece);
                self.storage.release(piece);
                if self.hashing.contains(&piece) {
                    self.stale.insert(piece);
                }
            }
        }
        log::warn!("file {file} changed under us: {lost} verified pieces given up");
        self.storage.reclaim(file)?;
        self.completed_at = None;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.update_interest(k);
        }
        Ok(())
    }

    /// Flushes the data, then records the verified pieces (never the other
    /// way round: the resume state must not claim unflushed pieces) — if
    /// every file is as we left it. Otherwise the resume state is removed,
    /// so that the next start checks the data.
    pub(super) fn save_resume(&mut self) {
        if let Err(e) = self.storage.sync() {
            log::warn!("flushing data: {e}");
            return;
        }
        let stamps = match self.storage.unchanged_stamps() {
            Ok(stamps) => stamps,
            Err(changed) => {
                for (file, _) in changed {
                    let path = self
                        .storage
                        .path(file)
                        .map(Path::to_path_buf)
                        .unwrap_or_default();
                    (self.notes)(Note::FileChanged { path });
                }
                crate::disk::resume::discard(&self.meta, &self.opts.out_dir);
                return;
            }
        };
        if self.picker.have().count() > 0 {
            let dir = &self.opts.out_dir;
            let have = self.picker.have();
            if let Err(e) = crate::disk::resume::save(&self.meta, dir, have, &stamps) {
                (self.notes)(Note::ResumeNotSaved {
                    path: crate::disk::resume::path(&self.meta, dir),
                    reason: crate::disk::sys::io_reason(&e),
                });
            }
        }
    }
}
