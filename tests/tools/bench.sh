#!/usr/bin/env bash
# make bench: install what the benchmark needs on a fresh Debian machine (as
# .ci/run does; we run as root there), then run tests/tools/bench.py with the
# given arguments (`tests/tools/bench.py --help`; e.g. --quick, --cases hash).
# It builds shoal in release mode, uses several GiB under a temp dir that it
# removes, and wants a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
need=()
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || need+=(python3-libtorrent)
command -v opentracker >/dev/null || need+=(opentracker)
command -v openssl >/dev/null || need+=(openssl)
command -v aria2c >/dev/null || need+=(aria2)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench.sh: missing ${need[*]}: apt-get install -y ${need[*]} (as root)" >&2
        exit 1
    fi
    apt-get update -q
    apt-get install -y -q "${need[@]}"
fi

/usr/bin/python3 tests/tools/bench.py "$@"
# shoal serve: 10/100/1,000 torrents, and 10 libtorrent leechers at once
# from one serve against 10 shoal seed processes (issue 13).
echo
quick=()
case " $* " in *" --quick "*) quick=(--quick) ;; esac
/usr/bin/python3 tests/tools/bench_serve.py "${quick[@]}"
# shoal tracker under load: 8 clients on their own loopback addresses.
echo
echo "== tracker: announce latency and throughput (tests/tools/tracker_load.py)"
/usr/bin/python3 tests/tools/tracker_load.py target/release/shoal --clients 8 --seconds 5
