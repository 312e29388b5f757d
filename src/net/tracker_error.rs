//! Why an exchange with a tracker failed, for both clients (HTTP in
//! [`crate::net::announce`], UDP in [`crate::net::udp_tracker`]).
//!
//! `Display` gives the one-line message without the URL (the caller names
//! the tracker), e.g. "timed out", "HTTP 500", "tracker error: go away".
//! Tracker-supplied text is carried as received; the announce thread cuts
//! and defuses it before reporting.

use crate::proto::tracker::ResponseError;
use crate::proto::udp_tracker::DecodeError;
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerError {
    /// The URL has no `scheme://`.
    NotAUrl,
    /// A scheme we do not speak (`wss`, `ftp`, ...).
    UnsupportedScheme(String),
    /// An `https` tracker in a build without the `tls` feature.
    TlsMissing,
    /// A `udp://` URL we cannot use; says what is wrong with it.
    BadUdpUrl(&'static str),
    /// Scrape: the announce URL's path does not end in `/announce` (BEP 48).
    NoScrapeUrl,
    /// Scrape: the tracker's answer does not list our torrent.
    UnknownTorrent,
    /// The deadline passed.
    TimedOut,
    /// Resolving the host name took longer than the deadline.
    ResolveTimedOut(String),
    /// The host name does not resolve (`None`: named by the HTTP client).
    HostNotFound(Option<String>),
    /// The resolver failed (or no thread could be had for it).
    Resolve {
        host: String,
        cause: String,
    },
    ConnectionRefused,
    ConnectionReset,
    /// The connection closed before the whole response came.
    ClosedEarly,
    /// Any other socket error, as the OS says it.
    Io(String),
    /// The HTTP body was over our cap (this many bytes).
    TooLarge(u64),
    TooManyRedirects,
    /// The HTTP exchange broke the protocol.
    BadHttp(String),
    /// A status other than 2xx, with the body's `failure reason` if any.
    Http {
        code: u16,
        failure: Option<String>,
    },
    /// A 2xx body that is not a valid response (or a `failure reason`).
    Response(ResponseError),
    /// A UDP tracker's error action, with its message.
    Refused(String),
    /// A UDP tracker that never answered usably: how many requests went
    /// out, and the last reply that had our transaction id but did not
    /// parse.
    NoAnswer {
        sent: u32,
        last_bad: Option<DecodeError>,
    },
    /// The UDP deadline passed with a reply that did not parse.
    TimedOutWithBadReply(DecodeError),
    /// Several addresses of one host failed, each for its reason.
    Addresses(Vec<(SocketAddr, TrackerError)>),
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = |f: &mut fmt::Formatter<'_>, bad: &DecodeError| {
            write!(f, " (last unusable reply: {bad})")
        };
        match self {
            TrackerError::NotAUrl => f.write_str("not a tracker URL"),
            TrackerError::UnsupportedScheme(s) => write!(f, "unsupported tracker scheme '{s}'"),
            TrackerError::TlsMissing => {
                f.write_str("https trackers need shoal built with --features tls")
            }
            TrackerError::BadUdpUrl(why) => write!(f, "bad udp tracker URL: {why}"),
            TrackerError::NoScrapeUrl => {
                f.write_str("no scrape URL: the announce URL's path does not end in /announce")
            }
            TrackerError::UnknownTorrent => f.write_str("the tracker does not know this torrent"),
            TrackerError::TimedOut => f.write_str("timed out"),
            TrackerError::ResolveTimedOut(host) => write!(f, "timed out resolving {host}"),
            TrackerError::HostNotFound(None) => f.write_str("host not found"),
            TrackerError::HostNotFound(Some(host)) => write!(f, "host not found: {host}"),
            TrackerError::Resolve { host, cause } => write!(f, "cannot resolve {host}: {cause}"),
            TrackerError::ConnectionRefused => f.write_str("connection refused"),
            TrackerError::ConnectionReset => f.write_str("connection reset"),
            TrackerError::ClosedEarly => f.write_str("connection closed before the response ended"),
            TrackerError::Io(e) => f.write_str(e),
            TrackerError::TooLarge(cap) => write!(f, "response larger than {cap} bytes"),
            TrackerError::TooManyRedirects => f.write_str("too many redirects"),
            TrackerError::BadHttp(e) => write!(f, "bad HTTP response: {e}"),
            TrackerError::Http {
                code,
                failure: None,
            } => write!(f, "HTTP {code}"),
            TrackerError::Http {
                code,
                failure: Some(reason),
            } => write!(f, "HTTP {code}: tracker refused: {reason}"),
            TrackerError::Response(e) => e.fmt(f),
            TrackerError::Refused(message) => write!(f, "tracker error: {message}"),
            TrackerError::NoAnswer { sent, last_bad } => {
                write!(f, "no answer after {sent} requests")?;
                last_bad.iter().try_for_each(|bad| last(f, bad))
            }
            TrackerError::TimedOutWithBadReply(bad) => {
                f.write_str("timed out")?;
                last(f, bad)
            }
            TrackerError::Addresses(all) => {
                for (n, (addr, e)) in all.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{addr}: {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for TrackerError {}

impl From<ResponseError> for TrackerError {
    fn from(e: ResponseError) -> TrackerError {
        TrackerError::Response(e)
    }
}
