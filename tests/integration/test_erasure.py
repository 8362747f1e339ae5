"""Erasure on the real broker: after a DELETE, no endpoint and no compacted topic holds the user."""

from __future__ import annotations

import csv
import io
import time

import httpx
import orjson
from online_models.alerts import Alert
from online_models.erasure import ERASURE_HEADER
from online_models.pseudonym import pseudonym
from streams.producer import make_producer, send_events, send_profiles
from streams.topics import state_changelog
from tests.integration.conftest import read_dead_letters, read_topic, wait_until

MINUTE = 60_000
USERS = ("alice", "bob", "carol", "dave")
ERASED = "carol"


def latest_records(records: list) -> dict[bytes, object]:
    """The last record of each key, as a reader of a compacted topic sees it."""
    latest = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        latest[record.key] = record
    return latest


def history(now: int) -> list[dict]:
    """A few events per user over the last hours, a purchase for most."""
    events = []
    for u, user in enumerate(USERS):
        for i in range(3 + u):
            events.append({"event_id": f"{user}-v{i}", "user_id": user, "type": "view", "ts": now - (300 - 20 * i) * MINUTE,
                           "category": "snacks" if u % 2 else "beauty", "device": "ios"})
        if user != "dave":
            events.append({"event_id": f"{user}-p", "user_id": user, "type": "pay", "ts": now - 100 * MINUTE, "amount": 99.0 + u})
    return sorted(events, key=lambda e: e["ts"])


def profiles(now: int) -> list[dict]:
    return [{"user_id": user, "ts": now - 400 * MINUTE, "gender": "female", "city_tier": 2, "age": 30} for user in USERS]


def test_an_erased_user_leaves_no_trace_and_a_later_event_starts_afresh(stack, kafka_bootstrap):
    settings = stack.settings()
    worker = stack.start_product()
    now = int(time.time() * 1000)
    events = history(now)
    producer = make_producer(settings)
    send_profiles(producer, settings, profiles(now))
    send_events(producer, settings, events)
    # an alert for the user to be erased, shaped and keyed as the worker publishes them
    alert = Alert("alert-carol-1", ERASED, 0.81, 0.7, "potential", ["40 days since last purchase"], "2024-05-01T00:00:00.000Z",
                  1_714_521_600_000)
    producer.send(settings.topic("churn-alerts"), key=ERASED.encode(), value=alert.to_json_bytes())
    producer.flush()

    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))
    operator = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-operator"))
    admin = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-admin"))
    counts = {user: sum(e["user_id"] == user for e in events) for user in USERS}

    def portraits_complete():
        assert worker.alive(), worker.tail()
        for user, n in counts.items():
            response = reader.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200 or response.json()["lifetime"]["events"] != n or not response.json()["profile"]:
                return False
        return True

    wait_until(portraits_complete, timeout=180, interval=1, what="every portrait with its events and profile")
    wait_until(lambda: reader.get("/v1/alerts", params={"user_id": ERASED}).json()["count"] == 1, timeout=30, what="the alert")
    assert reader.get("/v1/overview").json()["users"] == len(USERS)

    # only an admin may erase
    assert reader.delete(f"/v1/users/{ERASED}").status_code == 403
    assert operator.delete(f"/v1/users/{ERASED}").status_code == 403
    accepted = admin.delete(f"/v1/users/{ERASED}")
    assert accepted.status_code == 202, accepted.text
    request_id = accepted.json()["request_id"]
    status_url = accepted.json()["status_url"]

    status = wait_until(
        lambda: (s := admin.get(status_url).json())["status"] == "completed" and s,
        timeout=120, interval=0.5, what="the erasure to complete",
    )
    assert status["request_id"] == request_id and status["completed_at"] >= status["requested_at"]

    # no endpoint knows the user
    assert reader.get(f"/v1/users/{ERASED}/portrait").status_code == 404
    everyone = reader.post("/v1/audiences/query", json={"limit": 100}).json()
    assert sorted(m["user_id"] for m in everyone["users"]) == sorted(set(USERS) - {ERASED})
    by_gender = reader.post("/v1/audiences/query", json={"filter": {"attributes": {"gender": ["female"]}}, "limit": 100}).json()
    assert ERASED not in {m["user_id"] for m in by_gender["users"]} and by_gender["count"] == len(USERS) - 1
    export = operator.post("/v1/audiences/export", json={"fields": ["profile.gender"]})
    rows = list(csv.reader(io.StringIO(export.text)))
    assert sorted(r[0] for r in rows[1:]) == sorted(set(USERS) - {ERASED})
    overview = reader.get("/v1/overview").json()
    assert overview["users"] == len(USERS) - 1
    assert sum(s["users"] for s in overview["genders"]) == len(USERS) - 1
    assert reader.get("/v1/alerts").json()["count"] == 0
    assert ERASED not in reader.get("/v1/alerts").text

    # the compacted topics: the newest record of the user's key is a tombstone of this request
    for topic in ("portraits", "profiles"):
        latest = latest_records(read_topic(kafka_bootstrap, settings.topic(topic)))
        record = latest[ERASED.encode()]
        assert record.value is None, topic
        assert dict(record.headers).get(ERASURE_HEADER) == request_id.encode(), topic
        assert all(latest[user.encode()].value is not None for user in USERS if user != ERASED), topic
    # states reach the changelog with their partition's next flush (within PORTRAITS_FLUSH_INTERVAL of its last record)
    def changelog_settled() -> bool:
        latest = latest_records(read_topic(kafka_bootstrap, state_changelog(settings.app_id)))
        return all(user.encode() in latest for user in USERS)

    wait_until(changelog_settled, timeout=30, interval=0.5, what="every user's state to reach the changelog")
    changelog = latest_records(read_topic(kafka_bootstrap, state_changelog(settings.app_id)))
    assert changelog[ERASED.encode()].value is None
    assert all(changelog[user.encode()].value is not None for user in USERS if user != ERASED)
    markers = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, settings.topic("churn-alerts")) if r.key == ERASED.encode()]
    assert markers[-1] == {"erased": True, "request_id": request_id, "user_id": ERASED}
    training = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, settings.topic("model-training"))]
    assert {"kind": "forget", "user_id": ERASED} in training

    # a malformed request is dead-lettered like any bad record, and erases nobody
    producer.send(settings.topic("erasures"), key=b"bob", value=b'{"request_id": "r-bad", "user_id": "bob"}')
    producer.flush()
    [dead] = read_dead_letters(kafka_bootstrap, settings.topic("events.dlq"), expected=1)
    assert dict(dead.headers)["reason"] == b"missing_field" and dict(dead.headers)["source.topic"] == settings.topic("erasures").encode()
    assert reader.get("/v1/users/bob/portrait").status_code == 200

    # a later event for the same id starts a fresh portrait
    fresh = {"event_id": "carol-again", "user_id": ERASED, "type": "view", "ts": int(time.time() * 1000), "category": "toys"}
    send_events(producer, settings, [fresh])
    producer.flush()
    producer.close()
    portrait = wait_until(
        lambda: (r := reader.get(f"/v1/users/{ERASED}/portrait")).status_code == 200 and r.json(),
        timeout=60, what="the fresh portrait",
    )
    assert portrait["lifetime"]["events"] == 1 and portrait["lifetime"]["purchases"] == 0
    assert [c["category"] for c in portrait["top_categories"]] == ["toys"]
    assert portrait["profile"] == {}
    assert reader.get("/v1/overview").json()["users"] == len(USERS)


