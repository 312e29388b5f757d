//! Property test: random bytes, and random mutations of real torrents and
//! real protocol messages, never panic any parser. Bounded in count and
//! seeded, so a failure reproduces.

use shoal::proto::bencode;
use shoal::proto::bitfield::Bitfield;
use shoal::proto::http;
use shoal::proto::krpc;
use shoal::proto::lsd::{Announce, GROUP_V4, GROUP_V6};
use shoal::proto::metainfo::{InfoHash, Metainfo};
use shoal::proto::mse::{self, Methods, Step};
use shoal::proto::tracker;
use shoal::proto::utp::{self, packet};
use shoal::proto::wire::{self, Handshake};

/// xorshift64*: small, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// One random edit: flip, overwrite with a bencode-significant byte,
/// insert, delete, truncate, or duplicate a span.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"ilde0123456789:-";
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len());
        match rng.below(6) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => v[at] = INTERESTING[rng.below(INTERESTING.len())],
            2 => v.insert(at.min(v.len()), INTERESTING[rng.below(INTERESTING.len())]),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            4 => v.truncate(at),
            _ if !v.is_empty() => {
                let end = (at + 1 + rng.below(32)).min(v.len());
                let span = v[at..end].to_vec();
                v.splice(at..at, span);
            }
            _ => {}
        }
    }
    v
}

