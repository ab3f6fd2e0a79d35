#!/usr/bin/env bash
# The fanout example's two modes (netactor on one thread; blocking std
# sockets, a thread per concurrent request) against examples/http and, when
# installed, nginx — interleaved rounds, requests/s, client CPU and server
# CPU per request. About 30 s with the defaults.
#
#   bash benches/fanout/run.sh [ROUNDS] [REQUESTS]
#
# Prints a markdown table. Needs target/release/examples/{http,fanout}
# (cargo build --release --example http --example fanout).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
requests=${2:-20000}
bin=${CARGO_TARGET_DIR:-target}/release/examples
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# user+system clock ticks of the given processes
ticks() {
  local t=0
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}

"$bin/http" --listen 127.0.0.1:0 --workers 1 >"$work/http.out" &
pids+=($!)
http_pid=$!
for _ in $(seq 50); do grep -q listening "$work/http.out" && break; sleep 0.1; done
http_addr=$(sed -n 's/^listening on //p' "$work/http.out")
servers=("http $http_addr $http_pid")

if command -v nginx >/dev/null; then
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  server {
    listen 127.0.0.1:18089;
    location /plaintext { default_type text/plain; return 200 "Hello, World!"; }
  }
}
EOF
  nginx -c "$work/nginx/nginx.conf"
  for _ in $(seq 50); do [ -s "$work/nginx/nginx.pid" ] && break; sleep 0.1; done
  master=$(cat "$work/nginx/nginx.pid")
  pids+=("$master")
  sleep 0.3
  worker=$(pgrep -P "$master" | tr '\n' ' ')
  servers+=("nginx 127.0.0.1:18089 $master $worker")
fi

hz=$(getconf CLK_TCK)
echo "| server | concurrency | mode | requests/s (median) | client CPU µs/request | server CPU µs/request |"
echo "|---|---|---|---|---|---|"
for s in "${servers[@]}"; do
  read -r name addr spids <<<"$s"
  for c in 16 64; do
    declare -A rps=() ccpu=() scpu=()
    for r in $(seq "$rounds"); do
      for mode in netactor blocking; do
        flag=""
        [ "$mode" = blocking ] && flag=--blocking
        before=$(ticks $spids)
        line=$("$bin/fanout" --target "$addr" --requests "$requests" --concurrency "$c" \
          --workers 1 $flag | tail -1)
        after=$(ticks $spids)
        ok=$(awk '{for(i=1;i<NF;i++) if($i=="ok") print $(i+1)}' <<<"$line")
        [ "$ok" = "$requests" ] || { echo "failed run: $line" >&2; exit 1; }
        rps[$mode]+="$(awk '{for(i=1;i<NF;i++) if($i=="rps") print $(i+1)}' <<<"$line") "
        ccpu[$mode]+="$(awk -v n="$requests" '{for(i=1;i<NF;i++) if($i=="cpu") printf "%.2f", $(i+1)*1e6/n}' <<<"$line") "
        scpu[$mode]+="$(awk -v d=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN{printf "%.2f", d/hz*1e6/n}') "
      done
    done
    for mode in netactor blocking; do
      med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
      echo "| $name | $c | $mode | $(med "${rps[$mode]}") | $(med "${ccpu[$mode]}") | $(med "${scpu[$mode]}") |"
    done
    unset rps ccpu scpu
  done
done
