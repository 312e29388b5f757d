//! uTP (BEP 29), sans-IO: the packet codec ([`packet`]), one connection's
//! state machine with LEDBAT congestion control ([`connection`]), and the
//! reset that refuses a connection (when uTP is off, or over the caps).
//! libtorrent, qBittorrent and Transmission dial uTP before TCP;
//! Transmission 3.00 never falls back to TCP, so shoal speaks uTP.
//!
//! Owns: bytes and numbers. Does not own: the socket, the clock or the
//! demultiplexing of datagrams to connections ([`crate::net::utp`]).
//!
//! A SYN carries the id the initiator will receive on; every other packet
//! carries the id its receiver receives on (the acceptor receives on the
//! SYN's id + 1). A reset that refuses a SYN carries the SYN's id and
//! acknowledges its sequence number.

pub mod connection;
pub mod packet;

#[cfg(test)]
mod tests;

pub use connection::{Closed, Config, Connection, Rejected, State, Stats};

pub use packet::{HEADER_LEN, VERSION};

/// The fields of a SYN that a reply needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    pub connection_id: u16,
    pub seq_nr: u16,
}

/// `datagram` as a SYN, if it is one.
pub fn parse_syn(datagram: &[u8]) -> Option<Syn> {
    let h = packet::decode(datagram).ok()?.header;
    (h.kind == packet::Kind::Syn).then_some(Syn {
        connection_id: h.connection_id,
        seq_nr: h.seq_nr,
    })
}

/// The `ST_RESET` that refuses `syn`, stamped `now_us` (the sender's
/// clock, in microseconds, wrapping).
pub fn reset_for(syn: Syn, now_us: u32) -> [u8; HEADER_LEN] {
    let reset = packet::Header {
        kind: packet::Kind::Reset,
        connection_id: syn.connection_id,
        timestamp_us: now_us,
        timestamp_diff_us: 0,
        wnd_size: 0,
        seq_nr: 0,
        ack_nr: syn.seq_nr,
    };
    let mut out = Vec::with_capacity(HEADER_LEN);
    packet::encode(&reset, None, &[], &mut out);
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&out);
    h
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    /// A SYN as libtorrent sends it (with an extension after the header).
    fn syn_bytes(id: u16, seq: u16) -> Vec<u8> {
        let mut b = vec![0x41, 2];
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&[0, 1, 2, 3, 0, 0, 0, 0, 0, 0x10, 0, 0]);
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    #[test]
    fn a_syn_is_answered_by_a_reset_for_its_connection() {
        let syn = parse_syn(&syn_bytes(0x1234, 0xbeef)).unwrap();
        assert_eq!(
            syn,
            Syn {
                connection_id: 0x1234,
                seq_nr: 0xbeef
            }
        );
        let r = reset_for(syn, 0x0102_0304);
        assert_eq!(r[0], 0x31, "ST_RESET, version 1");
        assert_eq!(&r[2..4], &[0x12, 0x34], "the SYN's connection id");
        assert_eq!(&r[4..8], &[1, 2, 3, 4]);
        assert_eq!(&r[18..20], &[0xbe, 0xef], "acknowledges the SYN");
    }

    #[test]
    fn anything_else_is_not_a_syn() {
        let mut other = syn_bytes(1, 1);
        for first in [0x01, 0x21, 0x31, 0x42, 0x40, b'd'] {
            other[0] = first;
            assert_eq!(parse_syn(&other), None, "{first:#x}");
        }
        assert_eq!(parse_syn(&syn_bytes(1, 1)[..19]), None, "short");
        assert_eq!(parse_syn(b""), None);
    }
}
