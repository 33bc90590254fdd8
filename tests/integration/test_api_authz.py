"""The authorisation matrix, generated from the route table: every route of docs/api/openapi.yaml
(which tests/unit/test_ap_api_spec.c keeps equal to the routes src/api registers) x every role
(admin, advertiser, publisher, viewer) x own / other tenant, each with its expected status.
Requests that must not succeed are checked afterwards through the admin: nothing changed.
A route without a rule here fails the test, so a new route needs its row in the matrix.
"""
import atexit
import os
import re

from aptest import SOURCE_DIR, Daemon, Runner, check
from test_api import Api, World, bootstrap, error_of, http, png_bytes

ROLES = ["admin", "advertiser", "publisher", "viewer"]
TENANTS = ["own", "other"]
ADV_SIDE = {"advertisers", "campaigns", "creatives", "ads"}
PUB_SIDE = {"publishers", "sites", "placements"}
OWNER_FIELD = {"campaigns": "advertiser_id", "creatives": "advertiser_id", "ads": "campaign_id",
               "sites": "publisher_id", "placements": "site_id"}


def spec_routes():
    """[(path, METHOD)] from the spec's paths: section."""
    routes, path, in_paths = [], None, False
    with open(os.path.join(SOURCE_DIR, "docs", "api", "openapi.yaml")) as f:
        for line in f:
            line = line.rstrip("\n")
            if re.match(r"^\S", line):
                in_paths = line.startswith("paths:")
                continue
            if not in_paths:
                continue
            m = re.match(r"^  (/\S*):\s*$", line)
            if m:
                path = m.group(1)
                continue
            m = re.match(r"^    (get|post|put|patch|delete):\s*$", line)
            if m and path:
                routes.append((path, m.group(1).upper()))
    return routes


