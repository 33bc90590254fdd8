"""Helpers for integration tests: start the real daemon on 127.0.0.1 with a temp data dir,
read its ports from --port-file, talk raw HTTP over sockets, stop it by PID.

Each test file is a script run by ctest; it prints one line per case and ends with
"N passed, M failed", exiting non-zero on any failure.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

AP_BIN = os.environ.get("AP_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "adplatform")
SOURCE_DIR = os.environ.get("AP_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


class Daemon:
    """A running `adplatform serve`. Use as a context manager."""

    def __init__(self, *args, data_dir=None, env=None, wait_ready=True):
        self.tmp = tempfile.mkdtemp(prefix="aptest.")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port_file = os.path.join(self.tmp, "ports.json")
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.wait_ready = wait_ready
        self.proc = None

    def start(self):
        cmd = [AP_BIN, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0",
               "--admin-listen", "127.0.0.1:0", "--port-file", self.port_file] + self.args
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    ports = json.load(f)
                self.port, self.admin_port = ports["listen"], ports["admin"]
                if not self.wait_ready or self.get("/readyz")[0] == 200:
                    return self
            time.sleep(0.02)
        raise RuntimeError("daemon did not start:\n" + self.logs())

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("daemon did not stop within %ss" % timeout)
        return self.proc.returncode if self.proc else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        try:
            self.stop()
        finally:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- HTTP helpers ------------------------------------------------------------
    def connect(self, admin=False, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.admin_port if admin else self.port),
                                     timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def get(self, path, admin=False, headers=None):
        return self.request("GET", path, admin=admin, headers=headers)

    def request(self, method, path, body=b"", admin=False, headers=None):
        s = self.connect(admin)
        try:
            h = {"Host": "test", "Connection": "close"}
            h.update(headers or {})
            if body or method in ("POST", "PUT", "PATCH"):
                h["Content-Length"] = str(len(body))
            req = "%s %s HTTP/1.1\r\n" % (method, path)
            req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
            s.sendall(req.encode() + body)
            r = Reader(s)
            return r.response(head=method == "HEAD")
        finally:
            s.close()


class Reader:
    """Reads HTTP/1.1 responses from a socket (Content-Length or close-delimited)."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self, head=False):
        """Returns (status, headers dict with lower-case names, body bytes)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        if head or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body
        while True:
            try:
                self._fill()
            except EOFError:
                break
        body, self.buf = self.buf, b""
        return status, headers, body

    def at_eof(self, timeout=5):
        """True if the peer closes cleanly (FIN) with no further bytes."""
        self.s.settimeout(timeout)
        if self.buf:
            return False
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return False


def raw(daemon, data, admin=False, timeout=5):
    """Sends raw bytes, returns everything received until the server closes (or timeout)."""
    s = daemon.connect(admin, timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


def status_of(resp_bytes):
    line = resp_bytes.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def case(self, fn):
        name = fn.__name__
        t0 = time.time()
        try:
            fn()
            self.passed += 1
            print("ok    %-50s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print("FAIL  %s" % name, flush=True)
            traceback.print_exc()
        return fn

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)
