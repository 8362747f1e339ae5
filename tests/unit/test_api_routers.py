"""Each router alone on a bare FastAPI app, its dependencies given through ``dependency_overrides``."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import dependencies as deps
from api.auth import TokenRegistry, get_tokens
from api.ingest import EventLogUnavailable
from api.limits import QueryGate
from api.metrics import ApiMetrics
from api.rescore import MODELS_SPACE
from api.routers import alerts, audiences, erasure, ingestion, items, models, operations, overview, portraits
from online_models.settings import Settings
from tests.unit.test_api_synthetic import TOKENS, auth, make_store, synthetic_portraits


class Sink:
    """Records what the routes write; ``fail`` makes every write unconfirmed."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.written: list[tuple[str | None, list[tuple[bytes, bytes]]]] = []

    def write(self, records, *, topic=None):
        if self.fail:
            raise EventLogUnavailable("the broker is away")
        self.written.append((topic, records))


def mounted(router, **given) -> TestClient:
    """A client of ``router`` alone, with the test tokens and ``given`` as ``{dependency: value}``."""
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_tokens] = lambda: TokenRegistry(TOKENS)
    for dependency, value in given.items():
        app.dependency_overrides[getattr(deps, dependency)] = returning(value)
    return TestClient(app)


def returning(value):
    """A dependency without parameters that gives ``value``."""
    return lambda: value


@pytest.fixture
def populated(tmp_path: Path):
    store = make_store(tmp_path, list(synthetic_portraits(40, seed=5)))
    yield store
    store.close()


def test_operations_health_metrics_and_dashboard():
    metrics = ApiMetrics(lambda: {"portraits_api_portraits_stored": 7})
    with mounted(operations.router, get_follower=None, get_metrics=metrics) as client:
        assert client.get("/healthz").json() == {
            "status": "ok", "topics": [], "caught_up": False, "lag": None, "follower_error": None, "waiting_for_topics": [],
        }
        assert "portraits_api_portraits_stored 7.0" in client.get("/metrics").text
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]

    class Follower:
        spaces = {"portraits": b"p:"}
        caught_up = threading.Event()
        lag, error, missing_topics = 3, None, ["churn-alerts"]

    with mounted(operations.router, get_follower=Follower(), get_metrics=metrics) as client:
        health = client.get("/healthz").json()
        assert health["topics"] == ["portraits"] and health["lag"] == 3 and health["waiting_for_topics"] == ["churn-alerts"]


def test_a_followed_records_delay_into_the_store_is_observed_from_its_kafka_timestamp():
    metrics = ApiMetrics(lambda: {})
    now_ms = time.time() * 1000
    Record = collections.namedtuple("Record", "timestamp")
    metrics.records_stored("p-portraits", [Record(now_ms - 40), Record(now_ms - 400), Record(-1), Record(None)])
    samples = {(s.name, s.labels.get("le")): s.value for s in metrics.record_delay.collect()[0].samples}
    assert samples[("portraits_api_record_delay_seconds_count", None)] == 2  # records without a timestamp are left out
    assert samples[("portraits_api_record_delay_seconds_bucket", "0.03")] == 0
    assert samples[("portraits_api_record_delay_seconds_bucket", "0.05")] == 1
    assert samples[("portraits_api_record_delay_seconds_bucket", "0.5")] == 2


def test_portraits_are_looked_up_under_the_stored_id(populated):
    stored = "u07"
    with mounted(portraits.router, get_store=populated, get_stored_id=lambda user: stored if user == "alias" else user) as client:
        found = client.get("/v1/users/alias/portrait", headers=auth())
        assert found.status_code == 200 and found.json()["user_id"] == stored
        assert client.get("/v1/users/nobody/portrait", headers=auth()).status_code == 404
        assert client.get("/v1/users/alias/portrait").status_code == 401


def item_portrait(key: str) -> bytes:
    """A stored item or category portrait, as the item engines publish them."""
    from online_models.item_facts import ItemFact
    from online_models.item_portrait import ItemConfig, ItemState, fold, render

    state = ItemState(key)
    name = key.split(":", 1)[1]
    fold(state, ItemFact(key, "view", 1714536000000, 19844, name if key.startswith("item:") else None,
                         name if key.startswith("category:") else "toys", 0, (0, 1)))
    return orjson.dumps(render(state, as_of=1714536000000, config=ItemConfig()))


def test_item_and_category_portraits_are_served_as_stored_and_unknown_ones_are_a_404(store):
    from tests.portrait_contract import check_item_published

    keys = ["item:sku-1", "item:shop/7/sku 2", "category:toys", "category:baby & kids"]
    store.apply("item-portraits", items.ITEM_PORTRAITS_SPACE, [(0, i, key.encode(), item_portrait(key)) for i, key in enumerate(keys)])
    with mounted(items.router, get_store=store) as client:
        for path, key in (
            ("/v1/items/sku-1/portrait", "item:sku-1"),
            ("/v1/items/shop/7/sku 2/portrait", "item:shop/7/sku 2"),
            ("/v1/items/shop%2F7%2Fsku%202/portrait", "item:shop/7/sku 2"),
            ("/v1/categories/toys/portrait", "category:toys"),
            ("/v1/categories/baby%20%26%20kids/portrait", "category:baby & kids"),
        ):
            found = client.get(path, headers=auth())
            assert found.status_code == 200, (path, found.text)
            assert check_item_published(found.content).key == key
        missing = client.get("/v1/items/toys/portrait", headers=auth())  # a category's name is not an item's id
        assert missing.status_code == 404 and "no portrait for item 'toys'" in missing.json()["detail"]
        missing = client.get("/v1/categories/sku-1/portrait", headers=auth())
        assert missing.status_code == 404 and "category 'sku-1'" in missing.json()["detail"]
        assert client.get("/v1/items/sku-1/portrait").status_code == 401
        bad = client.get("/v1/items/sku%E2%80%AE1/portrait", headers=auth())
        assert bad.status_code == 422 and "U+202E" in bad.text
        assert client.get("/v1/items/" + "x" * 129 + "/portrait", headers=auth()).status_code == 422


