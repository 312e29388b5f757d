#!/bin/bash
# Regenerates every .torrent fixture in testdata/ (and info-hashes.txt)
# deterministically. Needs the Debian packages mktorrent (1.1) and
# python3-libtorrent (2.0.8, used through /usr/bin/python3). No network.
# See testdata/README.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3
HELPER="$HERE/make-fixtures.py"

export LC_ALL=C.UTF-8 TZ=UTC
umask 022

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src="$tmp/src"
out="$tmp/out"
mkdir -p "$out"

# 1. Source content (deterministic bytes, fixed modes and mtimes).
"$PY" "$HELPER" content "$src"

# 2. mktorrent. -d: no creation date, so the output is byte-identical each run.
#    Run from inside $src so the names are the plain basenames.
(
  cd "$src"
  mktorrent -d -t 1 -l 15 \
    -a http://127.0.0.1:6969/announce \
    -a udp://127.0.0.1:6969/announce \
    -c "shoal test fixture: mktorrent single file" \
    -w http://127.0.0.1:8080/files/ \
    -o "$out/mktorrent-single.torrent" \
    single.bin >/dev/null
  mktorrent -d -t 1 -l 15 -p \
    -a http://127.0.0.1:6969/announce \
    -c "shoal test fixture: mktorrent multi-file, private" \
    -o "$out/mktorrent-multi.torrent" \
    shoal-multi >/dev/null
)

# 3. libtorrent torrents, extra-info-keys, hand-written bencode.
"$PY" "$HELPER" build "$src" "$out"

# 4. Load every valid fixture with libtorrent, write info-hashes.txt, report.
"$PY" "$HELPER" verify "$out"

# 5. Only now replace the fixtures in testdata/.
cp "$out"/*.torrent "$out/info-hashes.txt" "$HERE/"
echo "wrote $(ls "$out"/*.torrent | wc -l) torrents and info-hashes.txt to $HERE"
