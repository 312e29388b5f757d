//! The little HTTP/1.x our servers (`shoal tracker`, the API of `shoal
//! serve`) speak, as pure functions over bytes.
//!
//! Owns: finding the end of a request head, the request line, header
//! lookup, body framing (`Content-Length` only), the status lines we send
//! and the bytes of a response. Every response closes the connection, so
//! there is no keep-alive or pipelining to frame. Does not own: sockets,
//! deadlines and the enforcement of the size caps (`net::http_server`),
//! or what a path means (each server routes its own).

use std::fmt;

/// The largest request head we read. A real request is a line of a few
/// hundred bytes plus a few headers; 8 KiB is what many servers allow and
/// caps what one connection can make us buffer before it is answered.
pub const MAX_HEAD: usize = 8 * 1024;

/// A response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.reason)
    }
}

const fn status(code: u16, reason: &'static str) -> Status {
    Status { code, reason }
}

pub const OK: Status = status(200, "OK");
pub const CREATED: Status = status(201, "Created");
pub const BAD_REQUEST: Status = status(400, "Bad Request");
pub const UNAUTHORIZED: Status = status(401, "Unauthorized");
pub const NOT_FOUND: Status = status(404, "Not Found");
pub const METHOD_NOT_ALLOWED: Status = status(405, "Method Not Allowed");
pub const REQUEST_TIMEOUT: Status = status(408, "Request Timeout");
pub const CONFLICT: Status = status(409, "Conflict");
pub const PAYLOAD_TOO_LARGE: Status = status(413, "Content Too Large");
pub const HEAD_TOO_LARGE: Status = status(431, "Request Header Fields Too Large");
pub const INTERNAL_ERROR: Status = status(500, "Internal Server Error");
pub const NOT_IMPLEMENTED: Status = status(501, "Not Implemented");
pub const BUSY: Status = status(503, "Service Unavailable");

/// Why a request cannot be read: the status to answer with and a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: Status,
    pub why: &'static str,
}

const fn refused(status: Status, why: &'static str) -> Refused {
    Refused { status, why }
}

/// The length of the request head in `buf` (through the blank line), once
/// it is all there. Bare `\n` line ends are accepted too (RFC 9112 allows
/// it, and it helps anyone testing with `printf | nc`).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = buf.get(i + 1..)?;
        if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// The request line: `METHOD TARGET HTTP/1.x`, the target split at `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    /// After the `?`, possibly empty.
    pub query: &'a [u8],
}

/// Reads the request line of `head` (exactly three parts separated by
/// single spaces, HTTP/1.0 or 1.1).
pub fn request_line(head: &[u8]) -> Result<RequestLine<'_>, Refused> {
    let line = lines(head).next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refused(BAD_REQUEST, "malformed request line"));
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err(refused(
            BAD_REQUEST,
            "only HTTP/1.0 and HTTP/1.1 are spoken here",
        ));
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &target[target.len()..]),
    };
    Ok(RequestLine {
        method,
        path,
        query,
    })
}

/// The head's lines without their line ends, up to the blank line.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// Every value of header `name` (case-insensitive), in order, with the
/// spaces around it trimmed. Lines that are not `name: value` are skipped.
pub fn header_values<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines(head).skip(1).filter_map(move |line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (key, value) = (&line[..colon], &line[colon + 1..]);
        key.eq_ignore_ascii_case(name.as_bytes())
            .then(|| value.trim_ascii())
    })
}

/// The first value of header `name`, if any.
pub fn header<'a>(head: &'a [u8], name: &'a str) -> Option<&'a [u8]> {
    header_values(head, name).next()
}

