//! The HTTP API of `shoal serve`: requests in, [`Control`] calls, JSON
//! (or the Prometheus text format) out.
//!
//! Owns: the routes, the bearer-token rule, reading request bodies (a
//! `.torrent`, a magnet link, or a JSON object), checking them before the
//! manager sees them, and the JSON of answers. [`Api::handle`] is pure
//! over a request's bytes, so its tests use a fake [`Control`];
//! [`serve_api`] runs it on [`crate::net::http_server`]. Does not own:
//! torrents (the manager behind [`Control`]), or HTTP itself.
//!
//! ## Wire format
//!
//! | request | answer |
//! |---|---|
//! | `GET /torrents` | 200, an array of torrents (below) |
//! | `GET /torrents/HASH` | 200, one torrent with `files` (`path`, `length`, `wanted`), `peers` (`addr`, `client`, `down_rate`, `up_rate`, `inbound`: here the list, not the count), `pieces`, `have`, `trackers` |
//! | `POST /torrents[?dir=SUBDIR]` | 201 `{"info_hash":"HASH"}`; the body is a `.torrent` file, a magnet link, or `{"magnet":"magnet:?…","dir":"SUBDIR"}` |
//! | `DELETE /torrents/HASH[?delete_data=true]` | 200 `{"ok":true}` |
//! | `POST /torrents/HASH/pause`, `…/resume` | 200 `{"ok":true}` |
//! | `GET /metrics` | 200, the Prometheus text format ([`super::metrics`]) |
//!
//! A torrent is `{"info_hash", "name", "state", "progress", "done",
//! "size", "down_rate", "up_rate", "downloaded", "uploaded", "ratio",
//! "peers", "data_dir"}` (bytes, bytes per second, progress and ratio as
//! fractions; `state` one of [`State::name`]), plus `"error"` when
//! `state` is `error`. HASH is 40 hex digits. `SUBDIR` is relative to
//! `--data` and may not leave it.
//!
//! Every failure is a JSON object `{"error":"what is wrong"}`: 400 for a
//! malformed request, hash, body or `dir`; 401 without the right token
//! (when one is set: `Authorization: Bearer TOKEN`); 404 for an unknown
//! torrent or path; 405 for a wrong method (with `Allow`); 409 when the
//! torrent or its data path is taken; 413 for a body over
//! [`MAX_BODY`]; 431 for a head over 8 KiB; 500 when the manager failed;
//! 503 when every worker is busy. A failed request changes nothing.

