"""10-11. Expired sessions and an exhausted API quota, each on a private simulator
(reference salesforce-api.md sections 1.3, 2.9; SPEC section 2 /_sim/faults).

Automatic recovery: simple-salesforce re-logs in on a 401 whose body is
`[{"errorCode":"INVALID_SESSION_ID",...}]` when it owns credentials (api.py `_call_salesforce`,
`_salesforce_login_partial`). It owns them only when it logged in itself, i.e. through
`https://login.salesforce.com`; here that login is routed to the simulator by the CONNECT proxy
(conftest.py), so recovery is exercised for real, for the OAuth password flow and the SOAP flow.
A client built from `session_id` + `instance_url` owns no credentials and must surface
SalesforceExpiredSession carrying INVALID_SESSION_ID.
"""

import time

import pytest
from salesforce_bulk import SalesforceBulk
from salesforce_bulk.salesforce_bulk import BulkApiError
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest
from simple_salesforce.util import Usage

EXPIRY = 3


@pytest.mark.parametrize("flow", ["oauth_password", "soap"])
def test_expired_session_is_renewed_by_simple_salesforce(fresh_sim, flow):
    s = fresh_sim
    s.set_faults(session_expiry_secs=EXPIRY)
    if flow == "oauth_password":
        sf = Salesforce(username=s.info["username"], password=s.info["password"], consumer_key=s.info["client_id"],
                        consumer_secret=s.info["client_secret"], proxies=s.login_proxies)
    else:
        sf = Salesforce(username=s.info["username"], password=s.info["password"], security_token="",
                        proxies=s.login_proxies)
    first = sf.session_id
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30
    time.sleep(EXPIRY + 0.5)
    # Salesforce._call_salesforce: 401 INVALID_SESSION_ID -> _refresh_session() -> retry
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30
    assert sf.session_id != first, "simple-salesforce should have logged in again"
    assert ("login.salesforce.com", 443) in s.proxy.tunnels
    second = sf.session_id
    time.sleep(EXPIRY + 0.5)
    # SFType._call_salesforce has its own copy of the retry
    assert sf.Account.describe()["name"] == "Account"
    assert sf.session_id != second


def test_expired_session_error_shapes(fresh_sim):
    s = fresh_sim
    s.set_faults(session_expiry_secs=EXPIRY)
    sf = s.sf()  # session_id + instance_url: no credentials to re-login with
    bulk = SalesforceBulk(sessionId=sf.session_id, host=s.instance_url)
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30
    time.sleep(EXPIRY + 0.5)

    with pytest.raises(SalesforceExpiredSession) as e:
        sf.query("SELECT Id FROM Account")
    assert e.value.status == 401
    assert isinstance(e.value.content, list), "401 bodies are JSON arrays (section 1.3)"
    assert e.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    assert e.value.content[0]["message"] == "Session expired or invalid"

    with pytest.raises(SalesforceExpiredSession) as e:
        sf.Account.describe()
    assert e.value.content[0]["errorCode"] == "INVALID_SESSION_ID"

    with pytest.raises(SalesforceExpiredSession) as e:
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=1))
    assert e.value.content[0]["errorCode"] == "INVALID_SESSION_ID"

    # Bulk 1.0: HTTP 400 with an XML InvalidSessionId error (section 1.3, jsforce isSessionExpired)
    with pytest.raises(BulkApiError) as e:
        bulk.create_query_job("Account", contentType="CSV")
    assert e.value.status_code == 400
    assert "<exceptionCode>InvalidSessionId</exceptionCode>" in str(e.value)


def test_exhausted_quota(fresh_sim):
    s = fresh_sim
    sf = s.sf()
    sf.query("SELECT Id FROM Account LIMIT 1")
    used = sf.api_usage["api-usage"].used
    s.set_faults(api_quota=used + 2)
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert sf.api_usage["api-usage"] == Usage(used + 1, used + 2), sf.api_usage
    sf.query("SELECT Id FROM Account LIMIT 1")
    assert sf.api_usage["api-usage"] == Usage(used + 2, used + 2)

    with pytest.raises(SalesforceRefusedRequest) as e:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert e.value.status == 403
    assert e.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED", e.value.content
    with pytest.raises(SalesforceRefusedRequest) as e:
        sf.Account.create({"Name": "over quota"})
    assert e.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    with pytest.raises(SalesforceRefusedRequest) as e:
        list(sf.bulk2.Account.query("SELECT Id FROM Account", wait=1))
    assert e.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    with pytest.raises(BulkApiError):
        SalesforceBulk(sessionId=sf.session_id, host=s.instance_url).create_query_job("Account")

    s.clear_faults()
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == 30, "clearing the fault restores service"


def test_other_faults_surface_as_the_clients_expect(fresh_sim):
    """query_timeout_above_rows, bulk_batch_failure_rate and http_error_rate through the clients
    (reference sections 2.9 QUERY_TIMEOUT, 3.3 failed batches; SPEC section 2 /_sim/faults)."""
    from salesforce_bulk.salesforce_bulk import BulkBatchFailed
    from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

    s = fresh_sim
    sf = s.sf()
    bulk = SalesforceBulk(sessionId=sf.session_id, host=s.instance_url)

    s.set_faults(query_timeout_above_rows=10)
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Id FROM Account")
    assert e.value.content[0]["errorCode"] == "QUERY_TIMEOUT"
    assert sf.query("SELECT Id FROM Account LIMIT 5")["totalSize"] == 5
    job = bulk.create_query_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Id FROM Account")
    bulk.close_job(job)
    with pytest.raises(BulkBatchFailed) as e:
        deadline = time.time() + 30
        while not bulk.is_batch_done(batch, job) and time.time() < deadline:
            time.sleep(0.2)
    assert e.value.state == "Failed" and "QUERY_TIMEOUT" in (e.value.state_message or ""), vars(e.value)
    s.clear_faults()

    s.set_faults(bulk_batch_failure_rate=1.0)
    job = bulk.create_query_job("Account", contentType="CSV")
    batch = bulk.query(job, "SELECT Id FROM Account")
    bulk.close_job(job)
    with pytest.raises(BulkBatchFailed):
        deadline = time.time() + 30
        while not bulk.is_batch_done(batch, job) and time.time() < deadline:
            time.sleep(0.2)
    s.clear_faults()

    s.set_faults(http_error_rate=1.0, http_error_status=503)
    with pytest.raises(SalesforceGeneralError) as e:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert e.value.status == 503
    s.clear_faults()
    assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1
