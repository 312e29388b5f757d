//! `.torrent` files: bytes in, a validated [`Metainfo`] out.
//!
//! Owns: which keys a torrent has, what they mean, the v1 info hash (SHA-1
//! of the info dictionary's raw bytes, never a re-encoding), and the rules
//! that keep a torrent's file paths inside the download directory. Does not
//! own: the bencode grammar ([`crate::proto::bencode`]) or piece arithmetic
//! ([`crate::proto::geometry`], which a `Metainfo` carries).

use crate::proto::bencode::{self, Owned, Value};
use crate::proto::geometry::{Geometry, GeometryError};
use sha1::{Digest, Sha1};
use std::fmt;

/// Pieces larger than this are refused: nothing real uses them, and a
/// block-sized request scheme needs piece lengths that fit `u32`.
pub const MAX_PIECE_LEN: i64 = 256 << 20;

/// A 20-byte SHA-1 identifying a torrent (BEP 3 v1 info hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    pub fn hex(&self) -> String {
        crate::util::hex::encode(&self.0)
    }

    /// The hash written as 40 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<InfoHash> {
        let bytes = crate::util::hex::decode(text)?;
        Some(InfoHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// One file of the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Path components below the torrent's name directory, joined by `/`
    /// (which no component contains: [`check_component`]) in one
    /// allocation — a torrent may list a million files; empty for a
    /// single-file torrent (whose file is the name itself).
    path: Box<[u8]>,
    pub length: u64,
    /// BEP 47 padding file (`attr` contains `p`): never written.
    pub padding: bool,
}

impl FileInfo {
    /// The path's components, each checked safe.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.path
            .split(|&b| b == b'/')
            .filter(|_| !self.path.is_empty())
    }

    /// A single-file torrent's only file has no path of its own.
    pub fn has_path(&self) -> bool {
        !self.path.is_empty()
    }

    /// The path as text (lossy UTF-8), `/`-separated, for display.
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A parsed, validated torrent.
#[derive(Debug, Clone)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    /// The info dictionary's bytes as they were in the file (served to
    /// peers by BEP 9, hashed for the info hash).
    pub info_bytes: Vec<u8>,
    /// The suggested name: the file of a single-file torrent, or the
    /// directory of a multi-file one. Bytes; checked safe.
    pub name: Vec<u8>,
    /// Whether the info dict has a `files` list (so `name` is a directory).
    pub multi_file: bool,
    pub files: Vec<FileInfo>,
    pub geometry: Geometry,
    /// SHA-1 of each piece, concatenated.
    piece_hashes: Vec<u8>,
    pub private: bool,
    /// `announce`, shown for information; [`Metainfo::trackers`] is what to use.
    pub announce: Option<String>,
    /// Tracker tiers (BEP 12): `announce-list` if present, else `announce`.
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 web seeds (`url-list`).
    pub web_seeds: Vec<String>,
    pub creation_date: Option<i64>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
}

impl Metainfo {
    /// The display name: lossy UTF-8 of [`Metainfo::name`].
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The expected SHA-1 of a piece.
    pub fn piece_hash(&self, piece: crate::proto::geometry::PieceIndex) -> [u8; 20] {
        let i = piece.usize() * 20;
        self.piece_hashes[i..i + 20].try_into().expect("20 bytes")
    }

    /// A file's path as `shoal info` prints it (and `--only` matches it):
    /// the torrent's name, then the file's own path.
    pub fn file_display_path(&self, f: &FileInfo) -> String {
        if self.multi_file {
            format!("{}/{}", self.display_name(), f.display_path())
        } else {
            self.display_name()
        }
    }

    /// A torrent from its info dictionary alone (fetched for a magnet
    /// link, BEP 9), with these trackers.
    pub fn from_info(info: &[u8], trackers: Vec<Vec<String>>) -> Result<Metainfo, Error> {
        // `files` entries (info → files → entry) stay unparsed until read.
        let info = bencode::decode_shallow(info, 2).map_err(Error::Bencode)?;
        if info.as_dict().is_none() {
            return Err(wrong_type("info", "dictionary", &info));
        }
        let mut parsed = parse_info(&info)?;
        parsed.announce = trackers.first().and_then(|t| t.first()).cloned();
        parsed.trackers = trackers;
        Ok(parsed)
    }

