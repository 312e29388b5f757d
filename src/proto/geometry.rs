//! Piece and block arithmetic: the one place that knows how a torrent's
//! bytes divide into pieces, pieces into 16 KiB blocks, and pieces onto
//! files.
//!
//! Owns: [`PieceIndex`] (a piece number checked against the torrent),
//! piece and block lengths (the short last piece, the short last block),
//! and the mapping of a piece to the file ranges it covers, padding files
//! included. Does not own: file names or I/O (that is the storage).
//!
//! All offsets are `u64`; a `usize` appears only where a caller maps
//! memory, since a 32-bit image has a 32-bit `usize`.

use std::ops::Range;

/// The request size every client uses (BEP 3 practice); the last block of a
/// piece may be shorter.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// A piece number known to be below the torrent's piece count. Only
/// [`Geometry::piece`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PieceIndex(u32);

impl PieceIndex {
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn usize(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One block of one piece: the unit of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    pub piece: PieceIndex,
    pub begin: u32,
    pub len: u32,
}

/// A file's place in the torrent's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    pub offset: u64,
    pub len: u64,
    /// BEP 47 padding: never written to disk; reads as zeros.
    pub padding: bool,
}

/// The part of a piece that lies in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSlice {
    /// Index into the torrent's file list.
    pub file: usize,
    /// Where the slice starts within the file.
    pub file_offset: u64,
    /// Where the slice starts within the piece.
    pub piece_offset: u32,
    pub len: u32,
    pub padding: bool,
}

/// The shape of a torrent's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    total_len: u64,
    piece_len: u32,
    num_pieces: u32,
    files: Vec<FileSpan>,
}

/// Why a geometry cannot exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeometryError {
    /// The piece length is zero.
    ZeroPieceLength,
    /// The total length is zero: there is nothing to download.
    Empty,
    /// More pieces than a `u32` counts (the wire protocol's limit).
    TooManyPieces(u64),
    /// The file lengths add up past `i64::MAX` (the largest file offset
    /// the OS can address).
    LengthOverflow,
}

impl std::fmt::Display for GeometryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeometryError::ZeroPieceLength => write!(f, "piece length is 0"),
            GeometryError::Empty => write!(f, "total length is 0: the torrent has no data"),
            GeometryError::TooManyPieces(n) => {
                write!(f, "{n} pieces is more than the protocol can number")
            }
            GeometryError::LengthOverflow => write!(f, "total length is over 2^63-1 bytes"),
        }
    }
}

