"""Integration tests of the dashboard's static serving (src/api/ap_web.c) on the control plane:
security and cache headers, MIME types, gzip siblings, HEAD, conditional GET, the SPA fallback for
client routes (never for /api, /metrics, /healthz, /assets), path traversal over raw sockets,
symlinks and hidden files, and a missing build (503 saying how to build it)."""
import gzip
import json
import os
import shutil
import tempfile

from aptest import Daemon, Runner, check, raw, status_of

T = Runner()
ROOT = tempfile.mkdtemp(prefix="aptest-web.")
INDEX = b"<!doctype html><html><head><script type=module src=/static/app-1a2b3c.js></script></head><body><div id=root></div></body></html>"
APP_JS = b"console.log('dashboard');" * 100
os.makedirs(os.path.join(ROOT, "static"))
with open(os.path.join(ROOT, "index.html"), "wb") as f:
    f.write(INDEX)
with open(os.path.join(ROOT, "static", "app-1a2b3c.js"), "wb") as f:
    f.write(APP_JS)
with open(os.path.join(ROOT, "static", "app-1a2b3c.js.gz"), "wb") as f:
    f.write(gzip.compress(APP_JS))
with open(os.path.join(ROOT, "static", "style-9f.css"), "wb") as f:
    f.write(b"body{margin:0}")
with open(os.path.join(ROOT, "favicon.svg"), "wb") as f:
    f.write(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
with open(os.path.join(ROOT, ".secret"), "wb") as f:
    f.write(b"hidden")
SECRET_DIR = tempfile.mkdtemp(prefix="aptest-web-outside.")
with open(os.path.join(SECRET_DIR, "passwd"), "wb") as f:
    f.write(b"root:x:0:0")
os.symlink(os.path.join(SECRET_DIR, "passwd"), os.path.join(ROOT, "static", "link.js"))

D = Daemon("--threads", "1", "--web-root", ROOT)
D.start()


def get(path, headers=None, method="GET"):
    return D.request(method, path, admin=True, headers=headers)


def security_headers(h):
    csp = h.get("content-security-policy", "")
    check("script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], csp)
    check("connect-src 'self'" in csp, csp)
    check("frame-ancestors 'none'" in csp, csp)
    check(h.get("x-content-type-options") == "nosniff", h)
    check(h.get("x-frame-options") == "DENY", h)
    check(h.get("referrer-policy") == "same-origin", h)


@T.case
def index_is_no_cache_html_with_security_headers():
    st, h, body = get("/")
    check(st == 200, st)
    check(body == INDEX)
    check(h["content-type"] == "text/html; charset=utf-8", h)
    check(h["cache-control"] == "no-cache", h)
    check(h.get("etag", "").startswith('"'), h)
    security_headers(h)


@T.case
def client_routes_fall_back_to_index():
    for p in ("/campaigns", "/campaigns/12", "/reports?from=2026-01-01", "/users/new",
              "/placements/3/x-y_z"):
        st, h, body = get(p)
        check(st == 200 and body == INDEX, (p, st))
        check(h["cache-control"] == "no-cache", (p, h))


@T.case
def hashed_assets_are_immutable_with_their_mime_type():
    st, h, body = get("/static/app-1a2b3c.js")
    check(st == 200 and body == APP_JS, st)
    check(h["content-type"] == "text/javascript; charset=utf-8", h)
    check(h["cache-control"] == "public, max-age=31536000, immutable", h)
    check("content-encoding" not in h, h)
    security_headers(h)
    st, h, _ = get("/static/style-9f.css")
    check(st == 200 and h["content-type"] == "text/css; charset=utf-8", h)
    st, h, _ = get("/favicon.svg")
    check(st == 200 and h["content-type"] == "image/svg+xml" and h["cache-control"] == "no-cache", h)


@T.case
def gzip_sibling_when_accepted():
    st, h, body = get("/static/app-1a2b3c.js", {"Accept-Encoding": "br, gzip"})
    check(st == 200 and h.get("content-encoding") == "gzip", h)
    check(gzip.decompress(body) == APP_JS)
    check("accept-encoding" in h.get("vary", "").lower(), h)
    st, h, body = get("/static/app-1a2b3c.js", {"Accept-Encoding": "gzip;q=0, br"})
    check(st == 200 and "content-encoding" not in h and body == APP_JS, h)
    st, h, body = get("/static/style-9f.css", {"Accept-Encoding": "gzip"})  # no .gz: plain
    check(st == 200 and "content-encoding" not in h and body == b"body{margin:0}", h)


@T.case
def head_and_conditional_get():
    st, h, body = get("/static/app-1a2b3c.js", method="HEAD")
    check(st == 200 and body == b"" and h["content-length"] == str(len(APP_JS)), (st, h))
    st, h, _ = get("/")
    etag = h["etag"]
    st, h2, body = get("/", {"If-None-Match": etag})
    check(st == 304 and body == b"", st)
    check(h2.get("etag") == etag)
    st, _, _ = get("/", {"If-None-Match": '"other"'})
    check(st == 200)


@T.case
def missing_assets_and_reserved_paths_are_json_404s():
    for p in ("/static/nope.js", "/static/", "/robots.txt", "/api/v1/nope", "/api", "/metricsx/../x",
              "/healthz/extra", "/assets/not-a-hash.png"):
        st, h, body = get(p)
        check(st == 404, (p, st))
        check(h["content-type"].startswith("application/json"), (p, h))
        check(json.loads(body)["error"]["code"] == "not_found", (p, body))
    # the real routes still win over the catch-all
    st, _, body = get("/healthz")
    check(st == 200 and body == b"ok")
    st, h, _ = get("/metrics")
    check(st == 200 and h["content-type"].startswith("text/plain"))
    st, _, body = get("/api/v1/users/me")
    check(st == 401 and json.loads(body)["error"]["code"] == "unauthorized", body)


@T.case
def traversal_hidden_files_and_symlinks_are_refused():
    for p in (b"/../../../../etc/passwd", b"/static/../../etc/passwd", b"/static/%2e%2e/%2e%2e/etc/passwd",
              b"/.secret", b"/static/.%2e/index.html", b"/static//app-1a2b3c.js", b"/static\\..\\index.html",
              b"/static/link.js"):
        resp = raw(D, b"GET " + p + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", admin=True)
        st = status_of(resp)
        check(st in (400, 404), (p, st))
        check(b"root:x" not in resp and b"hidden" not in resp.split(b"\r\n\r\n", 1)[-1], p)


@T.case
def other_methods_are_405():
    st, h, body = get("/campaigns", method="POST")
    check(st == 405, st)
    check("GET" in h.get("allow", ""), h)


@T.case
def missing_build_answers_503_with_instructions():
    with Daemon("--threads", "1", "--web-root", os.path.join(ROOT, "does-not-exist")) as d:
        st, h, body = d.request("GET", "/campaigns", admin=True)
        check(st == 503, st)
        check("npm run build" in json.loads(body)["error"]["message"], body)
        st, _, _ = d.request("GET", "/api/v1/users/me", admin=True)
        check(st == 401, st)
        check("no dashboard" in d.logs(), d.logs()[-500:])


D.__exit__(None, None, None)
shutil.rmtree(ROOT, ignore_errors=True)
shutil.rmtree(SECRET_DIR, ignore_errors=True)
T.finish()
