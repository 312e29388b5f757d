use super::*;
use crate::util::random::Rng;

const P_HEX_PUBLIC_A: &str = "96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e02a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d79896312aad63238c39e1a633821eb693";
const P_HEX_PUBLIC_B: &str = "8f562741c6ccfd456d848c7655bdab6469b509a78f7ec72ed0f2ff5c96364ef6695ad9ba806b565650e08a05802ca8ad739f51dde1f7bf9cd0cceda29478445637743d2dd212526cbc24790f6df3ac88d8b1bc8320af443fe75edb807f3bd7c5";
const P_HEX_SECRET: &str = "ce17231bfc8346c19ee2aef13b8ba9db4fd4cce722698acfcf175df0c1cda51bd8d8c3239da408d05fe475e31fdc2a5401955a4270c5e5fcb9d8317f0e5c74ba78325b9d2c6a8bf5dc67465d64d771980757300a65cdaed7bb2172eb594d5171";

fn hex(s: &str) -> [u8; dh::KEY_LEN] {
    let bytes = crate::util::hex::decode(s).unwrap();
    bytes.try_into().unwrap()
}

/// Private keys 0x0102..14 and 0xfffe..ec; the expected values are
/// python's `pow(2, a, P)`, `pow(2, b, P)` and `pow(pow(2, b, P), a, P)`.
#[test]
fn modexp_matches_python() {
    let a: [u8; 20] = std::array::from_fn(|i| i as u8 + 1);
    let b: [u8; 20] = std::array::from_fn(|i| 0xff - i as u8);
    let (ya, yb) = (dh::public_key(&a), dh::public_key(&b));
    assert_eq!(ya, hex(P_HEX_PUBLIC_A));
    assert_eq!(yb, hex(P_HEX_PUBLIC_B));
    assert_eq!(dh::shared_secret(&yb, &a), Some(hex(P_HEX_SECRET)));
    assert_eq!(dh::shared_secret(&ya, &b), Some(hex(P_HEX_SECRET)));
}

#[test]
fn degenerate_public_keys_are_refused() {
    let private = [7u8; 20];
    let mut one = [0u8; dh::KEY_LEN];
    one[95] = 1;
    let mut p_minus_1 = dh::PRIME;
    p_minus_1[95] -= 1;
    for key in [
        [0u8; dh::KEY_LEN],
        one,
        p_minus_1,
        dh::PRIME,
        [0xff; dh::KEY_LEN],
    ] {
        assert_eq!(dh::shared_secret(&key, &private), None);
    }
}

fn source(seed: u64) -> impl FnMut(&mut [u8]) {
    let mut rng = Rng::new(seed);
    move |buf: &mut [u8]| buf.iter_mut().for_each(|b| *b = rng.next_u64() as u8)
}

const HASH_A: [u8; 20] = [0xaa; 20];
const HASH_B: [u8; 20] = [0xbb; 20];

/// Runs both sides in memory, delivering bytes in `chunk`-sized pieces,
/// each side's stream bytes (`a_then`, `b_then`) sent right after its
/// handshake. Returns both outcomes or the first error.
fn exchange(a: Handshake, b: Handshake, chunk: usize) -> Result<(Done, Done), MseError> {
    let (mut a, mut b) = (Some(a), Some(b));
    let (mut a_done, mut b_done) = (None, None);
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for _ in 0..10_000 {
        if let Some(h) = a.as_mut() {
            to_b.extend(h.take_output());
        }
        if let Some(h) = b.as_mut() {
            to_a.extend(h.take_output());
        }
        if let Some(h) = a.take() {
            let n = chunk.min(to_a.len());
            match h.feed(&to_a.drain(..n).collect::<Vec<_>>())? {
                Step::Continue(h) => a = Some(*h),
                Step::Done(d) => {
                    to_b.extend(&d.output);
                    to_b.extend(encrypt(&d, b"stream from A"));
                    a_done = Some(*d);
                }
            }
        }
        if let Some(h) = b.take() {
            let n = chunk.min(to_b.len());
            match h.feed(&to_b.drain(..n).collect::<Vec<_>>())? {
                Step::Continue(h) => b = Some(*h),
                Step::Done(d) => {
                    to_a.extend(&d.output);
                    to_a.extend(encrypt(&d, b"stream from B"));
                    b_done = Some(*d);
                }
            }
        }
        if a_done.is_some() && b_done.is_some() {
            break;
        }
    }
    let (mut a, mut b) = (a_done.expect("A finished"), b_done.expect("B finished"));
    // What arrived after each side finished is stream.
    let (rest_a, rest_b) = (decrypt(&mut a, &to_a), decrypt(&mut b, &to_b));
    a.early.extend(rest_a);
    b.early.extend(rest_b);
    Ok((a, b))
}

