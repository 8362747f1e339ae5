"""Bearer tokens and roles: 401 without a valid token, 403 below the role, open /healthz and /metrics."""

from __future__ import annotations

import io
import logging

import pytest

from api.app import create_app
from api.auth import ApiSettings, Role, TokenRegistry, parse_tokens
from streams.settings import Settings
from tests.unit.test_api_synthetic import auth, make_client, make_store, synthetic_portraits

READER_ENDPOINTS = [
    ("GET", "/v1/users/u0/portrait", None),
    ("POST", "/v1/audiences/query", {}),
    ("GET", "/v1/overview", None),
    ("POST", "/v1/overview", {}),
    ("GET", "/v1/alerts", None),
    ("GET", "/v1/models", None),
]
OPERATOR_ENDPOINTS = [
    ("POST", "/v1/audiences/export", {}),
    ("POST", "/v1/events", []),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    store = make_store(tmp_path_factory.mktemp("auth"), list(synthetic_portraits(5, seed=1)))
    with make_client(store, producer=None) as test_client:
        yield test_client
    store.close()


@pytest.mark.parametrize(("method", "path", "body"), READER_ENDPOINTS + OPERATOR_ENDPOINTS)
def test_no_token_is_a_401_with_a_bearer_challenge(client, method, path, body):
    response = client.request(method, path, json=body)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), READER_ENDPOINTS + OPERATOR_ENDPOINTS)
def test_an_unknown_token_is_a_401(client, method, path, body):
    response = client.request(method, path, json=body, headers={"Authorization": "Bearer not-a-known-token"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"] == "invalid bearer token"
    basic = client.request(method, path, json=body, headers={"Authorization": "Basic dTpw"})
    assert basic.status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ENDPOINTS)
def test_a_reader_may_not_export_or_ingest(client, method, path, body):
    response = client.request(method, path, json=body, headers=auth("reader"))
    assert response.status_code == 403
    assert response.json()["detail"] == "this needs the operator role or higher; the token has the reader role"


@pytest.mark.parametrize("role", ["reader", "operator", "admin"])
def test_every_role_may_read(client, role):
    assert client.get("/v1/users/u0/portrait", headers=auth(role)).status_code == 200
    assert client.post("/v1/audiences/query", json={}, headers=auth(role)).json()["count"] == 5


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_operators_and_admins_may_export(client, role):
    assert client.post("/v1/audiences/export", json={}, headers=auth(role)).status_code == 200


def test_health_metrics_and_docs_need_no_token(client):
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "portraits_api_portraits_stored 5.0" in metrics.text
    assert client.get("/openapi.json").json()["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_requests_are_timed_by_route_template_and_status(client):
    client.get("/v1/users/u1/portrait", headers=auth())
    client.get("/v1/users/nobody/portrait", headers=auth())
    client.get("/v1/users/u1/portrait")
    text = client.get("/metrics").text
    for status in ("200", "404", "401"):
        assert (
            f'portraits_api_request_duration_seconds_count{{method="GET",route="/v1/users/{{user_id}}/portrait",status="{status}"}}'
            in text
        )
    assert "nobody" not in text


def test_tokens_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORTRAITS_API_TOKENS", "env-admin:admin, env-reader:reader")
    registry = TokenRegistry.configure(None, ApiSettings())
    assert registry.authenticate("env-admin").role is Role.admin
    assert registry.authenticate("env-reader").role is Role.reader
    assert registry.authenticate("env-operator") is None
    assert len(registry) == 2


def test_without_tokens_one_admin_token_is_made_and_printed_once(monkeypatch, tmp_path):
    monkeypatch.delenv("PORTRAITS_API_TOKENS", raising=False)
    announce = io.StringIO()
    registry = TokenRegistry.configure(None, ApiSettings(), announce=announce)
    printed = announce.getvalue()
    assert printed.count("\n") == 1 and "admin token" in printed
    token = printed.rsplit(": ", 1)[1].strip()
    assert len(token) >= 32 and registry.authenticate(token).role is Role.admin


def test_create_app_prints_a_generated_token_to_stderr(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("PORTRAITS_API_TOKENS", raising=False)
    create_app(Settings(data_dir=tmp_path), follow=False)
    assert "admin token for this run" in capsys.readouterr().err


def test_bad_token_configuration_is_an_error_that_does_not_show_the_token():
    with pytest.raises(ValueError, match="entry 2: role 'superuser'") as caught:
        parse_tokens("good-secret:reader,bad-secret:superuser")
    assert "secret" not in str(caught.value)
    with pytest.raises(ValueError, match="entry 1: expected token:role"):
        parse_tokens("no-role-here")


def test_tokens_never_reach_the_logs(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.get("/v1/overview", headers=auth("reader"))
        client.get("/v1/overview", headers={"Authorization": "Bearer wrong-secret-token"})
    assert "t-reader" not in caplog.text and "wrong-secret-token" not in caplog.text
