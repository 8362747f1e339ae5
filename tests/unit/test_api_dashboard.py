"""The dashboard's HTTP side: the page and its assets, the chart library among them, are public and
served by the API; only the alert stream takes ``?token=``."""

from __future__ import annotations

import re

import pytest

from api.app import STATIC_DIR
from tests.unit.test_api_synthetic import auth, make_client
from tests.unit.test_dashboard_assets import ECHARTS, pinned

OWN_ASSETS = sorted(path for path in STATIC_DIR.iterdir() if path.is_file())  # the vendor/ directory aside


def test_the_page_and_its_assets_need_no_token_and_load_nothing_from_elsewhere(store):
    assert {path.name for path in OWN_ASSETS} >= {"index.html", "dashboard.js", "charts.js", "views.js", "format.js", "dashboard.css"}
    with make_client(store) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for path in OWN_ASSETS:
            response = client.get(f"/static/{path.name}")
            assert response.status_code == 200 and response.content == path.read_bytes(), path.name
        for asset, kind in (("dashboard.js", "javascript"), ("views.js", "javascript"), ("dashboard.css", "text/css")):
            assert kind in client.get(f"/static/{asset}").headers["content-type"]
        library = client.get("/static/vendor/echarts/echarts.min.js")
        assert library.status_code == 200 and "javascript" in library.headers["content-type"]
        assert f'version="{pinned()["version"]}"' in library.text  # the pinned release, as installed
        assert client.get("/static/vendor/echarts/LICENSE").status_code == 200
        assert client.get("/static/nope.js").status_code == 404
        assert client.get("/v1/overview").status_code == 401  # the data still needs a token
        assert "/" not in client.get("/openapi.json").json()["paths"]
    for path in OWN_ASSETS:  # no URL of another host in the page or its scripts and styles
        assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//|\bimport\b[^;]*[\"'](?:https?:)?//", path.read_text()), path.name


def test_every_script_the_page_loads_is_served_from_here():
    """index.html's scripts, and the modules they import, are files the API serves (nothing is left dangling)."""
    page = (STATIC_DIR / "index.html").read_text()
    scripts = re.findall(r'<script src="/static/([^"]+)"', page)
    assert scripts == ["vendor/echarts/echarts.min.js", "dashboard.js"]  # the library first: the modules use it
    assert '<script src="/static/dashboard.js" type="module">' in page
    modules, seen = ["dashboard.js"], set()
    while modules:
        name = modules.pop()
        seen.add(name)
        imported = re.findall(r'^import .* from "\./([^"]+)";$', (STATIC_DIR / name).read_text(), re.M)
        modules += [m for m in imported if m not in seen]
    assert seen == {"dashboard.js", "charts.js", "views.js", "format.js"}
    assert (ECHARTS / "echarts.min.js").is_file()


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
