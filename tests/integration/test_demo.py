"""Integration tests of `adplatform demo`, GET /v1/tag.js and GET /demo against the real daemon:
the demo loads idempotently, its creatives are real PNGs of the IAB sizes served from /assets,
the tag is small, cached and gzip-encoded, the demo page carries the demo's placement ids (also
when the demo is loaded while the server runs), and every demo placement is filled for a desktop
Chrome request from a US address (the issue's contract)."""
import gzip
import json
import os
import sqlite3
import struct
import subprocess
import tempfile
import shutil
import time
import urllib.parse

from aptest import AP_BIN, Daemon, Runner, check

T = Runner()
TMP = tempfile.mkdtemp(prefix="aptest.demo.")
DATA = os.path.join(TMP, "data")
SIZES = {"leaderboard": (728, 90), "rectangle": (300, 250), "skyscraper": (160, 600),
         "mobile": (320, 50)}
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")


def demo(data_dir):
    p = subprocess.run([AP_BIN, "demo", "--data-dir", data_dir], capture_output=True, text=True,
                       timeout=120)
    check(p.returncode == 0, "demo exited %s: %s %s" % (p.returncode, p.stdout, p.stderr))
    return p.stdout


def snapshot_of_store(data_dir):
    """Row counts of every table, the store version and the audit log size."""
    db = sqlite3.connect(os.path.join(data_dir, "adplatform.db"))
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: db.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t in tables}
    finally:
        db.close()


