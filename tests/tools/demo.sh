#!/usr/bin/env bash
# make demo: a whole fleet workflow on 127.0.0.1 with one binary.
# Builds shoal, makes a file, creates a torrent, starts `shoal tracker` and
# `shoal seed`, downloads with `shoal get` (progress visible), compares the
# bytes, prints the throughput, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

SIZE_MIB=${DEMO_SIZE_MIB:-256}
cargo build --release --quiet
SHOAL=$PWD/target/release/shoal

work=$(mktemp -d /tmp/shoal-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    /usr/bin/env python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

echo "== making a ${SIZE_MIB} MiB file"
mkdir -p "$work/origin" "$work/fetched"
head -c "$((SIZE_MIB << 20))" /dev/urandom > "$work/origin/artefact.bin"

port=$(free_port)
echo "== shoal tracker on 127.0.0.1:$port"
timeout 600 "$SHOAL" tracker --listen "127.0.0.1:$port" -q &
pids+=($!)

echo "== shoal create"
"$SHOAL" create "$work/origin/artefact.bin" -t "http://127.0.0.1:$port/announce" \
    -o "$work/artefact.torrent"

echo "== shoal seed (in the background)"
timeout 600 "$SHOAL" seed --no-dht "$work/artefact.torrent" "$work/origin" \
    --bind 127.0.0.1 --port 0 -q &
pids+=($!)

echo "== shoal get"
start=$(date +%s.%N)
"$SHOAL" get --no-dht "$work/artefact.torrent" -o "$work/fetched" --bind 127.0.0.1 --port 0 --timeout 300s
end=$(date +%s.%N)

echo "== comparing bytes"
cmp "$work/origin/artefact.bin" "$work/fetched/artefact.bin"
python3 - "$start" "$end" "$SIZE_MIB" <<'PY'
import sys
start, end, mib = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
secs = end - start
print(f"demo ok: {mib} MiB fetched through shoal tracker + shoal seed in {secs:.2f} s "
      f"({mib / secs:.0f} MiB/s), bytes identical")
PY