def test_erasure_writes_the_request_to_the_prefixed_topic_and_tracks_it(store):
    sink = Sink()
    settings = Settings(topic_prefix="shop1-", kafka="127.0.0.1:1")
    with mounted(erasure.router, get_store=store, get_sink=sink, get_app_settings=settings) as client:
        assert client.delete("/v1/users/u1", headers=auth("operator")).status_code == 403
        accepted = client.delete("/v1/users/u1", headers=auth("admin"))
        assert accepted.status_code == 202, accepted.text
        [(topic, [(key, value)])] = sink.written
        assert topic == "shop1-erasures" and key == b"u1" and orjson.loads(value)["user_id"] == "u1"
        status = client.get(accepted.json()["status_url"], headers=auth("admin")).json()
        assert status["status"] == "pending" and status["request_id"] == accepted.json()["request_id"]
        sink.fail = True
        assert client.delete("/v1/users/u2", headers=auth("admin")).status_code == 503


def test_audiences_page_and_export_under_the_query_gate(populated):
    gate = QueryGate(concurrency=1, timeout_s=5)
    with mounted(audiences.router, get_store=populated, get_queries=gate) as client:
        page = client.post("/v1/audiences/query", json={"filter": {}, "fields": ["rfm"], "limit": 5}, headers=auth())
        assert page.status_code == 200, page.text
        assert len(page.json()["users"]) == 5
        assert client.post("/v1/audiences/export", json={"filter": {}}, headers=auth()).status_code == 403
        export = client.post("/v1/audiences/export", json={"filter": {}}, headers=auth("operator"))
        assert export.status_code == 200 and export.headers["x-audience-count"] == "40"
        assert export.text.splitlines()[0].startswith("user_id")


def test_overview_of_everyone_and_of_an_audience(populated):
    gate = QueryGate(concurrency=1, timeout_s=5)
    with mounted(overview.router, get_store=populated, get_queries=gate) as client:
        everyone = client.get("/v1/overview", headers=auth())
        assert everyone.status_code == 200, everyone.text
        audience = client.post("/v1/overview", json={"filter": {}}, headers=auth())
        assert audience.status_code == 200 and audience.json()["users"] == everyone.json()["users"] == 40


def test_alerts_list_and_a_store_without_alerts_streams_nothing(store, tmp_path):
    with mounted(alerts.router, get_store=store, get_stored_id=lambda user: user) as client:
        assert client.get("/v1/alerts", headers=auth()).json() == {"count": 0, "alerts": []}
        assert client.get("/v1/alerts?min_risk=2", headers=auth()).status_code == 422
    from api.store import LocalStore

    plain = LocalStore(tmp_path / "plain")
    try:
        with mounted(alerts.router, get_store=plain, get_stored_id=lambda user: user) as client:
            response = client.get("/v1/alerts/stream", params={"token": "t-reader"})
            assert response.status_code == 503 and "does not follow churn alerts" in response.json()["detail"]
    finally:
        plain.close()


def test_models_summary_once_published(store):
    with mounted(models.router, get_store=store) as client:
        assert client.get("/v1/models", headers=auth()).status_code == 404
        store.apply("models", MODELS_SPACE, [(0, 0, b"summary", orjson.dumps({"churn": {"model": "mbgnbd"}}))])
        found = client.get("/v1/models", headers=auth()).json()
        assert found["churn"] == {"model": "mbgnbd"} and found["serving"]["model_version"] is None


def test_ingestion_takes_its_limits_from_the_settings_and_counts_outcomes():
    sink = Sink()
    metrics = ApiMetrics(dict)
    settings = Settings(api_max_events=2, kafka="127.0.0.1:1")
    now = int(time.time() * 1000)
    good = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": now}
    with mounted(ingestion.router, get_app_settings=settings, get_sink=sink, get_metrics=metrics) as client:
        assert client.post("/v1/events", json=[good], headers=auth()).status_code == 403
        too_many = client.post("/v1/events", json=[good, good, good], headers=auth("operator"))
        assert too_many.status_code == 422 and "at most 2 events" in too_many.json()["detail"]
        result = client.post("/v1/events", json=[good, {**good, "type": "teleport"}], headers=auth("operator")).json()
        assert result["accepted"] == 1 and result["rejected"] == 1
        assert sink.written == [(None, [(b"u1", orjson.dumps(good))])]
        assert metrics.events.labels("accepted")._value.get() == 1
        sink.fail = True
        assert client.post("/v1/events", json=[good], headers=auth("operator")).status_code == 503
