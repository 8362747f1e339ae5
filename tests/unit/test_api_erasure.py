"""DELETE /v1/users/{id} and the erasure of a user from the API's store, without Kafka.

A fake producer stands in for the broker; the worker's answer (the portrait
tombstone with its header, the alerts marker) is applied to the store as the
follower would. tests/integration/test_erasure.py runs the whole path on the real broker.
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading

import pytest
from fastapi.testclient import TestClient

from api import indexes as ix
from api.alerts import ALERTS_SPACE, AlertHub
from api.app import create_app
from api.indexes import PORTRAITS_SPACE, PortraitSpace
from online_models.erasure import ERASURE_HEADER, erasure_marker, parse_erasure
from online_models.pseudonym import pseudonym
from streams.settings import Settings
from tests.unit.test_api_alerts import alert, alert_records
from tests.unit.test_api_ingest import FakeProducer
from tests.unit.test_api_synthetic import TOKENS, auth, make_store, records, synthetic_portraits

USERS = 60


@pytest.fixture
def setup(tmp_path):
    portraits = list(synthetic_portraits(USERS, seed=4))
    store = make_store(tmp_path / "store", portraits)
    producer = FakeProducer()
    settings = Settings(data_dir=tmp_path, topic_prefix="shop1-", kafka="127.0.0.1:1")
    app = create_app(settings, tokens=TOKENS, store=store, follow=False, producer=producer)
    with TestClient(app) as client:
        yield client, store, producer, {p["user_id"]: p for p in portraits}
    store.close()


def worker_answer(store, user: str, request_id: str, *, offset: int = 10_000, steps=("portraits", "alerts")) -> None:
    """Apply what the worker sends for an erasure, as the follower does."""
    if "portraits" in steps:
        tombstone = (0, offset, user.encode(), None, [(ERASURE_HEADER, request_id.encode())])
        store.apply("shop1-portraits", PORTRAITS_SPACE, [tombstone])
    if "alerts" in steps:
        store.apply("shop1-churn-alerts", ALERTS_SPACE, [(0, offset, user.encode(), erasure_marker(request_id, user))])


def stored_postings(store) -> set[bytes]:
    return set(store.keys_between(ix.INDEX_SPACE, b"i;"))


def erase(client, user: str) -> str:
    response = client.delete(f"/v1/users/{user}", headers=auth("admin"))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["status_url"] == f"/v1/erasures/{body['request_id']}"
    return body["request_id"]


def status(client, request_id: str) -> dict:
    response = client.get(f"/v1/erasures/{request_id}", headers=auth("admin"))
    assert response.status_code == 200, response.text
    return response.json()


def test_only_an_admin_may_erase_and_the_request_is_flushed_to_kafka(setup):
    client, _, producer, portraits = setup
    user = sorted(portraits)[7]
    assert client.delete(f"/v1/users/{user}").status_code == 401
    for role in ("reader", "operator"):
        assert client.delete(f"/v1/users/{user}", headers=auth(role)).status_code == 403
    assert producer.delivered == []
    request_id = erase(client, user)
    assert producer.buffered == [] and producer.flushes == 1
    [(topic, key, value)] = producer.delivered
    assert topic == "shop1-erasures" and key == user.encode()
    request = parse_erasure(value)
    assert request.request_id == request_id and request.user_id == user
    record = status(client, request_id)
    assert record["status"] == "pending" and record["completed_at"] is None and record["requested_at"]
    assert client.get(f"/v1/erasures/{request_id}", headers=auth("operator")).status_code == 403
    assert client.get("/v1/erasures/nope", headers=auth("admin")).status_code == 404
    assert client.get(f"/v1/users/{user}/portrait", headers=auth()).status_code == 200  # until the worker answers


def test_a_request_kafka_does_not_confirm_is_a_503_and_not_recorded(setup):
    client, store, producer, portraits = setup
    producer.fail = True
    response = client.delete(f"/v1/users/{sorted(portraits)[0]}", headers=auth("admin"))
    assert response.status_code == 503 and "retry" in response.json()["detail"]
    assert list(store.scan(b"e:")) == []


def test_after_completion_no_endpoint_knows_the_user(setup):
    client, store, _, portraits = setup
    user = sorted(portraits)[11]
    other = sorted(portraits)[12]
    store.apply("shop1-churn-alerts", ALERTS_SPACE, alert_records([alert(1, user, day=1), alert(2, other, day=2), alert(3, user, day=3)]))
    before = client.get("/v1/overview", headers=auth()).json()
    assert {a["user_id"] for a in client.get("/v1/alerts", headers=auth()).json()["alerts"]} == {user, other}

    request_id = erase(client, user)
    worker_answer(store, user, request_id, steps=("portraits",))
    assert status(client, request_id)["status"] == "pending"  # the alerts are not gone yet
    worker_answer(store, user, request_id, steps=("alerts",))
    record = status(client, request_id)
    assert record["status"] == "completed" and record["portrait_removed"] and record["alerts_removed"]
    assert record["completed_at"] == max(record["portrait_removed"], record["alerts_removed"])

    # the portrait, every posting and its share of the running aggregates are gone
    assert client.get(f"/v1/users/{user}/portrait", headers=auth()).status_code == 404
    remaining = {u: p for u, p in portraits.items() if u != user}
    portrait_postings = {k for k in stored_postings(store) if not k.startswith(b"i:alert_")}
    assert {ix.posting_user(k) for k in portrait_postings} == {u.encode() for u in remaining}
    handler = store.handler(PORTRAITS_SPACE)
    assert isinstance(handler, PortraitSpace) and handler.aggregates() == ix.aggregate(remaining.values())
    after = client.get("/v1/overview", headers=auth()).json()
    assert after["users"] == before["users"] - 1 == USERS - 1

    everyone = client.post("/v1/audiences/query", json={"limit": 1000}, headers=auth()).json()
    assert everyone["count"] == USERS - 1 and user not in {m["user_id"] for m in everyone["users"]}
    export = client.post("/v1/audiences/export", json={"fields": ["user_id"]}, headers=auth("operator"))
    rows = list(csv.reader(io.StringIO(export.text)))
    assert len(rows) == USERS and all(user not in row for row in rows)
    for layer in ("high_value", "potential", "ordinary", "low_value"):
        listed = client.post("/v1/audiences/query", json={"filter": {"layers": [layer]}, "limit": 1000}, headers=auth()).json()
        assert user not in {m["user_id"] for m in listed["users"]}

    # the alerts: none of the user's, the other user's stays
    alerts = client.get("/v1/alerts", headers=auth()).json()["alerts"]
    assert [a["user_id"] for a in alerts] == [other]
    assert client.get("/v1/alerts", params={"user_id": user}, headers=auth()).json()["count"] == 0
    assert store.count(ALERTS_SPACE) == 1
    assert not any(user.encode() in key or user.encode() in value for key, value in store.db.items())

    # a later event starts a fresh portrait
    fresh = {"user_id": user, "lifetime": {"events": 1}, "rfm": {"layer": "low_value"}}
    store.apply("shop1-portraits", PORTRAITS_SPACE, records([fresh], start_offset=20_000))
    assert client.get(f"/v1/users/{user}/portrait", headers=auth()).json() == fresh
    assert handler.aggregates() == ix.aggregate([*remaining.values(), fresh])


def test_a_repeated_or_early_answer_still_completes_the_request(setup):
    client, store, _, portraits = setup
    user = sorted(portraits)[3]
    first = erase(client, user)
    worker_answer(store, user, first)
    second = erase(client, user)  # the user is gone already: the worker answers all the same
    worker_answer(store, user, second, offset=10_001)
    assert status(client, first)["status"] == status(client, second)["status"] == "completed"
    assert store.count(PORTRAITS_SPACE) == USERS - 1

    # an answer applied before the request was recorded (another API instance took it)
    worker_answer(store, "u-elsewhere", "from-elsewhere", offset=10_002)
    record = status(client, "from-elsewhere")
    assert record["status"] == "completed" and record["requested_at"] is None


def test_a_marker_drops_the_alerts_before_it_in_the_same_batch_and_keeps_later_ones(tmp_path):
    store = make_store(tmp_path)
    batch = alert_records([alert(1, "u1", day=1), alert(2, "u2", day=1)])
    batch.append((0, 2, b"u1", erasure_marker("r1", "u1")))
    batch += alert_records([alert(3, "u1", day=9)], start=3)
    store.apply("churn-alerts", ALERTS_SPACE, batch)
    with TestClient(create_app(Settings(data_dir=tmp_path, kafka="127.0.0.1:1"), tokens=TOKENS, store=store, follow=False)) as client:
        listed = client.get("/v1/alerts", headers=auth()).json()["alerts"]
    assert [a["alert_id"] for a in listed] == ["a003", "a002"]
    assert store.count(ALERTS_SPACE) == 2
    store.close()


def test_live_subscribers_lose_the_queued_alerts_of_an_erased_user(tmp_path):
    store = make_store(tmp_path)
    handler = store.handler(ALERTS_SPACE)
    hub: AlertHub = handler.hub

    async def scenario():
        subscription = hub.subscribe()
        batches = (
            alert_records([alert(1, "u1"), alert(2, "u2")]),
            [(0, 2, b"u1", erasure_marker("r1", "u1"))],
            alert_records([alert(3, "u3"), alert(4, "u3")], start=3) + [(0, 5, b"u3", erasure_marker("r2", "u3"))],
        )
        for batch in batches:
            writer = threading.Thread(target=store.apply, args=("churn-alerts", ALERTS_SPACE, batch))
            writer.start()
            await asyncio.to_thread(writer.join)
        await asyncio.sleep(0.05)
        queued = [subscription.queue.get_nowait()["alert_id"] for _ in range(subscription.queue.qsize())]
        hub.unsubscribe(subscription)
        return queued

    assert asyncio.run(scenario()) == ["a002"]
    store.close()


def test_with_a_pseudonym_key_lookups_and_erasures_take_the_real_id(tmp_path):
    secret = "shop secret"
    alias = pseudonym("alice", secret.encode())
    store = make_store(tmp_path / "store", [{"user_id": alias, "lifetime": {"events": 3}}])
    store.apply("churn-alerts", ALERTS_SPACE, alert_records([alert(1, alias)]))
    producer = FakeProducer()
    settings = Settings(data_dir=tmp_path, kafka="127.0.0.1:1", pseudonym_key=secret)
    with TestClient(create_app(settings, tokens=TOKENS, store=store, follow=False, producer=producer)) as client:
        assert client.get("/v1/users/alice/portrait", headers=auth()).json()["user_id"] == alias
        assert client.get(f"/v1/users/{alias}/portrait", headers=auth()).status_code == 404  # the pseudonym is hashed again
        assert client.get("/v1/alerts", params={"user_id": "alice"}, headers=auth()).json()["count"] == 1
        request_id = erase(client, "alice")
        [(_, key, value)] = producer.delivered
        assert key == b"alice" and parse_erasure(value).user_id == "alice"  # partitioned like alice's events
        worker_answer(store, alias, request_id)
        assert status(client, request_id)["status"] == "completed"
        assert client.get("/v1/users/alice/portrait", headers=auth()).status_code == 404
        assert client.get("/v1/alerts", headers=auth()).json()["count"] == 0
    assert not any(b"alice" in key or b"alice" in value for key, value in store.db.items())
    store.close()
