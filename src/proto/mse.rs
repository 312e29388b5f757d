//! Message Stream Encryption (MSE, also "PE"), the Vuze/libtorrent
//! obfuscation layer under the BitTorrent handshake, as a sans-IO state
//! machine for both roles.
//!
//! ```text
//! 1 A→B  Ya, PadA
//! 2 B→A  Yb, PadB
//! 3 A→B  HASH('req1', S), HASH('req2', SKEY) ^ HASH('req3', S),
//!        ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B→A  ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(stream)
//! 5 A→B  ENCRYPT2(stream)
//! ```
//!
//! Y are Diffie-Hellman public keys ([`dh`]), S the shared secret, SKEY
//! the info hash, HASH SHA-1, ENCRYPT RC4 ([`rc4`]) keyed with
//! HASH('keyA'|'keyB', S, SKEY) with 1024 bytes discarded, VC eight zero
//! bytes, and ENCRYPT2 the method B selected: RC4 continued, or plaintext.
//!
//! Owns: the message formats, the search for the sync markers within the
//! spec's bounds, key derivation and the choice of method. Does not own:
//! sockets, deadlines (the caller enforces one for the whole exchange) or
//! where random bytes come from (the caller passes a source).

mod dh;
pub mod rc4;
#[cfg(test)]
mod tests;

pub use rc4::Rc4;

use sha1::{Digest, Sha1};
use std::fmt;

/// Padding is 0 to 512 bytes, at every place it appears.
pub const MAX_PAD: usize = 512;
const HASH_LEN: usize = 20;
const VC: [u8; 8] = [0; 8];
/// How many bytes a receiver reads at most before HASH('req1', S) must
/// have ended: Ya, the longest PadA, the hash (96 + 512 + 20).
pub const REQ1_LIMIT: usize = dh::KEY_LEN + MAX_PAD + HASH_LEN;
/// How many bytes a plaintext BitTorrent handshake and an MSE one can be
/// told apart by: `\x13BitTorrent protocol` versus the start of a key.
pub const SNIFF_LEN: usize = 20;

/// A set of methods: the `crypto_provide` / `crypto_select` bitfield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u32);

impl Methods {
    pub const PLAINTEXT: Methods = Methods(0x01);
    pub const RC4: Methods = Methods(0x02);
    pub const BOTH: Methods = Methods(0x03);

    fn has(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }
}

/// The method the receiver selected for the stream after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Plaintext,
    Rc4,
}

impl Method {
    fn bit(self) -> u32 {
        match self {
            Method::Plaintext => Methods::PLAINTEXT.0,
            Method::Rc4 => Methods::RC4.0,
        }
    }
}

/// Why a handshake failed. Each costs the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MseError {
    /// The peer's public key is 0, 1, P-1 or not below P.
    BadPublicKey,
    /// Receiver: no HASH('req1', S) within [`REQ1_LIMIT`] bytes (not MSE,
    /// or a peer that computed another secret).
    NoReq1,
    /// Initiator: no encrypted VC within 512 bytes of padding after Yb.
    NoVc,
    /// Receiver: the obfuscated info hash is none of ours.
    UnknownInfoHash,
    /// Receiver: VC decrypted to something other than zeros.
    BadVc,
    /// A PadC or PadD length over 512.
    PadTooLong(u16),
    /// Receiver: the initiator offered none of the methods we accept (its
    /// `crypto_provide`).
    NoCommonMethod(u32),
    /// Initiator: the receiver selected a method we did not offer, or
    /// several (its `crypto_select`).
    BadSelect(u32),
}

impl fmt::Display for MseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MseError::BadPublicKey => f.write_str("encryption: degenerate public key"),
            MseError::NoReq1 => write!(
                f,
                "encryption: no req1 hash within {REQ1_LIMIT} bytes (not an MSE handshake)"
            ),
            MseError::NoVc => write!(
                f,
                "encryption: no verification constant within {MAX_PAD} bytes of padding"
            ),
            MseError::UnknownInfoHash => f.write_str("encryption: handshake for another torrent"),
            MseError::BadVc => f.write_str("encryption: verification constant is not zero"),
            MseError::PadTooLong(n) => {
                write!(
                    f,
                    "encryption: padding of {n} bytes, at most {MAX_PAD} allowed"
                )
            }
            MseError::NoCommonMethod(p) => {
                write!(f, "encryption: peer offers methods {p:#x}, none we accept")
            }
            MseError::BadSelect(s) => {
                write!(
                    f,
                    "encryption: peer selected methods {s:#x}, not one we offered"
                )
            }
        }
    }
}

