"""Outside demand in the OpenRTB exchange (POST /openrtb2/auction): demand partners configured
through /api/v1/demand-partners are called with the test bidder of tests/tools (a real HTTP
server on loopback) and compete with our own campaigns per imp: outside vs internal demand,
bid adjustment, floors, deals, second price, blocked advertisers, macro substitution, win and
loss notices fired once, privacy scrubbing checked on what the bidder received, the answer
inside tmax when a bidder never answers, the circuit breaker, per-partner metrics.
"""
import html
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from aptest import AP_BIN, Daemon, Runner, check
from test_api import Api, bootstrap
from test_decision import World, wait_version

BIDDER = os.environ.get("AP_TEST_BIDDER") or os.path.join(
    os.path.dirname(AP_BIN), "tests", "tools", "test_bidder")


class Bidder:
    """The test bidder program, on a free loopback port."""

    def __init__(self, seat, *args):
        self.dir = tempfile.mkdtemp(prefix="tb-")
        pf = os.path.join(self.dir, "port.json")
        self.p = subprocess.Popen([BIDDER, "--port-file", pf, "--seat", seat] + list(args),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while not (os.path.exists(pf) and os.path.getsize(pf) > 0):
            check(time.time() - t0 < 10 and self.p.poll() is None, "test bidder did not start")
            time.sleep(0.02)
        time.sleep(0.05)
        self.port = json.load(open(pf))["listen"]
        self.url = "http://127.0.0.1:%d" % self.port

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return json.loads(r.read())

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(self.url + "/_reset", data=b"",
                                                      method="POST"), timeout=5).read()

    def requests(self):
        return [r for r in self.get("/_requests") if r["method"] == "POST"]

    def notices(self, wait_for=0, timeout=3.0):
        t0 = time.time()
        while True:
            n = self.get("/_notices")
            if len(n) >= wait_for or time.time() - t0 > timeout:
                return n
            time.sleep(0.02)

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


