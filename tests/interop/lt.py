#!/usr/bin/python3
"""A python3-libtorrent peer on 127.0.0.1 for shoal's interop tests.

Run with /usr/bin/python3 (the Debian interpreter that has python3-libtorrent,
see ../shared/INTEROP.md). Nothing here leaves the loopback interface.

    lt.py seed TORRENT DATA_DIR PORT [--no-tracker] [--no-utp|--utp-only] [--ipv6]
              [--enc POLICY] [--host ADDR] [--dht HOST:PORT] [--pex] [--files I,J,...] [--verbose]
        Serve complete data from DATA_DIR (the directory that holds the
        torrent's name). Prints `READY` once the torrent is seeding and, if it
        has a tracker, the tracker has answered an announce. Data that fails
        the check prints `ERROR ...` to stderr and exits 1 (a harness bug).

    lt.py leech TORRENT|MAGNET OUT_DIR PORT [--peer HOST:PORT] [--no-tracker] [--no-utp|--utp-only]
              [--enc POLICY] [--host ADDR] [--verbose]
        Download into OUT_DIR from the tracker and/or the given peer. Prints
        `DONE <seconds>` once every piece is verified and in its file (the
        seconds count to the verification), then keeps seeding. The given
        peer is dialled again every RECONNECT_S while no peer is connected
        and the download is not done (a failed attempt otherwise waits out
        libtorrent's reconnect backoff, longer than a test's deadline).

    --ipv6: listen and dial on ::1 instead of 127.0.0.1.
    --host ADDR: listen and dial on ADDR (a network namespace's address).
    --dht HOST:PORT: run libtorrent's DHT, bootstrapped from that node only,
    with its filters of nodes on one IP or in private ranges off (every
    node of a test is on 127.0.0.1), and use it for the torrent.
    --pex: exchange peers (BEP 11 ut_pex) with the torrent's peers.
    --files I,J,...: download only these files (0-based, padding files
    counted, as in the torrent's list); DONE once they are complete.
    --verbose: every peer connection, disconnection and error on stderr.
    --no-tracker: ignore the torrent's trackers (never announce; a seeder is
    READY as soon as it seeds). Peers then come from --peer or connect in.
    --enc disabled|enabled|forced: MSE/PE both ways (`out_enc_policy`,
    `in_enc_policy`): plaintext only; either (libtorrent's default); or
    encrypted only, with RC4 (`allowed_enc_level` rc4).
    --no-utp: TCP only. By default libtorrent dials a peer over uTP first and
    falls back to TCP about 4 s later if that peer (or a TCP proxy in front
    of it) does not answer uTP.
    --utp-only: uTP only (`enable_outgoing_tcp`, `enable_incoming_tcp` off).

Both modes run until stdin closes or SIGTERM/SIGINT arrives, then print
`VIA <transports>` (`tcp`, `utp`, comma-separated, or `none`: the kinds of
connection that carried payload either way, from libtorrent's peer info
every tick, and from connections that ended once payload had moved),
`UPLOADED <payload bytes>`, `DOWNLOADED <payload bytes>` and
`MAXRSS_KB <peak resident set of this process>` and exit 0.
Every line on stdout is flushed at once; diagnostics go to stderr.
"""

import os
import resource
import signal
import sys
import threading
import time

import libtorrent as lt

USAGE = (
    "usage: lt.py seed TORRENT DATA_DIR PORT [--no-tracker] [--no-utp|--utp-only] [--ipv6]"
    " [--enc POLICY] [--host ADDR] [--dht HOST:PORT] [--pex] [--files I,J,...] [--super-seed]"
    " [--verbose]\n"
    "       lt.py leech TORRENT OUT_DIR PORT [--peer HOST:PORT] [--no-tracker]"
    " [--no-utp|--utp-only] [--ipv6] [--enc POLICY] [--host ADDR] [--verbose]\n"
)

# --enc: (policy for both directions, allowed level).
ENCRYPTION = {
    "disabled": (lt.enc_policy.disabled, lt.enc_level.both),
    "enabled": (lt.enc_policy.enabled, lt.enc_level.both),
    "forced": (lt.enc_policy.forced, lt.enc_level.rc4),
}

# How often the main loop wakes up to look at stdin, signals and status.
TICK_MS = 100
# Dial --peer again this often while no peer is connected (leech).
RECONNECT_S = 2.0


