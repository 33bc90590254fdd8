#!/usr/bin/env bash
# bench/reports.sh: the aggregator and the reports API (issue 5, benchmark items 3-4).
#  1. Aggregator lag: bench/agg_bench.c (compiled here against the build's libaplib.a, linked
#     like the daemon) appends impressions to a real event log at RATE events/s (50,000) for
#     SECONDS (10) while the aggregator thread folds them into the SQLite rollups; prints the
#     accept -> rollup commit lag p50/p99 (aim: p99 <= 1 s).
#  2. A 30-day report over 1,000 campaigns: the same program fills the rollups (1,000
#     campaigns x 30 days x 24 h x 2 countries), then the real daemon answers
#     GET /api/v1/reports?from=..&to=..&group_by=campaign (granularity total and day, UTC) and
#     the same over America/New_York (hourly rows); curl times N (20) requests each, p50/p99/max
#     (aim: <= 50 ms).
# Appends the results to docs/benchmarks.md (unless NO_RECORD=1).
# Usage: bench/reports.sh  (RATE=50000 SECONDS=10 CAMPAIGNS=1000 DAYS=30 N=20)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
BUILD=$(dirname "$AP_BIN")
RATE=${RATE:-50000} SECS=${SECONDS_LOAD:-10} CAMPAIGNS=${CAMPAIGNS:-1000} DAYS=${DAYS:-30} N=${N:-20}

flags=$(sed -n 's/^C_FLAGS = //p' "$BUILD/CMakeFiles/aplib.dir/flags.make")
cc $flags -I"$ROOT/src" -c "$BENCH_DIR/agg_bench.c" -o "$WORK/agg_bench.o"
(cd "$BUILD" && $(sed -e "s#CMakeFiles/adplatform.dir/src/main.c.o#$WORK/agg_bench.o#" \
                      -e "s#-o adplatform#-o $WORK/agg_bench#" CMakeFiles/adplatform.dir/link.txt))

# ---- 1. aggregator lag
LAG=$("$WORK/agg_bench" lag "$WORK/lag" "$RATE" "$SECS")
echo "$LAG" >&2
rm -rf "$WORK/lag"

# ---- 2. reports
read -r FROM TO < <("$WORK/agg_bench" populate "$WORK/ap" "$CAMPAIGNS" "$DAYS")
KEY=$("$AP_BIN" admin create --data-dir "$WORK/ap" --email bench@example.com --json |
      python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
port=$(free_port); admin=$(free_port)
"$AP_BIN" serve --data-dir "$WORK/ap" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:"$admin" \
  --threads 1 --admin-threads 2 --log-level warn 2>"$WORK/ap.log" &
AP_PID=$!; PIDS+=("$AP_PID"); wait_port "$admin"
time_report() { # query -> "p50_ms p99_ms max_ms rows"
  local url="http://127.0.0.1:$admin/api/v1/reports?$1" i
  curl -sf -H "Authorization: Bearer $KEY" "$url" -o "$WORK/r.json"  # warm-up
  for i in $(seq "$N"); do
    curl -sf -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $KEY" "$url"
  done > "$WORK/times"
  python3 - "$WORK/times" "$WORK/r.json" <<'PY'
import json, sys
t = sorted(float(x) * 1000 for x in open(sys.argv[1]))
rows = len(json.load(open(sys.argv[2]))["rows"])
p = lambda q: t[min(len(t) - 1, int(q * len(t)))]
print(f"{p(0.5):.1f} {p(0.99):.1f} {t[-1]:.1f} {rows}")
PY
}
Q="from=$FROM&to=$TO&group_by=campaign"
R_TOTAL=$(time_report "$Q")
R_DAY=$(time_report "$Q&granularity=day")
R_NY=$(time_report "$Q&timezone=America/New_York")
echo "30-day report, $CAMPAIGNS campaigns: total $R_TOTAL | by day $R_DAY | New York $R_NY" >&2

[ "${NO_RECORD:-0}" = 1 ] && exit 0
python3 - "$ROOT" "$LAG" "$R_TOTAL" "$R_DAY" "$R_NY" "$CAMPAIGNS" "$DAYS" <<'PY'
import datetime, subprocess, sys
root, lag, tot, day, ny, camps, days = sys.argv[1:8]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
row = lambda name, v: "| %s | %s | %s | %s | %s |" % ((name,) + tuple(v.split()))
out = "\n".join([f"### bench/reports.sh — {datetime.date.today()} — commit {commit}", "",
  "Aggregator (SQLite rollups, one transaction per batch with the log offset):", "",
  "```", lag, "```", "",
  f"GET /api/v1/reports over {days} days x {camps} campaigns (hourly rows: every campaign in "
  "every hour on 2 countries), group_by=campaign, curl on the same 2 cores. Aim: <= 50 ms.", "",
  "| report | p50 ms | p99 ms | max ms | rows |", "|---|---|---|---|---|",
  row("granularity=total, UTC (daily rollup)", tot), row("granularity=day, UTC", day),
  row("granularity=total, America/New_York (hourly rollup)", ny)]) + "\n"
with open(root + "/docs/benchmarks.md", "a") as f:
    f.write("\n" + out)
print(out)
PY
