#!/usr/bin/env bash
# bench/decision.sh: ad decisions.
#  1. The engine alone (bench/decision_engine.c, compiled here against build/libaplib.a):
#     ns per decision, snapshot bytes per ad and compile time at 1k, 10k, 100k and 1M active
#     ads, each with 3 targeting dimensions (keywords.any, languages, domains_include).
#  2. POST /v1/decision end to end: 10,000 active ads (written to the store by the same program),
#     one placement per request, 16 different request bodies, against nginx (`return 200 "ok"`)
#     on the same pinned core; wrk (with a Lua script sending the same bodies to both) on the
#     other core; 16/64/256 connections. Requests/s, p50/p99 latency, server CPU µs per request.
# Appends the results to docs/benchmarks.md. Usage: bench/decision.sh  (DURATION=10 by default;
# ENGINE_SIZES="1000 10000" to shorten part 1)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx-light and wrk" >&2; exit 1; }
BUILD=$(dirname "$AP_BIN")

# ---- the engine micro-benchmark, linked exactly like the daemon
flags=$(sed -n 's/^C_FLAGS = //p' "$BUILD/CMakeFiles/aplib.dir/flags.make")
MODE=engine RFLAGS="" RLIB=""
if [ -f /usr/include/roaring/roaring.h ]; then  # libroaring-dev: also time CRoaring (ADR 0006)
  MODE=roaring RFLAGS=-DAP_BENCH_ROARING RLIB=-lroaring
fi
cc $flags $RFLAGS -I"$ROOT/src" -c "$BENCH_DIR/decision_engine.c" -o "$WORK/decision_engine.o"
(cd "$BUILD" && $(sed -e "s#CMakeFiles/adplatform.dir/src/main.c.o#$WORK/decision_engine.o#" \
                      -e "s#-o adplatform#-o $WORK/decision_engine $RLIB#" CMakeFiles/adplatform.dir/link.txt))
echo "engine: ${ENGINE_SIZES:-1000 10000 100000 1000000} ads" >&2
taskset -c "$SERVER_CPU" "$WORK/decision_engine" $MODE ${ENGINE_SIZES:-} | tee "$WORK/engine.txt" >&2

# ---- end to end
mkdir -p "$WORK/ap"
PLACEMENT=$("$WORK/decision_engine" populate "$WORK/ap" 10000)
cat > "$WORK/decision.lua" <<LUA
local bodies = {}
local langs = {"en", "de", "fr", "es", "it", "nl"}
math.randomseed(7)
for i = 1, 16 do
  local kw = {}
  for k = 1, 3 do kw[k] = '"kw' .. math.random(0, 49) .. '"' end
  bodies[i] = '{"placements":[{"id":$PLACEMENT,"div":"top"}],"keywords":[' .. table.concat(kw, ",") ..
    '],"url":"https://site' .. math.random(0, 9) .. '.example/article","user":{"key":"u' .. i .. '"}}'
end
local n = 0
request = function()
  n = n + 1
  local b = bodies[(n % 16) + 1]
  return wrk.format("POST", "/v1/decision", {["Content-Type"] = "application/json",
    ["Accept-Language"] = langs[(n % 6) + 1] .. "," .. langs[((n + 2) % 6) + 1] .. ";q=0.8"}, b)
end
LUA

RESULTS="$WORK/results.txt"
: > "$RESULTS"
port=$(free_port)
start_ap "$port" 1 "$SERVER_CPU"
SERVER_PIDS=$AP_PID
for _ in $(seq 200); do   # the first snapshot is built before the port opens; make sure it fills
  curl -s -o /dev/null -w '%{http_code}' -X POST -d "{\"placements\":[{\"id\":$PLACEMENT}]}" \
    "http://127.0.0.1:$port/v1/decision" | grep -q 200 && break
  sleep 0.1
done
curl -s -X POST -d "{\"placements\":[{\"id\":$PLACEMENT}],\"keywords\":[\"kw1\",\"kw2\",\"kw3\"],\"url\":\"https://site1.example/\"}" \
  -H 'Accept-Language: en,de' "http://127.0.0.1:$port/v1/decision" | head -c 300 >&2; echo >&2
