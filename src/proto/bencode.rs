//! Bencode: a decoder that keeps the byte span of every value, and an
//! encoder that only ever writes canonical bencode.
//!
//! Owns: the grammar and its limits. Does not own: what the keys mean
//! (that is [`crate::proto::metainfo`], [`crate::proto::tracker`]).
//!
//! How lenient the reader is (each choice has a fixture in `testdata/`):
//! - dictionary keys out of order are accepted, as libtorrent does
//!   (`unsorted-keys.torrent`); the info hash is taken from the raw span, so
//!   it is still the hash every other client computes;
//! - integers and string lengths with leading zeros (`i03e`, `03:abc`) and
//!   `i-0e` are accepted (`noncanonical-int.torrent`);
//! - duplicate dictionary keys are rejected: two clients could disagree on
//!   which value counts (`duplicate-key.torrent`);
//! - trailing bytes after the top-level value are rejected
//!   (`trailing-garbage.torrent`).
//!
//! The encoder ([`Owned`]) sorts keys and writes integers without leading
//! zeros, so shoal never writes non-canonical bencode.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// Nesting deeper than this is refused; keeps `llll…` from exhausting the
/// stack. Real torrents nest 4–5 levels.
pub const MAX_DEPTH: usize = 64;

/// A decoded value, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    /// Offset of the first byte of this value in the decoded buffer.
    pub start: usize,
    /// The exact bytes this value was decoded from.
    pub raw: &'a [u8],
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Key/value pairs in file order (keys are unique).
    Dict(Vec<(&'a [u8], Value<'a>)>),
    /// A list or dictionary below [`decode_shallow`]'s depth: checked
    /// whole, but kept only as its bytes (`raw`); decode those to look in.
    Unparsed,
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Value<'a>)]> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// The value under `key` if this is a dictionary that has it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_dict()?
            .iter()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }
    /// What this value is, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
            Kind::Unparsed if self.raw.starts_with(b"l") => "list",
            Kind::Unparsed => "dictionary",
        }
    }
}

/// A decoding error: what went wrong and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ended inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here.
    Unexpected(u8),
    /// An integer with no digits, or a non-digit inside one.
    BadInteger,
    /// An integer or a string length that does not fit in 64 bits.
    Overflow,
    /// A string whose declared length runs past the end of the input.
    StringPastEnd { len: u64, available: usize },
    /// A dictionary key that is not a string.
    KeyNotString,
    /// The same key twice in one dictionary.
    DuplicateKey(Vec<u8>),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes left over after the top-level value.
    TrailingGarbage,
    /// More values than the caller allows ([`decode_limited`]): a parsed
    /// value costs tens of bytes, so a small message of tiny items must not
    /// become a large allocation.
    TooManyItems { limit: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bencode error at byte {}: ", self.offset)?;
        match &self.kind {
            ErrorKind::Truncated => write!(f, "input ends inside a value"),
            ErrorKind::Unexpected(b) => write!(f, "unexpected byte {}", show_byte(*b)),
            ErrorKind::BadInteger => write!(f, "malformed integer"),
            ErrorKind::Overflow => write!(f, "number does not fit in 64 bits"),
            ErrorKind::StringPastEnd { len, available } => write!(
                f,
                "string of {len} bytes runs past the end ({available} bytes left)"
            ),
            ErrorKind::KeyNotString => write!(f, "dictionary key is not a string"),
            ErrorKind::DuplicateKey(k) => {
                write!(
                    f,
                    "duplicate dictionary key {:?}",
                    String::from_utf8_lossy(k)
                )
            }
            ErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH} levels"),
            ErrorKind::TrailingGarbage => write!(f, "trailing bytes after the value"),
            ErrorKind::TooManyItems { limit } => write!(f, "more than {limit} values"),
        }
    }
}

impl std::error::Error for Error {}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// Decodes exactly one value that fills the whole buffer.
pub fn decode(buf: &[u8]) -> Result<Value<'_>, Error> {
    decode_limited(buf, usize::MAX)
}

/// [`decode`], keeping lists and dictionaries nested `depth` deep or more
/// as [`Kind::Unparsed`] (checked, then dropped): the whole input is still
/// validated, but memory holds one such value's tree at a time. A torrent
/// with a million files costs a few dozen bytes per file here, not a
/// few hundred.
pub fn decode_shallow(buf: &[u8], depth: usize) -> Result<Value<'_>, Error> {
    let mut d = Decoder {
        buf,
        pos: 0,
        items_left: usize::MAX,
        limit: usize::MAX,
        keep_depth: depth,
    };
    d.whole()
}

