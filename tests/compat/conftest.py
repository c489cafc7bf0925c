"""Fixtures for the client-compatibility suite.

Every test drives the simulator (`driftless sim --tls`) with UNMODIFIED clients: simple-salesforce
and salesforce-bulk, as installed from PyPI (requirements.txt). Nothing in the libraries is
patched. We only use what they support: constructor arguments (`instance_url`, `session_id`,
`version`, `host`, `proxies`, `scratch_url`) and the standard environment variables that
`requests` reads (`REQUESTS_CA_BUNDLE`, `HTTPS_PROXY`/`NO_PROXY`).

How login reaches the simulator
--------------------------------
simple-salesforce builds its login URLs from `domain` as `https://{domain}.salesforce.com/...`
(login.py: `token_login(f'https://{domain}.salesforce.com/services/oauth2/token', ...)`,
`soap_url = f'https://{domain}.salesforce.com/services/Soap/u/{sf_version}'`), so `domain` cannot
carry `127.0.0.1:PORT` (reference salesforce-api.md section 0: "requires a DNS override of
login.salesforce.com"). Instead of rewriting /etc/hosts and binding port 443 on a shared
machine, each simulator gets a tiny HTTP CONNECT proxy (`LoginProxy` below). It is the
per-process equivalent of that DNS override: the client still requests exactly
`https://login.salesforce.com/services/oauth2/token`, TLS is end-to-end between the client and
the simulator (the simulator is started with `--tls-san login.salesforce.com`, and its generated
CA is trusted through REQUESTS_CA_BUNDLE), and the proxy only decides where the TCP bytes go.
Clients are pointed at it with their own documented `proxies=` argument (simple-salesforce) or the
standard `HTTPS_PROXY` variable (salesforce-bulk, which calls `requests.post` without proxies).
"""

import json
import os
import select
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("DRIFTLESS_BIN") or str(REPO / "target" / "debug" / "driftless")
MAIN_DATASET = "Account=6000,Contact=500,Invoice__c=50"
MAIN_SEED = 7
LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
API_VERSION = "59.0"  # simple-salesforce's default

_WORK_DIR = tempfile.mkdtemp(prefix="driftless-compat-")
os.environ.pop("CURL_CA_BUNDLE", None)  # requests reads REQUESTS_CA_BUNDLE first; keep it unambiguous
for _k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_k, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


class LoginProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy: login.salesforce.com / test.salesforce.com go to the simulator,
    127.0.0.1 and localhost go where they were addressed; anything else is refused."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim_port):
        self.sim_port = sim_port
        self.tunnels = []  # (host, port) of every CONNECT, for assertions
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


