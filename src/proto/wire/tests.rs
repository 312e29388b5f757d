use super::*;

fn encoded(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

/// One of every message, with edge-size payloads.
fn samples(block: &[u8]) -> Vec<Message<'_>> {
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(0x0102_0304),
        Message::Bitfield(&[]),
        Message::Bitfield(&[0xFF, 0x80]),
        Message::Request {
            index: 1,
            begin: 16384,
            length: 16384,
        },
        Message::Piece {
            index: 7,
            begin: 0,
            data: &[],
        },
        Message::Piece {
            index: 7,
            begin: 32768,
            data: b"block",
        },
        Message::Piece {
            index: u32::MAX,
            begin: u32::MAX,
            data: block,
        },
        Message::Cancel {
            index: 2,
            begin: 3,
            length: 4,
        },
        Message::Port(6881),
        Message::Suggest(5),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject {
            index: 9,
            begin: 8,
            length: 7,
        },
        Message::AllowedFast(42),
        Message::Extended {
            id: 0,
            payload: b"d1:md11:ut_metadatai1eee",
        },
        Message::Extended {
            id: 3,
            payload: &[],
        },
        Message::Unknown {
            id: 42,
            payload: b"whatever",
        },
        Message::Unknown {
            id: 255,
            payload: &[],
        },
    ]
}

#[test]
fn split_point_round_trip_every_message() {
    let block = vec![0xAB; MAX_BLOCK as usize];
    for msg in samples(&block) {
        let bytes = encoded(&msg);
        let len = bytes.len();
        for k in 0..len {
            match decode(&bytes[..k]) {
                Ok(Decoded::NeedMore(n)) => {
                    assert!(n > 0 && k + n <= len, "{msg:?} cut at {k}: need {n}")
                }
                other => panic!("{msg:?} cut at {k}: {other:?}"),
            }
        }
        let Ok(Decoded::Message(back, used)) = decode(&bytes) else {
            panic!("{msg:?} did not decode");
        };
        assert_eq!((back, used), (msg, len));
        assert_eq!(encoded(&back), bytes, "{msg:?}");
        if let Some(id) = msg.id() {
            assert_eq!(decode_payload(id, &bytes[5..]), Ok(msg));
        }
    }
}

