"""Integration tests of token signing keys in the store and their rotation without a restart
(src/store/ap_store_keys.c, src/events/ap_token_ring.c, src/api/ap_api_keys.c, `adplatform keys`):
a token signed before a rotation verifies after it within --token-key-overlap and is refused
after; new decisions are signed with the new key id within about a second (API and CLI); click
ids stay verifiable for conversions after the overlap; restart keeps the keys; the API never
returns key bytes; only administrators see or rotate keys; rotations are audited; an old data
dir's key file is imported so its tokens stay valid.
"""
import base64
import json
import os
import sqlite3
import subprocess
import time
import urllib.parse

from aptest import AP_BIN, Daemon, Runner, check
from test_api import Api, bootstrap
from test_decision import World, decision, wait_version

OVERLAP = 3  # seconds a replaced key still verifies (short, for the test)


def kid_of(url):
    """The key id (bytes 1-2) of the t= token of a tracking URL."""
    t = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["t"][0]
    b = base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    return (b[1] << 8) | b[2]


def path_of(url):
    u = urllib.parse.urlsplit(url)
    return u.path + "?" + u.query


def store_keys(data_dir):
    db = sqlite3.connect(os.path.join(data_dir, "adplatform.db"))
    try:
        return db.execute("SELECT id, created_at, key, retired_at FROM token_keys "
                          "ORDER BY id").fetchall()
    finally:
        db.close()


def main():
    T = Runner()
    D = Daemon("--threads", "2", "--geoip-db", "none", "--uap-regexes", "none",
               "--token-key-overlap", str(OVERLAP))
    boot = bootstrap(D)
    D.start()
    try:
        run(T, D, boot)
    finally:
        D.__exit__(None, None, None)
    imported(T)
    T.finish()


