//! The DHT (BEP 5): a node that finds peers for torrents without a
//! tracker and serves the same to others. The session owns one; it runs
//! on the peer port's UDP socket ([`crate::net::udp_port`]), and torrents
//! talk to it through a [`Dht`] handle.
//!
//! Owns: the node's state machine ([`node`]) and its pure parts
//! ([`routing`] table, `get_peers` [`tokens`], the announced-peer
//! [`store`], the per-IP query [`limiter`], iterative [`lookup`]s), and
//! the nodes saved between runs ([`saved`]). Does not own: the socket,
//! or when a torrent looks for peers (the orchestrator decides).

mod limiter;
mod lookup;
mod node;
mod routing;
pub mod saved;
mod store;
mod tokens;

pub use node::{Command, Node, Stats};

use crossbeam_channel::{bounded, Sender, TrySendError};
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The usual public routers, used when no bootstrap node is given.
pub const ROUTERS: [&str; 3] = [
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
];

/// Commands queued for the node at most (torrents ask every few seconds
/// at most; a full queue loses the request, which is retried later).
pub const COMMAND_QUEUE: usize = 256;

/// How the node starts.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `HOST:PORT` of bootstrap nodes (resolved on the node's thread).
    pub bootstrap: Vec<String>,
    /// Where the routing table is kept between runs (loaded at start as
    /// more bootstrap nodes, written at exit).
    pub state_file: Option<PathBuf>,
}

impl Config {
    /// The bootstrap addresses: `bootstrap` resolved (IPv4 only), then the
    /// saved nodes.
    pub fn resolve(&self) -> Vec<SocketAddrV4> {
        let mut addrs: Vec<SocketAddrV4> = Vec::new();
        for name in &self.bootstrap {
            match name.to_socket_addrs() {
                Ok(found) => addrs.extend(found.filter_map(|a| match a {
                    SocketAddr::V4(v4) => Some(v4),
                    SocketAddr::V6(_) => None,
                })),
                Err(e) => log::info!("dht: bootstrap {name}: {e}"),
            }
        }
        if let Some(path) = &self.state_file {
            addrs.extend(saved::load(path));
        }
        addrs
    }
}

/// A torrent's (or the CLI's) way to the node. Never blocks.
#[derive(Clone)]
pub struct Dht {
    commands: Sender<Command>,
    /// The UDP port the node listens on (for `PORT` messages).
    pub port: u16,
}

impl Dht {
    /// A handle and the queue the node reads.
    pub fn channel(port: u16) -> (Dht, crossbeam_channel::Receiver<Command>) {
        let (commands, rx) = bounded(COMMAND_QUEUE);
        (Dht { commands, port }, rx)
    }

    fn send(&self, cmd: Command) {
        if let Err(TrySendError::Full(_)) = self.commands.try_send(cmd) {
            log::info!("dht: node busy; request dropped");
        }
    }

    /// Looks for peers of `info_hash` (batches go to `peers`), then
    /// announces `announce` if given.
    pub fn lookup(
        &self,
        info_hash: [u8; 20],
        announce: Option<u16>,
        peers: Sender<Vec<SocketAddr>>,
    ) {
        self.send(Command::Lookup {
            info_hash,
            announce,
            peers,
        });
    }

    /// A node learnt from a peer's `PORT` message.
    pub fn add_node(&self, addr: SocketAddrV4) {
        self.send(Command::AddNode(addr));
    }

    /// The node's counters, if it answers within `wait`.
    pub fn stats(&self, wait: Duration) -> Option<Stats> {
        let (tx, rx) = bounded(1);
        self.send(Command::Stats(tx));
        rx.recv_timeout(wait).ok()
    }
}
