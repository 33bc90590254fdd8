"""Integration tests of the OpenRTB exchange (POST /openrtb2/auction) against the real daemon with
our own campaigns as demand: Prebid-Server-compatible responses (seatbid, bid.ext.prebid.type and
targeting, ext.responsetimemillis, ext.errors, debug), the 400 "Invalid request: ..." answers,
CORS for Prebid.js (preflight, credentials, text/plain), 2.5 -> 2.6 ext normalisation, floors,
second price, blocked advertiser domains, private deals, currencies, tmax.

Outside demand partners (the test bidder of tests/tools): test_rtb_partners.py.
"""
import json
import time

from aptest import Daemon, Runner, check
from test_api import Api, bootstrap, run_with_admin
from test_decision import World, wait_version


def auction(d, body, headers=None, ctype="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": ctype}
    h.update(headers or {})
    st, rh, rb = d.request("POST", "/openrtb2/auction", data, headers=h)
    if rh.get("content-type", "").startswith("application/json"):
        rb = json.loads(rb)
    return st, rh, rb


def base_request(placement, **kw):
    req = {
        "id": "req-1",
        "imp": [{"id": "imp-1", "banner": {"format": [{"w": 300, "h": 250}]},
                 "ext": {"prebid": {"bidder": {"adplatform": {"placement": placement}}}}}],
        "site": {"page": "https://news.example.com/a", "domain": "news.example.com"},
        "device": {"ua": "Mozilla/5.0", "ip": "203.0.113.7"},
        "tmax": 500,
    }
    req.update(kw)
    return req


def main():
    run_with_admin(run, "--threads", "2")


