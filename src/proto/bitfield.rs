//! Piece bitfields: the set of piece indices a peer (or shoal) has.
//!
//! Owns: the BEP 3 bit layout (piece 0 is the high bit of byte 0), the rule
//! that spare bits past the last piece are zero, and a running count of set
//! bits so `count` and `is_complete` are O(1).
//!
//! Does not own: the piece count (that comes from [`crate::proto::metainfo`]), the
//! framing of the `bitfield` message ([`crate::proto::wire`] hands over the raw
//! bytes, which are checked here with [`Bitfield::from_bytes`]), or what a
//! set bit means to the picker.

use std::fmt;

/// A set of piece indices `0..len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    /// `ceil(len / 8)` bytes; spare bits in the last byte are always zero.
    bits: Vec<u8>,
    len: u32,
    /// Number of set bits, kept in step by `set` and `clear`.
    count: u32,
}

/// Why a received bitfield was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitfieldError {
    /// The byte count is not `ceil(pieces / 8)`: the peer sent a truncated
    /// bitfield, or one for a torrent with a different piece count.
    WrongLength {
        pieces: u32,
        expected: usize,
        actual: usize,
    },
    /// A bit past the last piece is set; BEP 3 requires spare bits to be zero.
    SpareBitsSet { pieces: u32, last_byte: u8 },
}

impl fmt::Display for BitfieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BitfieldError::WrongLength {
                pieces,
                expected,
                actual,
            } => write!(
                f,
                "bitfield has {actual} bytes, expected {expected} for {pieces} pieces"
            ),
            BitfieldError::SpareBitsSet { pieces, last_byte } => write!(
                f,
                "bitfield for {pieces} pieces has spare bits set: last byte is {last_byte:#010b}, \
                 expected the low {} bits clear",
                8 - pieces % 8
            ),
        }
    }
}

impl std::error::Error for BitfieldError {}

/// Bytes needed for `len` bits.
fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

/// The spare (must-be-zero) bits of the last byte of a `len`-bit field.
fn spare_mask(len: u32) -> u8 {
    match len % 8 {
        0 => 0,
        used => 0xFF >> used,
    }
}

