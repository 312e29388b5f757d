//! Helpers shared by the unit tests.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The longest any one unit test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and fails the test if it takes longer than
/// [`PATIENCE`] (a hang fails in seconds instead of stalling the suite).
pub fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(v) => v,
        // The thread panicked (it ended without sending): pass that on.
        Err(_) if handle.is_finished() => match handle.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the thread sent nothing and did not panic"),
        },
        // Still running: a hang. Fail now, never wait for it.
        Err(_) => panic!("test took longer than {PATIENCE:?}"),
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// `tag` names the test; the process id keeps parallel runs apart.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("shoal-{}-{tag}", std::process::id()));
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
