"""Header names as Salesforce spells them, and writes that answer at commit (SPEC section 2).

A client that looks headers up case-sensitively (a plain dict of what came off the wire) must find
`Sforce-Locator`, `Sforce-NumberOfRecords`, `Content-Type` and `Sforce-Limit-Info`; and a record
created by simple-salesforce with a delayed commit is readable the moment `create` returns."""

import threading
import time

import requests

from conftest import API_VERSION, is_sf_id, unique


def wire_names(r):
    """Header names exactly as sent: urllib3 keeps the case of what it parsed."""
    return dict(r.raw.headers.items())


def test_header_names_in_salesforce_casing(sim, sf):
    h = {"Authorization": f"Bearer {sf.session_id}"}
    base = f"{sim.instance_url}/services/data/v{API_VERSION}"
    r = requests.get(f"{base}/query", params={"q": "SELECT Id FROM Account LIMIT 2"}, headers=h, timeout=30)
    names = wire_names(r)
    assert "Content-Type" in names and "Sforce-Limit-Info" in names, list(names)

    job = requests.post(f"{base}/jobs/query", headers=h, timeout=30,
                        json={"operation": "query", "query": "SELECT Id FROM Account"}).json()
    deadline = time.time() + 60
    while requests.get(f"{base}/jobs/query/{job['id']}", headers=h, timeout=30).json()["state"] != "JobComplete":
        assert time.time() < deadline, "bulk 2.0 job did not complete"
        time.sleep(0.2)
    page = requests.get(f"{base}/jobs/query/{job['id']}/results", params={"maxRecords": 1000},
                        headers=h, timeout=30)
    names = wire_names(page)
    assert names["Sforce-NumberOfRecords"] == "1000", list(names)
    assert names["Sforce-Locator"] not in ("", "null"), list(names)
    assert names["Content-Type"].startswith("text/csv"), list(names)

    token = requests.post(f"{sim.login_url}/services/oauth2/token", timeout=30, data={
        "grant_type": "password", "client_id": sim.info["client_id"],
        "client_secret": sim.info["client_secret"], "username": sim.info["username"],
        "password": sim.info["password"]})
    assert "Content-Type" in wire_names(token), list(wire_names(token))


def test_read_your_own_write_after_a_delayed_commit(sim, sf):
    name = unique("at-commit")
    soql = f"SELECT Id FROM Account WHERE Name = '{name}'"
    seen_meanwhile = []
    done = threading.Event()

    def watch():
        other = sim.sf()
        while not done.is_set():
            n = other.query(soql)["totalSize"]
            seen_meanwhile.append((time.monotonic(), n))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.monotonic()
    created = sf.Account.create({"Name": name}, headers={"X-Sim-Commit-Delay-Ms": "2000"})
    waited = time.monotonic() - began
    done.set()
    watcher.join(30)
    assert is_sf_id(created["id"], "001"), created
    assert waited >= 2.0, f"create returned after {waited:.2f}s, before its commit"
    # Right after the response, simple-salesforce reads the record it wrote.
    assert sf.Account.get(created["id"])["Name"] == name
    assert sf.query(soql)["totalSize"] == 1
    # Queries ran while the create waited (nothing queued behind it) and saw nothing before
    # the commit, which comes 2 s after the create began: every query answered well before
    # then saw 0 records. (Queries answered after the commit may see it, however many ran
    # before the client got its response.)
    before_commit = [n for (at, n) in seen_meanwhile if at < began + 1.8]
    assert len(before_commit) >= 2, seen_meanwhile
    assert all(n == 0 for n in before_commit), seen_meanwhile
