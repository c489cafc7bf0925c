"""3-6. describe, query paging, sObject CRUD/upsert, composite collections through simple-salesforce
(reference salesforce-api.md sections 2.1-2.6, 2.8, 2.9)."""

import re

import pytest
from simple_salesforce.exceptions import (SalesforceMalformedRequest, SalesforceResourceNotFound)
from simple_salesforce.util import Usage

from conftest import API_VERSION, id18, is_sf_id, unique

NEXT_URL = re.compile(rf"^/services/data/v{re.escape(API_VERSION)}/query/[0-9A-Za-z]+-\d+$")


def count(sf, soql_from_where):
    r = sf.query(f"SELECT COUNT() FROM {soql_from_where}")
    assert r["records"] == [] and r["done"] is True, r
    return r["totalSize"]


# --- 3. describe -----------------------------------------------------------------------------------

def test_describe_global(sf):
    d = sf.describe()
    assert d["encoding"] == "UTF-8" and d["maxBatchSize"] == 200
    by_name = {o["name"]: o for o in d["sobjects"]}
    for name, prefix in [("Account", "001"), ("Contact", "003"), ("Opportunity", "006"), ("Lead", "00Q"),
                         ("Case", "500"), ("Invoice__c", None)]:
        assert name in by_name, f"describeGlobal lacks {name}"
        o = by_name[name]
        assert o["queryable"] is True and o["replicateable"] is True
        if prefix:
            assert o["keyPrefix"] == prefix
        assert o["urls"]["describe"] == f"/services/data/v{API_VERSION}/sobjects/{name}/describe"
    assert by_name["Invoice__c"]["custom"] is True


def test_describe_account(sf):
    d = sf.Account.describe()
    assert d["name"] == "Account" and d["keyPrefix"] == "001"
    fields = {f["name"]: f for f in d["fields"]}
    idf = fields["Id"]
    assert (idf["type"], idf["soapType"], idf["length"], idf["nillable"], idf["createable"]) == ("id", "tns:ID", 18, False, False)
    assert fields["IsDeleted"]["type"] == "boolean"
    for stamp in ("SystemModstamp", "CreatedDate", "LastModifiedDate"):
        f = fields[stamp]
        assert (f["type"], f["soapType"], f["nillable"], f["createable"], f["updateable"]) == \
            ("datetime", "xsd:dateTime", False, False, False), stamp
    assert fields["Name"]["nameField"] is True and fields["Name"]["type"] == "string"
    assert fields["OwnerId"]["type"] == "reference" and fields["OwnerId"]["relationshipName"] == "Owner"
    assert all(k in fields["Type"]["picklistValues"][0] for k in ("active", "defaultValue", "label", "validFor", "value"))
    for key in ("childRelationships", "recordTypeInfos", "urls", "fields"):
        assert key in d


def test_describe_custom_object(sf):
    d = sf.Invoice__c.describe()
    fields = {f["name"]: f for f in d["fields"]}
    ext = fields["External_Id__c"]
    assert ext["externalId"] is True and ext["unique"] is True and ext["idLookup"] is True
    assert fields["Account__c"]["referenceTo"] == ["Account"]
    assert fields["Account__c"]["relationshipName"] == "Account__r"
    assert {f["type"] for f in d["fields"]} >= {"multipicklist", "textarea", "currency", "percent", "double", "date"}
    seen = set()
    for name in ("Account", "Contact", "Case", "Invoice__c"):
        seen |= {f["type"] for f in getattr(sf, name).describe()["fields"]}
    wanted = {"id", "reference", "string", "textarea", "picklist", "multipicklist", "boolean", "int", "double",
              "currency", "percent", "date", "datetime", "email", "phone", "url"}
    assert wanted - seen == set(), f"types not covered (SPEC section 2): {wanted - seen}"


def test_sobject_basic_info(sf):
    m = sf.Account.metadata()
    assert m["objectDescribe"]["name"] == "Account"
    assert "recentItems" in m


