//! The writer: sends what the orchestrator commands. Uploads wait in a
//! queue here, so a `cancel` can still remove them and our `choke` drops
//! them; their data is read from storage on this thread, never the
//! orchestrator's.

use super::transport::Outgoing;
use super::{Command, Event, PeerKey, Settings, WriteError};
use crate::net::stream::Stream;
use crate::proto::extension;
use crate::proto::geometry::Block;
use crate::proto::wire::{self, Message};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::VecDeque;
use std::net::Shutdown;

/// Requests a peer may have queued with us at once; more are ignored. We
/// tell peers this figure as BEP 10 `reqq`; it bounds our memory.
pub const MAX_QUEUED_UPLOADS: usize = 512;
/// Bytes gathered into one `write` call at most.
const WRITE_BATCH: usize = 256 * 1024;

pub(super) fn run(
    peer: PeerKey,
    socket: Stream,
    mut outgoing: Outgoing,
    s: &Settings,
    fast: bool,
    commands: Receiver<Command>,
    events: &Sender<Event>,
) {
    // Shut the socket however the writer ends, a panic included: the
    // reader then sees the end and reports `Closed`, so no peer is left
    // half alive holding a slot.
    struct ShutOnDrop(Stream);
    impl Drop for ShutOnDrop {
        fn drop(&mut self) {
            let _ = self.0.shutdown(Shutdown::Both);
        }
    }
    let guard = ShutOnDrop(socket);
    if let Err(e) = write_loop(peer, &guard.0, &mut outgoing, s, fast, commands, events) {
        log::debug!("peer {peer}: {e}");
    }
}

fn write_loop(
    peer: PeerKey,
    socket: &Stream,
    outgoing: &mut Outgoing,
    s: &Settings,
    fast: bool,
    commands: Receiver<Command>,
    events: &Sender<Event>,
) -> Result<(), WriteError> {
    let mut out = Vec::with_capacity(WRITE_BATCH);
    let mut uploads: VecDeque<Block> = VecDeque::new();
    loop {
        out.clear();
        // Wait only when there is nothing to upload.
        let first = if uploads.is_empty() {
            match commands.recv_timeout(s.keepalive) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    Message::KeepAlive.encode(&mut out);
                    None
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        } else {
            None
        };
        for cmd in first.into_iter().chain(commands.try_iter()) {
            // BEP 6: every request we drop unserved is rejected, so a fast
            // peer asks elsewhere at once (others just stop waiting).
            let mut dropped = Vec::new();
            match cmd {
                Command::Upload(b) if uploads.len() < MAX_QUEUED_UPLOADS => uploads.push_back(b),
                Command::Upload(b) => {
                    log::debug!("peer {peer}: upload queue full, refusing {b:?}");
                    dropped.push(b);
                }
                Command::DropUpload(b) => drain(&mut uploads, |q| *q == b, &mut dropped),
                Command::DropPiece(i) => drain(&mut uploads, |q| q.piece.get() == i, &mut dropped),
                Command::Choke => {
                    Message::Choke.encode(&mut out);
                    dropped.extend(uploads.drain(..));
                }
                other => encode(&other, &mut out),
            }
            if fast {
                for b in dropped {
                    encode(&Command::Reject(b), &mut out);
                }
            }
            if out.len() >= WRITE_BATCH {
                break;
            }
        }
        let mut bytes = 0;
        let mut pieces = Vec::new();
        while out.len() < WRITE_BATCH {
            let Some(b) = uploads.pop_front() else { break };
            let reader = s.storage.get().ok_or(WriteError::NoStorage)?;
            wire::encode_piece_header(b.piece.get(), b.begin, b.len, &mut out);
            // Read straight into the batch: one copy, page cache → batch.
            let at = out.len();
            out.resize(at + b.len as usize, 0);
            reader
                .read(b.piece, b.begin, &mut out[at..])
                .map_err(WriteError::Read)?;
            bytes += b.len;
            pieces.push(b.piece.get());
        }
        crate::net::throttle::charge(&s.throttles.up, bytes as usize);
        if !out.is_empty() {
            outgoing
                .write_all(socket, &mut out)
                .map_err(WriteError::Io)?;
        }
        if bytes > 0 {
            let _ = events.send(Event::Uploaded {
                peer,
                bytes,
                pieces,
            });
        }
    }
}

/// Moves the queued uploads that match `which` to `out`.
fn drain(uploads: &mut VecDeque<Block>, which: impl Fn(&Block) -> bool, out: &mut Vec<Block>) {
    uploads.retain(|q| {
        let keep = !which(q);
        if !keep {
            out.push(*q);
        }
        keep
    });
}

/// Appends one control message's frame (uploads are handled by the
/// writer's queue).
fn encode(cmd: &Command, out: &mut Vec<u8>) {
    let msg = match cmd {
        Command::Choke => Message::Choke,
        Command::Unchoke => Message::Unchoke,
        Command::Interested => Message::Interested,
        Command::NotInterested => Message::NotInterested,
        Command::Have(i) => Message::Have(*i),
        Command::Bitfield(bytes) => Message::Bitfield(bytes),
        Command::HaveAll => Message::HaveAll,
        Command::HaveNone => Message::HaveNone,
        Command::AllowedFast(i) => Message::AllowedFast(*i),
        Command::Port(port) => Message::Port(*port),
        Command::Reject(b) => Message::Reject {
            index: b.piece.get(),
            begin: b.begin,
            length: b.len,
        },
        Command::ExtensionHandshake(payload) => Message::Extended {
            id: extension::HANDSHAKE_ID,
            payload,
        },
        Command::Extended { id, payload } => Message::Extended { id: *id, payload },
        Command::Haves(pieces) => {
            for &p in pieces {
                Message::Have(p).encode(out);
            }
            return;
        }
        Command::Requests(blocks) => {
            for b in blocks {
                Message::Request {
                    index: b.piece.get(),
                    begin: b.begin,
                    length: b.len,
                }
                .encode(out);
            }
            return;
        }
        Command::Cancel(b) => Message::Cancel {
            index: b.piece.get(),
            begin: b.begin,
            length: b.len,
        },
        Command::Upload(_) | Command::DropUpload(_) | Command::DropPiece(_) => return,
    };
    msg.encode(out);
}