# peer_info's `utp_socket` flag (libtorrent's peer_flags_t bit 17, between
# holepunched, 1 << 15, and rc4_encrypted, 1 << 19); the 2.0.8 bindings do
# not export it.
UTP_SOCKET = getattr(lt.peer_info, "utp_socket", 1 << 17)
UTP_TYPES = (lt.socket_type_t.utp, lt.socket_type_t.utp_ssl)


def say(*words):
    print(*words, flush=True)


def warn(*words):
    print("lt.py:", *words, file=sys.stderr, flush=True)


def session(port, utp=True, host="127.0.0.1", enc="enabled", verbose=False, dht=None, tcp=True):
    """A session that stays on loopback (127.0.0.1, or ::1 with --ipv6) and
    keeps quiet (INTEROP.md); without `utp`, TCP only; without `tcp`, uTP
    only; MSE as `enc` says;
    with `dht` (HOST:PORT), a DHT bootstrapped from that node only."""
    policy, level = ENCRYPTION[enc]
    alerts = (
        lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.storage_notification
    )
    # Connections (their ends tell `VIA` the transport of a peer that
    # finished between two samples of the peer list).
    alerts |= lt.alert.category_t.connect_notification
    if verbose:
        alerts |= lt.alert.category_t.peer_notification
    dht_settings = {}
    if dht:
        dht_settings = {
            "enable_dht": True,
            "dht_bootstrap_nodes": dht,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_enforce_node_id": False,
            "dht_ignore_dark_internet": False,
            "dht_prefer_verified_node_ids": False,
        }
    return lt.session(
        {
            "listen_interfaces": ("[%s]:%d" if ":" in host else "%s:%d") % (host, port),
            "outgoing_interfaces": host,
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_ip_notifier": False,
            "dht_bootstrap_nodes": "",
            # Every peer in a test shares 127.0.0.1.
            "allow_multiple_connections_per_ip": True,
            "ssrf_mitigation": False,
            # Do not back off from a 127.0.0.1:PORT that failed or finished.
            "min_reconnect_time": 1,
            "max_failcount": 1000,
            # On exit, wait at most a second for the `stopped` announce.
            "stop_tracker_timeout": 1,
            "alert_mask": alerts,
            "enable_outgoing_utp": utp,
            "enable_incoming_utp": utp,
            "enable_outgoing_tcp": tcp,
            "enable_incoming_tcp": tcp,
            "out_enc_policy": int(policy),
            "in_enc_policy": int(policy),
            "allowed_enc_level": int(level),
            "prefer_rc4": enc == "forced",
            **dht_settings,
        }
    )


def add(ses, torrent, save_path, trackers=True, dht=False, pex=False):
    """Adds the torrent, started. Without `trackers` it is added paused, its
    trackers are removed before it can announce, and then it starts. With
    `dht` it uses the session's DHT."""
    if torrent.startswith("magnet:"):
        # The metadata comes from peers (BEP 9).
        atp = lt.parse_magnet_uri(torrent)
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    flags = atp.flags
    if not dht:
        flags |= lt.torrent_flags.disable_dht
    flags |= lt.torrent_flags.disable_lsd
    if not pex:
        flags |= lt.torrent_flags.disable_pex
    flags &= ~lt.torrent_flags.auto_managed
    if trackers:
        flags &= ~lt.torrent_flags.paused
    else:
        flags |= lt.torrent_flags.paused
    atp.flags = flags
    handle = ses.add_torrent(atp)
    if not trackers:
        handle.replace_trackers([])
        handle.resume()
    return handle


def watch_stdin(closed):
    """Sets `closed` when stdin reaches end of file (the test dropped it)."""
    try:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered
        # reader makes the interpreter abort at exit.
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    closed.set()