    /// A `.torrent` file of this torrent: its info dictionary byte for byte
    /// (so the info hash is the same) and its trackers.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        let mut d = Owned::dict();
        if let Some(first) = self.trackers.first().and_then(|t| t.first()) {
            d = d.insert("announce", first.as_str());
        }
        if self.trackers.iter().flatten().nth(1).is_some() {
            let tiers: Vec<Owned> = self
                .trackers
                .iter()
                .map(|t| Owned::List(t.iter().map(|u| Owned::from(u.as_str())).collect()))
                .collect();
            d = d.insert("announce-list", tiers);
        }
        // "info" sorts after both keys: the raw bytes go last.
        let mut out = d.encode();
        out.pop();
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(&self.info_bytes);
        out.push(b'e');
        out
    }

    /// Parses and validates a `.torrent` file's bytes.
    pub fn from_bytes(buf: &[u8]) -> Result<Metainfo, Error> {
        // `files` entries (root → info → files → entry) stay unparsed until
        // `file_list` reads them one at a time.
        let root = bencode::decode_shallow(buf, 3).map_err(Error::Bencode)?;
        if root.as_dict().is_none() {
            return Err(Error::WrongType {
                key: "(top level)",
                expected: "dictionary",
                found: root.type_name(),
            });
        }
        let info = required(&root, "info")?;
        if info.as_dict().is_none() {
            return Err(wrong_type("info", "dictionary", info));
        }
        let mut parsed = parse_info(info)?;
        parsed.trackers = tracker_tiers(&root)?;
        parsed.announce = optional_text(&root, "announce")?;
        parsed.web_seeds = web_seeds(&root)?;
        parsed.creation_date = optional_int(&root, "creation date")?;
        parsed.comment = optional_text(&root, "comment")?;
        parsed.created_by = optional_text(&root, "created by")?;
        Ok(parsed)
    }
}

fn parse_info(info: &Value) -> Result<Metainfo, Error> {
    let name = bytes(required(info, "info.name")?, "info.name")?.to_vec();
    check_component(&name).map_err(|reason| Error::UnsafePath {
        path: String::from_utf8_lossy(&name).into_owned(),
        reason,
    })?;

    let piece_length = int(required(info, "info.piece length")?, "info.piece length")?;
    if !(1..=MAX_PIECE_LEN).contains(&piece_length) {
        return Err(Error::BadPieceLength(piece_length));
    }

    let hashes = bytes(required(info, "info.pieces")?, "info.pieces")?;
    if hashes.len() % 20 != 0 {
        return Err(Error::PiecesNotMultipleOf20(hashes.len()));
    }

    let files = match (info.get("length"), info.get("files")) {
        (Some(_), Some(_)) => return Err(Error::BothLengthAndFiles),
        (None, None) => return Err(Error::NeitherLengthNorFiles),
        (Some(len), None) => vec![FileInfo {
            path: Box::default(),
            length: length(len, "info.length")?,
            padding: false,
        }],
        (None, Some(list)) => file_list(list)?,
    };
    let geometry = Geometry::new(
        piece_length as u32,
        files.iter().map(|f| (f.length, f.padding)),
    )
    .map_err(Error::Geometry)?;
    let pieces = hashes.len() / 20;
    if pieces != geometry.num_pieces() as usize {
        return Err(Error::PieceCountMismatch {
            expected: geometry.num_pieces(),
            actual: pieces,
        });
    }
    let private = optional_int(info, "private")? == Some(1);

    Ok(Metainfo {
        info_hash: InfoHash(Sha1::digest(info.raw).into()),
        info_bytes: info.raw.to_vec(),
        name,
        multi_file: info.get("files").is_some(),
        files,
        geometry,
        piece_hashes: hashes.to_vec(),
        private,
        announce: None,
        trackers: Vec::new(),
        web_seeds: Vec::new(),
        creation_date: None,
        comment: None,
        created_by: None,
    })
}

