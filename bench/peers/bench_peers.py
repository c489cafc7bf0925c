"""The peer benchmark's harness (run through bench_peers.sh, which installs the peers).

Peers hard-code https://login.salesforce.com for their token call; they are reached without
patching them the way tests/compat reaches simple-salesforce: the simulator serves TLS with
login.salesforce.com among its certificate names, its CA is trusted through REQUESTS_CA_BUNDLE,
and HTTPS_PROXY points at a CONNECT proxy here that sends the login hosts to the simulator. The
data calls go to the instance_url the token response names (127.0.0.1, NO_PROXY)."""

import argparse
import json
import os
import select
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


class _Tunnel(socketserver.BaseRequestHandler):
    def handle(self):
        conn, head = self.request, b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
        host, _, port = head.split(b"\r\n", 1)[0].decode().split()[1].rpartition(":")
        if host.endswith(".salesforce.com"):
            target = ("127.0.0.1", self.server.sim_port)
        elif host in ("127.0.0.1", "localhost"):
            target = (host, int(port))
        else:
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        up = socket.create_connection(target)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [conn, up]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 600)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is conn else conn).sendall(data)
        finally:
            up.close()


class LoginProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, sim_port):
        self.sim_port = sim_port
        super().__init__(("127.0.0.1", 0), _Tunnel)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def createdb(name):
    c = psycopg2.connect(ADMIN_DSN)
    c.autocommit = True
    c.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    c.cursor().execute(f'CREATE DATABASE "{name}"')
    c.close()
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def dropdb(name):
    c = psycopg2.connect(ADMIN_DSN)
    c.autocommit = True
    c.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    c.close()


def count(db, table):
    try:
        c = psycopg2.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={db}")
        cur = c.cursor()
        cur.execute(f"SELECT count(*) FROM {table}")
        n = cur.fetchone()[0]
        c.close()
        return n
    except psycopg2.Error:
        return 0


def account_fields(info):
    """Every Account field the peers extract too (compound fields excluded, as they do for Bulk)."""
    import urllib.request
    import ssl
    ctx = ssl.create_default_context(cafile=info["ca_cert"])
    data = ("grant_type=password&client_id=driftless-sim&client_secret=driftless-sim-secret"
            "&username=admin%40driftless.sim&password=driftless").encode()
    tok = json.load(urllib.request.urlopen(f"{info['login_url']}/services/oauth2/token", data, context=ctx))
    req = urllib.request.Request(f"{info['instance_url']}/services/data/v62.0/sobjects/Account/describe",
                                 headers={"Authorization": f"Bearer {tok['access_token']}"})
    d = json.load(urllib.request.urlopen(req, context=ctx))
    return [f["name"] for f in d["fields"] if f["type"] not in ("address", "location", "base64")]


def run_driftless(args, info, work, n):
    db = "bench_peers_driftless"
    url = createdb(db)
    fields = {f: {} for f in account_fields(info)}
    with open(os.path.join(work, "mappings.json"), "w") as f:
        json.dump({"mappings": [{"object_name": "Account", "config": {
            "access": "read_only", "sf_polling_seconds": 600, "sf_notify_enabled": False, "fields": fields,
            "indexes": {"Id": {"unique": True}, "SystemModstamp": {"unique": False}}}}], "version": 1}, f)
    with open(os.path.join(work, "driftless.toml"), "w") as f:
        f.write(f"""[coordinator]
listen = "127.0.0.1:0"
admin_token = "bench"

[[connection]]
name = "bench"
database_url = "{url}"
db_pool_size = 4
mappings = "mappings.json"

[connection.salesforce]
login_url = "{info['login_url']}"
auth = "password"
username = "{info['username']}"
password = "{info['password']}"
client_id = "{info['client_id']}"
client_secret = "{info['client_secret']}"
ca_cert = "{info['ca_cert']}"
""")
    log = open(os.path.join(work, "driftless.log"), "wb")
    began = time.monotonic()
    proc = subprocess.Popen([args.bin, "run", "--config", os.path.join(work, "driftless.toml")],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        while count(db, "salesforce.account") < n:
            if proc.poll() is not None:
                sys.exit(f"driftless run exited {proc.returncode}; see {log.name}")
            time.sleep(0.1)
        secs = time.monotonic() - began
        rows = count(db, "salesforce.account")
    finally:
        proc.terminate()
        proc.wait(30)
        dropdb(db)
    return rows, secs


def peer_env(info, proxy):
    env = dict(os.environ)
    env.update({"HTTPS_PROXY": f"http://127.0.0.1:{proxy.server_address[1]}",
                "REQUESTS_CA_BUNDLE": info["ca_cert"], "NO_PROXY": "127.0.0.1,localhost"})
    return env


def run_airbyte(args, info, proxy, work):
    exe = os.path.join(args.venvs, "airbyte", "bin", "source-salesforce")
    cfg = os.path.join(work, "airbyte.json")
    with open(cfg, "w") as f:
        json.dump({"client_id": info["client_id"], "client_secret": info["client_secret"],
                   "refresh_token": info["refresh_token"], "start_date": "2000-01-01T00:00:00Z",
                   "is_sandbox": False, "auth_type": "Client",
                   "streams_criteria": [{"criteria": "exacts", "value": "Account"}]}, f)
    env = peer_env(info, proxy)
    began = time.monotonic()
    out = subprocess.run([exe, "discover", "--config", cfg], env=env, capture_output=True, text=True, check=True)
    catalog = next(json.loads(l)["catalog"] for l in out.stdout.splitlines() if '"CATALOG"' in l)
    account = next(s for s in catalog["streams"] if s["name"] == "Account")
    configured = os.path.join(work, "airbyte_catalog.json")
    with open(configured, "w") as f:
        json.dump({"streams": [{"stream": account, "sync_mode": "full_refresh",
                                "destination_sync_mode": "overwrite"}]}, f)
    proc = subprocess.Popen([exe, "read", "--config", cfg, "--catalog", configured], env=env,
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "airbyte.err"), "wb"))
    ids = set()
    for line in proc.stdout:
        if line.startswith(b'{"type":"RECORD"'):
            ids.add(json.loads(line)["record"]["data"]["Id"])
    proc.wait()
    return len(ids), time.monotonic() - began