def test_unknown_object_is_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Nope__c.describe()
    assert e.value.content[0]["errorCode"] == "NOT_FOUND"


def test_limits_and_limit_info(sf):
    lim = sf.limits()
    for key in ("DailyApiRequests", "DailyBulkApiBatches", "DailyBulkApiRequests", "DailyBulkV2QueryJobs"):
        assert isinstance(lim[key]["Max"], int) and isinstance(lim[key]["Remaining"], int), key
    usage = sf.api_usage["api-usage"]  # parsed by simple-salesforce from Sforce-Limit-Info
    assert isinstance(usage, Usage) and 0 < usage.used <= usage.total
    assert usage.total == lim["DailyApiRequests"]["Max"]


# --- 4. query paging -------------------------------------------------------------------------------

def test_query_all_pages_over_all_accounts(sf):
    total = count(sf, "Account")
    assert total >= 6000
    r = sf.query_all("SELECT Id, Name FROM Account")
    ids = [rec["Id"] for rec in r["records"]]
    assert len(ids) == total, f"query_all returned {len(ids)} rows, COUNT() says {total}"
    assert len(set(ids)) == len(ids), "a row came back twice across pages"
    assert all(is_sf_id(i, "001") for i in ids[:50])
    rec = r["records"][0]
    assert rec["attributes"] == {"type": "Account", "url": f"/services/data/v{API_VERSION}/sobjects/Account/{rec['Id']}"}


def test_query_first_page_and_next_records_url(sf):
    total = count(sf, "Account")
    first = sf.query("SELECT Id FROM Account")
    assert first["totalSize"] == total
    assert first["done"] is False
    assert 0 < len(first["records"]) <= 2000
    assert NEXT_URL.match(first["nextRecordsUrl"]), first["nextRecordsUrl"]
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
        assert page["totalSize"] == total, "totalSize is the whole result on every page"
        seen += [r["Id"] for r in page["records"]]
    assert "nextRecordsUrl" not in page, "nextRecordsUrl only when done is false"
    assert len(seen) == total == len(set(seen))


def test_query_more_by_identifier(sf):
    """query_more(identifier) builds {base_url}query/{locator}-{offset} itself."""
    first = sf.query("SELECT Id FROM Account")
    ident = first["nextRecordsUrl"].rsplit("/", 1)[1]
    page = sf.query_more(ident, identifier_is_url=False)
    assert page["records"] and page["records"][0]["Id"] not in {r["Id"] for r in first["records"]}


def test_query_batch_size_header(sf):
    """Sforce-Query-Options: batchSize=500 through simple-salesforce's header pass-through."""
    total = count(sf, "Account")
    hdr = {"Sforce-Query-Options": "batchSize=500"}
    first = sf.query("SELECT Id FROM Account", headers=hdr)
    assert 0 < len(first["records"]) <= 500, len(first["records"])
    assert NEXT_URL.match(first["nextRecordsUrl"])
    ids = [r["Id"] for r in sf.query_all_iter("SELECT Id FROM Account", headers=hdr)]
    assert len(ids) == total == len(set(ids))


def test_query_all_include_deleted_pages(sf):
    """queryAll paging: the next URL still says /query/ (section 2.5) and keeps including deleted rows."""
    total = count(sf, "Account")
    first = sf.query("SELECT Id FROM Account", include_deleted=True)
    assert first["done"] is False and NEXT_URL.match(first["nextRecordsUrl"]), first.get("nextRecordsUrl")
    ids = [r["Id"] for r in sf.query_all_iter("SELECT Id, IsDeleted FROM Account", include_deleted=True)]
    assert len(ids) == len(set(ids)) >= total