impl Bitfield {
    /// `len` pieces, none set.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bits: vec![0; byte_len(len)],
            len,
            count: 0,
        }
    }

    /// `len` pieces, all set.
    pub fn full(len: u32) -> Self {
        let mut bits = vec![0xFF; byte_len(len)];
        if let Some(last) = bits.last_mut() {
            *last &= !spare_mask(len);
        }
        Bitfield {
            bits,
            len,
            count: len,
        }
    }

    /// Checks and copies the payload of a peer's `bitfield` message for a
    /// torrent of `len` pieces.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(len);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                pieces: len,
                expected,
                actual: bytes.len(),
            });
        }
        if let Some(&last_byte) = bytes.last() {
            if last_byte & spare_mask(len) != 0 {
                return Err(BitfieldError::SpareBitsSet {
                    pieces: len,
                    last_byte,
                });
            }
        }
        Ok(Bitfield {
            bits: bytes.to_vec(),
            len,
            count: bytes.iter().map(|b| b.count_ones()).sum(),
        })
    }

    /// Number of pieces (set or not).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for a bitfield of zero pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether piece `i` is set; false when `i` is out of range.
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets piece `i`; does nothing when `i` is out of range.
    pub fn set(&mut self, i: u32) {
        self.put(i, true);
    }

    /// Clears piece `i`; does nothing when `i` is out of range.
    pub fn clear(&mut self, i: u32) {
        self.put(i, false);
    }

    fn put(&mut self, i: u32, value: bool) {
        if i >= self.len {
            return;
        }
        let byte = &mut self.bits[(i / 8) as usize];
        let mask = 0x80 >> (i % 8);
        if (*byte & mask != 0) != value {
            *byte ^= mask;
            if value {
                self.count += 1;
            } else {
                self.count -= 1;
            }
        }
    }

    /// Number of pieces set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// True when every piece is set (vacuously true for zero pieces).
    pub fn is_complete(&self) -> bool {
        self.count == self.len
    }

    /// The wire form: `ceil(len / 8)` bytes, spare bits zero.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Indices of set pieces, ascending.
    pub fn iter_set(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter_where(true)
    }

    /// Indices of clear pieces, ascending.
    pub fn iter_clear(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter_where(false)
    }

    /// Indices whose bit equals `want`, skipping bytes that hold none.
    fn iter_where(&self, want: bool) -> impl Iterator<Item = u32> + '_ {
        let nothing_here = if want { 0x00 } else { 0xFF };
        self.bits
            .iter()
            .enumerate()
            .filter(move |&(_, &b)| b != nothing_here)
            .flat_map(move |(at, &b)| {
                // `at < ceil(len / 8)`, so `at * 8 + 7` fits in a u32.
                let base = at as u32 * 8;
                (0..8)
                    .filter(move |bit| (b & (0x80 >> bit) != 0) == want)
                    .map(move |bit| base + bit)
            })
            // Spare bits (zero) would show up as clear pieces past the end.
            .take_while(move |&i| i < self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_bytes_table() {
        use BitfieldError::*;
        let cases: &[(&[u8], u32, Result<u32, BitfieldError>)] = &[
            (&[], 0, Ok(0)),
            (
                &[0x00],
                0,
                Err(WrongLength {
                    pieces: 0,
                    expected: 0,
                    actual: 1,
                }),
            ),
            (&[0xFF], 8, Ok(8)),
            (&[0xFF, 0x80], 9, Ok(9)),
            (
                &[0xFF, 0x00, 0x00],
                9,
                Err(WrongLength {
                    pieces: 9,
                    expected: 2,
                    actual: 3,
                }),
            ),
            (
                &[0xFF],
                9,
                Err(WrongLength {
                    pieces: 9,
                    expected: 2,
                    actual: 1,
                }),
            ),
            (
                &[0xFF, 0xC0],
                9,
                Err(SpareBitsSet {
                    pieces: 9,
                    last_byte: 0xC0,
                }),
            ),
            (&[0b1010_0000], 3, Ok(2)),
            (
                &[0b1010_0001],
                3,
                Err(SpareBitsSet {
                    pieces: 3,
                    last_byte: 0b1010_0001,
                }),
            ),
            (&[0xFE], 7, Ok(7)),
            (
                &[0x01],
                7,
                Err(SpareBitsSet {
                    pieces: 7,
                    last_byte: 0x01,
                }),
            ),
            (&[0x00, 0x00], 16, Ok(0)),
        ];
        for (bytes, len, want) in cases {
            let got = Bitfield::from_bytes(bytes, *len);
            assert_eq!(
                got.as_ref().map(Bitfield::count),
                want.as_ref().copied(),
                "{bytes:?} len {len}"
            );
            if let Ok(bf) = got {
                assert_eq!(bf.as_bytes(), *bytes);
                assert_eq!(bf.len(), *len);
                assert_eq!(bf.iter_set().count() as u32, bf.count());
            }
        }
    }

    #[test]
    fn error_messages() {
        let cases = [
            (
                BitfieldError::WrongLength {
                    pieces: 9,
                    expected: 2,
                    actual: 3,
                },
                "bitfield has 3 bytes, expected 2 for 9 pieces",
            ),
            (
                BitfieldError::SpareBitsSet {
                    pieces: 9,
                    last_byte: 0xC0,
                },
                "bitfield for 9 pieces has spare bits set: last byte is 0b11000000, \
                 expected the low 7 bits clear",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn new_and_full() {
        for len in [0, 1, 7, 8, 9, 16, 17, 1000] {
            let empty = Bitfield::new(len);
            let full = Bitfield::full(len);
            assert_eq!(empty.as_bytes().len(), byte_len(len), "len {len}");
            assert_eq!((empty.count(), full.count()), (0, len), "len {len}");
            assert_eq!(empty.is_complete(), len == 0, "len {len}");
            assert!(full.is_complete(), "len {len}");
            assert_eq!(empty.is_empty(), len == 0, "len {len}");
            // Spare bits of `full` are zero, so it survives its own check.
            assert_eq!(
                Bitfield::from_bytes(full.as_bytes(), len).as_ref(),
                Ok(&full)
            );
            assert_eq!(
                Bitfield::from_bytes(empty.as_bytes(), len).as_ref(),
                Ok(&empty)
            );
            assert!(full.iter_set().eq(0..len), "len {len}");
            assert!(empty.iter_clear().eq(0..len), "len {len}");
            assert_eq!(full.iter_clear().next(), None, "len {len}");
            assert_eq!(empty.iter_set().next(), None, "len {len}");
        }
        assert_eq!(Bitfield::full(9).as_bytes(), &[0xFF, 0x80]);
        assert_eq!(Bitfield::full(3).as_bytes(), &[0xE0]);
    }

    #[test]
    fn set_clear_get_in_bep3_bit_order() {
        let mut bf = Bitfield::new(10);
        bf.set(0);
        bf.set(9);
        assert_eq!(bf.as_bytes(), &[0x80, 0x40]);
        assert!(bf.get(0) && bf.get(9) && !bf.get(1));
        assert_eq!(bf.count(), 2);

        bf.set(0); // already set: count unchanged
        assert_eq!(bf.count(), 2);
        bf.clear(0);
        bf.clear(0); // already clear: count unchanged
        assert_eq!((bf.count(), bf.as_bytes()), (1, &[0x00, 0x40][..]));

        // Out of range: no-ops, never set a spare bit.
        for i in [10, 15, 16, u32::MAX] {
            bf.set(i);
            assert!(!bf.get(i));
        }
        bf.clear(u32::MAX);
        assert_eq!((bf.count(), bf.as_bytes()), (1, &[0x00, 0x40][..]));
    }

    #[test]
    fn iterators_and_count_agree() {
        let set = [0, 3, 8, 9, 10, 11, 12, 13, 14, 15, 19];
        let mut bf = Bitfield::new(20);
        for i in set {
            bf.set(i);
        }
        assert!(bf.iter_set().eq(set));
        let clear: Vec<u32> = (0..20).filter(|i| !set.contains(i)).collect();
        assert!(bf.iter_clear().eq(clear));
        assert_eq!(bf.count() as usize, set.len());
        assert!(!bf.is_complete());
        for i in bf.iter_clear().collect::<Vec<_>>() {
            bf.set(i);
        }
        assert!(bf.is_complete());
        assert_eq!(bf, Bitfield::full(20));
    }

    #[test]
    fn zero_pieces() {
        let bf = Bitfield::new(0);
        assert!(bf.is_empty() && bf.is_complete());
        assert_eq!(bf.as_bytes(), &[] as &[u8]);
        assert!(!bf.get(0));
        assert_eq!(bf, Bitfield::full(0));
    }
}
