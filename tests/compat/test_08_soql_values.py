"""SOQL semantics and value round-trips, checked for consistency between the server's filtering
and the same filter applied in Python to the full result (reference salesforce-api.md sections 2.5, 4, 5)."""

import csv
import io

import pytest
import unicodecsv
from salesforce_bulk import SalesforceBulk
from simple_salesforce.bulk2 import ColumnDelimiter, LineEnding

from conftest import unique


@pytest.fixture(scope="module")
def accounts(sf):
    rows = sf.query_all("SELECT Id, Name, Industry, NumberOfEmployees, AnnualRevenue, SystemModstamp FROM Account")["records"]
    assert len(rows) >= 6000
    return rows


def ids(result):
    return sorted(r["Id"] for r in result["records"])


def test_in_and_not_in(sf, accounts):
    got = ids(sf.query_all("SELECT Id FROM Account WHERE Industry IN ('Banking', 'Retail')"))
    assert got == sorted(r["Id"] for r in accounts if r["Industry"] in ("Banking", "Retail"))
    got = ids(sf.query_all("SELECT Id FROM Account WHERE Industry NOT IN ('Banking', 'Retail')"))
    # Unlike SQL, SOQL's NOT IN and != match null values.
    expected = sorted(r["Id"] for r in accounts if r["Industry"] not in ("Banking", "Retail"))
    assert got == expected


def test_null_comparisons(sf, accounts):
    got = ids(sf.query_all("SELECT Id FROM Account WHERE Industry = null"))
    assert got == sorted(r["Id"] for r in accounts if r["Industry"] is None)
    got = ids(sf.query_all("SELECT Id FROM Account WHERE Industry != null"))
    assert got == sorted(r["Id"] for r in accounts if r["Industry"] is not None)


def test_numeric_range_and_or(sf, accounts):
    got = ids(sf.query_all("SELECT Id FROM Account WHERE (NumberOfEmployees >= 100 AND NumberOfEmployees < 5000) "
                           "OR AnnualRevenue > 1000000000"))
    exp = sorted(r["Id"] for r in accounts
                 if (r["NumberOfEmployees"] is not None and 100 <= r["NumberOfEmployees"] < 5000)
                 or (r["AnnualRevenue"] is not None and r["AnnualRevenue"] > 1e9))
    assert got == exp


def test_like_case_insensitive(sf, accounts):
    got = ids(sf.query_all("SELECT Id FROM Account WHERE Name LIKE 'acme%'"))
    assert got == sorted(r["Id"] for r in accounts if r["Name"].lower().startswith("acme"))
    assert got, "the dataset has Acme accounts"


def test_order_by_desc_and_offset(sf):
    a = sf.query("SELECT Id, Name FROM Account ORDER BY Id DESC LIMIT 10")["records"]
    assert [r["Id"] for r in a] == sorted((r["Id"] for r in a), reverse=True)
    b = sf.query("SELECT Id FROM Account ORDER BY Id DESC LIMIT 5 OFFSET 5")["records"]
    assert [r["Id"] for r in b] == [r["Id"] for r in a[5:]]


def test_keyset_paging_query(sf, accounts):
    """supaglue-style keyset paging (section 5) must walk every row exactly once."""
    seen = []
    stamp, last_id = "2000-01-01T00:00:00.000+0000", "000000000000000AAA"
    while True:
        page = sf.query(
            f"SELECT Id, SystemModstamp FROM Account WHERE ((SystemModstamp = {stamp} AND Id > '{last_id}') "
            f"OR SystemModstamp > {stamp}) ORDER BY SystemModstamp ASC, Id ASC LIMIT 1500")["records"]
        if not page:
            break
        seen += [r["Id"] for r in page]
        stamp, last_id = page[-1]["SystemModstamp"], page[-1]["Id"]
    assert sorted(seen) == sorted(r["Id"] for r in accounts)
    assert len(seen) == len(set(seen))


