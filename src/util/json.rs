//! Minimal JSON: a writer for `--json` output and API responses (one
//! object, built field by field) and a reader for API request bodies
//! ([`parse`]: bounded size and nesting, typed errors, never panics).
//! Owns escaping and the grammar; knows nothing about what is written or
//! read.

use std::fmt::{self, Write};

/// An object being written; [`Object::finish`] closes it.
pub struct Object {
    out: String,
    first: bool,
}

impl Default for Object {
    fn default() -> Self {
        Self::new()
    }
}

impl Object {
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
            first: true,
        }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string_into(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        string_into(&mut self.out, value);
        self
    }

    pub fn num(mut self, key: &str, value: impl std::fmt::Display) -> Object {
        self.key(key);
        let _ = write!(self.out, "{value}");
        self
    }

    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// A value already in JSON form (a nested object or array).
    pub fn raw(mut self, key: &str, json: &str) -> Object {
        self.key(key);
        self.out.push_str(json);
        self
    }

    pub fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self.raw(key, "null"),
        }
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// A JSON array of already-encoded values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

/// A JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::new();
    string_into(&mut out, s);
    out
}

fn string_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The largest text [`parse`] reads: request bodies are a few hundred
/// bytes; this bounds the work and memory a hostile one costs.
pub const MAX_LEN: usize = 1 << 20;