def test_query_where_and_order(sf):
    r = sf.query("SELECT Id, Name FROM Account ORDER BY Id ASC LIMIT 5")
    ids = [x["Id"] for x in r["records"]]
    assert r["totalSize"] == 5 and ids == sorted(ids)
    one = sf.query(f"SELECT Id, Name FROM Account WHERE Id = '{ids[2]}'")
    assert [x["Id"] for x in one["records"]] == [ids[2]]
    # 15-char form accepted on input, 18 returned
    one = sf.query(f"SELECT Id FROM Account WHERE Id = '{ids[2][:15]}'")
    assert [x["Id"] for x in one["records"]] == [ids[2]]


def test_malformed_query_error(sf):
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELEKT Id FROM Account")
    assert e.value.status == 400 and e.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Nope__x FROM Account")
    assert e.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Id FROM Nope__c")
    assert e.value.content[0]["errorCode"] == "INVALID_TYPE"


def test_datetime_values_shape(sf):
    rec = sf.query("SELECT Id, SystemModstamp, CreatedDate FROM Account LIMIT 1")["records"][0]
    for f in ("SystemModstamp", "CreatedDate"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000\+0000", rec[f]), (f, rec[f])


# --- 5. CRUD and upsert ----------------------------------------------------------------------------

def test_create_get_update_upsert_delete(sf):
    ext = unique("EXT")
    created = sf.Invoice__c.create({"Name": "compat create", "Amount__c": 12.5, "External_Id__c": ext,
                                    "Status__c": "Draft", "Paid__c": False})
    assert created["success"] is True and created["errors"] == []
    inv_id = created["id"]
    assert is_sf_id(inv_id), inv_id

    got = sf.Invoice__c.get(inv_id)
    assert got["Id"] == inv_id and got["Name"] == "compat create" and got["Amount__c"] == 12.5
    assert got["attributes"]["type"] == "Invoice__c"
    assert got["IsDeleted"] is False
    assert sf.Invoice__c.get(inv_id[:15])["Id"] == inv_id, "15-char ids are accepted"
    assert sf.Invoice__c.get_by_custom_id("External_Id__c", ext)["Id"] == inv_id

    assert sf.Invoice__c.update(inv_id, {"Amount__c": 99}) == 204
    assert sf.Invoice__c.get(inv_id)["Amount__c"] == 99

    # upsert by external id: new -> 201 created:true, existing -> 200 created:false (v46+, section 2.6)
    new_ext = unique("UPS")
    r = sf.Invoice__c.upsert(f"External_Id__c/{new_ext}", {"Name": "compat upsert"}, raw_response=True)
    assert r.status_code == 201, (r.status_code, r.text)
    body = r.json()
    assert body["success"] is True and body["created"] is True and is_sf_id(body["id"])
    up_id = body["id"]
    r = sf.Invoice__c.upsert(f"External_Id__c/{new_ext}", {"Name": "compat upsert 2"}, raw_response=True)
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.json()["created"] is False and r.json()["id"] == up_id
    assert sf.Invoice__c.upsert(f"External_Id__c/{new_ext}", {"Name": "compat upsert 3"}) == 200
    assert sf.Invoice__c.get(up_id)["Name"] == "compat upsert 3"

    assert sf.Invoice__c.delete(inv_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Invoice__c.get(inv_id)

    live = sf.query(f"SELECT Id, IsDeleted FROM Invoice__c WHERE Id = '{inv_id}'")
    assert live["totalSize"] == 0 and live["records"] == []
    everything = sf.query_all(f"SELECT Id, IsDeleted FROM Invoice__c WHERE Id = '{inv_id}'", include_deleted=True)
    assert [(x["Id"], x["IsDeleted"]) for x in everything["records"]] == [(inv_id, True)]
    deleted = sf.query(f"SELECT Id FROM Invoice__c WHERE IsDeleted = TRUE AND Id = '{inv_id}'", include_deleted=True)
    assert deleted["totalSize"] == 1


def test_create_errors(sf):
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.create({"Description": "no name"})
    err = e.value.content[0]
    assert err["errorCode"] == "REQUIRED_FIELD_MISSING" and err["fields"] == ["Name"], err
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.create({"Name": "x", "Id": "001000000000000AAA"})
    assert e.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.create({"Name": "x", "NoSuchField__c": 1})
    assert e.value.content[0]["errorCode"] == "INVALID_FIELD"


def test_update_missing_record_is_not_found(sf):
    missing = id18("001" + "0" * 5 + "ZZZZZZZ")
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Account.update(missing, {"Name": "ghost"})
    assert e.value.status == 404 and e.value.content[0]["errorCode"] == "NOT_FOUND"


def test_upsert_unknown_external_field(sf):
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Invoice__c.upsert("Nope__c/123", {"Name": "x"})
    assert e.value.content[0]["errorCode"] == "NOT_FOUND"


# --- 6. composite ----------------------------------------------------------------------------------

def test_composite_collections(sf):
    tag = unique("coll")
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Account"}, "Name": f"{tag}-a"},
        {"attributes": {"type": "Account"}, "Description": "missing Name"},
        {"attributes": {"type": "Invoice__c"}, "Name": f"{tag}-inv"},
    ]})
    assert isinstance(res, list) and len(res) == 3
    assert res[0]["success"] is True and is_sf_id(res[0]["id"], "001") and res[0]["errors"] == []
    assert res[1]["success"] is False
    assert res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING", res[1]
    assert "message" in res[1]["errors"][0] and res[1]["errors"][0]["fields"] == ["Name"]
    assert res[2]["success"] is True and is_sf_id(res[2]["id"])
    acc, inv = res[0]["id"], res[2]["id"]

    upd = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "id": acc, "Description": "updated via collection"},
        {"attributes": {"type": "Invoice__c"}, "id": inv, "Amount__c": 7},
    ]})
    assert [(x["id"], x["success"]) for x in upd] == [(acc, True), (inv, True)]
    assert sf.Account.get(acc)["Description"] == "updated via collection"

    dele = sf.restful("composite/sobjects", method="DELETE", params={"ids": f"{acc},{inv}", "allOrNone": "false"})
    assert [(x["id"], x["success"]) for x in dele] == [(acc, True), (inv, True)]
    assert sf.query(f"SELECT Id FROM Account WHERE Id = '{acc}'")["totalSize"] == 0


