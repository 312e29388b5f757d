//! Web seed connections (BEP 19): threads that fetch runs of whole pieces
//! from one HTTP server with range requests.
//!
//! Owns: the HTTP exchange (blocking ureq, one agent per thread so the
//! connection is kept alive), the per-request deadline, reading the body
//! into one piece buffer at a time (memory per thread: one piece), zeros
//! for BEP 47 padding (never requested), and charging the session's
//! download throttle. Does not own: which pieces to fetch, when to retry,
//! or what a failure costs the web seed (the orchestrator decides, in
//! `engine::torrent::web_seeds`); the URL mapping and reply checks are the
//! pure [`crate::proto::web_seed`].
//!
//! Each thread takes [`Job`]s from its web seed's channel (two threads
//! share one), sends each piece as soon as it is whole, then a
//! [`WebEvent::Done`] with the outcome. It ends when the channel's sender
//! is dropped or the orchestrator's event channel is gone.

use crate::net::peer::PeerKey;
use crate::net::throttle::{self, Throttle};
use crate::proto::geometry::PieceIndex;
use crate::proto::metainfo::Metainfo;
use crate::proto::web_seed::{self, Part, ReplyError};
use crossbeam_channel::{Receiver, Sender};
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redirects we follow at most (an origin behind a load balancer may use
/// one; a loop ends here).
const MAX_REDIRECTS: u32 = 3;
/// Every request may take this long plus its length at [`MIN_RATE`]: a
/// server that trickles (a byte a second) costs one deadline, not a hang.
const BASE_DEADLINE: Duration = Duration::from_secs(10);
/// The slowest transfer rate we wait for, bytes per second.
const MIN_RATE: u64 = 256 * 1024;
/// Bytes read per call: the unit charged to the throttle.
const READ_CHUNK: usize = 64 * 1024;

const USER_AGENT: &str = concat!("shoal/", env!("CARGO_PKG_VERSION"));

/// A run of whole pieces to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    pub first: PieceIndex,
    pub count: u32,
}

/// What a web seed thread reports to the orchestrator.
#[derive(Debug)]
pub enum WebEvent {
    /// A whole piece of a job (not yet verified).
    Piece {
        seed: PeerKey,
        piece: PieceIndex,
        data: Vec<u8>,
    },
    /// A job is over: every piece of it was sent, or it failed (the pieces
    /// not sent are the orchestrator's to give back). `elapsed` is its
    /// wall time, for the web seed's rate.
    Done {
        seed: PeerKey,
        job: Job,
        elapsed: Duration,
        result: Result<(), WebSeedError>,
    },
}

/// Why a request to a web seed failed.
#[derive(Debug)]
pub enum WebSeedError {
    /// The reply's status or headers are not the range asked for.
    Reply { url: String, error: ReplyError },
    /// The body ended before the range did.
    ShortBody { url: String, want: u64, got: u64 },
    /// The request's deadline (see [`BASE_DEADLINE`]) passed.
    TimedOut { url: String, after: Duration },
    /// More than [`MAX_REDIRECTS`] redirects.
    TooManyRedirects { url: String },
    /// A URL (or a redirect to one) we cannot fetch: another scheme, or
    /// https without the `tls` feature.
    Unsupported { url: String, why: String },
    /// Connecting, reading or the HTTP exchange failed.
    Http { url: String, why: String },
}

impl WebSeedError {
    /// Whether retrying later cannot help: the web seed is refused.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            WebSeedError::Reply {
                error: ReplyError::NoRangeSupport,
                ..
            } | WebSeedError::TooManyRedirects { .. }
                | WebSeedError::Unsupported { .. }
        )
    }
}

impl fmt::Display for WebSeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebSeedError::Reply { url, error } => write!(f, "{url}: {error}"),
            WebSeedError::ShortBody { url, want, got } => {
                write!(f, "{url}: body ended after {got} of {want} bytes")
            }
            WebSeedError::TimedOut { url, after } => {
                write!(
                    f,
                    "{url}: no complete reply within {:.0}s",
                    after.as_secs_f64()
                )
            }
            WebSeedError::TooManyRedirects { url } => {
                write!(f, "{url}: more than {MAX_REDIRECTS} redirects")
            }
            WebSeedError::Unsupported { url, why } => write!(f, "{url}: cannot fetch: {why}"),
            WebSeedError::Http { url, why } => write!(f, "{url}: {why}"),
        }
    }
}

/// What a web seed thread works with.
pub struct Worker {
    pub seed: PeerKey,
    pub base: String,
    pub meta: Arc<Metainfo>,
    pub throttle: Option<Arc<Throttle>>,
    pub jobs: Receiver<Job>,
    pub events: Sender<WebEvent>,
}

/// Starts a web seed thread.
pub fn spawn(worker: Worker, name: String) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || worker.run())
        .map(drop)
}