def test_with_a_pseudonym_key_nothing_stored_holds_the_real_id(stack, kafka_bootstrap):
    secret = "integration-secret"
    stack.env["PORTRAITS_PSEUDONYM_KEY"] = secret
    settings = stack.settings()
    worker = stack.start_product()
    events = history(int(time.time() * 1000))
    producer = make_producer(settings)
    send_events(producer, settings, events)
    producer.flush()
    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))
    admin = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-admin"))
    alias = {user: pseudonym(user, secret.encode()) for user in USERS}

    def found():
        assert worker.alive(), worker.tail()
        return all(reader.get(f"/v1/users/{user}/portrait").status_code == 200 for user in USERS)

    wait_until(found, timeout=180, interval=1, what="portraits looked up by the real ids")
    assert reader.get(f"/v1/users/{ERASED}/portrait").json()["user_id"] == alias[ERASED]
    listed = reader.post("/v1/audiences/query", json={"limit": 100}).json()
    assert sorted(m["user_id"] for m in listed["users"]) == sorted(alias.values())

    portraits = read_topic(kafka_bootstrap, settings.topic("portraits"))
    assert {r.key for r in portraits} == {a.encode() for a in alias.values()}
    assert not any(user.encode() in (r.value or b"") for r in portraits for user in USERS)
    changelog = read_topic(kafka_bootstrap, state_changelog(settings.app_id))
    users_in_changelog = {r.key for r in changelog if not r.key.startswith(b"\x00")}  # NUL: the worker's bookkeeping
    assert users_in_changelog == {a.encode() for a in alias.values()}

    request = admin.delete(f"/v1/users/{ERASED}").json()
    wait_until(lambda: admin.get(request["status_url"]).json()["status"] == "completed", timeout=120, what="the erasure")
    assert reader.get(f"/v1/users/{ERASED}/portrait").status_code == 404
    assert latest_records(read_topic(kafka_bootstrap, settings.topic("portraits")))[alias[ERASED].encode()].value is None
    producer.close()
