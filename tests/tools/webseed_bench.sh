#!/usr/bin/env bash
# Web seeds beside the swarm (issue 14): 256 MiB on 127.0.0.1 from one
# libtorrent seeder alone, one nginx web seed alone, and both, 3 runs of
# each interleaved; prints each run's `done` event (downloaded = from the
# peer, web_seed_bytes = from nginx, seconds). Uses target/release/shoal
# (`cargo build --release` first), ~600 MiB under $TMPDIR, ports 18181-18182.
# The source file is read before each run (warm page cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
S=$PWD/target/release/shoal
D=$(mktemp -d "${TMPDIR:-/tmp}/shoal-webseed-bench.XXXXXX")
chmod 755 "$D" # nginx workers run as nobody
mkdir -p "$D/www" "$D/logs" "$D/tmp" "$D/out"
head -c $((256 * 1024 * 1024)) /dev/urandom > "$D/www/big.bin"
"$S" create "$D/www/big.bin" -o "$D/big.torrent" -q
cat > "$D/nginx.conf" <<NGINX
worker_processes 1;
pid $D/nginx.pid;
error_log $D/logs/error.log;
events { worker_connections 64; }
http {
  access_log $D/logs/access.log;
  client_body_temp_path $D/tmp; proxy_temp_path $D/tmp; fastcgi_temp_path $D/tmp;
  uwsgi_temp_path $D/tmp; scgi_temp_path $D/tmp;
  server { listen 127.0.0.1:18181; root $D/www; }
}
NGINX
timeout 900 /usr/sbin/nginx -p "$D/" -e "$D/logs/error.log" -c "$D/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
mkfifo "$D/lt.in"
timeout 900 /usr/bin/python3 tests/interop/lt.py seed "$D/big.torrent" "$D/www" 18182 \
    --no-tracker --no-utp < "$D/lt.in" > "$D/lt.out" 2> "$D/lt.err" &
lt_pid=$!
exec 3> "$D/lt.in" # lt.py seeds until its stdin closes
trap 'exec 3>&-; kill $nginx_pid; wait $lt_pid $nginx_pid 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 300); do grep -q READY "$D/lt.out" && break; sleep 0.2; done
for run in 1 2 3; do
    for mode in peer web both; do
        case $mode in
        peer) args=(--peer 127.0.0.1:18182) ;;
        web) args=(--web-seed http://127.0.0.1:18181/) ;;
        both) args=(--peer 127.0.0.1:18182 --web-seed http://127.0.0.1:18181/) ;;
        esac
        rm -rf "$D/out" && mkdir "$D/out"
        cat "$D/www/big.bin" > /dev/null
        done_line=$("$S" get "$D/big.torrent" -o "$D/out" --no-listen --json "${args[@]}" 2>/dev/null |
            grep '"event":"done"')
        cmp -s "$D/out/big.bin" "$D/www/big.bin" && check=same || check=DIFFERENT
        echo "$mode run $run: $done_line $check"
    done
done
