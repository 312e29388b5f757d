use super::super::query::Families;
use super::*;
use crate::proto::tracker::{parse_response, parse_scrape};
use std::collections::HashSet;

const H: InfoHash = InfoHash([7; 20]);

fn limits(interval_secs: u64) -> Limits {
    Limits {
        interval: Duration::from_secs(interval_secs),
        ..Limits::default()
    }
}

fn q(id: u8, port: u16) -> AnnounceQuery {
    AnnounceQuery {
        info_hash: H,
        peer_id: [id; 20],
        port,
        uploaded: 0,
        downloaded: 0,
        left: Some(100),
        event: None,
        numwant: 50,
        compact: true,
        no_peer_id: false,
        key: None,
        families: Families::Both,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addrs(r: &Reply) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = r.peers.iter().map(|p| p.addr).collect();
    v.sort();
    v
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn two_peers_see_each_other_not_themselves() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 1);
    let a = s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    assert!(a.peers.is_empty());
    assert_eq!((a.interval, a.min_interval), (60, MIN_INTERVAL));
    assert_eq!((a.complete, a.incomplete), (0, 1));
    let b = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    assert_eq!(addrs(&b), vec![sa("10.0.0.1:1000")]);
    assert_eq!(b.peers[0].peer_id, [1; 20]);
    let a = s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    assert_eq!(addrs(&a), vec![sa("10.0.0.2:2000")]);
    assert_eq!((a.complete, a.incomplete), (0, 2));
    assert_eq!((s.torrent_count(), s.peer_count()), (1, 2));
    // Same client id from another address (its other family): not
    // handed back to itself.
    let a6 = s.announce(&q(1, 1000), ip("fd00::1"), t).unwrap();
    assert_eq!(addrs(&a6), vec![sa("10.0.0.2:2000")]);
}

#[test]
fn stopped_removes_and_never_creates() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 1);
    s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    let stop = AnnounceQuery {
        event: Some(Event::Stopped),
        ..q(1, 1000)
    };
    // From another address, `stopped` removes nothing.
    let r = s.announce(&stop, ip("10.0.0.9"), t).unwrap();
    assert_eq!(r.incomplete, 2);
    let r = s.announce(&stop, ip("10.0.0.1"), t).unwrap();
    assert!(r.peers.is_empty());
    assert_eq!((r.complete, r.incomplete), (0, 1));
    let b = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    assert!(b.peers.is_empty());
    assert_eq!(s.peer_count(), 1);
    let other = AnnounceQuery {
        info_hash: InfoHash([9; 20]),
        ..stop
    };
    s.announce(&other, ip("10.0.0.1"), t).unwrap();
    assert_eq!(s.torrent_count(), 1);
}

#[test]
fn silent_peers_expire_after_two_intervals() {
    let t = Instant::now();
    let secs = Duration::from_secs;
    let mut s = Swarms::new(limits(10), 1);
    s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    s.announce(&q(2, 2000), ip("10.0.0.2"), t + secs(15))
        .unwrap();
    // Exactly two intervals: still there.
    let c = s
        .announce(&q(3, 3000), ip("10.0.0.3"), t + secs(20))
        .unwrap();
    assert_eq!(c.peers.len(), 2);
    let c = s
        .announce(&q(3, 3000), ip("10.0.0.3"), t + secs(21))
        .unwrap();
    assert_eq!(addrs(&c), vec![sa("10.0.0.2:2000")]);
    assert_eq!(c.incomplete, 2);
    assert_eq!(s.peer_count(), 2);
    // The sweep expires silent peers, then forgets the silent swarm.
    s.sweep(t + secs(40));
    assert_eq!((s.torrent_count(), s.peer_count()), (1, 1));
    s.sweep(t + secs(42));
    assert_eq!((s.torrent_count(), s.peer_count()), (0, 0));
    // An empty swarm keeps its `downloaded` count while recently active.
    let done = AnnounceQuery {
        left: Some(0),
        event: Some(Event::Completed),
        ..q(1, 1000)
    };
    s.announce(&done, ip("10.0.0.1"), t + secs(100)).unwrap();
    let stop = AnnounceQuery {
        event: Some(Event::Stopped),
        ..q(1, 1000)
    };
    s.announce(&stop, ip("10.0.0.1"), t + secs(100)).unwrap();
    s.sweep(t + secs(110));
    let want = ScrapeStats {
        complete: 0,
        downloaded: 1,
        incomplete: 0,
    };
    assert_eq!(s.scrape(&[H], t + secs(110)), vec![(H, want)]);
    // Sweeps also happen by themselves, once per interval, with any
    // request.
    let other = AnnounceQuery {
        info_hash: InfoHash([1; 20]),
        ..q(2, 2000)
    };
    s.announce(&other, ip("10.0.0.2"), t + secs(200)).unwrap();
    assert_eq!((s.torrent_count(), s.peer_count()), (1, 1));
}

