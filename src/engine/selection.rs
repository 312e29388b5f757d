//! Which files of a torrent to download (`--only GLOB`, `--files LIST`),
//! pure: the selectors as given, and the per-file choice they make for a
//! torrent. Files are numbered from 1 in torrent order, padding files not
//! counted, and matched by their path as `shoal info` prints them.

use crate::proto::metainfo::Metainfo;
use std::fmt;
use std::ops::RangeInclusive;

/// The selectors from the command line; all files when both are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub globs: Vec<String>,
    pub numbers: Vec<RangeInclusive<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// A `--files` list that is not `N`, `N-M`, … with 1 ≤ N ≤ M.
    BadList(String),
    /// A file number past the torrent's files.
    NoSuchFile { number: usize, files: usize },
    /// The selectors match no file.
    NothingSelected,
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectError::BadList(l) => write!(f, "invalid file list '{l}' (expected e.g. 1,4-7)"),
            SelectError::NoSuchFile { number, files } => {
                write!(f, "no file number {number}: the torrent has {files} files")
            }
            SelectError::NothingSelected => {
                f.write_str("--only/--files select nothing (see the paths 'shoal info' prints)")
            }
        }
    }
}

impl std::error::Error for SelectError {}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.globs.is_empty() && self.numbers.is_empty()
    }

    /// Adds a `--files` list such as `1,4-7`.
    pub fn add_numbers(&mut self, list: &str) -> Result<(), SelectError> {
        let bad = || SelectError::BadList(list.to_string());
        for part in list.split(',') {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (usize, usize) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if a == 0 || b < a {
                return Err(bad());
            }
            self.numbers.push(a..=b);
        }
        Ok(())
    }

    /// For each file of `meta`, whether it is selected (padding never is).
    pub fn resolve(&self, meta: &Metainfo) -> Result<Vec<bool>, SelectError> {
        let files = meta.files.iter().filter(|f| !f.padding).count();
        if let Some(r) = self.numbers.iter().find(|r| *r.end() > files) {
            return Err(SelectError::NoSuchFile {
                number: *r.end(),
                files,
            });
        }
        let mut number = 0;
        let chosen: Vec<bool> = meta
            .files
            .iter()
            .map(|f| {
                if f.padding {
                    return false;
                }
                number += 1;
                let path = meta.file_display_path(f);
                self.numbers.iter().any(|r| r.contains(&number))
                    || self
                        .globs
                        .iter()
                        .any(|g| glob_match(g.as_bytes(), path.as_bytes()))
            })
            .collect();
        if !chosen.contains(&true) {
            return Err(SelectError::NothingSelected);
        }
        Ok(chosen)
    }
}

/// Shell-style matching of a whole path: `*` is any run of characters but
/// `/`, `**` any run at all, `?` one character but `/`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern {
        [] => text.is_empty(),
        [b'*', b'*', rest @ ..] => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        [b'*', rest @ ..] => {
            let run = text.iter().position(|&c| c == b'/').unwrap_or(text.len());
            (0..=run).any(|i| glob_match(rest, &text[i..]))
        }
        [b'?', rest @ ..] => {
            text.first().is_some_and(|&c| c != b'/') && glob_match(rest, &text[1..])
        }
        [c, rest @ ..] => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"t/*.iso", b"t/a.iso"));
        assert!(!glob_match(b"t/*.iso", b"t/sub/a.iso"));
        assert!(glob_match(b"t/**.iso", b"t/sub/a.iso"));
        assert!(glob_match(b"t/**/a.iso", b"t/x/y/a.iso"));
        assert!(glob_match(b"t/?.bin", b"t/a.bin"));
        assert!(!glob_match(b"t/?.bin", b"t/ab.bin"));
        assert!(glob_match(b"*", b"single.bin"));
        assert!(!glob_match(b"x", b"xy"));
    }

    #[test]
    fn file_lists() {
        let mut s = Selector::default();
        s.add_numbers("1,4-7").unwrap();
        assert_eq!(s.numbers, vec![1..=1, 4..=7]);
        for bad in ["0", "3-2", "a", "1,,2", "-4", ""] {
            assert_eq!(
                Selector::default().add_numbers(bad),
                Err(SelectError::BadList(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolving_against_a_torrent() {
        let bytes = std::fs::read("testdata/libtorrent-multi-padded.torrent").unwrap();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        let real: Vec<String> = m
            .files
            .iter()
            .filter(|f| !f.padding)
            .map(|f| m.file_display_path(f))
            .collect();
        let mut s = Selector::default();
        s.add_numbers("2").unwrap();
        let chosen = s.resolve(&m).unwrap();
        let picked: Vec<String> = m
            .files
            .iter()
            .zip(&chosen)
            .filter(|(_, c)| **c)
            .map(|(f, _)| m.file_display_path(f))
            .collect();
        assert_eq!(picked, vec![real[1].clone()]);
        let s = Selector {
            globs: vec!["nothing/*".into()],
            numbers: vec![],
        };
        assert_eq!(s.resolve(&m), Err(SelectError::NothingSelected));
        let mut s = Selector::default();
        s.add_numbers("99").unwrap();
        assert!(matches!(
            s.resolve(&m),
            Err(SelectError::NoSuchFile { number: 99, .. })
        ));
    }
}
