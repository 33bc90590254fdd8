"""Integration tests of the reports API (GET /api/v1/reports) against the real daemon.

Events at chosen instants (around midnight, around both DST changes of America/New_York, in
several campaigns, countries and devices, a repeated beacon and test traffic) are written as
a segment of the event log in the documented on-disk format (src/events/ap_evlog.h: u32 length,
u32 CRC32C, 128-byte record) while the daemon is stopped; on restart the log carries on after
them and the aggregator folds them in. The reports are then checked against sums computed here:
grouping, time zones across midnight and DST (23- and 25-hour days), hourly buckets with their
offsets, CSV, filters, tenant scoping (advertiser and publisher users), test traffic,
validation (422 with fields) and the CLI (`adplatform report`).
"""
import calendar
import csv
import io
import json
import os
import struct
import subprocess
import time

from aptest import AP_BIN, Daemon, Runner, check
from test_api import Api, bootstrap, run_with_admin

IMP, VIEW, CLICK, CONV, DECISION = 2, 3, 4, 5, 1
F_TEST = 0x80

# ---- the on-disk log format -----------------------------------------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def record(type_, t, campaign=0, ad=0, placement=0, publisher=0, price=0, imp_id=0,
           country=b"US", device=2, flags=0, value=0, partner=0):
    """One struct ap_event (128 bytes, little endian) accepted at Unix time t (seconds)."""
    idb = imp_id.to_bytes(16, "big") if imp_id else bytes(16)
    payload = struct.pack("<BBBB2sHII16s12q", 1, type_, flags, device, country, 0, 1, 0, idb,
                          int(t * 1e9), campaign, ad, placement, publisher, partner, price,
                          value, int(t), 0, 0, 0)
    assert len(payload) == 128
    return struct.pack("<II", 128, crc32c(payload)) + payload


def append_segment(data_dir, frames):
    """Appends frames to the last segment of the (closed) log, creating the first if none."""
    d = os.path.join(data_dir, "events")
    os.makedirs(d, exist_ok=True)
    segs = sorted(f for f in os.listdir(d) if f.endswith(".seg"))
    path = os.path.join(d, segs[-1] if segs else "%020d.seg" % 0)
    with open(path, "ab") as f:
        f.write(b"".join(frames))
        f.flush()
        os.fsync(f.fileno())


def utc(s):
    """'2024-03-10T05:30:00' (UTC) -> Unix seconds."""
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%S"))


def metric(daemon, name):
    st, _, body = daemon.request("GET", "/metrics", admin=True)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def main():
    run_with_admin(run, "--threads", "2")


