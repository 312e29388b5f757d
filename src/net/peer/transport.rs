//! A connection's bytes as the peer threads see them: plaintext, or RC4
//! both ways after an MSE handshake ([`super::encryption`]).
//!
//! Owns: applying the ciphers at the I/O boundary, so that framing
//! ([`crate::proto::wire`], the reader's buffer, the writer's batches)
//! never knows whether a stream is encrypted, and handing on bytes a
//! handshake read past its end. Does not own: the socket or its deadlines.

use crate::net::stream::Stream;
use crate::proto::mse::{Ciphers, Rc4};
use std::io::{self, Read, Write};

/// Both directions of one connection, once its handshake is done (or
/// while its BitTorrent handshake is read).
pub struct Transport {
    pub(super) incoming: Incoming,
    pub(super) outgoing: Outgoing,
}

impl Transport {
    /// `early`: bytes already read (and decrypted), which come before
    /// anything read from the socket; `ciphers`: RC4, or plaintext.
    pub(super) fn new(ciphers: Option<Ciphers>, early: Vec<u8>) -> Transport {
        let (send, recv) = match ciphers {
            Some(c) => (Some(c.send), Some(c.recv)),
            None => (None, None),
        };
        Transport {
            incoming: Incoming {
                cipher: recv,
                early,
                used: 0,
            },
            outgoing: Outgoing { cipher: send },
        }
    }

    pub fn is_encrypted(&self) -> bool {
        self.outgoing.cipher.is_some()
    }
}

/// The receiving direction.
pub(super) struct Incoming {
    cipher: Option<Rc4>,
    /// Bytes read past the handshake, decrypted; `used` of them are gone.
    early: Vec<u8>,
    used: usize,
}

impl Incoming {
    /// A reader of the stream: the early bytes first, then the socket,
    /// decrypted.
    pub(super) fn on<'a>(&'a mut self, stream: &'a Stream) -> Reading<'a> {
        Reading {
            stream,
            incoming: self,
        }
    }
}

pub(super) struct Reading<'a> {
    stream: &'a Stream,
    incoming: &'a mut Incoming,
}

impl Read for Reading<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inc = &mut *self.incoming;
        if inc.used < inc.early.len() {
            let n = buf.len().min(inc.early.len() - inc.used);
            buf[..n].copy_from_slice(&inc.early[inc.used..inc.used + n]);
            inc.used += n;
            if inc.used == inc.early.len() {
                inc.early = Vec::new();
                inc.used = 0;
            }
            return Ok(n);
        }
        let n = self.stream.read(buf)?;
        if let Some(c) = inc.cipher.as_mut() {
            c.apply(&mut buf[..n]);
        }
        Ok(n)
    }
}

/// The sending direction.
pub(super) struct Outgoing {
    cipher: Option<Rc4>,
}

impl Outgoing {
    /// Writes all of `bytes`, encrypting them in place first if the stream
    /// is encrypted (the caller's buffer is spent). A failed write ends the
    /// connection: the key stream has moved past the unsent bytes.
    pub(super) fn write_all(&mut self, mut stream: &Stream, bytes: &mut [u8]) -> io::Result<()> {
        if let Some(c) = self.cipher.as_mut() {
            c.apply(bytes);
        }
        stream.write_all(bytes)
    }
}