#[test]
fn seeders_leechers_and_completed_once() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 1);
    s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    let unknown_left = AnnounceQuery {
        left: None,
        ..q(4, 4000)
    };
    s.announce(&unknown_left, ip("10.0.0.4"), t).unwrap();
    let done = AnnounceQuery {
        left: Some(0),
        event: Some(Event::Completed),
        ..q(1, 1000)
    };
    let r = s.announce(&done, ip("10.0.0.1"), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (1, 2));
    s.announce(&done, ip("10.0.0.1"), t).unwrap();
    let stats = s.scrape(&[H], t);
    assert_eq!(
        stats,
        vec![(
            H,
            ScrapeStats {
                complete: 1,
                downloaded: 1,
                incomplete: 2
            }
        )]
    );
    // Back to leeching (new data), then stopped: counts follow.
    s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    let r = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (0, 3));
    let seed = AnnounceQuery {
        left: Some(0),
        ..q(5, 5000)
    };
    let r = s.announce(&seed, ip("10.0.0.5"), t).unwrap();
    assert_eq!((r.complete, r.incomplete), (1, 3));
    // A seeder is not given other seeders.
    let seed2 = AnnounceQuery {
        left: Some(0),
        ..q(6, 6000)
    };
    let r = s.announce(&seed2, ip("10.0.0.6"), t).unwrap();
    assert_eq!(r.peers.len(), 3);
    assert!(!r.peers.iter().any(|p| p.addr.port() >= 5000));
    let leech = s.announce(&q(2, 2000), ip("10.0.0.2"), t).unwrap();
    assert_eq!(leech.peers.len(), 4);
}

#[test]
fn numwant_is_a_bounded_random_subset() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 42);
    for i in 0..100u8 {
        s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), t)
            .unwrap();
    }
    let asker = AnnounceQuery {
        numwant: 10,
        ..q(0, 1000)
    };
    let mut sets = HashSet::new();
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let r = s.announce(&asker, ip("10.0.0.1"), t).unwrap();
        let got = addrs(&r);
        assert_eq!(got.len(), 10);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), 10, "distinct");
        assert!(!got.contains(&sa("10.0.0.1:1000")), "not the asker");
        seen.extend(got.iter().copied());
        sets.insert(got);
    }
    assert!(sets.len() > 45, "{} distinct sets of 50", sets.len());
    assert!(seen.len() > 90, "{} peers ever chosen", seen.len());
    // The cap holds whatever the query says; 0 means none.
    let greedy = AnnounceQuery {
        numwant: 10_000,
        ..q(0, 1000)
    };
    for i in 100..250u8 {
        s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.2"), t)
            .unwrap();
    }
    assert_eq!(
        s.announce(&greedy, ip("10.0.0.1"), t).unwrap().peers.len(),
        MAX_NUMWANT
    );
    let none = AnnounceQuery {
        numwant: 0,
        ..q(0, 1000)
    };
    assert!(s
        .announce(&none, ip("10.0.0.1"), t)
        .unwrap()
        .peers
        .is_empty());
}

#[test]
fn ipv6_peers_go_to_peers6_and_mapped_ipv4_is_ipv4() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 1);
    s.announce(&q(1, 1000), ip("::ffff:10.0.0.1"), t).unwrap();
    s.announce(&q(2, 2000), ip("2001:db8::2"), t).unwrap();
    let r = s.announce(&q(3, 3000), ip("10.0.0.3"), t).unwrap();
    assert_eq!(
        addrs(&r),
        vec![sa("10.0.0.1:1000"), sa("[2001:db8::2]:2000")]
    );
    let body = encode_reply(&r, true, false);
    let v = crate::proto::bencode::decode(&body).unwrap();
    assert_eq!(v.get("peers").unwrap().as_bytes().unwrap().len(), 6);
    assert_eq!(v.get("peers6").unwrap().as_bytes().unwrap().len(), 18);
    let mut parsed = parse_response(&body).unwrap();
    parsed.peers.sort();
    assert_eq!(parsed.peers, addrs(&r));
    assert_eq!((parsed.interval, parsed.min_interval), (Some(60), Some(5)));
    assert_eq!((parsed.complete, parsed.incomplete), (Some(0), Some(3)));
    // A BEP 15 front-end asks for one family only.
    let v4_only = AnnounceQuery {
        families: Families::V4,
        ..q(3, 3000)
    };
    let r4 = s.announce(&v4_only, ip("10.0.0.3"), t).unwrap();
    assert_eq!(addrs(&r4), vec![sa("10.0.0.1:1000")]);
    let v6_only = AnnounceQuery {
        families: Families::V6,
        ..q(3, 3000)
    };
    let r6 = s.announce(&v6_only, ip("10.0.0.3"), t).unwrap();
    assert_eq!(addrs(&r6), vec![sa("[2001:db8::2]:2000")]);
    // Without IPv6 peers there is no peers6 key.
    let body = encode_reply(&r4, true, false);
    assert!(crate::proto::bencode::decode(&body)
        .unwrap()
        .get("peers6")
        .is_none());
}

