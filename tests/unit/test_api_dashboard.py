"""The dashboard's HTTP side: the page and its assets are public, and only the alert stream takes ``?token=``."""

from __future__ import annotations

import re

import pytest

from api.app import STATIC_DIR
from tests.unit.test_api_synthetic import auth, make_client


def test_the_page_and_its_assets_need_no_token_and_load_nothing_from_elsewhere(store):
    with make_client(store) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css")):
            response = client.get(f"/static/{asset}")
            assert response.status_code == 200 and kind in response.headers["content-type"]
        assert client.get("/static/nope.js").status_code == 404
        assert client.get("/v1/overview").status_code == 401  # the data still needs a token
        assert "/" not in client.get("/openapi.json").json()["paths"]
    for path in STATIC_DIR.iterdir():  # vendored: no URL of another host in the page or its assets
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", path.read_text()), path.name


@pytest.mark.timeout(30)
def test_the_alert_stream_takes_the_token_as_a_query_parameter(store):
    with make_client(store) as client:
        with client.stream("GET", "/v1/alerts/stream", params={"token": "t-reader"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
        assert client.get("/v1/alerts/stream", params={"token": "wrong"}).status_code == 401
        assert client.get("/v1/alerts/stream", params={"token": ""}).status_code == 401
        # a header, when sent, decides (a bad header is not rescued by a good query token)
        bad_header = {"Authorization": "Bearer wrong"}
        assert client.get("/v1/alerts/stream", params={"token": "t-reader"}, headers=bad_header).status_code == 401


def test_no_other_endpoint_takes_a_query_token(store):
    with make_client(store) as client:
        assert client.get("/v1/overview", params={"token": "t-admin"}).status_code == 401
        assert client.get("/v1/alerts", params={"token": "t-admin"}).status_code == 401
        assert client.get("/v1/alerts", headers=auth()).status_code == 200