def auction(d, body):
    st, rh, rb = d.request("POST", "/openrtb2/auction", json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
    check(st == 200, (st, rb))
    return json.loads(rb)


def tc_string(purposes, special_features=0):
    """A TCF v2 core segment (up to PublisherCC, 213 bits) with the given purposes consented."""
    bits = []

    def put(v, n):
        bits.extend((v >> (n - 1 - i)) & 1 for i in range(n))
    put(2, 6)
    put(16000000000, 36)
    put(16000000000, 36)
    put(7, 12)
    put(1, 12)
    put(1, 6)
    put(4 * 64 + 13, 12)  # "EN"
    put(100, 12)
    put(4, 6)
    put(0, 1)
    put(0, 1)
    put(special_features, 12)  # bit 0 of the field = special feature 1
    put(sum(1 << (24 - p) for p in purposes), 24)
    put(0, 24)
    put(0, 1)
    put(3 * 64 + 4, 12)  # "DE"
    bits.extend([0] * (-len(bits) % 24))
    raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
    import base64
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def qs(n):
    return dict(urllib.parse.parse_qsl(n["query"]))


def main():
    T = Runner()
    D = Daemon("--threads", "2")
    boot = bootstrap(D)
    D.start()
    b1, b2 = Bidder("tbone"), Bidder("tbtwo")
    try:
        run(T, D, boot, b1, b2)
    finally:
        b1.stop()
        b2.stop()
        D.__exit__(None, None, None)
    T.finish()


def run(T, D, boot, b1, b2):
    api = Api(D, boot["api_key"])
    W = World(api)
    top = W.pl_top["id"]
    camp = W.campaign(price_micros=1234567)  # our bid: CPM 1.234567
    W.ad(camp, W.html)
    p1 = api.ok("POST", "/demand-partners", {"name": "one", "bidder_code": "tbone",
                                              "endpoint": b1.url + "/bid", "timeout_ms": 400})
    p2 = api.ok("POST", "/demand-partners", {"name": "two", "bidder_code": "tbtwo",
                                              "endpoint": b2.url + "/bid", "timeout_ms": 400,
                                              "bid_adjustment": 0.5})

    def req(one=None, two=None, rid="req-1", **kw):
        bidders = {"adplatform": {"placement": top}}
        bidders["tbone"] = one if one is not None else {"nobid": True}
        bidders["tbtwo"] = two if two is not None else {"nobid": True}
        r = {"id": rid,
             "imp": [{"id": "imp-1", "banner": {"format": [{"w": 300, "h": 250}]},
                      "ext": {"prebid": {"bidder": bidders}}}],
             "site": {"page": "https://news.example.com/a", "domain": "news.example.com"},
             "device": {"ua": "Mozilla/5.0", "ip": "203.0.113.7"},
             "tmax": 500}
        r.update(kw)
        return r

    def reset():
        b1.reset()
        b2.reset()

    def winner(b):
        check(len(b.get("seatbid", [])) == 1, b)
        sb = b["seatbid"][0]
        return sb["seat"], sb["bid"][0]

    wait_version(D, lambda: "tbtwo" in auction(D, req())["ext"]["responsetimemillis"],
                 timeout=5)

    @T.case
    def outside_bid_beats_ours_with_macros_and_nurl():
        reset()
        b = auction(D, req(one={"price": 2.0}, rid="auc-A"))
        seat, bid = winner(b)
        check(seat == "tbone" and abs(bid["price"] - 2.0) < 1e-9, b)
        check('data-price="2.000000"' in bid["adm"], bid["adm"])  # ${AUCTION_PRICE}
        check("nurl" not in bid and "lurl" not in bid, "notices are fired by us")
        check("${" not in bid.get("burl", ""), bid)
        check(set(b["ext"]["responsetimemillis"]) >= {"adplatform", "tbone", "tbtwo"}, b["ext"])
        check("errors" not in b["ext"], b["ext"])
        n = b1.notices(wait_for=1)
        time.sleep(0.2)
        n = b1.get("/_notices")
        wins = [x for x in n if x["path"].startswith("/_n/win")]
        check(len(wins) == 1, n)  # fired once
        q = qs(wins[0])
        check(q["price"] == "2.000000" and q["imp"] == "imp-1" and q["auction"] == "auc-A", q)
        # the request it received: its params as imp.ext.bidder, tmax cut to its time
        sent = json.loads(b1.requests()[0]["body"])
        check(sent["imp"][0]["ext"]["bidder"] == {"price": 2.0}, sent["imp"][0])
        check("tbtwo" not in json.dumps(sent["imp"][0]["ext"]), "other bidders' params")
        check(0 < sent["tmax"] <= 400, sent["tmax"])

    @T.case
    def burl_fired_once_behind_our_impression_beacon():
        reset()
        b = auction(D, req(one={"price": 2.0}, rid="auc-bill"))
        seat, bid = winner(b)
        check(seat == "tbone", b)
        check("burl" not in bid, "burl is fired by us, not by the page: %r" % bid)
        m = re.search(r'<img src="([^"]*/v1/e/imp\?t=[^"]+)"', bid["adm"])
        check(m, "our impression pixel in the adm: %r" % bid["adm"])
        px = urllib.parse.urlsplit(html.unescape(m.group(1)))
        path = px.path + "?" + px.query
        b1.notices(wait_for=1)  # the win notice
        time.sleep(0.3)
        bills = [x for x in b1.get("/_notices") if x["path"].startswith("/_n/bill")]
        check(bills == [], "burl fired before the impression: %r" % bills)
        for _ in range(2):  # the beacon repeats: billed once
            st, h, body = D.request("GET", path)
            check(st == 200 and body[:6] == b"GIF89a", (st, body[:40]))
        t0 = time.time()
        while not [x for x in b1.get("/_notices") if x["path"].startswith("/_n/bill")]:
            check(time.time() - t0 < 5, "burl not fired after the impression beacon")
            time.sleep(0.02)
        time.sleep(0.3)
        bills = [x for x in b1.get("/_notices") if x["path"].startswith("/_n/bill")]
        check(len(bills) == 1, bills)
        q = qs(bills[0])
        check(q["price"] == "2.000000" and q["imp"] == "imp-1" and q["auction"] == "auc-bill", q)
        # a forged pixel (token changed) is refused and bills nothing
        bad = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
        st, _, _ = D.request("GET", bad)
        check(st == 400, st)

        def row():
            r = api.ok("GET", "/reports?group_by=partner")
            for x in r.get("rows", []):
                if x.get("partner_id") == p1["id"] or x.get("partner") == p1["id"]:
                    return x
            return None
        wait_version(D, lambda: row() is not None and row()["billings"] >= 1, timeout=10)
        r = row()
        # one impression at CPM 2.0: 2.0 / 1000 USD = 2000 micros of revenue from the partner
        check(r["billings"] == 1 and r["rtb_revenue_micros"] == 2000, r)
        check(r["impressions"] == 1, r)
        st, _, m = D.request("GET", "/metrics", admin=True)
        m = m.decode()
        check("ap_rtb_billing_fired_total 1\n" in m and "ap_rtb_billing_unclaimed_total 1\n" in m,
              [l for l in m.splitlines() if "billing" in l])

    @T.case
    def ours_beats_outside_and_loser_gets_lurl():
        reset()
        b = auction(D, req(one={"price": 0.5}, rid="auc-B"))
        seat, bid = winner(b)
        check(seat == "adplatform" and abs(bid["price"] - 1.234567) < 1e-9, b)
        n = b1.notices(wait_for=1)
        check(len(n) == 1 and n[0]["path"].startswith("/_n/loss"), n)
        check(qs(n[0])["loss"] == "102", n)  # lost to a higher bid

    @T.case
    def bid_adjustment():
        reset()
        # tbtwo bids 4.0 * 0.5 = 2.0 against tbone's 1.9
        b = auction(D, req(one={"price": 1.9}, two={"price": 4.0}))
        seat, bid = winner(b)
        check(seat == "tbtwo" and abs(bid["price"] - 2.0) < 1e-9, b)
        n = b2.notices(wait_for=1)
        check(len(n) == 1 and qs(n[0])["price"] == "4.000000", n)  # in the bidder's terms

    @T.case
    def second_price():
        reset()
        b = auction(D, req(one={"price": 3.0}, at=2))
        seat, bid = winner(b)
        check(seat == "tbone" and abs(bid["price"] - 1.244567) < 1e-9, b)  # ours + 0.01
        n = b1.notices(wait_for=1)  # the win notice carries the clearing price
        check(len(n) == 1 and qs(n[0])["price"] == "1.244567", n)

    @T.case
    def floors():
        reset()
        r = req(one={"price": 2.0}, rid="auc-floor")
        r["imp"][0]["bidfloor"] = 2.5
        b = auction(D, r)
        check("seatbid" not in b, b)
        n = [x for x in b1.notices(wait_for=1) if qs(x)["auction"] == "auc-floor"]
        check(len(n) == 1 and qs(n[0])["loss"] == "100", n)

    @T.case
    def deals_first_in_private_auction():
        reset()
        r = req(one={"price": 0.5}, two={"price": 9.0, "dealid": "NOPE"})
        r["imp"][0]["pmp"] = {"private_auction": 1, "deals": [{"id": "D1", "bidfloor": 0.1}]}
        b = auction(D, r)
        seat, bid = winner(b)
        check(seat == "tbone" and bid["dealid"] == "D1", b)
        n = b2.notices(wait_for=1)
        check(len(n) == 1 and qs(n[0])["loss"] == "4", n)  # invalid deal id

    @T.case
    def blocked_advertiser_and_size():
        reset()
        b = auction(D, req(one={"price": 5.0}, two={"price": 5.0, "w": 728, "h": 90},
                           badv=["testbidder.example"]))
        check("seatbid" not in b or winner(b)[0] == "adplatform", b)
        n1, n2 = b1.notices(wait_for=1), b2.notices(wait_for=1)
        check(qs(n1[0])["loss"] == "205", n1)
        check(qs(n2[0])["loss"] in ("205", "203"), n2)

    @T.case
    def privacy_gdpr_without_consent():
        reset()
        r = req(one={"price": 1.0})
        r["regs"] = {"gdpr": 1}
        r["user"] = {"id": "u-1", "buyeruid": "bu-1", "eids": [{"source": "x.com",
                                                               "uids": [{"id": "e1"}]}]}
        r["device"] = {"ua": "Mozilla/5.0", "ip": "203.0.113.7", "ifa": "ifa-1",
                       "geo": {"lat": 48.85, "lon": 2.35, "country": "FRA"}}
        auction(D, r)
        sent = json.loads(b1.requests()[0]["body"])
        u, dv = sent.get("user", {}), sent["device"]
        check("id" not in u and "buyeruid" not in u and "eids" not in u, u)
        check(dv["ip"] == "203.0.113.0" and "ifa" not in dv, dv)
        check("lat" not in dv["geo"] and "lon" not in dv["geo"] and dv["geo"]["country"] == "FRA",
              dv)

    @T.case
    def privacy_gdpr_with_consent():
        def sent_for(consent):
            reset()
            r = req(one={"price": 1.0})
            r["regs"] = {"gdpr": 1}
            r["user"] = {"id": "u-1", "buyeruid": "bu-1", "consent": consent}
            r["device"] = {"ua": "Mozilla/5.0", "ip": "203.0.113.7",
                           "geo": {"lat": 48.85, "lon": 2.35}}
            auction(D, r)
            return json.loads(b1.requests()[0]["body"])
        s = sent_for(tc_string([1, 2, 3, 4], special_features=0x800))
        check(s["user"]["buyeruid"] == "bu-1" and s["device"]["ip"] == "203.0.113.7", s)
        check(s["device"]["geo"]["lat"] == 48.85, s)
        s = sent_for(tc_string([1, 2, 3, 4]))  # no precise geolocation opt-in
        check(s["user"]["buyeruid"] == "bu-1", s)
        check("lat" not in s["device"]["geo"] and s["device"]["ip"] == "203.0.113.0", s)
        s = sent_for(tc_string([1, 2]))  # no personalisation consent
        check("buyeruid" not in s.get("user", {}), s)

    @T.case
    def privacy_coppa_and_lmt():
        reset()
        r = req(one={"price": 1.0})
        r["regs"] = {"coppa": 1}
        r["user"] = {"id": "u-1", "buyeruid": "bu-1", "yob": 2015}
        r["device"] = {"ua": "Mozilla/5.0", "ipv6": "2001:db8:1234:5678::1", "ifa": "ifa-1",
                       "geo": {"lat": 1.5, "lon": 2.5}}
        auction(D, r)
        sent = json.loads(b1.requests()[0]["body"])
        check("id" not in sent.get("user", {}) and "yob" not in sent.get("user", {}), sent)
        check(sent["device"]["ipv6"] == "2001:db8:1234::" and "ifa" not in sent["device"], sent)
        check("lat" not in sent["device"].get("geo", {}), sent)
        reset()
        r = req(one={"price": 1.0})
        r["user"] = {"id": "u-1"}
        r["device"] = {"ua": "Mozilla/5.0", "ip": "203.0.113.7", "ifa": "ifa-1", "lmt": 1}
        auction(D, r)
        sent = json.loads(b1.requests()[0]["body"])
        check("ifa" not in sent["device"] and sent["device"]["ip"] == "203.0.113.7", sent)
        check(sent["user"]["id"] == "u-1", sent)  # no GDPR, no COPPA: ids pass

    @T.case
    def currency_rates_api_and_use():
        check(api.ok("GET", "/currency-rates") == {"base": "USD", "rates": {}}, "empty at start")
        st, _, e = api("PUT", "/currency-rates", {"rates": {"eur": 1.1}})
        check(st == 422 and "rates.eur" in json.dumps(e), (st, e))
        st, _, e = api("PUT", "/currency-rates", {"rates": {"EUR": -1}})
        check(st == 422, (st, e))
        st, _, e = api("PUT", "/currency-rates", {"rates": {"USD": 1}})
        check(st == 422, (st, e))
        reset()
        # a partner bidding in EUR: without a rate its bid is dropped as invalid (loss 3)
        be = Bidder("tbeur", "--cur", "EUR", "--price", "1.0")
        pe = api.ok("POST", "/demand-partners", {"name": "eur", "bidder_code": "tbeur",
                                                  "endpoint": be.url + "/bid",
                                                  "timeout_ms": 300})
        try:
            wait_version(D, lambda: "tbeur" in auction(D, req())["ext"]["responsetimemillis"],
                         timeout=5)
            seat, _ = winner(auction(D, req()))
            check(seat == "adplatform", "EUR bid without a rate must not win")
            n = be.notices(wait_for=1)
            check(n and qs(n[-1])["loss"] == "3", n)
            api.ok("PUT", "/currency-rates", {"rates": {"EUR": 1.5}})

            def eur_wins():  # 1.0 EUR = 1.5 USD > our 1.234567
                b = auction(D, req())
                return b.get("seatbid") and b["seatbid"][0]["seat"] == "tbeur"
            wait_version(D, eur_wins, timeout=5)
            seat, bid = winner(auction(D, req()))
            check(abs(bid["price"] - 1.5) < 1e-9, bid)
        finally:
            api.ok("PATCH", "/demand-partners/%d" % pe["id"], {"status": "paused"})
            be.stop()
        r = api.ok("PUT", "/currency-rates", {"base": "USD", "rates": {"EUR": 1.5, "GBP": 1.25}})
        check(r == {"base": "USD", "rates": {"EUR": 1.5, "GBP": 1.25}}, r)
        check(api.ok("GET", "/currency-rates")["rates"]["GBP"] == 1.25, "stored")
        # a floor in EUR: 1.0 EUR = 1.5 USD, above our 1.234567: we do not win any more
        fr = req(one={"price": 1.4})
        fr["imp"][0]["bidfloor"] = 1.0
        fr["imp"][0]["bidfloorcur"] = "EUR"

        def floor_applied():
            return "seatbid" not in auction(D, fr)
        wait_version(D, floor_applied, timeout=5)
        fr["imp"][0]["ext"]["prebid"]["bidder"]["tbone"] = {"price": 1.6}
        seat, bid = winner(auction(D, fr))
        check(seat == "tbone" and abs(bid["price"] - 1.6) < 1e-9, bid)
        a = api.ok("GET", "/audit-log?resource=currency_rates")
        check(len(a["data"]) >= 1, a)
        api.ok("PUT", "/currency-rates", {"rates": {}})

    @T.case
    def bids_wins_losses_by_partner_in_reports():
        # BID/WIN/LOSS records reach the event log and the aggregator's rollups
        def row():
            b = api.ok("GET", "/reports?group_by=partner")
            for r in b.get("rows", []):
                if r.get("partner_id") == p1["id"] or r.get("partner") == p1["id"]:
                    return r
            return None
        wait_version(D, lambda: row() is not None and row()["wins"] >= 1, timeout=10)
        r = row()
        check(r["bids"] >= 2 and r["losses"] >= 1 and r["bids"] >= r["wins"], r)

    @T.case
    def circuit_breaker_and_metrics():
        bad = api.ok("POST", "/demand-partners", {"name": "bad", "bidder_code": "tbbad",
                                                   "endpoint": b1.url + "/bid?mode=error",
                                                   "timeout_ms": 300})
        try:
            wait_version(D, lambda: "tbbad" in auction(D, req())["ext"]["responsetimemillis"],
                         timeout=5)
            msgs = []
            for _ in range(12):
                e = auction(D, req()).get("ext", {}).get("errors", {}).get("tbbad", [])
                msgs.append(e[0]["message"] if e else "")
            check(any("circuit breaker open" in m for m in msgs), msgs)
            check(any("status code: 500" in m for m in msgs), msgs)
            st, _, m = D.request("GET", "/metrics", admin=True)
            m = m.decode()
            check('adplatform_partner_refused_total{partner="%d",reason="breaker"}' % bad["id"]
                  in m, [l for l in m.splitlines() if "partner" in l][:20])
            check('adplatform_partner_requests_total{partner="%d"}' % p1["id"] in m, "p1 metrics")
            # the exchange's own time beyond its slowest bidder: a histogram of the auctions
            # where every bidder answered (the earlier cases had such auctions)
            h = {}
            for l in m.splitlines():
                if l.startswith("ap_rtb_exchange_added_seconds"):
                    k, v = l.rsplit(" ", 1)
                    h[k] = float(v)
            n = h.get("ap_rtb_exchange_added_seconds_count", 0)
            buckets = [v for k, v in h.items() if "_bucket" in k]
            check(n >= 5 and buckets == sorted(buckets) and
                  h['ap_rtb_exchange_added_seconds_bucket{le="+Inf"}'] == n, h)
            check(0 <= h["ap_rtb_exchange_added_seconds_sum"] / n < 0.05, h)  # < 50 ms each
        finally:
            api.ok("PATCH", "/demand-partners/%d" % bad["id"], {"status": "paused"})


    @T.case
    def answer_within_tmax_when_a_bidder_hangs():
        # last: the timeouts open both bidders' circuit breakers for a while
        reset()
        r = req(one={"price": 3.0}, tmax=200)
        r["ext"] = {"test_bidder": {"mode": "hang"}}
        worst = worst_server = 0
        server_times = []
        for _ in range(5):
            t0 = time.time()
            b = auction(D, r)
            worst = max(worst, (time.time() - t0) * 1000)
            check(b["ext"]["errors"]["tbone"][0]["code"] == 1, b["ext"])  # timeout
            # the server's own clock when it gave up on the bidder and answered
            worst_server = max(worst_server, b["ext"]["responsetimemillis"]["tbone"])
            server_times.append(b["ext"]["responsetimemillis"]["tbone"])
            seat, _ = winner(b)
            check(seat == "adplatform", b)
        # the deadline is tmax minus a 15 ms margin; a 2-core machine running other tests can
        # leave the worker unscheduled past it, so the median must beat tmax and the worst may
        # overshoot only by such a scheduling delay
        median = sorted(server_times)[len(server_times) // 2]
        check(median < 200, "server answered at %s ms, tmax 200" % server_times)
        check(worst_server < 300, "server answered at %d ms, tmax 200" % worst_server)
        # seen from the client (Python, loopback, a loaded 2-core test machine): some slack
        check(worst < 300, "answered in %.1f ms, tmax 200" % worst)

if __name__ == "__main__":
    main()