fn file_list(list: &Value) -> Result<Vec<FileInfo>, Error> {
    let entries = list
        .as_list()
        .ok_or_else(|| wrong_type("info.files", "list", list))?;
    if entries.is_empty() {
        return Err(Error::EmptyFileList);
    }
    let mut files = Vec::with_capacity(entries.len());
    for entry in entries {
        // Kept unparsed by the shallow decode (and checked by it already).
        let entry = bencode::decode(entry.raw).map_err(Error::Bencode)?;
        files.push(file_entry(&entry)?);
    }
    // Padding files are never created, and libtorrent names them by size
    // (`.pad/16381`), so several may share a path; no other two may.
    let mut order: Vec<u32> = (0..files.len() as u32)
        .filter(|&i| !files[i as usize].padding)
        .collect();
    order.sort_unstable_by(|&a, &b| files[a as usize].path.cmp(&files[b as usize].path));
    if let Some(w) = order
        .windows(2)
        .find(|w| files[w[0] as usize].path == files[w[1] as usize].path)
    {
        return Err(Error::DuplicatePath(files[w[0] as usize].display_path()));
    }
    Ok(files)
}

/// One entry of `info.files`.
fn file_entry(entry: &Value) -> Result<FileInfo, Error> {
    if entry.as_dict().is_none() {
        return Err(wrong_type("info.files[]", "dictionary", entry));
    }
    let length = length(
        required(entry, "info.files[].length")?,
        "info.files[].length",
    )?;
    let parts = required(entry, "info.files[].path")?;
    let parts = parts
        .as_list()
        .ok_or_else(|| wrong_type("info.files[].path", "list", parts))?;
    let parts = parts
        .iter()
        .map(|p| bytes(p, "info.files[].path[]"))
        .collect::<Result<Vec<_>, _>>()?;
    let file = FileInfo {
        padding: optional_bytes(entry, "attr")?.is_some_and(|a| a.contains(&b'p')),
        path: parts.join(&b'/').into(),
        length,
    };
    check_path(&file, &parts)?;
    Ok(file)
}

/// A file's path components (`parts`, which `file` joins) are safe.
fn check_path(file: &FileInfo, parts: &[&[u8]]) -> Result<(), Error> {
    let unsafe_path = |reason| Error::UnsafePath {
        path: file.display_path(),
        reason,
    };
    if parts.is_empty() {
        return Err(unsafe_path("the path is empty"));
    }
    parts
        .iter()
        .try_for_each(|c| check_component(c).map_err(unsafe_path))
}

/// Why a path component is unsafe to join onto the download directory, if
/// it is: the rules that keep every write inside that directory.
pub fn check_component(c: &[u8]) -> Result<(), &'static str> {
    match c {
        [] => Err("a path component is empty"),
        [b'/', ..] => Err("the path is absolute"),
        b"." | b".." => Err("a path component is '.' or '..'"),
        _ if c.contains(&b'/') => Err("a path component contains '/'"),
        _ if c.contains(&0) => Err("a path component contains a NUL byte"),
        _ => Ok(()),
    }
}

fn tracker_tiers(root: &Value) -> Result<Vec<Vec<String>>, Error> {
    if let Some(list) = root.get("announce-list") {
        let tiers = list
            .as_list()
            .ok_or_else(|| wrong_type("announce-list", "list", list))?;
        let mut out = Vec::new();
        for tier in tiers {
            let urls = tier
                .as_list()
                .ok_or_else(|| wrong_type("announce-list[]", "list", tier))?;
            let urls: Vec<String> = urls
                .iter()
                .map(|u| text(u, "announce-list[][]"))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|u| !u.is_empty())
                .collect();
            if !urls.is_empty() {
                out.push(urls);
            }
        }
        // BEP 12: a non-empty announce-list replaces announce.
        if !out.is_empty() {
            return Ok(out);
        }
    }
    Ok(optional_text(root, "announce")?
        .filter(|u| !u.is_empty())
        .map(|u| vec![vec![u]])
        .unwrap_or_default())
}

