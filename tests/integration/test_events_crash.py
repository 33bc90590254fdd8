"""Crash test of the event log: while ~20,000 impression beacons/s run against the daemon
(tests/tools/ap_evload, a C load generator signing tokens with the daemon's key file), kill -9
the daemon and restart it, 20 times. Then every beacon answered 2xx must be in the log (at
least once: counting once is the aggregator's job) and no event that was never sent may be
there; the log must read back without a corrupt frame (torn tails were cut at start-up).
"""
import json
import os
import random
import signal
import socket
import subprocess
import time

from aptest import AP_BIN, Daemon, Runner, check

LOADER = os.environ.get("AP_EVLOAD") or os.path.join(os.path.dirname(os.path.abspath(AP_BIN)),
                                                     "tests", "ap_evload")
KILLS = int(os.environ.get("AP_CRASH_KILLS", "20"))
RATE = int(os.environ.get("AP_CRASH_RATE", "20000"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    T = Runner()
    port = free_port()
    D = Daemon("--listen", "127.0.0.1:%d" % port, "--threads", "2", "--geoip-db", "none",
               "--uap-regexes", "none", "--drain-timeout-ms", "2000")
    D.start()
    state = os.path.join(D.tmp, "loader.state")
    loader = None
    try:
        @T.case
        def kill9_under_load_loses_no_acknowledged_beacon():
            nonlocal loader
            loader = subprocess.Popen(
                [LOADER, "load", "--port", str(port), "--keys",
                 os.path.join(D.data_dir, "keys", "token.key"), "--rate", str(RATE),
                 "--conns", "64", "--depth", "4", "--state", state],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            rnd = random.Random(5)
            t0 = time.time()
            torn = 0
            for i in range(KILLS):
                time.sleep(rnd.uniform(0.3, 0.9))
                check(loader.poll() is None, "the loader died")
                D.proc.send_signal(signal.SIGKILL)
                D.proc.wait()
                D.log.close()
                os.unlink(D.port_file)
                torn += D.logs().count("torn or corrupt tail")
                D.start()
            time.sleep(0.5)
            loader.send_signal(signal.SIGTERM)
            out, err = loader.communicate(timeout=30)
            check(loader.returncode == 0, err)
            load = json.loads(out)
            elapsed = time.time() - t0
            print("load: %s (%d kills in %.1fs)" % (json.dumps(load), KILLS, elapsed))
            check(load["acked"] > RATE * elapsed * 0.2,
                  "too few beacons acknowledged for the test to mean much: %r" % load)
            D.stop()  # a clean stop syncs the rest
            v = subprocess.run([LOADER, "verify", "--dir", os.path.join(D.data_dir, "events"),
                                "--state", state], capture_output=True, timeout=120)
            print("verify: %s %s" % (v.stdout.decode().strip(), v.stderr.decode()[-3000:]))
            res = json.loads(v.stdout)
            check(res["read_rc"] == 0, "the log has a corrupt frame: %r" % res)
            check(res["missing"] == 0, "acknowledged beacons missing from the log: %r" % res)
            check(res["invented"] == 0, "events in the log that were never sent: %r" % res)
            check(res["acked"] == load["acked"], (res, load))
            check(v.returncode == 0, v.stderr)
            torn += D.logs().count("torn or corrupt tail")
            print("torn tails cut at start-up: %d of %d restarts" % (torn, KILLS))
    finally:
        if loader and loader.poll() is None:
            loader.kill()
            loader.wait()
        D.__exit__(None, None, None)
    T.finish()


if __name__ == "__main__":
    main()
