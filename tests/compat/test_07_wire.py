"""Wire details that real clients other than simple-salesforce/salesforce-bulk depend on
(reference salesforce-api.md section 8 checklist): tap-salesforce's Bulk 1.0 format mix, the exact
Sforce-Limit-Info form, content types, datetime literal forms, API versions.

These use plain `requests` with the exact requests those clients send, plus simple-salesforce
where it can carry them."""

import re
import xml.etree.ElementTree as ET

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from conftest import API_VERSION, is_sf_id

NS = "{http://www.force.com/2009/06/asyncapi/dataload}"


def test_limit_info_on_every_rest_response(sim, sf):
    h = {"Authorization": f"Bearer {sf.session_id}"}
    base = f"{sim.instance_url}/services/data/v{API_VERSION}"
    for url, status in [(f"{base}/sobjects", 200), (f"{base}/query?q=SELECT+Id+FROM+Account+LIMIT+1", 200),
                        (f"{base}/query?q=SELEKT", 400), (f"{base}/sobjects/Account/001000000000000AAA", 404)]:
        r = requests.get(url, headers=h, timeout=30)
        assert r.status_code == status, (url, r.status_code, r.text[:200])
        # tap-salesforce: re.match(r'^api-usage=(\d+)/(\d+)$', ...)
        assert re.match(r"^api-usage=(\d+)/(\d+)$", r.headers.get("Sforce-Limit-Info", "")), (url, r.headers)
        assert r.headers["Content-Type"].replace(" ", "").lower() == "application/json;charset=utf-8", r.headers


def test_oauth_scheme_accepted(sim, sf):
    r = requests.get(f"{sim.instance_url}/services/data/v{API_VERSION}/sobjects",
                     headers={"Authorization": f"OAuth {sf.session_id}"}, timeout=30)
    assert r.status_code == 200


@pytest.mark.parametrize("version", ["40.0", "52.0", "62.0"])
def test_any_api_version(sim, sf, version):
    other = Salesforce(instance_url=sim.instance_url, session_id=sf.session_id, version=version)
    r = other.query("SELECT Id FROM Account LIMIT 3")
    assert len(r["records"]) == 3
    assert r["records"][0]["attributes"]["url"].startswith(f"/services/data/v{version}/sobjects/Account/")


@pytest.mark.parametrize("literal", [
    "2025-06-01T00:00:00Z", "2025-06-01T00:00:00.000Z", "2025-06-01T00:00:00.000+00:00",
    "2025-06-01T00:00:00.000000Z", "2025-06-01T00:00:00.000+0000", "2025-06-01T02:00:00+02:00",
])
def test_datetime_literal_forms(sf, literal):
    """airbyte sends .000+00:00, tap .ffffffZ, old airbyte .000+0000 (section 5); `+` goes %-encoded."""
    n = sf.query(f"SELECT COUNT() FROM Account WHERE SystemModstamp >= {literal}")["totalSize"]
    ref = sf.query("SELECT COUNT() FROM Account WHERE SystemModstamp >= 2025-06-01T00:00:00Z")["totalSize"]
    total = sf.query("SELECT COUNT() FROM Account")["totalSize"]
    assert n == ref and 0 < n < total, (literal, n, ref, total)


def test_invalid_query_locator(sf):
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query_more(f"/services/data/v{API_VERSION}/query/0r8000000000000AAA-2000", identifier_is_url=True)
    assert e.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_relationship_fields(sf):
    r = sf.query("SELECT Id, AccountId, Account.Name FROM Contact WHERE AccountId != null LIMIT 5")
    assert r["records"]
    for rec in r["records"]:
        assert rec["Account"]["attributes"]["type"] == "Account"
        assert isinstance(rec["Account"]["Name"], str)


def test_tap_salesforce_bulk_v1_format_mix(sim, sf):
    """tap-salesforce: creates the job with a JSON body and reads resp.json()['id'], then parses
    add-batch, batch status and the result list as XML although it sends
    Content-Type: application/json on every request (section 3.1)."""
    base = f"{sim.instance_url}/services/async/61.0"
    h = {"X-SFDC-Session": sf.session_id, "Content-Type": "application/json"}
    r = requests.post(f"{base}/job", headers={**h, "Sforce-Enable-PKChunking": "false"}, timeout=30,
                      json={"operation": "queryAll", "object": "Account", "contentType": "CSV"})
    assert r.status_code in (200, 201), r.text
    assert r.headers["Content-Type"] == "application/json", "exactly application/json (salesforce-bulk, tap)"
    job = r.json()
    assert is_sf_id(job["id"], "750") and job["operation"] == "queryAll" and job["contentType"] == "CSV"
    assert job["state"] == "Open"

    r = requests.post(f"{base}/job/{job['id']}/batch", data="SELECT Id, Name FROM Account LIMIT 10",
                      headers={"X-SFDC-Session": sf.session_id, "Content-Type": "text/csv"}, timeout=30)
    assert r.status_code in (200, 201), r.text
    assert r.headers["Content-Type"] == "application/xml", r.headers
    batch_id = ET.fromstring(r.content).findtext(f"{NS}id")
    assert is_sf_id(batch_id, "751")

    import time
    deadline = time.time() + 30
    while True:
        r = requests.get(f"{base}/job/{job['id']}/batch/{batch_id}", headers=h, timeout=30)
        assert r.headers["Content-Type"] == "application/xml", "batch info follows the job's contentType"
        state = ET.fromstring(r.content).findtext(f"{NS}state")
        if state in ("Completed", "Failed", "Not Processed", "NotProcessed") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert state == "Completed"
    r = requests.get(f"{base}/job/{job['id']}/batch", headers=h, timeout=30)
    assert r.headers["Content-Type"] == "application/xml"
    assert ET.fromstring(r.content).tag == f"{NS}batchInfoList"
    r = requests.get(f"{base}/job/{job['id']}/batch/{batch_id}/result", headers=h, timeout=30)
    assert r.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(r.content)
    assert root.tag == f"{NS}result-list"
    result_ids = [e.text for e in root.findall(f"{NS}result")]
    assert result_ids
    r = requests.get(f"{base}/job/{job['id']}/batch/{batch_id}/result/{result_ids[0]}", headers=h, timeout=30)
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.text.startswith('"Id","Name"')
    assert r.text.rstrip("\n").count("\n") == 10

    r = requests.post(f"{base}/job/{job['id']}", headers=h, json={"state": "Closed"}, timeout=30)
    assert r.status_code == 200 and r.json()["state"] == "Closed"
    assert r.headers["Content-Type"] == "application/json"


def test_bulk_v2_csv_value_formats(sf):
    """Bulk 2.0 CSV: datetimes with ms and Z, dates YYYY-MM-DD, booleans true/false (section 4)."""
    text = "".join(sf.bulk2.Invoice__c.query(
        "SELECT Id, Paid_At__c, Issued_Date__c, Paid__c FROM Invoice__c WHERE Paid_At__c != null LIMIT 20", wait=1))
    import csv
    import io
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for r in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", r["Paid_At__c"]), r
        assert r["Issued_Date__c"] == "" or re.fullmatch(r"\d{4}-\d\d-\d\d", r["Issued_Date__c"]), r
        assert r["Paid__c"] in ("true", "false"), r
