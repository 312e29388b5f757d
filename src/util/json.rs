//! A minimal JSON writer for `--json` output: one object per line, built
//! field by field. Owns escaping; knows nothing about what is written.

use std::fmt::Write;

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
