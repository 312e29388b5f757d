//! BEP 19 web seeds, the pure part: where a file lives on a web seed, which
//! HTTP ranges a run of pieces needs, and whether a reply is the range we
//! asked for.
//!
//! Owns: the URL mapping (single file: the URL is the file, or a URL ending
//! in `/` gets the name appended; multi-file: URL + name + `/` + path, every
//! component percent-encoded), the split of a run of pieces into one range
//! per file (BEP 47 padding is never requested: it reads as zeros), the
//! `Range` header, and the `Content-Range` / `Content-Length` check. Does
//! not own: HTTP (the `net::web_seed` workers) or when a web seed is used
//! (`engine::torrent::web_seeds`).

use crate::proto::geometry::{Geometry, PieceIndex};
use crate::proto::metainfo::Metainfo;
use crate::proto::tracker::percent_encode_into;
use std::fmt;

/// The URL of file `file` of the torrent on the web seed at `base`.
pub fn file_url(base: &str, meta: &Metainfo, file: usize) -> String {
    let mut url = base.to_string();
    if !meta.multi_file {
        if url.ends_with('/') {
            percent_encode_into(&mut url, &meta.name);
        }
        return url;
    }
    if !url.ends_with('/') {
        url.push('/');
    }
    percent_encode_into(&mut url, &meta.name);
    for component in meta.files[file].components() {
        url.push('/');
        percent_encode_into(&mut url, component);
    }
    url
}

/// One file's share of a run of pieces: an HTTP range request, or zeros
/// for a padding file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub file: usize,
    /// Where the range starts within the file.
    pub offset: u64,
    pub len: u64,
    /// BEP 47 padding: not on the server; zeros.
    pub padding: bool,
}

/// The parts of `count` pieces from `first` on, in order; zero-length
/// files are skipped. The parts' lengths add up to the run's length.
pub fn parts(geometry: &Geometry, first: PieceIndex, count: u32) -> Vec<Part> {
    let start = geometry.piece_offset(first);
    let end =
        (start + u64::from(count) * u64::from(geometry.piece_len())).min(geometry.total_len());
    let files = geometry.files();
    let from = files.partition_point(|f| f.offset + f.len <= start);
    files[from..]
        .iter()
        .enumerate()
        .take_while(|(_, f)| f.offset < end)
        .filter(|(_, f)| f.len > 0)
        .map(|(i, f)| {
            let lo = start.max(f.offset);
            let hi = end.min(f.offset + f.len);
            Part {
                file: from + i,
                offset: lo - f.offset,
                len: hi - lo,
                padding: f.padding,
            }
        })
        .collect()
}

/// The `Range` header value for a part (`len` > 0).
pub fn range_header(part: &Part) -> String {
    format!("bytes={}-{}", part.offset, part.offset + part.len - 1)
}

/// Why a reply to a range request is not the bytes we asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// 200: the server ignored the range and sends the whole file.
    NoRangeSupport,
    /// Any status other than 200 and 206 (redirects are followed before).
    Status(u16),
    /// A 206 without a `Content-Range` header.
    NoContentRange,
    /// A `Content-Range` that does not parse.
    BadContentRange(String),
    /// A `Content-Range` for other bytes than those asked for.
    WrongRange { want: (u64, u64), got: (u64, u64) },
    /// A `Content-Length` other than the range's length.
    WrongLength { want: u64, got: u64 },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NoRangeSupport => {
                f.write_str("no range support (200 with the whole file to a range request)")
            }
            ReplyError::Status(code) => write!(f, "HTTP {code}"),
            ReplyError::NoContentRange => f.write_str("206 without Content-Range"),
            ReplyError::BadContentRange(v) => write!(f, "unreadable Content-Range '{v}'"),
            ReplyError::WrongRange { want, got } => write!(
                f,
                "sent bytes {}-{} for a request of {}-{}",
                got.0, got.1, want.0, want.1
            ),
            ReplyError::WrongLength { want, got } => {
                write!(f, "Content-Length {got} for a range of {want} bytes")
            }
        }
    }
}

