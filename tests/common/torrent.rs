//! Torrents built in memory: canonical v1 bencode written with
//! `shoal::proto::bencode::Owned`, SHA-1 piece hashes, optional BEP 47 padding
//! files. Libtorrent loads them as they are.

use sha1::{Digest, Sha1};
use shoal::proto::bencode::Owned;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One file of a torrent, as laid out in the piece space.
#[derive(Debug, Clone)]
pub struct TorrentFile {
    /// Path inside the torrent, `/`-separated; empty for a single-file
    /// torrent (the file is then the torrent's name).
    pub path: String,
    /// BEP 47 padding file (`attr` "p"): zeros that are never written.
    pub padding: bool,
    /// Where the file starts in the piece space.
    pub offset: u64,
    pub len: u64,
}

/// A torrent and the data it describes.
#[derive(Debug, Clone)]
pub struct Torrent {
    /// The .torrent file.
    pub bytes: Vec<u8>,
    /// SHA-1 of the bencoded info dictionary.
    pub info_hash: [u8; 20],
    pub name: String,
    pub piece_len: u32,
    pub files: Vec<TorrentFile>,
    /// The whole piece space: every file's bytes in order, padding as zeros.
    pub data: Vec<u8>,
    /// SHA-1 of each piece.
    pub hashes: Vec<[u8; 20]>,
}

/// Builds a torrent named `name` from `files` (path, content).
///
/// One file with an empty path makes a single-file torrent; anything else a
/// multi-file torrent (0-byte files allowed; paths use `/`). With `padding`,
/// a BEP 47 padding file `.pad/N` follows every non-empty file that does not
/// end on a piece boundary (except the last), as libtorrent's
/// `canonical_files` does, so that each real file starts on a piece.
pub fn make_torrent(
    name: &str,
    files: &[(&str, &[u8])],
    piece_len: u32,
    announce: Option<&str>,
    padding: bool,
) -> Torrent {
    assert!(!files.is_empty(), "a torrent needs at least one file");
    assert!(piece_len > 0);
    let single = files.len() == 1 && files[0].0.is_empty();
    let pl = u64::from(piece_len);

    let mut layout = Vec::new();
    let mut data = Vec::new();
    for (i, (path, content)) in files.iter().enumerate() {
        assert!(
            single || !path.is_empty(),
            "empty path in a multi-file torrent"
        );
        layout.push(TorrentFile {
            path: path.to_string(),
            padding: false,
            offset: data.len() as u64,
            len: content.len() as u64,
        });
        data.extend_from_slice(content);
        let rem = data.len() as u64 % pl;
        let last = i + 1 == files.len();
        if padding && !single && !last && !content.is_empty() && rem != 0 {
            let pad = pl - rem;
            layout.push(TorrentFile {
                path: format!(".pad/{pad}"),
                padding: true,
                offset: data.len() as u64,
                len: pad,
            });
            data.resize(data.len() + pad as usize, 0);
        }
    }

    let hashes: Vec<[u8; 20]> = data
        .chunks(piece_len as usize)
        .map(|p| Sha1::digest(p).into())
        .collect();
    let mut info = Owned::dict()
        .insert("name", name)
        .insert("piece length", i64::from(piece_len))
        .insert("pieces", hashes.concat());
    if single {
        info = info.insert("length", data.len() as i64);
    } else {
        let list: Vec<Owned> = layout
            .iter()
            .map(|f| {
                let path: Vec<Owned> = f.path.split('/').map(Owned::from).collect();
                let mut entry = Owned::dict()
                    .insert("length", f.len as i64)
                    .insert("path", path);
                if f.padding {
                    entry = entry.insert("attr", "p");
                }
                entry
            })
            .collect();
        info = info.insert("files", list);
    }
    let info_bytes = info.encode();
    let info_hash: [u8; 20] = Sha1::digest(&info_bytes).into();

    let mut root = Owned::dict()
        .insert("info", info)
        .insert("created by", "shoal tests");
    if let Some(url) = announce {
        root = root
            .insert("announce", url)
            .insert("announce-list", vec![Owned::List(vec![Owned::from(url)])]);
    }
    let bytes = root.encode();

    Torrent {
        bytes,
        info_hash,
        name: name.to_string(),
        piece_len,
        files: layout,
        data,
        hashes,
    }
}

