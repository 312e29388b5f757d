//! Buffers shared between the thread that reads into them and the threads
//! that use what was read: a block from a peer reaches the disk and the
//! hasher as a range of the buffer it was received into, with no copy of
//! its own. A pooled buffer goes back to its pool when the last range of
//! it is dropped, so a busy reader reuses a few buffers instead of
//! allocating (and zeroing) new ones.

use crossbeam_channel::{bounded, Receiver, Sender};
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A read-only range of a shared buffer.
pub struct Bytes {
    buf: Arc<Buffer>,
    range: Range<usize>,
}

impl Bytes {
    /// `range` of `buf`; panics if the range is not inside it.
    pub fn shared(buf: &Arc<Buffer>, range: Range<usize>) -> Bytes {
        assert!(
            range.start <= range.end && range.end <= buf.data.len(),
            "{range:?} is outside a buffer of {} bytes",
            buf.data.len()
        );
        Bytes {
            buf: Arc::clone(buf),
            range,
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(data: Vec<u8>) -> Bytes {
        let range = 0..data.len();
        let buf = Arc::new(Buffer { data, home: None });
        Bytes { buf, range }
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf.data[self.range.clone()]
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.range.len())
    }
}

/// Bytes, and the pool they go back to when the last user drops them.
pub struct Buffer {
    data: Vec<u8>,
    home: Option<Home>,
}

struct Home {
    pool: Sender<Vec<u8>>,
    size: usize,
}

impl Buffer {
    /// The whole buffer, to write into while nobody else holds it
    /// (`Arc::get_mut`).
    pub fn vec_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // A buffer grown past the pool's size is not kept; nor is any
        // while the pool is full or gone.
        if let Some(home) = &self.home {
            if self.data.len() == home.size {
                let _ = home.pool.try_send(std::mem::take(&mut self.data));
            }
        }
    }
}

/// Buffers of one size; at most `keep` wait to be taken again. Clones
/// share the buffers.
#[derive(Clone)]
pub struct Pool {
    size: usize,
    free: Receiver<Vec<u8>>,
    pool: Sender<Vec<u8>>,
}

impl Pool {
    pub fn new(size: usize, keep: usize) -> Pool {
        let (pool, free) = bounded(keep);
        Pool { size, free, pool }
    }

    /// The size of its buffers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A buffer of at least `len` bytes, and of the pool's size if that is
    /// enough: one given back, or a new, zeroed one.
    pub fn take(&self, len: usize) -> Arc<Buffer> {
        let given_back = (len <= self.size).then(|| self.free.try_recv().ok());
        let data = given_back
            .flatten()
            .unwrap_or_else(|| vec![0; len.max(self.size)]);
        let pool = self.pool.clone();
        let home = Some(Home {
            pool,
            size: self.size,
        });
        Arc::new(Buffer { data, home })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_returns_to_its_pool_when_its_last_range_goes() {
        let pool = Pool::new(8, 2);
        let mut buf = pool.take(8);
        Arc::get_mut(&mut buf).unwrap().vec_mut()[..3].copy_from_slice(b"abc");
        let a = Bytes::shared(&buf, 0..2);
        let b = Bytes::shared(&buf, 1..3);
        let first = buf.as_ptr();
        drop(buf);
        assert_eq!((&*a, &*b), (&b"ab"[..], &b"bc"[..]));
        drop(a);
        assert!(pool.free.is_empty(), "still used by b");
        drop(b);
        assert_eq!(pool.take(8).as_ptr(), first, "the same memory again");
    }

    #[test]
    fn grown_buffers_and_buffers_past_keep_are_freed() {
        let pool = Pool::new(8, 1);
        assert_eq!(pool.take(100).len(), 100);
        assert!(pool.free.is_empty(), "a larger buffer is not kept");
        let (x, y) = (pool.take(4), pool.take(4));
        assert_eq!(x.len(), 8);
        drop((x, y));
        assert_eq!(pool.free.len(), 1);
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_range_past_the_end_is_refused() {
        let buf = Pool::new(8, 1).take(8);
        let _ = Bytes::shared(&buf, 4..9);
    }

    #[test]
    fn owned_bytes_need_no_pool() {
        let b = Bytes::from(b"xyz".to_vec());
        assert_eq!(&*b, b"xyz");
        assert_eq!(format!("{b:?}"), "Bytes(3 bytes)");
    }
}