/// How many body bytes follow the head: its `Content-Length`, 0 without
/// one. A `Transfer-Encoding` (chunked) is refused: every client we care
/// about sends a length for a body it has in hand. Lengths that disagree
/// or are not decimal digits are refused, as RFC 9112 asks.
pub fn body_length(head: &[u8]) -> Result<u64, Refused> {
    if header(head, "transfer-encoding").is_some() {
        return Err(refused(
            NOT_IMPLEMENTED,
            "Transfer-Encoding is not supported: send Content-Length",
        ));
    }
    let mut length = None;
    for value in header_values(head, "content-length") {
        let n = std::str::from_utf8(value)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(refused(BAD_REQUEST, "malformed Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(refused(BAD_REQUEST, "conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.unwrap_or(0))
}

/// The token of an `Authorization: Bearer TOKEN` header, if there is one.
pub fn bearer_token(head: &[u8]) -> Option<&[u8]> {
    let value = header(head, "authorization")?;
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

/// A response to send: every one closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    /// Further headers (`Allow`, `WWW-Authenticate`, ...).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: Status, body: impl Into<Vec<u8>>) -> Response {
        Response::new(status, "text/plain", body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire: status line, `Content-Type`, the further
    /// headers, `Content-Length`, `Connection: close`, and the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\n",
            self.status, self.content_type
        );
        for (name, value) in &self.headers {
            // A value is ours, but a line end in it would split the head.
            let value: String = value.chars().filter(|c| !c.is_control()).collect();
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends() {
        let table: [(&[u8], Option<usize>); 8] = [
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Some(27)),
            (b"GET / HTTP/1.1\r\n\r\nextra", Some(18)),
            (b"GET / HTTP/1.1\n\n", Some(16)),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", None),
            (b"GET / HTTP/1.1\r\n\r", None),
            (b"\n", None),
            (b"", None),
            (b"\n\n", Some(2)),
        ];
        for (buf, want) in table {
            assert_eq!(head_end(buf), want, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn request_lines() {
        type Want<'a> = Result<(&'a [u8], &'a [u8], &'a [u8]), u16>;
        let table: [(&[u8], Want); 8] = [
            (b"GET /a?b=1 HTTP/1.1\r\n\r\n", Ok((b"GET", b"/a", b"b=1"))),
            (b"POST /t HTTP/1.0\n\n", Ok((b"POST", b"/t", b""))),
            (b"DELETE /t? HTTP/1.1\r\n\r\n", Ok((b"DELETE", b"/t", b""))),
            (b"GET / HTTP/2\r\n\r\n", Err(400)),
            (b"GET /\r\n\r\n", Err(400)),
            (b"GET  / HTTP/1.1\r\n\r\n", Err(400)),
            (b"", Err(400)),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
                Err(400),
            ),
        ];
        for (head, want) in table {
            let got = request_line(head)
                .map(|l| (l.method, l.path, l.query))
                .map_err(|r| r.status.code);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn headers_and_framing() {
        let head = b"POST / HTTP/1.1\r\nHost: x\r\ncontent-LENGTH:  12 \r\n\
                     Authorization: Bearer s3cret\r\nX: a:b\r\nnot a header\r\n\r\nbody: no";
        assert_eq!(header(head, "host"), Some(&b"x"[..]));
        assert_eq!(header(head, "x"), Some(&b"a:b"[..]));
        assert_eq!(header(head, "body"), None, "the body is not the head");
        assert_eq!(body_length(head), Ok(12));
        assert_eq!(bearer_token(head), Some(&b"s3cret"[..]));

        let table: [(&[u8], Result<u64, u16>); 8] = [
            (b"GET / HTTP/1.1\r\n\r\n", Ok(0)),
            (b"P / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Ok(0)),
            (
                b"P / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Ok(5),
            ),
            (
                b"P / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Err(400),
            ),
            (b"P / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", Err(400)),
            (b"P / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n", Err(400)),
            (
                b"P / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Err(400),
            ),
            (
                b"P / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Err(501),
            ),
        ];
        for (head, want) in table {
            assert_eq!(
                body_length(head).map_err(|r| r.status.code),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        for (head, want) in [
            (
                &b"G / HTTP/1.1\r\nauthorization: bearer  t \r\n\r\n"[..],
                Some(&b"t"[..]),
            ),
            (b"G / HTTP/1.1\r\nAuthorization: Basic dDp0\r\n\r\n", None),
            (b"G / HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n", None),
            (b"G / HTTP/1.1\r\n\r\n", None),
        ] {
            assert_eq!(bearer_token(head), want);
        }
    }

    #[test]
    fn response_bytes() {
        assert_eq!(
            Response::text(NOT_FOUND, "no\n").to_bytes(),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
              Connection: close\r\n\r\nno\n"
                .to_vec()
        );
        let r = Response::new(UNAUTHORIZED, "application/json", "{}")
            .with_header("WWW-Authenticate", "Bearer\r\nX: injected");
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
             WWW-Authenticate: BearerX: injected\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n{}"
        );
    }
}
