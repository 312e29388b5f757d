//! Local Service Discovery (BEP 14) between hosts in network namespaces
//! (common::netns) on one bridge: nothing here multicasts outside them.
//!
//! - Two shoal hosts find each other with no tracker and no `--peer`:
//!   `shoal seed` on one, `shoal get` on the other, bytes compared; over
//!   the IPv4 group, and over the IPv6 group between hosts bound to their
//!   IPv6 addresses (where IPv4 discovery is off).
//! - Over IPv6, our announce carries the IPv6 group's `Host` and a
//!   stranger's gives an IPv6 peer address.
//! - Hostile announces cost their sender only: garbage, an announce for
//!   another torrent and a flood from one host are dropped (the flood
//!   beyond its per-source budget), our own announce is not taken for a
//!   peer's, and an honest host's announce still gets through.
//!
//! Not root, or no `ip netns`: SKIPPED, except under `CI=true`.

use crate::common::netns::{self, Netns};
use crate::common::process::External;
use crate::common::{make_torrent, random_bytes, TempDir};
use crossbeam_channel::Receiver;
use shoal::engine::session::{LsdOn, Session};
use shoal::net::lsd::PER_SOURCE_PER_SECOND;
use shoal::net::peer::Encryption;
use shoal::proto::lsd::{Announce, GROUP_V4, GROUP_V6};
use shoal::proto::metainfo::InfoHash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
/// A host checks 4 MiB and is seeding within this.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// The getter hears of the seeder (the seeder dials it on hearing its
/// start-up announce) and fetches 4 MiB within this.
const FETCH_WITHIN: Duration = Duration::from_secs(60);

#[test]
fn two_hosts_find_each_other_with_no_tracker_and_no_peer() {
    if !netns::available("two_hosts_find_each_other_with_no_tracker_and_no_peer") {
        return;
    }
    // The seeder binds its host's address (discovery on that interface);
    // the getter takes the default `[::]` (the interface of the multicast
    // route; its IPv6 group socket fails, IPv6 being off, and IPv4 runs).
    let net = Netns::new(2);
    let seeder_ip = net.host(0).ip.to_string();
    let [seeder, getter] = seed_then_get(&net, "lsd-e2e", &seeder_ip, None);
    let on = format!("local discovery on 239.192.152.143:6771 on {seeder_ip}\n");
    assert!(seeder.contains(&on), "{seeder}");
    assert!(getter.contains("no local discovery over IPv6"), "{getter}");
}

/// The same over the IPv6 group: both hosts bound to their IPv6
/// addresses, so IPv4 discovery is off on both and only the IPv6 group
/// can bring them together.
#[test]
fn two_hosts_find_each_other_over_ipv6() {
    if !netns::available_ipv6("two_hosts_find_each_other_over_ipv6") {
        return;
    }
    let net = Netns::with_ipv6(2);
    let (ip0, ip1) = (ip6(&net, 0).to_string(), ip6(&net, 1).to_string());
    for log in seed_then_get(&net, "lsd-e2e-v6", &ip0, Some(&ip1)) {
        let on = "local discovery on [ff15::efc0:988f]:6771 on interface ";
        assert!(log.contains(on), "{log}");
        assert!(!log.contains("239.192.152.143"), "no IPv4 group: {log}");
    }
}

fn ip6(net: &Netns, i: usize) -> Ipv6Addr {
    net.host(i).ip6.expect("a host with IPv6")
}

