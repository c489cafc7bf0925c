"""1-2. OAuth2 and SOAP login (reference salesforce-api.md sections 0, 1.1, 1.2).

simple-salesforce always logs in at `https://{domain}.salesforce.com/...`; these tests reach the
simulator through the per-simulator CONNECT proxy described in conftest.py (the stand-in for the
DNS override that section 0 says unmodified clients need), passed with simple-salesforce's own
`proxies=` argument. Where a direct path exists we test it too: the token endpoint with plain
requests + `Salesforce(instance_url=..., session_id=...)`, and `SalesforceLogin(scratch_url=...)`
for SOAP.
"""

import re

import pytest
import requests
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from simple_salesforce.util import getUniqueElementValueFromXmlString

from conftest import API_VERSION, is_sf_id


def _works(sf):
    r = sf.query("SELECT Id FROM Account LIMIT 1")
    assert r["totalSize"] == 1 and len(r["records"]) == 1


# --- 1. OAuth2 -------------------------------------------------------------------------------------

def test_oauth_password_token_shape(sim):
    """POST /services/oauth2/token grant_type=password, answer shaped as in section 1.1."""
    tok = sim.token()
    assert tok["instance_url"] == sim.instance_url
    assert tok["token_type"] == "Bearer"
    assert tok["access_token"].startswith(sim.info["org_id"][:15] + "!"), tok["access_token"]
    assert re.fullmatch(r"\d{13}", tok["issued_at"]), f"issued_at must be epoch ms as a string: {tok['issued_at']!r}"
    assert tok.get("signature"), "signature missing"
    org_id, user_id = tok["id"].rstrip("/").split("/")[-2:]
    assert org_id == sim.info["org_id"] and is_sf_id(org_id, "00D"), tok["id"]
    assert is_sf_id(user_id, "005"), tok["id"]
    assert "refresh_token" not in tok, "the password grant issues no refresh token (section 1.1)"


def test_oauth_session_id_instance_url_constructor(sim):
    """The documented direct-session constructor with the token from the password grant."""
    tok = sim.token()
    sf = Salesforce(instance_url=tok["instance_url"], session_id=tok["access_token"], version=API_VERSION)
    assert sf.sf_instance == sim.host  # port kept because it is not 443
    assert sf.base_url == f"https://{sim.host}/services/data/v{API_VERSION}/"
    _works(sf)


def test_oauth_password_login_through_simple_salesforce(sim):
    """Salesforce(username, password, consumer_key, consumer_secret): simple-salesforce's own
    token_login against https://login.salesforce.com/services/oauth2/token (routed to the sim)."""
    sf = Salesforce(username=sim.info["username"], password=sim.info["password"],
                    consumer_key=sim.info["client_id"], consumer_secret=sim.info["client_secret"],
                    proxies=sim.login_proxies)
    assert ("login.salesforce.com", 443) in sim.proxy.tunnels
    assert sf.auth_type == "password"
    assert sf.sf_instance == sim.host, "instance_url from the token answer, scheme stripped"
    _works(sf)


def test_oauth_salesforce_login_function(sim):
    session_id, instance = SalesforceLogin(username=sim.info["username"], password=sim.info["password"],
                                           consumer_key=sim.info["client_id"],
                                           consumer_secret=sim.info["client_secret"],
                                           proxies=sim.login_proxies, domain="login")
    assert instance == sim.host
    _works(Salesforce(instance=instance, session_id=session_id))


def test_oauth_bad_password_is_invalid_grant(sim):
    with pytest.raises(SalesforceAuthenticationFailed) as e:
        SalesforceLogin(username=sim.info["username"], password="wrong",
                        consumer_key=sim.info["client_id"], consumer_secret=sim.info["client_secret"],
                        proxies=sim.login_proxies)
    assert e.value.code == "invalid_grant", (e.value.code, e.value.auth_message)
    assert e.value.auth_message == "authentication failure"