grep -o 'snapshot v[0-9]*: [^"]*' "$WORK/ap.log" | tail -1 > "$WORK/snap.txt" || true
for conns in 16 64 256; do
  r_ap=$(run_post "http://127.0.0.1:$port/v1/decision" "$conns" "$WORK/decision.lua")
  echo "ap $conns $r_ap" >> "$RESULTS"
  echo "adplatform c=$conns: $r_ap" >&2
done
kill "$AP_PID"; wait "$AP_PID" 2>/dev/null || true
port=$(free_port)
start_nginx "$port" 1 "$SERVER_CPU" 'return 200 "ok";'
SERVER_PIDS=$(tree_pids "$NGINX_PID")
for conns in 16 64 256; do
  r_ng=$(run_post "http://127.0.0.1:$port/v1/decision" "$conns" "$WORK/decision.lua")
  echo "ng $conns $r_ng" >> "$RESULTS"
  echo "nginx c=$conns: $r_ng" >&2
done
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true

python3 - "$RESULTS" "$WORK/engine.txt" "$WORK/snap.txt" "$ROOT" <<'PY'
import datetime, subprocess, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
lines = [l.split() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
eng = [l for l in lines if l[0] != "roaring"]
roar = {l[1]: l[2:] for l in lines if l[0] == "roaring"}
snap = open(sys.argv[3]).read().strip()
root = sys.argv[4]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip() or "unknown"
out = [f"### bench/decision.sh — {datetime.date.today()} — commit {commit}", "",
       "Engine alone (one decision = context setup, targeting intersection, checks, pick; 3 "
       "targeting dimensions per ad, 10 ads per campaign; single thread on the server core):", "",
       "| active ads | ns per decision | snapshot bytes per ad | compile ms | fill % |",
       "|---|---|---|---|---|"]
for e in eng:
    out.append(f"| {int(e[0]):,} | {e[1]} | {e[2]} | {e[3]} | {e[4]} |")
if roar:
    out += ["", "Own block lists against CRoaring (libroaring-dev 0.2) for the same candidate sets: "
            "CRoaring computes the full set per request (OR per dimension, AND across, minimum); "
            "ours walks the lists in rank order and stops at the first eligible ad (and does the "
            "whole decision):", "",
            "| active ads | ours: ns per decision | CRoaring: ns per candidate set | ours: set bytes per ad "
            "| CRoaring: bytes per ad |", "|---|---|---|---|---|"]
    for e in eng:
        if e[0] in roar:
            r = roar[e[0]]
            out.append(f"| {int(e[0]):,} | {e[1]} | {r[0]} | {r[2]} | {r[1]} |")
if len(eng) >= 2:
    out.append("")
    out.append(f"Growth of the engine cost from {int(eng[0][0]):,} to {int(eng[-1][0]):,} ads: "
               f"{float(eng[-1][1]) / float(eng[0][1]):.2f}x.")
out += ["", f"POST /v1/decision, 10,000 active ads, one placement per request, 1 worker pinned "
        f"to core 0, wrk on core 1:", "",
        "| conns | nginx req/s | ours req/s | ratio | nginx p50/p99 µs | ours p50/p99 µs "
        "| nginx CPU µs/req | ours CPU µs/req | CPU ratio |", "|" + "---|" * 9]
ng = {r[1]: r[2:] for r in rows if r[0] == "ng"}
ap = {r[1]: r[2:] for r in rows if r[0] == "ap"}
for c in ("16", "64", "256"):
    if c not in ng or c not in ap:
        continue
    n, a = ng[c], ap[c]
    out.append(f"| {c} | {n[0]} | {a[0]} | {float(a[0]) / max(float(n[0]), 1):.2f} | {n[1]}/{n[2]} | "
               f"{a[1]}/{a[2]} | {n[4]} | {a[4]} | {float(a[4]) / max(float(n[4]), 1e-9):.2f} |")
    if a[5] != "0" or a[6] != "no":
        out.append(f"|  ⚠ ours: non-2xx={a[5]} socket errors={a[6]} | | | | | | | | |")
text = "\n".join(out) + "\n"
print(text)
with open(f"{root}/docs/benchmarks.md", "a") as f:
    f.write("\n" + text)
PY
