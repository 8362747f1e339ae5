"""JSON bodies that Python's json module would take but that are not interchangeable JSON: a 422 that says why."""

from __future__ import annotations

import pytest

from tests.unit.test_api_synthetic import auth, make_client, make_store, synthetic_portraits

ROUTES = ("/v1/audiences/query", "/v1/audiences/export", "/v1/overview")

BODIES = {
    "lone surrogate in a tag": (b'{"filter": {"tags": {"all": ["\\ud800"]}}}', "surrogate"),
    "lone surrogate in an attribute": (b'{"filter": {"attributes": {"gender": ["x\\udc00"]}}}', "surrogate"),
    "lone surrogate in a segment": (b'{"filter": {"segments": ["\\udc00"]}}', "surrogate"),
    "lone surrogate in a field path": (b'{"fields": ["\\ud800"]}', "surrogate"),
    "lone surrogate in an unknown key": (b'{"\\ud800": 1}', "surrogate"),
    "NaN": (b'{"filter": {"churn_risk": {"min": NaN}}}', "expected a JSON value"),
    "a number beyond a double": (b'{"filter": {"behaviour": [{"kind": "spend", "at_least": 1e400}]}}', "infinity"),
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_client(make_store(tmp_path_factory.mktemp("strict"), list(synthetic_portraits(20))))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body, reason", BODIES.values(), ids=BODIES.keys())
def test_a_body_that_is_not_strict_json_is_a_422_with_the_reason(client, route, body, reason):
    response = client.post(route, content=body, headers={**auth("operator"), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["type"] == "json_invalid"
    assert reason in error["ctx"]["error"]


def test_a_paired_surrogate_escape_is_one_character(client):
    body = '{"filter": {"tags": {"all": ["\\ud83c\\udf19"]}}}'.encode()  # U+1F319, escaped as a pair
    response = client.post(ROUTES[0], content=body, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["count"] == 0