fn web_seeds(root: &Value) -> Result<Vec<String>, Error> {
    match root.get("url-list") {
        None => Ok(Vec::new()),
        Some(v) if v.as_bytes().is_some() => Ok(Some(text(v, "url-list")?)
            .filter(|u| !u.is_empty())
            .into_iter()
            .collect()),
        Some(v) => v
            .as_list()
            .ok_or_else(|| wrong_type("url-list", "string or list", v))?
            .iter()
            .map(|u| text(u, "url-list[]"))
            .collect(),
    }
}

/// The value at `path`'s last component (`info.piece length` looks up
/// `piece length`); a missing key is reported by its whole path.
fn required<'v, 'a>(dict: &'v Value<'a>, path: &'static str) -> Result<&'v Value<'a>, Error> {
    let key = path.rsplit('.').next().unwrap_or(path);
    dict.get(key).ok_or(Error::Missing(path))
}

fn wrong_type(key: &'static str, expected: &'static str, found: &Value) -> Error {
    Error::WrongType {
        key,
        expected,
        found: found.type_name(),
    }
}

fn int(v: &Value, key: &'static str) -> Result<i64, Error> {
    v.as_int().ok_or_else(|| wrong_type(key, "integer", v))
}

fn bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<&'a [u8], Error> {
    v.as_bytes().ok_or_else(|| wrong_type(key, "string", v))
}

fn text(v: &Value, key: &'static str) -> Result<String, Error> {
    Ok(String::from_utf8_lossy(bytes(v, key)?).into_owned())
}

fn length(v: &Value, key: &'static str) -> Result<u64, Error> {
    let n = int(v, key)?;
    u64::try_from(n).map_err(|_| Error::NegativeLength(n))
}

fn optional_int(dict: &Value, key: &'static str) -> Result<Option<i64>, Error> {
    dict.get(key).map(|v| int(v, key)).transpose()
}

fn optional_bytes<'a>(dict: &Value<'a>, key: &'static str) -> Result<Option<&'a [u8]>, Error> {
    dict.get(key).map(|v| bytes(v, key)).transpose()
}

fn optional_text(dict: &Value, key: &'static str) -> Result<Option<String>, Error> {
    dict.get(key).map(|v| text(v, key)).transpose()
}