/// The deepest nesting of arrays and objects [`parse`] accepts (the
/// parser recurses once per level).
pub const MAX_DEPTH: usize = 64;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    /// Members in their order; keys are unique ([`parse`] refuses a
    /// repeated key, whose meaning parsers disagree on).
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// What kind of value it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Why a text is not JSON we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The text is longer than [`MAX_LEN`].
    TooLong { len: usize },
    /// The text is not UTF-8.
    NotUtf8,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`], at this offset.
    TooDeep { at: usize },
    /// The text ended inside a value.
    UnexpectedEnd,
    /// A character that cannot be there: the offset and what was expected.
    Unexpected {
        at: usize,
        found: char,
        expected: &'static str,
    },
    /// A number that is not in JSON's grammar, or out of `f64`'s range.
    BadNumber { at: usize },
    /// A backslash escape that is not JSON's, or a `\u` naming a lone
    /// UTF-16 surrogate.
    BadEscape { at: usize },
    /// An unescaped control character inside a string.
    ControlInString { at: usize },
    /// An object with the same key twice.
    DuplicateKey(String),
    /// More than whitespace after the value.
    TrailingData { at: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong { len } => {
                write!(
                    f,
                    "JSON text of {len} bytes is over the {MAX_LEN}-byte limit"
                )
            }
            ParseError::NotUtf8 => f.write_str("JSON text is not UTF-8"),
            ParseError::TooDeep { at } => {
                write!(f, "JSON nested deeper than {MAX_DEPTH} levels at byte {at}")
            }
            ParseError::UnexpectedEnd => f.write_str("JSON text ends inside a value"),
            ParseError::Unexpected {
                at,
                found,
                expected,
            } => write!(f, "JSON: expected {expected} at byte {at}, found {found:?}"),
            ParseError::BadNumber { at } => write!(f, "JSON: malformed number at byte {at}"),
            ParseError::BadEscape { at } => write!(f, "JSON: bad escape at byte {at}"),
            ParseError::ControlInString { at } => {
                write!(
                    f,
                    "JSON: unescaped control character in a string at byte {at}"
                )
            }
            ParseError::DuplicateKey(k) => write!(f, "JSON: key {k:?} appears twice"),
            ParseError::TrailingData { at } => {
                write!(f, "JSON: unexpected data after the value at byte {at}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads one JSON value (RFC 8259), surrounded by optional whitespace.
pub fn parse(text: &[u8]) -> Result<Value, ParseError> {
    if text.len() > MAX_LEN {
        return Err(ParseError::TooLong { len: text.len() });
    }
    let text = std::str::from_utf8(text).map_err(|_| ParseError::NotUtf8)?;
    let mut p = Parser { text, at: 0 };
    let value = p.value(0)?;
    p.skip_space();
    if p.at < text.len() {
        return Err(ParseError::TrailingData { at: p.at });
    }
    Ok(value)
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text.get(self.at..)?.chars().next()
    }

    fn skip_space(&mut self) {
        while let Some(' ' | '\t' | '\n' | '\r') = self.peek() {
            self.at += 1;
        }
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        match self.peek() {
            Some(found) => ParseError::Unexpected {
                at: self.at,
                found,
                expected,
            },
            None => ParseError::UnexpectedEnd,
        }
    }

    /// Consumes `c` (after whitespace) or fails expecting `what`.
    fn expect(&mut self, c: char, what: &'static str) -> Result<(), ParseError> {
        self.skip_space();
        if self.peek() != Some(c) {
            return Err(self.unexpected(what));
        }
        self.at += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.skip_space();
        let rest = self.text.get(self.at..).unwrap_or_default();
        for (word, value) in [
            ("null", Value::Null),
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
        ] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        match self.peek() {
            Some('"') => self.string().map(Value::String),
            Some('-' | '0'..='9') => self.number(),
            Some('[' | '{') if depth >= MAX_DEPTH => Err(ParseError::TooDeep { at: self.at }),
            Some('[') => self.array(depth + 1),
            Some('{') => self.object(depth + 1),
            _ => Err(self.unexpected("a value")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.at += 1; // [
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.at += 1; // {
        let mut members: Vec<(String, Value)> = Vec::new();
        let mut keys = std::collections::HashSet::new();
        self.skip_space();
        if self.peek() == Some('}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_space();
            if self.peek() != Some('"') {
                return Err(self.unexpected("a string key"));
            }
            let key = self.string()?;
            if !keys.insert(key.clone()) {
                return Err(ParseError::DuplicateKey(key));
            }
            self.expect(':', "':'")?;
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_space();
            match self.peek() {
                Some(',') => self.at += 1,
                Some('}') => {
                    self.at += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.at += 1; // "
        let mut out = String::new();
        loop {
            let start = self.at;
            let c = self.peek().ok_or(ParseError::UnexpectedEnd)?;
            self.at += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => out.push(self.escape(start)?),
                c if (c as u32) < 0x20 => return Err(ParseError::ControlInString { at: start }),
                c => out.push(c),
            }
        }
    }

    /// The character of the escape after a backslash at `start`.
    fn escape(&mut self, start: usize) -> Result<char, ParseError> {
        let bad = ParseError::BadEscape { at: start };
        let c = self.peek().ok_or(ParseError::UnexpectedEnd)?;
        self.at += c.len_utf8();
        Ok(match c {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let high = self.hex4().ok_or(bad.clone())?;
                let code = if (0xd800..0xdc00).contains(&high) {
                    // A surrogate pair: `\uD83D\uDE00`.
                    let rest = self.text.get(self.at..).unwrap_or_default();
                    if !rest.starts_with("\\u") {
                        return Err(bad);
                    }
                    self.at += 2;
                    let low = self.hex4().filter(|l| (0xdc00..0xe000).contains(l));
                    let low = low.ok_or(bad.clone())?;
                    0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    high
                };
                char::from_u32(code).ok_or(bad)?
            }
            _ => return Err(bad),
        })
    }

    /// Four hex digits, as a number.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let digits = |mut i: usize| {
            let from = i;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            (i > from).then_some(i)
        };
        let bad = ParseError::BadNumber { at: start };
        let mut i = start;
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        // No leading zeros: `0` alone, or 1-9 then digits.
        i = match bytes.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i).ok_or(bad.clone())?,
            _ => return Err(bad),
        };
        if bytes.get(i) == Some(&b'.') {
            i = digits(i + 1).ok_or(bad.clone())?;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            i = digits(i).ok_or(bad.clone())?;
        }
        let n: f64 = self
            .text
            .get(start..i)
            .and_then(|t| t.parse().ok())
            .ok_or(bad.clone())?;
        if !n.is_finite() {
            return Err(bad);
        }
        self.at = i;
        Ok(Value::Number(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_escaped_objects() {
        let inner = Object::new().num("n", 3).finish();
        let s = Object::new()
            .str("name", "a\"b\\c\n\u{1}é")
            .num("size", 42u64)
            .bool("private", false)
            .opt_str("comment", None)
            .raw("list", &array(vec![inner, string("x")]))
            .finish();
        assert_eq!(
            s,
            r#"{"name":"a\"b\\c\n\u0001é","size":42,"private":false,"comment":null,"list":[{"n":3},"x"]}"#
        );
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;

    fn obj(members: &[(&str, Value)]) -> Value {
        Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn reads_json() {
        let s = |t: &str| Value::String(t.into());
        let table: Vec<(&str, Value)> = vec![
            ("null", Value::Null),
            (" true ", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("0", Value::Number(0.0)),
            ("-12.5e2", Value::Number(-1250.0)),
            ("1E+2", Value::Number(100.0)),
            ("0.25", Value::Number(0.25)),
            (
                r#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#,
                s("a\"b\\c/d\n\té😀"),
            ),
            ("\"é\"", s("é")),
            ("[]", Value::Array(vec![])),
            (
                "[1, [2], {}]",
                Value::Array(vec![
                    Value::Number(1.0),
                    Value::Array(vec![Value::Number(2.0)]),
                    obj(&[]),
                ]),
            ),
            (
                r#" {"magnet": "magnet:?xt=x", "dir" : null, "n": {"deep": [true]}} "#,
                obj(&[
                    ("magnet", s("magnet:?xt=x")),
                    ("dir", Value::Null),
                    ("n", obj(&[("deep", Value::Array(vec![Value::Bool(true)]))])),
                ]),
            ),
        ];
        for (text, want) in table {
            assert_eq!(parse(text.as_bytes()), Ok(want), "{text}");
        }
        let v = parse(br#"{"a": "x", "b": 2, "c": false}"#).unwrap();
        assert_eq!(v.get("a").and_then(Value::as_str), Some("x"));
        assert_eq!(v.get("b").and_then(Value::as_f64), Some(2.0));
        assert_eq!(v.get("c").and_then(Value::as_bool), Some(false));
        assert_eq!(v.get("d"), None);
        assert_eq!(Value::Null.get("a"), None);
    }

    #[test]
    fn refuses_what_is_not_json() {
        use ParseError::*;
        let table: Vec<(&[u8], ParseError)> = vec![
            (b"", UnexpectedEnd),
            (b"   ", UnexpectedEnd),
            (b"{", UnexpectedEnd),
            (b"[1,", UnexpectedEnd),
            (b"\"abc", UnexpectedEnd),
            (b"\"\\", UnexpectedEnd),
            (
                b"{\"a\" 1}",
                Unexpected {
                    at: 5,
                    found: '1',
                    expected: "':'",
                },
            ),
            (
                b"{a:1}",
                Unexpected {
                    at: 1,
                    found: 'a',
                    expected: "a string key",
                },
            ),
            (
                b"[1 2]",
                Unexpected {
                    at: 3,
                    found: '2',
                    expected: "',' or ']'",
                },
            ),
            (
                b"[1,]",
                Unexpected {
                    at: 3,
                    found: ']',
                    expected: "a value",
                },
            ),
            (
                b"{\"a\":1,}",
                Unexpected {
                    at: 7,
                    found: '}',
                    expected: "a string key",
                },
            ),
            (
                b"nul",
                Unexpected {
                    at: 0,
                    found: 'n',
                    expected: "a value",
                },
            ),
            (
                b"'x'",
                Unexpected {
                    at: 0,
                    found: '\'',
                    expected: "a value",
                },
            ),
            (b"01", TrailingData { at: 1 }),
            (b"1 2", TrailingData { at: 2 }),
            (b"{} x", TrailingData { at: 3 }),
            (b"-", BadNumber { at: 0 }),
            (b"1.", BadNumber { at: 0 }),
            (
                b".5",
                Unexpected {
                    at: 0,
                    found: '.',
                    expected: "a value",
                },
            ),
            (b"1e", BadNumber { at: 0 }),
            (b"1e999", BadNumber { at: 0 }),
            (b"\"\\x\"", BadEscape { at: 1 }),
            (b"\"\\u12\"", BadEscape { at: 1 }),
            (b"\"\\ud800\"", BadEscape { at: 1 }),
            (b"\"\\ud800\\u0041\"", BadEscape { at: 1 }),
            (b"\"\\udc00\"", BadEscape { at: 1 }),
            (b"\"a\nb\"", ControlInString { at: 2 }),
            (b"{\"a\":1,\"a\":2}", DuplicateKey("a".into())),
            (b"\"\xff\"", NotUtf8),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), Err(want), "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(deep.as_bytes()).is_ok());
        let deeper = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(deeper.as_bytes()),
            Err(ParseError::TooDeep { at: MAX_DEPTH })
        );
        // A million open brackets: refused by depth, not by the stack.
        let bomb = "{\"a\":".repeat(100_000);
        assert!(matches!(
            parse(bomb.as_bytes()),
            Err(ParseError::TooDeep { .. })
        ));
        let long = vec![b' '; MAX_LEN + 1];
        assert_eq!(parse(&long), Err(ParseError::TooLong { len: MAX_LEN + 1 }));
        // Every prefix of a valid text fails cleanly (or parses), never panics.
        let text = r#"{"k": [1.5e3, -0, "\u00e9\ud83d\ude00", true, null, {"x": false}]}"#;
        for cut in 0..text.len() {
            let _ = parse(&text.as_bytes()[..cut]);
        }
        // And random bytes.
        let mut rng = crate::util::random::Rng::new(7);
        for _ in 0..2000 {
            let len = rng.below(40);
            let alphabet = b"{}[]\",:0123456789.eE+-tfnul\\ \xc3\xa9";
            let junk: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = parse(&junk);
        }
    }

    #[test]
    fn round_trips_the_writer() {
        let text = Object::new()
            .str("name", "a\"b\\c\n\u{1}é")
            .num("size", 42u64)
            .bool("private", false)
            .opt_str("comment", None)
            .finish();
        let v = parse(text.as_bytes()).unwrap();
        assert_eq!(
            v.get("name").and_then(Value::as_str),
            Some("a\"b\\c\n\u{1}é")
        );
        assert_eq!(v.get("size").and_then(Value::as_f64), Some(42.0));
        assert_eq!(v.get("comment"), Some(&Value::Null));
    }
}
