# Shared helpers for bench/*.sh: start nginx and adplatform pinned to a core, run wrk pinned to
# another, and measure server CPU time per request from /proc/PID/stat.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
AP_BIN=${AP_BIN:-$ROOT/build/adplatform}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
DURATION=${DURATION:-10}
WORK=$(mktemp -d /tmp/apbench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; return 1
}

# start_nginx PORT WORKERS CPUSPEC BODY_DIRECTIVE -> sets NGINX_PID (master); all pids in NGINX_PIDS
start_nginx() {
  local port=$1 workers=$2 cpus=$3 directive=$4
  mkdir -p "$WORK/nginx"
  cat > "$WORK/nginx/nginx.conf" <<NGX
worker_processes $workers;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$port reuseport backlog=4096;
    location / { $directive }
  }
}
NGX
  if [ "$cpus" = any ]; then
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  else
    taskset -c "$cpus" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  fi
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$port"
}

# start_ap PORT THREADS CPUSPEC [extra args] -> sets AP_PID
start_ap() {
  local port=$1 threads=$2 cpus=$3; shift 3
  local admin; admin=$(free_port)
  if [ "$cpus" = any ]; then
    "$AP_BIN" serve --data-dir "$WORK/ap" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:"$admin" \
      --threads "$threads" --no-pin-threads --log-level warn --max-connections 20000 --io-backend "${AP_IO_BACKEND:-auto}" "$@" 2>"$WORK/ap.log" &
  else
    taskset -c "$cpus" "$AP_BIN" serve --data-dir "$WORK/ap" --listen 127.0.0.1:"$port" \
      --admin-listen 127.0.0.1:"$admin" --threads "$threads" --no-pin-threads --log-level warn \
      --max-connections 20000 --io-backend "${AP_IO_BACKEND:-auto}" "$@" 2>"$WORK/ap.log" &
  fi
  AP_PID=$!
  PIDS+=("$AP_PID")
  wait_port "$port"
}

# cpu_ticks PID...: utime+stime of the processes (and their threads), in clock ticks
cpu_ticks() {
  local total=0 p
  for p in "$@"; do
    for f in /proc/"$p"/task/*/stat; do
      [ -r "$f" ] || continue
      total=$((total + $(awk '{print $14+$15}' "$f")))
    done
  done
  echo "$total"
}

# all pids of a process tree (nginx master + workers)
tree_pids() { echo "$1 $(pgrep -P "$1" | tr '\n' ' ')"; }

# busy_ticks: clock ticks all CPUs spent neither idle nor waiting for I/O (steal included)
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }

# run_wrk URL CONNS DEPTH -> prints "rps p50_us p99_us requests cpu_us_per_req" for SERVER_PIDS
# This VM is shared: a run during which other processes used more than MAX_INTERFERENCE percent
# of a core (CPU time neither the server's nor wrk's) is repeated, up to RETRIES times, and the
# quietest run is kept; the interference is reported on stderr.
run_wrk() {
  local url=$1 conns=$2 depth=$3 out="$WORK/wrk.out" before after hz busy0 busy1 wrk_s other
  local try best="" best_other=1000000 result path
  hz=$(getconf CLK_TCK)
  path=$(python3 -c "import sys,urllib.parse as u;print(u.urlsplit(sys.argv[1]).path)" "$url")
  # warm-up
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d1s "$url" >/dev/null 2>&1 || true
  for try in $(seq "${RETRIES:-3}"); do
    before=$(cpu_ticks $SERVER_PIDS)
    busy0=$(busy_ticks)
    local args=(-t1 -c"$conns" -d"${DURATION}s" --latency)
    [ "$depth" -gt 1 ] && args+=(-s "$BENCH_DIR/pipeline.lua")
    args+=("$url")
    [ "$depth" -gt 1 ] && args+=(-- "$path" "$depth")
    # wrk's own CPU seconds, from its rusage
    wrk_s=$(python3 -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as f:
    subprocess.run(sys.argv[2:], stdout=f, stderr=subprocess.STDOUT)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$out" taskset -c "$CLIENT_CPU" wrk "${args[@]}")
    busy1=$(busy_ticks)
    after=$(cpu_ticks $SERVER_PIDS)
    other=$(python3 -c "import sys; b, s, w, hz, d = map(float, sys.argv[1:]); \
print(max(0, round(100 * (b - s - w * hz) / (d * hz))))" \
      "$((busy1 - busy0))" "$((after - before))" "$wrk_s" "$hz" "$DURATION")
    result=$(wrk_result "$out" "$before" "$after" "$hz" "$depth")
    if [ "$other" -lt "$best_other" ]; then best=$result; best_other=$other; fi
    [ "$other" -le "${MAX_INTERFERENCE:-10}" ] && break
    echo "  (other processes used ${other}% of a core during the run: repeating)" >&2
  done
  [ "$best_other" -le "${MAX_INTERFERENCE:-10}" ] ||
    echo "  (kept a run with ${best_other}% of a core used by other processes)" >&2
  echo "$best"
}

# wrk_result WRK_OUTPUT TICKS_BEFORE TICKS_AFTER HZ DEPTH -> the run_wrk line
wrk_result() {
  local out=$1 before=$2 after=$3 hz=$4 depth=$5
  python3 - "$out" "$before" "$after" "$hz" "$depth" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
before, after, hz, depth = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def lat(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    if not m: return float("nan")
    v = float(m.group(1)); return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
m = re.search(r"(\d+) requests in", text)
reqs = int(m.group(1)) if m else 0
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
cpu_us = (after - before) * 1e6 / hz
print(f"{rps:.0f} {lat('50%'):.0f} {lat('99%'):.0f} {reqs} {cpu_us / max(reqs,1):.3f} "
      f"{(errs.group(1) if errs else '0')} {('yes' if sock else 'no')}")
PY
}

# run_post URL CONNS LUA -> "rps p50 p99 requests cpu_us_per_req non2xx sockerr": a 1 s warm-up,
# then DURATION seconds of wrk (on CLIENT_CPU, with the Lua script LUA), the CPU time of
# $SERVER_PIDS over the run divided by the requests served
run_post() {
  local url=$1 conns=$2 lua=$3 out="$WORK/wrk.out" before after hz
  hz=$(getconf CLK_TCK)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d1s -s "$lua" "$url" >/dev/null 2>&1 || true
  before=$(cpu_ticks $SERVER_PIDS)
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$lua" "$url" > "$out" 2>&1
  after=$(cpu_ticks $SERVER_PIDS)
  python3 - "$out" "$before" "$after" "$hz" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
before, after, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def lat(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, text, re.M)
    if not m: return float("nan")
    v = float(m.group(1)); return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
m = re.search(r"(\d+) requests in", text)
reqs = int(m.group(1)) if m else 0
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: (.*)", text)
cpu_us = (after - before) * 1e6 / hz
print(f"{rps:.0f} {lat('50%'):.0f} {lat('99%'):.0f} {reqs} {cpu_us / max(reqs,1):.3f} "
      f"{(errs.group(1) if errs else '0')} {('yes' if sock else 'no')}")
PY
}