fn encrypt(d: &Done, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    // A copy, so that the cipher in `d` stays where the stream starts for
    // the checks below; the sender's first stream bytes are these.
    if let Some(c) = &d.ciphers {
        c.send.clone().apply(&mut out);
    }
    out
}

fn decrypt(d: &mut Done, data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if let Some(c) = d.ciphers.as_mut() {
        c.recv.apply(&mut out);
    }
    out
}

/// Both methods, with and without an initial payload, bytes delivered one
/// at a time, in odd chunks and all at once.
#[test]
fn initiator_and_receiver_agree() {
    let table = [
        (Methods::BOTH, Methods::BOTH, Method::Plaintext),
        (Methods::RC4, Methods::BOTH, Method::Rc4),
        (Methods::BOTH, Methods::RC4, Method::Rc4),
        (Methods::PLAINTEXT, Methods::BOTH, Method::Plaintext),
        (Methods::BOTH, Methods::PLAINTEXT, Method::Plaintext),
    ];
    let mut seed = 1;
    for (offer, accept, method) in table {
        for ia in [&b""[..], b"\x13BitTorrent protocol and the rest"] {
            for chunk in [1, 7, 1000, usize::MAX] {
                seed += 2;
                let a = Handshake::initiator(HASH_B, offer, ia, &mut source(seed));
                let b = Handshake::receiver(vec![HASH_A, HASH_B], accept, &mut source(seed + 1));
                let (a, b) = exchange(a, b, chunk).unwrap();
                let case = format!("{offer:?} {accept:?} ia {} chunk {chunk}", ia.len());
                assert_eq!((a.method, b.method), (method, method), "{case}");
                assert_eq!((a.info_hash, b.info_hash), (HASH_B, HASH_B), "{case}");
                assert_eq!(a.early, b"stream from B", "{case}");
                assert_eq!(b.early, [ia, b"stream from A"].concat(), "{case}");
                assert_eq!(a.ciphers.is_some(), method == Method::Rc4, "{case}");
                assert_eq!(b.ciphers.is_some(), method == Method::Rc4, "{case}");
            }
        }
    }
}

#[test]
fn refusals_are_typed() {
    let run = |offer, accept, ours: Vec<[u8; 20]>| {
        let a = Handshake::initiator(HASH_A, offer, b"", &mut source(5));
        let b = Handshake::receiver(ours, accept, &mut source(6));
        exchange(a, b, 64).err()
    };
    assert_eq!(
        run(Methods::BOTH, Methods::BOTH, vec![HASH_B]),
        Some(MseError::UnknownInfoHash)
    );
    assert_eq!(
        run(Methods::PLAINTEXT, Methods::RC4, vec![HASH_A]),
        Some(MseError::NoCommonMethod(1))
    );
    assert_eq!(run(Methods::RC4, Methods::RC4, vec![HASH_A]), None);
}

/// A receiver reads at most Ya, 512 bytes of padding and the marker's
/// length before it gives up; bytes that are not MSE never make it wait
/// for more than that.
#[test]
fn the_receiver_gives_up_at_the_spec_limit() {
    let b = Handshake::receiver(vec![HASH_A], Methods::BOTH, &mut source(9));
    let key = dh::public_key(&[3; 20]);
    let mut junk = key.to_vec();
    junk.resize(REQ1_LIMIT - 1, 0x42);
    let b = match b.feed(&junk).unwrap() {
        Step::Continue(b) => b,
        Step::Done(_) => panic!("done on junk"),
    };
    assert!(matches!(b.feed(&[0x42]), Err(MseError::NoReq1)));
}

#[test]
fn the_initiator_gives_up_without_vc_and_on_bad_keys() {
    let a = Handshake::initiator(HASH_A, Methods::BOTH, b"", &mut source(11));
    let mut reply = dh::public_key(&[4; 20]).to_vec();
    reply.resize(dh::KEY_LEN + MAX_PAD + 8, 0x42);
    assert!(matches!(a.feed(&reply), Err(MseError::NoVc)));
    let a = Handshake::initiator(HASH_A, Methods::BOTH, b"", &mut source(12));
    assert!(matches!(
        a.feed(&[0; dh::KEY_LEN]),
        Err(MseError::BadPublicKey)
    ));
}

#[test]
fn errors_read_well() {
    assert_eq!(
        MseError::NoReq1.to_string(),
        "encryption: no req1 hash within 628 bytes (not an MSE handshake)"
    );
    assert_eq!(
        MseError::PadTooLong(600).to_string(),
        "encryption: padding of 600 bytes, at most 512 allowed"
    );
}