impl Worker {
    fn run(self) {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .user_agent(USER_AGENT)
            // Never from the environment (as for trackers).
            .proxy(None)
            .build()
            .new_agent();
        for job in &self.jobs {
            let start = Instant::now();
            let result = self.fetch(&agent, job);
            let done = WebEvent::Done {
                seed: self.seed,
                job,
                elapsed: start.elapsed(),
                result,
            };
            if self.events.send(done).is_err() {
                return;
            }
        }
    }

    /// Fetches a run, sending each piece as it is whole. `Ok` also when
    /// the orchestrator is gone (the loop then ends on its next send).
    fn fetch(&self, agent: &ureq::Agent, job: Job) -> Result<(), WebSeedError> {
        let geometry = &self.meta.geometry;
        let mut piece = job.first;
        let mut buf = Vec::with_capacity(geometry.piece_size(piece) as usize);
        for part in web_seed::parts(geometry, job.first, job.count) {
            let mut left = part.len;
            let mut body = match part.padding {
                true => None,
                false => Some(self.request(agent, &part)?),
            };
            while left > 0 {
                let room = geometry.piece_size(piece) as usize - buf.len();
                let n = room.min(READ_CHUNK).min(left as usize);
                let at = buf.len();
                buf.resize(at + n, 0);
                if let Some(body) = body.as_mut() {
                    body.fill(&mut buf[at..])?;
                    throttle::charge(&self.throttle, n);
                }
                left -= n as u64;
                if buf.len() == geometry.piece_size(piece) as usize {
                    let data = std::mem::take(&mut buf);
                    let sent = self.events.send(WebEvent::Piece {
                        seed: self.seed,
                        piece,
                        data,
                    });
                    let next = geometry.piece(piece.get() + 1);
                    match (sent, next) {
                        (Ok(()), Some(next)) => {
                            piece = next;
                            buf.reserve(geometry.piece_size(piece) as usize);
                        }
                        _ => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends the range request for `part` and checks the reply's headers.
    fn request(&self, agent: &ureq::Agent, part: &Part) -> Result<Body, WebSeedError> {
        let started = Instant::now();
        let url = web_seed::file_url(&self.base, &self.meta, part.file);
        let deadline = BASE_DEADLINE + Duration::from_secs(part.len / MIN_RATE);
        let response = agent
            .get(&url)
            .header("Range", web_seed::range_header(part))
            .config()
            .timeout_global(Some(deadline))
            .build()
            .call()
            .map_err(|e| describe(e, &url, deadline))?;
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &ureq::http::HeaderValue| v.to_str().ok())
        };
        let length = header("content-length").and_then(|v| v.trim().parse().ok());
        let checked = web_seed::check_reply(
            part,
            response.status().as_u16(),
            header("content-range"),
            length,
        );
        // On an error the body is dropped unread: a 200 with the whole
        // file costs its headers, not the file.
        checked.map_err(|error| WebSeedError::Reply {
            url: url.clone(),
            error,
        })?;
        Ok(Body {
            url,
            reader: response.into_body().into_reader(),
            want: part.len,
            got: 0,
            started,
            deadline,
        })
    }
}

/// The body of a reply to one range request.
struct Body {
    url: String,
    reader: ureq::BodyReader<'static>,
    /// The range's length, and the bytes of it read so far.
    want: u64,
    got: u64,
    started: Instant,
    deadline: Duration,
}

impl Body {
    /// Fills `buf` from the body.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), WebSeedError> {
        let mut filled = 0;
        while filled < buf.len() {
            let error = match self.reader.read(&mut buf[filled..]) {
                Ok(n) if n > 0 => {
                    filled += n;
                    self.got += n as u64;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                Err(e) => Some(ureq::Error::from(e)),
            };
            // ureq ends a body cut short by the deadline as if the server
            // had closed it: the clock says which it was.
            let timed_out = self.started.elapsed() >= self.deadline;
            return Err(match error {
                Some(e) => describe(e, &self.url, self.deadline),
                None if timed_out => WebSeedError::TimedOut {
                    url: self.url.clone(),
                    after: self.deadline,
                },
                None => WebSeedError::ShortBody {
                    url: self.url.clone(),
                    want: self.want,
                    got: self.got,
                },
            });
        }
        Ok(())
    }
}

/// What a failed HTTP exchange means for a web seed.
fn describe(e: ureq::Error, url: &str, deadline: Duration) -> WebSeedError {
    let url = url.to_string();
    match e {
        ureq::Error::Timeout(_) => WebSeedError::TimedOut {
            url,
            after: deadline,
        },
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            WebSeedError::TimedOut {
                url,
                after: deadline,
            }
        }
        ureq::Error::TooManyRedirects => WebSeedError::TooManyRedirects { url },
        ureq::Error::BadUri(why) => WebSeedError::Unsupported { url, why },
        ureq::Error::TlsRequired => WebSeedError::Unsupported {
            url,
            why: "https needs a build with the `tls` feature".into(),
        },
        other => WebSeedError::Http {
            url,
            why: other.to_string(),
        },
    }
}
