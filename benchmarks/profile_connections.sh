#!/bin/bash
# Where a request's CPU goes at 64 and at 10,000 keep-alive connections:
# perf cpu-clock samples of the hello worker and of epoll_hello, each pinned
# to CPU 0 with h2load on CPU 1, 8 s inside a 25 s load. Prints CPU ticks
# and requests per case; `perf report -i OUT/<case>.data --sort dso,sym`
# shows the split (README, "Where the misses stand").
#   ninja -C build-bench examples/hello benchmarks/epoll_hello
#   benchmarks/profile_connections.sh [build-bench] [out-dir]
# Needs perf (linux-perf), h2load (nghttp2-client), taskset; root or
# kernel.perf_event_paranoid <= 1. Only 127.0.0.1 is used.
set -u
B=${1:-build-bench}
OUT=${2:-$(mktemp -d /tmp/cluster-profile.XXXXXX)}
mkdir -p "$OUT"
ulimit -n 20000 || { echo "needs 20,000 descriptors (ulimit -n)" >&2; exit 1; }
server=0 load=0
stop() { [ "$load" != 0 ] && kill "$load" 2>/dev/null; [ "$server" != 0 ] && kill "$server" 2>/dev/null; wait 2>/dev/null; }
trap stop EXIT

run_case() {  # kind (hello|epoll), connections
  local kind=$1 conns=$2 pid port log="$OUT/$1-$2.log"
  if [ "$kind" = hello ]; then
    taskset -c 0 "$B/examples/hello" --host 127.0.0.1 --port 0 --workers 1 --max-connections 20000 \
      --backlog 4096 --idle-timeout 600000 >"$log" 2>&1 &
  else
    taskset -c 0 "$B/benchmarks/epoll_hello" --host 127.0.0.1 --port 0 >"$log" 2>&1 &
  fi
  server=$!
  for _ in $(seq 100); do grep -q "ready\|listening" "$log" && break; sleep 0.1; done
  port=$(grep -o "127.0.0.1:[0-9]*" "$log" | head -1 | cut -d: -f2)
  [ -n "$port" ] || { echo "$kind did not start: $(cat "$log")" >&2; exit 1; }
  if [ "$kind" = hello ]; then pid=$(pgrep -P "$server" | head -1); else pid=$server; fi
  taskset -c 1 timeout 120 h2load --h1 -c "$conns" -t 1 -D 25 --warm-up-time 5 \
    "http://127.0.0.1:$port/" >"$OUT/$kind-$conns.h2load" 2>&1 &
  load=$!
  sleep 12  # past the warm-up and the connection setup
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  perf record -e cpu-clock -g -p "$pid" -o "$OUT/$kind-$conns.data" -- sleep 8 >/dev/null 2>&1
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wait "$load"; load=0
  local requests
  requests=$(awk '/^requests:/ {print $2}' "$OUT/$kind-$conns.h2load")
  kill "$server"; wait "$server" 2>/dev/null; server=0
  # CPU per request: ticks (1/100 s) over the 8 s window, requests at the 25 s run's mean rate.
  python3 -c "t, r = $((t1 - t0)), ${requests:-0}; print(f'$kind $conns conns: {t} ticks in 8 s, {r} requests in 25 s, ' + (f'{t / 100 / (r / 25 * 8) * 1e6:.2f} us/request' if r else 'no requests'))"
}

for conns in 64 10000; do
  run_case hello "$conns"
  run_case epoll "$conns"
done
echo "profiles: $OUT (perf report -i $OUT/hello-10000.data --no-children --sort dso,sym -g none)"
