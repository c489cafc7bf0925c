"""7. getUpdated / getDeleted through sf.<Object>.updated(start, end) / deleted(start, end)
(reference salesforce-api.md section 2.7)."""

import time
from datetime import datetime, timedelta, timezone

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from conftest import is_sf_id, unique


def floor_minute(t):
    return t.replace(second=0, microsecond=0)


def sf_datetime(t):
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_sf_datetime(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_updated_and_deleted(sf):
    start = floor_minute(datetime.now(timezone.utc)) - timedelta(minutes=5)
    created = sf.Account.create({"Name": unique("repl-new")})["id"]
    victim = sf.Account.create({"Name": unique("repl-victim")})["id"]
    existing = sf.query("SELECT Id FROM Account ORDER BY Id ASC LIMIT 1")["records"][0]["Id"]
    assert sf.Account.update(existing, {"Description": "touched by the compat suite"}) == 204
    assert sf.Account.delete(victim) == 204
    written = datetime.now(timezone.utc)
    # Seconds are truncated (section 2.7), so the window must end on a minute boundary after the
    # writes; wait until that boundary is in the past.
    end = floor_minute(written) + timedelta(minutes=1)
    time.sleep(max(0.0, (end - datetime.now(timezone.utc)).total_seconds()) + 1.5)

    upd = sf.Account.updated(start, end)
    assert set(upd) >= {"ids", "latestDateCovered"}, upd
    assert created in upd["ids"] and existing in upd["ids"], "created and updated records must be listed"
    assert all(is_sf_id(i, "001") for i in upd["ids"])
    assert len(upd["ids"]) == len(set(upd["ids"]))
    # No transaction is open, so the safe high-water mark is the end of the window.
    assert upd["latestDateCovered"] == sf_datetime(end), (upd["latestDateCovered"], sf_datetime(end))

    dele = sf.Account.deleted(start, end)
    assert set(dele) >= {"deletedRecords", "earliestDateAvailable", "latestDateCovered"}, dele
    by_id = {d["id"]: d for d in dele["deletedRecords"]}
    assert victim in by_id, dele
    deleted_at = parse_sf_datetime(by_id[victim]["deletedDate"])
    assert start <= deleted_at <= end
    assert created not in by_id and existing not in by_id
    assert dele["latestDateCovered"] == sf_datetime(end)
    assert parse_sf_datetime(dele["earliestDateAvailable"]) <= end


def test_updated_rejects_bad_windows(sf):
    now = floor_minute(datetime.now(timezone.utc))
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.updated(now, now - timedelta(minutes=10))
    assert e.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.updated(now - timedelta(days=45), now - timedelta(days=44))
    assert e.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
