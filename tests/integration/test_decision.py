"""Integration tests of ad decisioning against the real daemon: data created through the REST API
(bootstrap admin, advertisers, campaigns, creatives, ads, inventory), then POST /v1/decision and
GET /v1/ad on the data plane: fills, no fill, targeting, tracking URLs, cookies and consent,
frequency caps across connections, 400s for bad input, snapshot updates within 1 s, caps that
survive a restart.
"""
import base64
import json
import os
import threading
import time

from aptest import Daemon, Runner, check, raw, status_of
from test_api import Api, bootstrap, png_bytes, http, run_with_admin


def decision(d, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    st, rh, rb = d.request("POST", "/v1/decision", data, headers=h)
    return st, rh, (json.loads(rb) if rb and rh.get("content-type", "").startswith("application/json")
                    else rb)


def error_code(body):
    """The code of an error body, checking it has the control plane's shape."""
    check(isinstance(body, dict) and set(body) == {"error"}, body)
    check(set(body["error"]) == {"code", "message", "fields"}, body)
    check(body["error"]["fields"] == [], body)
    return body["error"]["code"]


class World:
    """Inventory and two advertisers created through the API."""

    def __init__(self, api):
        a = api
        self.api = a
        self.adv = a.ok("POST", "/advertisers", {"name": "Acme", "currency": "USD",
                                                 "timezone": "America/New_York"})
        self.adv2 = a.ok("POST", "/advertisers", {"name": "Other", "currency": "USD",
                                                  "timezone": "UTC"})
        pub = a.ok("POST", "/publishers", {"name": "News", "currency": "USD",
                                           "revenue_share_ppm": 700000})
        site = a.ok("POST", "/sites", {"publisher_id": pub["id"], "name": "News site",
                                       "domain": "news.example.com"})
        self.pub, self.site = pub, site
        self.pl_top = a.ok("POST", "/placements", {"site_id": site["id"], "name": "top",
                                                   "sizes": ["300x250"],
                                                   "ad_types": ["image", "html"]})
        self.pl_side = a.ok("POST", "/placements", {"site_id": site["id"], "name": "side",
                                                    "sizes": ["300x250"],
                                                    "ad_types": ["image", "html"]})
        self.pl_empty = a.ok("POST", "/placements", {"site_id": site["id"], "name": "wide",
                                                     "sizes": ["970x90"], "ad_types": ["html"]})
        # an image creative uploaded through the API
        st, _, up = http(a.d, "POST", "/api/v1/creatives/upload?advertiser_id=%d&name=img"
                         % self.adv["id"], png_bytes(300, 250), token=a.token, ctype="image/png")
        check(st == 201, (st, up))
        self.img = up
        self.html = a.ok("POST", "/creatives", {"advertiser_id": self.adv["id"], "name": "h",
                                                "type": "html", "width": 300, "height": 250,
                                                "html": "<b>hello</b>"})
        self.html2 = a.ok("POST", "/creatives", {"advertiser_id": self.adv2["id"], "name": "h2",
                                                 "type": "html", "width": 300, "height": 250,
                                                 "html": "<i>other</i>"})

    def campaign(self, adv=None, **kw):
        body = {"advertiser_id": (adv or self.adv)["id"], "name": "c", "status": "active",
                "price_micros": 2000000, "pacing": "asap"}
        body.update(kw)
        return self.api.ok("POST", "/campaigns", body)

    def ad(self, camp, creative, **kw):
        body = {"campaign_id": camp["id"], "creative_id": creative["id"],
                "landing_url": "https://acme.example/landing"}
        body.update(kw)
        return self.api.ok("POST", "/ads", body)


def wait_version(d, pred, timeout=3.0):
    """Polls until pred() holds (the snapshot caught up), returns the seconds it took."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return time.time() - t0
        time.sleep(0.02)
    raise AssertionError("condition not reached within %.1fs" % timeout)


def main():
    run_with_admin(run, "--threads", "2", "--trusted-proxies", "127.0.0.1/32, ::1")


def run(T, D, boot):
    api = Api(D, boot["api_key"])
    W = World(api)
    top, side = W.pl_top["id"], W.pl_side["id"]

    camp = W.campaign(priority_tier="standard", price_micros=3000000)
    ad_img = W.ad(camp, W.img)
    camp_kw = W.campaign(price_micros=5000000,
                         targeting={"keywords": {"any": ["sports"]}})
    ad_kw = W.ad(camp_kw, W.html)
    camp_house = W.campaign(adv=W.adv2, priority_tier="house", price_micros=100)
    ad_house = W.ad(camp_house, W.html2)

    # the builder picks the new rows up within a second: wait until all three ads serve
    def all_three():
        st, _, b = decision(D, {"placements": [{"id": side, "div": "s", "count": 3}],
                                "keywords": ["sports"]})
        return st == 200 and len(b["decisions"]["s"] or []) == 3
    wait_version(D, all_three)

    def top_ad(extra=None, headers=None):
        body = {"placements": [{"id": top, "div": "top"}]}
        body.update(extra or {})
        st, h, b = decision(D, body, headers)
        check(st == 200, (st, b))
        dec = b["decisions"]["top"]
        return (dec[0]["ad_id"] if dec else None), h, b

    @T.case
    def decision_fills_with_tracking_urls():
        wait_version(D, lambda: top_ad()[0] == ad_img["id"])
        ad_id, h, b = top_ad()
        item = b["decisions"]["top"][0]
        check(item["campaign_id"] == camp["id"] and item["advertiser_id"] == W.adv["id"], item)
        cr = item["creative"]
        check(cr["type"] == "image" and cr["width"] == 300 and cr["height"] == 250, cr)
        check(cr["url"] == "http://127.0.0.1:%d/assets/%s.png" % (D.port, W.img["sha256"]), cr)
        for k, path in (("impression_url", "/v1/e/imp?t="), ("view_url", "/v1/e/view?t="),
                        ("click_url", "/v1/e/click?t=")):
            check(item[k].startswith("http://127.0.0.1:%d%s" % (D.port, path)), item[k])
        toks = [item[k].split("t=")[1] for k in ("impression_url", "view_url", "click_url")]
        bins = [base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)) for t in toks]
        check(len(set(toks)) == 3, toks)
        check(all(b_[5:21] == bins[0][5:21] for b_ in bins), "one impression id for the 3 URLs")
        check([b_[3] for b_ in bins] == [1, 2, 3], "token types imp/view/click")
        # the image itself is served by the data plane
        st, rh, body = D.get("/assets/%s.png" % W.img["sha256"])
        check(st == 200 and body[:4] == b"\x89PNG", st)

    @T.case
    def keywords_rank_and_no_fill():
        check(top_ad({"keywords": ["Sports"]})[0] == ad_kw["id"])
        check(top_ad({"keywords": ["cars"]})[0] == ad_img["id"])
        st, _, b = decision(D, {"placements": [{"id": W.pl_empty["id"], "div": "wide"}]})
        check(st == 200 and b["decisions"] == {"wide": None}, b)

    @T.case
    def several_placements_no_duplicates():
        st, _, b = decision(D, {"placements": [{"id": top, "div": "a", "count": 2},
                                               {"id": side, "div": "b", "count": 3}],
                                "keywords": ["sports"]})
        check(st == 200, b)
        ids = [x["ad_id"] for x in b["decisions"]["a"]] + [x["ad_id"] for x in b["decisions"]["b"]]
        check(ids == [ad_kw["id"], ad_img["id"], ad_house["id"]], ids)
        check(len(b["decisions"]["b"]) == 1, b)
        st, _, b = decision(D, {"placements": [{"id": top, "div": "a", "count": 3}],
                                "keywords": ["sports"], "exclusive_advertisers": True})
        advs = [x["advertiser_id"] for x in b["decisions"]["a"]]
        check(len(advs) == len(set(advs)) == 2, advs)

    @T.case
    def ad_iframe_document():
        st, h, b = D.get("/v1/ad?placement=%d&kw=sports&url=https%%3A%%2F%%2Fnews.example.com%%2Fa"
                         % top)
        check(st == 200 and h["content-type"].startswith("text/html"), (st, h))
        check(b"<b>hello</b>" in b and b"/v1/e/imp?t=" in b and h.get("x-ap-fill") == "1", b)
        st, h, b = D.get("/v1/ad?placement=%d" % W.pl_empty["id"])
        check(st == 200 and h.get("x-ap-fill") == "0" and b"<body></body>" in b, b)
        st, _, b = D.get("/v1/ad?placement=abc")
        check(st == 400 and error_code(json.loads(b)) == "invalid_request", b)
        st, _, b = D.get("/v1/ad?placement=999999")
        check(st == 400 and error_code(json.loads(b)) == "unknown_placement", b)

    @T.case
    def bad_requests_are_400():
        cases = [b"", b"{", b"[]", b"null", b'{"placements":[]}', b'{"placements":{}}',
                 b'{"placements":[{"div":"x"}]}', b'{"placements":[{"id":"1"}]}',
                 b'{"placements":[{"id":1,"count":0}]}', b'{"placements":[{"id":1}]} x',
                 b'{"placements":[{"id":1e3}]}', b'{"placements":[{"id":%d}],"keywords":"x"}' % top,
                 b'\xff\xfe', b'{"a":' * 40 + b'1' + b'}' * 40]
        for c in cases:
            st, _, b = decision(D, c)
            check(st == 400, (c, st, b))
            error_code(b)
        st, _, b = decision(D, {"placements": [{"id": 999999}]})
        check(st == 400 and error_code(b) == "unknown_placement", b)
        st, _, b = decision(D, {"placements": [{"id": top, "div": str(i)} for i in range(21)]})
        check(st == 400 and error_code(b) == "invalid_request", b)
        st, _, b = decision(D, {"placements": [{"id": top, "div": str(i)} for i in range(20)]})
        check(st == 200, b)
        # the daemon is still fine
        check(D.get("/healthz")[0] == 200)

    @T.case
    def cookie_and_consent():
        ad_id, h, b = top_ad()
        check(h["set-cookie"].startswith("ap_uid=") and b["user"]["key"], h)
        uid = h["set-cookie"].split(";")[0].split("=", 1)[1]
        check(uid == b["user"]["key"])
        _, h2, b2 = top_ad(headers={"Cookie": "x=1; ap_uid=" + uid})
        check(b2["user"]["key"] == uid, b2)
        _, h3, b3 = top_ad({"user": {"key": "publisher-key-1"}})
        check(b3["user"]["key"] == "publisher-key-1", b3)
        # GDPR applies and no TCF consent: no cookie, no user key
        _, h4, b4 = top_ad({"consent": {"gdpr": True}}, headers={"Cookie": "ap_uid=" + uid})
        check("set-cookie" not in h4 and b4["user"]["key"] is None, (h4, b4))
        check(b4["decisions"]["top"] is not None, "still served (non-personal)")

    @T.case
    def cors_for_the_tag_on_another_origin():
        pub = "https://news.example.com"
        # the tag's cross-origin request: text/plain (no preflight), credentials included
        st, h, b = decision(D, {"placements": [{"id": top, "div": "top"}]},
                            {"Origin": pub, "Content-Type": "text/plain;charset=UTF-8"})
        check(st == 200 and b["decisions"]["top"], (st, b))
        check(h.get("access-control-allow-origin") == pub, h)
        check(h.get("access-control-allow-credentials") == "true", h)
        check("origin" in h.get("vary", "").lower(), h)
        check(h.get("set-cookie", "").startswith("ap_uid="), h)  # the cookie still works
        # errors carry them too (else the tag could not even read a 400)
        st, h, b = decision(D, b"{", {"Origin": pub})
        check(st == 400 and h.get("access-control-allow-origin") == pub, (st, h))
        # the preflight of a JSON request from another origin
        st, h, b = D.request("OPTIONS", "/v1/decision", headers={
            "Origin": "http://127.0.0.1:9", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        check(st == 204 and h.get("access-control-allow-origin") == "http://127.0.0.1:9", (st, h))
        check("POST" in h.get("access-control-allow-methods", ""), h)
        check("content-type" in h.get("access-control-allow-headers", "").lower(), h)
        check(h.get("access-control-allow-credentials") == "true", h)
        check(int(h.get("access-control-max-age", "0")) > 0, h)
        # no Origin (same origin, servers): no CORS grant; "null" and junk origins: none either
        for hdrs in ({}, {"Origin": "null"}, {"Origin": "javascript:alert(1)"},
                     {"Origin": "https://a.example\"x"}):
            st, h, _ = decision(D, {"placements": [{"id": top}]}, hdrs)
            check(st == 200 and "access-control-allow-origin" not in h, (hdrs, h))
        # never a wildcard
        st, h, _ = decision(D, {"placements": [{"id": top}]}, {"Origin": pub})
        check(h.get("access-control-allow-origin") != "*", h)

    @T.case
    def us_privacy_opt_out_is_like_gdpr_without_consent():
        c = W.campaign(priority_tier="sponsorship", price_micros=7,
                       targeting={"segments": ["auto-intender"], "keywords": {"any": ["usp"]}})
        a = W.ad(c, W.html)
        seg = {"keywords": ["usp"], "user": {"key": "usp-user", "segments": ["auto-intender"]}}
        wait_version(D, lambda: top_ad(seg)[0] == a["id"])
        # no opt-out ("1YNN", or not applicable "1---"): personal as before
        for usp in ("1YNN", "1---"):
            ad_id, h, b = top_ad(dict(seg, consent={"us_privacy": usp}))
            check(ad_id == a["id"] and b["user"]["key"] == "usp-user", (usp, b))
        # opted out of sale: no behavioural targeting, no user key, no cookie, still served
        ad_id, h, b = top_ad(dict(seg, consent={"us_privacy": "1YYN"}),
                             headers={"Cookie": "ap_uid=someone"})
        check(ad_id is not None and ad_id != a["id"], (ad_id, b))
        check(b["user"]["key"] is None and "set-cookie" not in h, (h, b))
        _, h, b = top_ad({"consent": {"us_privacy": "1YYY"}})
        check("set-cookie" not in h and b["user"]["key"] is None, (h, b))
        # an invalid string changes nothing (the cookie is set as usual)
        _, h, b = top_ad({"consent": {"us_privacy": "bogus"}})
        check(h.get("set-cookie", "").startswith("ap_uid="), h)
        # the iframe endpoint takes it as a query parameter
        st, h, _ = D.get("/v1/ad?placement=%d&us_privacy=1YYN" % top)
        check(st == 200 and "set-cookie" not in h, h)
        st, h, _ = D.get("/v1/ad?placement=%d&us_privacy=1YNN" % top)
        check(st == 200 and h.get("set-cookie", "").startswith("ap_uid="), h)
        api.ok("DELETE", "/campaigns/%d" % c["id"])

    @T.case
    def snapshot_follows_writes_within_1s():
        c = W.campaign(priority_tier="sponsorship", price_micros=1,
                       targeting={"keywords": {"any": ["flash"]}})
        a = W.ad(c, W.html)
        took = wait_version(D, lambda: top_ad({"keywords": ["flash"]})[0] == a["id"])
        check(took < 1.0, "took %.2fs" % took)
        api.ok("PATCH", "/campaigns/%d" % c["id"], {"status": "paused"})
        took = wait_version(D, lambda: top_ad({"keywords": ["flash"]})[0] != a["id"])
        check(took < 1.0, "took %.2fs" % took)

    @T.case
    def incremental_snapshot_follows_parents_and_reactivation():
        # the builder re-reads only changed rows: a parent's change (advertiser paused), a row
        # going inactive and coming back, and a new row must each reach serving within 1 s
        adv = api.ok("POST", "/advertisers", {"name": "Incr", "currency": "USD",
                                              "timezone": "UTC"})
        cr = api.ok("POST", "/creatives", {"advertiser_id": adv["id"], "name": "i",
                                          "type": "html", "width": 300, "height": 250,
                                          "html": "<i>incr</i>"})
        c = W.campaign(adv=adv, priority_tier="sponsorship", price_micros=9,
                       targeting={"keywords": {"any": ["incr"]}})
        a = W.ad(c, cr)
        kw = {"keywords": ["incr"]}
        check(wait_version(D, lambda: top_ad(kw)[0] == a["id"]) < 1.0)
        for status, want in (("paused", False), ("active", True)):
            api.ok("PATCH", "/advertisers/%d" % adv["id"], {"status": status})
            took = wait_version(D, lambda: (top_ad(kw)[0] == a["id"]) == want)
            check(took < 1.0, (status, took))
        api.ok("PATCH", "/ads/%d" % a["id"], {"status": "paused"})
        check(wait_version(D, lambda: top_ad(kw)[0] != a["id"]) < 1.0)
        a2 = W.ad(c, cr)
        check(wait_version(D, lambda: top_ad(kw)[0] == a2["id"]) < 1.0)
        api.ok("DELETE", "/campaigns/%d" % c["id"])
        check(wait_version(D, lambda: top_ad(kw)[0] not in (a["id"], a2["id"])) < 1.0)

    @T.case
    def frequency_cap_across_connections():
        c = W.campaign(priority_tier="sponsorship", price_micros=10,
                       frequency_caps=[{"count": 3, "window_seconds": 3600, "scope": "campaign"}],
                       targeting={"keywords": {"any": ["capped"]}})
        a = W.ad(c, W.html)
        wait_version(D, lambda: top_ad({"keywords": ["capped"], "user": {"key": "probe"}})[0]
                     == a["id"])
        got = []
        lock = threading.Lock()

        def worker():
            for _ in range(5):
                ad_id, _, _ = top_ad({"keywords": ["capped"], "user": {"key": "capped-user"}})
                with lock:
                    got.append(ad_id)

        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(got.count(a["id"]) == 3, got)
        # another user is not capped
        check(top_ad({"keywords": ["capped"], "user": {"key": "fresh"}})[0] == a["id"])
        W.capped = a

    @T.case
    def client_ip_and_trusted_proxies():
        c = W.campaign(priority_tier="sponsorship", price_micros=10,
                       targeting={"ip_ranges": ["203.0.113.0/24"], "keywords": {"any": ["ipt"]}})
        a = W.ad(c, W.html)
        kw = {"keywords": ["ipt"]}
        wait_version(D, lambda: top_ad(dict(kw, ip="203.0.113.9"))[0] == a["id"])
        check(top_ad(kw)[0] != a["id"])  # the peer, 127.0.0.1
        # 127.0.0.1 is a trusted proxy: its X-Forwarded-For counts (rightmost untrusted entry)
        check(top_ad(kw, headers={"X-Forwarded-For": "203.0.113.7"})[0] == a["id"])
        check(top_ad(kw, headers={"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})[0] != a["id"])
        check(top_ad(kw, headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 127.0.0.1"})[0]
              == a["id"])
        check(top_ad(kw, headers={"X-Forwarded-For": "not-an-ip"})[0] != a["id"])

    @T.case
    def raw_garbage_never_crashes():
        for body in (b"POST /v1/decision HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: 3\r\n\r\n{{{",
                     b"GET /v1/ad?placement=%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            out = raw(D, body, timeout=2)
            check(status_of(out) == 400, out[:200])
        check(D.get("/healthz")[0] == 200)

    @T.case
    def caps_survive_restart():
        D.stop()
        check(os.path.exists(os.path.join(D.data_dir, "serve", "delivery.state")))
        os.unlink(D.port_file)
        D.start()
        a = W.capped
        check(top_ad({"keywords": ["capped"], "user": {"key": "capped-user"}})[0] != a["id"])
        check(top_ad({"keywords": ["capped"], "user": {"key": "fresh2"}})[0] == a["id"])



if __name__ == "__main__":
    main()
