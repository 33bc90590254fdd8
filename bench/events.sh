#!/usr/bin/env bash
# bench/events.sh: (a) the impression beacon GET /v1/e/imp?t=TOKEN with durability on (each
# answer waits for its group-commit fdatasync) against nginx `return 204` on the same pinned
# core, wrk pinned to the other core, 64 and 256 connections (no pipelining);
# (b) the event log's append rate through the batch path (ap_evload append: one thread appending
# batches of 64, the log's writer thread on the same core).
# Prints the figures and the ratios; appends them to docs/benchmarks.md.
# Usage: bench/events.sh   (DURATION=10 by default; AP_BIN, AP_EVLOAD to pick binaries)
source "$(dirname "$0")/lib.sh"
AP_EVLOAD=${AP_EVLOAD:-$(dirname "$AP_BIN")/tests/ap_evload}
[ -x "$AP_BIN" ] && [ -x "$AP_EVLOAD" ] || { echo "build first: $AP_BIN / $AP_EVLOAD missing" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx-light and wrk" >&2; exit 1; }

RESULTS="$WORK/results.txt"
: > "$RESULTS"

# a valid impression token signed with the daemon's key (as src/events/ap_token.c does)
sign_token() {
  python3 - "$1" <<'PY'
import base64, hashlib, os, sys, time
lines = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
kid, _, key = lines[-1]; kid = int(kid); key = bytes.fromhex(key)
def varint(v):
    o = b""
    while v >= 0x80: o += bytes([(v & 0x7f) | 0x80]); v >>= 7
    return o + bytes([v])
b = bytes([1, kid >> 8, kid & 255, 1, 0]) + os.urandom(16)
for v in (1, 1, 1, 1, 1234567, int(time.time())): b += varint(v)
b += hashlib.blake2b(b, digest_size=16, key=key).digest()
print(base64.urlsafe_b64encode(b).rstrip(b"=").decode())
PY
}

run_case() { # conns depth
  local conns=$1 depth=$2 port r_ng r_ap tok
  port=$(free_port)
  start_nginx "$port" 1 "$SERVER_CPU" 'return 204;'
  SERVER_PIDS=$(tree_pids "$NGINX_PID")
  r_ng=$(run_wrk "http://127.0.0.1:$port/v1/e/imp" "$conns" "$depth")
  kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
  port=$(free_port)
  start_ap "$port" 1 "$SERVER_CPU" --geoip-db none --uap-regexes none
  tok=$(sign_token "$WORK/ap/keys/token.key")
  SERVER_PIDS=$AP_PID
  r_ap=$(run_wrk "http://127.0.0.1:$port/v1/e/imp?t=$tok" "$conns" "$depth")
  kill "$AP_PID"; wait "$AP_PID" 2>/dev/null || true
  rm -rf "$WORK/ap"
  echo "beacon $conns $depth $r_ng $r_ap" >> "$RESULTS"
  echo "imp beacon c=$conns depth=$depth  nginx 204: $r_ng   adplatform: $r_ap" >&2
}

# depth 1 only: lib.sh's pipelining script sends the URL's path without its query (the token)
for conns in 64 256; do
  run_case "$conns" 1
done

APPEND=$(taskset -c "$SERVER_CPU" "$AP_EVLOAD" append --dir "$WORK/evlog" --seconds "$DURATION" --batch 64)
echo "event log append (one core): $APPEND" >&2

python3 - "$RESULTS" "$ROOT" "$APPEND" <<'PY'
import datetime, json, os, subprocess, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
root, app = sys.argv[2], json.loads(sys.argv[3])
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
lines = [f"### bench/events.sh — {datetime.date.today()} — commit {commit}", "",
         "Impression beacon with durability on (answered after fdatasync) vs nginx `return 204`, one pinned core:", "",
         "| conns | pipeline | nginx req/s | ours req/s | ratio | nginx p50/p99 µs | ours p50/p99 µs | ours CPU µs/req |",
         "|" + "---|" * 8]
for r in rows:
    conns, depth, ng, ap = r[1], r[2], r[3:10], r[10:17]
    ratio = float(ap[0]) / max(float(ng[0]), 1)
    lines.append(f"| {conns} | {depth} | {ng[0]} | {ap[0]} | {ratio:.2f} | {ng[1]}/{ng[2]} | {ap[1]}/{ap[2]} | {ap[4]} |")
    if ap[5] != "0" or ap[6] != "no":
        lines.append(f"|  ⚠ ours: non-2xx={ap[5]} socket errors={ap[6]} | | | | | | | |")
lines += ["", f"Event log append through the batch path (one thread, batches of {app['batch']}, writer on the same core): "
          f"{app['append_per_s']:.0f} events/s appended, {app['durable_per_s']:.0f} events/s durable; "
          f"{app['syncs']} fdatasyncs averaging {app['sync_us_avg']:.0f} µs; CRC32C {app['crc32c']}."]
out = "\n".join(lines) + "\n"
print(out)
if os.environ.get("RECORD", "1") == "1":  # RECORD=0: print only
    with open(f"{root}/docs/benchmarks.md", "a") as f:
        f.write("\n" + out)
PY
