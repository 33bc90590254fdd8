"""The bidder role: a test exchange streams OpenRTB bid requests to POST /openrtb2/bid on the real
daemon over keep-alive connections (4 in parallel) and checks every answer: a bid (200, our
creative, burl = our impression beacon, price from the campaign) when the imp names our
placement and the floor allows it, 204 otherwise, 400 for a broken request, always within tmax.
"""
import json
import socket
import threading
import time

from aptest import Daemon, Reader, Runner, check
from test_api import Api, bootstrap
from test_decision import World, wait_version

N_PER_CONN = 150
CONNS = 4


def bid_request(i, placement):
    kind = i % 5
    imp = {"id": "imp%d" % i, "banner": {"format": [{"w": 300, "h": 250}]}, "tagid": str(placement)}
    if kind == 1:
        imp["bidfloor"] = 9.0  # above the campaign's price: no bid
    elif kind == 2:
        imp["tagid"] = "999999"  # not our placement: no bid
    elif kind == 3:
        imp["banner"] = {"w": 728, "h": 90}  # size we do not have
    req = {"id": "ex-%d" % i, "imp": [imp], "tmax": 150,
           "site": {"id": "s1", "page": "https://news.example.com/p%d" % i},
           "device": {"ua": "Mozilla/5.0", "ip": "198.51.100.%d" % (i % 250 + 1)},
           "user": {"buyeruid": "u%d" % (i % 17)}}
    return req, kind in (0, 4)


def stream(d, placement, start, results):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    r = Reader(s)
    try:
        for k in range(N_PER_CONN):
            i = start + k
            if i % 50 == 49:
                body, want = b'{"id":', None  # broken JSON
            else:
                req, want = bid_request(i, placement)
                body = json.dumps(req).encode()
            head = ("POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\n\r\n" % len(body)).encode()
            t0 = time.time()
            s.sendall(head + body)
            st, h, b = r.response()
            results.append((i, want, st, b, (time.time() - t0) * 1000))
    finally:
        s.close()


def main():
    T = Runner()
    D = Daemon("--threads", "2")
    boot = bootstrap(D)
    D.start()
    try:
        api = Api(D, boot["api_key"])
        W = World(api)
        camp = W.campaign(price_micros=2500000)
        W.ad(camp, W.img)
        top = W.pl_top["id"]

        def bids_now():
            req, _ = bid_request(0, top)
            st, _, _ = D.request("POST", "/openrtb2/bid", json.dumps(req).encode(),
                                 headers={"Content-Type": "application/json"})
            return st == 200

        wait_version(D, bids_now)

        @T.case
        def stream_of_bid_requests():
            results = []
            threads = [threading.Thread(target=stream, args=(D, top, c * N_PER_CONN, results))
                       for c in range(CONNS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(len(results) == CONNS * N_PER_CONN, len(results))
            nbid = 0
            for i, want, st, b, ms in results:
                check(ms < 150, ("over tmax", i, ms))
                if want is None:
                    check(st == 400 and b.startswith(b"Invalid request: "), (i, st, b))
                elif want:
                    check(st == 200, (i, st, b))
                    resp = json.loads(b)
                    check(resp["id"] == "ex-%d" % i, resp)
                    bid = resp["seatbid"][0]["bid"][0]
                    check(bid["impid"] == "imp%d" % i and abs(bid["price"] - 2.5) < 1e-9, bid)
                    check(bid["burl"].startswith("http://127.0.0.1:%d/v1/e/imp?t=" % D.port), bid)
                    check("/assets/" in bid["adm"] and bid["w"] == 300, bid)
                    nbid += 1
                else:
                    check(st == 204 and b == b"", (i, st, b))
            check(nbid > 200, nbid)
            # every bid carries its own impression token
            burls = set()
            for i, want, st, b, ms in results:
                if want and st == 200:
                    burls.add(json.loads(b)["seatbid"][0]["bid"][0]["burl"])
            check(len(burls) == nbid, (len(burls), nbid))

        @T.case
        def metrics_count_bid_requests():
            st, _, body = D.request("GET", "/metrics", admin=True)
            line = [l for l in body.decode().splitlines()
                    if l.startswith("ap_rtb_bidder_requests_total")][0]
            check(int(line.split()[-1]) >= CONNS * N_PER_CONN, line)
    finally:
        D.__exit__(None, None, None)
    T.finish()


if __name__ == "__main__":
    main()
