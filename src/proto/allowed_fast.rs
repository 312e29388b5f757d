//! BEP 6 allowed-fast sets: the pieces a peer may request from us while we
//! choke it, derived from its address and the info hash so that every
//! client computes the same set for the same peer (and a peer gains
//! nothing by reconnecting from another port).

use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// Pieces in the set we give each fast peer (BEP 6's example size).
pub const SET_SIZE: usize = 10;

/// The first `k` pieces of the allowed-fast set for `ip` in a torrent of
/// `num_pieces` pieces, in generation order. BEP 6 defines it for IPv4
/// (by /24); an IPv4-mapped IPv6 address counts as IPv4, and other IPv6
/// peers get no set.
pub fn allowed_fast_set(ip: IpAddr, info_hash: &[u8; 20], num_pieces: u32, k: usize) -> Vec<u32> {
    let IpAddr::V4(v4) = ip.to_canonical() else {
        return Vec::new();
    };
    let k = k.min(num_pieces as usize);
    let mut set = Vec::with_capacity(k);
    let masked = u32::from(v4) & 0xffff_ff00;
    let mut x: Vec<u8> = masked
        .to_be_bytes()
        .iter()
        .chain(info_hash)
        .copied()
        .collect();
    while set.len() < k {
        x = Sha1::digest(&x).to_vec();
        for word in x.chunks_exact(4) {
            if set.len() == k {
                break;
            }
            let y = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
            let index = y % num_pieces;
            if !set.contains(&index) {
                set.push(index);
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BEP 6's own example: 80.4.4.200, info hash 0xaa × 20, 1313 pieces.
    #[test]
    fn matches_the_bep_example() {
        let ip: IpAddr = "80.4.4.200".parse().unwrap();
        let seven = allowed_fast_set(ip, &[0xaa; 20], 1313, 7);
        assert_eq!(seven, [1059, 431, 808, 1217, 287, 376, 1188]);
        let nine = allowed_fast_set(ip, &[0xaa; 20], 1313, 9);
        assert_eq!(nine, [1059, 431, 808, 1217, 287, 376, 1188, 353, 508]);
        // The whole /24 shares a set; mapped IPv4 is IPv4.
        let neighbour: IpAddr = "::ffff:80.4.4.7".parse().unwrap();
        assert_eq!(allowed_fast_set(neighbour, &[0xaa; 20], 1313, 7), seven);
    }

    #[test]
    fn small_torrents_and_ipv6() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut all = allowed_fast_set(ip, &[1; 20], 3, SET_SIZE);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2], "never more pieces than the torrent has");
        assert!(allowed_fast_set(ip, &[1; 20], 0, SET_SIZE).is_empty());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(allowed_fast_set(v6, &[1; 20], 100, SET_SIZE).is_empty());
    }
}