#[test]
fn dictionary_peers_when_not_compact() {
    let r = Reply {
        interval: 60,
        min_interval: 30,
        complete: 1,
        incomplete: 1,
        peers: vec![
            PeerInfo {
                addr: sa("10.0.0.1:1000"),
                peer_id: [b'a'; 20],
            },
            PeerInfo {
                addr: sa("[::1]:2000"),
                peer_id: [b'b'; 20],
            },
        ],
        warning: Some("hello".into()),
    };
    let body = encode_reply(&r, false, false);
    let parsed = parse_response(&body).unwrap();
    assert_eq!(parsed.peers, vec![sa("10.0.0.1:1000"), sa("[::1]:2000")]);
    assert_eq!(parsed.warning.as_deref(), Some("hello"));
    let v = crate::proto::bencode::decode(&body).unwrap();
    let first = &v.get("peers").unwrap().as_list().unwrap()[0];
    assert_eq!(
        first.get("peer id").unwrap().as_bytes(),
        Some(&[b'a'; 20][..])
    );
    let body = encode_reply(&r, false, true);
    let v = crate::proto::bencode::decode(&body).unwrap();
    let first = &v.get("peers").unwrap().as_list().unwrap()[0];
    assert!(first.get("peer id").is_none());
}

#[test]
fn full_swarm_replaces_the_longest_silent_peer() {
    let t = Instant::now();
    let mut s = Swarms::new(
        Limits {
            max_peers_per_torrent: 3,
            ..limits(60)
        },
        1,
    );
    for i in 1..=3u8 {
        let at = t + Duration::from_secs(u64::from(i));
        s.announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), at)
            .unwrap();
    }
    // Peer 1 re-announces and so is no longer the longest silent.
    s.announce(&q(1, 1001), ip("10.0.0.1"), t + Duration::from_secs(4))
        .unwrap();
    for i in 4..=5u8 {
        let at = t + Duration::from_secs(u64::from(i) + 1);
        let r = s
            .announce(&q(i, 1000 + u16::from(i)), ip("10.0.0.1"), at)
            .unwrap();
        assert_eq!(r.warning, None);
        assert_eq!(r.incomplete, 3);
    }
    assert_eq!(s.peer_count(), 3);
    let r = s
        .announce(&q(9, 9), ip("10.0.0.9"), t + Duration::from_secs(7))
        .unwrap();
    // Peers 2 and 3 were replaced by 4 and 5, then 1 by the asker.
    assert_eq!(addrs(&r), vec![sa("10.0.0.1:1004"), sa("10.0.0.1:1005")]);
    assert_eq!(s.peer_count(), 3);
}

#[test]
fn torrent_and_total_peer_caps() {
    let t = Instant::now();
    let mut s = Swarms::new(
        Limits {
            max_torrents: 2,
            max_peers: 3,
            ..limits(60)
        },
        1,
    );
    let on = |h: u8, id: u8| AnnounceQuery {
        info_hash: InfoHash([h; 20]),
        ..q(id, 1000 + u16::from(id))
    };
    s.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
    s.announce(&on(2, 2), ip("10.0.0.1"), t).unwrap();
    let err = s.announce(&on(3, 3), ip("10.0.0.1"), t).unwrap_err();
    assert_eq!(err, "tracker is full: it already tracks 2 torrents");
    assert_eq!(
        parse_response(&encode_failure(&err))
            .unwrap_err()
            .to_string(),
        "tracker refused: tracker is full: it already tracks 2 torrents"
    );
    assert_eq!(s.torrent_count(), 2);
    s.announce(&on(1, 4), ip("10.0.0.1"), t).unwrap();
    // The total is reached: answered, warned, not stored.
    let r = s.announce(&on(1, 5), ip("10.0.0.1"), t).unwrap();
    assert_eq!(
        r.warning.as_deref(),
        Some("tracker is full: you were not added to the swarm")
    );
    assert_eq!(r.peers.len(), 2);
    assert_eq!(s.peer_count(), 3);
    // Known peers still update; a stopped peer frees its place.
    let r = s.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
    assert_eq!(r.warning, None);
    let stop = AnnounceQuery {
        event: Some(Event::Stopped),
        ..on(1, 1)
    };
    s.announce(&stop, ip("10.0.0.1"), t).unwrap();
    assert_eq!(
        s.announce(&on(1, 5), ip("10.0.0.1"), t).unwrap().warning,
        None
    );
    // Limits of zero store nothing and do not panic.
    let mut zero = Swarms::new(
        Limits {
            max_torrents: 0,
            max_torrents_per_ip: 0,
            max_peers: 0,
            max_peers_per_torrent: 0,
            interval: Duration::ZERO,
        },
        1,
    );
    assert!(zero.announce(&on(1, 1), ip("10.0.0.1"), t).is_err());
    let mut no_peers = Swarms::new(
        Limits {
            max_peers_per_torrent: 0,
            interval: Duration::ZERO,
            ..Limits::default()
        },
        1,
    );
    let r = no_peers.announce(&on(1, 1), ip("10.0.0.1"), t).unwrap();
    assert_eq!((r.interval, r.min_interval, r.incomplete), (1, 1, 0));
    assert!(r.warning.is_some());
}