/// The two directions' ciphers of an RC4 stream.
pub struct Ciphers {
    pub send: Rc4,
    pub recv: Rc4,
}

/// A finished handshake.
pub struct Done {
    pub method: Method,
    /// The info hash (SKEY) the connection is for.
    pub info_hash: [u8; 20],
    /// Bytes to send now, before the stream (the receiver's answer).
    pub output: Vec<u8>,
    /// Bytes received past the handshake, decrypted: the initial payload
    /// (receiver), then the start of the stream.
    pub early: Vec<u8>,
    /// The stream's ciphers if RC4 was selected; `None`: plaintext.
    pub ciphers: Option<Ciphers>,
}

/// What [`Handshake::feed`] leaves.
pub enum Step {
    /// More bytes are needed (send [`Handshake::take_output`] first).
    Continue(Box<Handshake>),
    Done(Box<Done>),
}

/// One side of a handshake in progress.
pub struct Handshake {
    initiator: bool,
    /// Initiator: the initial payload to send.
    ia: Vec<u8>,
    /// Receiver: the torrents a connection may be for.
    info_hashes: Vec<[u8; 20]>,
    state: State,
    private: [u8; dh::PRIVATE_LEN],
    /// Our PadC (initiator) or PadD (receiver), drawn at the start.
    pad: Vec<u8>,
    methods: Methods,
    /// Received and not yet used.
    buf: Vec<u8>,
    /// How much of `buf` a search for a marker has ruled out: each byte is
    /// looked at once, however the peer splits its stream (one byte at a
    /// time would otherwise cost a rescan per byte).
    searched: usize,
    /// To send.
    out: Vec<u8>,
    /// Decrypted initial payload (receiver).
    early: Vec<u8>,
    /// Set once the info hash is known (at once for the initiator).
    info_hash: Option<[u8; 20]>,
    /// Set once the keys are known.
    ciphers: Option<Ciphers>,
}

enum State {
    /// Waiting for the peer's 96-byte key.
    PeerKey,
    /// Receiver: looking for HASH('req1', S) past PadA.
    FindReq1 {
        marker: [u8; HASH_LEN],
        secret: Secret,
    },
    /// Receiver: the obfuscated info hash.
    Req2 { secret: Secret },
    /// Receiver: VC, crypto_provide, len(PadC).
    Provide,
    /// Receiver: PadC and len(IA).
    PadC { len: usize, provide: u32 },
    /// Receiver: the initial payload.
    Ia { len: usize, provide: u32 },
    /// Initiator: looking for the encrypted VC past PadB.
    FindVc { marker: [u8; 8] },
    /// Initiator: crypto_select and len(PadD).
    Select,
    /// Initiator: PadD.
    PadD { len: usize, method: Method },
}

type Secret = [u8; dh::KEY_LEN];

/// What one call of `Handshake::advance` did.
enum Progress {
    Stalled,
    Moved,
    Done(Method),
}