/// Checks a reply's status and headers against the part asked for.
pub fn check_reply(
    part: &Part,
    status: u16,
    content_range: Option<&str>,
    content_length: Option<u64>,
) -> Result<(), ReplyError> {
    match status {
        206 => {}
        200 => return Err(ReplyError::NoRangeSupport),
        code => return Err(ReplyError::Status(code)),
    }
    let value = content_range.ok_or(ReplyError::NoContentRange)?;
    let got = parse_content_range(value)
        .ok_or_else(|| ReplyError::BadContentRange(value.chars().take(80).collect()))?;
    let want = (part.offset, part.offset + part.len - 1);
    if got != want {
        return Err(ReplyError::WrongRange { want, got });
    }
    match content_length {
        Some(got) if got != part.len => Err(ReplyError::WrongLength {
            want: part.len,
            got,
        }),
        _ => Ok(()),
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): the first and last byte.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last) = (number(first)?, number(last)?);
    let total_ok = total == "*" || number(total).is_some_and(|t| last < t);
    (first <= last && total_ok).then_some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A torrent with these files (path, length, padding) and 16 KiB
    /// pieces; single-file (40,000 bytes) when `files` is `None`.
    fn meta(name: &str, files: Option<&[(&[&str], i64, bool)]>) -> Metainfo {
        use crate::proto::bencode::Owned;
        let (info, total) = match files {
            None => (Owned::dict().insert("length", 40_000), 40_000),
            Some(files) => {
                let list = files.iter().map(|(path, len, pad)| {
                    let path: Vec<Owned> = path.iter().map(|c| Owned::from(*c)).collect();
                    let file = Owned::dict().insert("length", *len).insert("path", path);
                    if *pad {
                        file.insert("attr", "p")
                    } else {
                        file
                    }
                });
                let total = files.iter().map(|f| f.1).sum();
                (
                    Owned::dict().insert("files", list.collect::<Vec<_>>()),
                    total,
                )
            }
        };
        let pieces = (total as usize).div_ceil(16 * 1024);
        let info = info
            .insert("name", name)
            .insert("piece length", 16 * 1024)
            .insert("pieces", vec![0u8; 20 * pieces]);
        Metainfo::from_info(&info.encode(), Vec::new()).unwrap()
    }

    #[test]
    fn urls_follow_bep_19() {
        let single = meta("a file.iso", None);
        let multi = meta(
            "dir",
            Some(&[(&["sub dir", "x%y.txt"], 10, false), (&["z"], 5, false)]),
        );
        let cases = [
            (
                &single,
                "http://h/path/file.iso",
                0,
                "http://h/path/file.iso",
            ),
            (&single, "http://h/path/", 0, "http://h/path/a%20file.iso"),
            (
                &multi,
                "http://h/m",
                0,
                "http://h/m/dir/sub%20dir/x%25y.txt",
            ),
            (&multi, "http://h/m/", 1, "http://h/m/dir/z"),
        ];
        for (meta, base, file, want) in cases {
            assert_eq!(file_url(base, meta, file), want, "{base} file {file}");
        }
    }

    #[test]
    fn a_run_spanning_files_becomes_one_part_per_file_with_padding_marked() {
        // a = 10,000 bytes, padding to 16 KiB, then b = 30,000 and c = 0.
        let m = meta(
            "d",
            Some(&[
                (&["a"], 10_000, false),
                (&[".pad", "6384"], 6_384, true),
                (&["b"], 30_000, false),
                (&["c"], 0, false),
            ]),
        );
        let g = &m.geometry;
        let piece = |i| g.piece(i).unwrap();
        let part = |file, offset, len, padding| Part {
            file,
            offset,
            len,
            padding,
        };
        assert_eq!(
            parts(g, piece(0), 2),
            vec![
                part(0, 0, 10_000, false),
                part(1, 0, 6_384, true),
                part(2, 0, 16_384, false)
            ]
        );
        // The last piece is short, and a run past the end stops at it.
        assert_eq!(parts(g, piece(2), 5), vec![part(2, 16_384, 13_616, false)]);
        let total: u64 = parts(g, piece(0), 3).iter().map(|p| p.len).sum();
        assert_eq!(total, g.total_len());
        assert_eq!(
            range_header(&part(2, 16_384, 13_616, false)),
            "bytes=16384-29999"
        );
    }

    #[test]
    fn replies_are_checked_against_the_range_asked_for() {
        let part = Part {
            file: 0,
            offset: 100,
            len: 50,
            padding: false,
        };
        let ok = Some("bytes 100-149/1000");
        let cases = [
            (206, ok, Some(50), Ok(())),
            (206, Some("bytes 100-149/*"), None, Ok(())),
            (200, None, Some(1000), Err(ReplyError::NoRangeSupport)),
            (404, None, None, Err(ReplyError::Status(404))),
            (206, None, Some(50), Err(ReplyError::NoContentRange)),
            (
                206,
                Some("bytes 0-49/1000"),
                Some(50),
                Err(ReplyError::WrongRange {
                    want: (100, 149),
                    got: (0, 49),
                }),
            ),
            (
                206,
                ok,
                Some(49),
                Err(ReplyError::WrongLength { want: 50, got: 49 }),
            ),
            (
                206,
                Some("bytes 149-100/1000"),
                None,
                Err(ReplyError::BadContentRange("bytes 149-100/1000".into())),
            ),
            (
                206,
                Some("bytes 100-149/120"),
                None,
                Err(ReplyError::BadContentRange("bytes 100-149/120".into())),
            ),
        ];
        for (status, range, len, want) in cases {
            assert_eq!(
                check_reply(&part, status, range, len),
                want,
                "{status} {range:?}"
            );
        }
    }

    #[test]
    fn content_range_parsing_rejects_junk() {
        for bad in [
            "",
            "bytes",
            "bytes -1/2",
            "bytes 1-/2",
            "items 0-1/2",
            "bytes +1-2/3",
            "bytes 0-99999999999999999999/*",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(parse_content_range(" bytes 0-0/1 "), Some((0, 0)));
    }
}
