"""8. Bulk API 1.0 query jobs through salesforce-bulk (and simple-salesforce's sf.bulk)
(reference salesforce-api.md sections 3 and 8).

salesforce-bulk is used exactly as its README shows: `SalesforceBulk(sessionId=..., host=...)`,
`create_query_job`, `query`, `close_job`, `is_batch_done`, `get_all_results_for_query_batch` and
`unicodecsv.DictReader` / `json.load(IteratorBytesIO(...))`.
"""

import json
import re
import time

import pytest
import unicodecsv
from salesforce_bulk import SalesforceBulk
from salesforce_bulk.util import IteratorBytesIO

from conftest import is_sf_id, unique

TRICKY_NAME = 'He said "hi", then left; Smith, Jones & Co — Zürich 東京'
TRICKY_DESC = 'line one\nline "two", with a comma\nline three\n\n"quoted line" ends'


@pytest.fixture(scope="module")
def tricky(sf):
    """An Account whose text needs CSV quoting: quotes, commas, newlines, CRLF, unicode."""
    rec = sf.Account.create({"Name": TRICKY_NAME, "Description": TRICKY_DESC})
    return rec["id"]


@pytest.fixture(scope="module")
def bulk(sim, sf):
    return SalesforceBulk(sessionId=sf.session_id, host=sim.instance_url)


def wait_done(bulk, job, batch, timeout=60):
    deadline = time.time() + timeout
    while not bulk.is_batch_done(batch, job):
        assert time.time() < deadline, f"batch {batch} not done after {timeout}s: {bulk.batch_status(batch, job)}"
        time.sleep(0.3)


def rest_count(sf, obj, include_deleted=False):
    return sf.query(f"SELECT COUNT() FROM {obj}", include_deleted=include_deleted)["totalSize"]


def test_endpoint_from_host(sim, sf):
    b = SalesforceBulk(sessionId=sf.session_id, host=sim.instance_url)
    assert b.endpoint == f"{sim.instance_url}/services/async/40.0"
    b = SalesforceBulk(sessionId=sf.session_id, host=sim.host)  # no scheme: https:// is prepended
    assert b.endpoint == f"https://{sim.host}/services/async/40.0"
    job = b.create_query_job("Account", contentType="CSV")
    assert is_sf_id(job, "750")
    b.close_job(job)
    assert b.job_state(job) == "Closed"


def test_csv_query_job(sf, bulk, tricky):
    total = rest_count(sf, "Account")
    job = bulk.create_query_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Id, Name, Description, AnnualRevenue, SystemModstamp FROM Account")
    assert is_sf_id(batch, "751")
    bulk.close_job(job)
    wait_done(bulk, job, batch)
    rows = []
    for result in bulk.get_all_results_for_query_batch(batch, job):
        reader = unicodecsv.DictReader(result, encoding="utf-8")
        assert reader.fieldnames == ["Id", "Name", "Description", "AnnualRevenue", "SystemModstamp"]
        rows.extend(reader)
    ids = [r["Id"] for r in rows]
    assert len(ids) == total == len(set(ids)), (len(ids), total)
    by_id = {r["Id"]: r for r in rows}
    assert by_id[tricky]["Name"] == TRICKY_NAME
    assert by_id[tricky]["Description"] == TRICKY_DESC
    assert by_id[tricky]["AnnualRevenue"] == "", "Bulk CSV nulls are empty fields (section 3.4)"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", by_id[tricky]["SystemModstamp"]), by_id[tricky]
    # Compare a slice with REST, value by value.
    rest = {r["Id"]: r for r in sf.query("SELECT Id, Name, Description FROM Account ORDER BY Id LIMIT 300")["records"]}
    for rid, r in rest.items():
        assert by_id[rid]["Name"] == r["Name"]
        assert by_id[rid]["Description"] == (r["Description"] or "")


def test_csv_header_is_quoted(sf, bulk):
    job = bulk.create_query_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Id, Name FROM Account LIMIT 3")
    bulk.close_job(job)
    wait_done(bulk, job, batch)
    [result_id] = bulk.get_query_batch_result_ids(batch, job)
    raw = bulk.get_query_batch_results(batch, result_id, job).read().decode()
    assert raw.startswith('"Id","Name"'), raw[:80]