impl Handshake {
    /// We dial: offer `methods` for the torrent `info_hash`, with `ia` (at
    /// most 65535 bytes: longer is cut; e.g. our BitTorrent handshake) as
    /// initial payload.
    /// `random` fills buffers with random bytes.
    pub fn initiator(
        info_hash: [u8; 20],
        methods: Methods,
        ia: &[u8],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Handshake {
        let mut h = Handshake::new(methods, random);
        h.initiator = true;
        h.ia = ia[..ia.len().min(usize::from(u16::MAX))].to_vec();
        h.info_hash = Some(info_hash);
        h
    }

    /// We were dialled: accept `methods` for any of `info_hashes`. The
    /// stream stays plaintext when both sides allow it (as libtorrent
    /// chooses by default: the handshake is obfuscated, and bulk data is
    /// not RC4'd at half the speed); RC4 when either side insists.
    pub fn receiver(
        info_hashes: Vec<[u8; 20]>,
        methods: Methods,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Handshake {
        let mut h = Handshake::new(methods, random);
        h.info_hashes = info_hashes;
        h
    }

    /// Both sides start by sending their key and padding.
    fn new(methods: Methods, random: &mut dyn FnMut(&mut [u8])) -> Handshake {
        let mut private = [0u8; dh::PRIVATE_LEN];
        random(&mut private);
        let mut out = dh::public_key(&private).to_vec();
        out.extend_from_slice(&random_pad(random));
        Handshake {
            initiator: false,
            ia: Vec::new(),
            info_hashes: Vec::new(),
            state: State::PeerKey,
            private,
            pad: random_pad(random),
            methods,
            buf: Vec::new(),
            searched: 0,
            out,
            early: Vec::new(),
            info_hash: None,
            ciphers: None,
        }
    }

    /// Where `marker` starts in `buf`, looking only past what earlier
    /// calls ruled out (`buf` is drained as soon as it is found).
    fn find(&mut self, marker: &[u8]) -> Option<usize> {
        let from = self.searched;
        let found = self
            .buf
            .get(from..)?
            .windows(marker.len())
            .position(|w| w == marker)
            .map(|at| from + at);
        self.searched = match found {
            Some(_) => 0,
            None => self.buf.len().saturating_sub(marker.len() - 1).max(from),
        };
        found
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Takes received bytes (any amount: bytes past the handshake come
    /// back in [`Done::early`]).
    pub fn feed(mut self, input: &[u8]) -> Result<Step, MseError> {
        self.buf.extend_from_slice(input);
        loop {
            match self.advance()? {
                Progress::Stalled => return Ok(Step::Continue(Box::new(self))),
                Progress::Moved => {}
                Progress::Done(method) => return Ok(Step::Done(Box::new(self.finish(method)))),
            }
        }
    }

    fn advance(&mut self) -> Result<Progress, MseError> {
        use Progress::{Moved, Stalled};
        match self.state {
            State::PeerKey => {
                let Some(key) = self.take(dh::KEY_LEN) else {
                    return Ok(Stalled);
                };
                let mut theirs = [0u8; dh::KEY_LEN];
                theirs.copy_from_slice(&key);
                let secret =
                    dh::shared_secret(&theirs, &self.private).ok_or(MseError::BadPublicKey)?;
                self.state = if self.initiator {
                    self.send_request(&secret)
                } else {
                    State::FindReq1 {
                        marker: hash(&[b"req1", &secret]),
                        secret,
                    }
                };
            }
            State::FindReq1 { marker, secret } => {
                match self.find(&marker) {
                    Some(at) => self.buf.drain(..at + marker.len()),
                    None if self.buf.len() >= REQ1_LIMIT - dh::KEY_LEN => {
                        return Err(MseError::NoReq1)
                    }
                    None => return Ok(Stalled),
                };
                self.state = State::Req2 { secret };
            }
            State::Req2 { secret } => {
                let Some(req2) = self.take(HASH_LEN) else {
                    return Ok(Stalled);
                };
                let mask = hash(&[b"req3", &secret]);
                let info_hash = *self
                    .info_hashes
                    .iter()
                    .find(|h| {
                        let want = hash(&[b"req2", h.as_slice()]);
                        want.iter()
                            .zip(&mask)
                            .zip(&req2)
                            .all(|((w, m), r)| w ^ m == *r)
                    })
                    .ok_or(MseError::UnknownInfoHash)?;
                self.keys(&secret, info_hash, false);
                self.state = State::Provide;
            }
            State::Provide => {
                let Some(head) = self.take_decrypted(VC.len() + 4 + 2) else {
                    return Ok(Stalled);
                };
                if head[..VC.len()] != VC {
                    return Err(MseError::BadVc);
                }
                let provide = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
                let len = pad_len(head[12], head[13])?;
                self.state = State::PadC { len, provide };
            }
            State::PadC { len, provide } => {
                let Some(pad) = self.take_decrypted(len + 2) else {
                    return Ok(Stalled);
                };
                let len = usize::from(u16::from_be_bytes([pad[len], pad[len + 1]]));
                self.state = State::Ia { len, provide };
            }
            State::Ia { len, provide } => {
                let Some(ia) = self.take_decrypted(len) else {
                    return Ok(Stalled);
                };
                self.early = ia;
                let method = [Method::Plaintext, Method::Rc4]
                    .into_iter()
                    .find(|&m| self.methods.has(m) && Methods(provide).has(m))
                    .ok_or(MseError::NoCommonMethod(provide))?;
                let mut answer = VC.to_vec();
                answer.extend_from_slice(&method.bit().to_be_bytes());
                answer.extend_from_slice(&(self.pad.len() as u16).to_be_bytes());
                answer.extend_from_slice(&self.pad);
                self.encrypt_out(answer);
                return Ok(Progress::Done(method));
            }
            State::FindVc { marker } => {
                match self.find(&marker) {
                    Some(at) => self.buf.drain(..at + marker.len()),
                    None if self.buf.len() >= MAX_PAD + marker.len() => return Err(MseError::NoVc),
                    None => return Ok(Stalled),
                };
                self.state = State::Select;
            }
            State::Select => {
                let Some(head) = self.take_decrypted(4 + 2) else {
                    return Ok(Stalled);
                };
                let select = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                let method = [Method::Plaintext, Method::Rc4]
                    .into_iter()
                    .find(|&m| select == m.bit() && self.methods.has(m))
                    .ok_or(MseError::BadSelect(select))?;
                let len = pad_len(head[4], head[5])?;
                self.state = State::PadD { len, method };
            }
            State::PadD { len, method } => {
                if self.take_decrypted(len).is_none() {
                    return Ok(Stalled);
                }
                return Ok(Progress::Done(method));
            }
        }
        Ok(Moved)
    }

    /// Initiator, once S is known: message 3. Returns the next state.
    fn send_request(&mut self, secret: &Secret) -> State {
        let info_hash = self.info_hash.expect("an initiator knows its info hash");
        self.out.extend_from_slice(&hash(&[b"req1", secret]));
        let req2 = hash(&[b"req2", &info_hash]);
        let req3 = hash(&[b"req3", secret]);
        self.out.extend(req2.iter().zip(&req3).map(|(a, b)| a ^ b));
        self.keys(secret, info_hash, true);
        let mut plain = VC.to_vec();
        plain.extend_from_slice(&self.methods.0.to_be_bytes());
        plain.extend_from_slice(&(self.pad.len() as u16).to_be_bytes());
        plain.extend_from_slice(&self.pad);
        plain.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
        plain.extend_from_slice(&self.ia);
        self.encrypt_out(plain);
        // The receiver's answer starts with VC under its key stream.
        let mut marker = VC;
        self.recv().apply(&mut marker);
        State::FindVc { marker }
    }

    /// Derives both directions' ciphers: A sends with keyA, B with keyB.
    fn keys(&mut self, secret: &Secret, info_hash: [u8; 20], initiator: bool) {
        let cipher = |name: &[u8]| {
            let mut c = Rc4::new(&hash(&[name, secret, &info_hash]));
            c.discard(1024);
            c
        };
        let (a, b) = (cipher(b"keyA"), cipher(b"keyB"));
        let (send, recv) = if initiator { (a, b) } else { (b, a) };
        self.info_hash = Some(info_hash);
        self.ciphers = Some(Ciphers { send, recv });
    }

    fn recv(&mut self) -> &mut Rc4 {
        &mut self.ciphers.as_mut().expect("keys derived").recv
    }

    fn encrypt_out(&mut self, mut plain: Vec<u8>) {
        let ciphers = self.ciphers.as_mut().expect("keys derived");
        ciphers.send.apply(&mut plain);
        self.out.extend_from_slice(&plain);
    }

    /// The next `n` received bytes, if they are here.
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        (self.buf.len() >= n).then(|| self.buf.drain(..n).collect())
    }

    fn take_decrypted(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut bytes = self.take(n)?;
        self.recv().apply(&mut bytes);
        Some(bytes)
    }

    fn finish(mut self, method: Method) -> Done {
        let mut rest = std::mem::take(&mut self.buf);
        let ciphers = match method {
            Method::Rc4 => {
                self.recv().apply(&mut rest);
                self.ciphers
            }
            Method::Plaintext => None,
        };
        let mut early = self.early;
        early.extend_from_slice(&rest);
        Done {
            method,
            info_hash: self.info_hash.expect("keys derived"),
            output: self.out,
            early,
            ciphers,
        }
    }
}

/// SHA-1 of the parts, concatenated.
fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn pad_len(hi: u8, lo: u8) -> Result<usize, MseError> {
    let len = u16::from_be_bytes([hi, lo]);
    if usize::from(len) > MAX_PAD {
        return Err(MseError::PadTooLong(len));
    }
    Ok(usize::from(len))
}

/// 0 to 512 random bytes.
fn random_pad(random: &mut dyn FnMut(&mut [u8])) -> Vec<u8> {
    let mut len = [0u8; 2];
    random(&mut len);
    let mut pad = vec![0u8; usize::from(u16::from_le_bytes(len)) % (MAX_PAD + 1)];
    random(&mut pad);
    pad
}
