"""Bounds of the query side: bodies are not read before the token, nor past a cap; heavy queries have a
deadline and a concurrency bound; an export reads the live store, not a snapshot held for the download."""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest
from starlette.exceptions import HTTPException

from api.auth import ApiSettings
from api.audiences import csv_rows, select
from api.indexes import PORTRAITS_SPACE
from api.limits import QueryGate
from api.models import AudienceFilter
from tests.unit.test_api_synthetic import auth, make_client, records, synthetic_portraits

MIB = 1 << 20


def asgi_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    """The scope of an HTTP request to ``path``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }


def call_asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], *, chunks: int, chunk_size: int = MIB):
    """Send a request whose body comes in ``chunks`` lazily made chunks; (status, body, chunks the app read)."""
    read = 0
    sent: list[dict] = []

    async def receive():
        nonlocal read
        if read >= chunks:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": b"x" * chunk_size, "more_body": read < chunks}

    async def send(message):
        sent.append(message)

    asyncio.run(app(asgi_scope(method, path, headers), receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), orjson.loads(body), read


BIG = str(150 * MIB).encode()


@pytest.mark.parametrize("path", ["/v1/events", "/v1/audiences/query", "/v1/overview"])
def test_a_150_mb_body_without_a_token_is_refused_before_a_byte_is_read(store, path):
    app = make_client(store).app
    status, headers, body, read = call_asgi(app, "POST", path, [(b"content-length", BIG)], chunks=150)
    assert status == 401 and read == 0
    assert "missing bearer token" in body["detail"] and headers[b"www-authenticate"] == b"Bearer"
    bad = [(b"content-length", BIG), (b"authorization", b"Bearer nope")]
    status, _, body, read = call_asgi(app, "POST", path, bad, chunks=150)
    assert (status, body["detail"], read) == (401, "invalid bearer token", 0)


def test_a_declared_body_over_the_cap_is_a_413_before_it_is_read(store):
    app = make_client(store).app
    headers = [(b"content-length", BIG), (b"authorization", b"Bearer t-operator")]
    status, _, body, read = call_asgi(app, "POST", "/v1/events", headers, chunks=150)
    assert status == 413 and read == 0 and "exceeds 1048576 bytes" in body["detail"]


@pytest.mark.parametrize("path", ["/v1/events", "/v1/audiences/query"])
def test_a_streamed_body_is_cut_off_at_the_cap(store, path):
    app = make_client(store, api_settings=ApiSettings(api_max_body_bytes=MIB)).app
    headers = [(b"transfer-encoding", b"chunked"), (b"authorization", b"Bearer t-operator")]
    status, _, body, read = call_asgi(app, "POST", path, headers, chunks=150)
    assert status == 413 and read <= 2 and "PORTRAITS_API_MAX_BODY_BYTES" in body["detail"]


def test_the_cap_is_a_setting_and_small_bodies_pass(store):
    with make_client(store, api_settings=ApiSettings(api_max_body_bytes=2048)) as client:
        big = {"filter": {}, "fields": ["rfm.layer"] * 400}
        assert client.post("/v1/audiences/query", json=big, headers=auth()).status_code == 413
        assert client.post("/v1/audiences/query", json={"filter": {}}, headers=auth()).status_code == 200
        assert client.post("/v1/audiences/query", json={"filter": {}}).status_code == 401


@pytest.fixture
def populated(store):
    store.apply("portraits", PORTRAITS_SPACE, records(list(synthetic_portraits(50))))
    return store


def test_a_query_past_its_deadline_is_a_504_with_a_clear_message(populated):
    settings = ApiSettings(api_query_timeout_seconds=1e-9)
    with make_client(populated, api_settings=settings) as client:
        query = {"filter": {"behaviour": [{"kind": "spend", "days": 30, "at_least": 0}]}, "exact_count": True}
        for path, body in (("/v1/audiences/query", query), ("/v1/overview", {"filter": query["filter"]})):
            response = client.post(path, json=body, headers=auth())
            assert response.status_code == 504, response.text
            assert "PORTRAITS_API_QUERY_TIMEOUT_SECONDS" in response.json()["detail"]
        assert client.get("/v1/overview", headers=auth()).status_code == 200  # running aggregates: no query


def test_queries_beyond_the_bound_are_turned_away_with_retry_after():
    gate = QueryGate(concurrency=1, timeout_s=5)
    release = threading.Event()

    async def scenario():
        first = asyncio.ensure_future(gate.run(lambda deadline: release.wait(5)))
        await asyncio.sleep(0.1)
        with pytest.raises(HTTPException) as refused:
            await gate.run(lambda deadline: "second")
        release.set()
        assert await first is True
        return refused.value, await gate.run(lambda deadline: "third")

    refused, third = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers == {"Retry-After": "1"}
    assert "too many audience and overview queries" in refused.detail and third == "third"


def test_a_query_that_never_checks_its_deadline_is_still_answered_in_time():
    gate = QueryGate(concurrency=1, timeout_s=0.1)
    release = threading.Event()

    async def scenario():
        with pytest.raises(HTTPException) as timed_out:
            await gate.run(lambda deadline: release.wait(5))
        with pytest.raises(HTTPException) as busy:  # the stuck work still holds its slot
            await gate.run(lambda deadline: None)
        release.set()
        await asyncio.sleep(0.2)
        return timed_out.value, busy.value, await gate.run(lambda deadline: "free again")

    timed_out, busy, after = asyncio.run(scenario())
    assert (timed_out.status_code, busy.status_code, after) == (504, 503, "free again")


def test_an_export_reads_the_live_store_not_the_selection_snapshot(populated):
    selection = select(populated, AudienceFilter())
    gone = selection.users[0]
    populated.apply("portraits", PORTRAITS_SPACE, [(0, 999, gone, None)])  # erased after the selection
    text = "".join(csv_rows(populated, selection.users, ["rfm.layer"]))
    listed = [line.split(",")[0] for line in text.splitlines()[1:]]
    assert gone.decode() not in listed and len(listed) == len(selection.users) - 1