#[test]
fn wire_bytes() {
    let cases: &[(Message<'_>, &[u8])] = &[
        (Message::KeepAlive, &[0, 0, 0, 0]),
        (Message::Choke, &[0, 0, 0, 1, 0]),
        (Message::Have(258), &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
        (Message::Port(0x1AE1), &[0, 0, 0, 3, 9, 0x1A, 0xE1]),
        (
            Message::Request {
                index: 1,
                begin: 2,
                length: 3,
            },
            &[0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
        ),
        (
            Message::Extended {
                id: 1,
                payload: b"x",
            },
            &[0, 0, 0, 3, 20, 1, b'x'],
        ),
    ];
    for (msg, want) in cases {
        assert_eq!(encoded(msg), *want, "{msg:?}");
    }
}

#[test]
fn two_frames_decode_one_at_a_time() {
    let mut buf = encoded(&Message::Have(3));
    let first_len = buf.len();
    Message::Piece {
        index: 1,
        begin: 0,
        data: b"abc",
    }
    .encode(&mut buf);
    assert_eq!(
        decode(&buf),
        Ok(Decoded::Message(Message::Have(3), first_len))
    );
    assert_eq!(
        decode(&buf[first_len..]),
        Ok(Decoded::Message(
            Message::Piece {
                index: 1,
                begin: 0,
                data: b"abc"
            },
            buf.len() - first_len
        ))
    );
}

#[test]
fn piece_header_matches_piece_message() {
    let msg = Message::Piece {
        index: 4,
        begin: 16384,
        data: b"hello",
    };
    let mut out = Vec::new();
    encode_piece_header(4, 16384, 5, &mut out);
    assert_eq!(out.len(), 13);
    out.extend_from_slice(b"hello");
    assert_eq!(out, encoded(&msg));
}

/// Frames refused from their header alone: the buffer holds no payload.
#[test]
fn header_errors_table() {
    fn header(len: u32, id: Option<u8>) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.extend(id);
        h
    }
    fn bad(msg: &'static str, expected: u32, actual: u32) -> WireError {
        WireError::BadLength {
            msg,
            expected,
            actual,
        }
    }
    fn range(msg: &'static str, min: u32, max: u32, actual: u32) -> WireError {
        WireError::LengthOutOfRange {
            msg,
            min,
            max,
            actual,
        }
    }
    let too_large = |len| WireError::FrameTooLarge {
        len,
        limit: MAX_FRAME_LEN,
    };
    let cases = [
        (header(2 << 20, None), too_large(2 << 20)),
        (
            header(MAX_FRAME_LEN + 1, None),
            too_large(MAX_FRAME_LEN + 1),
        ),
        (header(u32::MAX, None), too_large(u32::MAX)),
        (header(2, Some(CHOKE)), bad("choke", 1, 2)),
        (header(2, Some(UNCHOKE)), bad("unchoke", 1, 2)),
        (header(5, Some(INTERESTED)), bad("interested", 1, 5)),
        (header(9, Some(NOT_INTERESTED)), bad("not interested", 1, 9)),
        (header(4, Some(HAVE)), bad("have", 5, 4)),
        (header(6, Some(HAVE)), bad("have", 5, 6)),
        (header(12, Some(REQUEST)), bad("request", 13, 12)),
        (header(14, Some(CANCEL)), bad("cancel", 13, 14)),
        (header(1, Some(PORT)), bad("port", 3, 1)),
        (header(1, Some(SUGGEST)), bad("suggest piece", 5, 1)),
        (header(2, Some(HAVE_ALL)), bad("have all", 1, 2)),
        (header(2, Some(HAVE_NONE)), bad("have none", 1, 2)),
        (header(1, Some(REJECT)), bad("reject request", 13, 1)),
        (header(13, Some(ALLOWED_FAST)), bad("allowed fast", 5, 13)),
        (header(8, Some(PIECE)), range("piece", 9, 16393, 8)),
        (
            header(9 + MAX_BLOCK + 1, Some(PIECE)),
            range("piece", 9, 16393, 16394),
        ),
        (
            header(1, Some(EXTENDED)),
            range("extended", 2, MAX_FRAME_LEN, 1),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode(&bytes), Err(want), "{bytes:?}");
    }
}

#[test]
fn decode_payload_checks_length() {
    assert_eq!(
        decode_payload(HAVE, &[0; 3]),
        Err(WireError::BadLength {
            msg: "have",
            expected: 5,
            actual: 4
        })
    );
    let big = vec![0; (MAX_BLOCK + 9) as usize];
    assert_eq!(
        decode_payload(PIECE, &big),
        Err(WireError::LengthOutOfRange {
            msg: "piece",
            min: 9,
            max: 9 + MAX_BLOCK,
            actual: MAX_BLOCK + 10
        })
    );
    assert_eq!(
        decode_payload(99, b"ok"),
        Ok(Message::Unknown {
            id: 99,
            payload: b"ok"
        })
    );
}

#[test]
fn error_messages() {
    let cases = [
        (
            WireError::FrameTooLarge {
                len: 2 << 20,
                limit: MAX_FRAME_LEN,
            },
            "frame length 2097152 exceeds the limit of 1048576 bytes",
        ),
        (
            WireError::BadLength {
                msg: "request",
                expected: 13,
                actual: 12,
            },
            "request message has length 12, expected 13",
        ),
        (
            WireError::LengthOutOfRange {
                msg: "piece",
                min: 9,
                max: 16393,
                actual: 16394,
            },
            "piece message has length 16394, expected 9 to 16393",
        ),
        (
            WireError::BadHandshake {
                actual: b"GET /".to_vec(),
            },
            "handshake starts with \"GET /\", expected \"\\x13BitTorrent protocol\"",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.to_string(), want);
    }
}

fn sample_handshake() -> Handshake {
    Handshake::new(
        [0x11; 20],
        *b"-SH0001-abcdefghijkl",
        (RESERVED_EXTENDED | RESERVED_FAST).to_be_bytes(),
    )
}

#[test]
fn handshake_round_trip_and_split() {
    let hs = sample_handshake();
    let bytes = hs.encode();
    assert_eq!(&bytes[..20], PROTOCOL_PREFIX);
    assert_eq!(bytes[25], 0x10);
    assert_eq!(bytes[27], 0x04);
    for k in 0..HANDSHAKE_LEN {
        assert_eq!(Handshake::decode(&bytes[..k]), Ok(None), "cut at {k}");
    }
    assert_eq!(Handshake::decode(&bytes), Ok(Some(hs)));
    // Bytes after the handshake (the peer's first message) are not ours.
    let mut more = bytes.to_vec();
    more.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(Handshake::decode(&more), Ok(Some(hs)));
}

#[test]
fn handshake_reserved_bits() {
    let hs = sample_handshake();
    assert!(hs.supports_extended() && hs.supports_fast() && !hs.supports_dht());
    let plain = Handshake::new([0; 20], [0; 20], [0; 8]);
    assert!(!plain.supports_extended() && !plain.supports_fast() && !plain.supports_dht());
    let dht = Handshake::new([0; 20], [0; 20], RESERVED_DHT.to_be_bytes());
    assert!(dht.supports_dht() && !dht.supports_fast());
    assert_eq!(dht.reserved, [0, 0, 0, 0, 0, 0, 0, 0x01]);
}

#[test]
fn handshake_errors_table() {
    let mut wrong_name = sample_handshake().encode();
    wrong_name[19] = b'X';
    let cases: &[(&[u8], &[u8])] = &[
        (&[18], &[18]),
        (b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\n"),
        (&wrong_name, b"\x13BitTorrent protocoX"),
        (b"\x13BitTorrent Protocol", b"\x13BitTorrent Protocol"),
    ];
    for (input, seen) in cases {
        assert_eq!(
            Handshake::decode(input),
            Err(WireError::BadHandshake {
                actual: seen.to_vec()
            }),
            "{}",
            input.escape_ascii()
        );
    }
}

/// How a peer worker reads frames from a blocking reader: check the
/// header, then read exactly the payload into a reused buffer.
#[test]
fn blocking_read_recipe() {
    use std::io::Read;

    let sent = samples(b"data");
    let mut stream = Vec::new();
    for msg in &sent {
        msg.encode(&mut stream);
    }
    let mut reader = std::io::Cursor::new(stream);
    let mut payload = Vec::new();
    for want in &sent {
        let mut prefix = [0; 4];
        reader.read_exact(&mut prefix).unwrap();
        let len = frame_len(prefix).unwrap();
        if len == 0 {
            assert_eq!(*want, Message::KeepAlive);
            continue;
        }
        let mut id = [0; 1];
        reader.read_exact(&mut id).unwrap();
        check_frame(id[0], len).unwrap();
        payload.resize(len as usize - 1, 0);
        reader.read_exact(&mut payload).unwrap();
        assert_eq!(decode_payload(id[0], &payload).as_ref(), Ok(want));
    }
    assert_eq!(reader.read(&mut [0; 1]).unwrap(), 0);
}

#[test]
fn names() {
    assert_eq!(Message::KeepAlive.name(), "keep-alive");
    assert_eq!(Message::NotInterested.name(), "not interested");
    assert_eq!(
        Message::Unknown {
            id: 77,
            payload: &[]
        }
        .name(),
        "unknown"
    );
}
