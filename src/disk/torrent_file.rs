//! Reading a `.torrent` file, bounded: a file that does not start like a
//! torrent is read only as far as the parser needs to say what is wrong
//! with it. Everything else about its contents is
//! [`crate::proto::metainfo`]'s.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

/// The largest `.torrent` we read. A torrent of a million files is about
/// 30 MiB; anything larger is refused before it is read whole (a path like
/// `/dev/zero` must not grow us until memory runs out).
pub const MAX_TORRENT_FILE: u64 = 64 << 20;

#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    TooLarge,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Io(e) => f.write_str(&crate::disk::sys::io_reason(e)),
            ReadError::TooLarge => write!(
                f,
                "larger than {} MiB, the most a torrent file may be",
                MAX_TORRENT_FILE >> 20
            ),
        }
    }
}

/// What is read of a file that does not start with `d` (a torrent is a
/// bencoded dictionary): enough for the parser's error to say what it is
/// instead (a list, junk at byte 0, ...), never more.
const NOT_A_DICT_READ: u64 = 64 << 10;

/// Saves a `.torrent` (replacing any file at `path`, atomically).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".shoal-tmp");
    crate::disk::write_replacing(path, Path::new(&tmp), bytes)
}

/// The bytes of the `.torrent` at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    let mut file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = vec![0u8; 1];
    if file.read(&mut bytes).map_err(ReadError::Io)? == 0 {
        return Ok(Vec::new());
    }
    let limit = if bytes[0] == b'd' {
        MAX_TORRENT_FILE
    } else {
        NOT_A_DICT_READ
    };
    (&mut file)
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes[0] != b'd' {
        return Ok(bytes);
    }
    if bytes.len() as u64 > MAX_TORRENT_FILE {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::TempDir;

    #[test]
    fn reads_are_bounded_and_junk_is_refused_at_once() {
        let dir = TempDir::new("torrent-file");
        let huge = dir.0.join("huge.torrent");
        let f = std::fs::File::create(&huge).unwrap();
        std::io::Write::write_all(&mut &f, b"d").unwrap();
        f.set_len(MAX_TORRENT_FILE + 1).unwrap(); // sparse
        assert!(matches!(read(&huge), Err(ReadError::TooLarge)));
        let fits = dir.0.join("fits.torrent");
        std::fs::write(&fits, b"de").unwrap();
        assert_eq!(read(&fits).unwrap(), b"de");
        assert!(read(&dir.0.join("missing")).is_err());
        // Junk is read only as far as the parser needs to refuse it.
        let zeros = read(Path::new("/dev/zero")).unwrap();
        assert_eq!(zeros.len() as u64, 1 + NOT_A_DICT_READ);
        assert!(crate::proto::metainfo::Metainfo::from_bytes(&zeros).is_err());
    }
}
