#!/usr/bin/env bash
# bench/rtb.sh: the OpenRTB exchange, POST /openrtb2/auction.
#  Part 1 (internal demand only): a typical ~1.5 KB single-imp banner request (Prebid.js shape:
#  site, device, user with eids, regs, source.schain, ext.prebid.targeting) naming one of our
#  placements (imp.ext.prebid.bidder.adplatform.placement); 10,000 active ads in the store
#  (written by bench/decision_engine.c populate); against nginx (`return 200 "ok"`) on the same
#  pinned core; wrk on the other core; 16/64/256 connections. Requests/s, p50/p99, CPU µs/request.
#  Part 2 (three outside test bidders answering in ~10 ms) is added by the outbound-client work.
# Appends the results to docs/benchmarks.md. Usage: bench/rtb.sh  (DURATION=10 by default)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "needs nginx-light and wrk" >&2; exit 1; }
BUILD=$(dirname "$AP_BIN")

# the store populator, linked exactly like the daemon (same as bench/decision.sh)
flags=$(sed -n 's/^C_FLAGS = //p' "$BUILD/CMakeFiles/aplib.dir/flags.make")
cc $flags -I"$ROOT/src" -c "$BENCH_DIR/decision_engine.c" -o "$WORK/decision_engine.o"
(cd "$BUILD" && $(sed -e "s#CMakeFiles/adplatform.dir/src/main.c.o#$WORK/decision_engine.o#" \
                      -e "s#-o adplatform#-o $WORK/decision_engine#" CMakeFiles/adplatform.dir/link.txt))
mkdir -p "$WORK/ap"
PLACEMENT=$("$WORK/decision_engine" populate "$WORK/ap" 10000)

python3 - "$PLACEMENT" > "$WORK/request.json" <<'PY'
import json, sys
p = int(sys.argv[1])
req = {
  "id": "b1d2e3f4-0000-4a5b-9c8d-0123456789ab",
  "imp": [{"id": "div-gpt-ad-top", "banner": {"format": [{"w": 300, "h": 250}], "pos": 1},
           "secure": 1, "bidfloor": 0.1, "bidfloorcur": "USD",
           "ext": {"gpid": "/1234/news/top", "tid": "5e1c7a7e-1111-4c22-8d33-abcdefabcdef",
                   "prebid": {"bidder": {"adplatform": {"placement": p}}}}}],
  "site": {"domain": "news.example.com", "page": "https://news.example.com/world/2024/some-article-title.html",
           "ref": "https://www.search.example/?q=news", "publisher": {"id": "pub-1", "domain": "example.com"},
           "cat": ["IAB12"], "keywords": "world,politics,europe"},
  "device": {"ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
             "ip": "203.0.113.45", "language": "en", "dnt": 0, "w": 1920, "h": 1080, "devicetype": 2,
             "sua": {"browsers": [{"brand": "Chromium", "version": ["120"]}], "mobile": 0, "platform": {"brand": "Windows"}}},
  "user": {"ext": {"consent": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
                   "eids": [{"source": "id5-sync.com", "uids": [{"id": "ID5*abcdefghijklmnopqrstuvwxyz0123456789", "atype": 1}]},
                            {"source": "pubcid.org", "uids": [{"id": "0f7a9b2c-3d4e-5f60-7182-93a4b5c6d7e8", "atype": 1}]}]}},
  "regs": {"ext": {"gdpr": 0, "us_privacy": "1YNN"}},
  "source": {"tid": "5e1c7a7e-2222-4c22-8d33-abcdefabcdef",
             "ext": {"schain": {"ver": "1.0", "complete": 1, "nodes": [{"asi": "example.com", "sid": "pub-1", "hp": 1}]}}},
  "tmax": 1000, "cur": ["USD"],
  "ext": {"prebid": {"targeting": {"pricegranularity": "medium", "includewinners": True, "includebidderkeys": True},
                     "channel": {"name": "pbjs", "version": "8.30.0"}}}}
print(json.dumps(req))
PY
echo "request: $(wc -c < "$WORK/request.json") bytes" >&2
BODY_LUA=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/request.json")
cat > "$WORK/rtb.lua" <<LUA
local body = $BODY_LUA
request = function()
  return wrk.format("POST", "/openrtb2/auction", {["Content-Type"] = "text/plain;charset=utf-8",
    ["Origin"] = "https://news.example.com"}, body)
end
LUA

RESULTS="$WORK/results.txt"
: > "$RESULTS"
port=$(free_port)
start_ap "$port" 1 "$SERVER_CPU"
SERVER_PIDS=$AP_PID
for _ in $(seq 200); do   # wait until our demand bids
  curl -s -X POST --data-binary @"$WORK/request.json" "http://127.0.0.1:$port/openrtb2/auction" \
    | grep -q '"seatbid"' && break
  sleep 0.1
done
curl -s -X POST --data-binary @"$WORK/request.json" "http://127.0.0.1:$port/openrtb2/auction" \
  | head -c 400 >&2; echo >&2
for conns in 16 64 256; do
  r_ap=$(run_post "http://127.0.0.1:$port/openrtb2/auction" "$conns" "$WORK/rtb.lua")
  echo "ap $conns $r_ap" >> "$RESULTS"
  echo "adplatform c=$conns: $r_ap" >&2
done
kill "$AP_PID"; wait "$AP_PID" 2>/dev/null || true
port=$(free_port)
start_nginx "$port" 1 "$SERVER_CPU" 'return 200 "ok";'
SERVER_PIDS=$(tree_pids "$NGINX_PID")
for conns in 16 64 256; do
  r_ng=$(run_post "http://127.0.0.1:$port/openrtb2/auction" "$conns" "$WORK/rtb.lua")
  echo "ng $conns $r_ng" >> "$RESULTS"
  echo "nginx c=$conns: $r_ng" >&2
done
kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true

python3 - "$RESULTS" "$ROOT" "$(wc -c < "$WORK/request.json")" <<'PY'
import datetime, subprocess, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
root, size = sys.argv[2], sys.argv[3]
commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                        text=True).stdout.strip() or "unknown"
out = [f"### bench/rtb.sh (internal demand) — {datetime.date.today()} — commit {commit}", "",
       f"POST /openrtb2/auction, one {size}-byte single-imp banner request (Prebid.js shape), "
       "10,000 active ads, 1 worker pinned to the server core; nginx `return 200` on the same "
       "core; wrk -t1 on the other core.", "",
       "| server | conns | req/s | p50 µs | p99 µs | CPU µs/req | non-2xx | ratio to nginx |",
       "|---|---|---|---|---|---|---|---|"]
ng = {r[1]: float(r[2]) for r in rows if r[0] == "ng"}
for r in rows:
    ratio = f"{float(r[2]) / ng[r[1]]:.2f}x" if r[0] == "ap" and ng.get(r[1]) else ""
    out.append(f"| {'adplatform' if r[0] == 'ap' else 'nginx'} | {r[1]} | {r[2]} | {r[3]} | {r[4]} "
               f"| {r[6]} | {r[7]} | {ratio} |")
text = "\n".join(out) + "\n"
print(text)
with open(root + "/docs/benchmarks.md", "a") as f:
    f.write("\n" + text)
PY
