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