/// `shoal seed` on host 0 bound to `seeder_bind`, then `shoal get` on host
/// 1 (bound to `getter_bind`, or the default), with a torrent whose only
/// tracker goes nowhere: the getter must finish through LSD alone.
/// Returns the seeder's and the getter's logs.
fn seed_then_get(
    net: &Netns,
    tag: &str,
    seeder_bind: &str,
    getter_bind: Option<&str>,
) -> [String; 2] {
    let tmp = TempDir::new(tag);
    // The only announce URL goes nowhere (a closed port on a host of the
    // switch that does not exist): peers come from LAN discovery only.
    let nowhere = format!("http://10.77.{}.250:1/announce", net.subnet());
    let data = random_bytes(14, 4 << 20);
    let t = make_torrent("lsd.bin", &[("", &data)], 64 << 10, Some(&nowhere), false);
    let torrent = t.write_torrent(tmp.path());
    let src = t.write_data(&tmp.subdir("src"));
    let out = tmp.subdir("out");
    let (torrent_s, src_s, out_s) = (s(&torrent), s(&src), s(&out));

    let mut seeder = External::start_in(
        "shoal seed (host 0)",
        &net.exec_prefix(0),
        Duration::from_secs(120),
        SHOAL,
        &[
            "seed",
            &torrent_s,
            &src_s,
            "--bind",
            seeder_bind,
            "--json",
            "-vv",
        ],
        tmp.path(),
    );
    seeder.expect_line("{\"event\":\"seeding\"", READY_WITHIN);
    let mut get_args = vec![
        "get",
        &torrent_s,
        "-o",
        &out_s,
        "--json",
        "-vv",
        "--timeout",
        "90s",
    ];
    if let Some(ip) = getter_bind {
        get_args.extend(["--bind", ip]);
    }
    let mut get = External::start_in(
        "shoal get (host 1)",
        &net.exec_prefix(1),
        Duration::from_secs(120),
        SHOAL,
        &get_args,
        tmp.path(),
    );
    let status = get.wait(FETCH_WITHIN);
    assert!(
        status.is_some_and(|s| s.success()),
        "shoal get did not finish through LSD\n{}\n{}",
        get.describe(),
        seeder.describe()
    );
    t.assert_downloaded(&out);
    seeder.stop();
    [seeder.stderr(), get.stderr()]
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A socket on host `i` that sends to the IPv4 group (and, if `listen`,
/// hears it).
fn group_socket(net: &Netns, i: usize, listen: bool) -> UdpSocket {
    net.in_host(i, move || {
        let socket = if listen {
            // Shared with the session's socket on the same host.
            shoal::disk::sys::multicast_socket_v4(GROUP_V4, Ipv4Addr::UNSPECIFIED).unwrap()
        } else {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap()
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
    })
}

/// A session on host `i` listening on `ip`, with local discovery running
/// as `want` says and asking for the addresses heard for `hash`.
fn lsd_session(
    net: &Netns,
    i: usize,
    ip: IpAddr,
    hash: InfoHash,
    want: LsdOn,
) -> (Session, Receiver<SocketAddr>) {
    let session = net.in_host(i, move || {
        let mut session = Session::new(Some((ip, 0).into()), Encryption::Prefer, None).unwrap();
        assert_eq!(session.start_lsd().unwrap(), want, "where LSD runs");
        session
    });
    let heard = session.discover_locally(hash).expect("LSD is on");
    (session, heard)
}

/// The first datagram `watch` hears from `ip`, within 10 s (a session
/// announces at once).
fn first_from(watch: &UdpSocket, ip: IpAddr) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no announce from {ip}");
        let (n, from) = watch.recv_from(&mut buf).expect("the session announces");
        if from.ip() == ip {
            return buf[..n].to_vec();
        }
    }
}

fn announce(port: u16, hash: InfoHash) -> Vec<u8> {
    announce_to(GROUP_V4.into(), port, hash)
}

fn announce_to(group: SocketAddr, port: u16, hash: InfoHash) -> Vec<u8> {
    Announce {
        port,
        info_hashes: vec![hash],
        cookie: Some("someone-else".into()),
    }
    .build(group)
}

/// A session bound to its host's IPv6 address runs discovery on the IPv6
/// group only, on that address's interface: host 1 hears its announce
/// (the IPv6 `Host`, its port), and host 1's announce reaches the session
/// as host 1's IPv6 address with the announced port.
#[test]
fn the_ipv6_group_carries_announces_both_ways() {
    if !netns::available_ipv6("the_ipv6_group_carries_announces_both_ways") {
        return;
    }
    let net = Netns::with_ipv6(2);
    let ours = InfoHash([7; 20]);
    let (host0, host1) = (ip6(&net, 0), ip6(&net, 1));
    let watch = net.in_host(1, || {
        let s = shoal::disk::sys::multicast_socket_v6(GROUP_V6, 0).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    });
    let eth0 = net.in_host(0, move || shoal::disk::sys::interface_index(host0).unwrap());
    let want = LsdOn {
        v4: None,
        v6: Some(eth0),
    };
    let (session, heard) = lsd_session(&net, 0, host0.into(), ours, want);
    let port = session.local_addr().unwrap().port();
    let datagram = first_from(&watch, host0.into());
    let text = String::from_utf8_lossy(&datagram);
    assert!(
        text.contains("\r\nHost: [ff15::efc0:988f]:6771\r\n"),
        "{text}"
    );
    let own = Announce::parse(&datagram).expect("a valid announce");
    assert_eq!((own.port, own.info_hashes), (port, vec![ours]));

    watch
        .send_to(&announce_to(GROUP_V6.into(), 6881, ours), GROUP_V6)
        .unwrap();
    let got = heard
        .recv_timeout(Duration::from_secs(10))
        .expect("host 1's announce reaches the session");
    assert_eq!(got, SocketAddr::from((host1, 6881)));
    // Its threads are woken by connections of its own: from its host.
    net.in_host(0, move || drop(session));
}

#[test]
fn hostile_announces_cost_only_their_sender() {
    if !netns::available("hostile_announces_cost_only_their_sender") {
        return;
    }
    let net = Netns::new(3);
    let ours = InfoHash([7; 20]);
    let (host0, host1, host2) = (net.host(0).ip, net.host(1).ip, net.host(2).ip);
    // On host 0: the session under test, and a socket of the test's that
    // hears the group (to see the session's own announce go out, and so
    // know it has come back to the session by multicast loopback).
    let watch = group_socket(&net, 0, true);
    let want = LsdOn {
        v4: Some(host0),
        v6: None,
    };
    let (session, heard) = lsd_session(&net, 0, host0.into(), ours, want);
    let port = session.local_addr().unwrap().port();
    let own = Announce::parse(&first_from(&watch, host0.into())).expect("a valid announce");
    assert_eq!((own.port, own.info_hashes.clone()), (port, vec![ours]));
    assert!(own.cookie.is_some(), "we mark our announces");

    // Host 1 misbehaves: garbage, an announce for a torrent the session
    // does not have, then a flood of announces for ours.
    let attacker = group_socket(&net, 1, false);
    attacker
        .send_to(b"GET / HTTP/1.1\r\n\r\n", GROUP_V4)
        .unwrap();
    attacker.send_to(&[0xff; 1400], GROUP_V4).unwrap();
    attacker
        .send_to(&announce(1111, InfoHash([9; 20])), GROUP_V4)
        .unwrap();
    for i in 0..200 {
        attacker
            .send_to(&announce(20_000 + i, ours), GROUP_V4)
            .unwrap();
    }
    // Host 2 is honest, and comes after the flood.
    let honest = group_socket(&net, 2, false);
    honest.send_to(&announce(6881, ours), GROUP_V4).unwrap();
    let honest_peer = SocketAddr::from((host2, 6881));

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut from_attacker = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let got = heard
            .recv_timeout(left)
            .expect("the honest host's announce gets through the flood");
        if got == honest_peer {
            break;
        }
        assert_eq!(got.ip(), host1, "only announced peers: {got}");
        from_attacker.push(got);
    }
    // Everything sent before the honest announce has been handled.
    from_attacker.extend(heard.try_iter());
    assert!(
        from_attacker.iter().all(|a| a.port() >= 20_000),
        "garbage and the other torrent's announce give nothing: {from_attacker:?}"
    );
    assert!(
        !from_attacker.is_empty() && from_attacker.len() <= 2 * PER_SOURCE_PER_SECOND as usize,
        "the flood is cut to its budget: {} addresses",
        from_attacker.len()
    );
    // Its threads are woken by connections of its own: from its host.
    net.in_host(0, move || drop(session));
}
