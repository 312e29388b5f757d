//! Local Service Discovery (BEP 14) between hosts in network namespaces
//! (common::netns) on one bridge: nothing here multicasts outside them.
//!
//! - Two shoal hosts find each other with no tracker and no `--peer`:
//!   `shoal seed` on one, `shoal get` on the other, bytes compared.
//! - Hostile announces cost their sender only: garbage, an announce for
//!   another torrent and a flood from one host are dropped (the flood
//!   beyond its per-source budget), our own announce is not taken for a
//!   peer's, and an honest host's announce still gets through.
//!
//! Not root, or no `ip netns`: SKIPPED, except under `CI=true`.

use crate::common::netns::{self, Netns};
use crate::common::process::External;
use crate::common::{make_torrent, random_bytes, TempDir};
use shoal::engine::session::Session;
use shoal::net::lsd::PER_SOURCE_PER_SECOND;
use shoal::net::peer::Encryption;
use shoal::proto::lsd::{Announce, GROUP_V4};
use shoal::proto::metainfo::InfoHash;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
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
    let tmp = TempDir::new("lsd-e2e");
    // The only announce URL goes nowhere (a closed port on a host of the
    // switch that does not exist): peers come from LAN discovery only.
    let net = Netns::new(2);
    let nowhere = format!("http://10.77.{}.250:1/announce", net.subnet());
    let data = random_bytes(14, 4 << 20);
    let t = make_torrent("lsd.bin", &[("", &data)], 64 << 10, Some(&nowhere), false);
    let torrent = t.write_torrent(tmp.path());
    let src = t.write_data(&tmp.subdir("src"));
    let out = tmp.subdir("out");
    let (torrent_s, src_s, out_s) = (s(&torrent), s(&src), s(&out));

    // The seeder binds its host's address (discovery on that interface);
    // the getter takes the default `[::]` (the interface of the multicast
    // route).
    let seeder_ip = net.host(0).ip.to_string();
    let mut seeder = External::start_in(
        "shoal seed (host 0)",
        &net.exec_prefix(0),
        Duration::from_secs(120),
        SHOAL,
        &[
            "seed", &torrent_s, &src_s, "--bind", &seeder_ip, "--json", "-vv",
        ],
        tmp.path(),
    );
    seeder.expect_line("{\"event\":\"seeding\"", READY_WITHIN);
    let mut get = External::start_in(
        "shoal get (host 1)",
        &net.exec_prefix(1),
        Duration::from_secs(120),
        SHOAL,
        &[
            "get",
            &torrent_s,
            "-o",
            &out_s,
            "--json",
            "-vv",
            "--timeout",
            "90s",
        ],
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
}

fn s(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// A socket on host `i` that sends to the group (and, if `listen`, hears
/// it).
fn group_socket(net: &Netns, i: usize, listen: bool) -> UdpSocket {
    net.in_host(i, move || {
        let socket = if listen {
            // Shared with the session's socket on the same host.
            let s = shoal::disk::sys::multicast_socket_v4(GROUP_V4, Ipv4Addr::UNSPECIFIED).unwrap();
            s.join_multicast_v4(GROUP_V4.ip(), &Ipv4Addr::UNSPECIFIED)
                .unwrap();
            s
        } else {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap()
        };
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket
    })
}

fn announce(port: u16, hash: InfoHash) -> Vec<u8> {
    Announce {
        port,
        info_hashes: vec![hash],
        cookie: Some("someone-else".into()),
    }
    .build()
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
    let session = net.in_host(0, move || {
        let mut session = Session::new(Some((host0, 0).into()), Encryption::Prefer, None).unwrap();
        assert_eq!(session.start_lsd().unwrap(), host0);
        session
    });
    let port = session.local_addr().unwrap().port();
    let _inbound = session.register(ours);
    let heard = session.discover_locally(ours).expect("LSD is on");
    let mut buf = [0u8; 1500];
    let own = loop {
        let (n, from) = watch.recv_from(&mut buf).expect("the session announces");
        if from.ip() == host0 {
            break Announce::parse(&buf[..n]).expect("a valid announce");
        }
    };
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
