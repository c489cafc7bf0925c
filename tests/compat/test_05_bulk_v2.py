"""9. Bulk API 2.0 query jobs through simple-salesforce's sf.bulk2 (reference salesforce-api.md section 4)."""

import csv
import io
import os
import time

import requests

from conftest import API_VERSION, is_sf_id


def rows_of(csv_text):
    return list(csv.DictReader(io.StringIO(csv_text)))


def test_bulk2_query_pages_all_rows_once(sf):
    total = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    pages = list(sf.bulk2.Account.query("SELECT Id, Name, Description FROM Account", max_records=2500, wait=1))
    assert len(pages) >= 3, f"{total} rows in pages of 2500 need at least 3 pages, got {len(pages)}"
    ids = []
    for page in pages:
        rows = rows_of(page)
        assert 0 < len(rows) <= 2500
        ids.extend(r["Id"] for r in rows)
    assert len(ids) == total == len(set(ids)), (len(ids), total)
    assert all(is_sf_id(i, "001") for i in ids[:50])


def test_bulk2_download(sf, tmp_path):
    total = sf.query("SELECT COUNT() FROM Contact")["totalSize"]
    results = sf.bulk2.Contact.download("SELECT Id, LastName, AccountId FROM Contact", path=str(tmp_path),
                                        max_records=200, wait=1)
    assert sum(r["number_of_records"] for r in results) == total
    assert results[-1]["locator"] == ""  # simple-salesforce maps the literal 'null' to ''
    ids = []
    for r in results:
        with open(r["file"], newline="", encoding="utf-8") as f:
            page = list(csv.DictReader(f))
        assert len(page) == r["number_of_records"]
        ids.extend(x["Id"] for x in page)
        os.unlink(r["file"])
    assert len(ids) == total == len(set(ids))


def test_bulk2_query_all_includes_deleted(sf):
    victim = sf.Account.create({"Name": "bulk2 victim"})["id"]
    sf.Account.delete(victim)
    text = "".join(sf.bulk2.Account.query_all(f"SELECT Id, IsDeleted FROM Account WHERE Id = '{victim}'", wait=1))
    assert rows_of(text) == [{"Id": victim, "IsDeleted": "true"}]
    text = "".join(sf.bulk2.Account.query(f"SELECT Id FROM Account WHERE Id = '{victim}'", wait=1))
    assert rows_of(text) == []


def test_bulk2_wire_format(sim, sf):
    """Headers and CSV shape that simple-salesforce, jsforce and airbyte depend on (section 4)."""
    base = f"{sim.instance_url}/services/data/v{API_VERSION}/jobs/query"
    h = {"Authorization": f"Bearer {sf.session_id}", "Content-Type": "application/json"}
    r = requests.post(base, headers={**h, "Accept": "text/csv"}, timeout=30,
                      json={"operation": "query", "query": "SELECT Id, Name FROM Account ORDER BY Id LIMIT 3"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json"), "create is always answered in JSON"
    job = r.json()
    assert is_sf_id(job["id"], "750") and job["object"] == "Account" and job["operation"] == "query"
    assert job["state"] in ("UploadComplete", "InProgress", "JobComplete")
    deadline = time.time() + 30
    while True:
        info = requests.get(f"{base}/{job['id']}", headers=h, timeout=30).json()
        if info["state"] not in ("UploadComplete", "InProgress") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert info["state"] == "JobComplete" and info["numberRecordsProcessed"] == 3 and info["jobType"] == "V2Query"
    res = requests.get(f"{base}/{job['id']}/results", headers=h, timeout=30)
    assert res.status_code == 200
    assert res.headers["Content-Type"].startswith("text/csv")
    assert res.headers["Sforce-NumberOfRecords"] == "3"
    assert res.headers["Sforce-Locator"] == "null"
    lines = res.text.split("\n")
    assert lines[0] == '"Id","Name"' and all(line.startswith('"') for line in lines[1:4])
    other = requests.get(f"{sim.instance_url}/services/data/v58.0/jobs/query/{job['id']}/results", headers=h, timeout=30)
    assert other.status_code == 409, "results with another API version than create (section 4)"
    d = requests.delete(f"{base}/{job['id']}", headers=h, timeout=30)
    assert d.status_code == 204
