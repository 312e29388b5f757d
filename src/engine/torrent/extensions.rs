//! BEP 10 extension messages on a torrent whose metadata we have: serving
//! the info dictionary (BEP 9 `ut_metadata`) and exchanging peers (BEP 11
//! `ut_pex`, never on a private torrent).

use super::*;
use crate::proto::{pex, ut_metadata};

/// How often a peer is told about our peers at most (BEP 11).
pub(super) const PEX_EVERY: Duration = Duration::from_secs(60);

impl Orchestrator<'_> {
    pub(super) fn on_extension(&mut self, peer: PeerKey, id: u8, payload: &[u8]) {
        let result = match id {
            extension::UT_METADATA => ut_metadata::parse(payload)
                .map(|m| self.on_metadata(peer, m))
                .map_err(|e| e.to_string()),
            extension::UT_PEX if !self.meta.private => pex::parse(payload)
                .map(|m| self.on_pex(m))
                .map_err(|e| e.to_string()),
            // Not offered: ignored, like an unknown message.
            _ => Ok(()),
        };
        if let Err(why) = result {
            self.drop_peer(peer, &why, false);
        }
    }

    /// Serves a metadata piece, up to twice the metadata per peer (anything
    /// else, and data or rejects it sends us, needs no answer).
    fn on_metadata(&mut self, peer: PeerKey, msg: ut_metadata::Message) {
        let ut_metadata::Message::Request(piece) = msg else {
            return;
        };
        let info = &self.meta.info_bytes;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(id) = p.ext.ut_metadata else {
            return;
        };
        let start = piece as usize * ut_metadata::PIECE_LEN;
        let within_budget = p.metadata_sent <= 2 * info.len();
        let reply = if start < info.len() && within_budget {
            let data = &info[start..info.len().min(start + ut_metadata::PIECE_LEN)];
            p.metadata_sent += data.len();
            ut_metadata::Message::Data {
                piece,
                total_size: info.len() as u64,
                data,
            }
        } else {
            ut_metadata::Message::Reject(piece)
        };
        let payload = reply.encode();
        self.send(peer, Command::Extended { id, payload });
    }

    fn on_pex(&mut self, msg: pex::Pex) {
        for addr in msg.added {
            self.learn(addr, Source::Pex);
        }
    }

    /// BEP 11: tells each peer that takes `ut_pex` which peers joined and
    /// left since we last told it, at most every [`PEX_EVERY`] and
    /// [`pex::MAX_SEND`] peers at a time.
    pub(super) fn exchange_peers(&mut self) {
        if self.meta.private {
            return;
        }
        let now = Instant::now();
        let current: HashSet<SocketAddr> = self
            .peers
            .values()
            .filter(|p| p.socket.is_some())
            .filter_map(Peer::dialable)
            .collect();
        let due: Vec<PeerKey> = self.peer_keys(|_, p| {
            p.ext.ut_pex.is_some()
                && p.socket.is_some()
                && p.pex_at.is_none_or(|t| now - t >= PEX_EVERY)
        });
        for k in due {
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            let me = p.dialable();
            let added: Vec<SocketAddr> = current
                .iter()
                .filter(|a| !p.pex_told.contains(a) && Some(**a) != me)
                .take(pex::MAX_SEND)
                .copied()
                .collect();
            let dropped: Vec<SocketAddr> = p
                .pex_told
                .iter()
                .filter(|a| !current.contains(a))
                .take(pex::MAX_SEND)
                .copied()
                .collect();
            p.pex_at = Some(now);
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            p.pex_told.extend(&added);
            for a in &dropped {
                p.pex_told.remove(a);
            }
            let id = p.ext.ut_pex.unwrap_or(extension::UT_PEX);
            let payload = pex::Pex { added, dropped }.encode();
            self.send(k, Command::Extended { id, payload });
        }
    }
}
