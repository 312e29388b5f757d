//! MSE on a socket: the `--encryption` policy, and running the sans-IO
//! [`mse`] handshake by a deadline in either role.
//!
//! Owns: what each policy offers and accepts, and the blocking loop that
//! sends what the state machine says and feeds it what arrives. Does not
//! own: the BitTorrent handshake that follows (see [`super`]), or the
//! formats ([`crate::proto::mse`]).

use super::transport::Transport;
use super::{read_by, CloseReason, Phase, Violation};
use crate::net::stream::Stream;
use crate::proto::mse::{self, Handshake, Methods, Step};
use std::io::Write;
use std::time::Instant;

/// Whether connections are encrypted (MSE/PE with RC4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Dial with MSE offering RC4 and plaintext (a peer that hangs up on
    /// it is dialled again in plaintext); accept both, choosing RC4 when
    /// offered.
    #[default]
    Prefer,
    /// MSE with RC4 only, both ways; plaintext peers are refused.
    Require,
    /// Plaintext only; MSE peers are refused.
    Off,
}

impl Encryption {
    pub fn from_name(name: &str) -> Option<Encryption> {
        match name {
            "prefer" => Some(Encryption::Prefer),
            "require" => Some(Encryption::Require),
            "off" => Some(Encryption::Off),
            _ => None,
        }
    }

    /// What we offer when dialling and accept when dialled.
    fn methods(self) -> Methods {
        match self {
            Encryption::Require => Methods::RC4,
            Encryption::Prefer | Encryption::Off => Methods::BOTH,
        }
    }
}

/// Dialling: MSE for `info_hash`, with `ia` (our BitTorrent handshake)
/// riding as initial payload.
pub(super) fn initiate(
    stream: &Stream,
    policy: Encryption,
    info_hash: [u8; 20],
    ia: &[u8],
    deadline: Instant,
) -> Result<Transport, CloseReason> {
    let hs = Handshake::initiator(
        info_hash,
        policy.methods(),
        ia,
        &mut crate::util::random::fill,
    );
    let done = drive(stream, hs, &[], deadline)?;
    Ok(Transport::new(done.ciphers, done.early))
}

/// Dialled: `first` are the bytes already read (they were not a plaintext
/// handshake); the connection may be for any of `info_hashes`. Returns the
/// transport and the info hash it is for.
pub(super) fn receive(
    stream: &Stream,
    policy: Encryption,
    first: &[u8],
    info_hashes: Vec<[u8; 20]>,
    deadline: Instant,
) -> Result<(Transport, [u8; 20]), CloseReason> {
    let hs = Handshake::receiver(
        info_hashes,
        policy.methods(),
        &mut crate::util::random::fill,
    );
    let done = drive(stream, hs, first, deadline)?;
    Ok((Transport::new(done.ciphers, done.early), done.info_hash))
}

/// Runs a handshake to its end by `deadline`.
fn drive(
    stream: &Stream,
    mut hs: Handshake,
    first: &[u8],
    deadline: Instant,
) -> Result<Box<mse::Done>, CloseReason> {
    let io = |e| CloseReason::io(Phase::Encryption, e);
    let send = |bytes: &[u8]| {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut s = stream;
        s.set_write_timeout(Some(left.max(std::time::Duration::from_millis(1))))
            .and_then(|()| s.write_all(bytes))
            .map_err(io)
    };
    // Reads are small: a handshake is at most a few KiB, and what a read
    // brings past its end is handed on as early bytes.
    let mut buf = [0u8; 2048];
    buf[..first.len()].copy_from_slice(first);
    let mut n = first.len();
    loop {
        match hs.feed(&buf[..n]).map_err(Violation::Encryption)? {
            Step::Continue(next) => hs = *next,
            Step::Done(done) => {
                send(&done.output)?;
                return Ok(done);
            }
        }
        // Everything the state machine has to say before it can go on.
        send(&hs.take_output())?;
        n = read_by(stream, &mut { stream }, &mut buf, deadline).map_err(io)?;
    }
}
