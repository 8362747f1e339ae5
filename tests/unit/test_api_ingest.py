"""POST /v1/events: the stream's validation per event, limits, and a flushed write of the accepted ones.

A fake producer stands in for Kafka here; tests/integration/test_ops_api.py uses the real broker.
"""

from __future__ import annotations

import time

import orjson
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiSettings
from streams.settings import Settings
from tests.unit.test_api_synthetic import TOKENS, auth, make_store


class FakeFuture:
    def __init__(self, error: Exception | None = None):
        self.error = error

    def get(self, timeout=None):
        if self.error:
            raise self.error
        return "metadata"


class FakeProducer:
    """kafka-python's producer surface: send() buffers, flush() delivers."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.buffered: list[tuple[str, bytes, bytes]] = []
        self.delivered: list[tuple[str, bytes, bytes]] = []
        self.flushes = 0

    def send(self, topic, key=None, value=None):
        self.buffered.append((topic, key, value))
        return FakeFuture(RuntimeError("broker said no") if self.fail else None)

    def flush(self, timeout=None):
        self.flushes += 1
        self.delivered += self.buffered
        self.buffered = []

    def close(self, timeout=None):
        pass


def event(n: int, user: str = "u1", **fields) -> dict:
    return {"event_id": f"e{n}", "user_id": user, "type": "view", "ts": int(time.time() * 1000) - 60_000, **fields}


@pytest.fixture
def setup(tmp_path):
    store = make_store(tmp_path)
    producer = FakeProducer()
    settings = Settings(data_dir=tmp_path, topic_prefix="shop1-", kafka="127.0.0.1:1")
    limits = ApiSettings(api_max_events=5, api_max_body_bytes=4096)
    app = create_app(settings, tokens=TOKENS, api_settings=limits, store=store, follow=False, producer=producer)
    with TestClient(app) as client:
        yield client, producer
    store.close()


def test_valid_events_are_written_and_flushed_before_the_answer(setup):
    client, producer = setup
    batch = [
        event(1, "u1"),
        event(2, "u2", type="pay", amount=12.5, device="ios"),
        {"event_id": "e3", "user_id": "u3", "type": "teleport", "ts": 1_714_521_600_000},
        {"event_id": "e4", "user_id": "u3", "type": "pay", "ts": 1_714_521_600_000},
        event(5, "u3", ts=int(time.time() * 1000) + 3 * 86_400_000),
    ]
    response = client.post("/v1/events", json=batch, headers=auth("operator"))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 2 and result["rejected"] == 3
    assert [(e["index"], e["reason"]) for e in result["errors"]] == [
        (2, "unknown_type"),
        (3, "missing_amount"),
        (4, "future_timestamp"),
    ]
    assert all(e["detail"] for e in result["errors"])
    assert producer.buffered == [] and producer.flushes == 1
    assert [(t, k, orjson.loads(v)) for t, k, v in producer.delivered] == [
        ("shop1-events", b"u1", batch[0]),
        ("shop1-events", b"u2", batch[1]),
    ]
    metrics = client.get("/metrics").text
    assert 'portraits_api_ingested_events_total{outcome="accepted"} 2.0' in metrics
    assert 'portraits_api_ingested_events_total{outcome="unknown_type"} 1.0' in metrics


def test_an_object_with_an_events_list_is_accepted_too(setup):
    client, producer = setup
    response = client.post("/v1/events", json={"events": [event(1), event(2)]}, headers=auth("admin"))
    assert response.json() == {"accepted": 2, "rejected": 0, "errors": []}
    assert len(producer.delivered) == 2


def test_an_empty_batch_writes_nothing(setup):
    client, producer = setup
    assert client.post("/v1/events", json=[], headers=auth("operator")).json()["accepted"] == 0
    assert producer.flushes == 0


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 400, "not JSON"),
        (b"", 400, "not JSON"),
        (b'"just a string"', 422, "JSON array"),
        (b'{"evnts": []}', 422, "JSON array"),
        (orjson.dumps([event(i) for i in range(6)]), 422, "at most 5 events"),
        (b"[" + b" " * 5000 + b"]", 413, "4096 bytes"),
    ],
)
def test_a_bad_body_is_rejected_whole_with_a_4xx(setup, content, status, words):
    client, producer = setup
    response = client.post(
        "/v1/events", content=content, headers={**auth("operator"), "Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert words in response.json()["detail"]
    assert producer.delivered == []


def test_a_body_without_content_length_is_cut_at_the_limit(setup):
    client, producer = setup

    def chunks():
        yield b"["
        for _ in range(100):
            yield b" " * 100
        yield b"]"

    response = client.post("/v1/events", content=chunks(), headers={**auth("operator"), "Content-Type": "application/json"})
    assert response.status_code == 413


def test_events_kafka_does_not_acknowledge_are_a_503_that_says_retry(tmp_path):
    store = make_store(tmp_path)
    app = create_app(
        Settings(data_dir=tmp_path, kafka="127.0.0.1:1"), tokens=TOKENS, store=store, follow=False, producer=FakeProducer(fail=True)
    )
    with TestClient(app) as client:
        response = client.post("/v1/events", json=[event(1), event(2)], headers=auth("operator"))
    assert response.status_code == 503
    assert "2 of 2 events were not acknowledged" in response.json()["detail"]
    assert "retry" in response.json()["detail"]
    store.close()


def test_readers_may_not_ingest(setup):
    client, producer = setup
    assert client.post("/v1/events", json=[event(1)], headers=auth("reader")).status_code == 403
    assert producer.delivered == []


PURCHASE_1997 = {"event_id": "o1", "user_id": "c1", "type": "pay", "ts": "1997-03-14T10:00:00Z", "amount": 29.9}


def ingest_with(tmp_path, settings: Settings, batch: list[dict]) -> tuple[dict, FakeProducer]:
    store = make_store(tmp_path)
    producer = FakeProducer()
    app = create_app(settings, tokens=TOKENS, store=store, follow=False, producer=producer)
    try:
        with TestClient(app) as client:
            return client.post("/v1/events", json=batch, headers=auth("operator")).json(), producer
    finally:
        store.close()


def test_the_earliest_event_time_setting_bounds_ingestion_as_it_bounds_the_worker(tmp_path):
    before = {**PURCHASE_1997, "event_id": "o0", "ts": "1996-12-31T23:59:59Z"}
    settings = Settings(data_dir=tmp_path, kafka="127.0.0.1:1", earliest_event_time="1997-01-01T00:00:00Z")
    result, producer = ingest_with(tmp_path, settings, [PURCHASE_1997, before])
    assert result["accepted"] == 1 and result["rejected"] == 1, result
    assert [e["index"] for e in result["errors"]] == [1] and result["errors"][0]["reason"] == "invalid_field"
    assert "1997-01-01T00:00:00Z" in result["errors"][0]["detail"]
    assert [orjson.loads(value)["event_id"] for _, _, value in producer.delivered] == ["o1"]


def test_by_default_ingestion_refuses_history_before_2000_as_the_worker_does(tmp_path):
    result, producer = ingest_with(tmp_path, Settings(data_dir=tmp_path, kafka="127.0.0.1:1"), [PURCHASE_1997])
    assert result["accepted"] == 0 and result["errors"][0]["reason"] == "invalid_field", result
    assert "2000-01-01T00:00:00Z" in result["errors"][0]["detail"] and producer.delivered == []
