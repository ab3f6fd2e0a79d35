#!/usr/bin/env bash
# User-space instructions per echo round trip, counted by callgrind: a
# figure that does not depend on machine noise (the kernel's share, ~93 % of
# every server's CPU on loopback, is not counted — see benches/RESULTS.md).
#
#   bash benches/callgrind/run.sh [SERVERS] [BURST] [WORKERS]
#   SERVERS: comma list of echo, peer_tokio_echo, peer_mio_echo,
#            peer_thread_echo (default: echo,peer_tokio_echo,peer_mio_echo)
#   BURST:   64-byte messages per round trip (default 1: ping-pong)
#   WORKERS: server threads (default 1: deterministic counts; with 2 the
#            poller-role hand-offs make the count vary from run to run)
#
# Each server runs twice under valgrind --tool=callgrind, for 1 000 and for
# 11 000 round trips on one connection; the difference divided by 10 000
# cancels start-up and shutdown. Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVERS=${1:-echo,peer_tokio_echo,peer_mio_echo}
BURST=${2:-1}
WORKERS=${3:-1}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
examples=()
for s in ${SERVERS//,/ }; do examples+=(--example "$s"); done
cargo build --release -q --workspace "${examples[@]}"

count() { # binary rounds -> total instructions
  local bin=$1 rounds=$2 log="$OUT/stdout" file="$OUT/cg.$(basename "$1").$2"
  : >"$log"
  valgrind --tool=callgrind --callgrind-out-file="$file" \
    "$bin" --listen 127.0.0.1:0 --workers "$WORKERS" >"$log" 2>"$OUT/stderr" &
  local pid=$!
  for _ in $(seq 1 300); do grep -q "listening on" "$log" && break; sleep 0.1; done
  local port
  port=$(grep -o "listening on [0-9.]*:[0-9]*" "$log" | sed 's/.*://')
  if [ -z "$port" ]; then kill "$pid"; echo "no listening line from $bin" >&2; exit 1; fi
  timeout 300 python3 benches/callgrind/client.py "$port" "$rounds" "$BURST"
  kill -TERM "$pid"
  wait "$pid" || true
  grep -E "^(summary|totals):" "$file" | head -1 | awk '{print $2}'
}

printf "| server | instructions / round trip (%s × 64 B, %s worker(s)) |\n|---|---:|\n" "$BURST" "$WORKERS"
for s in ${SERVERS//,/ }; do
  bin=target/release/examples/$s
  a=$(count "$bin" 1000)
  b=$(count "$bin" 11000)
  printf "| %s | %d |\n" "$s" $(((b - a) / 10000))
done