def parse_peer(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("bad --peer %r, expected HOST:PORT" % text)
    return host, int(port)


def main(argv):
    if len(argv) < 4 or argv[0] not in ("seed", "leech"):
        sys.stderr.write(USAGE)
        return 2
    mode, torrent, data_dir, port = argv[0], argv[1], argv[2], int(argv[3])
    peers = []
    use_trackers = True
    use_utp = True
    use_tcp = True
    host = "127.0.0.1"
    enc = "enabled"
    verbose = False
    dht = None
    pex = False
    only = None
    super_seed = False
    rest = argv[4:]
    while rest:
        if mode == "leech" and rest[0] == "--peer" and len(rest) >= 2:
            peers.append(parse_peer(rest[1]))
            rest = rest[2:]
        elif rest[0] == "--no-tracker":
            use_trackers = False
            rest = rest[1:]
        elif rest[0] == "--no-utp":
            use_utp = False
            rest = rest[1:]
        elif rest[0] == "--utp-only":
            use_tcp = False
            rest = rest[1:]
        elif rest[0] == "--enc" and len(rest) >= 2 and rest[1] in ENCRYPTION:
            enc = rest[1]
            rest = rest[2:]
        elif rest[0] == "--ipv6":
            host = "::1"
            rest = rest[1:]
        elif rest[0] == "--host" and len(rest) >= 2:
            host = rest[1]
            rest = rest[2:]
        elif rest[0] == "--dht" and len(rest) >= 2:
            dht = rest[1]
            rest = rest[2:]
        elif rest[0] == "--pex":
            pex = True
            rest = rest[1:]
        elif rest[0] == "--files" and len(rest) >= 2:
            only = {int(i) for i in rest[1].split(",")}
            rest = rest[2:]
        elif mode == "seed" and rest[0] == "--super-seed":
            super_seed = True
            rest = rest[1:]
        elif rest[0] == "--verbose":
            verbose = True
            rest = rest[1:]
        else:
            sys.stderr.write(USAGE)
            return 2

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()

    ses = session(port, use_utp, host, enc, verbose, dht, use_tcp)
    handle = add(ses, torrent, data_dir, use_trackers, dht is not None, pex)
    if only is not None:
        count = handle.torrent_file().num_files()
        handle.prioritize_files([4 if i in only else 0 for i in range(count)])
    has_tracker = use_trackers and any(True for _ in handle.trackers())
    started = time.monotonic()
    dialled = started
    for peer_host, peer_port in peers:
        handle.connect_peer((peer_host, peer_port))

    via = set()  # kinds of connection that carried payload
    tracker_ok = False
    announced = False  # READY or DONE printed
    finished_at = None  # every piece verified; DONE once the disk has it
    while not stop.is_set():
        ses.wait_for_alert(TICK_MS)
        for a in ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                tracker_ok = True
            elif isinstance(a, lt.cache_flushed_alert) and finished_at is not None:
                # libtorrent 2 verifies pieces from its buffers and writes
                # them later: only now is every byte in the files.
                say("DONE %.3f" % (finished_at - started))
                announced = True
            elif isinstance(a, (lt.tracker_error_alert, lt.torrent_error_alert,
                                lt.file_error_alert)):
                warn(type(a).__name__, a.message())
            elif verbose and isinstance(a, (lt.peer_connect_alert, lt.peer_disconnected_alert,
                                            lt.peer_error_alert, lt.incoming_connection_alert)):
                warn("%.3f" % (time.monotonic() - started), type(a).__name__, a.message())
            if isinstance(a, lt.peer_disconnected_alert):
                # A short transfer may start and end between two samples:
                # a connection that ends once payload has moved counts too.
                moved = handle.status()
                if moved.total_payload_download or moved.total_payload_upload:
                    via.add("utp" if a.socket_type in UTP_TYPES else "tcp")
        for peer in handle.get_peer_info():
            if peer.total_download or peer.total_upload:
                via.add("utp" if peer.flags & UTP_SOCKET else "tcp")
        st = handle.status()
        now = time.monotonic()
        if (peers and finished_at is None and st.num_peers == 0
                and now - dialled >= RECONNECT_S):
            dialled = now
            for peer_host, peer_port in peers:
                handle.connect_peer((peer_host, peer_port))
        if announced:
            continue
        checking = st.state in (
            lt.torrent_status.states.checking_files,
            lt.torrent_status.states.checking_resume_data,
        )
        if mode == "seed":
            if st.is_seeding and (tracker_ok or not has_tracker):
                if super_seed:
                    # Only a torrent that is seeding can super-seed.
                    handle.set_flags(lt.torrent_flags.super_seeding)
                say("READY")
                announced = True
            elif not checking and st.state == lt.torrent_status.states.downloading:
                warn("ERROR data in %s is incomplete: %d of %d pieces"
                     % (data_dir, st.num_pieces, handle.torrent_file().num_pieces()))
                return 1
        elif (st.is_seeding or st.is_finished) and finished_at is None:
            finished_at = time.monotonic()
            handle.flush_cache()

    st = handle.status()
    say("VIA %s" % (",".join(sorted(via)) or "none"))
    say("UPLOADED %d" % st.total_payload_upload)
    say("DOWNLOADED %d" % st.total_payload_download)
    say("MAXRSS_KB %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    # Tell the tracker we are leaving, but do not wait long for it.
    ses.pause()
    del ses
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - one clear line for the test log
        warn("ERROR", e)
        sys.exit(1)
