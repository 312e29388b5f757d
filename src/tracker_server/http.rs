//! The tracker's routes: `GET /announce?…` and `GET /scrape?…` (exact
//! paths), read from the request line with [`crate::proto::http`].
//!
//! Owns: which paths and methods the tracker answers. Headers are not
//! interpreted: a GET carries no body we need. Does not own: the rest of
//! HTTP ([`crate::proto::http`], `net::http_server`), or what the query
//! means ([`super::query`]).

use crate::proto::http::{request_line, METHOD_NOT_ALLOWED, NOT_FOUND};
pub use crate::proto::http::{Refused, MAX_HEAD};

/// What a request asks for; each carries its raw query string (after `?`,
/// possibly empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Announce(&'a [u8]),
    Scrape(&'a [u8]),
}

/// Reads the request line of `head`: the route, or the status and message
/// to answer with.
pub fn route(head: &[u8]) -> Result<Route<'_>, Refused> {
    let line = request_line(head)?;
    if line.method != b"GET" {
        return Err(Refused {
            status: METHOD_NOT_ALLOWED,
            why: "only GET is supported",
        });
    }
    match line.path {
        b"/announce" => Ok(Route::Announce(line.query)),
        b"/scrape" => Ok(Route::Scrape(line.query)),
        _ => Err(Refused {
            status: NOT_FOUND,
            why: "not found: this tracker serves /announce and /scrape",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                route(head).map_err(|r| r.status.code),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