def run(T, D, boot):
    admin = Api(D, boot["api_key"])
    W = World(admin)
    top = W.pl_top["id"]
    camp = W.campaign(price_micros=1000000)
    W.ad(camp, W.html, landing_url="https://shop.example/l?cid={click_id}")
    body = {"placements": [{"id": top, "div": "top"}]}
    wait_version(D, lambda: (decision(D, body)[2].get("decisions") or {}).get("top") is not None)

    def served():
        for _ in range(100):
            st, _, b = decision(D, body)
            if st == 200 and b["decisions"]["top"]:
                return b["decisions"]["top"][0]
            time.sleep(0.05)
        raise AssertionError("no fill")

    def current_kid():
        items = admin.ok("GET", "/token-keys")["items"]
        cur = [k for k in items if k["current"]]
        check(len(cur) == 1 and cur[0]["id"] == items[0]["id"], items)
        return cur[0]["id"]

    def wait_signed_with(kid, timeout=3.0):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if kid_of(served()["impression_url"]) == kid:
                return time.time() - t0
            time.sleep(0.05)
        raise AssertionError("decisions not signed with key %d after %ss" % (kid, timeout))

    @T.case
    def first_start_creates_one_key_in_the_store():
        rows = store_keys(D.data_dir)
        check(len(rows) == 1 and rows[0][3] is None and len(rows[0][2]) == 32, rows)
        check(kid_of(served()["impression_url"]) == rows[0][0] == current_kid())

    @T.case
    def the_api_never_returns_key_bytes():
        st, _, raw = D.request("GET", "/api/v1/token-keys", admin=True,
                               headers={"Authorization": "Bearer " + boot["api_key"]})
        check(st == 200, st)
        text = raw.decode()
        for _, _, key, _ in store_keys(D.data_dir):
            for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
                         base64.urlsafe_b64encode(key).decode().rstrip("=")):
                check(form not in text, "key bytes in the answer")
        for k in json.loads(text)["items"]:
            check(set(k) == {"id", "created_at", "retired_at", "current"}, k)

    @T.case
    def non_admins_get_403():
        u = admin.ok("POST", "/users", {"email": "adv@example.com", "password": "a" * 12,
                                         "role": "advertiser", "advertiser_ids": [W.adv["id"]]})
        v = admin.ok("POST", "/users", {"email": "viewer@example.com", "password": "v" * 12,
                                         "role": "viewer"})
        for user in (u, v):
            c = admin.key_for(user["id"])
            st, _, b = c("GET", "/token-keys")
            check(st == 403, (st, b))
            st, _, b = c("POST", "/token-keys/rotate", {})
            check(st == 403, (st, b))
        check(len(store_keys(D.data_dir)) == 1, "rotated by a non-admin")
        st, _, _ = Api(D, None)("POST", "/token-keys/rotate", {})
        check(st == 401, st)

    @T.case
    def rotation_by_api_reaches_decisions_and_old_tokens_verify_for_the_overlap():
        old = served()
        old_kid = kid_of(old["impression_url"])
        st, h, _ = D.get(path_of(old["click_url"]))  # a click id signed with the old key
        check(st == 302, st)
        click_id = h["location"].rsplit("=", 1)[1]
        b = admin.ok("POST", "/token-keys/rotate", {})
        t_rot = time.time()
        check(b["id"] == old_kid + 1 and b["items"][0]["id"] == b["id"], b)
        check(b["items"][0]["current"] and b["items"][0]["retired_at"] is None, b)
        check(b["items"][1]["id"] == old_kid and not b["items"][1]["current"], b)
        check(isinstance(b["items"][1]["retired_at"], int), b)
        took = wait_signed_with(b["id"])
        print("      new key in decisions after %.2f s" % took)
        check(took < 1.5, took)
        # within the overlap: the old impression token still verifies
        check(time.time() - t_rot < OVERLAP - 0.5, "too slow to test the overlap")
        st, _, rb = D.get(path_of(old["impression_url"]))
        check(st == 200, (st, rb))
        # after the overlap: refused (forged: unknown/retired key), counted as rejected
        time.sleep(max(0.0, t_rot + OVERLAP + 1.5 - time.time()))
        st, _, rb = D.get(path_of(old["view_url"]))
        check(st == 400 and json.loads(rb)["error"]["code"] == "forged", (st, rb))
        # tokens signed with the new key verify
        new = served()
        check(D.get(path_of(new["impression_url"]))[0] == 200)
        # the click id (30-day conversion window) outlives the overlap
        st, _, rb = D.get("/v1/e/conv?click_id=%s&value=1" % click_id)
        check(st == 204, (st, rb))

    @T.case
    def rotations_are_audited():
        st, _, b = admin("GET", "/audit-log?resource=token_keys")
        check(st == 200, (st, b))
        rows = [r for r in b.get("data", b.get("items", [])) if r.get("resource") == "token_keys"]
        check(rows and rows[0]["action"] == "rotate", b)
        check("key" not in json.dumps(rows[0].get("after")).replace("current_key_id", ""), rows)

    @T.case
    def cli_rotation_reaches_the_running_daemon():
        before = current_kid()
        out = subprocess.run([AP_BIN, "keys", "rotate", "--data-dir", D.data_dir, "--json"],
                             capture_output=True, timeout=60)
        check(out.returncode == 0, out.stderr)
        kid = json.loads(out.stdout)["id"]
        check(kid == before + 1, (kid, before))
        took = wait_signed_with(kid)
        check(took < 1.5, took)
        out = subprocess.run([AP_BIN, "keys", "list", "--data-dir", D.data_dir],
                             capture_output=True, timeout=60)
        check(out.returncode == 0, out.stderr)
        check([k["id"] for k in json.loads(out.stdout)] == [kid, kid - 1, kid - 2], out.stdout)

    @T.case
    def restart_keeps_the_keys():
        before = store_keys(D.data_dir)
        kid = current_kid()
        a = served()
        rc = D.stop()
        check(rc == 0, "daemon exit code %s (sanitizer report?)\n%s" % (rc, D.logs()[-3000:]))
        D.log.close()
        os.unlink(D.port_file)
        D.start()
        check(store_keys(D.data_dir) == before, "keys changed by a restart")
        check(kid_of(served()["impression_url"]) == kid)
        check(D.get(path_of(a["impression_url"]))[0] == 200)  # signed before the restart


def imported(T):
    """An old data dir with only keys/token.key: imported, its tokens stay valid."""
    @T.case
    def an_existing_key_file_is_imported():
        D = Daemon("--threads", "1", "--geoip-db", "none", "--uap-regexes", "none")
        try:
            os.makedirs(os.path.join(D.data_dir, "keys"), mode=0o700)
            path = os.path.join(D.data_dir, "keys", "token.key")
            key = os.urandom(32)
            created = int(time.time()) - 100
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, ("7 %d %s\n" % (created, key.hex())).encode())
            os.close(fd)
            D.start()
            rows = store_keys(D.data_dir)
            check(rows == [(7, created, key, None)], rows)
            check(D.stop() == 0, D.logs()[-3000:])
        finally:
            D.__exit__(None, None, None)


if __name__ == "__main__":
    main()
