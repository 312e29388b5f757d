//! The little HTTP/1.x the tracker server speaks, as pure functions over
//! bytes.
//!
//! Owns: finding the end of a request head, reading the request line into
//! a route (`GET /announce?…` or `GET /scrape?…`, exact paths), the status
//! lines we send, and the bytes of a response. Headers are read past but
//! not interpreted: a GET carries no body we need, and every response
//! closes the connection. Does not own: sockets, deadlines and the head
//! size cap's enforcement ([`super`]), or what the query means
//! ([`super::query`]).

/// The largest request head we read. A real announce is a request line of
/// about 300 bytes plus a few headers; 8 KiB is what many servers allow,
/// leaves room for a scrape of [`super::MAX_SCRAPE_HASHES`] hashes, and
/// caps what one connection can make us buffer.
pub const MAX_HEAD: usize = 8 * 1024;

/// A response status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
}

/// Also for tracker refusals: they are a bencoded `failure reason` with
/// 200, as every tracker sends them and clients expect.
pub const OK: Status = Status {
    code: 200,
    reason: "OK",
};
pub const BAD_REQUEST: Status = Status {
    code: 400,
    reason: "Bad Request",
};
pub const NOT_FOUND: Status = Status {
    code: 404,
    reason: "Not Found",
};
pub const METHOD_NOT_ALLOWED: Status = Status {
    code: 405,
    reason: "Method Not Allowed",
};
pub const HEAD_TOO_LARGE: Status = Status {
    code: 431,
    reason: "Request Header Fields Too Large",
};
pub const BUSY: Status = Status {
    code: 503,
    reason: "Service Unavailable",
};

/// What a request asks for; each carries its raw query string (after `?`,
/// possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Announce(&'a [u8]),
    Scrape(&'a [u8]),
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

/// Reads the request line of `head`: the route, or the status and message
/// to answer with.
pub fn route(head: &[u8]) -> Result<Route<'_>, (Status, &'static str)> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((BAD_REQUEST, "malformed request line"));
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err((BAD_REQUEST, "only HTTP/1.0 and HTTP/1.1 are spoken here"));
    }
    if method != b"GET" {
        return Err((METHOD_NOT_ALLOWED, "only GET is supported"));
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], &target[i + 1..]),
        None => (target, &target[target.len()..]),
    };
    match path {
        b"/announce" => Ok(Route::Announce(query)),
        b"/scrape" => Ok(Route::Scrape(query)),
        _ => Err((
            NOT_FOUND,
            "not found: this tracker serves /announce and /scrape",
        )),
    }
}

/// A complete response: status line, the three headers every answer
/// carries, and the body.
pub fn response(status: Status, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        status.code,
        status.reason,
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out
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
    fn routes() {
        let table: [(&[u8], Result<Route, u16>); 12] = [
            (
                b"GET /announce?a=1&b HTTP/1.1\r\nHost: x\r\n\r\n",
                Ok(Route::Announce(b"a=1&b")),
            ),
            (b"GET /announce HTTP/1.0\r\n\r\n", Ok(Route::Announce(b""))),
            (b"GET /scrape?x HTTP/1.1\n\n", Ok(Route::Scrape(b"x"))),
            (b"GET /scrape? HTTP/1.1\r\n\r\n", Ok(Route::Scrape(b""))),
            (b"GET / HTTP/1.1\r\n\r\n", Err(404)),
            (b"GET /announce.php?a HTTP/1.1\r\n\r\n", Err(404)),
            (b"GET /x/announce HTTP/1.1\r\n\r\n", Err(404)),
            (b"POST /announce HTTP/1.1\r\n\r\n", Err(405)),
            (b"GET /announce HTTP/2\r\n\r\n", Err(400)),
            (b"GET /announce\r\n\r\n", Err(400)),
            (b"GET  /announce HTTP/1.1\r\n\r\n", Err(400)),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
                Err(400),
            ),
        ];
        for (head, want) in table {
            assert_eq!(
                route(head).map_err(|(s, _)| s.code),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn response_bytes() {
        assert_eq!(
            response(NOT_FOUND, b"no\n"),
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
              Connection: close\r\n\r\nno\n"
                .to_vec()
        );
    }
}
