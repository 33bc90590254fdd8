"""docs/api/openapi.yaml against the running daemon: every documented path and method is routed
on the control plane (no "no such route" 404, no 405), including the routes src/app registers
itself; every $ref in the file resolves. tests/unit/test_ap_api_spec.c checks the other
direction (every route src/api registers is documented, every schema field too).
"""
import atexit
import os
import re

from aptest import SOURCE_DIR, Daemon, Runner, check
from test_api import bootstrap, http
from test_api_authz import spec_routes

SPEC = os.path.join(SOURCE_DIR, "docs", "api", "openapi.yaml")


def main():
    T = Runner()
    D = Daemon()
    bootstrap(D)
    D.start()
    atexit.register(D.__exit__, None, None, None)  # stop it even if setup fails

    @T.case
    def spec_header():
        text = open(SPEC).read()
        check(re.search(r"^openapi: 3\.0\.\d+$", text, re.M), "not an OpenAPI 3.0 document")
        for key in ("info:", "paths:", "components:"):
            check(re.search("^" + key, text, re.M), key)

    @T.case
    def every_ref_resolves():
        defined, section, cat = set(), None, None
        refs = []
        for line in open(SPEC):
            line = line.rstrip("\n")
            m = re.match(r"^(\S[^:]*):", line)
            if m:
                section = m.group(1)
                continue
            if section == "components":
                m = re.match(r"^  (\w+):\s*$", line)
                if m:
                    cat = m.group(1)
                    continue
                m = re.match(r"^    (\w+):\s*$", line)
                if m and cat:
                    defined.add("#/components/%s/%s" % (cat, m.group(1)))
            for ref in re.findall(r'\$ref: "([^"]+)"', line):
                refs.append(ref)
        check(refs, "no $ref found")
        missing = sorted(set(refs) - defined)
        check(not missing, "unresolved: %s" % missing)

    @T.case
    def every_documented_route_is_routed():
        routes = spec_routes()
        check(len(routes) > 40, routes)
        for path, method in routes:
            concrete = path.replace("{id}", "1").replace("{file}", "0" * 64 + ".png")
            st, _, body = http(D, method, concrete, body=b"{}" if method in ("POST", "PATCH")
                               else None, ctype="application/json")
            routed = not (st == 404 and isinstance(body, dict)
                          and body["error"]["message"] == "no such route")
            check(routed and st not in (405, 501), (method, path, st, body))

    @T.case
    def undocumented_paths_are_not_routed():
        for path in ("/api/v1", "/api/v1/", "/api/v1/no-such-resource", "/api/v1/campaigns/1/ads",
                     "/api/v2/campaigns", "/assets"):
            st, _, body = http(D, "GET", path)
            check(st == 404 and body["error"]["message"] == "no such route", (path, st, body))

    rc = D.stop()
    if rc != 0:
        T.failed += 1
        print("FAIL  daemon exit code %s" % rc)
    D.__exit__(None, None, None)
    T.finish()


if __name__ == "__main__":
    main()
