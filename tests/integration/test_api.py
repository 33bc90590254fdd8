"""Integration tests of the REST API (/api/v1) against the real daemon: every resource over real
HTTP (create, read, update with If-Match, list with pagination and filters, archive, each kind
of validation error), users, API keys, the audit log, creative uploads and the assets they
become, login/logout/expiry and login throttling.

Also a library for the other test_api*.py files (import test_api): the bootstrap, an HTTP
client, image generators, and valid bodies for every resource.
"""
import atexit
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import zlib

from aptest import AP_BIN, Daemon, Reader, Runner, check

ADMIN_EMAIL = "admin@example.com"

# ---------------------------------------------------------------------------- the client


def bootstrap(daemon, email=ADMIN_EMAIL):
    """Runs `adplatform admin create` on the daemon's (not yet started) data dir."""
    out = subprocess.run([AP_BIN, "admin", "create", "--data-dir", daemon.data_dir,
                          "--email", email, "--json"], capture_output=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("admin create failed: %r" % out.stderr)
    return json.loads(out.stdout)


def run_with_admin(run, *daemon_args):
    """The usual main(): a daemon with an admin bootstrapped, run(T, D, boot), stop, summary."""
    T = Runner()
    D = Daemon(*daemon_args)
    boot = bootstrap(D)
    D.start()
    try:
        run(T, D, boot)
    finally:
        D.__exit__(None, None, None)
    T.finish()


def http(daemon, method, path, body=None, token=None, headers=None, ctype=None, source=None,
         timeout=30):
    """One request on its own connection. body: dict/list (JSON), bytes or None.
    Returns (status, headers, parsed JSON or raw bytes)."""
    h = {"Host": "test", "Connection": "close"}
    if token:
        h["Authorization"] = "Bearer " + token
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    else:
        data = body or b""
    if ctype is not None:
        h["Content-Type"] = ctype
    if data or method in ("POST", "PUT", "PATCH"):
        h["Content-Length"] = str(len(data))
    h.update(headers or {})
    s = socket.create_connection(("127.0.0.1", daemon.admin_port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        req = "%s %s HTTP/1.1\r\n" % (method, path)
        req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        s.sendall(req.encode() + data)
        st, rh, rb = Reader(s).response(head=method == "HEAD")
    finally:
        s.close()
    if rh.get("content-type", "").startswith("application/json") and rb:
        return st, rh, json.loads(rb)
    return st, rh, rb


class Api:
    """A client bound to one daemon and one token."""

    def __init__(self, daemon, token=None):
        self.d = daemon
        self.token = token

    def __call__(self, method, path, body=None, **kw):
        kw.setdefault("token", self.token)
        return http(self.d, method, "/api/v1" + path, body, **kw)

    def ok(self, method, path, body=None, expect=None, **kw):
        st, h, b = self(method, path, body, **kw)
        want = expect or {"POST": 201, "DELETE": 200}.get(method, 200)
        check(st == want, "%s %s: %s %r (wanted %s)" % (method, path, st, b, want))
        return b

    def as_user(self, email, password):
        st, _, b = self("POST", "/auth/login", {"email": email, "password": password}, token=None)
        check(st == 200, (st, b))
        return Api(self.d, b["token"])

    def key_for(self, user_id, name="test"):
        b = self.ok("POST", "/api-keys", {"name": name, "user_id": user_id})
        return Api(self.d, b["key"])


def error_of(body):
    """(code, [fields]) of an error body, checking its exact shape."""
    check(isinstance(body, dict) and set(body) == {"error"}, body)
    e = body["error"]
    check(set(e) == {"code", "message", "fields"}, e)
    check(isinstance(e["code"], str) and isinstance(e["message"], str), e)
    for f in e["fields"]:
        check(set(f) == {"field", "message"}, f)
    return e["code"], [f["field"] for f in e["fields"]]


def expect_error(resp, status, code=None, field=None):
    st, h, b = resp
    check(st == status, "status %s, wanted %s: %r" % (st, status, b))
    c, fields = error_of(b)
    if code:
        check(c == code, "code %s, wanted %s" % (c, code))
    if field is not None:
        check(field in fields, "no error on %r in %r" % (field, b))
    return h, b

# ---------------------------------------------------------------------------- images


def png_bytes(w=3, h=2, rgb=(200, 30, 30)):
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def gif_bytes(w=4, h=3):
    """GIF89a, 2-colour palette; LZW data that clears before every pixel (3-bit codes)."""
    codes = []
    for _ in range(w * h):
        codes += [4, 0]  # CLEAR, colour 0
    codes.append(5)  # EOI
    bits, n, out = 0, 0, bytearray()
    for c in codes:
        bits |= c << n
        n += 3
        while n >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            n -= 8
    if n:
        out.append(bits & 0xFF)
    blocks = b""
    for i in range(0, len(out), 255):
        part = bytes(out[i:i + 255])
        blocks += bytes([len(part)]) + part
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + b"\x02" + blocks + b"\x00"
            + b"\x3b")


def jpeg_bytes(w=16, h=8):
    """Baseline greyscale JPEG of a flat mid-grey image: every block is DC difference 0 then
    end-of-block, each coded with a one-symbol Huffman table (code '0')."""
    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data
    blocks = ((w + 7) // 8) * ((h + 7) // 8)
    nbits = 2 * blocks
    data = bytearray(b"\x00" * (nbits // 8))
    if nbits % 8:
        data.append((1 << (8 - nbits % 8)) - 1)  # pad the last byte with 1 bits
    dqt = b"\x00" + bytes([1] * 64)
    sof = struct.pack(">BHHB", 8, h, w, 1) + b"\x01\x11\x00"
    dht_dc = b"\x00" + bytes([1] + [0] * 15) + b"\x00"
    dht_ac = b"\x10" + bytes([1] + [0] * 15) + b"\x00"
    sos = b"\x01\x01\x00\x00\x3f\x00"
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return (b"\xff\xd8" + seg(0xE0, jfif) + seg(0xDB, dqt) + seg(0xC0, sof) + seg(0xC4, dht_dc)
            + seg(0xC4, dht_ac) + seg(0xDA, sos) + bytes(data) + b"\xff\xd9")


def webp_bytes(w=5, h=7, argb=(255, 10, 200, 30)):
    """Lossless WebP (VP8L) of one colour: four one-symbol prefix codes, so no pixel bits."""
    bits, n = 0, 0

    def put(v, k):
        nonlocal bits, n
        bits |= v << n
        n += k
    a, r, g, b = argb
    put(0x2F, 8)
    put(w - 1, 14)
    put(h - 1, 14)
    put(1 if a != 255 else 0, 1)
    put(0, 3)  # version
    put(0, 1)  # no transform
    put(0, 1)  # no colour cache
    put(0, 1)  # no meta prefix codes
    for sym in (g, r, b, a):  # green(+lengths), red, blue, alpha: simple codes, one symbol
        put(1, 1)
        put(0, 1)
        put(1, 1)
        put(sym, 8)
    put(1, 1)  # distance: simple code, one 1-bit symbol 0
    put(0, 1)
    put(0, 1)
    put(0, 1)
    data = bits.to_bytes((n + 7) // 8, "little")
    chunk = b"VP8L" + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


IMAGES = {  # mime: (generator, width, height, ext)
    "image/png": (lambda: png_bytes(3, 2), 3, 2, "png"),
    "image/jpeg": (lambda: jpeg_bytes(16, 8), 16, 8, "jpg"),
    "image/gif": (lambda: gif_bytes(4, 3), 4, 3, "gif"),
    "image/webp": (lambda: webp_bytes(5, 7), 5, 7, "webp"),
}

# ---------------------------------------------------------------------------- fixtures


class World:
    """Two tenants on each side, built by an admin: advertisers a1/a2 with a campaign, an HTML
    creative and an ad each; publishers p1/p2 with a site and a placement each; a demand
    partner."""

    def __init__(self, admin, tag=""):
        self.admin = admin
        self.n = 0
        self.adv = [admin.ok("POST", "/advertisers", advertiser_body(tag + "a%d" % i))["id"]
                    for i in (1, 2)]
        self.pub = [admin.ok("POST", "/publishers", publisher_body(tag + "p%d" % i))["id"]
                    for i in (1, 2)]
        self.campaign = [self.make("campaigns", i) for i in (0, 1)]
        self.creative = [self.make("creatives", i) for i in (0, 1)]
        self.ad = [self.make("ads", i) for i in (0, 1)]
        self.site = [self.make("sites", i) for i in (0, 1)]
        self.placement = [self.make("placements", i) for i in (0, 1)]
        self.partner = self.make("demand-partners", 0)

    def body(self, res, t):
        """A valid create body for resource res (URL segment) owned by tenant t (0 or 1)."""
        self.n += 1
        n = self.n
        return {
            "advertisers": lambda: advertiser_body("adv%d" % n),
            "publishers": lambda: publisher_body("pub%d" % n),
            "campaigns": lambda: {"advertiser_id": self.adv[t], "name": "camp %d" % n},
            "creatives": lambda: {"advertiser_id": self.adv[t], "name": "html %d" % n,
                                  "type": "html", "width": 300, "height": 250,
                                  "html": "<a href='#'>ad %d</a>\n" % n},
            "ads": lambda: {"campaign_id": self.campaign[t], "creative_id": self.creative[t],
                            "landing_url": "https://shop.example.com/%d" % n},
            "sites": lambda: {"publisher_id": self.pub[t], "name": "site %d" % n,
                              "domain": "s%d.example.com" % n},
            "placements": lambda: {"site_id": self.site[t], "name": "slot %d" % n,
                                   "sizes": ["300x250"]},
            "demand-partners": lambda: {"name": "dsp %d" % n, "bidder_code": "dsp%d" % n,
                                        "endpoint": "http://127.0.0.1:9/bid/%d" % n},
        }[res]()

    def make(self, res, t):
        if res == "advertisers":
            return self.admin.ok("POST", "/advertisers", self.body(res, t))["id"]
        if res == "publishers":
            return self.admin.ok("POST", "/publishers", self.body(res, t))["id"]
        return self.admin.ok("POST", "/" + res, self.body(res, t))["id"]

    def owned(self, res, t):
        """The fixture object of resource res owned by tenant t."""
        return {"advertisers": self.adv, "campaigns": self.campaign, "creatives": self.creative,
                "ads": self.ad, "publishers": self.pub, "sites": self.site,
                "placements": self.placement,
                "demand-partners": [self.partner, self.partner]}[res][t]


def advertiser_body(name):
    return {"name": name, "currency": "USD", "timezone": "Europe/Paris"}


def publisher_body(name):
    return {"name": name, "currency": "EUR", "revenue_share_ppm": 700000}


RESOURCES = ["advertisers", "campaigns", "creatives", "ads", "publishers", "sites",
             "placements", "demand-partners"]

# A PATCH that changes something, and invalid create bodies with the field they must name.
PATCHES = {
    "advertisers": {"name": "renamed", "category": "IAB7-32"},
    "campaigns": {"status": "active", "price_micros": 1500000, "pricing_model": "cpc"},
    "creatives": {"name": "renamed", "html": "<p>new</p>"},
    "ads": {"weight": 5, "landing_url": "http://shop.example.com/new"},
    "publishers": {"name": "renamed", "timezone": "America/New_York"},
    "sites": {"name": "renamed"},
    "placements": {"floor_cpm_micros": 250000, "sizes": ["728x90", "300x250"]},
    "demand-partners": {"timeout_ms": 120, "bid_adjustment": 0.95},
}


def invalid_cases(w, res):
    """(body, field) pairs: each body is invalid because of that field."""
    good = w.body(res, 0)

    def mod(**kw):
        b = dict(good)
        for k, v in kw.items():
            if v is None:
                b.pop(k, None)
            else:
                b[k] = v
        return b
    common = [(mod(nmae="typo"), "nmae"), (mod(id=5), "id"), (mod(version=1), "version"),
              (mod(name=None), "name") if "name" in good else (mod(bogus=1), "bogus"),
              (mod(name=42), "name") if "name" in good else (mod(bogus=2), "bogus"),
              (mod(status="deleted"), "status")]
    specific = {
        "advertisers": [(mod(currency="usd"), "currency"), (mod(timezone="Mars/Base"), "timezone"),
                        (mod(credit_limit_micros=-5), "credit_limit_micros"),
                        (mod(credit_limit_micros=1.5), "credit_limit_micros")],
        "campaigns": [(mod(advertiser_id=987654), "advertiser_id"),
                      (mod(price_micros=-1), "price_micros"),
                      (mod(pricing_model="cpx"), "pricing_model"),
                      (mod(start_at="2024-02-01T00:00:00Z", end_at="2024-01-01T00:00:00Z"),
                       "end_at"),
                      (mod(targeting={"countries_include": ["usa"]}),
                       "targeting.countries_include[0]"),
                      (mod(frequency_caps=[{"count": 0, "window_seconds": 60, "scope": "ad"}]),
                       None)],
        "creatives": [(mod(html=None), "html"), (mod(type="flash"), "type"),
                      (mod(type="image", html=None), "sha256")],
        "ads": [(mod(landing_url="javascript:alert(1)"), "landing_url"),
                (mod(creative_id=w.creative[1]), "creative_id"),
                (mod(campaign_id=987654), "campaign_id")],
        "publishers": [(mod(revenue_share_ppm=2000000), "revenue_share_ppm"),
                       (mod(currency=None), "currency")],
        "sites": [(mod(domain="Not A Domain"), "domain"), (mod(publisher_id="1"), "publisher_id")],
        "placements": [(mod(sizes=["300y250"]), None), (mod(site_id=987654), "site_id")],
        "demand-partners": [(mod(endpoint="ftp://x"), "endpoint"),
                            (mod(bidder_code="Bad Code"), "bidder_code"),
                            (mod(timeout_ms=0), "timeout_ms")],
    }[res]
    return common + specific

# ---------------------------------------------------------------------------- the tests


def main():
    T = Runner()
    D = Daemon("--admin-threads", "2")
    boot = bootstrap(D)
    D.start()
    atexit.register(D.__exit__, None, None, None)  # stop it even if setup fails
    admin = Api(D, boot["api_key"])
    W = World(admin)

    @T.case
    def admin_bootstrap_and_me():
        me = admin.ok("GET", "/users/me")
        check(me["email"] == ADMIN_EMAIL and me["role"] == "admin", me)
        check("password" not in json.dumps(me) and "hash" not in json.dumps(me))
        s = admin.as_user(ADMIN_EMAIL, boot["password"])
        check(s.ok("GET", "/users/me")["id"] == me["id"])

    @T.case
    def admin_create_command():
        def run(*args):
            return subprocess.run([AP_BIN, "admin"] + list(args), capture_output=True, timeout=60)
        # a second admin, offline, while the daemon runs; plain-text output
        out = run("create", "--data-dir", D.data_dir, "--email", "second@example.com")
        check(out.returncode == 0, out)
        text = out.stdout.decode()
        pw = [ln.split()[-1] for ln in text.splitlines() if "password:" in ln][0]
        key = [ln.split()[-1] for ln in text.splitlines() if "api key:" in ln][0]
        check(Api(D, key).ok("GET", "/users/me")["role"] == "admin")
        check(admin.as_user("second@example.com", pw).ok("GET", "/users/me")["role"] == "admin")
        dup = run("create", "--data-dir", D.data_dir, "--email", "second@example.com", "--json")
        check(dup.returncode == 1 and b"email" in dup.stderr and dup.stdout == b"", dup)
        check(run("create", "--data-dir", D.data_dir).returncode == 2)
        check(run("create", "--email").returncode == 2)
        check(run("delete").returncode == 2)
        check(run("create", "--data-dir", D.data_dir, "--email", "x", "--bogus").returncode == 2)
        bad = run("create", "--data-dir", D.data_dir, "--email", "not-an-email", "--json")
        check(bad.returncode == 1, bad)

    @T.case
    def create_read_update_archive_every_resource():
        for res in RESOURCES:
            body = W.body(res, 0)
            st, h, obj = admin("POST", "/" + res, body)
            check(st == 201, (res, st, obj))
            check(h["location"] == "/api/v1/%s/%d" % (res, obj["id"]), (res, h))
            check(h["etag"] == '"1"' and obj["version"] == 1, (res, h, obj))
            for k, v in body.items():
                check(obj[k] == v, (res, k, obj[k], v))
            for k in ("created_at", "updated_at"):
                check(obj[k].endswith("Z"), obj)
            path = "/%s/%d" % (res, obj["id"])
            st, h, got = admin("GET", path)
            check(st == 200 and got == obj and h["etag"] == '"1"', (res, st, got))
            st, h, _ = admin("GET", path, headers={"If-None-Match": '"1"'})
            check(st == 304 and h["etag"] == '"1"', (res, st))
            # PATCH with the current ETag, then with the stale one
            st, h, upd = admin("PATCH", path, PATCHES[res], headers={"If-Match": '"1"'})
            check(st == 200 and upd["version"] == 2 and h["etag"] == '"2"', (res, st, upd))
            for k, v in PATCHES[res].items():
                check(upd[k] == v, (res, k, upd[k], v))
            expect_error(admin("PATCH", path, {"name": "x"} if "name" in body else
                               {"status": "paused"}, headers={"If-Match": '"1"'}),
                         412, "precondition_failed")
            expect_error(admin("PATCH", path, PATCHES[res], headers={"If-Match": "garbage"}),
                         412, "precondition_failed")
            check(admin.ok("GET", path)["version"] == 2, res)
            # an unchanged PATCH writes nothing
            same = admin.ok("PATCH", path, PATCHES[res])
            check(same["version"] == 2, (res, same))
            # DELETE archives (stale If-Match first)
            expect_error(admin("DELETE", path, headers={"If-Match": '"1"'}), 412)
            st, h, arch = admin("DELETE", path, headers={"If-Match": '"2"'})
            check(st == 200 and arch["status"] == "archived" and arch["version"] == 3,
                  (res, st, arch))
            check(admin.ok("GET", path)["status"] == "archived")
            st, _, again = admin("DELETE", path)
            check(st == 200 and again["status"] == "archived", (res, st, again))

    @T.case
    def list_pagination_and_filters():
        ids = [W.make("campaigns", 1) for _ in range(5)]
        seen, cursor, pages = [], None, 0
        while True:
            q = "/campaigns?limit=2&advertiser_id=%d" % W.adv[1] + (
                "&cursor=" + cursor if cursor else "")
            page = admin.ok("GET", q)
            check(set(page) == {"data", "next_cursor"}, page)
            check(len(page["data"]) <= 2)
            seen += [c["id"] for c in page["data"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            check(pages < 20)
        check(seen == sorted(seen) and set(ids) <= set(seen), (seen, ids))
        check(all(admin.ok("GET", "/campaigns/%d" % i)["advertiser_id"] == W.adv[1]
                  for i in seen))
        admin.ok("PATCH", "/campaigns/%d" % ids[0], {"status": "paused"})
        paused = admin.ok("GET", "/campaigns?status=paused&advertiser_id=%d" % W.adv[1])
        check([c["id"] for c in paused["data"]] == [ids[0]], paused)
        # query-string decoding: %20 and + in values, filters on strings
        site = admin.ok("POST", "/sites", {"publisher_id": W.pub[0], "name": "a b",
                                           "domain": "filter.example.com"})
        got = admin.ok("GET", "/sites?domain=filter%2Eexample.com")["data"]
        check([s["id"] for s in got] == [site["id"]], got)
        expect_error(admin("GET", "/campaigns?limit=0"), 422, "validation_failed", "limit")
        expect_error(admin("GET", "/campaigns?limit=1001"), 422, field="limit")
        expect_error(admin("GET", "/campaigns?limit=abc"), 422, field="limit")
        expect_error(admin("GET", "/campaigns?cursor=notacursor"), 422, field="cursor")
        expect_error(admin("GET", "/campaigns?colour=red"), 422, field="colour")
        expect_error(admin("GET", "/campaigns?name=x"), 422, field="name")  # not a filter
        expect_error(admin("GET", "/campaigns?status=%zz"), 400, "invalid_query")
        expect_error(admin("GET", "/campaigns?status=%00"), 400, "invalid_query")
        expect_error(admin("GET", "/campaigns?status=%ff"), 400, "invalid_query")

    @T.case
    def validation_errors_every_resource():
        for res in RESOURCES:
            for body, field in invalid_cases(W, res):
                st, _, b = admin("POST", "/" + res, body)
                check(st == 422, (res, body, st, b))
                code, fields = error_of(b)
                check(code == "validation_failed" and fields, (res, b))
                if field is not None:
                    check(field in fields, (res, body, field, b))
            # several errors at once are all reported
            st, _, b = admin("POST", "/" + res, {"zzz": 1, "yyy": 2})
            check(st == 422 and {"zzz", "yyy"} <= set(error_of(b)[1]), b)
            # PATCH validation: unknown field, immutable / read-only field, bad value
            oid = W.owned(res, 0)
            path = "/%s/%d" % (res, oid)
            before = admin.ok("GET", path)
            expect_error(admin("PATCH", path, {"nmae": "x"}), 422, field="nmae")
            expect_error(admin("PATCH", path, {"id": 1}), 422, field="id")
            expect_error(admin("PATCH", path, {"created_at": "2020-01-01T00:00:00Z"}), 422,
                         field="created_at")
            expect_error(admin("PATCH", path, {"status": 7}), 422, field="status")
            check(admin.ok("GET", path) == before, res)

    @T.case
    def immutable_fields():
        path = "/campaigns/%d" % W.campaign[0]
        expect_error(admin("PATCH", path, {"advertiser_id": W.adv[1]}), 422,
                     field="advertiser_id")
        admin.ok("PATCH", path, {"advertiser_id": W.adv[0]})  # same value is fine
        expect_error(admin("PATCH", "/advertisers/%d" % W.adv[0], {"currency": "EUR"}), 422,
                     field="currency")

    @T.case
    def malformed_bodies():
        for path in ("/campaigns", "/campaigns/%d" % W.campaign[0]):
            m = "POST" if path == "/campaigns" else "PATCH"

            def send(body, ctype="application/json"):
                return admin(m, path, body, ctype=ctype)
            expect_error(send(b'{"name": '), 400, "invalid_json")
            expect_error(send(b'{"name": "x",}'), 400, "invalid_json")
            expect_error(send(b'{"name": "x"} trailing'), 400, "invalid_json")
            expect_error(send(b'{"name": "a", "name": "b"}'), 400, "invalid_json")
            expect_error(send(b'{"name": "\xff\xfe"}'), 400, "invalid_utf8")
            expect_error(send(b'{"name": "\xc0\xaf"}'), 400, "invalid_utf8")  # overlong
            expect_error(send(b'{"name": "\xed\xa0\x80"}'), 400, "invalid_utf8")  # surrogate
            expect_error(send(b'{"name": "\xf4\x90\x80\x80"}'), 400, "invalid_utf8")
            expect_error(send(b'{"name": "\\ud800"}'), 400, "invalid_json")  # lone surrogate
            expect_error(send(b'{"name": "x"}\x00{"status": "archived"}'), 400, "invalid_json")
            expect_error(send(b''), 400, "empty_body")
            expect_error(send(b'[1, 2]'), 422, "validation_failed", "")
            expect_error(send(b'"str"'), 422)
            expect_error(send(b'{"name": "x"}', "text/plain"), 415, "unsupported_media_type")
            expect_error(send(b'{"name": "x"}', ""), 415)
            expect_error(admin(m, path, b'{"name": "x"}'), 415)  # no Content-Type at all
            expect_error(send(b'{"name": "x"}', "application/json; charset=latin1"), 415)
            st, _, b = send(b"[" * 5000 + b"]" * 5000)
            check(st == 400, (st, b))
        # charset=utf-8 is fine, and merge-patch+json
        st, _, b = admin("POST", "/campaigns", json.dumps(W.body("campaigns", 0)).encode(),
                         ctype="application/json; charset=UTF-8")
        check(st == 201, (st, b))
        st, _, b = admin("PATCH", "/campaigns/%d" % b["id"], b'{"name": "mp"}',
                         ctype="application/merge-patch+json")
        check(st == 200 and b["name"] == "mp", (st, b))
        # over the API's JSON limit (2 MiB), and over the server's body limit (16 MiB)
        big = json.dumps(dict(W.body("creatives", 0), html="x" * (2 * 1024 * 1024))).encode()
        expect_error(admin("POST", "/creatives", big, ctype="application/json"), 413,
                     "payload_too_large")
        st, _, _ = admin("POST", "/campaigns", b"x" * (17 * 1024 * 1024),
                         ctype="application/json")
        check(st == 413, st)
        check(D.get("/healthz", admin=True)[0] == 200)

    @T.case
    def not_found_ids():
        for res in RESOURCES:
            for bad in ("987654", "0", "-1", "abc", "1e3", "99999999999999999999", "01"):
                expect_error(admin("GET", "/%s/%s" % (res, bad)), 404, "not_found")
            expect_error(admin("PATCH", "/%s/987654" % res, {"name": "x"}), 404, "not_found")
            expect_error(admin("DELETE", "/%s/987654" % res), 404, "not_found")
        st, h, b = admin("PUT", "/campaigns/%d" % W.campaign[0], {"name": "x"})
        check(st == 405 and "PATCH" in h.get("allow", ""), (st, h))

    @T.case
    def placement_tag():
        pl = admin.ok("GET", "/placements/%d" % W.placement[0])
        url = "http://127.0.0.1:%d" % D.port
        want = ('<div data-ap-placement="%d"></div><script async src="%s/v1/tag.js"></script>'
                % (pl["id"], url))
        check(pl["tag"] == want, (pl["tag"], want))
        t = admin.ok("GET", "/placements/%d/tag" % pl["id"])
        check(t == {"id": pl["id"], "tag": want}, t)
        lst = admin.ok("GET", "/placements?site_id=%d" % W.site[0])
        check(all(p["tag"].startswith('<div data-ap-placement="%d"' % p["id"])
                  for p in lst["data"]))
        expect_error(admin("PATCH", "/placements/%d" % pl["id"], {"tag": "x"}), 422, field="tag")
        expect_error(admin("GET", "/placements/987654/tag"), 404)

    @T.case
    def demand_partner_unique_code():
        b = W.body("demand-partners", 0)
        admin.ok("POST", "/demand-partners", b)
        st, _, e = admin("POST", "/demand-partners", dict(b, name="other"))
        check(st in (409, 422) and "bidder_code" in error_of(e)[1], (st, e))

    @T.case
    def users_and_roles():
        u = admin.ok("POST", "/users", {"email": "Adv@Example.com", "password": "correct horse",
                                        "role": "advertiser", "advertiser_ids": [W.adv[0]]})
        check(u["email"] == "adv@example.com" and u["advertiser_ids"] == [W.adv[0]], u)
        st, h, _ = admin("GET", "/users/%d" % u["id"])
        check(st == 200)
        check(admin.ok("GET", "/users/%d" % u["id"])["email"] == "adv@example.com")
        expect_error(admin("POST", "/users", {"email": "adv@example.com", "password": "x" * 9,
                                              "role": "viewer"}), 422, field="email")
        expect_error(admin("POST", "/users", {"email": "v@example.com", "password": "short",
                                              "role": "viewer"}), 422, field="password")
        expect_error(admin("POST", "/users", {"email": "v@example.com", "password": "x" * 9,
                                              "role": "root"}), 422, field="role")
        expect_error(admin("POST", "/users", {"email": "v@example.com", "password": "x" * 9,
                                              "role": "advertiser",
                                              "advertiser_ids": [987654]}), 422)
        expect_error(admin("POST", "/users", {"email": "v@example.com", "password": "x" * 9,
                                              "role": "viewer", "is_admin": True}), 422,
                     field="is_admin")
        lst = admin.ok("GET", "/users?limit=1")
        check(len(lst["data"]) == 1 and lst["next_cursor"], lst)
        emails = set()
        cursor = None
        while True:
            page = admin.ok("GET", "/users?limit=1" + ("&cursor=" + cursor if cursor else ""))
            emails |= {x["email"] for x in page["data"]}
            cursor = page["next_cursor"]
            if not cursor:
                break
        check({ADMIN_EMAIL, "adv@example.com"} <= emails, emails)
        expect_error(admin("GET", "/users?role=admin"), 422)
        expect_error(admin("GET", "/users/987654"), 404)
        adv = admin.as_user("ADV@example.com", "correct horse")
        check(adv.ok("GET", "/users/me")["role"] == "advertiser")
        expect_error(adv("GET", "/users"), 403, "forbidden")
        expect_error(adv("POST", "/users", {"email": "x@example.com", "password": "x" * 9,
                                            "role": "admin"}), 403)
        expect_error(adv("GET", "/users/%d" % u["id"]), 403)
        expect_error(adv("GET", "/audit-log"), 403)

    @T.case
    def tenant_limits_on_own_rows():
        u = admin.ok("POST", "/users", {"email": "own@example.com", "password": "p" * 10,
                                        "role": "advertiser", "advertiser_ids": [W.adv[0]]})
        adv = admin.key_for(u["id"])
        path = "/advertisers/%d" % W.adv[0]
        cur = adv.ok("GET", path)
        adv.ok("PATCH", path, {"name": cur["name"] + "!"})
        for patch in ({"credit_limit_micros": 10 ** 12}, {"status": "archived"},
                      {"status": "paused"}):
            h, b = expect_error(adv("PATCH", path, patch), 403, "forbidden",
                                list(patch)[0])
        adv.ok("PATCH", path, {"status": cur["status"]})  # repeating the value is fine
        expect_error(adv("DELETE", path), 403)
        expect_error(adv("POST", "/advertisers", advertiser_body("mine")), 403)
        cr = adv.ok("POST", "/creatives", W.body("creatives", 0))
        expect_error(adv("PATCH", "/creatives/%d" % cr["id"], {"approval_status": "rejected"}),
                     403, field="approval_status")
        expect_error(adv("POST", "/creatives", dict(W.body("creatives", 0),
                                                    approval_status="approved")), 403)
        # a body referencing the other tenant's objects: 422 naming the field
        ad = adv.ok("POST", "/ads", W.body("ads", 0))
        expect_error(adv("PATCH", "/ads/%d" % ad["id"], {"creative_id": W.creative[1]}), 422,
                     field="creative_id")
        expect_error(adv("POST", "/ads", dict(W.body("ads", 0), campaign_id=W.campaign[1])),
                     422, field="campaign_id")
        check(admin.ok("GET", "/ads/%d" % ad["id"])["creative_id"] == W.creative[0])

    @T.case
    def api_keys():
        u = admin.ok("POST", "/users", {"email": "keys@example.com", "password": "k" * 10,
                                        "role": "viewer"})
        viewer = admin.as_user("keys@example.com", "k" * 10)
        st, h, k = viewer("POST", "/api-keys", {"name": "script"})
        check(st == 201 and k["key"].startswith("apk_") and k["user_id"] == u["id"], (st, k))
        check(h["location"] == "/api/v1/api-keys/%d" % k["id"], h)
        key = Api(D, k["key"])
        check(key.ok("GET", "/users/me")["id"] == u["id"])
        lst = viewer.ok("GET", "/api-keys")["data"]
        check([x["id"] for x in lst] == [k["id"]], lst)
        check("key" not in lst[0] and k["key"] not in json.dumps(lst), lst)
        check(k["key"].startswith(lst[0]["prefix"]), lst)
        # the admin sees everyone's keys; others only their own
        all_keys = admin.ok("GET", "/api-keys?limit=1000")["data"]
        check(k["id"] in [x["id"] for x in all_keys])
        check(admin.ok("GET", "/api-keys?user_id=%d" % u["id"])["data"][0]["id"] == k["id"])
        expect_error(viewer("GET", "/api-keys?user_id=1"), 403)
        expect_error(viewer("POST", "/api-keys", {"name": "x", "user_id": 1}), 403)
        expect_error(viewer("POST", "/api-keys", {}), 422, field="name")
        expect_error(viewer("POST", "/api-keys", {"name": ""}), 422, field="name")
        expect_error(viewer("POST", "/api-keys", {"name": "a\nb"}), 422, field="name")
        expect_error(viewer("POST", "/api-keys", {"name": "x", "scope": "all"}), 422,
                     field="scope")
        expect_error(admin("POST", "/api-keys", {"name": "x", "user_id": 987654}), 422,
                     field="user_id")
        # someone else's key is not found; the owner revokes it, then it stops working
        admin_keys = [x for x in all_keys if x["user_id"] != u["id"]]
        expect_error(viewer("DELETE", "/api-keys/%d" % admin_keys[0]["id"]), 404)
        expect_error(viewer("DELETE", "/api-keys/987654"), 404)
        st, _, _ = viewer("DELETE", "/api-keys/%d" % k["id"])
        check(st == 204, st)
        expect_error(key("GET", "/users/me"), 401, "unauthorized")
        check(viewer.ok("GET", "/api-keys")["data"][0]["revoked"] is True)
        st, _, _ = viewer("DELETE", "/api-keys/%d" % k["id"])
        check(st == 204, st)
        # an admin revokes anyone's key
        k2 = admin.ok("POST", "/api-keys", {"name": "for-viewer", "user_id": u["id"]})
        check(Api(D, k2["key"]).ok("GET", "/users/me")["id"] == u["id"])
        st, _, _ = admin("DELETE", "/api-keys/%d" % k2["id"])
        check(st == 204)
        expect_error(Api(D, k2["key"])("GET", "/users/me"), 401)
        # last_used_at is recorded
        k3 = admin.ok("POST", "/api-keys", {"name": "used"})
        Api(D, k3["key"]).ok("GET", "/users/me")
        used = [x for x in admin.ok("GET", "/api-keys?limit=1000")["data"] if x["id"] == k3["id"]]
        check(used[0]["last_used_at"], used)

    @T.case
    def audit_log():
        c = admin.ok("POST", "/campaigns", W.body("campaigns", 0))
        admin.ok("PATCH", "/campaigns/%d" % c["id"], {"name": "audited"})
        admin.ok("DELETE", "/campaigns/%d" % c["id"])
        log = admin.ok("GET", "/audit-log?resource=campaign&resource_id=%d" % c["id"])["data"]
        check([e["action"] for e in log] == ["archive", "update", "create"], log)
        me = admin.ok("GET", "/users/me")
        check(all(e["actor_user_id"] == me["id"] for e in log), log)
        check(log[1]["before"]["name"] != "audited" and log[1]["after"]["name"] == "audited")
        page = admin.ok("GET", "/audit-log?limit=2")
        check(len(page["data"]) == 2 and page["next_cursor"], page)
        nxt = admin.ok("GET", "/audit-log?limit=2&cursor=" + page["next_cursor"])
        check(nxt["data"][0]["id"] < page["data"][1]["id"], (page, nxt))
        mine = admin.ok("GET", "/audit-log?actor_user_id=%d&limit=5" % me["id"])["data"]
        check(mine and all(e["actor_user_id"] == me["id"] for e in mine))
        expect_error(admin("GET", "/audit-log?resource_id=x"), 422, field="resource_id")
        expect_error(admin("GET", "/audit-log?who=me"), 422, field="who")

    @T.case
    def unauthenticated():
        for path in ("/campaigns", "/users/me", "/audit-log", "/api-keys"):
            h, _ = expect_error(http(D, "GET", "/api/v1" + path), 401, "unauthorized")
            check(h["www-authenticate"] == 'Bearer realm="adplatform"', h)
        h, _ = expect_error(http(D, "GET", "/api/v1/users/me", token="apk_bad"), 401)
        check('error="invalid_token"' in h["www-authenticate"], h)
        for auth in ("Bearer", "Bearer ", "Basic YWRtaW46eA==", "Bearer apk_nope",
                     "Bearer ses_" + "A" * 43, "Bearer apk_" + "A" * 43, "Bearer " + "x" * 500,
                     "bearer " + boot["api_key"] + "x"):
            expect_error(http(D, "GET", "/api/v1/users/me", headers={"Authorization": auth}),
                         401)
        # the scheme is case-insensitive
        st, _, _ = http(D, "GET", "/api/v1/users/me",
                        headers={"Authorization": "bEaReR " + boot["api_key"]})
        check(st == 200, st)
        # a write without a token changes nothing
        n = len(admin.ok("GET", "/advertisers?limit=1000")["data"])
        expect_error(http(D, "POST", "/api/v1/advertisers", advertiser_body("x")), 401)
        check(len(admin.ok("GET", "/advertisers?limit=1000")["data"]) == n)

    @T.case
    def creative_upload_good_files():
        for mime, (gen, w, h, ext) in IMAGES.items():
            data = gen()
            sha = hashlib.sha256(data).hexdigest()
            st, hd, cr = admin("POST", "/creatives/upload?advertiser_id=%d&name=%s+banner"
                               % (W.adv[0], ext), data, ctype=mime)
            check(st == 201, (mime, st, cr))
            check(cr["type"] == "image" and cr["mime"] == mime and cr["width"] == w
                  and cr["height"] == h and cr["sha256"] == sha and cr["size_bytes"] == len(data)
                  and cr["name"] == ext + " banner", cr)
            check(cr["asset_path"] == "/assets/%s.%s" % (sha, ext), cr)
            check(hd["location"] == "/api/v1/creatives/%d" % cr["id"], hd)
            f = os.path.join(D.data_dir, "creatives", sha[:2], "%s.%s" % (sha, ext))
            check(open(f, "rb").read() == data, f)
            st, ah, body = http(D, "GET", cr["asset_path"])
            check(st == 200 and body == data and ah["content-type"] == mime, (st, ah))
            check(ah["cache-control"] == "public, max-age=31536000, immutable", ah)
            check(ah["etag"] == '"%s"' % sha and ah["x-content-type-options"] == "nosniff", ah)
            st, _, _ = http(D, "GET", cr["asset_path"], headers={"If-None-Match": ah["etag"]})
            check(st == 304, st)
            st, hh, body = http(D, "HEAD", cr["asset_path"])
            check(st == 200 and hh["content-length"] == str(len(data)) and body == b"")
            st, dh, body = D.get(cr["asset_path"])  # the data plane serves the same file
            check(st == 200 and body == data and dh["content-type"] == mime, (st, dh))
            # the same bytes again: a second creative, one file
            cr2 = admin.ok("POST", "/creatives/upload?advertiser_id=%d&name=again" % W.adv[0],
                           data, ctype=mime)
            check(cr2["sha256"] == sha and cr2["id"] != cr["id"], cr2)
            check(os.listdir(os.path.dirname(f)).count(os.path.basename(f)) == 1)
            # a JSON image creative may point at the uploaded file
            j = admin.ok("POST", "/creatives", {"advertiser_id": W.adv[0], "name": "json img",
                                                "type": "image", "width": w, "height": h,
                                                "mime": mime, "sha256": sha})
            check(j["asset_path"] == cr["asset_path"], j)
        check(admin.ok("GET", "/creatives?sha256=" + sha)["data"][0]["sha256"] == sha)
        # image/jpg is an alias
        admin.ok("POST", "/creatives/upload?advertiser_id=%d&name=j" % W.adv[0], jpeg_bytes(),
                 ctype="image/jpg")

    @T.case
    def creative_upload_bad_files():
        up = "/creatives/upload?advertiser_id=%d&name=bad" % W.adv[0]
        before = len(admin.ok("GET", "/creatives?limit=1000")["data"])
        for mime, (gen, w, h, ext) in IMAGES.items():
            data = gen()
            cuts = sorted({1, 5, 11, len(data) // 2, len(data) - 3, len(data) - 1})
            for n in cuts:
                expect_error(admin("POST", up, data[:n], ctype=mime), 422, "validation_failed",
                             "file")
            # lying about the type: every other declared image type
            for other in IMAGES:
                if other != mime:
                    expect_error(admin("POST", up, data, ctype=other), 422, field="file")
        # corrupt: bad PNG checksum, JPEG without frame header, GIF without image
        p = bytearray(png_bytes())
        p[30] ^= 0xFF
        expect_error(admin("POST", up, bytes(p), ctype="image/png"), 422, field="file")
        expect_error(admin("POST", up, b"\xff\xd8\xff\xd9", ctype="image/jpeg"), 422,
                     field="file")
        expect_error(admin("POST", up, b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x3b",
                           ctype="image/gif"), 422, field="file")
        expect_error(admin("POST", up, b"not an image",
                           ctype="image/png"), 422, field="file")
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        expect_error(admin("POST", up, svg, ctype="image/svg+xml"), 422, field="file")
        expect_error(admin("POST", up, b"", ctype="image/png"), 422, field="file")
        expect_error(admin("POST", up, png_bytes(), ctype="text/plain"), 415)
        expect_error(admin("POST", up, png_bytes(), ctype="application/octet-stream"), 415)
        # oversize: one byte past 5 MiB
        big = png_bytes() + b"\x00" * (5 * 1024 * 1024 + 1 - len(png_bytes()))
        expect_error(admin("POST", up, big, ctype="image/png"), 413, "payload_too_large")
        # parameters
        expect_error(admin("POST", "/creatives/upload?name=x", png_bytes(), ctype="image/png"),
                     422, field="advertiser_id")
        expect_error(admin("POST", "/creatives/upload?advertiser_id=%d" % W.adv[0], png_bytes(),
                           ctype="image/png"), 422, field="name")
        expect_error(admin("POST", "/creatives/upload?advertiser_id=987654&name=x", png_bytes(),
                           ctype="image/png"), 422, field="advertiser_id")
        expect_error(admin("POST", up + "&colour=red", png_bytes(), ctype="image/png"), 422,
                     field="colour")
        expect_error(admin("POST", "/creatives/upload?advertiser_id=%d&name=" % W.adv[0],
                           png_bytes(), ctype="image/png"), 422, field="name")
        check(len(admin.ok("GET", "/creatives?limit=1000")["data"]) == before)
        # a JSON image creative naming a file that was never uploaded
        expect_error(admin("POST", "/creatives", {"advertiser_id": W.adv[0], "name": "x",
                                                  "type": "image", "width": 1, "height": 1,
                                                  "mime": "image/png", "sha256": "0" * 64}),
                     422, field="sha256")
        # assets: bad names
        for name in ("x", "0" * 64, "0" * 64 + ".png", "../../adplatform.db", "0" * 64 + ".svg",
                     "A" * 64 + ".png", "%2e%2e%2fadplatform.db"):
            st, _, _ = http(D, "GET", "/assets/" + name)
            check(st == 404, (name, st))

    @T.case
    def concurrent_writes_and_reads():
        errors = []

        def worker(i):
            try:
                for k in range(10):
                    b = admin.ok("POST", "/campaigns", {"advertiser_id": W.adv[i % 2],
                                                        "name": "c%d-%d" % (i, k)})
                    admin.ok("PATCH", "/campaigns/%d" % b["id"], {"status": "paused"},
                             headers={"If-Match": '"1"'})
                    admin.ok("GET", "/campaigns/%d" % b["id"])
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, errors)

    @T.case
    def store_locked_answers_503_then_recovers():
        import sqlite3
        db = sqlite3.connect(os.path.join(D.data_dir, "adplatform.db"), timeout=10,
                             isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")  # hold the write lock past the store's busy timeout
            t0 = time.time()
            h, _ = expect_error(admin("POST", "/campaigns", W.body("campaigns", 0)), 503, "busy")
            check(h["retry-after"] == "1" and time.time() - t0 >= 4, (h, time.time() - t0))
            check(admin.ok("GET", "/campaigns/%d" % W.campaign[0])["id"] == W.campaign[0])
        finally:
            db.execute("ROLLBACK")
            db.close()
        admin.ok("POST", "/campaigns", W.body("campaigns", 0))

    @T.case
    def garbage_never_crashes():
        paths = ["/api/v1/campaigns", "/api/v1/campaigns/%d" % W.campaign[0],
                 "/api/v1/auth/login", "/api/v1/creatives/upload?advertiser_id=1&name=x",
                 "/api/v1/users", "/api/v1/api-keys"]
        bodies = [b"\x00" * 10, b"{" * 100, b'{"a":' * 50, b"\xff" * 30,
                  b'{"name": "' + b"\xe2\x82" + b'"}', b'{"targeting": ' + b"[" * 3000 + b"}",
                  json.dumps({"name": "x" * 100000}).encode(), b'{"\\u0000": 1}',
                  b'{"name": "a\\u0000b", "advertiser_id": 1}', b"null", b"1e999"]
        for p in paths:
            for b in bodies:
                for m in ("POST", "PATCH"):
                    for ct in ("application/json", "image/png"):
                        st, _, _ = http(D, m, p, b, token=boot["api_key"], ctype=ct)
                        check(st < 500, (m, p, b[:20], st))
        check(D.get("/healthz", admin=True)[0] == 200)
        check(admin.ok("GET", "/users/me")["role"] == "admin")

    rc = D.stop()
    if rc != 0:
        T.failed += 1
        print("FAIL  daemon exit code %s\n%s" % (rc, D.logs()[-3000:]))
    D.__exit__(None, None, None)

    auth_tests(T)
    T.finish()

# ---------------------------------------------------------------------------- auth daemon


def auth_tests(T):
    """Login, logout, expiry and throttling, on a daemon of their own (short session TTL, and a
    fresh throttle table: the address 127.0.0.1 must not be blocked for the other tests)."""
    D = Daemon("--admin-threads", "2", "--session-ttl", "2")
    boot = bootstrap(D)
    D.start()
    atexit.register(D.__exit__, None, None, None)  # stop it even if setup fails
    admin = Api(D, boot["api_key"])
    users = {}
    for name in ("alice", "bob", "carol", "dave", "eve"):
        users[name] = admin.ok("POST", "/users", {"email": name + "@example.com",
                                                   "password": name + "-password",
                                                   "role": "viewer"})

    def login(email, password, source=None):
        return http(D, "POST", "/api/v1/auth/login", {"email": email, "password": password},
                    source=source)

    @T.case
    def login_logout():
        st, _, b = login("ALICE@example.com", "alice-password")
        check(st == 200 and set(b) == {"token", "expires_at"}, (st, b))
        check(b["token"].startswith("ses_") and b["expires_at"].endswith("Z"), b)
        s = Api(D, b["token"])
        check(s.ok("GET", "/users/me")["email"] == "alice@example.com")
        st, _, _ = s("POST", "/auth/logout")
        check(st == 204, st)
        expect_error(s("GET", "/users/me"), 401, "unauthorized")
        expect_error(s("POST", "/auth/logout"), 401)
        expect_error(admin("POST", "/auth/logout"), 400)  # an API key is not a session
        check(admin.ok("GET", "/users/me")["role"] == "admin")
        log = admin.ok("GET", "/audit-log?resource=session")["data"]
        check({"create", "revoke"} <= {e["action"] for e in log}, log)

    @T.case
    def login_failures_look_alike():
        a = login("alice@example.com", "wrong-password")
        b = login("nobody@example.com", "wrong-password")
        for st, _, body in (a, b):
            check(st == 401 and error_of(body)[0] == "invalid_credentials", body)
        check(a[2] == b[2])
        expect_error(http(D, "POST", "/api/v1/auth/login", {"email": "alice@example.com"}),
                     422, field="password")
        expect_error(http(D, "POST", "/api/v1/auth/login", {"email": 5, "password": "x"}),
                     422, field="email")
        expect_error(http(D, "POST", "/api/v1/auth/login", {"email": "a@b.c", "password": "x",
                                                            "remember": True}),
                     422, field="remember")
        expect_error(http(D, "POST", "/api/v1/auth/login", b"{", ctype="application/json"),
                     400, "invalid_json")
        expect_error(http(D, "POST", "/api/v1/auth/login", b"email=a", ctype="text/plain"), 415)

    @T.case
    def session_expiry():
        st, _, b = login("bob@example.com", "bob-password")
        check(st == 200, b)
        s = Api(D, b["token"])
        s.ok("GET", "/users/me")
        time.sleep(3.2)
        expect_error(s("GET", "/users/me"), 401, "unauthorized")

    @T.case
    def session_ttl_option():
        # --session-ttl sets expires_at; a bad value stops start-up with a message naming it
        t0 = time.time()
        st, _, b = login("bob@example.com", "bob-password")
        check(st == 200, b)
        exp = time.mktime(time.strptime(b["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        check(t0 - 1 <= exp - 2 <= time.time() + 1, (t0, b))
        for bad in ("0", "-5", "31622401", "ten"):
            out = subprocess.run([AP_BIN, "serve", "--data-dir", D.data_dir, "--listen",
                                  "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                                  "--session-ttl", bad], capture_output=True, timeout=30)
            check(out.returncode != 0 and b"session-ttl" in out.stderr, (bad, out))
        # the environment (ADPLATFORM_SESSION_TTL) goes through the same table
        out = subprocess.run([AP_BIN, "serve", "--data-dir", D.data_dir, "--listen",
                              "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                             env=dict(os.environ, ADPLATFORM_SESSION_TTL="0"),
                             capture_output=True, timeout=30)
        check(out.returncode != 0 and b"session-ttl" in out.stderr, out)

    def keepalive(n, token):
        """n keep-alive connections (spread over both admin threads), each warmed up with
        `token` so every thread has it cached."""
        conns = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", D.admin_port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns.append((s, Reader(s)))
        for _ in range(3):
            for c in conns:
                check(ka_get(c, token)[0] == 200)
        return conns

    def ka_get(c, token, path="/api/v1/users/me"):
        s, r = c
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n\r\n"
                   % (path, token)).encode())
        return r.response()

    @T.case
    def key_revocation_is_immediate_on_every_thread():
        k = admin.ok("POST", "/api-keys", {"name": "cached"})
        conns = keepalive(8, k["key"])
        try:
            st, _, _ = admin("DELETE", "/api-keys/%d" % k["id"])
            check(st == 204, st)
            # no grace period: the very next request on every connection is refused
            for c in conns:
                st, _, body = ka_get(c, k["key"])
                check(st == 401, (st, body))
        finally:
            for s, _ in conns:
                s.close()

    @T.case
    def logout_is_immediate_on_every_thread():
        st, _, b = login("alice@example.com", "alice-password")
        check(st == 200, b)
        conns = keepalive(8, b["token"])
        try:
            st, _, _ = Api(D, b["token"])("POST", "/auth/logout")
            check(st == 204, st)
            for c in conns:
                check(ka_get(c, b["token"])[0] == 401)
        finally:
            for s, _ in conns:
                s.close()

    @T.case
    def revocation_outside_the_process_is_seen_within_a_second():
        # another node (here: a direct write to the shared database) revokes a key: the cached
        # answers of this process may live on for at most AP_API_AUTH_CACHE_TTL_MS (1 s)
        import sqlite3
        k = admin.ok("POST", "/api-keys", {"name": "elsewhere"})
        conns = keepalive(4, k["key"])
        db = sqlite3.connect(os.path.join(D.data_dir, "adplatform.db"), timeout=10)
        try:
            db.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?", (k["id"],))
            db.commit()
            t0 = time.time()
            pending = list(conns)
            while pending and time.time() - t0 < 3:
                pending = [c for c in pending if ka_get(c, k["key"])[0] == 200]
                time.sleep(0.02)
            took = time.time() - t0
            check(not pending and took < 1.3, (len(pending), took))
        finally:
            db.close()
            for s, _ in conns:
                s.close()

    @T.case
    def throttle_per_account():
        # 10 failures for carol, each from another address
        for i in range(10):
            st, _, b = login("carol@example.com", "guess%d" % i, source="127.0.0.%d" % (2 + i))
            check(st == 401, (i, st, b))
        # the 11th attempt is refused even with the right password, from a fresh address
        st, h, b = login("carol@example.com", "carol-password", source="127.0.0.20")
        check(st == 429 and error_of(b)[0] == "too_many_attempts", (st, b))
        ra = int(h["retry-after"])
        check(0 < ra <= 900, h)
        # other accounts from that address are fine
        st, _, _ = login("dave@example.com", "dave-password", source="127.0.0.20")
        check(st == 200, st)

    @T.case
    def throttle_per_address():
        src = "127.0.0.50"
        for i in range(10):
            st, _, _ = login("user%d@example.com" % i, "nope", source=src)
            check(st == 401, (i, st))
        st, h, b = login("dave@example.com", "dave-password", source=src)
        check(st == 429 and 0 < int(h["retry-after"]) <= 900, (st, h, b))
        st, _, _ = login("dave@example.com", "dave-password", source="127.0.0.51")
        check(st == 200, st)

    @T.case
    def throttle_holds_under_parallel_attempts():
        src = "127.0.0.60"
        results = []

        def attempt(i):
            results.append(login("x%d@example.com" % i, "nope", source=src)[0])
        ts = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(results.count(401) == 10 and results.count(429) == 6, results)

    @T.case
    def success_resets_the_account():
        for i in range(9):
            check(login("eve@example.com", "bad", source="127.0.0.%d" % (100 + i))[0] == 401)
        check(login("eve@example.com", "eve-password", source="127.0.0.110")[0] == 200)
        for i in range(9):
            check(login("eve@example.com", "bad", source="127.0.0.%d" % (120 + i))[0] == 401)
        check(login("eve@example.com", "eve-password", source="127.0.0.130")[0] == 200)

    rc = D.stop()
    if rc != 0:
        T.failed += 1
        print("FAIL  auth daemon exit code %s\n%s" % (rc, D.logs()[-3000:]))
    D.__exit__(None, None, None)


if __name__ == "__main__":
    main()