def main():
    T = Runner()
    D = Daemon("--admin-threads", "2")
    boot = bootstrap(D)
    D.start()
    atexit.register(D.__exit__, None, None, None)  # stop it even if setup fails
    admin = Api(D, boot["api_key"])
    W = World(admin)
    users = {
        "advertiser": admin.ok("POST", "/users", {"email": "adv@example.com", "password": "a" * 12,
                                                  "role": "advertiser",
                                                  "advertiser_ids": [W.adv[0]]}),
        "publisher": admin.ok("POST", "/users", {"email": "pub@example.com", "password": "p" * 12,
                                                 "role": "publisher",
                                                 "publisher_ids": [W.pub[0]]}),
        "viewer": admin.ok("POST", "/users", {"email": "view@example.com", "password": "v" * 12,
                                              "role": "viewer"}),
        "admin": admin.ok("GET", "/users/me"),
    }
    client = {r: (admin if r == "admin" else admin.key_for(users[r]["id"], r)) for r in ROLES}
    asset = admin.ok("POST", "/creatives/upload?advertiser_id=%d&name=a" % W.adv[0], png_bytes(),
                     ctype="image/png")["asset_path"]
    missing = {}  # resource -> the exact 404 body for a missing id
    seq = [0]

    def uniq():
        seq[0] += 1
        return seq[0]

    def side_of(res):
        return "advertiser" if res in ADV_SIDE else "publisher" if res in PUB_SIDE else None

    def mine(res, role, tenant):
        return role == side_of(res) and tenant == "own"

    def snapshot(res, oid):
        st, _, b = admin("GET", "/%s/%d" % (res, oid))
        check(st == 200, (res, oid, st))
        return b

    def owner_chain(res, row):
        """The (side, owner id) a row belongs to, resolved through the admin."""
        if res in ("advertisers", "publishers"):
            return row["id"]
        parent = row[OWNER_FIELD[res]]
        parent_res = {"advertiser_id": "advertisers", "publisher_id": "publishers",
                      "campaign_id": "campaigns", "site_id": "sites"}[OWNER_FIELD[res]]
        return owner_chain(parent_res, snapshot(parent_res, parent))

    def marker(res):
        """The field a test writes a unique value to (ads have no name)."""
        return "landing_url" if res == "ads" else "name"

    def mark(res):
        n = uniq()
        return "https://shop.example.com/authz-%d" % n if res == "ads" else "authz-%d" % n

    def names(res):
        return {r.get(marker(res)) for r in admin.ok("GET", "/%s?limit=1000" % res)["data"]}

    # ---- resource routes ----------------------------------------------------------------

    def resource_case(res, item, method, role, tenant):
        c = client[role]
        t = 0 if tenant == "own" else 1
        tenant_row = res in ("advertisers", "publishers")
        ownerless = side_of(res) is None
        restricted = role in ("advertiser", "publisher")
        if restricted and ownerless:
            want = {"GET": 403, "POST": 403, "PATCH": 403, "DELETE": 403}[method]
        elif role == "viewer" and method != "GET":
            want = 403
        elif role in ("admin", "viewer"):
            want = {"GET": 200, "POST": 201, "PATCH": 200, "DELETE": 200}[method]
        elif not item:
            want = 200 if method == "GET" else 403 if tenant_row else (
                201 if mine(res, role, tenant) else 422)
        elif method == "DELETE" and tenant_row:
            want = 403
        else:
            want = 200 if mine(res, role, tenant) else 404

        if not item and method == "GET":
            st, _, b = c("GET", "/%s?limit=1000" % res)
            check(st == want, (res, role, st, b))
            if st == 200 and restricted:
                own = W.adv[0] if role == "advertiser" else W.pub[0]
                got = {r["id"] for r in b["data"]}
                for r in b["data"]:
                    check(side_of(res) == role and owner_chain(res, r) == own,
                          ("a foreign row listed", res, role, r))
                if side_of(res) == role:
                    check(W.owned(res, 0) in got, ("own row missing", res, role))
            return want
        if not item:  # POST
            body = W.body(res, t)
            body[marker(res)] = mark(res)
            st, _, b = c("POST", "/" + res, body)
            check(st == want, (res, role, tenant, st, b))
            if st != 201:
                check(body[marker(res)] not in names(res), ("created anyway", res, role, tenant))
            if st == 422:
                check(OWNER_FIELD[res] in error_of(b)[1], (res, role, b))
            return want
        # item routes
        fresh = method == "DELETE" and not (restricted and tenant_row) and want != 403
        oid = W.make(res, t) if fresh else W.owned(res, t)
        before = snapshot(res, oid)
        path = "/%s/%d" % (res, oid)
        if method == "GET":
            st, _, b = c("GET", path)
        elif method == "PATCH":
            st, _, b = c("PATCH", path, {marker(res): mark(res)})
        else:
            st, _, b = c("DELETE", path)
        check(st == want, (res, method, role, tenant, st, b))
        after = snapshot(res, oid)
        if st in (403, 404) or method == "GET":
            check(after == before, ("changed by a refused request", res, method, role, tenant))
        if st == 404:
            if res not in missing:
                missing[res] = admin("GET", "/%s/987654321" % res)[2]
            check(b == missing[res], ("404 differs from a missing id's", b, missing[res]))
        if st == 200 and method == "DELETE":
            check(after["status"] == "archived", after)
        if st == 200 and method == "PATCH":
            check(after["version"] == before["version"] + 1, (before, after))
        return want

    # ---- the other routes --------------------------------------------------------------

    def other_case(path, method, role, tenant):
        c = client[role]
        is_admin = role == "admin"
        if (path, method) == ("/api/v1/auth/login", "POST"):
            st, _, b = c("POST", "/auth/login", {})
            check(st == 422, (st, b))
        elif (path, method) == ("/api/v1/auth/logout", "POST"):
            st, _, b = c("POST", "/auth/logout")  # API keys are not sessions
            check(st == 400, (st, b))
        elif (path, method) == ("/api/v1/users", "GET"):
            st, _, b = c("GET", "/users")
            check(st == (200 if is_admin else 403), (role, st))
        elif (path, method) == ("/api/v1/users", "POST"):
            email = "u%d@example.com" % uniq()
            st, _, b = c("POST", "/users", {"email": email, "password": "x" * 10,
                                            "role": "admin"})
            check(st == (201 if is_admin else 403), (role, st, b))
            if not is_admin:
                emails = {u["email"] for u in admin.ok("GET", "/users?limit=1000")["data"]}
                check(email not in emails, "user created by " + role)
        elif (path, method) == ("/api/v1/users/me", "GET"):
            st, _, b = c("GET", "/users/me")
            check(st == 200 and b["id"] == users[role]["id"], (role, st, b))
        elif (path, method) == ("/api/v1/users/{id}", "GET"):
            uid = users[role]["id"] if tenant == "own" else users["admin"]["id"]
            st, _, b = c("GET", "/users/%d" % uid)
            check(st == (200 if is_admin else 403), (role, st))
        elif (path, method) == ("/api/v1/api-keys", "GET"):
            st, _, b = c("GET", "/api-keys?limit=1000")
            check(st == 200, (role, st))
            if not is_admin:
                check(all(k["user_id"] == users[role]["id"] for k in b["data"]), b)
        elif (path, method) == ("/api/v1/api-keys", "POST"):
            st, _, b = c("POST", "/api-keys", {"name": "m%d" % uniq()})
            check(st == 201 and b["user_id"] == users[role]["id"], (role, st, b))
        elif (path, method) == ("/api/v1/api-keys/{id}", "DELETE"):
            owner = users[role]["id"] if tenant == "own" else users[
                "viewer" if role == "admin" else "admin"]["id"]
            k = admin.ok("POST", "/api-keys", {"name": "victim", "user_id": owner})
            st, _, b = c("DELETE", "/api-keys/%d" % k["id"])
            want = 204 if (tenant == "own" or is_admin) else 404
            check(st == want, (role, tenant, st, b))
            still = Api(D, k["key"])("GET", "/users/me")[0]
            check(still == (401 if want == 204 else 200), (role, tenant, still))
        elif path == "/api/v1/currency-rates":
            # operator data (the exchange's rates): administrators only, even to read
            st, _, b = c(method, "/currency-rates", {"rates": {}} if method == "PUT" else None)
            check(st == (200 if is_admin else 403), (role, method, st, b))
        elif path in ("/api/v1/token-keys", "/api/v1/token-keys/rotate"):
            # the token signing keys: administrators only; ids and dates, never the key bytes
            before = admin("GET", "/token-keys")[2]["items"]
            st, _, b = c(method, path[len("/api/v1"):], {} if method == "POST" else None)
            check(st == ((201 if method == "POST" else 200) if is_admin else 403), (role, st, b))
            after = admin("GET", "/token-keys")[2]["items"]
            check(len(after) == len(before) + (1 if st == 201 else 0), (role, before, after))
            check(all(set(k) == {"id", "created_at", "retired_at", "current"} for k in after),
                  after)
        elif (path, method) == ("/api/v1/audit-log", "GET"):
            st, _, b = c("GET", "/audit-log")
            check(st == (200 if is_admin else 403), (role, st))
        elif (path, method) == ("/api/v1/creatives/upload", "POST"):
            adv = W.adv[0 if tenant == "own" else 1]
            name = "up%d" % uniq()
            st, _, b = c("POST", "/creatives/upload?advertiser_id=%d&name=%s" % (adv, name),
                         png_bytes(2, 2), ctype="image/png")
            want = (201 if role == "admin" else 403 if role == "viewer" else
                    201 if (role == "advertiser" and tenant == "own") else 422)
            check(st == want, (role, tenant, st, b))
            if st != 201:
                check(name not in names("creatives"), "created anyway")
            if st == 422:
                check("advertiser_id" in error_of(b)[1], b)
        elif (path, method) == ("/api/v1/placements/{id}/tag", "GET"):
            pid = W.placement[0 if tenant == "own" else 1]
            st, _, b = c("GET", "/placements/%d/tag" % pid)
            want = 200 if role in ("admin", "viewer") or (
                role == "publisher" and tenant == "own") else 404
            check(st == want, (role, tenant, st, b))
        elif (path, method) == ("/api/v1/reports", "GET"):
            # every role reads reports, scoped to its tenants (test_reports.py checks the rows);
            # publishers may not break down by campaign
            st, _, b = c("GET", "/reports?group_by=placement")
            check(st == 200 and "rows" in b and "totals" in b, (role, st, b))
            st, _, b = c("GET", "/reports?group_by=campaign")
            check(st == (422 if role == "publisher" else 200), (role, st, b))
        elif (path, method) == ("/assets/{file}", "GET"):
            st, h, b = http(D, "GET", asset)
            check(st == 200 and b == png_bytes(), st)
        elif (path, method) in (("/healthz", "GET"), ("/metrics", "GET")):
            st, _, _ = http(D, "GET", path, token=c.token)
            check(st == 200, (path, st))
        else:
            raise AssertionError("no authorisation rule for %s %s: add one" % (method, path))

    routes = spec_routes()
    check(len(routes) >= 40, routes)
    counts = {}
    for path, method in routes:
        m = re.match(r"^/api/v1/([a-z-]+)(/\{id\})?$", path)
        res = m.group(1) if m else None
        is_resource = res in ADV_SIDE | PUB_SIDE | {"demand-partners"}

        def run(path=path, method=method, res=res, item=bool(m and m.group(2)),
                is_resource=is_resource):
            for role in ROLES:
                for tenant in TENANTS:
                    if is_resource:
                        resource_case(res, item, method, role, tenant)
                    else:
                        other_case(path, method, role, tenant)
                    counts[path] = counts.get(path, 0) + 1
        run.__name__ = "%s %s" % (method, path)
        T.case(run)
    print("matrix: %d routes x %d roles x %d tenants = %d cases"
          % (len(routes), len(ROLES), len(TENANTS), sum(counts.values())))

    rc = D.stop()
    if rc != 0:
        T.failed += 1
        print("FAIL  daemon exit code %s\n%s" % (rc, D.logs()[-3000:]))
    D.__exit__(None, None, None)
    T.finish()


if __name__ == "__main__":
    main()