def test_composite_all_or_none_rolls_back(sf):
    tag = unique("aon")
    res = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Account"}, "Name": f"{tag}-1"},
        {"attributes": {"type": "Account"}, "Description": "missing Name"},
        {"attributes": {"type": "Account"}, "Name": f"{tag}-3"},
    ]})
    assert len(res) == 3 and all(x["success"] is False for x in res), res
    assert res[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    for i in (0, 2):
        assert res[i]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK", res[i]
    assert sf.query(f"SELECT Id FROM Account WHERE Name LIKE '{tag}%'")["totalSize"] == 0


def test_composite_upsert_collection(sf):
    ext = unique("CU")
    res = sf.restful("composite/sobjects/Invoice__c/External_Id__c", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Invoice__c"}, "External_Id__c": ext, "Name": "cu"}]})
    assert res[0]["success"] is True and res[0]["created"] is True
    res = sf.restful("composite/sobjects/Invoice__c/External_Id__c", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Invoice__c"}, "External_Id__c": ext, "Name": "cu2"}]})
    assert res[0]["success"] is True and res[0]["created"] is False


def test_composite_batch(sf):
    """tap-salesforce describes through composite/batch (section 2.4)."""
    res = sf.restful("composite/batch", method="POST", json={"haltOnError": True, "batchRequests": [
        {"method": "GET", "url": f"/services/data/v{API_VERSION}/sobjects/Account/describe"},
        {"method": "GET", "url": f"/services/data/v{API_VERSION}/sobjects/Contact/describe"},
    ]})
    assert res["hasErrors"] is False
    assert [r["statusCode"] for r in res["results"]] == [200, 200]
    assert res["results"][1]["result"]["name"] == "Contact"
