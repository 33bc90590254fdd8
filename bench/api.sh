#!/usr/bin/env bash
# bench/api.sh: control-plane API throughput on embedded SQLite: reads (GET one campaign) and
# writes (POST a campaign) per second, authenticated with an API key, 16 connections, the
# daemon's 2 admin threads and wrk sharing the 2 cores (unpinned). Aim (issue 3): >= 20,000
# reads/s and >= 2,000 writes/s. Appends the results to docs/benchmarks.md.
# Usage: bench/api.sh  (DURATION=10 by default)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
CONNS=${CONNS:-16}
mkdir -p "$WORK/ap"
KEY=$("$AP_BIN" admin create --data-dir "$WORK/ap" --email bench@example.com --json |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
port=$(free_port); admin=$(free_port)
"$AP_BIN" serve --data-dir "$WORK/ap" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:"$admin" \
  --threads 1 --admin-threads 2 --log-level warn 2>"$WORK/ap.log" &
AP_PID=$!; PIDS+=("$AP_PID"); wait_port "$admin"
api() { curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"; }
ADV=$(api -d '{"name":"Bench","currency":"USD","timezone":"UTC"}' "http://127.0.0.1:$admin/api/v1/advertisers" |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
CAMP=$(api -d "{\"advertiser_id\":$ADV,\"name\":\"c0\"}" "http://127.0.0.1:$admin/api/v1/campaigns" |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
cat > "$WORK/read.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
cat > "$WORK/write.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"advertiser_id":$ADV,"name":"bench ' .. n .. '","price_micros":1500000,"budget_daily_micros":100000000}')
end
LUA
run() { # script url -> "rps p50 p99 non2xx"
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$1" "$2" > "$WORK/wrk.out" 2>&1
  python3 - "$WORK/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def lat(l):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % l, t, re.M)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else float("nan")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.0f} {lat('50%'):.0f} {lat('99%'):.0f} {bad.group(1) if bad else 0}")
PY
}
R=$(run "$WORK/read.lua" "http://127.0.0.1:$admin/api/v1/campaigns/$CAMP")
W=$(run "$WORK/write.lua" "http://127.0.0.1:$admin/api/v1/campaigns")
echo "reads: $R   writes: $W" >&2
python3 - "$ROOT" "$R" "$W" "$CONNS" <<'PY'
import datetime, subprocess, sys
root, r, w, conns = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
out = "\n".join([f"### bench/api.sh — {datetime.date.today()} — commit {commit}", "",
  f"Control plane on SQLite, {conns} connections, 2 admin threads, wrk unpinned on the same 2 cores.", "",
  "| operation | req/s | aim | p50 µs | p99 µs | non-2xx |", "|---|---|---|---|---|---|",
  f"| GET /api/v1/campaigns/ID | {r[0]} | 20,000 | {r[1]} | {r[2]} | {r[3]} |",
  f"| POST /api/v1/campaigns | {w[0]} | 2,000 | {w[1]} | {w[2]} | {w[3]} |"]) + "\n"
print(out)
open(f"{root}/docs/benchmarks.md", "a").write("\n" + out)
PY