def run(T, D, boot):
    admin = Api(D, boot["api_key"])
    adv_ny = admin.ok("POST", "/advertisers", {"name": "NY", "currency": "USD",
                                               "timezone": "America/New_York"})
    adv_b = admin.ok("POST", "/advertisers", {"name": "B", "currency": "USD", "timezone": "UTC"})
    pub1 = admin.ok("POST", "/publishers", {"name": "P1", "currency": "USD",
                                            "revenue_share_ppm": 700000})
    pub2 = admin.ok("POST", "/publishers", {"name": "P2", "currency": "USD",
                                            "revenue_share_ppm": 500000})
    site1 = admin.ok("POST", "/sites", {"publisher_id": pub1["id"], "name": "s1",
                                        "domain": "one.example"})
    site2 = admin.ok("POST", "/sites", {"publisher_id": pub2["id"], "name": "s2",
                                        "domain": "two.example"})
    pl1 = admin.ok("POST", "/placements", {"site_id": site1["id"], "name": "a",
                                           "sizes": ["300x250"]})
    pl2 = admin.ok("POST", "/placements", {"site_id": site1["id"], "name": "b",
                                           "sizes": ["300x250"]})
    pl3 = admin.ok("POST", "/placements", {"site_id": site2["id"], "name": "c",
                                           "sizes": ["300x250"]})
    c1 = admin.ok("POST", "/campaigns", {"advertiser_id": adv_ny["id"], "name": "c1",
                                         "price_micros": 2000000})
    c2 = admin.ok("POST", "/campaigns", {"advertiser_id": adv_ny["id"], "name": "c2",
                                         "price_micros": 1234567})
    c3 = admin.ok("POST", "/campaigns", {"advertiser_id": adv_b["id"], "name": "c3",
                                         "pricing_model": "cpc", "price_micros": 500000})
    cr = admin.ok("POST", "/creatives", {"advertiser_id": adv_ny["id"], "name": "h",
                                         "type": "html", "width": 300, "height": 250,
                                         "html": "<b>x</b>"})
    ad1 = admin.ok("POST", "/ads", {"campaign_id": c1["id"], "creative_id": cr["id"]})
    advuser = admin.ok("POST", "/users", {"email": "adv@example.com", "password": "secret-pw-1",
                                          "role": "advertiser", "advertiser_ids": [adv_ny["id"]]})
    pubuser = admin.ok("POST", "/users", {"email": "pub@example.com", "password": "secret-pw-2",
                                          "role": "publisher", "publisher_ids": [pub1["id"]]})
    adv_api = admin.key_for(advuser["id"])
    pub_api = admin.key_for(pubuser["id"])
    D.stop()

    # ---- the events ----------------------------------------------------------------------
    frames = []
    expect = []  # (t, campaign, placement, publisher, type, price, country, device, test)
    nid = [1000]

    def add(type_, t, camp, pl, pub, price, country=b"US", device=2, flags=0, imp_id=None,
            dup=False):
        if imp_id is None:
            nid[0] += 1
            imp_id = nid[0]
        frames.append(record(type_, t, camp["id"], ad1["id"] if camp is c1 else 0, pl["id"],
                             pub["id"], price, imp_id, country, device, flags))
        if not dup:
            expect.append((t, camp["id"], pl["id"], pub["id"], type_, price, country.decode(),
                           device, bool(flags & F_TEST)))
        return imp_id

    # midnight UTC / Paris: 2024-03-09 23:30Z (Paris 00:30 on the 10th), 2024-03-10 00:30Z
    add(IMP, utc("2024-03-09T23:30:00"), c1, pl1, pub1, 2000000)
    add(IMP, utc("2024-03-10T00:30:00"), c1, pl1, pub1, 2000000, country=b"FR", device=1)
    # New York spring forward (2024-03-10 02:00 EST -> 03:00 EDT; the day is 23 hours)
    add(IMP, utc("2024-03-10T04:30:00"), c2, pl2, pub1, 1234567)  # Mar 9 23:30 EST
    add(IMP, utc("2024-03-10T05:30:00"), c2, pl2, pub1, 1234567)  # Mar 10 00:30 EST
    add(IMP, utc("2024-03-10T07:30:00"), c2, pl2, pub1, 1234567)  # Mar 10 03:30 EDT
    add(IMP, utc("2024-03-11T03:30:00"), c2, pl2, pub1, 1234567)  # Mar 10 23:30 EDT
    add(IMP, utc("2024-03-11T04:30:00"), c2, pl2, pub1, 1234567)  # Mar 11 00:30 EDT
    # New York fall back (2024-11-03 02:00 EDT -> 01:00 EST; the day is 25 hours)
    add(IMP, utc("2024-11-03T04:30:00"), c2, pl3, pub2, 1234567)  # Nov 3 00:30 EDT
    add(IMP, utc("2024-11-04T04:30:00"), c2, pl3, pub2, 1234567)  # Nov 3 23:30 EST
    add(IMP, utc("2024-11-04T05:30:00"), c2, pl3, pub2, 1234567)  # Nov 4 00:30 EST
    # a CPC campaign: impressions free, clicks at 0.50
    i1 = add(IMP, utc("2024-03-10T12:00:00"), c3, pl3, pub2, 100, country=b"DE", device=3)
    add(CLICK, utc("2024-03-10T12:00:05"), c3, pl3, pub2, 100, country=b"DE", device=3,
        imp_id=i1)
    add(CLICK, utc("2024-03-10T12:00:06"), c3, pl3, pub2, 100, country=b"DE", device=3,
        imp_id=i1, dup=True)  # the same click twice: counted once
    # a repeated impression beacon and test traffic
    i2 = add(IMP, utc("2024-03-10T13:00:00"), c1, pl1, pub1, 2000000)
    add(IMP, utc("2024-03-10T13:00:01"), c1, pl1, pub1, 2000000, imp_id=i2, dup=True)
    add(IMP, utc("2024-03-10T14:00:00"), c1, pl1, pub1, 2000000, flags=F_TEST)
    append_segment(D.data_dir, frames)
    n_counted = len(expect)
    os.unlink(D.port_file)
    D.start()

    # the aggregator folds them in within a second or two
    t0 = time.time()
    while time.time() - t0 < 10 and (metric(D, "ap_agg_events_total") or 0) < n_counted:
        time.sleep(0.05)
    check(metric(D, "ap_agg_events_total") == n_counted,
          (metric(D, "ap_agg_events_total"), n_counted))
    check(metric(D, "ap_agg_duplicates_total") == 2, metric(D, "ap_agg_duplicates_total"))

    def rep(query, api=admin, expect_status=200, headers=None):
        st, h, b = api("GET", "/reports?" + query, headers=headers)
        check(st == expect_status, (query, st, b))
        return b

    def want(pred, zone_offsets=None):
        """Sums of the expected events matching pred (live traffic)."""
        imps = clicks = spend_milli_c = 0
        spend = {}
        for e in expect:
            t, camp, pl, pub, type_, price, country, device, test = e
            if test or not pred(e):
                continue
            if type_ == IMP:
                imps += 1
                if camp != c3["id"]:
                    spend[camp] = spend.get(camp, 0) + price
            elif type_ == CLICK:
                clicks += 1
                spend_milli_c += 500000 * 1000
        total_spend = sum(v // 1000 for v in spend.values()) + spend_milli_c // 1000
        return imps, clicks, total_spend

    @T.case
    def totals_match_independent_sums():
        b = rep("from=2024-03-01&to=2024-11-30")
        imps, clicks, spend = want(lambda e: True)
        tot = b["totals"]
        check(tot["impressions"] == imps and tot["clicks"] == clicks, (tot, imps, clicks))
        check(tot["spend_micros"] == spend, (tot["spend_micros"], spend))
        check(b["rows"] and b["rows"][0]["impressions"] == imps, b["rows"])
        # CTR and eCPM derive from the integers
        check(abs(tot["ctr"] - clicks / imps) < 1e-9, tot)
        check(tot["ecpm_micros"] == spend * 1000 // imps, tot)
        check(set(b) >= {"rows", "totals", "from", "to", "timezone", "granularity"}, b.keys())

    @T.case
    def grouping_by_campaign_country_device():
        b = rep("from=2024-03-01&to=2024-03-31&group_by=campaign,country,device")
        got = {(r["campaign_id"], r["country"], r["device"]): r["impressions"] for r in b["rows"]}
        exp = {}
        for t, camp, pl, pub, type_, price, country, device, test in expect:
            if type_ == IMP and not test and t < utc("2024-04-01T00:00:00"):
                name = {1: "desktop", 2: "mobile", 3: "tablet"}[device]
                exp[(camp, country, name)] = exp.get((camp, country, name), 0) + 1
        check(got == exp, (got, exp))
        # spend per campaign: CPM prices carried exactly (5 x 1234.567 = 6172 micros)
        b = rep("from=2024-03-01&to=2024-03-31&group_by=campaign")
        by = {r["campaign_id"]: r for r in b["rows"]}
        check(by[c2["id"]]["spend_micros"] == 5 * 1234567 // 1000, by[c2["id"]])
        check(by[c1["id"]]["spend_micros"] == 3 * 2000, by[c1["id"]])
        check(by[c3["id"]]["spend_micros"] == 500000 and by[c3["id"]]["clicks"] == 1,
              by[c3["id"]])
        # site and publisher dimensions come from the inventory
        b = rep("from=2024-03-01&to=2024-11-30&group_by=site,publisher")
        got = {(r["site_id"], r["publisher_id"]): r["impressions"] for r in b["rows"]}
        check(got == {(site1["id"], pub1["id"]): 8, (site2["id"], pub2["id"]): 4}, got)
        # publisher revenue: 70% / 50% of the spend on their inventory, carried
        b = rep("from=2024-03-01&to=2024-11-30&group_by=publisher")
        by = {r["publisher_id"]: r for r in b["rows"]}
        check(by[pub1["id"]]["revenue_micros"] == by[pub1["id"]]["spend_micros"] * 7 // 10,
              by[pub1["id"]])
        check(by[pub2["id"]]["revenue_micros"] == by[pub2["id"]]["spend_micros"] // 2,
              by[pub2["id"]])

    @T.case
    def midnight_in_utc_and_paris():
        utc9 = rep("from=2024-03-09&to=2024-03-09&group_by=campaign&campaign_id=%d" % c1["id"])
        utc10 = rep("from=2024-03-10&to=2024-03-10&campaign_id=%d" % c1["id"])
        check(utc9["totals"]["impressions"] == 1, utc9)
        check(utc10["totals"]["impressions"] == 2, utc10)  # 00:30Z and 13:00Z
        paris10 = rep("from=2024-03-10&to=2024-03-10&timezone=Europe/Paris&campaign_id=%d"
                      % c1["id"])
        check(paris10["totals"]["impressions"] == 3, paris10)  # 23:30Z is 00:30 in Paris
        paris9 = rep("from=2024-03-09&to=2024-03-09&timezone=Europe/Paris&campaign_id=%d"
                     % c1["id"])
        check(paris9["totals"]["impressions"] == 0, paris9)
        days = rep("from=2024-03-09&to=2024-03-10&granularity=day&campaign_id=%d" % c1["id"])
        check([(r["date"], r["impressions"]) for r in days["rows"]]
              == [("2024-03-09", 1), ("2024-03-10", 2)], days["rows"])

    @T.case
    def dst_spring_forward_new_york():
        q = "timezone=America/New_York&campaign_id=%d" % c2["id"]
        d10 = rep("from=2024-03-10&to=2024-03-10&" + q)
        check(d10["totals"]["impressions"] == 3, d10)  # 00:30 EST, 03:30 EDT, 23:30 EDT
        days = rep("from=2024-03-09&to=2024-03-11&granularity=day&" + q)
        check([(r["date"], r["impressions"]) for r in days["rows"]]
              == [("2024-03-09", 1), ("2024-03-10", 3), ("2024-03-11", 1)], days["rows"])
        hours = rep("from=2024-03-10&to=2024-03-10&granularity=hour&" + q)
        check([(r["hour"], r["impressions"]) for r in hours["rows"]]
              == [("2024-03-10T00:00:00-05:00", 1), ("2024-03-10T03:00:00-04:00", 1),
                  ("2024-03-10T23:00:00-04:00", 1)], hours["rows"])

    @T.case
    def dst_fall_back_new_york():
        q = "timezone=America/New_York&campaign_id=%d" % c2["id"]
        days = rep("from=2024-11-03&to=2024-11-04&granularity=day&" + q)
        check([(r["date"], r["impressions"]) for r in days["rows"]]
              == [("2024-11-03", 2), ("2024-11-04", 1)], days["rows"])  # a 25-hour day
        utc_days = rep("from=2024-11-03&to=2024-11-04&granularity=day&campaign_id=%d"
                       % c2["id"])
        check([(r["date"], r["impressions"]) for r in utc_days["rows"]]
              == [("2024-11-03", 1), ("2024-11-04", 2)], utc_days["rows"])

    @T.case
    def csv_output():
        st, h, body = admin("GET", "/reports?from=2024-03-01&to=2024-03-31&group_by=campaign",
                            headers={"Accept": "text/csv"})
        check(st == 200 and h["content-type"].startswith("text/csv"), (st, h))
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        js = rep("from=2024-03-01&to=2024-03-31&group_by=campaign")
        check(len(rows) == len(js["rows"]), (rows, js))
        for r, j in zip(rows, js["rows"]):
            check(int(r["campaign_id"]) == j["campaign_id"], (r, j))
            check(int(r["impressions"]) == j["impressions"], (r, j))
            check(int(r["spend_micros"]) == j["spend_micros"], (r, j))
        st, h, body2 = admin("GET", "/reports?from=2024-03-01&to=2024-03-31&group_by=campaign"
                             "&format=csv")
        check(st == 200 and body2 == body, st)

    @T.case
    def advertiser_user_sees_own_campaigns_only():
        b = rep("from=2024-03-01&to=2024-11-30&group_by=campaign", api=adv_api)
        ids = {r["campaign_id"] for r in b["rows"]}
        check(ids == {c1["id"], c2["id"]}, ids)
        check("revenue_micros" not in b["totals"] and "spend_micros" in b["totals"], b["totals"])
        # filtering by someone else's campaign finds nothing
        b = rep("from=2024-03-01&to=2024-11-30&campaign_id=%d" % c3["id"], api=adv_api)
        check(b["totals"]["impressions"] == 0 and b["rows"] == [] or
              b["rows"][0]["impressions"] == 0, b)

    @T.case
    def publisher_user_sees_own_inventory_and_revenue():
        b = rep("from=2024-03-01&to=2024-11-30&group_by=placement", api=pub_api)
        ids = {r["placement_id"] for r in b["rows"]}
        check(ids == {pl1["id"], pl2["id"]}, ids)
        check("spend_micros" not in b["totals"] and "revenue_micros" in b["totals"], b["totals"])
        all_ = rep("from=2024-03-01&to=2024-11-30&publisher_id=%d" % pub1["id"])
        check(b["totals"]["revenue_micros"] == all_["totals"]["revenue_micros"], (b, all_))
        check(b["totals"]["ecpm_micros"] ==
              b["totals"]["revenue_micros"] * 1000 // b["totals"]["impressions"], b["totals"])
        st, _, e = pub_api("GET", "/reports?group_by=campaign")
        check(st == 422 and e["error"]["fields"][0]["field"] == "group_by", (st, e))
        st, _, e = pub_api("GET", "/reports?advertiser_id=%d" % adv_ny["id"])
        check(st == 422, (st, e))

    @T.case
    def test_traffic_reported_apart():
        live = rep("from=2024-03-10&to=2024-03-10&campaign_id=%d" % c1["id"])
        test = rep("from=2024-03-10&to=2024-03-10&traffic=test&campaign_id=%d" % c1["id"])
        both = rep("from=2024-03-10&to=2024-03-10&traffic=all&campaign_id=%d" % c1["id"])
        check(test["totals"]["impressions"] == 1 and test["totals"]["spend_micros"] == 0, test)
        check(both["totals"]["impressions"] == live["totals"]["impressions"] + 1, both)
        check(both["totals"]["spend_micros"] == live["totals"]["spend_micros"], both)

    @T.case
    def filters():
        b = rep("from=2024-03-01&to=2024-11-30&country=fr,DE")
        check(b["totals"]["impressions"] == 2, b["totals"])
        b = rep("from=2024-03-01&to=2024-11-30&device=tablet")
        check(b["totals"]["impressions"] == 1 and b["totals"]["clicks"] == 1, b["totals"])
        b = rep("from=2024-03-01&to=2024-11-30&placement_id=%d,%d" % (pl1["id"], pl3["id"]))
        check(b["totals"]["impressions"] == 3 + 4, b["totals"])
        b = rep("from=2024-03-01&to=2024-11-30&site_id=%d&group_by=ad" % site1["id"])
        check(b["totals"]["impressions"] == 8, b["totals"])
        b = rep("from=2024-03-01&to=2024-11-30&advertiser_id=%d&group_by=advertiser"
                % adv_b["id"])
        check([r["advertiser_id"] for r in b["rows"]] == [adv_b["id"]], b["rows"])
        b = rep("from=2024-03-01&to=2024-11-30&creative_id=%d" % cr["id"])
        check(b["totals"]["impressions"] == 3, b["totals"])  # c1's ad uses cr

    @T.case
    def validation_errors_are_422_with_fields():
        cases = [("from=2024-13-01", "from"), ("from=2024-02-30", "from"), ("to=yesterday", "to"),
                 ("from=2024-03-02&to=2024-03-01", "from"), ("timezone=Mars/Olympus", "timezone"),
                 ("timezone=../etc/passwd", "timezone"), ("granularity=week", "granularity"),
                 ("group_by=campaign,colour", "group_by"), ("campaign_id=abc", "campaign_id"),
                 ("campaign_id=1,,2", "campaign_id"), ("bogus=1", "bogus"),
                 ("from=2020-01-01&to=2024-01-01", "to"),
                 ("from=2024-01-01&to=2024-03-01&granularity=hour", "granularity"),
                 ("country=USA", "country"), ("device=toaster", "device"),
                 ("traffic=some", "traffic"), ("format=xml", "format")]
        for q, field in cases:
            st, _, b = admin("GET", "/reports?" + q)
            check(st == 422 and b["error"]["code"] == "validation_failed", (q, st, b))
            fields = [f["field"] for f in b["error"]["fields"]]
            check(field in fields, (q, fields))
        st, _, b = admin("GET", "/reports?from=%ZZ")
        check(st == 400, (st, b))
        st, _, b = Api(D, None)("GET", "/reports")
        check(st == 401, st)

    @T.case
    def defaults_today_utc_total():
        b = rep("")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        check(b["from"] == today and b["to"] == today and b["timezone"] == "UTC" and
              b["granularity"] == "total", b)

    @T.case
    def cli_report():
        env = dict(os.environ, ADPLATFORM_URL="http://127.0.0.1:%d" % D.admin_port,
                   ADPLATFORM_API_KEY=boot["api_key"])
        out = subprocess.run([AP_BIN, "report", "--from", "2024-03-01", "--to", "2024-03-31",
                              "--group-by", "campaign", "--json"], env=env,
                             capture_output=True, timeout=30)
        check(out.returncode == 0, out)
        b = json.loads(out.stdout)
        check(b["totals"]["impressions"] == want(lambda e: e[0] < utc("2024-04-01T00:00:00"))[0],
              b["totals"])
        out = subprocess.run([AP_BIN, "report", "--from", "2024-03-01", "--to", "2024-03-31",
                              "--group-by", "campaign"], env=env, capture_output=True, timeout=30)
        text = out.stdout.decode()
        check(out.returncode == 0 and "CAMPAIGN_ID" in text and "totals:" in text, out)

    @T.case
    def restart_counts_nothing_twice():
        before = rep("from=2024-03-01&to=2024-11-30")["totals"]
        D.stop()
        os.unlink(D.port_file)
        D.start()
        time.sleep(0.5)
        after = rep("from=2024-03-01&to=2024-11-30")["totals"]
        check(before == after, (before, after))
        check(metric(D, "ap_agg_lag_records") == 0, metric(D, "ap_agg_lag_records"))


if __name__ == "__main__":
    main()
