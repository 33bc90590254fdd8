"""Integration tests of the tracking beacons and the event log against the real daemon:
impression/view/click/conversion beacons with tokens from real decisions and tokens signed here
(with the daemon's key file, so expiry and the attribution window can be tested), tampering,
wrong types, the click redirect (snapshot URL, {click_id} macro, not influenced by the query),
the batch endpoint, metrics, decisions in the log, and 503 + Retry-After from a tiny ring.
What was logged is read back with `adplatform events dump`.
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse

from aptest import AP_BIN, Daemon, Runner, check
from test_api import Api, bootstrap
from test_decision import World, decision, wait_version

IMP, VIEW, CLICK, CONV = 1, 2, 3, 4


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


class Signer:
    """Signs tokens exactly as src/events/ap_token.c does (BLAKE2b-128 keyed MAC)."""

    def __init__(self, data_dir):
        lines = [l.split() for l in open(os.path.join(data_dir, "keys", "token.key"))
                 if l.strip() and not l.startswith("#")]
        kid, _, hexkey = lines[-1]
        self.kid, self.key = int(kid), bytes.fromhex(hexkey)

    def binary(self, typ, imp_id, camp, ad, pl, pub, price, issued, flags=0):
        b = bytes([1, self.kid >> 8, self.kid & 0xFF, typ, flags]) + imp_id
        for v in (camp, ad, pl, pub, price, issued):
            b += varint(v)
        return b + hashlib.blake2b(b, digest_size=16, key=self.key).digest()

    def token(self, *a, **kw):
        return base64.urlsafe_b64encode(self.binary(*a, **kw)).rstrip(b"=").decode()

    def click_id(self, *a, **kw):
        return self.binary(*a, **kw).hex()


def dump(d, typ=None):
    cmd = [AP_BIN, "events", "dump", "--data-dir", d.data_dir] + (["--type", typ] if typ else [])
    out = subprocess.run(cmd, capture_output=True, timeout=60)
    check(out.returncode == 0, out.stderr)
    return [json.loads(l) for l in out.stdout.decode().splitlines()]


def get(d, path, headers=None):
    return d.get(path, headers=headers)


def metric(d, name):
    st, _, body = d.get("/metrics", admin=True)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def tamper(tok, i):
    c = tok[i]
    return tok[:i] + ("A" if c != "A" else "B") + tok[i + 1:]


def main():
    T = Runner()
    D = Daemon("--threads", "2", "--geoip-db", "none", "--uap-regexes", "none")
    boot = bootstrap(D)
    D.start()
    try:
        run(T, D, boot)
    finally:
        D.__exit__(None, None, None)
    tiny_ring(T)
    behind_a_proxy(T)
    T.finish()


def run(T, D, boot):
    api = Api(D, boot["api_key"])
    W = World(api)
    top = W.pl_top["id"]
    camp = W.campaign(price_micros=2500000)
    ad = W.ad(camp, W.html, landing_url="https://shop.example/landing?src=ads&cid={click_id}")
    wait_version(D, lambda: (decision(D, {"placements": [{"id": top, "div": "top"}]})[2]
                             .get("decisions") or {}).get("top") is not None)
    S = Signer(D.data_dir)
    pub_id = W.pub["id"]

    def served():
        for _ in range(100):
            st, _, b = decision(D, {"placements": [{"id": top, "div": "top"}]})
            if st == 200 and b["decisions"]["top"]:
                return b["decisions"]["top"][0]
            time.sleep(0.05)
        raise AssertionError("no fill")

    def path_of(url):
        u = urllib.parse.urlsplit(url)
        return u.path + "?" + u.query

    def tok_of(url):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["t"][0]

    @T.case
    def imp_and_view_beacons_are_logged_after_a_decision():
        a = served()
        st, h, body = get(D, path_of(a["impression_url"]))
        check(st == 200 and h["content-type"] == "image/gif" and body[:6] == b"GIF89a", (st, h))
        check(len(body) == 43 and "no-store" in h.get("cache-control", ""), h)
        st, h, body = get(D, path_of(a["view_url"]))
        check(st == 200 and h["content-type"] == "image/gif", (st, h))
        imp_id = base64.urlsafe_b64decode(tok_of(a["impression_url"]) + "==")[5:21].hex()
        evs = [e for e in dump(D) if e["imp_id"] == imp_id]
        types = sorted(e["type"] for e in evs)
        check(types == ["imp", "view"], evs)
        # decisions are counted per worker and appended within 250 ms, without an impression id
        t0 = time.time()
        while True:
            dec = [e for e in dump(D) if e["type"] == "decision"]
            if dec or time.time() - t0 > 3:
                break
            time.sleep(0.05)
        # (a worker's record counts the fills it made: this one and any while the setup waited)
        check(dec and all(e["imp_id"] == "00" * 16 and e["count"] >= 1 for e in dec), dec)
        for e in evs + dec:
            check(e["campaign_id"] == camp["id"] and e["ad_id"] == ad["id"], e)
            check(e["placement_id"] == top and e["publisher_id"] == pub_id, e)
            check(e["price_micros"] == 2500000 and (e["count"] == 1 or e in dec), e)
            check(abs(e["time_ns"] / 1e9 - time.time()) < 60, e)
        # a repeated beacon is answered normally and logged again (the aggregator dedups)
        st, _, _ = get(D, path_of(a["impression_url"]))
        check(st == 200)
        check(len([e for e in dump(D, "imp") if e["imp_id"] == imp_id]) == 2)

    @T.case
    def tampered_malformed_missing_and_wrong_type_are_400_and_not_logged():
        a = served()
        tok = tok_of(a["impression_url"])
        before = len(dump(D))
        for i in (0, 3, 10, len(tok) // 2, len(tok) - 1):
            st, _, b = get(D, "/v1/e/imp?t=" + tamper(tok, i))
            check(st == 400, (i, st, b))
            check(json.loads(b)["error"]["code"] in ("forged", "malformed"), b)
        st, _, b = get(D, "/v1/e/imp?t=" + tok[:-3])
        check(st == 400 and json.loads(b)["error"]["code"] == "malformed", b)
        st, _, b = get(D, "/v1/e/imp")
        check(st == 400 and json.loads(b)["error"]["code"] == "missing_token", b)
        st, _, b = get(D, "/v1/e/click?t=" + tok)  # an impression token on the click endpoint
        check(st == 400 and json.loads(b)["error"]["code"] == "wrong_type", b)
        st, _, b = get(D, "/v1/e/imp?t=" + tok_of(a["view_url"]))
        check(st == 400 and json.loads(b)["error"]["code"] == "wrong_type", b)
        check(len(dump(D)) == before, "a rejected beacon was logged")
        check(metric(D, 'ap_events_rejected_total{type="imp",reason="missing_token"}') >= 1)
        check(metric(D, 'ap_events_rejected_total{type="click",reason="wrong_type"}') >= 1)
        check(metric(D, 'ap_events_rejected_total{type="imp",reason="forged"}')
              + metric(D, 'ap_events_rejected_total{type="imp",reason="malformed"}') >= 5)

    @T.case
    def tokens_signed_here_verify_and_expire():
        now = int(time.time())
        fresh = S.token(IMP, os.urandom(16), camp["id"], ad["id"], top, pub_id, 777, now)
        st, _, _ = get(D, "/v1/e/imp?t=" + fresh)
        check(st == 200, st)
        old = S.token(IMP, os.urandom(16), camp["id"], ad["id"], top, pub_id, 777, now - 3700)
        st, _, b = get(D, "/v1/e/imp?t=" + old)
        check(st == 400 and json.loads(b)["error"]["code"] == "expired", b)
        future = S.token(IMP, os.urandom(16), camp["id"], ad["id"], top, pub_id, 777, now + 3600)
        st, _, b = get(D, "/v1/e/imp?t=" + future)
        check(st == 400 and json.loads(b)["error"]["code"] == "expired", b)
        # clicks live 24 h
        c = S.token(CLICK, os.urandom(16), camp["id"], ad["id"], top, pub_id, 777, now - 20 * 3600)
        st, h, _ = get(D, "/v1/e/click?t=" + c)
        check(st == 302, st)
        c = S.token(CLICK, os.urandom(16), camp["id"], ad["id"], top, pub_id, 777, now - 25 * 3600)
        st, _, b = get(D, "/v1/e/click?t=" + c)
        check(st == 400 and json.loads(b)["error"]["code"] == "expired", b)
        # test traffic is logged with the test flag
        imp_id = os.urandom(16)
        t = S.token(IMP, imp_id, camp["id"], ad["id"], top, pub_id, 777, now, flags=0x80)
        check(get(D, "/v1/e/imp?t=" + t)[0] == 200)
        e = [e for e in dump(D, "imp") if e["imp_id"] == imp_id.hex()]
        check(len(e) == 1 and e[0]["flags"] & 0x80, e)
        check(metric(D, 'ap_events_rejected_total{type="imp",reason="expired"}') >= 2)

    @T.case
    def click_redirects_to_the_snapshot_url_with_a_click_id():
        a = served()
        path = path_of(a["click_url"])
        st, h, _ = get(D, path)
        check(st == 302, st)
        loc = h["location"]
        check(loc.startswith("https://shop.example/landing?src=ads&cid="), loc)
        cid = loc.rsplit("=", 1)[1]
        check(len(cid) > 40 and all(c in "0123456789abcdef" for c in cid), cid)
        # the click id carries the impression id
        imp_id = base64.urlsafe_b64decode(tok_of(a["click_url"]) + "==")[5:21].hex()
        check(bytes.fromhex(cid)[5:21].hex() == imp_id)
        # query parameters cannot steer the redirect
        for extra in ("&url=https://evil.example/", "&landing=https://evil.example/",
                      "&redirect=//evil.example", "&t=x"):
            st, h, _ = get(D, path + extra)
            check(st == 302 and h["location"].startswith("https://shop.example/landing?"),
                  (extra, st, h.get("location")))
        clicks = [e for e in dump(D, "click") if e["imp_id"] == imp_id]
        check(len(clicks) == 5 and all(e["ad_id"] == ad["id"] for e in clicks), clicks)
        # an unknown ad (valid token): no redirect, nothing logged
        now = int(time.time())
        c = S.token(CLICK, os.urandom(16), camp["id"], 999999, top, pub_id, 1, now)
        st, _, b = get(D, "/v1/e/click?t=" + c)
        check(st == 404 and json.loads(b)["error"]["code"] == "unknown_ad", (st, b))

    @T.case
    def conversions_need_a_click_id_inside_the_window():
        a = served()
        st, h, _ = get(D, path_of(a["click_url"]))
        cid = h["location"].rsplit("=", 1)[1]
        st, _, b = get(D, "/v1/e/conv?click_id=%s&value=12.5" % cid)
        check(st == 204, (st, b))
        st, _, b = get(D, "/v1/e/conv?click_id=%s&value_micros=42" % cid)
        check(st == 204, (st, b))
        imp_id = bytes.fromhex(cid)[5:21].hex()
        convs = [e for e in dump(D, "conv") if e["imp_id"] == imp_id]
        check(sorted(e["value_micros"] for e in convs) == [42, 12500000], convs)
        check(all(e["campaign_id"] == camp["id"] and e["ad_id"] == ad["id"] for e in convs))
        for bad, code in ((tamper(cid, 30), ("forged", "malformed")), (cid.upper(), ("malformed",)),
                          (cid[:-2], ("forged", "malformed")), ("", ("missing_token",))):
            st, _, b = get(D, "/v1/e/conv?click_id=%s&value=1" % bad)
            check(st == 400 and json.loads(b)["error"]["code"] in code, (bad, st, b))
        for v in ("-1", "1.2345678", "abc", "1e5", ""):
            st, _, b = get(D, "/v1/e/conv?click_id=%s&value=%s" % (cid, v))
            check(st == 400 and json.loads(b)["error"]["code"] == "bad_value", (v, st, b))
        # an impression token is not a click id
        st, _, b = get(D, "/v1/e/conv?click_id=" +
                       base64.urlsafe_b64decode(tok_of(a["impression_url"]) + "==").hex())
        check(st == 400 and json.loads(b)["error"]["code"] == "wrong_type", b)
        # the attribution window: 30 days from the click
        now = int(time.time())
        ok = S.click_id(CONV, os.urandom(16), camp["id"], ad["id"], top, pub_id, 1, now - 29 * 86400)
        check(get(D, "/v1/e/conv?click_id=" + ok)[0] == 204)
        old = S.click_id(CONV, os.urandom(16), camp["id"], ad["id"], top, pub_id, 1, now - 31 * 86400)
        st, _, b = get(D, "/v1/e/conv?click_id=" + old)
        check(st == 400 and json.loads(b)["error"]["code"] == "expired", b)

    @T.case
    def batch_answers_per_event():
        now = int(time.time())
        ids = [os.urandom(16) for _ in range(3)]
        good = S.token(IMP, ids[0], camp["id"], ad["id"], top, pub_id, 5, now)
        click = S.token(CLICK, ids[1], camp["id"], ad["id"], top, pub_id, 5, now)
        view = S.token(VIEW, ids[2], camp["id"], ad["id"], top, pub_id, 5, now)
        events = [{"type": "imp", "t": good}, {"type": "imp", "t": tamper(good, 20)},
                  {"type": "click", "t": click}, {"type": "view", "t": view},
                  {"type": "imp", "t": view}, {"type": "nope", "t": good}, {"type": "imp"},
                  "junk"]
        st, _, b = D.request("POST", "/v1/events", json.dumps({"events": events}).encode(),
                             headers={"Content-Type": "application/json"})
        check(st == 200, (st, b))
        r = json.loads(b)
        check(r["accepted"] == 3 and r["rejected"] == 5, r)
        res = r["results"]
        check([x["status"] for x in res] == ["ok", "rejected", "ok", "ok", "rejected",
                                             "rejected", "rejected", "rejected"], res)
        check(res[1]["reason"] in ("forged", "malformed") and res[4]["reason"] == "wrong_type"
              and res[6]["reason"] == "missing_token", res)
        cid = res[2]["click_id"]
        events = [{"type": "conv", "click_id": cid, "value_micros": 99},
                  {"type": "conv", "click_id": cid, "value_micros": -1}]
        st, _, b = D.request("POST", "/v1/events", json.dumps({"events": events}).encode())
        r = json.loads(b)
        check(st == 200 and r["accepted"] == 1 and r["results"][1]["reason"] == "bad_value", r)
        log = dump(D)
        for i, typ in ((0, "imp"), (1, "click"), (2, "view"), (1, "conv")):
            check(len([e for e in log if e["imp_id"] == ids[i].hex() and e["type"] == typ]) == 1,
                  (i, typ))
        for body in (b"{", b"[]", b'{"events":{}}',
                     json.dumps({"events": [{"type": "imp", "t": good}] * 1001}).encode()):
            st, _, b = D.request("POST", "/v1/events", body)
            check(st == 400, (body[:30], st, b))

    @T.case
    def pipelined_beacons_answer_in_order():
        now = int(time.time())
        toks = [S.token(IMP, os.urandom(16), camp["id"], ad["id"], top, pub_id, 5, now)
                for _ in range(20)]
        toks[7] = "bad"
        req = b"".join(b"GET /v1/e/imp?t=%s HTTP/1.1\r\nHost: x\r\n\r\n" % t.encode() for t in toks)
        s = D.connect()
        s.sendall(req)
        from aptest import Reader
        r = Reader(s)
        sts = [r.response()[0] for _ in toks]
        s.close()
        check(sts == [400 if i == 7 else 200 for i in range(20)], sts)

    @T.case
    def metrics_cover_events_and_the_log():
        check(metric(D, 'ap_events_accepted_total{type="imp"}') >= 5)
        check(metric(D, 'ap_events_accepted_total{type="conv"}') >= 3)
        check(metric(D, "ap_evlog_records_total") >= 10)
        check(metric(D, "ap_evlog_bytes_total") == 136 * metric(D, "ap_evlog_records_total"))
        check(metric(D, "ap_evlog_sync_seconds_count") >= 1)
        check(metric(D, 'ap_evlog_sync_seconds_bucket{le="+Inf"}')
              == metric(D, "ap_evlog_sync_seconds_count"))
        check(metric(D, "ap_evlog_failed") == 0)

    @T.case
    def log_survives_a_restart():
        time.sleep(0.4)  # decision counts wait up to 250 ms in their worker
        before = dump(D)
        served()  # its count is still in the worker: a graceful stop appends it
        D.stop()
        os.unlink(D.port_file)
        D.start()
        after = dump(D)
        check(after[:len(before)] == before)
        new = after[len(before):]
        check(len(new) == 1 and new[0]["type"] == "decision" and new[0]["count"] == 1, new)
        n = len(after)
        now = int(time.time())
        t = S.token(IMP, os.urandom(16), camp["id"], ad["id"], top, pub_id, 5, now)
        check(get(D, "/v1/e/imp?t=" + t)[0] == 200)
        check(len(dump(D)) == n + 1)


def tiny_ring(T):
    """A ring of 2 records per worker and a slow group commit: concurrent beacons overflow it;
    those get 503 + Retry-After and are not logged; every 200 is."""
    D = Daemon("--threads", "1", "--geoip-db", "none", "--uap-regexes", "none",
               "--event-ring", "2", "--event-sync-ms", "200")
    D.start()
    try:
        @T.case
        def full_ring_is_503_with_retry_after():
            S = Signer(D.data_dir)
            now = int(time.time())
            ok_ids, busy_ids, retry = set(), set(), set()
            for _ in range(10):
                socks, ids = [], []
                for _ in range(40):
                    i = os.urandom(16)
                    t = S.token(IMP, i, 1, 1, 1, 1, 5, now)
                    s = D.connect()
                    socks.append((s, b"GET /v1/e/imp?t=%s HTTP/1.1\r\nHost: x\r\n\r\n" % t.encode()))
                    ids.append(i.hex())
                for s, req in socks:
                    s.sendall(req)
                from aptest import Reader
                for (s, _), i in zip(socks, ids):
                    st, h, _ = Reader(s).response()
                    s.close()
                    if st == 200:
                        ok_ids.add(i)
                    else:
                        check(st == 503, st)
                        busy_ids.add(i)
                        retry.add(h.get("retry-after"))
                if busy_ids:
                    break
            check(busy_ids, "no 503 in 400 concurrent beacons on a 2-record ring")
            check(retry == {"1"}, retry)
            logged = {e["imp_id"] for e in dump(D, "imp")}
            check(ok_ids <= logged, "a 200 beacon is missing from the log")
            check(not (busy_ids & logged), "a 503 beacon was logged")
            check(metric(D, 'ap_events_unavailable_total{type="imp"}') == len(busy_ids))
            check(metric(D, 'ap_evlog_ring_full_total{type="imp"}') == len(busy_ids))
    finally:
        D.__exit__(None, None, None)


def behind_a_proxy(T):
    """Behind a load balancer (--trusted-proxies), a beacon's country comes from the right-most
    untrusted X-Forwarded-For entry, as for decisions; without it, from the peer (tor-geoipdb's
    country data, the default geo source, knows 8.8.8.8 as US and 5.9.0.1 as DE)."""
    D = Daemon("--threads", "1", "--uap-regexes", "none", "--trusted-proxies", "127.0.0.1/32")
    D.start()
    try:
        @T.case
        def beacon_country_follows_trusted_x_forwarded_for():
            S = Signer(D.data_dir)

            def country_of(headers):
                i = os.urandom(16)
                t = S.token(IMP, i, 1, 1, 1, 1, 5, int(time.time()))
                st, _, _ = get(D, "/v1/e/imp?t=" + t, headers=headers)
                check(st == 200, st)
                ev = [e for e in dump(D, "imp") if e["imp_id"] == i.hex()]
                check(len(ev) == 1, ev)
                return ev[0]["country"]

            t0 = time.time()  # the geo data loads in the background at start
            while country_of({"X-Forwarded-For": "8.8.8.8"}) != "US":
                check(time.time() - t0 < 30, "geo data not loaded within 30 s")
                time.sleep(0.2)
            check(country_of({"X-Forwarded-For": "5.9.0.1"}) == "DE")
            check(country_of({"X-Forwarded-For": "5.9.0.1, 8.8.8.8"}) == "US")  # right-most
            check(country_of({"X-Forwarded-For": "8.8.8.8, 127.0.0.1"}) == "US")  # skip trusted
            check(country_of({}) == "")  # the peer, 127.0.0.1
            check(country_of({"X-Forwarded-For": "not-an-ip"}) == "")
    finally:
        D.__exit__(None, None, None)


if __name__ == "__main__":
    main()