/// [`decode`], refusing input of more than `max_items` values (each
/// integer, string, list and dictionary counts one; a key counts one). For
/// messages from peers whose size alone does not bound what they cost.
pub fn decode_limited(buf: &[u8], max_items: usize) -> Result<Value<'_>, Error> {
    let mut d = Decoder {
        buf,
        pos: 0,
        items_left: max_items,
        limit: max_items,
        keep_depth: usize::MAX,
    };
    d.whole()
}

/// Decodes one value at the start of `buf`; returns it and the bytes used.
/// Used where a payload follows the dictionary (BEP 9 metadata pieces).
pub fn decode_prefix(buf: &[u8]) -> Result<(Value<'_>, usize), Error> {
    decode_prefix_limited(buf, usize::MAX)
}

/// [`decode_prefix`] within an item budget (see [`decode_limited`]).
pub fn decode_prefix_limited(buf: &[u8], max_items: usize) -> Result<(Value<'_>, usize), Error> {
    let mut d = Decoder {
        buf,
        pos: 0,
        items_left: max_items,
        limit: max_items,
        keep_depth: usize::MAX,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Values (and keys) still allowed, of `limit`.
    items_left: usize,
    limit: usize,
    /// Lists and dictionaries this deep or deeper are kept unparsed.
    keep_depth: usize,
}

impl<'a> Decoder<'a> {
    /// One value that must fill the buffer.
    fn whole(&mut self) -> Result<Value<'a>, Error> {
        let value = self.value(0)?;
        if self.pos != self.buf.len() {
            return self.err(self.pos, ErrorKind::TrailingGarbage);
        }
        Ok(value)
    }

    fn err<T>(&self, offset: usize, kind: ErrorKind) -> Result<T, Error> {
        Err(Error { offset, kind })
    }

    fn peek(&self) -> Result<u8, Error> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err(self.pos, ErrorKind::Truncated),
        }
    }

    /// Counts one more value against the budget.
    fn count(&mut self) -> Result<(), Error> {
        match self.items_left.checked_sub(1) {
            Some(left) => {
                self.items_left = left;
                Ok(())
            }
            None => self.err(self.pos, ErrorKind::TooManyItems { limit: self.limit }),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.count()?;
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Kind::Int(self.int(b'e')?)
            }
            b'0'..=b'9' => Kind::Bytes(self.bytes()?),
            b'l' | b'd' if depth >= MAX_DEPTH => return self.err(start, ErrorKind::TooDeep),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(items)
            }
            b'd' => {
                self.pos += 1;
                let mut pairs: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                // Keys in order (canonical bencode, the common case) cannot
                // repeat, so each is only compared with the last; from the
                // first key out of order on, a set finds repeats. Linear
                // either way: a scan of all earlier keys per key made a
                // dictionary of 150,000 keys cost half a minute.
                let mut seen: Option<HashSet<&'a [u8]>> = None;
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return self.err(key_at, ErrorKind::KeyNotString);
                    }
                    self.count()?;
                    let key = self.bytes()?;
                    let in_order = seen.is_none() && pairs.last().is_none_or(|(k, _)| *k < key);
                    if !in_order {
                        let set =
                            seen.get_or_insert_with(|| pairs.iter().map(|(k, _)| *k).collect());
                        if !set.insert(key) {
                            return self.err(key_at, ErrorKind::DuplicateKey(key.to_vec()));
                        }
                    }
                    let v = self.value(depth + 1)?;
                    pairs.push((key, v));
                }
                self.pos += 1;
                Kind::Dict(pairs)
            }
            other => return self.err(start, ErrorKind::Unexpected(other)),
        };
        let kind = match kind {
            Kind::List(_) | Kind::Dict(_) if depth >= self.keep_depth => Kind::Unparsed,
            kind => kind,
        };
        Ok(Value {
            start,
            raw: &self.buf[start..self.pos],
            kind,
        })
    }

    /// Reads an optionally negative decimal up to `end`, consuming `end`.
    fn int(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let mut n: i64 = 0;
        let mut digits = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.err(self.pos, ErrorKind::BadInteger);
            }
            let d = i64::from(b - b'0');
            // Accumulate negatively so i64::MIN is representable.
            n = match n.checked_mul(10).and_then(|n| n.checked_sub(d)) {
                Some(n) => n,
                None => return self.err(start, ErrorKind::Overflow),
            };
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 {
            return self.err(start, ErrorKind::BadInteger);
        }
        self.pos += 1;
        if negative {
            Ok(n)
        } else {
            n.checked_neg()
                .map_or_else(|| self.err(start, ErrorKind::Overflow), Ok)
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let len = self.int(b':')?;
        if len < 0 {
            return self.err(start, ErrorKind::BadInteger);
        }
        let available = self.buf.len() - self.pos;
        if len as u64 > available as u64 {
            return self.err(
                start,
                ErrorKind::StringPastEnd {
                    len: len as u64,
                    available,
                },
            );
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }
}