def test_json_query_job(sf, bulk, tricky):
    total = rest_count(sf, "Account")
    job = bulk.create_query_job("Account", contentType="JSON")
    batch = bulk.query(job, "SELECT Id, Name, Description, SystemModstamp, NumberOfEmployees FROM Account")
    bulk.close_job(job)
    wait_done(bulk, job, batch)
    assert bulk.batch_status(batch, job)["state"] == "Completed"
    records = []
    for result in bulk.get_all_results_for_query_batch(batch, job):
        records.extend(json.load(IteratorBytesIO(result)))
    ids = [r["Id"] for r in records]
    assert len(ids) == total == len(set(ids))
    by_id = {r["Id"]: r for r in records}
    t = by_id[tricky]
    assert t["Name"] == TRICKY_NAME and t["Description"] == TRICKY_DESC
    assert t["attributes"]["type"] == "Account"
    assert isinstance(t["SystemModstamp"], int), "JSON Bulk datetimes are epoch-ms integers (section 3.4)"
    assert t["SystemModstamp"] % 1000 == 0
    assert t.get("NumberOfEmployees") is None


def test_queryall_job_sees_deleted(sf, bulk):
    victim = sf.Account.create({"Name": unique("bulk-victim")})["id"]
    sf.Account.delete(victim)
    job = bulk.create_queryall_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Id, IsDeleted FROM Account")
    bulk.close_job(job)
    wait_done(bulk, job, batch)
    rows = [r for res in bulk.get_all_results_for_query_batch(batch, job) for r in unicodecsv.DictReader(res, encoding="utf-8")]
    by_id = {r["Id"]: r for r in rows}
    assert by_id[victim]["IsDeleted"] == "true"
    assert len(rows) == rest_count(sf, "Account", include_deleted=True)


def test_pk_chunking(sf, bulk):
    total = rest_count(sf, "Account")
    job = bulk.create_query_job("Account", contentType="CSV", pk_chunking=2000)  # 'chunkSize=2000;'
    original = bulk.query(job, "SELECT Id FROM Account")
    deadline = time.time() + 60
    while True:
        batches = bulk.get_batch_list(job)
        states = {b["id"]: b["state"] for b in batches}
        chunks = [b for b in batches if b["id"] != original]
        if states.get(original) == "NotProcessed" and chunks and all(b["state"] == "Completed" for b in chunks):
            break
        assert "Failed" not in states.values(), batches
        assert time.time() < deadline, batches
        time.sleep(0.3)
    bulk.close_job(job)
    assert len(chunks) >= 3, f"6000+ accounts in chunks of 2000 need at least 3 batches, got {len(chunks)}"
    ids = []
    for b in chunks:
        for res in bulk.get_all_results_for_query_batch(b["id"], job):
            ids.extend(r["Id"] for r in unicodecsv.DictReader(res, encoding="utf-8"))
    assert len(ids) == total == len(set(ids))


def test_invalid_session_error_shape(sim):
    b = SalesforceBulk(sessionId="00Dbogus!nope", host=sim.instance_url)
    from salesforce_bulk.salesforce_bulk import BulkApiError
    with pytest.raises(BulkApiError) as e:
        b.create_query_job("Account", contentType="CSV")
    assert e.value.status_code == 400
    assert "<exceptionCode>InvalidSessionId</exceptionCode>" in str(e.value)


def test_salesforce_bulk_soap_login(sim, monkeypatch):
    """SalesforceBulk(username, password, security_token) logs in via simple-salesforce's SOAP
    login at https://login.salesforce.com (no proxies argument: routed with HTTPS_PROXY)."""
    monkeypatch.setenv("HTTPS_PROXY", sim.proxy.url)
    b = SalesforceBulk(username=sim.info["username"], password=sim.info["password"], security_token="")
    monkeypatch.delenv("HTTPS_PROXY")
    assert b.endpoint == f"https://{sim.host}/services/async/40.0"
    job = b.create_query_job("Contact", contentType="CSV")
    batch = b.query(job, "SELECT Id FROM Contact")
    b.close_job(job)
    wait_done(b, job, batch)
    rows = [r for res in b.get_all_results_for_query_batch(batch, job) for r in unicodecsv.DictReader(res, encoding="utf-8")]
    assert len(rows) >= 500


def test_simple_salesforce_bulk_v1_query(sf):
    """sf.bulk.Account.query: JSON job, integer concurrencyMode, JSON batch/result lists (section 3.1)."""
    total = rest_count(sf, "Account")
    rows = sf.bulk.Account.query("SELECT Id, Name, SystemModstamp FROM Account", wait=1)
    ids = [r["Id"] for r in rows]
    assert len(ids) == total == len(set(ids))
    assert isinstance(rows[0]["SystemModstamp"], int)
    victim = sf.Account.create({"Name": unique("bulk1-ss-victim")})["id"]
    sf.Account.delete(victim)
    deleted = sf.bulk.Account.query_all("SELECT Id, IsDeleted FROM Account WHERE IsDeleted = true", wait=1)
    assert victim in {r["Id"] for r in deleted} and all(r["IsDeleted"] is True for r in deleted)
