#!/usr/bin/env bash
# bench/rtb_partners.sh: outside demand. (The internal-demand case is bench/rtb.sh.)
#  Part 1 (client only): tests/tools/hc_bench drives ap_http_client on one loop against a test
#  bidder answering in 10 ms: 10,000 requests in flight at once (no host cap: 10,000
#  connections), then a steady 1,000 in flight; errors, peak in flight, req/s, p50/p99.
#  Part 2 (the exchange): the daemon on 2 worker threads with the demo data and three demand
#  partners (test bidders, each answering in ~10 ms) created through /api/v1/demand-partners;
#  wrk sends a Prebid-shaped single-imp request naming our placement and the three bidder codes.
#  Auctions/s, p50/p99, and the time the exchange adds beyond its bidders at p99 (the auction's
#  p99 minus a bidder's own p99 measured directly at the same load per bidder).
# Everything shares this machine's cores (no pinning: 2 cores for the daemon, three bidders and
# the load generator), so the figures are a floor, not the exchange's ceiling.
# Appends the results to docs/benchmarks.md. Usage: bench/rtb_partners.sh  (DURATION=10)
source "$(dirname "$0")/lib.sh"
[ -x "$AP_BIN" ] || { echo "build first: $AP_BIN missing" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
BUILD=$(dirname "$AP_BIN")
TB="$BUILD/tests/tools/test_bidder"
HCB="$BUILD/tests/tools/hc_bench"
[ -x "$TB" ] && [ -x "$HCB" ] || { echo "build the test tools first: $TB, $HCB" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CONNS=${CONNS:-256}
DELAY_MS=${DELAY_MS:-10}

# start_bidder NAME [PRICE] -> sets BPORT; pid in PIDS (not in a subshell: PIDS must be kept)
start_bidder() {
  local name=$1
  "$TB" --port-file "$WORK/$name.port" --threads 1 --delay-ms "$DELAY_MS" --no-record --fast \
    --seat "$name" --price "${2:-1.0}" >/dev/null 2>"$WORK/$name.log" &
  PIDS+=("$!")
  for _ in $(seq 100); do [ -s "$WORK/$name.port" ] && break; sleep 0.05; done
  BPORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["listen"])' "$WORK/$name.port")
}

# ---- part 1: the client alone ----
start_bidder solo; BP=$BPORT
burst=$("$HCB" --url "http://127.0.0.1:$BP/openrtb2/auction" --burst --inflight 10000 \
          --max-host-connections 0 --timeout-ms 15000 || true)
echo "burst: $burst" >&2
steady=$("$HCB" --url "http://127.0.0.1:$BP/openrtb2/auction" --inflight 1000 \
           --total 100000 --timeout-ms 5000 || true)
echo "steady: $steady" >&2
kill "${PIDS[-1]}" 2>/dev/null || true

# ---- part 2: the exchange with three bidders ----
"$AP_BIN" demo --data-dir "$WORK/ap" >/dev/null
KEY=$("$AP_BIN" admin create --data-dir "$WORK/ap" --email bench@example.com --json |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
port=$(free_port); admin=$(free_port)
"$AP_BIN" serve --data-dir "$WORK/ap" --listen 127.0.0.1:"$port" --admin-listen 127.0.0.1:"$admin" \
  --threads 2 --no-pin-threads --log-level warn --max-connections 20000 \
  --io-backend "${AP_IO_BACKEND:-auto}" >/dev/null 2>"$WORK/ap.log" &
AP_PID=$!; PIDS+=("$AP_PID")
wait_port "$port"; wait_port "$admin"
BIDDER_PORTS=()
for i in 1 2 3; do
  start_bidder "tb$i" "1.$i"; p=$BPORT
  BIDDER_PORTS+=("$p")
  curl -sf -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data "{\"name\":\"Test bidder $i\",\"bidder_code\":\"tb$i\",\"endpoint\":\"http://127.0.0.1:$p/openrtb2/auction\",\"timeout_ms\":100}" \
    "http://127.0.0.1:$admin/api/v1/demand-partners" || { echo "cannot create partner tb$i" >&2; exit 1; }
done
sleep 2 # the serving snapshot picks the partners up

python3 - > "$WORK/request.json" <<'PY'
import json
req = {
  "id": "b1d2e3f4-0000-4a5b-9c8d-0123456789ab",
  "imp": [{"id": "div-gpt-ad-top", "banner": {"format": [{"w": 300, "h": 250}], "pos": 1},
           "secure": 1, "bidfloor": 0.1, "bidfloorcur": "USD",
           "ext": {"gpid": "/1234/news/top",
                   "prebid": {"bidder": {"adplatform": {"placement": 2}, "tb1": {}, "tb2": {}, "tb3": {}}}}}],
  "site": {"domain": "news.example.com", "page": "https://news.example.com/world/2024/some-article-title.html",
           "publisher": {"id": "pub-1", "domain": "example.com"}, "cat": ["IAB12"]},
  "device": {"ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
             "ip": "203.0.113.45", "language": "en", "devicetype": 2},
  "user": {"ext": {"eids": [{"source": "pubcid.org", "uids": [{"id": "0f7a9b2c-3d4e-5f60-7182-93a4b5c6d7e8", "atype": 1}]}]}},
  "regs": {"ext": {"gdpr": 0, "us_privacy": "1YNN"}},
  "source": {"ext": {"schain": {"ver": "1.0", "complete": 1, "nodes": [{"asi": "example.com", "sid": "pub-1", "hp": 1}]}}},
  "tmax": 500, "cur": ["USD"],
  "ext": {"prebid": {"targeting": {"pricegranularity": "medium", "includewinners": True}}}}
print(json.dumps(req))
PY
curl -s -o "$WORK/one.json" -H 'Content-Type: text/plain' --data-binary @"$WORK/request.json" \
  "http://127.0.0.1:$port/openrtb2/auction"
called=0
for p in "${BIDDER_PORTS[@]}"; do
  n=$(curl -s "http://127.0.0.1:$p/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  called=$((called + (n > 0 ? 1 : 0)))
done
seats=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(",".join(s["seat"] for s in d.get("seatbid",[])) or "-")' "$WORK/one.json" 2>/dev/null || echo "?")
echo "one auction: bidders called: $called/3, seats in the response: $seats" >&2

BODY_LUA=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/request.json")
mkdir -p "$WORK/lua"
cat > "$WORK/lua/rtb.lua" <<LUA
local body = $BODY_LUA
request = function()
  return wrk.format("POST", "/openrtb2/auction", {["Content-Type"] = "text/plain;charset=utf-8"}, body)
end
LUA
cat > "$WORK/lua/bid.lua" <<LUA
local body = $BODY_LUA
request = function()
  return wrk.format("POST", "/openrtb2/auction", {["Content-Type"] = "application/json"}, body)
end
LUA

# wrk_line OUT -> "rps p50_us p99_us non2xx"
wrk_line() {
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def lat(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % label, t, re.M)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)] if m else float("nan")
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
s = re.search(r"Socket errors: (.*)", t)
print(f"{rps:.0f} {lat('50%'):.0f} {lat('99%'):.0f} {e.group(1) if e else 0} {'yes' if s else 'no'}")
PY
}
wrk -t1 -c"$CONNS" -d2s -s "$WORK/lua/rtb.lua" "http://127.0.0.1:$port/openrtb2/auction" >/dev/null 2>&1 || true
curl -s "http://127.0.0.1:$admin/metrics" > "$WORK/m0"
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/lua/rtb.lua" \
  "http://127.0.0.1:$port/openrtb2/auction" > "$WORK/auction.out" 2>&1
curl -s "http://127.0.0.1:$admin/metrics" > "$WORK/m1"
# the exchange's own time beyond the slowest bidder, from its histogram (auctions in the run
# where every bidder answered in time): "count p50_us p99_us" (bucket upper bounds)
server_added=$(python3 - "$WORK/m0" "$WORK/m1" <<'PY'
import re, sys
def hist(path):
    h, n = {}, 0
    for l in open(path):
        m = re.match(r'ap_rtb_exchange_added_seconds_bucket\{le="([^"]+)"\} (\d+)', l)
        if m:
            h[m.group(1)] = int(m.group(2))
    return h
a, b = hist(sys.argv[1]), hist(sys.argv[2])
d = {k: b[k] - a.get(k, 0) for k in b}
n = d.get("+Inf", 0)
def q(p):
    for k, v in sorted(((k, v) for k, v in d.items() if k != "+Inf"), key=lambda kv: float(kv[0])):
        if v >= p * n:
            return f"{float(k) * 1e6:.0f}"
    return ">10000"
print(n, q(0.5), q(0.99) if n else "-")
PY
)
read -r a_rps a_p50 a_p99 a_err a_sock < <(wrk_line "$WORK/auction.out")
req_total=0
for p in "${BIDDER_PORTS[@]}"; do
  n=$(curl -s "http://127.0.0.1:$p/_stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  req_total=$((req_total + n))
done
partner_metrics=$(grep -E '^adplatform_partner_(requests|timeouts|errors|refused)_total' "$WORK/m1" | sort -u | tr '\n' ';' || true)
# a bidder alone at the load each bidder saw (the auction's rate over one bidder)
per_bidder_conns=$(( CONNS / 3 > 1 ? CONNS / 3 : 1 ))
wrk -t1 -c"$per_bidder_conns" -d5s --latency -s "$WORK/lua/bid.lua" \
  "http://127.0.0.1:${BIDDER_PORTS[0]}/openrtb2/auction" > "$WORK/bidder.out" 2>&1
read -r b_rps b_p50 b_p99 b_err b_sock < <(wrk_line "$WORK/bidder.out")
if [ "$called" -gt 0 ] && [ "$req_total" -gt 0 ]; then
  added=$(python3 -c "print(f'{($a_p99 - $b_p99)/1000:.2f} ms')")
else
  added="n/a: the exchange did not call the partners (internal demand only)"
fi
read -r h_n h_p50 h_p99 <<< "$server_added"
echo "auctions: $a_rps/s p50 ${a_p50}us p99 ${a_p99}us non2xx $a_err; bidder alone p99 ${b_p99}us; added at p99 ${added}; bidder requests $req_total; exchange histogram: $h_n auctions with every bidder in time, added p50 <= ${h_p50}us p99 <= ${h_p99}us" >&2

python3 - "$ROOT" "$burst" "$steady" "$a_rps" "$a_p50" "$a_p99" "$a_err" "$b_p99" "$added" \
  "$called" "$seats" "$req_total" "$DURATION" "$CONNS" "$partner_metrics" "$DELAY_MS" \
  "$h_n" "$h_p50" "$h_p99" <<'PY'
import json, sys, datetime, platform, os
(root, burst, steady, a_rps, a_p50, a_p99, a_err, b_p99, added, called, seats, req_total,
 dur, conns, pm, delay, h_n, h_p50, h_p99) = sys.argv[1:]
def j(s):
    try: return json.loads(s)
    except Exception: return {}
b, s = j(burst), j(steady)
lines = ["", f"## RTB with outside bidders (bench/rtb_partners.sh), {datetime.date.today()}", "",
  f"Machine: {os.cpu_count()} cores ({platform.machine()}), everything unpinned on them. Test bidders "
  f"(tests/tools/test_bidder) answer after {delay} ms.", "",
  "**ap_http_client alone** (tests/tools/hc_bench, one loop):", "",
  "| case | completed | ok | timeouts | errors | peak in flight | req/s | p50 ms | p99 ms |",
  "|---|---|---|---|---|---|---|---|---|"]
for name, r in (("10,000 at once", b), ("1,000 in flight, 100,000 requests", s)):
    if r:
        lines.append(f"| {name} | {r['completed']} | {r['ok']} | {r['timeouts']} | "
                     f"{r['io_errors'] + r['too_long'] + r['refused'] + r['other_status']} | "
                     f"{r['peak_inflight']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} |")
    else:
        lines.append(f"| {name} | (failed) | | | | | | | |")
lines += ["", f"**The exchange**, 2 worker threads, 3 partners + our placement, wrk {conns} connections, "
  f"{dur} s: partners called in a probe auction: {called}/3 (seats answered: {seats}); "
  f"bid requests the bidders received during the run: {req_total}.", "",
  "| auctions/s | p50 µs | p99 µs | non-2xx | bidder alone p99 µs | added by the exchange at p99 |",
  "|---|---|---|---|---|---|",
  f"| {a_rps} | {a_p50} | {a_p99} | {a_err} | {b_p99} | {added} |", "",
  f"The exchange's own histogram (ap_rtb_exchange_added_seconds: auction time beyond its slowest "
  f"bidder's answer, for the {h_n} auctions of the run where every bidder answered in time): "
  f"p50 ≤ {h_p50} µs, p99 ≤ {h_p99} µs (bucket upper bounds).", "",
  f"Partner counters after the run: `{pm.strip(';') or '-'}`", ""]
with open(root + "/docs/benchmarks.md", "a") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