def run_singer(args, info, proxy, work):
    tap = os.path.join(args.venvs, "singer", "bin", "tap-salesforce")
    target = os.path.join(args.venvs, "target", "bin", "target-postgres")
    db = "bench_peers_singer"
    createdb(db)
    cfg = os.path.join(work, "singer.json")
    with open(cfg, "w") as f:
        json.dump({"refresh_token": info["refresh_token"], "client_id": info["client_id"],
                   "client_secret": info["client_secret"], "start_date": "2000-01-01T00:00:00Z",
                   "api_type": "BULK", "select_fields_by_default": True, "is_sandbox": False}, f)
    tcfg = os.path.join(work, "target.json")
    with open(tcfg, "w") as f:
        json.dump({"host": "127.0.0.1", "port": 5432, "user": "postgres",
                   # target-postgres refuses an empty password; the local server trusts anyway.
                   "password": "unused", "dbname": db,
                   "default_target_schema": "singer"}, f)
    env = peer_env(info, proxy)
    began = time.monotonic()
    out = subprocess.run([tap, "--config", cfg, "--discover"], env=env, capture_output=True, text=True, check=True)
    catalog = json.loads(out.stdout)
    catalog["streams"] = [s for s in catalog["streams"] if s["stream"] == "Account"]
    for s in catalog["streams"]:
        for m in s["metadata"]:
            if m["breadcrumb"] == []:
                m["metadata"]["selected"] = True
    props = os.path.join(work, "singer_properties.json")
    with open(props, "w") as f:
        json.dump(catalog, f)
    err = open(os.path.join(work, "singer.err"), "wb")
    tap_p = subprocess.Popen([tap, "--config", cfg, "--properties", props], env=env,
                             stdout=subprocess.PIPE, stderr=err)
    target_p = subprocess.Popen([target, "--config", tcfg], stdin=tap_p.stdout,
                                stdout=subprocess.DEVNULL, stderr=err)
    tap_p.stdout.close()
    tap_p.wait()
    target_p.wait()
    secs = time.monotonic() - began
    rows = count(db, "singer.account")
    dropdb(db)
    if tap_p.returncode or target_p.returncode:
        print(f"singer: tap exited {tap_p.returncode}, target {target_p.returncode}; see {err.name}",
              file=sys.stderr)
    return rows, secs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--venvs", required=True)
    p.add_argument("--accounts", type=int, default=100000)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="bench-peers-")
    sim = subprocess.Popen([args.bin, "sim", "--tls", "--tls-san", "login.salesforce.com", "--tls-san",
                            "test.salesforce.com", "--dataset", f"Account={args.accounts}", "--seed", "7"],
                           stdout=subprocess.PIPE, stderr=open(os.path.join(work, "sim.err"), "wb"))
    info = json.loads(sim.stdout.readline())
    proxy = LoginProxy(int(info["instance_url"].rsplit(":", 1)[1]))
    results = []
    try:
        for name, fn in [("driftless (load into Postgres, end to end)", lambda: run_driftless(args, info, work, args.accounts)),
                         ("airbyte source-salesforce 2.10.3 (extract only)", lambda: run_airbyte(args, info, proxy, work)),
                         ("singer tap-salesforce 2.8.1 | target-postgres 2.1.2", lambda: run_singer(args, info, proxy, work))]:
            rows, secs = fn()
            results.append((name, rows, secs))
            print(f"{name}: {rows} records in {secs:.1f} s = {rows / secs:,.0f} rows/s", flush=True)
    finally:
        proxy.shutdown()
        sim.terminate()
        sim.wait(30)
    d_rate = results[0][1] / results[0][2]
    print(f"\n{'tool':<55} {'records':>9} {'seconds':>8} {'rows/s':>10} {'driftless x':>12}")
    for name, rows, secs in results:
        rate = rows / secs
        ratio = f"{d_rate / rate:>12.1f}" if rate else f"{'-':>12}"
        print(f"{name:<55} {rows:>9} {secs:>8.1f} {rate:>10,.0f} {ratio}")
    print(f"(work files in {work}; every peer must report all {args.accounts} records)")
    if any(rows != args.accounts for _, rows, _ in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
