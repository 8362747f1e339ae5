"""The ops API on the real broker: events in over HTTP, portraits out, audiences equal to an independent count."""

from __future__ import annotations

import csv
import io
import re
import time
import httpx

from streams.producer import make_producer, send_profiles
from online_models.simulation import ShopSimulator
from tests.integration.conftest import wait_until

USERS = 80
DAYS = 5
BATCH = 400


def portrait_matches(p: dict) -> bool:
    """The audience of the test, read plainly from a portrait: paid in the last 30 days, female or tier-1/2 city."""
    paid = (p.get("windows") or {}).get("30d", {}).get("purchases", 0) >= 1
    profile = p.get("profile") or {}
    return paid and profile.get("gender") == "female" and str(profile.get("city_tier")) in {"1", "2"}


AUDIENCE = {
    "behaviour": [{"kind": "performed", "event": "pay", "days": 30, "at_least": 1}],
    "attributes": {"gender": ["female"], "city_tier": [1, 2]},
}


def test_events_over_http_become_portraits_and_audiences(stack):
    worker = stack.start_product()
    settings = stack.settings()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * 86_400_000, seed=21)
    events = sorted(simulator.history(DAYS), key=lambda e: e["ts"])
    assert len(events) > 800, len(events)
    producer = make_producer(settings)
    send_profiles(producer, settings, simulator.profiles())
    producer.flush()
    producer.close()

    operator = httpx.Client(base_url=stack.api, timeout=30, headers=stack.auth_headers("test-operator"))
    reader = httpx.Client(base_url=stack.api, timeout=30, headers=stack.auth_headers("test-reader"))
    anonymous = httpx.Client(base_url=stack.api, timeout=30)

    # access control
    assert anonymous.post("/v1/events", json=events[:1]).status_code == 401
    assert anonymous.get("/v1/overview").status_code == 401
    assert anonymous.get("/healthz").status_code == 200
    assert reader.post("/v1/events", json=events[:1]).status_code == 403
    assert reader.post("/v1/audiences/export", json={}).status_code == 403
    bad_token = httpx.get(f"{stack.api}/v1/overview", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad_token.status_code == 401 and bad_token.headers["www-authenticate"].startswith("Bearer")

    # ingestion: batches over HTTP, one with hostile events that must be reported and not written
    hostile = [
        {"event_id": "x1", "user_id": "u0001", "type": "teleport", "ts": now},
        {"event_id": "x2", "user_id": "u0001", "type": "pay", "ts": now},
        {"event_id": "x3", "user_id": "u0001", "type": "view", "ts": "yesterday"},
    ]
    accepted = 0
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        if start == 0:
            batch = hostile + batch
        response = operator.post("/v1/events", json={"events": batch} if start else batch)
        assert response.status_code == 200, response.text
        result = response.json()
        accepted += result["accepted"]
        if start == 0:
            assert [(e["index"], e["reason"]) for e in result["errors"]] == [
                (0, "unknown_type"),
                (1, "missing_amount"),
                (2, "invalid_field"),
            ]
        else:
            assert result["errors"] == []
    assert accepted == len(events)
    assert operator.post("/v1/events", content=b"{oops", headers={"Content-Type": "application/json"}).status_code == 400

    by_user: dict[str, set] = {p["user_id"]: set() for p in simulator.profiles()}  # some users only have a profile
    for event in events:
        by_user[event["user_id"]].add(event["event_id"])

    def all_portraits_complete():
        assert worker.alive(), worker.tail()
        for user, ids in by_user.items():
            response = reader.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200 or response.json()["lifetime"]["events"] != len(ids):
                return False
        return True

    wait_until(all_portraits_complete, timeout=240, interval=2, what="every portrait to hold the events sent over HTTP")

    def audience_equals_independent_count():
        portraits = {user: reader.get(f"/v1/users/{user}/portrait").json() for user in by_user}
        expected = sorted(u for u, p in portraits.items() if portrait_matches(p))
        members, cursor, count = [], None, None
        while True:
            body = {"filter": AUDIENCE, "limit": 7, "fields": ["windows.30d.purchases", "profile.gender"], "exact_count": True}
            if cursor:
                body["cursor"] = cursor
            page = reader.post("/v1/audiences/query", json=body)
            assert page.status_code == 200, page.text
            page = page.json()
            count = page["count"]
            members += page["users"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert set(page["plan"]["indexes"]) >= {"pay30", "attr.gender"}
        if count != len(expected) or [m["user_id"] for m in members] != expected:
            return False  # the worker republished a portrait in between; try again
        assert all(m["fields"]["profile.gender"] == "female" and m["fields"]["windows.30d.purchases"] >= 1 for m in members)
        return expected

    expected = wait_until(audience_equals_independent_count, timeout=60, interval=2, what="audience = independent count")
    assert 0 < len(expected) < USERS

    export = operator.post("/v1/audiences/export", json={"filter": AUDIENCE, "fields": ["profile.city_tier"]})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["user_id", "profile.city_tier"]
    assert [r[0] for r in rows[1:]] == expected
    assert {r[1] for r in rows[1:]} <= {"1", "2"}

    overview = reader.get("/v1/overview").json()
    assert overview["users"] == len(by_user) == USERS
    assert sum(s["users"] for s in overview["genders"]) == sum(1 for p in simulator.profiles() if p.get("gender"))
    assert overview["warnings"] and "thin" in overview["warnings"][0]
    filtered = reader.post("/v1/overview", json={"filter": AUDIENCE}).json()
    assert filtered["users"] == len(expected)

    metrics = anonymous.get("/metrics").text
    assert f"portraits_api_portraits_stored {float(len(by_user))}" in metrics
    assert 'route="/v1/audiences/query"' in metrics
    assert 'portraits_api_ingested_events_total{outcome="accepted"}' in metrics
    # every portrait written to the store had its delay from the worker's send observed
    delays = re.search(r'portraits_api_record_delay_seconds_count\{topic="[^"]*portraits"\} ([0-9.e+]+)', metrics)
    assert delays and float(delays.group(1)) >= len(by_user)
