"""Plain portrait lookups skip FastAPI: the answers are those of the FastAPI route, byte for byte."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import ApiSettings
from api.fastpath import PortraitFastPath
from online_models.pseudonym import pseudonym
from streams.settings import Settings
from tests.unit.test_api_synthetic import TOKENS, make_store

PORTRAITS = [
    {"user_id": "u1", "lifetime": {"events": 3}},
    {"user_id": "name with spaces é", "lifetime": {"events": 1}},
    {"user_id": "x" * 128, "lifetime": {"events": 2}},
]

REQUESTS = [
    ("GET", "/v1/users/u1/portrait", "Bearer t-reader"),
    ("GET", "/v1/users/u1/portrait", "bearer t-admin"),
    ("GET", "/v1/users/name%20with%20spaces%20%C3%A9/portrait", "Bearer t-operator"),
    ("GET", "/v1/users/" + "x" * 128 + "/portrait", "Bearer t-reader"),
    ("GET", "/v1/users/" + "x" * 129 + "/portrait", "Bearer t-reader"),  # too long: 422
    ("GET", "/v1/users/nobody/portrait", "Bearer t-reader"),  # 404
    ("GET", "/v1/users/u1/portrait", None),  # 401
    ("GET", "/v1/users/u1/portrait", "Bearer wrong"),  # 401
    ("GET", "/v1/users/u1/portrait", "Basic t-reader"),  # 401
    ("GET", "/v1/users/u1/portrait", "Bearer"),  # 401
    ("GET", "/v1/users/a%01b/portrait", "Bearer t-reader"),  # control character: 422
    ("GET", "/v1/users/a%2Fb/portrait", "Bearer t-reader"),  # no such route: 404
    ("GET", "/v1/users//portrait", "Bearer t-reader"),
    ("HEAD", "/v1/users/u1/portrait", "Bearer t-reader"),
    ("POST", "/v1/users/u1/portrait", "Bearer t-reader"),  # 405
    ("GET", "/v1/users/u1/portrait/", "Bearer t-reader"),
]


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """The same app with and without the fast path, over one store."""
    store = make_store(tmp_path_factory.mktemp("fastpath"), PORTRAITS)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), kafka="127.0.0.1:1")
    apps = [
        create_app(settings, tokens=TOKENS, store=store, follow=False, api_settings=ApiSettings(api_fast_lookups=fast))
        for fast in (True, False)
    ]
    assert any(m.cls is PortraitFastPath for m in apps[0].user_middleware)
    assert not any(m.cls is PortraitFastPath for m in apps[1].user_middleware)
    with TestClient(apps[0]) as fast, TestClient(apps[1]) as slow:
        yield fast, slow
    store.close()


@pytest.mark.parametrize("method, path, authorization", REQUESTS)
def test_the_fast_path_answers_like_the_route(clients, method, path, authorization):
    fast, slow = clients
    headers = {"Authorization": authorization} if authorization else {}
    a = fast.request(method, path, headers=headers, follow_redirects=False)
    b = slow.request(method, path, headers=headers, follow_redirects=False)
    assert (a.status_code, a.content) == (b.status_code, b.content)
    assert {k: v for k, v in a.headers.items() if k != "date"} == {k: v for k, v in b.headers.items() if k != "date"}


def test_lookups_count_in_the_metrics_under_the_route(clients):
    fast, _ = clients
    series = 'portraits_api_request_duration_seconds_count{method="GET",route="/v1/users/{user_id}/portrait",status="200"}'

    def served() -> float:
        for line in fast.get("/metrics").text.splitlines():
            if line.startswith(series):
                return float(line.split()[-1])
        return 0.0

    before = served()
    for _ in range(3):
        assert fast.get("/v1/users/u1/portrait", headers={"Authorization": "Bearer t-reader"}).status_code == 200
    assert served() == before + 3


class Inner:
    """The app behind the middleware: records what reached it."""

    def __init__(self):
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class FakeStore:
    def __init__(self, portraits: dict[str, bytes]):
        self.portraits = portraits
        self.asked: list[str] = []

    def get(self, space: bytes, key: str):
        assert space == b"p:"
        self.asked.append(key)
        return self.portraits.get(key)


def call(middleware, path: str, authorization: str | None = "Bearer t-reader", method: str = "GET"):
    headers = [(b"authorization", authorization.encode())] if authorization else []
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": headers}
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], (sent[1]["body"] if len(sent) > 1 else b"")


def test_only_the_plain_case_skips_the_framework():
    from api.auth import TokenRegistry

    class App:
        class state:
            tokens = TokenRegistry(TOKENS)
            store = FakeStore({"u1": b'{"user_id":"u1"}', pseudonym("bob", b"k"): b'{"user_id":"bob"}'})

        class router:
            routes = []

    inner = Inner()
    plain = PortraitFastPath(inner, api=App, stored_id=lambda user: user)
    assert call(plain, "/v1/users/u1/portrait") == (200, b'{"user_id":"u1"}')
    assert inner.paths == []
    for args in [
        ("/v1/users/nobody/portrait",),
        ("/v1/users/u1/portrait", None),
        ("/v1/users/u1/portrait", "Bearer nope"),
        ("/v1/users/u\x7f/portrait",),
        ("/v1/users/u1/portrait", "Bearer t-reader", "HEAD"),
        ("/v1/users/u1/profile",),
    ]:
        assert call(plain, *args)[0] == 299, args
    assert len(inner.paths) == 6

    pseudonymous = PortraitFastPath(inner, api=App, stored_id=lambda user: pseudonym(user, b"k"))
    assert call(pseudonymous, "/v1/users/bob/portrait") == (200, b'{"user_id":"bob"}')
    assert App.state.store.asked[-1] == pseudonym("bob", b"k")