use crate::net::http_server::{self, Request, WhenFull};
use crate::proto::http::{
    bearer_token, request_line, Response, Status, BAD_REQUEST, CONFLICT, CREATED, INTERNAL_ERROR,
    METHOD_NOT_ALLOWED, NOT_FOUND, OK, UNAUTHORIZED,
};
use crate::proto::magnet::Magnet;
use crate::proto::metainfo::{check_component, InfoHash, Metainfo};
use crate::proto::tracker::{percent_decode, query_pairs};
use crate::serve::control::{Control, Detail, Refusal, Source, State, Status as TorrentStatus};
use crate::serve::metrics;
use crate::util::json::{self, Object, Value};
use sha1::{Digest, Sha1};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The largest request body: a `.torrent` of a very large torrent (its
/// piece hashes) fits; more is refused with 413 before it is read.
pub const MAX_BODY: usize = 16 << 20;

/// Where the API listens unless told: loopback only, so that no token is
/// needed on a single host.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 6880);

/// Worker threads. A call into the manager returns at once, so a few
/// serve any script; the rest let some slow clients hold theirs.
pub const WORKERS: usize = 8;

/// How long a client has to send its request (a body gets a second more
/// per MiB), and then to take the response: as `shoal tracker`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";

/// The API: routes requests to a [`Control`].
pub struct Api {
    control: Arc<dyn Control>,
    /// SHA-1 of the token, when one is required.
    token: Option<[u8; 20]>,
}

impl Api {
    pub fn new(control: Arc<dyn Control>, token: Option<&str>) -> Api {
        Api {
            control,
            token: token.map(|t| Sha1::digest(t.as_bytes()).into()),
        }
    }

    /// The answer to one request (`head` through the blank line, `body`
    /// as framed by its `Content-Length`).
    pub fn handle(&self, head: &[u8], body: &[u8]) -> Response {
        match self.route(head, body) {
            Ok(response) => response,
            Err(e) => e.response(),
        }
    }

    fn route(&self, head: &[u8], body: &[u8]) -> Result<Response, ApiError> {
        let line = request_line(head).map_err(|r| ApiError::new(r.status, r.why))?;
        if let Some(want) = &self.token {
            let given = bearer_token(head).unwrap_or_default();
            if !same_token(given, want) {
                return Err(ApiError::Unauthorized);
            }
        }
        let method = line.method;
        let path = std::str::from_utf8(line.path).map_err(|_| ApiError::NotFound)?;
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
        let c = &*self.control;
        match segments.as_slice() {
            ["torrents"] => match method {
                b"GET" => Ok(json_ok(OK, json::array(c.list().iter().map(status_json)))),
                b"POST" => {
                    let (source, dir) = add_request(body, line.query)?;
                    let hash = c.add(source, dir)?;
                    Ok(json_ok(
                        CREATED,
                        Object::new().str("info_hash", &hash.hex()).finish(),
                    ))
                }
                _ => Err(ApiError::Method("GET, POST")),
            },
            ["torrents", hash] => {
                let hash = parse_hash(hash)?;
                match method {
                    b"GET" => Ok(json_ok(OK, detail_json(&c.detail(&hash)?))),
                    b"DELETE" => {
                        let delete_data = delete_data(line.query)?;
                        c.remove(&hash, delete_data)?;
                        Ok(done())
                    }
                    _ => Err(ApiError::Method("GET, DELETE")),
                }
            }
            ["torrents", hash, action @ ("pause" | "resume")] => {
                let hash = parse_hash(hash)?;
                if method != b"POST" {
                    return Err(ApiError::Method("POST"));
                }
                match *action {
                    "pause" => c.pause(&hash)?,
                    _ => c.resume(&hash)?,
                }
                Ok(done())
            }
            ["metrics"] => match method {
                b"GET" => Ok(Response::new(
                    OK,
                    metrics::CONTENT_TYPE,
                    metrics::render(&c.metrics()),
                )),
                _ => Err(ApiError::Method("GET")),
            },
            _ => Err(ApiError::NotFound),
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// The request is malformed (or its framing is, as the server found).
    Bad { status: Status, why: String },
    /// No token, or not the right one.
    Unauthorized,
    /// No such route.
    NotFound,
    /// The route exists, not with this method: the ones it takes.
    Method(&'static str),
    /// The manager refused.
    Refused(Refusal),
}

impl ApiError {
    fn new(status: Status, why: impl Into<String>) -> ApiError {
        ApiError::Bad {
            status,
            why: why.into(),
        }
    }

    fn bad(why: impl Into<String>) -> ApiError {
        ApiError::new(BAD_REQUEST, why)
    }

    pub fn status(&self) -> Status {
        match self {
            ApiError::Bad { status, .. } => *status,
            ApiError::Unauthorized => UNAUTHORIZED,
            ApiError::NotFound => NOT_FOUND,
            ApiError::Method(_) => METHOD_NOT_ALLOWED,
            ApiError::Refused(r) => refusal_status(r),
        }
    }

    /// `{"error": …}` with the status, and `WWW-Authenticate` or `Allow`
    /// where HTTP asks for them.
    pub fn response(&self) -> Response {
        let response = error_response(self.status(), &self.to_string());
        match self {
            ApiError::Unauthorized => response.with_header("WWW-Authenticate", "Bearer"),
            ApiError::Method(allow) => response.with_header("Allow", *allow),
            _ => response,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Bad { why, .. } => f.write_str(why),
            ApiError::Unauthorized => {
                f.write_str("missing or wrong token (send Authorization: Bearer TOKEN)")
            }
            ApiError::NotFound => f.write_str(
                "not found: the API serves /torrents, /torrents/HASH[/pause|/resume] and /metrics",
            ),
            ApiError::Method(allow) => write!(f, "method not allowed here (allowed: {allow})"),
            ApiError::Refused(r) => write!(f, "{r}"),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        ApiError::Refused(r)
    }
}

/// The status of a manager's refusal.
pub fn refusal_status(r: &Refusal) -> Status {
    match r {
        Refusal::Unknown(_) => NOT_FOUND,
        Refusal::Exists(_) | Refusal::Clash { .. } => CONFLICT,
        Refusal::BadTorrent(_) | Refusal::OutsideData(_) => BAD_REQUEST,
        Refusal::Failed(_) => INTERNAL_ERROR,
    }
}

/// `{"error": why}` with `status`: every failure's answer, including the
/// ones the HTTP server sends itself (413, 431, 503, ...).
pub fn error_response(status: Status, why: &str) -> Response {
    Response::new(status, JSON, Object::new().str("error", why).finish())
}

fn json_ok(status: Status, body: String) -> Response {
    Response::new(status, JSON, body)
}

fn done() -> Response {
    json_ok(OK, Object::new().bool("ok", true).finish())
}

/// Whether `given` is the token whose SHA-1 is `want`, in time that does
/// not depend on where they differ, nor (beyond hashing `given`) on
/// either's length: both sides compared are 20-byte digests, every byte
/// looked at.
pub fn same_token(given: &[u8], want: &[u8; 20]) -> bool {
    let given: [u8; 20] = Sha1::digest(given).into();
    let diff = given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// A 40-hex-digit info hash from a path.
fn parse_hash(text: &str) -> Result<InfoHash, ApiError> {
    let bytes = (text.len() == 40)
        .then(|| crate::util::hex::decode(text))
        .flatten()
        .and_then(|b| <[u8; 20]>::try_from(b).ok());
    bytes.map(InfoHash).ok_or_else(|| {
        let shown: String = text.chars().take(64).collect();
        ApiError::bad(format!("bad info hash {shown:?}: expected 40 hex digits"))
    })
}

/// The decoded value of query parameter `name`, if given.
fn query_value(query: &[u8], name: &str) -> Result<Option<String>, ApiError> {
    let Some((_, raw)) = query_pairs(query).find(|(k, _)| *k == name.as_bytes()) else {
        return Ok(None);
    };
    percent_decode(raw)
        .and_then(|v| String::from_utf8(v).ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad(format!("query parameter {name}: bad encoding")))
}

fn delete_data(query: &[u8]) -> Result<bool, ApiError> {
    match query_value(query, "delete_data")?.as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(other) => Err(ApiError::bad(format!(
            "delete_data={other:?}: expected true or false"
        ))),
    }
}

/// A `dir` as the manager takes it: relative, inside `--data`. `..`,
/// absolute paths, empty components and NUL are refused
/// ([`Refusal::OutsideData`], 400).
pub fn check_dir(dir: &str) -> Result<PathBuf, ApiError> {
    let outside = || ApiError::Refused(Refusal::OutsideData(dir.to_string()));
    // `a/b/` is `a/b`; `/a` starts with an empty component.
    let relative = dir.strip_suffix('/').unwrap_or(dir);
    let mut path = PathBuf::new();
    for part in relative.split('/') {
        check_component(part.as_bytes()).map_err(|_| outside())?;
        path.push(part);
    }
    Ok(path)
}

/// What `POST /torrents` asks to add, checked: a `.torrent` must parse
/// as one and a magnet link as one, before the manager sees either.
fn add_request(body: &[u8], query: &[u8]) -> Result<(Source, Option<PathBuf>), ApiError> {
    let mut dir = query_value(query, "dir")?;
    let trimmed = body.trim_ascii();
    let source =
        match trimmed.first() {
            None => {
                return Err(ApiError::bad(
                    "empty body: send a .torrent file, a magnet link or {\"magnet\": \"...\"}",
                ))
            }
            Some(b'd') => {
                Metainfo::from_bytes(body)
                    .map_err(|e| ApiError::Refused(Refusal::BadTorrent(e.to_string())))?;
                Source::Torrent(body.to_vec())
            }
            Some(b'{') => {
                let value = json::parse(trimmed).map_err(|e| ApiError::bad(e.to_string()))?;
                let (magnet, json_dir) = json_add(&value)?;
                if json_dir.is_some() {
                    dir = json_dir;
                }
                magnet_source(&magnet)?
            }
            Some(_) if trimmed.starts_with(b"magnet:") => {
                let text = std::str::from_utf8(trimmed)
                    .map_err(|_| ApiError::bad("the magnet link is not UTF-8"))?;
                magnet_source(text)?
            }
            Some(_) => return Err(ApiError::Refused(Refusal::BadTorrent(
                "the body is neither a .torrent file (bencoded), a magnet link nor a JSON object"
                    .into(),
            ))),
        };
    let dir = dir.as_deref().map(check_dir).transpose()?;
    Ok((source, dir))
}

/// The `magnet` and `dir` of a JSON body.
fn json_add(value: &Value) -> Result<(String, Option<String>), ApiError> {
    let Value::Object(members) = value else {
        return Err(ApiError::bad("the JSON body must be an object"));
    };
    let mut magnet = None;
    let mut dir = None;
    for (key, v) in members {
        match (key.as_str(), v) {
            ("magnet", Value::String(s)) => magnet = Some(s.clone()),
            ("dir", Value::String(s)) => dir = Some(s.clone()),
            ("dir", Value::Null) => {}
            ("magnet" | "dir", other) => {
                return Err(ApiError::bad(format!(
                    "\"{key}\" must be a string, not {}",
                    other.kind()
                )))
            }
            (other, _) => {
                return Err(ApiError::bad(format!(
                    "unknown key {other:?} (expected \"magnet\" and \"dir\")"
                )))
            }
        }
    }
    let magnet = magnet.ok_or_else(|| ApiError::bad("the JSON body has no \"magnet\""))?;
    Ok((magnet, dir))
}

fn magnet_source(text: &str) -> Result<Source, ApiError> {
    Magnet::parse(text).map_err(|e| ApiError::Refused(Refusal::BadTorrent(e.to_string())))?;
    Ok(Source::Magnet(text.to_string()))
}

/// A number JSON can carry: NaN and infinities (a rate over no time) are 0.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// A torrent's fields; `peers` (their count) only in a list, as a
/// detail has the peers themselves under that key.
fn status_object(s: &TorrentStatus, peer_count: bool) -> Object {
    let o = Object::new()
        .str("info_hash", &s.info_hash.hex())
        .str("name", &s.name)
        .str("state", s.state.name())
        .num("progress", finite(s.progress()))
        .num("done", s.done)
        .num("size", s.size)
        .num("down_rate", finite(s.down_rate))
        .num("up_rate", finite(s.up_rate))
        .num("downloaded", s.downloaded)
        .num("uploaded", s.uploaded)
        .num("ratio", finite(s.ratio()));
    let o = match peer_count {
        true => o.num("peers", s.peers),
        false => o,
    };
    let o = o.str("data_dir", &s.data_dir.to_string_lossy());
    match &s.state {
        State::Error(why) => o.str("error", why),
        _ => o,
    }
}

/// One torrent of `GET /torrents`.
pub fn status_json(s: &TorrentStatus) -> String {
    status_object(s, true).finish()
}

/// `GET /torrents/HASH`.
pub fn detail_json(d: &Detail) -> String {
    let files = d.files.iter().map(|f| {
        Object::new()
            .str("path", &f.path)
            .num("length", f.length)
            .bool("wanted", f.wanted)
            .finish()
    });
    let peers = d.peers.iter().map(|p| {
        Object::new()
            .str("addr", &p.addr.to_string())
            .opt_str("client", p.client.as_deref())
            .num("down_rate", finite(p.down_rate))
            .num("up_rate", finite(p.up_rate))
            .bool("inbound", p.inbound)
            .finish()
    });
    status_object(&d.status, false)
        .raw("files", &json::array(files))
        .raw("peers", &json::array(peers))
        .num("pieces", d.pieces)
        .num("have", d.have)
        .raw(
            "trackers",
            &json::array(d.trackers.iter().map(|t| json::string(t))),
        )
        .finish()
}

/// Why the API was not started.
#[derive(Debug)]
pub enum StartError {
    /// The address is not loopback and no token was given: anyone who
    /// can reach it could add and delete torrents.
    NeedsToken(SocketAddr),
    /// The token is empty or has spaces or control characters (it could
    /// not be sent as a bearer token).
    BadToken,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NeedsToken(addr) => write!(
                f,
                "the API on {addr} would be reachable from other hosts: give it a token \
                 (--api-token) or listen on 127.0.0.1"
            ),
            StartError::BadToken => {
                f.write_str("the API token is empty or has spaces or control characters")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Whether the API may listen on `addr` with `token`: a token (if any) must
/// be sendable, and only a loopback address may go without one.
pub fn check_start(addr: SocketAddr, token: Option<&str>) -> Result<(), StartError> {
    match token {
        Some(t) if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(StartError::BadToken)
        }
        Some(_) => Ok(()),
        None if crate::net::http_server::canonical(addr.ip()).is_loopback() => Ok(()),
        None => Err(StartError::NeedsToken(addr)),
    }
}

/// A running API. Dropping it stops its threads without waiting;
/// [`ApiServer::stop`] also waits.
#[derive(Debug)]
pub struct ApiServer {
    server: http_server::Server,
}

impl ApiServer {
    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops and joins the threads (see [`http_server::Server::stop`]);
    /// whether all ended in time.
    pub fn stop(self) -> bool {
        self.server.stop()
    }
}

/// Binds `addr` and serves the API on it ([`WORKERS`] threads and an
/// accept thread), returning at once. A non-loopback `addr` without a
/// `token` is refused: the error's kind is `InvalidInput` and its inner
/// error a [`StartError`].
pub fn serve_api(
    addr: SocketAddr,
    token: Option<String>,
    control: Arc<dyn Control>,
) -> io::Result<ApiServer> {
    check_start(addr, token.as_deref())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr)?;
    let api = Api::new(control, token.as_deref());
    let handler = move |r: &Request<'_>| {
        // A bug in the manager costs its one request a 500, not the API.
        panic::catch_unwind(AssertUnwindSafe(|| api.handle(r.head, r.body))).unwrap_or_else(|_| {
            log::error!("api: {}: the handler panicked", r.from);
            error_response(INTERNAL_ERROR, "internal error")
        })
    };
    let config = http_server::Config {
        name: "api",
        workers: WORKERS,
        max_connections: WORKERS,
        request_timeout: REQUEST_TIMEOUT,
        max_body: MAX_BODY,
        when_full: WhenFull::CutSlowest,
        busy_message: "the API is busy: retry",
        refusal: error_response,
    };
    let server = http_server::start(listener, config, Arc::new(handler))?;
    log::info!("api listening on http://{}", server.local_addr());
    Ok(ApiServer { server })
}

#[cfg(test)]
mod tests;