#[test]
fn scrape_named_all_and_unknown() {
    let t = Instant::now();
    let mut s = Swarms::new(limits(60), 1);
    s.announce(&q(1, 1000), ip("10.0.0.1"), t).unwrap();
    let other = AnnounceQuery {
        info_hash: InfoHash([8; 20]),
        left: Some(0),
        ..q(2, 2000)
    };
    s.announce(&other, ip("10.0.0.2"), t).unwrap();
    let mut all = s.scrape(&[], t);
    all.sort_by_key(|(h, _)| *h);
    assert_eq!(all.len(), 2);
    let body = encode_scrape(&all);
    let a = parse_scrape(&body, &H).unwrap().unwrap();
    assert_eq!((a.complete, a.incomplete, a.downloaded), (0, 1, 0));
    let b = parse_scrape(&body, &InfoHash([8; 20])).unwrap().unwrap();
    assert_eq!((b.complete, b.incomplete), (1, 0));
    let named = s.scrape(&[InfoHash([8; 20]), InfoHash([3; 20])], t);
    assert_eq!(named.len(), 1);
    assert_eq!(parse_scrape(&encode_scrape(&named), &H).unwrap(), None);
    assert_eq!(encode_scrape(&[]), b"d5:filesdee".to_vec());
    // A hash repeated (74 times fit a UDP scrape) is answered once.
    let repeated = s.scrape(&[InfoHash([8; 20]); 74], t);
    assert_eq!(repeated.len(), 1);
}

/// Regression (issue 11, item 8): one client announcing random info
/// hashes used to fill the store, and every new torrent was refused for
/// everybody until the swarms expired. Now it fills only its own quota.
#[test]
fn one_address_cannot_fill_the_store_for_everybody() {
    let t = Instant::now();
    let mut s = Swarms::new(
        Limits {
            max_torrents: 100,
            max_torrents_per_ip: 10,
            ..limits(60)
        },
        1,
    );
    let flood = |n: u8| AnnounceQuery {
        info_hash: InfoHash([n; 20]),
        ..q(1, 1000)
    };
    for n in 0..10 {
        s.announce(&flood(n), ip("10.0.0.66"), t).unwrap();
    }
    let refused = s.announce(&flood(10), ip("10.0.0.66"), t).unwrap_err();
    assert_eq!(
        refused,
        "your address already started 10 of the torrents tracked here"
    );
    // Joining an existing swarm is fine, and so are others' new torrents.
    s.announce(&flood(3), ip("10.0.0.66"), t).unwrap();
    s.announce(&flood(11), ip("10.0.0.2"), t).unwrap();
    // A neighbour in the same IPv6 /64 shares its quota; the tracker's own
    // host has none (every client of a local swarm shares it).
    for n in 20..30 {
        s.announce(&flood(n), ip("2001:db8:1:2::1"), t).unwrap();
    }
    assert!(s.announce(&flood(30), ip("2001:db8:1:2::ffff"), t).is_err());
    s.announce(&flood(31), ip("2001:db8:1:3::1"), t).unwrap();
    for n in 40..60 {
        s.announce(&flood(n), ip("127.0.0.1"), t).unwrap();
    }
    // Once its swarms expire, the address may start new ones again.
    s.sweep(t + Duration::from_secs(600));
    s.announce(&flood(12), ip("10.0.0.66"), t + Duration::from_secs(600))
        .unwrap();
}

#[test]
fn clients_are_keyed_by_address_or_ipv6_64() {
    assert_eq!(client_key(ip("10.1.2.3")), Some(ip("10.1.2.3")));
    assert_eq!(client_key(ip("::ffff:10.1.2.3")), Some(ip("10.1.2.3")));
    assert_eq!(
        client_key(ip("2001:db8:1:2:aa::1")),
        Some(ip("2001:db8:1:2::"))
    );
    assert_eq!(client_key(ip("127.0.0.1")), None);
    assert_eq!(client_key(ip("::1")), None);
    assert_eq!(
        client_key(ip("127.0.0.2")),
        Some(ip("127.0.0.2")),
        "another test host"
    );
}
