//! Peers announced to us (`announce_peer`), served to `get_peers`. Pure:
//! the caller passes the time.
//!
//! Bounded: [`PER_HASH`] peers per info hash (a new one replaces the
//! stalest), [`TOTAL`] in all (when full, expired entries are swept and a
//! newcomer that still does not fit is refused), each forgotten
//! [`EXPIRY`] after its last announce.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

pub const EXPIRY: Duration = Duration::from_secs(30 * 60);
pub const PER_HASH: usize = 100;
pub const TOTAL: usize = 10_000;

#[derive(Default)]
pub struct PeerStore {
    swarms: HashMap<[u8; 20], Vec<(SocketAddrV4, Instant)>>,
    total: usize,
}

impl PeerStore {
    pub fn len(&self) -> usize {
        self.total
    }

    pub fn add(&mut self, info_hash: [u8; 20], peer: SocketAddrV4, now: Instant) {
        if let Some(entry) = self
            .swarms
            .get_mut(&info_hash)
            .and_then(|s| s.iter_mut().find(|(a, _)| *a == peer))
        {
            entry.1 = now;
            return;
        }
        if self.total >= TOTAL {
            self.expire(now);
            if self.total >= TOTAL {
                return;
            }
        }
        let swarm = self.swarms.entry(info_hash).or_default();
        if swarm.len() >= PER_HASH {
            if let Some(stalest) = swarm.iter_mut().min_by_key(|(_, at)| *at) {
                *stalest = (peer, now);
            }
            return;
        }
        swarm.push((peer, now));
        self.total += 1;
    }

    /// Up to `n` live peers of `info_hash`, most recently announced first.
    pub fn get(&self, info_hash: &[u8; 20], n: usize, now: Instant) -> Vec<SocketAddrV4> {
        let Some(swarm) = self.swarms.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<&(SocketAddrV4, Instant)> = swarm
            .iter()
            .filter(|(_, at)| now.duration_since(*at) < EXPIRY)
            .collect();
        live.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        live.into_iter().take(n).map(|(a, _)| *a).collect()
    }

    pub fn expire(&mut self, now: Instant) {
        self.swarms.retain(|_, swarm| {
            swarm.retain(|(_, at)| now.duration_since(*at) < EXPIRY);
            !swarm.is_empty()
        });
        self.total = self.swarms.values().map(Vec::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> SocketAddrV4 {
        SocketAddrV4::new((0x0a00_0000 + n).into(), 6881)
    }

    #[test]
    fn bounded_per_hash_and_in_total_and_expiring() {
        let t0 = Instant::now();
        let mut s = PeerStore::default();
        for n in 0..PER_HASH as u32 + 10 {
            s.add([1; 20], peer(n), t0 + Duration::from_millis(n.into()));
        }
        assert_eq!(s.len(), PER_HASH);
        let got = s.get(&[1; 20], 3, t0 + Duration::from_secs(1));
        assert_eq!(got[0], peer(PER_HASH as u32 + 9), "newest first");
        for h in 0..(TOTAL / PER_HASH + 5) as u32 {
            for n in 0..PER_HASH as u32 {
                s.add(
                    (h + 2).to_be_bytes().repeat(5).try_into().unwrap(),
                    peer(n),
                    t0,
                );
            }
        }
        assert_eq!(s.len(), TOTAL, "full: newcomers refused");
        assert!(s
            .get(&[1; 20], 1, t0 + EXPIRY + Duration::from_secs(1))
            .is_empty());
        s.add([9; 20], peer(1), t0 + EXPIRY + Duration::from_secs(1));
        assert_eq!(s.len(), 1, "a full store sweeps the expired");
    }
}
