use super::*;

const ID: &[u8; 20] = b"abcdefghij0123456789";
const HASH: &[u8; 20] = b"mnopqrstuvwxyz123456";

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

/// The examples of BEP 5, byte for byte, both ways.
#[test]
fn bep5_examples_decode_and_encode() {
    let node = NodeInfo {
        id: *HASH,
        addr: addr("1.2.3.4:6881"),
    };
    let table: Vec<(&[u8], Message)> = vec![
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Query {
                    id: *ID,
                    method: Method::Ping,
                },
            },
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Query {
                    id: *ID,
                    method: Method::FindNode { target: *HASH },
                },
            },
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Query {
                    id: *ID,
                    method: Method::GetPeers { info_hash: *HASH },
                },
            },
        ),
        (
            b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Query {
                    id: *ID,
                    method: Method::AnnouncePeer {
                        info_hash: *HASH,
                        port: 6881,
                        implied_port: true,
                        token: b"aoeusnth".to_vec(),
                    },
                },
            },
        ),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Response(Response {
                    id: *HASH,
                    ..Response::default()
                }),
            },
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Response(Response {
                    id: *ID,
                    values: vec![addr("97.120.106.101:11893"), addr("105.100.104.116:28269")],
                    token: Some(b"aoeusnth".to_vec()),
                    ..Response::default()
                }),
            },
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567895:nodes26:mnopqrstuvwxyz123456\x01\x02\x03\x04\x1a\xe1e1:t2:aa1:y1:re",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Response(Response {
                    id: *ID,
                    nodes: vec![node],
                    ..Response::default()
                }),
            },
        ),
        (
            b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
            Message {
                tid: b"aa".to_vec(),
                body: Body::Error {
                    code: 201,
                    message: "A Generic Error Ocurred".into(),
                },
            },
        ),
    ];
    for (bytes, message) in table {
        assert_eq!(
            decode(bytes),
            Ok(message.clone()),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        // announce_peer with implied_port=1 carries a port key we write too.
        assert_eq!(decode(&message.encode()), Ok(message));
    }
}

/// Each defect, the exact error, and whether the sender gets an error
/// reply (queries with a transaction id do).
#[test]
fn defects_are_typed_errors() {
    let table: Vec<(&[u8], KrpcError, bool)> = vec![
        (b"", KrpcError::Bencode(bencode::decode(b"").unwrap_err()), false),
        (b"le", KrpcError::NotADictionary("message"), false),
        (b"d1:y1:qe", KrpcError::Missing("t"), false),
        (b"d1:ti1e1:y1:qe", KrpcError::Invalid("t"), false),
        (b"d1:t2:aa1:y1:xe", KrpcError::UnknownType(b"x".to_vec()), false),
        (b"d1:t2:aa1:y1:qe", KrpcError::Missing("q"), true),
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe",
            KrpcError::UnknownMethod(b"vote".to_vec()),
            true,
        ),
        (
            b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",
            KrpcError::BadLength {
                key: "id",
                expected: 20,
                actual: 3,
            },
            true,
        ),
        (b"d1:a3:abc1:q4:ping1:t2:aa1:y1:qe", KrpcError::NotADictionary("a"), true),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            KrpcError::Invalid("port"),
            true,
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re",
            KrpcError::BadLength {
                key: "nodes",
                expected: 0,
                actual: 3,
            },
            false,
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567896:valuesl2:abee1:t2:aa1:y1:re",
            KrpcError::Invalid("values"),
            false,
        ),
        (b"d1:eli201ee1:t2:aa1:y1:ee", KrpcError::Invalid("e"), false),
    ];
    for (bytes, error, replied) in table {
        let got = decode(bytes).unwrap_err();
        assert_eq!(got.error, error, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(
            got.query_tid.is_some(),
            replied,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert_eq!(KrpcError::UnknownMethod(vec![]).code(), METHOD_UNKNOWN);
    assert_eq!(KrpcError::Missing("q").code(), PROTOCOL_ERROR);
}

/// A datagram of more values than a real one can hold is refused before
/// it costs memory.
#[test]
fn item_budget_bounds_a_datagram() {
    let mut b = b"d1:rd2:id20:abcdefghij01234567896:valuesl".to_vec();
    for _ in 0..MAX_ITEMS {
        b.extend_from_slice(b"0:");
    }
    b.extend_from_slice(b"ee1:t2:aa1:y1:re");
    assert!(matches!(
        decode(&b).unwrap_err().error,
        KrpcError::Bencode(_)
    ));
}

/// Every prefix of every message is an error or the message, never a
/// panic; IPv6 peers in `values` are skipped.
#[test]
fn truncations_never_panic_and_ipv6_values_are_skipped() {
    let m = Message {
        tid: vec![1, 2],
        body: Body::Response(Response {
            id: *ID,
            nodes: vec![NodeInfo {
                id: *HASH,
                addr: addr("10.0.0.1:1"),
            }],
            values: vec![addr("10.0.0.2:2")],
            token: Some(vec![9; 8]),
        }),
    };
    let bytes = m.encode();
    for cut in 0..bytes.len() {
        assert!(decode(&bytes[..cut]).is_err());
    }
    let v6 =
        b"d1:rd2:id20:abcdefghij01234567896:valuesl18:aaaaaaaaaaaaaaaaaa6:axje.uee1:t2:aa1:y1:re";
    let Body::Response(r) = decode(v6).unwrap().body else {
        panic!("a response")
    };
    assert_eq!(r.values, vec![addr("97.120.106.101:11893")]);
}