def files_under(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


def png_size(body):
    check(body[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG")
    check(body[12:16] == b"IHDR")
    return struct.unpack(">II", body[16:24])


FIRST_RUN = {}


@T.case
def demo_loads_and_second_run_changes_nothing():
    out = demo(DATA)
    check("46 objects created" in out, out)
    FIRST_RUN["out"] = out
    before, files = snapshot_of_store(DATA), files_under(DATA)
    out2 = demo(DATA)
    check("nothing changed" in out2, out2)
    check(snapshot_of_store(DATA) == before, "the second run wrote to the store")
    after = files_under(DATA)
    changed = [p for p in after if p.endswith((".png", "demo.json")) and after[p] != files.get(p)]
    check(not changed, "the second run rewrote %s" % changed)
    doc = json.load(open(os.path.join(DATA, "demo.json")))
    check(sorted(p["slot"] for p in doc["placements"]) == sorted(SIZES), doc)
    check(len(doc["advertisers"]) == 4)


@T.case
def demo_images_are_pngs_of_their_sizes():
    db = sqlite3.connect(os.path.join(DATA, "adplatform.db"))
    rows = db.execute("SELECT width, height, sha256, size_bytes, mime FROM creatives").fetchall()
    db.close()
    check(len(rows) == 16, rows)
    for w, h, sha, size, mime in rows:
        check(mime == "image/png")
        path = os.path.join(DATA, "creatives", sha[:2], sha + ".png")
        body = open(path, "rb").read()
        check(len(body) == size, (path, len(body), size))
        check(png_size(body) == (w, h), (path, png_size(body), w, h))
        check((w, h) in SIZES.values(), (w, h))


@T.case
def house_campaign_fills_any_hour():
    """The structural half of the contract: an active, untargeted, uncapped, unbudgeted house
    campaign with an active ad for every demo size (so no hour, day, geo or cap can empty a
    slot); the decision test below is the behavioural half."""
    db = sqlite3.connect(os.path.join(DATA, "adplatform.db"))
    camp = db.execute("SELECT id, status, targeting, frequency_caps, budget_daily_micros, "
                      "budget_lifetime_micros, goal_type, start_at, end_at FROM campaigns "
                      "WHERE priority_tier = 'house'").fetchall()
    check(len(camp) == 1, camp)
    cid, status, targeting, caps, daily, lifetime, goal, start, end = camp[0]
    check(status == "active" and json.loads(targeting) == {} and json.loads(caps) == [], camp)
    check(daily is None and lifetime is None and goal == "none" and end is None, camp)
    sizes = db.execute("SELECT c.width, c.height FROM ads a JOIN creatives c ON c.id = "
                       "a.creative_id WHERE a.campaign_id = ? AND a.status = 'active' AND "
                       "a.targeting = '{}'", (cid,)).fetchall()
    db.close()
    check(sorted(sizes) == sorted(SIZES.values()), sizes)


D = Daemon("--threads", "2", "--no-pin-threads", data_dir=DATA)
D.start()


@T.case
def tag_js_is_small_cached_and_gzipped():
    st, h, body = D.get("/v1/tag.js")
    check(st == 200, "GET /v1/tag.js: %s (is ap_tag_register wired into src/app/ap_app.c?)" % st)
    check(h["content-type"].startswith("application/javascript"), h)
    check("max-age=300" in h.get("cache-control", ""), h)
    check(b"/v1/decision" in body and b"data-ap-placement" in body)
    st, hz, zbody = D.get("/v1/tag.js", headers={"Accept-Encoding": "br, gzip;q=0.8"})
    check(st == 200 and hz.get("content-encoding") == "gzip", hz)
    check(gzip.decompress(zbody) == body)
    check(len(zbody) <= 5 * 1024, "tag is %d bytes gzipped" % len(zbody))
    check(hz["etag"] != h["etag"] and "accept-encoding" in hz.get("vary", "").lower())
    st, h2, _ = D.get("/v1/tag.js", headers={"Accept-Encoding": "gzip;q=0"})
    check(st == 200 and "content-encoding" not in h2, h2)
    st, h3, b3 = D.get("/v1/tag.js", headers={"If-None-Match": h["etag"]})
    check(st == 304 and b3 == b"", st)
    st, h4, b4 = D.request("HEAD", "/v1/tag.js")
    check(st == 200 and b4 == b"" and h4["content-length"] == str(len(body)), h4)


@T.case
def demo_page_carries_the_placements():
    st, h, body = D.get("/demo")
    check(st == 200 and h["content-type"].startswith("text/html"), (st, h))
    html = body.decode()
    doc = json.load(open(os.path.join(DATA, "demo.json")))
    for p in doc["placements"]:
        check('id="ap-%s" data-ap-placement="%d"' % (p["slot"], p["id"]) in html, p)
    check('<script async src="/v1/tag.js"></script>' in html)
    check("No demo data yet" not in html)


def decide(placements, ua=CHROME, ip="8.8.8.8"):
    req = {"placements": [{"id": p["id"], "div": p["slot"]} for p in placements],
           "url": "http://127.0.0.1/demo", "ip": ip, "keywords": ["news"]}
    try:
        st, h, body = D.request("POST", "/v1/decision", json.dumps(req).encode(),
                                headers={"User-Agent": ua, "Content-Type": "text/plain"})
    except EOFError:
        raise AssertionError("no answer to POST /v1/decision; daemon log:\n" + D.logs()[-3000:])
    check(st == 200, "POST /v1/decision: %s %s" % (st, body[:300]))
    return json.loads(body)


@T.case
def every_demo_placement_fills_for_desktop_chrome_in_the_us():
    doc = json.load(open(os.path.join(DATA, "demo.json")))
    for attempt in range(12):  # more than the frequency caps allow: the house ads take over
        res = decide(doc["placements"])
        for p in doc["placements"]:
            ads = res["decisions"].get(p["slot"])
            check(ads and len(ads) == 1, "no fill for %s on attempt %d: %s" % (p, attempt, res))
            c = ads[0]["creative"]
            check((c["width"], c["height"]) == SIZES[p["slot"]], (p, c))
            for k in ("impression_url", "click_url", "view_url"):
                check(ads[0][k].startswith("http"), ads[0])
    # the image the tag will show is served, as a PNG of the right size
    url = urllib.parse.urlparse(res["decisions"]["rectangle"][0]["creative"]["url"])
    st, h, body = D.get(url.path)
    check(st == 200 and h["content-type"] == "image/png", (url.path, st, h))
    check(png_size(body) == SIZES["rectangle"])


@T.case
def demo_loaded_while_the_server_runs():
    data2 = os.path.join(TMP, "data2")
    with Daemon("--threads", "2", "--no-pin-threads", data_dir=data2) as d2:
        st, _, body = d2.get("/demo")
        check(st == 200 and b"No demo data yet" in body and b"data-ap-placement" not in body)
        demo(data2)
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, body = d2.get("/demo")
            if b"data-ap-placement" in body:
                break
            time.sleep(0.2)
        check(b'data-ap-placement="' in body, "the page did not pick up demo.json")


try:
    D.stop()
    check(D.proc.returncode == 0, "daemon exit code %s" % D.proc.returncode)
finally:
    shutil.rmtree(D.tmp, ignore_errors=True)
    shutil.rmtree(TMP, ignore_errors=True)
T.finish()