def test_long_textarea_and_multipicklist_round_trip(sf, sim):
    notes = ("Long text ünïcödé, \"quoted\"\n" * 5000)[:131072]
    rec = sf.Invoice__c.create({"Name": unique("long"), "Notes__c": notes, "Tags__c": "Priority;Export"})
    got = sf.Invoice__c.get(rec["id"])
    assert got["Notes__c"] == notes and got["Tags__c"] == "Priority;Export"
    bulk = SalesforceBulk(sessionId=sf.session_id, host=sim.instance_url)
    job = bulk.create_query_job("Invoice__c", contentType="CSV")
    batch = bulk.query(job, f"SELECT Id, Notes__c, Tags__c FROM Invoice__c WHERE Id = '{rec['id']}'")
    bulk.close_job(job)
    import time
    while not bulk.is_batch_done(batch, job):
        time.sleep(0.2)
    rows = [r for res in bulk.get_all_results_for_query_batch(batch, job) for r in unicodecsv.DictReader(res, encoding="utf-8")]
    assert rows == [{"Id": rec["id"], "Notes__c": notes, "Tags__c": "Priority;Export"}]


def test_bulk2_delimiter_and_line_ending(sf):
    base = list(csv.DictReader(io.StringIO("".join(sf.bulk2.Contact.query(
        "SELECT Id, LastName, Description FROM Contact", wait=1)))))
    text = "".join(sf.bulk2.Contact.query("SELECT Id, LastName, Description FROM Contact", wait=1,
                                          column_delimiter=ColumnDelimiter.PIPE, line_ending=LineEnding.CRLF))
    assert text.startswith('"Id"|"LastName"|"Description"\r\n')
    piped = list(csv.DictReader(io.StringIO(text, newline=""), delimiter="|"))
    key = lambda r: r["Id"]  # noqa: E731
    assert sorted(piped, key=key) == sorted(base, key=key)


def test_is_sandbox(sf):
    """simple-salesforce is_sandbox(): SELECT IsSandbox FROM Organization LIMIT 1 (section 5)."""
    assert sf.is_sandbox() is False


def test_relationship_columns_in_bulk(sf, sim):
    rest = {r["Id"]: r for r in sf.query_all("SELECT Id, Account.Name FROM Contact")["records"]}
    text = "".join(sf.bulk2.Contact.query("SELECT Id, Account.Name FROM Contact", wait=1))
    assert text.startswith('"Id","Account.Name"')
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(rest)
    for r in rows:
        acc = rest[r["Id"]]["Account"]
        assert r["Account.Name"] == (acc["Name"] if acc else "")
    bulk = SalesforceBulk(sessionId=sf.session_id, host=sim.instance_url)
    job = bulk.create_query_job("Contact", contentType="CSV")
    batch = bulk.query(job, "SELECT Id, Account.Name FROM Contact")
    bulk.close_job(job)
    import time
    while not bulk.is_batch_done(batch, job):
        time.sleep(0.2)
    rows1 = [r for res in bulk.get_all_results_for_query_batch(batch, job) for r in unicodecsv.DictReader(res, encoding="utf-8")]
    assert sorted(rows1, key=lambda r: r["Id"]) == sorted(rows, key=lambda r: r["Id"])


def test_bulk_v1_xml_results(sf, sim):
    import time
    import xml.etree.ElementTree as ET
    bulk = SalesforceBulk(sessionId=sf.session_id, host=sim.instance_url)
    job = bulk.create_query_job("Invoice__c", contentType="XML")
    batch = bulk.query(job, "SELECT Id, Name FROM Invoice__c")
    bulk.close_job(job)
    while not bulk.is_batch_done(batch, job):
        time.sleep(0.2)
    ns = "{http://www.force.com/2009/06/asyncapi/dataload}"
    records = []
    for res in bulk.get_all_results_for_query_batch(batch, job):
        root = ET.fromstring(res.read())
        assert root.tag == f"{ns}queryResult"
        records += [r.findtext(f"{ns}Id") for r in root.findall(f"{ns}records")]
    assert sorted(records) == sorted(r["Id"] for r in sf.query_all("SELECT Id FROM Invoice__c")["records"])


def test_composite_collection_retrieve(sf):
    some = [r["Id"] for r in sf.query("SELECT Id FROM Account ORDER BY Id LIMIT 2")["records"]]
    res = sf.restful("composite/sobjects/Account", params={"ids": ",".join(some), "fields": "Id,Name"})
    assert [r["Id"] for r in res] == some
    assert all(r["attributes"]["type"] == "Account" and "Name" in r for r in res)
