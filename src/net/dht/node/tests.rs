use super::*;
use crate::net::dht::limiter;
use crossbeam_channel::unbounded;

fn addr(n: u16) -> SocketAddrV4 {
    SocketAddrV4::new([127, 0, 0, 1].into(), 10_000 + n)
}

/// Nodes on simulated loopback: datagrams are delivered until none is
/// left, time stands still unless a test moves it.
struct Net {
    nodes: HashMap<SocketAddrV4, Node>,
    now: Instant,
}

impl Net {
    /// `n` nodes, all bootstrapped from the first.
    fn new(n: u16) -> Net {
        let now = Instant::now();
        let mut net = Net {
            nodes: HashMap::new(),
            now,
        };
        net.nodes.insert(addr(0), Node::new(Vec::new(), now));
        net.run();
        for i in 1..n {
            net.nodes.insert(addr(i), Node::new(vec![addr(0)], now));
            net.run();
        }
        net
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut flights = Vec::new();
            for (from, node) in &mut self.nodes {
                node.tick(self.now);
                flights.extend(node.take_output().into_iter().map(|(to, d)| (*from, to, d)));
            }
            if flights.is_empty() {
                return;
            }
            for (from, to, d) in flights {
                if let Some(node) = self.nodes.get_mut(&to) {
                    node.receive(&d, from, self.now);
                }
            }
        }
        panic!("the simulated network never went quiet");
    }

    fn node(&mut self, n: u16) -> &mut Node {
        self.nodes.get_mut(&addr(n)).unwrap()
    }
}

/// In 20 nodes bootstrapped from one, a peer announced through one node
/// is found by a lookup from another (nodes are many on one IP).
#[test]
fn a_lookup_finds_what_another_node_announced() {
    let mut net = Net::new(20);
    assert!(
        net.node(19).stats().nodes >= K / 2,
        "{:?}",
        net.node(19).stats()
    );
    let (tx, _rx) = unbounded();
    let hash = [0x5a; 20];
    let now = net.now;
    net.node(3).command(
        Command::Lookup {
            info_hash: hash,
            announce: Some(6881),
            peers: tx,
        },
        now,
    );
    net.run();
    let stored: usize = net.nodes.values().map(|n| n.stats().stored_peers).sum();
    assert!(stored >= K, "announced to the closest: {stored}");
    let (tx, rx) = unbounded();
    net.node(17).command(
        Command::Lookup {
            info_hash: hash,
            announce: None,
            peers: tx,
        },
        now,
    );
    net.run();
    let found: Vec<SocketAddr> = rx.try_iter().flatten().collect();
    assert_eq!(found, vec![SocketAddr::from(([127, 0, 0, 1], 6881))]);
    assert_eq!(net.node(17).stats().lookups, 0, "ended");
}

fn get_peers(tid: &[u8], id: u8) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        body: Body::Query {
            id: [id; 20],
            method: Method::GetPeers { info_hash: [1; 20] },
        },
    }
    .encode()
}

/// A flood of queries from one IP is answered up to the burst and then at
/// the rate; 127.0.0.1 is exempt; memory stays bounded.
#[test]
fn a_query_flood_from_one_ip_is_rate_limited() {
    let t0 = Instant::now();
    let mut node = Node::new(Vec::new(), t0);
    let hostile = SocketAddrV4::new([10, 9, 9, 9].into(), 6881);
    for i in 0..100_000u32 {
        node.receive(&get_peers(&i.to_be_bytes(), i as u8), hostile, t0);
    }
    assert_eq!(node.take_output().len(), limiter::BURST as usize);
    let second = t0 + Duration::from_secs(1);
    for i in 0..1000u32 {
        node.receive(&get_peers(&i.to_be_bytes(), 1), hostile, second);
    }
    assert_eq!(node.take_output().len(), limiter::RATE as usize);
    let stats = node.stats();
    assert!(
        stats.nodes <= 160 * K && stats.limited_ips == 1,
        "{stats:?}"
    );
}

/// A reply with an unknown transaction id, or from another address than
/// the one asked, is dropped and the query still waits for its answer.
#[test]
fn replies_must_match_transaction_id_and_address() {
    let t0 = Instant::now();
    let boot = addr(1);
    let mut node = Node::new(vec![boot], t0);
    let out = node.take_output();
    assert_eq!(out.len(), 1);
    let query = krpc::decode(&out[0].1).unwrap();
    let reply = |tid: &[u8]| {
        Message {
            tid: tid.to_vec(),
            body: Body::Response(Response {
                id: [9; 20],
                ..Response::default()
            }),
        }
        .encode()
    };
    node.receive(&reply(b"zz"), boot, t0);
    node.receive(&reply(&query.tid), addr(2), t0);
    assert_eq!(node.stats().nodes, 0);
    assert_eq!(node.stats().pending, 1);
    node.receive(&reply(&query.tid), boot, t0);
    assert_eq!((node.stats().nodes, node.stats().pending), (1, 0));
}

/// Garbage gets nothing back; a malformed query gets a BEP 5 error; an
/// announce with a forged token is refused and stores nothing.
#[test]
fn garbage_is_dropped_and_bad_queries_get_errors() {
    let t0 = Instant::now();
    let mut node = Node::new(Vec::new(), t0);
    let from = SocketAddrV4::new([10, 0, 0, 7].into(), 1);
    for garbage in [&b"d"[..], b"de", b"d1:y1:re", b"\xff\x00", b"i1e"] {
        node.receive(garbage, from, t0);
    }
    assert!(node.take_output().is_empty());
    node.receive(
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:aa1:y1:qe",
        from,
        t0,
    );
    let out = node.take_output();
    let m = krpc::decode(&out[0].1).unwrap();
    assert!(matches!(
        m.body,
        Body::Error {
            code: krpc::METHOD_UNKNOWN,
            ..
        }
    ));
    let announce = Message {
        tid: b"ab".to_vec(),
        body: Body::Query {
            id: [3; 20],
            method: Method::AnnouncePeer {
                info_hash: [1; 20],
                port: 1,
                implied_port: false,
                token: b"forged".to_vec(),
            },
        },
    };
    node.receive(&announce.encode(), from, t0);
    let m = krpc::decode(&node.take_output()[0].1).unwrap();
    assert!(matches!(
        m.body,
        Body::Error {
            code: krpc::PROTOCOL_ERROR,
            ..
        }
    ));
    assert_eq!(node.stats().stored_peers, 0);
}

/// Unanswered queries time out; an unreachable bootstrap leaves a node
/// that tries again, never more than MAX_PENDING queries outstanding.
#[test]
fn queries_time_out_and_outstanding_ones_are_bounded() {
    let t0 = Instant::now();
    let mut node = Node::new(vec![addr(1)], t0);
    let (tx, _rx) = unbounded();
    for i in 0..MAX_LOOKUPS as u8 + 5 {
        node.command(
            Command::Lookup {
                info_hash: [i; 20],
                announce: None,
                peers: tx.clone(),
            },
            t0,
        );
    }
    assert!(node.stats().lookups <= MAX_LOOKUPS);
    assert!(node.stats().pending <= MAX_PENDING);
    node.tick(t0 + QUERY_TIMEOUT);
    assert_eq!(node.stats().pending, 0);
    assert_eq!(node.stats().lookups, 0, "nobody left to ask");
    node.take_output();
    node.tick(t0 + QUERY_TIMEOUT + REBOOTSTRAP);
    assert_eq!(node.take_output().len(), 1, "bootstraps again");
}
