"""Churn alerts (stored once, listed newest first, streamed live) and the model summary."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import orjson
import pytest

from api.alerts import ALERTS_SPACE, AlertHub
from api.app import MODELS_SPACE
from tests.unit.test_api_synthetic import auth, make_client

DAY = 86_400_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z


def alert(n: int, user: str, *, risk: float = 0.8, layer: str = "high_value", day: float = 0) -> dict:
    ts_ms = T0 + int(day * DAY)
    return {
        "alert_id": f"a{n:03d}",
        "user_id": user,
        "risk": risk,
        "threshold": 0.7,
        "layer": layer,
        "reasons": ["no purchase for 40 days"],
        "ts": datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "ts_ms": ts_ms,
        "kind": "churn_risk",
    }


def alert_records(alerts: list[dict], start: int = 0) -> list:
    return [(0, start + i, a["user_id"].encode(), orjson.dumps(a)) for i, a in enumerate(alerts)]


ALERTS = [
    alert(1, "u1", risk=0.75, day=1),
    alert(2, "u2", risk=0.95, day=2, layer="potential"),
    alert(3, "u1", risk=0.85, day=3),
    alert(4, "u3", risk=0.72, day=4, layer="potential"),
    alert(5, "u2", risk=0.9, day=5),
]


def test_alerts_are_stored_once_and_listed_newest_first(store):
    store.apply("churn-alerts", ALERTS_SPACE, alert_records(ALERTS))
    store.apply("churn-alerts", ALERTS_SPACE, alert_records([ALERTS[1], ALERTS[3]], start=5))  # redelivered
    store.apply("churn-alerts", ALERTS_SPACE, [(0, 7, b"u9", b"not json"), (0, 8, b"u9", None)])
    assert store.count(ALERTS_SPACE) == 5
    with make_client(store) as client:
        listed = client.get("/v1/alerts", headers=auth()).json()
        assert listed["count"] == 5
        assert [a["alert_id"] for a in listed["alerts"]] == ["a005", "a004", "a003", "a002", "a001"]
        assert listed["alerts"][0] == ALERTS[4]

        def ids(**params):
            response = client.get("/v1/alerts", params=params, headers=auth())
            assert response.status_code == 200, response.text
            return [a["alert_id"] for a in response.json()["alerts"]]

        assert ids(user_id="u1") == ["a003", "a001"]
        assert ids(layer="potential") == ["a004", "a002"]
        assert ids(min_risk=0.85) == ["a005", "a003", "a002"]
        assert ids(since="2024-05-03T12:00:00Z") == ["a005", "a004", "a003"]
        assert ids(since="2024-05-03T20:00:00+08:00") == ["a005", "a004", "a003"]
        assert ids(user_id="u2", since="2024-05-03T12:00:00Z") == ["a005"]
        assert ids(limit=2) == ["a005", "a004"]
        assert ids(since="2024-05-03T00:00:00Z") == ["a005", "a004", "a003", "a002"]  # at or after
        assert ids(user_id="nobody") == []
        assert "portraits_api_alerts_stored 5.0" in client.get("/metrics").text

        for params in ({"since": "2024-05-03T00:00:00"}, {"min_risk": 2}, {"limit": 0}, {"since": "yesterday"}):
            response = client.get("/v1/alerts", params=params, headers=auth())
            assert response.status_code == 422, params


@pytest.mark.timeout(30)
def test_a_new_alert_reaches_a_live_stream(store):
    store.apply("churn-alerts", ALERTS_SPACE, alert_records(ALERTS[:2]))  # old ones are not replayed
    with make_client(store) as client:
        with client.stream("GET", "/v1/alerts/stream", headers=auth()) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            fresh = alert(9, "u7", risk=0.99, day=9)
            # the follower thread writes; the hub hands the alert to the stream's event loop
            writer = threading.Thread(
                target=store.apply, args=("churn-alerts", ALERTS_SPACE, alert_records([ALERTS[0], fresh], start=2))
            )
            writer.start()
            writer.join()
            lines = []
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("data:"):
                    break
        assert "event: alert" in lines and "id: a009" in lines
        assert orjson.loads(lines[-1].removeprefix("data:").strip()) == fresh


def test_a_stream_needs_a_token(store):
    with make_client(store) as client:
        assert client.get("/v1/alerts/stream").status_code == 401


def test_a_slow_subscriber_loses_its_oldest_alerts_and_is_told():
    hub = AlertHub(queue_size=2)

    async def scenario():
        subscription = hub.subscribe(min_risk=0.5)
        publisher = threading.Thread(target=hub.publish, args=([alert(i, "u1") for i in range(5)] + [alert(9, "u1", risk=0.1)],))
        publisher.start()
        await asyncio.to_thread(publisher.join)
        await asyncio.sleep(0.05)
        received = [subscription.queue.get_nowait()["alert_id"] for _ in range(subscription.queue.qsize())]
        hub.unsubscribe(subscription)
        return received, subscription.dropped

    received, dropped = asyncio.run(scenario())
    assert received == ["a003", "a004"] and dropped == 3
    assert hub.subscribers == 0


def test_the_model_summary_is_served_once_published(store):
    with make_client(store) as client:
        missing = client.get("/v1/models", headers=auth())
        assert missing.status_code == 404 and "no model summary yet" in missing.json()["detail"]
        summary = {"churn": {"model": "mbgnbd", "users": 300}, "segments": [{"id": 0, "name": "typical shoppers"}]}
        store.apply("models", MODELS_SPACE, [(0, 0, b"summary", orjson.dumps(summary))])
        found = client.get("/v1/models", headers=auth())
        # with what this API scores churn (no snapshot yet: nothing)
        serving = {"model_version": None, "rescored_version": None, "rescore_pending": False, "portraits_rescored": 0}
        assert found.status_code == 200 and found.json() == {**summary, "serving": serving}
        assert client.get("/v1/models").status_code == 401


def open_streams(app, requests: list[tuple[str, str]], *, leave_after: float) -> list[int]:
    """Open streams (method, token) on ``app`` at once; each client leaves after ``leave_after`` seconds
    (0: before anything is sent). The statuses, in order."""
    from tests.unit.test_api_limits import asgi_scope

    async def one(method: str, token: str) -> int:
        statuses: list[int] = []

        async def receive():
            await asyncio.sleep(leave_after)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
                await asyncio.sleep(0.05)  # a real server's write takes a while: the client may be gone by then

        headers = [(b"authorization", f"Bearer {token}".encode())]
        await app(asgi_scope(method, "/v1/alerts/stream", headers), receive, send)
        return statuses[0] if statuses else 0

    async def scenario():
        return await asyncio.gather(*(one(method, token) for method, token in requests))

    return asyncio.run(scenario())


@pytest.mark.timeout(30)
def test_a_client_that_leaves_before_the_first_event_leaves_no_subscription(store):
    app = make_client(store).app
    hub = store.handlers[ALERTS_SPACE].hub
    for _ in range(3):
        open_streams(app, [("GET", "t-reader")], leave_after=0)
        assert hub.subscribers == 0


@pytest.mark.timeout(30)
def test_live_streams_are_capped_per_token_and_overall(tmp_path):
    from api.app import open_store
    from api.auth import ApiSettings

    capped = open_store(tmp_path, ApiSettings(api_streams_per_token=2, api_streams_total=3))
    try:
        app = make_client(capped).app
        hub = capped.handlers[ALERTS_SPACE].hub
        # the later ones arrive while the first three are open; the 429 and 503 answers are at once
        statuses = open_streams(app, [("GET", "t-reader")] * 3 + [("GET", "t-admin")] * 2, leave_after=0.5)
        assert statuses == [200, 200, 429, 200, 503]
        assert hub.subscribers == 0
        assert open_streams(app, [("GET", "t-reader")] * 2, leave_after=0.1) == [200, 200]  # the slots are free again
    finally:
        capped.close()


def test_alerts_older_than_the_retention_are_pruned_with_their_postings(tmp_path):
    from api.app import open_store
    from api.auth import ApiSettings

    store = open_store(tmp_path, ApiSettings(api_alert_retention_days=2))
    try:
        store.apply("churn-alerts", ALERTS_SPACE, alert_records(ALERTS[:2]))  # days 1 and 2
        assert store.count(ALERTS_SPACE) == 2
        store.apply("churn-alerts", ALERTS_SPACE, alert_records(ALERTS[2:], start=2))  # days 3-5: days 1 and 2 go
        assert store.count(ALERTS_SPACE) == 3
        with make_client(store) as client:
            listed = client.get("/v1/alerts", headers=auth()).json()
            assert [a["alert_id"] for a in listed["alerts"]] == ["a005", "a004", "a003"]
            assert client.get("/v1/alerts", params={"user_id": "u2"}, headers=auth()).json()["count"] == 1
        assert not [k for k in store.keys_between(b"i:alert", b"i:alerz") if b"a001" in k or b"a002" in k]
        assert store.get(ALERTS_SPACE, b"a001") is None
    finally:
        store.close()