impl Torrent {
    pub fn num_pieces(&self) -> u32 {
        self.hashes.len() as u32
    }

    pub fn total_len(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn is_multi_file(&self) -> bool {
        !(self.files.len() == 1 && self.files[0].path.is_empty())
    }

    /// The byte range of piece `i` in the piece space.
    pub fn piece_range(&self, i: u32) -> Range<usize> {
        let start = i as usize * self.piece_len as usize;
        start..(start + self.piece_len as usize).min(self.data.len())
    }

    pub fn piece(&self, i: u32) -> &[u8] {
        &self.data[self.piece_range(i)]
    }

    /// The content of a file.
    pub fn file_data(&self, f: &TorrentFile) -> &[u8] {
        &self.data[f.offset as usize..(f.offset + f.len) as usize]
    }

    /// Info hash in lowercase hex (as in opentracker's whitelist).
    /// The size of the info dictionary (a magnet's metadata).
    pub fn info_bytes_len(&self) -> usize {
        shoal::proto::metainfo::Metainfo::from_bytes(&self.bytes)
            .unwrap()
            .info_bytes
            .len()
    }

    pub fn info_hash_hex(&self) -> String {
        self.info_hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Where file `f` lives when the torrent is saved into `dir` (the
    /// directory given to `-o`).
    pub fn path_in(&self, dir: &Path, f: &TorrentFile) -> PathBuf {
        let mut p = dir.join(&self.name);
        for part in f.path.split('/').filter(|s| !s.is_empty()) {
            p.push(part);
        }
        p
    }

    /// Writes the .torrent file as `dir/NAME.torrent` and returns its path.
    pub fn write_torrent(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.torrent", self.name));
        std::fs::write(&path, &self.bytes).expect("write .torrent");
        path
    }

    /// Writes the content under `dir` (as a download into `dir` would:
    /// `dir/NAME` is the file or the folder), without padding files.
    /// Returns `dir/NAME`.
    pub fn write_data(&self, dir: &Path) -> PathBuf {
        for f in self.files.iter().filter(|f| !f.padding) {
            let p = self.path_in(dir, f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, self.file_data(f)).expect("write source file");
        }
        dir.join(&self.name)
    }

    /// Checks a download into `dir`: every real file has exactly its bytes
    /// (0-byte files exist), no padding file was created, and there is no
    /// file in the torrent's folder that the torrent does not list.
    pub fn assert_downloaded(&self, dir: &Path) {
        for f in &self.files {
            let p = self.path_in(dir, f);
            if f.padding {
                assert!(
                    !p.exists(),
                    "padding file {} was created (BEP 47: never written)",
                    p.display()
                );
                continue;
            }
            let got = std::fs::read(&p)
                .unwrap_or_else(|e| panic!("{}: {e} (should have been downloaded)", p.display()));
            super::assert_same_bytes(self.file_data(f), &got, &p);
        }
        if self.is_multi_file() {
            let mut want: Vec<PathBuf> = self
                .files
                .iter()
                .filter(|f| !f.padding)
                .map(|f| f.path.split('/').collect())
                .collect();
            want.sort();
            let root = dir.join(&self.name);
            assert_eq!(
                super::list_files(&root),
                want,
                "files under {} (padding must not be written, nothing extra created)",
                root.display()
            );
        }
    }

    /// Whether piece `i` is intact in a download directory `dir` (every byte
    /// present and equal), which is what a resume check should find.
    pub fn piece_on_disk(&self, dir: &Path, i: u32) -> bool {
        let range = self.piece_range(i);
        for f in &self.files {
            let (fs, fe) = (f.offset as usize, (f.offset + f.len) as usize);
            let (s, e) = (range.start.max(fs), range.end.min(fe));
            if s >= e || f.padding {
                continue;
            }
            let Ok(bytes) = std::fs::read(self.path_in(dir, f)) else {
                return false;
            };
            if bytes.get(s - fs..e - fs) != Some(&self.data[s..e]) {
                return false;
            }
        }
        true
    }
}