/// An owned value for writing. Dictionaries are ordered maps, so the output
/// is always canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Owned>),
    Dict(BTreeMap<Vec<u8>, Owned>),
}

impl Owned {
    /// An empty dictionary, to fill with [`Owned::insert`].
    pub fn dict() -> Owned {
        Owned::Dict(BTreeMap::new())
    }

    /// Sets `key` in a dictionary; builder style. Panics if `self` is not a
    /// dictionary (a programming error, never input-driven).
    pub fn insert(mut self, key: &str, value: impl Into<Owned>) -> Owned {
        match &mut self {
            Owned::Dict(map) => {
                map.insert(key.as_bytes().to_vec(), value.into());
            }
            _ => panic!("Owned::insert on a non-dictionary"),
        }
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Owned::Bytes(b) => write_bytes(out, b),
            Owned::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Owned::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    write_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl From<i64> for Owned {
    fn from(i: i64) -> Owned {
        Owned::Int(i)
    }
}
impl From<&[u8]> for Owned {
    fn from(b: &[u8]) -> Owned {
        Owned::Bytes(b.to_vec())
    }
}
impl From<Vec<u8>> for Owned {
    fn from(b: Vec<u8>) -> Owned {
        Owned::Bytes(b)
    }
}
impl From<&str> for Owned {
    fn from(s: &str) -> Owned {
        Owned::Bytes(s.as_bytes().to_vec())
    }
}
impl From<Vec<Owned>> for Owned {
    fn from(items: Vec<Owned>) -> Owned {
        Owned::List(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_item_budget_counts_every_value_and_key() {
        assert!(decode_limited(b"li1ei2ee", 3).is_ok());
        assert_eq!(
            decode_limited(b"li1ei2ee", 2).unwrap_err(),
            Error {
                offset: 4,
                kind: ErrorKind::TooManyItems { limit: 2 }
            }
        );
        assert!(decode_limited(b"d1:ai1ee", 3).is_ok(), "dict, key, value");
        assert!(decode_limited(b"d1:ai1ee", 2).is_err());
    }

    /// Regression (issue 11, item 5): duplicate keys used to be found by
    /// scanning every earlier key, so 200,000 keys took minutes. Keys in
    /// order, out of order, and a repeat at the very end: all linear, well
    /// inside the test's deadline.
    #[test]
    fn huge_dictionaries_decode_in_linear_time() {
        crate::util::testutil::within(|| {
            let keys: Vec<String> = (0..200_000).map(|i| format!("{i:08}")).collect();
            let dict = |keys: Vec<&String>| {
                let mut d = b"d".to_vec();
                for k in keys {
                    d.extend_from_slice(format!("8:{k}i0e").as_bytes());
                }
                d.push(b'e');
                d
            };
            let sorted = dict(keys.iter().collect());
            assert_eq!(decode(&sorted).unwrap().as_dict().unwrap().len(), 200_000);
            let reversed = dict(keys.iter().rev().collect());
            assert_eq!(decode(&reversed).unwrap().as_dict().unwrap().len(), 200_000);
            let repeat = dict(keys.iter().chain([&keys[7]]).collect());
            assert_eq!(
                decode(&repeat).unwrap_err().kind,
                ErrorKind::DuplicateKey(b"00000007".to_vec())
            );
        });
    }

    fn err(input: &[u8]) -> Error {
        decode(input).expect_err("should fail")
    }

    #[test]
    fn decodes_values_with_spans() {
        let input = b"d3:bari7e3:fool1:ai-3eee";
        let v = decode(input).unwrap();
        assert_eq!(v.raw, input);
        assert_eq!(v.get("bar").unwrap().as_int(), Some(7));
        let foo = v.get("foo").unwrap();
        assert_eq!(foo.start, 14);
        assert_eq!(foo.raw, b"l1:ai-3ee");
        let items = foo.as_list().unwrap();
        assert_eq!(items[0].as_bytes(), Some(&b"a"[..]));
        assert_eq!(items[1].as_int(), Some(-3));
        assert!(v.get("missing").is_none());
    }

    #[test]
    fn integer_limits() {
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap().as_int(),
            Some(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
    }

    #[test]
    fn lenient_choices() {
        // Leading zeros and -0: accepted, as libtorrent does.
        assert_eq!(decode(b"i03e").unwrap().as_int(), Some(3));
        assert_eq!(decode(b"i-0e").unwrap().as_int(), Some(0));
        assert_eq!(decode(b"03:abc").unwrap().as_bytes(), Some(&b"abc"[..]));
        // Unsorted keys: accepted, order kept.
        let v = decode(b"d1:bi1e1:ai2ee").unwrap();
        let keys: Vec<&[u8]> = v.as_dict().unwrap().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![&b"b"[..], &b"a"[..]]);
    }

    #[test]
    fn error_table() {
        let deep = vec![b'l'; MAX_DEPTH + 1];
        let table: Vec<(&[u8], usize, ErrorKind)> = vec![
            (b"", 0, ErrorKind::Truncated),
            (b"i12", 3, ErrorKind::Truncated),
            (b"l", 1, ErrorKind::Truncated),
            (b"d1:a", 4, ErrorKind::Truncated),
            (b"ie", 1, ErrorKind::BadInteger),
            (b"i-e", 1, ErrorKind::BadInteger),
            (b"i1x2e", 2, ErrorKind::BadInteger),
            (b"i--1e", 2, ErrorKind::BadInteger),
            (b"-1:a", 0, ErrorKind::Unexpected(b'-')),
            (b"i9223372036854775808e", 1, ErrorKind::Overflow),
            (b"i-9223372036854775809e", 1, ErrorKind::Overflow),
            (b"99999999999999999999:a", 0, ErrorKind::Overflow),
            (
                b"5:abc",
                0,
                ErrorKind::StringPastEnd {
                    len: 5,
                    available: 3,
                },
            ),
            (b"di1ei2ee", 1, ErrorKind::KeyNotString),
            (b"d1:ai1e1:ai2ee", 7, ErrorKind::DuplicateKey(b"a".to_vec())),
            (&deep, MAX_DEPTH, ErrorKind::TooDeep),
            (b"i1ei2e", 3, ErrorKind::TrailingGarbage),
            (b"x", 0, ErrorKind::Unexpected(b'x')),
            (b"le1", 2, ErrorKind::TrailingGarbage),
        ];
        for (input, offset, kind) in table {
            assert_eq!(
                err(input),
                Error { offset, kind },
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn error_messages_name_the_offset() {
        assert_eq!(
            err(b"5:abc").to_string(),
            "bencode error at byte 0: string of 5 bytes runs past the end (3 bytes left)"
        );
        assert_eq!(
            err(b"d1:ai1e1:ai2ee").to_string(),
            "bencode error at byte 7: duplicate dictionary key \"a\""
        );
    }

    #[test]
    fn encoder_is_canonical() {
        let v = Owned::dict()
            .insert("zeta", 3)
            .insert("alpha", vec![Owned::from("x"), Owned::Int(-4)])
            .insert("mid", &b"\x00\xff"[..]);
        assert_eq!(
            v.encode(),
            b"d5:alphal1:xi-4ee3:mid2:\x00\xff4:zetai3ee".to_vec()
        );
    }

    #[test]
    fn decode_then_encode_round_trips_canonical_input() {
        let input = b"d4:infod6:lengthi5e4:name1:xe1:ql0:i0eee";
        let v = decode(input).unwrap();
        assert_eq!(to_owned(&v).encode(), input.to_vec());
    }

    fn to_owned(v: &Value) -> Owned {
        match &v.kind {
            Kind::Int(i) => Owned::Int(*i),
            Kind::Bytes(b) => Owned::Bytes(b.to_vec()),
            Kind::List(l) => Owned::List(l.iter().map(to_owned).collect()),
            Kind::Dict(d) => {
                Owned::Dict(d.iter().map(|(k, v)| (k.to_vec(), to_owned(v))).collect())
            }
            Kind::Unparsed => to_owned(&decode(v.raw).unwrap()),
        }
    }

    #[test]
    fn shallow_decoding_checks_everything_and_keeps_the_top() {
        let input = b"d1:ald1:bli1eeee1:ci2ee";
        let v = decode_shallow(input, 2).unwrap();
        let list = v.get("a").unwrap().as_list().unwrap();
        assert_eq!(list[0].kind, Kind::Unparsed);
        assert_eq!(list[0].type_name(), "dictionary");
        assert_eq!(list[0].raw, b"d1:bli1eee");
        assert_eq!(to_owned(&v).encode(), input.to_vec());
        // Errors below the depth are still found, at their offset.
        let bad = b"d1:ald1:bli1xeeee";
        assert_eq!(
            decode_shallow(bad, 2).unwrap_err(),
            decode(bad).unwrap_err()
        );
    }

    #[test]
    fn decode_prefix_reports_consumed() {
        let (v, used) = decode_prefix(b"d1:ai1eeRAW").unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.get("a").unwrap().as_int(), Some(1));
    }
}