def run(T, D, boot):
    api = Api(D, boot["api_key"])
    W = World(api)
    top = W.pl_top["id"]
    camp = W.campaign(price_micros=1234567)  # CPM 1.234567
    W.ad(camp, W.html)
    wait_version(D, lambda: auction(D, base_request(top))[2].get("seatbid") is not None)

    @T.case
    def internal_bid_wins_with_prebid_fields():
        req = base_request(top)
        req["ext"] = {"prebid": {"targeting": {"pricegranularity": "medium",
                                               "includewinners": True,
                                               "includebidderkeys": True}}}
        st, h, b = auction(D, req)
        check(st == 200, (st, b))
        check(b["id"] == "req-1" and b["cur"] == "USD", b)
        check(len(b["seatbid"]) == 1 and b["seatbid"][0]["seat"] == "adplatform", b)
        bid = b["seatbid"][0]["bid"][0]
        check(bid["impid"] == "imp-1" and abs(bid["price"] - 1.234567) < 1e-9, bid)
        check(bid["w"] == 300 and bid["h"] == 250 and bid["mtype"] == 1, bid)
        check("<b>hello</b>" in bid["adm"], bid["adm"])
        check("/v1/e/imp?t=" in bid["adm"], "impression pixel in the markup")
        check(bid["adomain"] == ["acme.example"], bid)
        check(bid["crid"] == str(W.html["id"]) and bid["cid"] == str(camp["id"]), bid)
        pb = bid["ext"]["prebid"]
        check(pb["type"] == "banner", pb)
        t = pb["targeting"]
        check(t["hb_pb"] == "1.20" and t["hb_bidder"] == "adplatform" and t["hb_size"] == "300x250",
              t)
        check(t["hb_pb_adplatform"] == "1.20" and t["hb_bidder_adplatform"] == "adplatform"
              and t["hb_size_adplatform"] == "300x250", t)
        check("adplatform" in b["ext"]["responsetimemillis"], b["ext"])
        check(b["ext"]["tmaxrequest"] == 500, b["ext"])
        check(h.get("cache-control") == "no-store", h)

    @T.case
    def targeting_granularities_and_absence():
        req = base_request(top)
        req["ext"] = {"prebid": {"targeting": {"pricegranularity": "low"}}}
        b = auction(D, req)[2]
        check(b["seatbid"][0]["bid"][0]["ext"]["prebid"]["targeting"]["hb_pb"] == "1.00", b)
        req["ext"] = {"prebid": {"targeting": {"includewinners": True,
                                               "includebidderkeys": False}}}
        t = auction(D, req)[2]["seatbid"][0]["bid"][0]["ext"]["prebid"]["targeting"]
        check(set(t) == {"hb_pb", "hb_bidder", "hb_size"}, t)
        b = auction(D, base_request(top))[2]
        check("targeting" not in b["seatbid"][0]["bid"][0]["ext"]["prebid"], b)

    @T.case
    def placement_sources():
        for imp_ext, extra in (({"adplatform": {"placement": top}}, {}),
                               ({"prebid": {"storedrequest": {"id": str(top)}}}, {}),
                               (None, {"tagid": str(top)}),
                               ({"prebid": {"bidder": {"adplatform": {"placement": str(top)}}}},
                                {})):
            req = base_request(top)
            imp = {"id": "i", "banner": {"w": 300, "h": 250}}
            if imp_ext is not None:
                imp["ext"] = imp_ext
            imp.update(extra)
            req["imp"] = [imp]
            st, _, b = auction(D, req)
            check(st == 200 and b.get("seatbid"), (imp, st, b))

    @T.case
    def no_bid_is_200_without_seatbid():
        req = base_request(top)
        req["imp"][0]["banner"] = {"format": [{"w": 728, "h": 90}]}  # size not offered
        st, _, b = auction(D, req)
        check(st == 200, (st, b))
        check("seatbid" not in b and b["id"] == "req-1" and "ext" in b, b)

    @T.case
    def floors_and_second_price():
        req = base_request(top)
        req["imp"][0]["bidfloor"] = 2.0
        b = auction(D, req)[2]
        check("seatbid" not in b, "below floor: no bid")
        req["imp"][0]["bidfloor"] = 0.5
        b = auction(D, req)[2]
        check(abs(b["seatbid"][0]["bid"][0]["price"] - 1.234567) < 1e-9, b)
        req["at"] = 2
        b = auction(D, req)[2]
        check(abs(b["seatbid"][0]["bid"][0]["price"] - 0.51) < 1e-9, b)  # floor + 0.01
        req["imp"][0]["bidfloorcur"] = "EUR"  # no rate: the floor is not applied to us
        req["at"] = 1
        b = auction(D, req)[2]
        check(b.get("seatbid"), b)

    @T.case
    def blocked_domain_private_deal_and_currency():
        req = base_request(top, badv=["acme.example"])
        check("seatbid" not in auction(D, req)[2], "blocked adomain")
        req = base_request(top)
        req["imp"][0]["pmp"] = {"private_auction": 1, "deals": [{"id": "d1", "bidfloor": 1}]}
        check("seatbid" not in auction(D, req)[2], "private auction without our deal")
        req = base_request(top, cur=["EUR"])
        check("seatbid" not in auction(D, req)[2], "other currency")
        req = base_request(top, cur=["EUR", "USD"])
        check(auction(D, req)[2].get("seatbid"), "USD accepted")

    @T.case
    def unknown_bidder_reported_in_ext_errors():
        req = base_request(top)
        req["imp"][0]["ext"]["prebid"]["bidder"]["nosuchbidder"] = {"x": 1}
        st, _, b = auction(D, req)
        check(st == 200 and b.get("seatbid"), b)
        errs = b["ext"]["errors"]["nosuchbidder"]
        check(errs and errs[0]["code"] == 999, errs)

    @T.case
    def cors_preflight_and_credentials():
        st, h, _ = D.request("OPTIONS", "/openrtb2/auction", b"", headers={
            "Origin": "https://pub.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        check(st == 204, st)
        check(h.get("access-control-allow-origin") == "https://pub.example", h)
        check(h.get("access-control-allow-credentials") == "true", h)
        check("POST" in h.get("access-control-allow-methods", ""), h)
        check(h.get("access-control-allow-headers") == "content-type", h)
        st, h, b = auction(D, base_request(top), headers={"Origin": "https://pub.example"},
                           ctype="text/plain;charset=utf-8")
        check(st == 200 and b.get("seatbid"), (st, b))
        check(h.get("access-control-allow-origin") == "https://pub.example", h)
        check(h.get("access-control-allow-credentials") == "true", h)

    @T.case
    def ortb25_ext_locations_normalised_in_debug():
        req = base_request(top, test=1)
        req["regs"] = {"ext": {"gdpr": 0, "us_privacy": "1YNN"}}
        req["user"] = {"ext": {"consent": "CONSENT", "eids": [{"source": "x.com",
                                                             "uids": [{"id": "u1"}]}]}}
        req["source"] = {"ext": {"schain": {"ver": "1.0", "complete": 1, "nodes": []}}}
        req["imp"][0]["ext"] = {"adplatform": {"placement": top}, "gpid": "/1/top"}
        req["unknown_top"] = {"kept": [1, 2]}
        st, _, b = auction(D, req)
        check(st == 200, (st, b))
        rr = b["ext"]["debug"]["resolvedrequest"]
        check(rr["regs"]["gdpr"] == 0 and rr["regs"]["us_privacy"] == "1YNN", rr["regs"])
        check(rr["user"]["consent"] == "CONSENT" and rr["user"]["eids"][0]["source"] == "x.com",
              rr["user"])
        check(rr["source"]["schain"]["ver"] == "1.0", rr["source"])
        check("gdpr" not in rr["regs"].get("ext", {}), rr["regs"])
        check(rr["imp"][0]["ext"]["prebid"]["bidder"]["adplatform"]["placement"] == top, rr)
        check(rr["imp"][0]["ext"]["gpid"] == "/1/top", rr)
        check(rr["unknown_top"] == {"kept": [1, 2]}, "unknown fields kept")
        check(b.get("seatbid"), "bids with test=1 too")

    @T.case
    def invalid_requests_answer_400_plain_text():
        imp = {"id": "a", "banner": {"w": 300, "h": 250}, "tagid": str(top)}
        cases = [
            (b"{not json", "Invalid request: "),
            ({"imp": [imp], "site": {"page": "x"}}, 'request missing required field: "id"'),
            ({"id": "r", "imp": [], "site": {"page": "x"}},
             "request.imp must contain at least one element."),
            ({"id": "r", "imp": [imp]}, "One of request.site or request.app or request.dooh"),
            ({"id": "r", "imp": [imp], "site": {"page": "x"}, "app": {"id": "a"}},
             "No more than one of request.site or request.app or request.dooh"),
            ({"id": "r", "imp": [imp, dict(imp)], "site": {"page": "x"}},
             'request.imp[0].id and request.imp[1].id are both "a". Imp IDs must be unique.'),
            ({"id": "r", "imp": [{"id": "a", "tagid": "1"}], "site": {"page": "x"}},
             'request.imp[0] must contain at least one of "banner", "video", "audio", or '
             '"native"'),
            ({"id": "r", "imp": [{"id": "a", "tagid": "1", "banner": {"format": [{"w": 0,
                                                                                  "h": 250}]}}],
              "site": {"page": "x"}},
             "Request imp[0].banner.format[0] must define non-zero \"h\" and \"w\" properties."),
            ({"id": "r", "imp": [{"id": "a", "banner": {"w": "300", "h": 250}}],
              "site": {"page": "x"}}, "request.imp[0].banner.w must be an integer"),
            ({"id": "r", "tmax": -1, "imp": [imp], "site": {"page": "x"}},
             "request.tmax must be nonnegative. Got -1"),
            ({"id": "r", "imp": [{"id": "a", "banner": {"w": 300, "h": 250}, "ext": {}}],
              "site": {"page": "x"}},
             "request.imp[0].ext.prebid.bidder must contain at least one bidder"),
            ({"id": "r", "imp": [imp], "site": {"name": "x"}},
             "request.site should include at least one of request.site.id or request.site.page."),
        ]
        for body, want in cases:
            st, h, b = auction(D, body)
            check(st == 400, (body, st, b))
            check(h.get("content-type", "").startswith("text/plain"), h)
            text = b.decode()
            check(text.startswith("Invalid request: ") and want in text, (want, text))

    @T.case
    def response_well_inside_tmax():
        req = base_request(top, tmax=50)
        t0 = time.time()
        st, _, b = auction(D, req)
        took = (time.time() - t0) * 1000
        check(st == 200 and b.get("seatbid") and took < 50, (st, took))

    @T.case
    def bidder_endpoint_bids_and_204():
        req = base_request(top)
        req["imp"] = [{"id": "x1", "banner": {"w": 300, "h": 250}, "tagid": str(top),
                       "bidfloor": 0.1}]
        st, h, b = D.request("POST", "/openrtb2/bid", json.dumps(req).encode(),
                             headers={"Content-Type": "application/json"})
        check(st == 200, (st, b))
        b = json.loads(b)
        bid = b["seatbid"][0]["bid"][0]
        check(b["id"] == "req-1" and bid["impid"] == "x1", b)
        check(bid["burl"].startswith("http://127.0.0.1:%d/v1/e/imp?t=" % D.port), bid)
        check(abs(bid["price"] - 1.234567) < 1e-9, bid)
        req["imp"][0]["bidfloor"] = 5
        st, _, b = D.request("POST", "/openrtb2/bid", json.dumps(req).encode(),
                             headers={"Content-Type": "application/json"})
        check(st == 204 and b == b"", (st, b))
        st, _, b = D.request("POST", "/openrtb2/bid", b"[]",
                             headers={"Content-Type": "application/json"})
        check(st == 400 and b.startswith(b"Invalid request: "), (st, b))

    @T.case
    def metrics_count_auctions():
        st, _, body = D.request("GET", "/metrics", admin=True)
        text = body.decode()
        check(st == 200 and "ap_rtb_auctions_total" in text, text[-500:])
        line = [l for l in text.splitlines() if l.startswith("ap_rtb_wins_total")][0]
        check(int(line.split()[-1]) > 5, line)


if __name__ == "__main__":
    main()