/// Why a torrent file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The file is not valid bencode.
    Bencode(bencode::Error),
    /// A required key is absent (named by its path, e.g. `info.pieces`).
    Missing(&'static str),
    /// A key holds the wrong type of value.
    WrongType {
        key: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    /// `piece length` is zero, negative or over [`MAX_PIECE_LEN`].
    BadPieceLength(i64),
    /// `pieces` is not a whole number of 20-byte hashes.
    PiecesNotMultipleOf20(usize),
    /// The number of hashes does not match the total length.
    PieceCountMismatch { expected: u32, actual: usize },
    /// A file length below zero.
    NegativeLength(i64),
    /// Both `length` and `files` in the info dictionary.
    BothLengthAndFiles,
    /// Neither `length` nor `files` in the info dictionary.
    NeitherLengthNorFiles,
    /// `files` is an empty list.
    EmptyFileList,
    /// A path that could escape the download directory.
    UnsafePath { path: String, reason: &'static str },
    /// Two files with the same path.
    DuplicatePath(String),
    /// The lengths do not make a usable torrent.
    Geometry(GeometryError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bencode(e) => e.fmt(f),
            Error::Missing(key) => write!(f, "missing key '{key}'"),
            Error::WrongType {
                key,
                expected,
                found,
            } => write!(f, "'{key}' should be {}, found {}", a(expected), a(found)),
            Error::BadPieceLength(n) => write!(
                f,
                "piece length {n} is out of range (1 to {MAX_PIECE_LEN} bytes)"
            ),
            Error::PiecesNotMultipleOf20(n) => {
                write!(f, "'info.pieces' is {n} bytes, not a multiple of 20")
            }
            Error::PieceCountMismatch { expected, actual } => write!(
                f,
                "'info.pieces' has {actual} hashes but the total length needs {expected}"
            ),
            Error::NegativeLength(n) => write!(f, "file length {n} is negative"),
            Error::BothLengthAndFiles => {
                write!(f, "info has both 'length' and 'files'")
            }
            Error::NeitherLengthNorFiles => {
                write!(f, "info has neither 'length' nor 'files'")
            }
            Error::EmptyFileList => write!(f, "'info.files' is empty"),
            Error::UnsafePath { path, reason } => {
                write!(f, "unsafe file path {path:?}: {reason}")
            }
            Error::DuplicatePath(p) => write!(f, "file path {p:?} appears twice"),
            Error::Geometry(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

/// "a list", "an integer".
fn a(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::bencode::Owned;

    fn single(length: i64, piece_len: i64, pieces: usize) -> Owned {
        Owned::dict()
            .insert("name", "a.bin")
            .insert("length", length)
            .insert("piece length", piece_len)
            .insert("pieces", vec![7u8; pieces * 20])
    }

    fn torrent(info: Owned) -> Vec<u8> {
        Owned::dict()
            .insert("announce", "http://127.0.0.1:6969/announce")
            .insert("info", info)
            .encode()
    }

    fn multi(files: Vec<Owned>) -> Owned {
        Owned::dict()
            .insert("name", "dir")
            .insert("files", files)
            .insert("piece length", 16384)
            .insert("pieces", vec![1u8; 20])
    }

    fn file(len: i64, path: &[&[u8]]) -> Owned {
        Owned::dict().insert("length", len).insert(
            "path",
            path.iter().map(|c| Owned::from(*c)).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn single_file_parses_and_hashes_raw_info() {
        let buf = torrent(single(40000, 16384, 3));
        let m = Metainfo::from_bytes(&buf).unwrap();
        assert_eq!(m.display_name(), "a.bin");
        assert!(!m.multi_file);
        assert_eq!(m.geometry.total_len(), 40000);
        assert_eq!(m.geometry.num_pieces(), 3);
        assert_eq!(
            m.trackers,
            vec![vec!["http://127.0.0.1:6969/announce".to_string()]]
        );
        let info = single(40000, 16384, 3).encode();
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&info)));
        assert_eq!(m.info_bytes, info);
    }

    #[test]
    fn announce_list_replaces_announce() {
        let buf = Owned::dict()
            .insert("announce", "http://a/announce")
            .insert(
                "announce-list",
                vec![
                    Owned::List(vec!["http://b/announce".into(), "udp://c:1".into()]),
                    Owned::List(vec![]),
                    Owned::List(vec!["http://d/announce".into()]),
                ],
            )
            .insert("url-list", "http://seed/")
            .insert("info", single(10, 16, 1))
            .encode();
        let m = Metainfo::from_bytes(&buf).unwrap();
        assert_eq!(
            m.trackers,
            vec![
                vec!["http://b/announce".to_string(), "udp://c:1".to_string()],
                vec!["http://d/announce".to_string()]
            ]
        );
        assert_eq!(m.web_seeds, vec!["http://seed/".to_string()]);
    }

    #[test]
    fn defects_have_one_clear_error_each() {
        let path_err = |p: &[&[u8]], reason| {
            (
                torrent(multi(vec![file(5, p)])),
                format!(
                    "unsafe file path {:?}: {reason}",
                    p.iter()
                        .map(|c| String::from_utf8_lossy(c))
                        .collect::<Vec<_>>()
                        .join("/")
                ),
            )
        };
        let table: Vec<(Vec<u8>, String)> = vec![
            (
                Owned::dict().insert("announce", "x").encode(),
                "missing key 'info'".into(),
            ),
            (
                torrent(single(10, 16, 1).insert("length", "ten")),
                "'info.length' should be an integer, found a string".into(),
            ),
            (
                torrent(single(10, 0, 1)),
                "piece length 0 is out of range (1 to 268435456 bytes)".into(),
            ),
            (
                torrent(single(10, -16, 1)),
                "piece length -16 is out of range (1 to 268435456 bytes)".into(),
            ),
            (
                torrent(single(10, 1 << 40, 1)),
                "piece length 1099511627776 is out of range (1 to 268435456 bytes)".into(),
            ),
            (
                torrent(single(10, 16, 1).insert("pieces", vec![0u8; 19])),
                "'info.pieces' is 19 bytes, not a multiple of 20".into(),
            ),
            (
                torrent(single(40, 16, 2)),
                "'info.pieces' has 2 hashes but the total length needs 3".into(),
            ),
            (
                torrent(single(-1, 16, 1)),
                "file length -1 is negative".into(),
            ),
            (
                torrent(multi(vec![]).insert("length", 3)),
                "info has both 'length' and 'files'".into(),
            ),
            (torrent(multi(vec![])), "'info.files' is empty".into()),
            (
                torrent(multi(vec![
                    file(i64::MAX, &[b"a"]),
                    file(i64::MAX, &[b"b"]),
                    file(2, &[b"c"]),
                ])),
                "total length is over 2^63-1 bytes".into(),
            ),
            (
                torrent(multi(vec![file(3, &[b"a"]), file(3, &[b"a"])])),
                "file path \"a\" appears twice".into(),
            ),
            (
                torrent(single(10, 16, 1).insert("name", "..")),
                "unsafe file path \"..\": a path component is '.' or '..'".into(),
            ),
            (
                torrent(multi(vec![file(5, &[])])),
                "unsafe file path \"\": the path is empty".into(),
            ),
            path_err(&[b"sub", b"..", b"x"], "a path component is '.' or '..'"),
            path_err(&[b"/etc", b"passwd"], "the path is absolute"),
            path_err(&[b"a", b"", b"b"], "a path component is empty"),
            path_err(&[b"a/b"], "a path component contains '/'"),
            path_err(&[b"a\0b"], "a path component contains a NUL byte"),
            (
                b"li1ee".to_vec(),
                "'(top level)' should be a dictionary, found a list".into(),
            ),
        ];
        for (buf, want) in table {
            let got = Metainfo::from_bytes(&buf).expect_err(&want).to_string();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn padding_files_may_share_a_path() {
        // libtorrent writes `.pad/N` for every pad of N bytes.
        let pad = || file(11, &[b".pad", b"11"]).insert("attr", "p");
        let buf = torrent(
            multi(vec![
                file(5, &[b"a"]),
                pad(),
                file(5, &[b"b"]),
                pad(),
                file(5, &[b"c"]),
            ])
            .insert("piece length", 16)
            .insert("pieces", vec![0u8; 60]),
        );
        let m = Metainfo::from_bytes(&buf).unwrap();
        assert_eq!(m.files.iter().filter(|f| f.padding).count(), 2);
    }

    #[test]
    fn padding_files_and_empty_files() {
        let pad = file(11, &[b".pad", b"11"]).insert("attr", "p");
        let buf = torrent(
            multi(vec![file(5, &[b"sub", b"x"]), pad, file(0, &[b"empty"])])
                .insert("piece length", 16)
                .insert("pieces", vec![0u8; 20]),
        );
        let m = Metainfo::from_bytes(&buf).unwrap();
        assert!(m.multi_file);
        let flags: Vec<(String, u64, bool)> = m
            .files
            .iter()
            .map(|f| (f.display_path(), f.length, f.padding))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("sub/x".into(), 5, false),
                (".pad/11".into(), 11, true),
                ("empty".into(), 0, false)
            ]
        );
    }

    /// A torrent rebuilt from its info dictionary (a magnet's metadata) has
    /// the same info hash, and its `.torrent` parses back to the same.
    #[test]
    fn from_info_and_back_keep_the_info_hash() {
        for name in [
            "libtorrent-multi-padded.torrent",
            "mktorrent-single.torrent",
        ] {
            let bytes = std::fs::read(format!("testdata/{name}")).unwrap();
            let m = Metainfo::from_bytes(&bytes).unwrap();
            let trackers = vec![
                vec!["http://a/announce".to_string()],
                vec!["udp://b:1".into()],
            ];
            let rebuilt = Metainfo::from_info(&m.info_bytes, trackers.clone()).unwrap();
            assert_eq!(rebuilt.info_hash, m.info_hash);
            assert_eq!(rebuilt.files, m.files);
            let again = Metainfo::from_bytes(&rebuilt.to_torrent_bytes()).unwrap();
            assert_eq!(again.info_hash, m.info_hash);
            assert_eq!(again.trackers, trackers);
        }
    }
}
