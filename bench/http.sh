#!/usr/bin/env bash
# bench/http.sh: adplatform's HTTP core against nginx (nginx-light, `return 200 "ok"`) on the
# same pinned core, driven by wrk pinned to the other core; 16/64/256 connections, with and
# without pipelining (depth 16). Prints requests/s, p50/p99 latency and server CPU time per
# request, the ratios ours/nginx, then --threads 2 against 2 nginx workers (unpinned).
# Appends the results to docs/benchmarks.md. Usage: bench/http.sh  (DURATION=10 by default)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx-light and wrk" >&2; exit 1; }

RESULTS="$WORK/results.txt"
: > "$RESULTS"
run_case() { # label pinned|any conns depth
  local label=$1 mode=$2 conns=$3 depth=$4 port r_ng r_ap
  port=$(free_port)
  if [ "$mode" = pinned ]; then start_nginx "$port" 1 "$SERVER_CPU" 'return 200 "ok";'
  else start_nginx "$port" 2 any 'return 200 "ok";'; fi
  SERVER_PIDS=$(tree_pids "$NGINX_PID")
  r_ng=$(run_wrk "http://127.0.0.1:$port/healthz" "$conns" "$depth")
  kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
  port=$(free_port)
  if [ "$mode" = pinned ]; then start_ap "$port" 1 "$SERVER_CPU"
  else start_ap "$port" 2 any; fi
  SERVER_PIDS=$AP_PID
  r_ap=$(run_wrk "http://127.0.0.1:$port/healthz" "$conns" "$depth")
  kill "$AP_PID"; wait "$AP_PID" 2>/dev/null || true
  echo "$label $conns $depth $r_ng $r_ap" >> "$RESULTS"
  echo "$label c=$conns depth=$depth  nginx: $r_ng   adplatform: $r_ap" >&2
}

for depth in 1 16; do
  for conns in 16 64 256; do
    run_case "1-core" pinned "$conns" "$depth"
  done
done
run_case "2-threads" any 64 1
run_case "2-threads" any 64 16

python3 - "$RESULTS" "$ROOT" <<'PY'
import datetime, os, subprocess, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
root = sys.argv[2]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
hdr = ("| setup | conns | pipeline | nginx req/s | ours req/s | ratio | nginx p50/p99 µs | ours p50/p99 µs "
       "| nginx CPU µs/req | ours CPU µs/req | CPU ratio |")
lines = [f"### bench/http.sh — {datetime.date.today()} — commit {commit} — io backend {os.environ.get('AP_IO_BACKEND', 'auto (io_uring)')}", "", hdr, "|" + "---|" * 11]
for r in rows:
    label, conns, depth = r[0], r[1], r[2]
    ng, ap = r[3:10], r[10:17]
    rps_ratio = float(ap[0]) / max(float(ng[0]), 1)
    cpu_ratio = float(ap[4]) / max(float(ng[4]), 1e-9)
    lines.append(f"| {label} | {conns} | {depth} | {ng[0]} | {ap[0]} | {rps_ratio:.2f} | {ng[1]}/{ng[2]} | "
                 f"{ap[1]}/{ap[2]} | {ng[4]} | {ap[4]} | {cpu_ratio:.2f} |")
    if ap[5] != "0" or ap[6] != "no":
        lines.append(f"|  ⚠ ours: non-2xx={ap[5]} socket errors={ap[6]} | | | | | | | | | | |")
out = "\n".join(lines) + "\n"
print(out)
with open(f"{root}/docs/benchmarks.md", "a") as f:
    f.write("\n" + out)
PY