impl Geometry {
    /// Lays out files of the given `(length, is_padding)` back to back.
    pub fn new(
        piece_len: u32,
        files: impl IntoIterator<Item = (u64, bool)>,
    ) -> Result<Geometry, GeometryError> {
        if piece_len == 0 {
            return Err(GeometryError::ZeroPieceLength);
        }
        let mut offset = 0u64;
        let mut spans = Vec::new();
        for (len, padding) in files {
            spans.push(FileSpan {
                offset,
                len,
                padding,
            });
            offset = offset
                .checked_add(len)
                .filter(|&end| end <= i64::MAX as u64)
                .ok_or(GeometryError::LengthOverflow)?;
        }
        if offset == 0 {
            return Err(GeometryError::Empty);
        }
        let pieces = offset.div_ceil(u64::from(piece_len));
        let num_pieces = u32::try_from(pieces).map_err(|_| GeometryError::TooManyPieces(pieces))?;
        Ok(Geometry {
            total_len: offset,
            piece_len,
            num_pieces,
            files: spans,
        })
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }
    /// The nominal piece length (every piece but possibly the last).
    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }
    /// Whether any file is BEP 47 padding.
    pub fn has_padding(&self) -> bool {
        self.files.iter().any(|f| f.padding)
    }

    pub fn files(&self) -> &[FileSpan] {
        &self.files
    }

    /// Checks a piece number from the outside world.
    pub fn piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.num_pieces).then_some(PieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> {
        (0..self.num_pieces).map(PieceIndex)
    }

    /// Offset of the piece's first byte in the torrent.
    pub fn piece_offset(&self, piece: PieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_len)
    }

    /// Length of this piece: the nominal length, or less for the last.
    pub fn piece_size(&self, piece: PieceIndex) -> u32 {
        let rest = self.total_len - self.piece_offset(piece);
        rest.min(u64::from(self.piece_len)) as u32
    }

    /// Number of 16 KiB blocks in this piece.
    pub fn blocks_in(&self, piece: PieceIndex) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_LEN)
    }

    /// The `n`th block of a piece (`n < blocks_in(piece)`).
    pub fn block(&self, piece: PieceIndex, n: u32) -> Block {
        let begin = n * BLOCK_LEN;
        Block {
            piece,
            begin,
            len: (self.piece_size(piece) - begin).min(BLOCK_LEN),
        }
    }

    /// Every block of a piece, in order.
    pub fn blocks(&self, piece: PieceIndex) -> impl Iterator<Item = Block> + '_ {
        (0..self.blocks_in(piece)).map(move |n| self.block(piece, n))
    }

    /// Index of the block starting at `begin`, if `begin` is a block start.
    pub fn block_number(&self, block: &Block) -> u32 {
        block.begin / BLOCK_LEN
    }

    /// Checks a `(index, begin, length)` triple from a peer's request: in
    /// range, non-empty, at most one block long. Begin need not be aligned.
    pub fn checked_block(&self, index: u32, begin: u32, len: u32) -> Option<Block> {
        let piece = self.piece(index)?;
        let end = u64::from(begin) + u64::from(len);
        (len > 0 && len <= BLOCK_LEN && end <= u64::from(self.piece_size(piece))).then_some(Block {
            piece,
            begin,
            len,
        })
    }

    /// The torrent byte range a piece covers.
    pub fn piece_range(&self, piece: PieceIndex) -> Range<u64> {
        let start = self.piece_offset(piece);
        start..start + u64::from(self.piece_size(piece))
    }

    /// The file ranges that a byte range within one piece covers, in order.
    /// Zero-length files cover nothing and never appear.
    pub fn slices(
        &self,
        piece: PieceIndex,
        within: Range<u32>,
    ) -> impl Iterator<Item = FileSlice> + '_ {
        let base = self.piece_offset(piece);
        let start = base + u64::from(within.start);
        let end = base + u64::from(within.end);
        let first = self.files.partition_point(|f| f.offset + f.len <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| f.len > 0)
            .map(move |(i, f)| {
                let from = start.max(f.offset);
                let to = end.min(f.offset + f.len);
                FileSlice {
                    file: first + i,
                    file_offset: from - f.offset,
                    piece_offset: (from - base) as u32,
                    len: (to - from) as u32,
                    padding: f.padding,
                }
            })
    }

    /// The file ranges a whole piece covers.
    pub fn piece_slices(&self, piece: PieceIndex) -> impl Iterator<Item = FileSlice> + '_ {
        self.slices(piece, 0..self.piece_size(piece))
    }

    /// The pieces that overlap a file (empty for a zero-length file).
    pub fn pieces_of_file(&self, file: usize) -> Range<u32> {
        let f = self.files[file];
        if f.len == 0 {
            return 0..0;
        }
        let pl = u64::from(self.piece_len);
        (f.offset / pl) as u32..(f.offset + f.len).div_ceil(pl) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(piece_len: u32, files: &[(u64, bool)]) -> Geometry {
        Geometry::new(piece_len, files.iter().copied()).unwrap()
    }

    #[test]
    fn piece_and_block_lengths() {
        // 3 pieces of 40 KiB, the last 20 KiB + 5 bytes.
        let g = geo(40 * 1024, &[(100 * 1024 + 5, false)]);
        assert_eq!(g.num_pieces(), 3);
        let last = g.piece(2).unwrap();
        assert!(g.piece(3).is_none());
        assert_eq!(g.piece_size(g.piece(0).unwrap()), 40 * 1024);
        assert_eq!(g.piece_size(last), 20 * 1024 + 5);
        // 40 KiB = 16 + 16 + 8.
        let first: Vec<u32> = g.blocks(g.piece(0).unwrap()).map(|b| b.len).collect();
        assert_eq!(first, vec![BLOCK_LEN, BLOCK_LEN, 8 * 1024]);
        let tail: Vec<(u32, u32)> = g.blocks(last).map(|b| (b.begin, b.len)).collect();
        assert_eq!(tail, vec![(0, BLOCK_LEN), (BLOCK_LEN, 4 * 1024 + 5)]);
        assert_eq!(g.piece_range(last), 80 * 1024..100 * 1024 + 5);
    }

    #[test]
    fn exact_multiple_has_full_last_piece() {
        let g = geo(BLOCK_LEN, &[(4 * u64::from(BLOCK_LEN), false)]);
        assert_eq!(g.num_pieces(), 4);
        assert_eq!(g.piece_size(g.piece(3).unwrap()), BLOCK_LEN);
    }

    #[test]
    fn large_offsets_do_not_overflow() {
        // 6 GiB with 4 MiB pieces: offsets past 4 GiB.
        let g = geo(4 << 20, &[(6u64 << 30, false)]);
        let p = g.piece(1535).unwrap();
        assert_eq!(g.piece_offset(p), 1535u64 * (4 << 20));
        assert_eq!(g.piece_size(p), 4 << 20);
    }

    #[test]
    fn construction_errors() {
        assert_eq!(
            Geometry::new(0, [(5, false)]),
            Err(GeometryError::ZeroPieceLength)
        );
        assert_eq!(Geometry::new(16, [(0, false)]), Err(GeometryError::Empty));
        assert_eq!(
            Geometry::new(16, [(1 << 62, false), (1 << 62, false)]),
            Err(GeometryError::LengthOverflow)
        );
        assert_eq!(
            Geometry::new(1, [(1u64 << 33, false)]),
            Err(GeometryError::TooManyPieces(1 << 33))
        );
    }

    #[test]
    fn checked_block_rejects_bad_requests() {
        let g = geo(40 * 1024, &[(100 * 1024 + 5, false)]);
        let table: &[((u32, u32, u32), bool)] = &[
            ((0, 0, BLOCK_LEN), true),
            ((0, 100, BLOCK_LEN), true), // unaligned but in range
            ((0, 0, BLOCK_LEN + 1), false),
            ((0, 0, 0), false),
            ((3, 0, 16), false),
            ((2, 20 * 1024, 6), false), // one byte past the short last piece
            ((2, 20 * 1024, 5), true),
            ((0, u32::MAX, 16), false), // begin + len overflows u32
        ];
        for &((i, b, l), ok) in table {
            assert_eq!(g.checked_block(i, b, l).is_some(), ok, "{i} {b} {l}");
        }
    }

    #[test]
    fn pieces_map_across_files_and_padding() {
        // files: a=10, empty, pad=6, b=30; piece length 16 → 3 pieces.
        let g = geo(16, &[(10, false), (0, false), (6, true), (30, false)]);
        assert_eq!(g.num_pieces(), 3);
        let p0: Vec<FileSlice> = g.piece_slices(g.piece(0).unwrap()).collect();
        assert_eq!(
            p0,
            vec![
                FileSlice {
                    file: 0,
                    file_offset: 0,
                    piece_offset: 0,
                    len: 10,
                    padding: false
                },
                FileSlice {
                    file: 2,
                    file_offset: 0,
                    piece_offset: 10,
                    len: 6,
                    padding: true
                },
            ]
        );
        let p2: Vec<FileSlice> = g.piece_slices(g.piece(2).unwrap()).collect();
        assert_eq!(
            p2,
            vec![FileSlice {
                file: 3,
                file_offset: 16,
                piece_offset: 0,
                len: 14,
                padding: false
            }]
        );
        // A sub-range inside one piece.
        let part: Vec<FileSlice> = g.slices(g.piece(0).unwrap(), 8..12).collect();
        assert_eq!(part.len(), 2);
        assert_eq!((part[0].file, part[0].file_offset, part[0].len), (0, 8, 2));
        assert_eq!(
            (part[1].file, part[1].piece_offset, part[1].len),
            (2, 10, 2)
        );
        assert_eq!(g.pieces_of_file(0), 0..1);
        assert_eq!(g.pieces_of_file(1), 0..0);
        assert_eq!(g.pieces_of_file(3), 1..3);
    }

    #[test]
    fn slices_cover_every_byte_exactly_once() {
        let g = geo(
            7,
            &[(3, false), (0, false), (11, false), (2, true), (9, false)],
        );
        let mut seen = vec![0u8; g.total_len() as usize];
        for p in g.pieces() {
            let mut at = 0;
            for s in g.piece_slices(p) {
                assert_eq!(s.piece_offset, at, "slices are contiguous");
                at += s.len;
                let f = g.files()[s.file];
                for k in 0..u64::from(s.len) {
                    seen[(f.offset + s.file_offset + k) as usize] += 1;
                }
            }
            assert_eq!(at, g.piece_size(p));
        }
        assert!(seen.iter().all(|&n| n == 1));
    }
}