def test_oauth_bad_client_is_invalid_client_id(sim):
    r = requests.post(f"{sim.login_url}/services/oauth2/token", timeout=30, data={
        "grant_type": "password", "client_id": "nope", "client_secret": "x",
        "username": sim.info["username"], "password": sim.info["password"]})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_client_id", r.text


def test_oauth_refresh_token_grant(sim):
    """SPEC section 2: the reported refresh_token works for grant_type=refresh_token."""
    r = requests.post(f"{sim.login_url}/services/oauth2/token", timeout=30, data={
        "grant_type": "refresh_token", "refresh_token": sim.info["refresh_token"],
        "client_id": sim.info["client_id"], "client_secret": sim.info["client_secret"]})
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["instance_url"] == sim.instance_url
    _works(Salesforce(instance_url=tok["instance_url"], session_id=tok["access_token"]))


def test_oauth_client_credentials_my_domain(sim):
    """simple-salesforce's client_credentials flow (only for a My Domain): Basic auth header,
    grant_type alone in the body (section 1.1). A My Domain host would need its own proxy route,
    so this posts exactly what login.py posts, to the simulator's login URL."""
    import base64
    auth = base64.b64encode(f"{sim.info['client_id']}:{sim.info['client_secret']}".encode()).decode()
    r = requests.post(f"{sim.login_url}/services/oauth2/token", data={"grant_type": "client_credentials"},
                      headers={"Authorization": f"Basic {auth}"}, timeout=30)
    assert r.status_code == 200, r.text
    _works(Salesforce(instance_url=r.json()["instance_url"], session_id=r.json()["access_token"]))


# --- 2. SOAP ---------------------------------------------------------------------------------------

def test_soap_login_security_token_path(sim):
    """SalesforceLogin(username, password, security_token) posts the partner SOAP envelope to
    https://login.salesforce.com/services/Soap/u/59.0 and parses sessionId/serverUrl with its
    own DOM helper."""
    session_id, instance = SalesforceLogin(username=sim.info["username"], password=sim.info["password"],
                                           security_token="", proxies=sim.login_proxies)
    assert instance == sim.host, "serverUrl host (with -api stripped) must be the instance"
    _works(Salesforce(instance=instance, session_id=session_id))


def test_soap_login_scratch_url(sim):
    """The supported `scratch_url` argument sends the SOAP login to `{scratch_url}/services/Soap/u/{ver}`
    directly: no proxy involved."""
    session_id, instance = SalesforceLogin(username=sim.info["username"], password=sim.info["password"],
                                           security_token="", scratch_url=sim.login_url, sf_version="52.0")
    assert instance == sim.host
    _works(Salesforce(instance=instance, session_id=session_id))


def test_soap_login_organization_id_path(sim):
    session_id, instance = SalesforceLogin(username=sim.info["username"], password=sim.info["password"],
                                           organizationId=sim.info["org_id"], scratch_url=sim.login_url)
    assert instance == sim.host
    _works(Salesforce(instance=instance, session_id=session_id))


def test_soap_login_salesforce_constructor(sim):
    sf = Salesforce(username=sim.info["username"], password=sim.info["password"], security_token="",
                    proxies=sim.login_proxies)
    assert sf.sf_instance == sim.host
    _works(sf)