fn all_parsers(input: &[u8]) {
    let _ = bencode::decode(input);
    let _ = bencode::decode_prefix(input);
    let _ = shoal::proto::ut_metadata::parse(input);
    let _ = shoal::proto::pex::parse(input);
    let text = String::from_utf8_lossy(input);
    let _ = shoal::proto::magnet::Magnet::parse(&text);
    let part = shoal::proto::web_seed::Part {
        file: 0,
        offset: 1 << 20,
        len: 16384,
        padding: false,
    };
    let _ = shoal::proto::web_seed::check_reply(&part, 206, Some(&text), Some(16384));
    let _ = Metainfo::from_bytes(input);
    let _ = tracker::parse_response(input);
    let _ = tracker::parse_scrape(input, &InfoHash([0; 20]));
    let _ = Handshake::decode(input);
    let _ = packet::decode(input);
    if let Ok(a) = Announce::parse(input) {
        for group in [GROUP_V4.into(), GROUP_V6.into()] {
            assert_eq!(
                Announce::parse(&a.build(group)),
                Ok(a.clone()),
                "an announce round-trips"
            );
        }
    }
    let mut rest = input;
    while let Ok(wire::Decoded::Message(_, used)) = wire::decode(rest) {
        rest = &rest[used..];
    }
    if let Ok(m) = krpc::decode(input) {
        assert_eq!(krpc::decode(&m.encode()), Ok(m));
    }
    for pieces in [0, 1, 7, 8, 9, (input.len() * 8) as u32] {
        let _ = Bitfield::from_bytes(input, pieces);
    }
    let _ = shoal::util::json::parse(input);
    if let Some(end) = http::head_end(input) {
        let head = &input[..end];
        let _ = http::request_line(head);
        let _ = http::body_length(head);
        let _ = http::bearer_token(head);
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "torrent"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert!(seeds.len() > 30, "fixtures found");
    let mut frames = Vec::new();
    for m in [
        wire::Message::Have(7),
        wire::Message::Request {
            index: 1,
            begin: 16384,
            length: 16384,
        },
        wire::Message::Piece {
            index: 1,
            begin: 0,
            data: &[9; 40],
        },
        wire::Message::Bitfield(&[0xff, 0x80]),
        wire::Message::Extended {
            id: 0,
            payload: b"d1:md11:ut_metadatai1eee",
        },
    ] {
        m.encode(&mut frames);
    }
    seeds.push(frames);
    seeds.push(Handshake::new([1; 20], [2; 20], [0; 8]).encode().to_vec());
    seeds.push(
        Announce {
            port: 6881,
            info_hashes: vec![InfoHash([0xab; 20]), InfoHash([0x01; 20])],
            cookie: Some("c00k1e".into()),
        }
        .build(GROUP_V6.into()),
    );
    seeds.push(b"d1:rd2:id20:abcdefghij01234567895:nodes26:mnopqrstuvwxyz123456\x01\x02\x03\x04\x1a\xe15:token2:xy6:valuesl6:axje.uee1:t2:aa1:y1:re".to_vec());
    seeds.push(b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe".to_vec());
    seeds.push(
        br#"{"magnet": "magnet:?xt=urn:btih:x", "dir": ["\u00e9", 1.5e3, null, true]}"#.to_vec(),
    );
    seeds.push(
        b"POST /torrents?dir=a HTTP/1.1\r\nContent-Length: 3\r\nAuthorization: Bearer t\r\n\r\nabc"
            .to_vec(),
    );
    seeds.push(b"d8:intervali1800e5:peers12:\x7f\0\0\x01\x1a\xe1\x7f\0\0\x01\x1a\xe2e".to_vec());
    seeds
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..20_000 {
        all_parsers(&rng.bytes(300));
    }
}

#[test]
fn mutated_real_inputs_never_panic() {
    let mut rng = Rng(0x5eed_0002);
    let seeds = seeds();
    for seed in &seeds {
        for _ in 0..5_000 {
            all_parsers(&mutate(&mut rng, seed));
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in [b'l', b'd'] {
        let deep = vec![open; 1_000_000];
        assert!(bencode::decode(&deep).is_err());
        assert!(Metainfo::from_bytes(&deep).is_err());
    }
}

/// A fixed "random" source, so that both sides of an MSE exchange can be
/// rebuilt identically.
fn fixed(seed: u8) -> impl FnMut(&mut [u8]) {
    let mut n = seed;
    move |buf: &mut [u8]| {
        for b in buf {
            n = n.wrapping_mul(31).wrapping_add(7);
            *b = n;
        }
    }
}

/// The bytes an honest MSE initiator sends to a receiver drawn from
/// `fixed(2)`.
fn honest_mse_flight() -> Vec<u8> {
    let mut a = mse::Handshake::initiator([5; 20], Methods::BOTH, b"ia", &mut fixed(1));
    let mut b = mse::Handshake::receiver(vec![[5; 20]], Methods::BOTH, &mut fixed(2));
    let mut flight = a.take_output();
    match a.feed(&b.take_output()) {
        Ok(Step::Continue(mut a)) => flight.extend(a.take_output()),
        _ => panic!("an honest exchange goes on"),
    }
    flight
}

/// Feeds `input` to the receiver a greeter would run, `chunk` bytes at a
/// time; it never panics, and never keeps waiting once it has seen more
/// than a handshake can hold (the longest: 96 + 512 + 20 + 20 + 14 + 512 +
/// 2 + 65535 bytes of IA).
fn mse_receiver(input: &[u8], chunk: usize) {
    let mut hs = mse::Handshake::receiver(vec![[5; 20]], Methods::BOTH, &mut fixed(2));
    let mut fed = 0;
    for piece in input.chunks(chunk.max(1)) {
        fed += piece.len();
        match hs.feed(piece) {
            Ok(Step::Continue(next)) => hs = *next,
            Ok(Step::Done(_)) | Err(_) => return,
        }
        assert!(fed < mse::REQ1_LIMIT + 20 + 14 + 512 + 2 + 65_535 + chunk);
    }
}

#[test]
fn the_mse_receiver_survives_hostile_bytes() {
    let mut rng = Rng(0x5eed_0003);
    for _ in 0..2_000 {
        mse_receiver(&rng.bytes(1500), 1 + rng.below(700));
    }
    // Mutations of an honest flight reach every state: XOR into the RC4
    // part changes the plaintext fields under it.
    let flight = honest_mse_flight();
    for _ in 0..5_000 {
        mse_receiver(&mutate(&mut rng, &flight), 1 + rng.below(300));
    }
}

/// A valid uTP packet for a connection accepted from SYN id 10 / seq 500
/// that numbers its own packets from 9000.
fn utp_packet(kind: packet::Kind, seq: u16, ack: u16, sack: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let h = packet::Header {
        kind,
        connection_id: 11,
        timestamp_us: 1000,
        timestamp_diff_us: 50,
        wnd_size: 1 << 20,
        seq_nr: seq,
        ack_nr: ack,
    };
    let mut out = Vec::new();
    packet::encode(&h, sack, data, &mut out);
    out
}

/// Random and mutated datagrams fed to a live uTP connection (with data
/// of ours in flight) never panic it, and whatever it makes of them, its
/// buffers stay within their bounds.
#[test]
fn a_utp_connection_survives_hostile_datagrams() {
    use packet::Kind;
    use std::time::{Duration, Instant};
    let mut rng = Rng(0x5eed_0003);
    let seeds = [
        utp_packet(Kind::Data, 501, 8999, None, b"hello"),
        utp_packet(Kind::State, 501, 9003, Some(&[0xff, 0x0f, 0, 0]), b""),
        utp_packet(Kind::Fin, 502, 9001, None, b""),
        utp_packet(Kind::Syn, 500, 0, None, b""),
        utp_packet(Kind::Reset, 501, 9000, None, b""),
        utp_packet(Kind::Data, 530, 9000, Some(&[1; 32]), &[7; 1400]),
    ];
    let config = utp::Config::default();
    let syn = packet::decode(&seeds[3]).unwrap().header;
    for round in 0..200 {
        let t0 = Instant::now();
        let mut now = t0;
        let mut c = utp::Connection::accept(&syn, 9000, config.clone(), t0, t0);
        let mut out = Vec::new();
        c.receive(&seeds[0], now).unwrap();
        c.write(&vec![1u8; 64 * 1024]);
        for i in 0..300 {
            let d = if rng.below(4) == 0 {
                rng.bytes(1500)
            } else {
                let which = rng.below(seeds.len());
                mutate(&mut rng, &seeds[which])
            };
            let _ = c.receive(&d, now);
            now += Duration::from_millis(rng.below(100) as u64);
            c.tick(now);
            while c.poll_transmit(now, &mut out) {
                assert!(
                    out.len() <= 1500,
                    "round {round}, datagram {i}: {} bytes",
                    out.len()
                );
            }
            assert!(c.readable() <= config.recv_buffer);
            let mut buf = [0u8; 4096];
            if rng.below(2) == 0 {
                c.read(&mut buf);
            }
        }
    }
}
