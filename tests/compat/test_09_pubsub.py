"""Change Data Capture over the Pub/Sub API, driven by the unmodified npm client
salesforce-pubsub-api-client (pinned in pubsub/package.json, installed by run.sh with `npm ci`).

The client is pointed at the simulator with its documented settings: `pubSubEndpoint` (the
ready line's `pubsub_endpoint`), user-supplied authentication (`accessToken`, `instanceUrl`,
`organizationId`) and `rejectUnauthorizedSsl: false` for the simulator's own CA. It decodes the
Avro payloads with the schema GetSchema returns and turns the changedFields / nulledFields
bitmaps into field names itself (src/utils/eventParser.js), so what it prints is what a real
subscriber would see.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

PUBSUB_DIR = Path(__file__).resolve().parent / "pubsub"
NODE = os.environ.get("NODE", "node")


def run_client(sim, topic, count, token=None, replay_id=None, earliest=False, timeout_ms=20000):
    if token is None:
        token = sim.token()["access_token"]
    args = {
        "endpoint": sim.info["pubsub_endpoint"],
        "accessToken": token,
        "instanceUrl": sim.instance_url,
        "organizationId": sim.info["org_id"],
        "topic": topic,
        "count": count,
        "replayId": replay_id,
        "earliest": earliest,
        "timeoutMs": timeout_ms,
    }
    p = subprocess.run([NODE, str(PUBSUB_DIR / "subscribe.mjs")], cwd=PUBSUB_DIR,
                       env={**os.environ, "PUBSUB_ARGS": json.dumps(args)},
                       capture_output=True, timeout=timeout_ms / 1000 + 30)
    lines = [json.loads(line) for line in p.stdout.decode().splitlines() if line.startswith("{")]
    return p.returncode, lines, p.stderr.decode()


def rest(sim, token, method, path, body=None):
    r = requests.request(method, f"{sim.instance_url}/services/data/v62.0/{path}", json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code in (200, 201, 204), f"{method} {path}: {r.status_code} {r.text}"
    return r.json() if r.content else None


@pytest.fixture(scope="module")
def cdc_sim():
    """A private simulator whose only changes are this module's."""
    from conftest import Sim

    s = Sim("Contact=1", seed=13)
    previous = s.trust()
    yield s
    s.stop()
    if previous is not None:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def changes(cdc_sim):
    """CREATE, UPDATE (one field nulled) and DELETE through REST, then an UNDELETE (REST has
    none on Salesforce either) by the simulator's workload, which can only pick that record."""
    s = cdc_sim
    assert s.info["pubsub_endpoint"].startswith("127.0.0.1:")
    token = s.token()["access_token"]
    acct = rest(s, token, "POST", "sobjects/Account", {"Name": "Pubsub Co", "Phone": "555-0100",
                                                        "Industry": "Energy"})["id"]
    rest(s, token, "PATCH", f"sobjects/Account/{acct}", {"Name": "Pubsub Co 2", "Phone": None})
    rest(s, token, "DELETE", f"sobjects/Account/{acct}")
    s.control("POST", "workload", json={"object": "Account", "undeletes_per_sec": 50})
    for _ in range(200):
        if any(e["header"]["changeType"] == "UNDELETE" for e in s.control("GET", "cdc")["events"]):
            break
        time.sleep(0.05)
    s.control("DELETE", "workload")
    events = s.control("GET", "cdc")["events"]
    assert [e["header"]["changeType"] for e in events] == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
    return acct, events


def test_account_change_events_decode_with_headers_and_bitmaps(cdc_sim, changes):
    acct, _ = changes
    rc, lines, err = run_client(cdc_sim, "/data/AccountChangeEvent", 4, earliest=True)
    assert rc == 0, f"client exit {rc}: {lines} {err[-2000:]}"
    events = [line["event"] for line in lines if "event" in line]
    headers = [e["payload"]["ChangeEventHeader"] for e in events]
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE", "DELETE", "UNDELETE"]
    for h in headers:
        assert h["entityName"] == "Account"
        assert h["recordIds"] == [acct]
        assert h["commitUser"].startswith("005")
        assert h["transactionKey"]
        assert int(h["commitTimestamp"]) > 0
    create, update, delete, undelete = (e["payload"] for e in events)
    assert create["Name"] == "Pubsub Co" and create["Phone"] == "555-0100"
    assert create["Industry"] == "Energy"
    assert headers[0]["changedFields"] == []
    # The client turned the bitmaps into field names.
    assert sorted(headers[1]["changedFields"]) == ["LastModifiedDate", "Name", "Phone"]
    assert headers[1]["nulledFields"] == ["Phone"]
    assert update["Name"] == "Pubsub Co 2" and update["Phone"] is None
    assert delete.get("Name") is None
    assert undelete["Name"] == "Pubsub Co 2"
    replay_ids = [int(e["replayId"]) for e in events]
    assert replay_ids == sorted(replay_ids) and len(set(replay_ids)) == 4


def test_all_change_events_channel_and_replay_from_a_stored_id(cdc_sim, changes):
    rc, lines, err = run_client(cdc_sim, "/data/ChangeEvents", 4, earliest=True)
    assert rc == 0, f"client exit {rc}: {lines} {err[-2000:]}"
    events = [line["event"] for line in lines if "event" in line]
    stored = int(events[1]["replayId"])
    rc, lines, err = run_client(cdc_sim, "/data/ChangeEvents", 2, replay_id=stored)
    assert rc == 0, f"client exit {rc}: {lines} {err[-2000:]}"
    replayed = [line["event"] for line in lines if "event" in line]
    assert [int(e["replayId"]) for e in replayed] == [int(e["replayId"]) for e in events[2:]]
    assert [e["payload"]["ChangeEventHeader"]["changeType"] for e in replayed] == ["DELETE", "UNDELETE"]


def test_a_bad_token_fails_cleanly(cdc_sim):
    rc, lines, _ = run_client(cdc_sim, "/data/AccountChangeEvent", 1,
                              token=cdc_sim.info["org_id"][:15] + "!bogus", timeout_ms=15000)
    assert rc == 3, f"expected a stream error, got exit {rc}: {lines}"
    error = lines[-1]["error"]
    assert error["code"] == 16, error  # UNAUTHENTICATED
    assert "authentication" in error["details"].lower()