def test_soap_login_response_shape(sim):
    """The fields jsforce and simple-salesforce read from loginResponse (section 1.2)."""
    body = f"""<?xml version="1.0" encoding="utf-8" ?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
<soapenv:Body><urn:login><urn:username>{sim.info['username']}</urn:username>
<urn:password>{sim.info['password']}</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"""
    r = requests.post(f"{sim.login_url}/services/Soap/u/{API_VERSION}", data=body, timeout=30,
                      headers={"content-type": "text/xml", "charset": "UTF-8", "SOAPAction": "login"})
    assert r.status_code == 200, r.text
    get = lambda name: getUniqueElementValueFromXmlString(r.content, name)  # noqa: E731
    server_url = get("serverUrl")
    assert server_url.startswith(f"{sim.instance_url}/services/Soap/u/{API_VERSION}"), server_url
    assert get("metadataServerUrl").startswith(f"{sim.instance_url}/services/Soap/m/{API_VERSION}")
    assert get("passwordExpired") == "false"
    assert get("sandbox") == "false"
    assert is_sf_id(get("userId"), "005")
    assert get("organizationId") == sim.info["org_id"]
    assert int(get("sessionSecondsValid")) > 0
    assert get("sessionId").startswith(sim.info["org_id"][:15] + "!")
    # jsforce: instanceUrl = the first 3 '/'-parts of the unprefixed <serverUrl>
    assert "/".join(re.search(r"<serverUrl>([^<]+)</serverUrl>", r.text).group(1).split("/")[:3]) == sim.instance_url


def test_soap_login_fault(sim):
    """A bad password: HTTP 500 SOAP fault; simple-salesforce reads sf:exceptionCode."""
    with pytest.raises(SalesforceAuthenticationFailed) as e:
        SalesforceLogin(username=sim.info["username"], password="wrong", security_token="",
                        scratch_url=sim.login_url)
    assert e.value.code == "INVALID_LOGIN", (e.value.code, e.value.auth_message)
    assert "Invalid username, password, security token; or user locked out." in e.value.auth_message


def test_versions_without_auth(sim):
    r = requests.get(f"{sim.instance_url}/services/data/", timeout=30)
    assert r.status_code == 200
    versions = r.json()
    assert isinstance(versions, list) and versions
    assert all({"label", "url", "version"} <= set(v) for v in versions)
    assert any(v["version"] == API_VERSION and v["url"] == f"/services/data/v{API_VERSION}" for v in versions)


def test_oauth_jwt_bearer_through_simple_salesforce(sim):
    """Salesforce(username, consumer_key, privatekey): simple-salesforce signs an RS256 assertion
    (iss=consumer key, sub=username, aud=https://login.salesforce.com, exp as a string) and posts
    grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer to login.salesforce.com (section 1.1).
    The simulator cannot know the connected app's certificate, so any well-formed key is used."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sf = Salesforce(username=sim.info["username"], consumer_key=sim.info["client_id"], privatekey=pem,
                    proxies=sim.login_proxies)
    assert sf.auth_type == "jwt-bearer" and sf.sf_instance == sim.host
    _works(sf)


def test_soap_fault_wire_shape(sim):
    body = """<?xml version="1.0" encoding="utf-8" ?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">
<soapenv:Body><urn:login><urn:username>nobody@example.com</urn:username>
<urn:password>x</urn:password></urn:login></soapenv:Body></soapenv:Envelope>"""
    r = requests.post(f"{sim.login_url}/services/Soap/u/{API_VERSION}", data=body, timeout=30,
                      headers={"content-type": "text/xml", "SOAPAction": "login"})
    assert r.status_code == 500, "SOAP faults are HTTP 500 (section 1.2)"
    assert r.headers["Content-Type"].startswith("text/xml")
    assert getUniqueElementValueFromXmlString(r.content, "faultcode").endswith("INVALID_LOGIN")
    assert getUniqueElementValueFromXmlString(r.content, "sf:exceptionCode") == "INVALID_LOGIN"
    assert 'xmlns:sf="urn:fault.partner.soap.sforce.com"' in r.text


def test_version_resource_map(sim, sf):
    r = requests.get(f"{sim.instance_url}/services/data/v{API_VERSION}",
                     headers={"Authorization": f"Bearer {sf.session_id}"}, timeout=30)
    assert r.status_code == 200
    m = r.json()
    for k in ("sobjects", "query", "limits"):
        assert m[k] == f"/services/data/v{API_VERSION}/{k}", (k, m.get(k))