class _ProxyHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) < 2 or parts[0].upper() != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = parts[1].rpartition(":")
        self.server.tunnels.append((host, int(port)))
        if host in LOGIN_HOSTS:
            target = ("127.0.0.1", self.server.sim_port)
        elif host in ("127.0.0.1", "localhost"):
            target = ("127.0.0.1", int(port))
        else:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        rest = head.split(b"\r\n\r\n", 1)[1]
        if rest:
            upstream.sendall(rest)
        socks = [conn, upstream]
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 120)
                if not readable:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is conn else conn).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class Sim:
    """One `driftless sim --tls` process and what its JSON line reported."""

    def __init__(self, dataset, seed=MAIN_SEED, extra_args=()):
        if not os.path.exists(BIN):
            pytest.exit(f"simulator binary {BIN} not found (run cargo build -p driftless)", 2)
        self.stderr_path = os.path.join(_WORK_DIR, f"sim-{time.time_ns()}.stderr")
        self._stderr = open(self.stderr_path, "wb")
        args = [BIN, "sim", "--tls", "--tls-san", "login.salesforce.com", "--tls-san", "test.salesforce.com",
                "--dataset", dataset, "--seed", str(seed), *extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL)
        line = self._read_line(timeout=60)
        try:
            self.info = json.loads(line)
        except ValueError:
            self.stop()
            pytest.fail(f"simulator printed a non-JSON first line: {line!r}")
        for key in ("instance_url", "login_url", "org_id", "username", "password", "client_id",
                    "client_secret", "refresh_token", "ca_cert"):
            assert key in self.info, f"simulator JSON line lacks {key!r}: {self.info}"
        assert self.info["ca_cert"], f"--tls must report ca_cert: {self.info}"
        self.ca_cert = self.info["ca_cert"]
        self.instance_url = self.info["instance_url"].rstrip("/")
        self.login_url = self.info["login_url"].rstrip("/")
        u = urlparse(self.instance_url)
        assert u.scheme == "https", f"--tls must report an https instance_url: {self.instance_url}"
        self.port = u.port
        self.host = f"{u.hostname}:{u.port}"  # what simple-salesforce calls sf_instance
        self.proxy = LoginProxy(self.port)

    def _read_line(self, timeout):
        out = {}

        def reader():
            out["line"] = self.proc.stdout.readline()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if "line" not in out or not out["line"]:
            self.stop()
            pytest.fail(f"simulator printed no JSON line within {timeout}s; stderr:\n{self.stderr_tail()}")
        return out["line"].decode()

    def stderr_tail(self, n=4000):
        try:
            return Path(self.stderr_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def trust(self):
        """Point requests (REQUESTS_CA_BUNDLE) at this simulator's CA; returns the previous value.
        Every simulator generates its own CA with the same subject name, so bundling several
        would make OpenSSL pick the wrong one: only one is trusted at a time."""
        previous = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca_cert
        return previous

    # --- the things tests need -----------------------------------------------------------------
    @property
    def login_proxies(self):
        """For simple-salesforce's `proxies=`: only the login hosts go through the proxy."""
        return {f"https://{h}": self.proxy.url for h in LOGIN_HOSTS}

    def control(self, method, path, **kw):
        r = requests.request(method, f"{self.instance_url}/_sim/{path}", timeout=30, **kw)
        assert r.status_code == 200, f"{method} /_sim/{path}: {r.status_code} {r.text}"
        return r.json()

    def set_faults(self, **faults):
        return self.control("POST", "faults", json=faults)

    def clear_faults(self):
        return self.control("DELETE", "faults")

    def stats(self):
        return self.control("GET", "stats")

    def token(self, **extra):
        """A password-grant OAuth token, fetched with plain requests (reference section 1.1)."""
        data = {"grant_type": "password", "client_id": self.info["client_id"],
                "client_secret": self.info["client_secret"], "username": self.info["username"],
                "password": self.info["password"]}
        data.update(extra)
        r = requests.post(f"{self.login_url}/services/oauth2/token", data=data, timeout=30)
        assert r.status_code == 200, f"POST /services/oauth2/token: {r.status_code} {r.text}"
        return r.json()

    def sf(self, version=API_VERSION):
        """A simple-salesforce client from the documented `instance_url` + `session_id` constructor."""
        from simple_salesforce import Salesforce

        tok = self.token()
        return Salesforce(instance_url=tok["instance_url"], session_id=tok["access_token"], version=version)

    def stop(self):
        if getattr(self, "proxy", None):
            self.proxy.stop()
            self.proxy = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()


@pytest.fixture(scope="session")
def sim():
    """The shared simulator: `--dataset Account=6000,Contact=500,Invoice__c=50 --seed 7`."""
    s = Sim(MAIN_DATASET, MAIN_SEED)
    s.trust()
    yield s
    s.stop()


@pytest.fixture
def fresh_sim():
    """A private simulator for tests that change global state (faults, quota)."""
    s = Sim("Account=30,Contact=10", seed=11)
    previous = s.trust()
    yield s
    s.stop()
    if previous is not None:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="session")
def sf(sim):
    return sim.sf()


@pytest.fixture(autouse=True)
def _no_faults_left(request):
    """Belt and braces: the shared simulator never keeps a fault after a test."""
    yield
    if "sim" in request.fixturenames:
        s = request.getfixturevalue("sim")
        try:
            requests.delete(f"{s.instance_url}/_sim/faults", timeout=10)
        except requests.RequestException:
            pass


# --- helpers ---------------------------------------------------------------------------------------

_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def id18(id15):
    """The 18-char form of a 15-char Salesforce id (reference section 6)."""
    assert len(id15) == 15
    suffix = ""
    for chunk in range(3):
        bits = 0
        for i, c in enumerate(id15[chunk * 5:chunk * 5 + 5]):
            if "A" <= c <= "Z":
                bits |= 1 << i
        suffix += _CHECKSUM[bits]
    return id15 + suffix


def is_sf_id(value, prefix=None):
    return (isinstance(value, str) and len(value) == 18 and value.isalnum()
            and id18(value[:15]) == value and (prefix is None or value.startswith(prefix)))


def unique(tag):
    return f"{tag}-{time.time_ns()}"
