"""The published portrait, its model and ``schemas/portrait.schema.json`` agree with what the worker makes."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from online_models.events import parse_profile
from online_models.gamma_gamma import GammaGamma
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitConfig, PortraitState, render, update_profile
from online_models.portrait_schema import ItemPortrait, Portrait, item_portrait_json_schema, portrait_json_schema
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator
from tests.portrait_contract import check_item_published, check_published
from tests.unit.portrait_builder import as_json

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "portrait.schema.json"
ITEM_SCHEMA = SCHEMA.with_name("item-portrait.schema.json")
START_MS = 1_767_225_600_000  # 2026-01-01


def test_the_committed_json_schema_is_the_models():
    assert json.loads(SCHEMA.read_text()) == portrait_json_schema(), (
        "regenerate it: python -m online_models.portrait_schema > schemas/portrait.schema.json"
    )


def test_the_committed_item_json_schema_is_the_models():
    assert json.loads(ITEM_SCHEMA.read_text()) == item_portrait_json_schema(), (
        "regenerate it: python -m online_models.portrait_schema item > schemas/item-portrait.schema.json"
    )


@pytest.mark.parametrize("schema", [portrait_json_schema(), item_portrait_json_schema()], ids=["portrait", "item"])
def test_every_published_field_has_a_description(schema):
    for name, node in [("", schema), *schema["$defs"].items()]:
        for field, spec in node.get("properties", {}).items():
            if "$ref" not in spec:
                assert spec.get("description"), f"{name}.{field}"


@pytest.fixture(scope="module")
def published() -> list[dict]:
    """Portraits of a simulated shop as the worker publishes them (their JSON), under unfitted, trained and fully fitted models."""
    simulator = ShopSimulator(n_users=80, start_ms=START_MS, seed=4)
    result = replay_history(simulator.history(40), models=PopulationModels(PopulationConfig(segment_warmup=40, n_segments=4)))
    states = dict(result.states)
    for record in simulator.profiles()[::2]:
        update_profile(states[record["user_id"]], parse_profile(orjson.dumps(record)))
    profile_only = PortraitState("profile-only")
    update_profile(profile_only, parse_profile(orjson.dumps({"user_id": "profile-only", "ts": START_MS, "city_tier": "2"})))
    states[profile_only.user_id] = profile_only
    trained = result.snapshot()
    fitted = result.snapshot()
    fitted.gamma_gamma = GammaGamma.from_params(p=6.0, q=4.0, v=15.0)
    portraits = []
    for models in (PopulationModels(), trained, fitted):
        for state in states.values():
            portraits.append(as_json(models.enrich(render(state, as_of=result.as_of, config=PortraitConfig()))))
    return portraits


def test_real_portraits_are_the_model_exactly(published):
    for portrait in published:
        check_published(orjson.dumps(portrait))
    # the sample holds every shape a field takes
    buyers = [p for p in published if p["lifetime"]["purchases"]]
    assert buyers and len(buyers) < len(published)
    assert {p["churn"]["model"] for p in published} >= {"none", "mbgnbd"}
    assert {p["segment"] is None for p in published} == {True, False}
    assert {p["clv"] is None for p in published} == {True, False}
    assert any(p["clv"] and p["clv"]["value"] is None for p in published)
    assert any(p["clv"] and p["clv"]["value"] is not None for p in published)
    assert {p["rfm"]["r"] is None for p in published} == {True, False}
    assert {bool(p["profile"]) for p in published} == {True, False}
    assert any(p["first_seen"] is None for p in published)
    assert any(p["funnel"]["last_abandoned_cart"] for p in published) and any(p["last_return_gap_days"] for p in published)
    assert any(p["bought_items"] for p in published) and any(not p["bought_items"] for p in published)


def test_the_check_refuses_unknown_missing_and_mistyped_fields(published):
    portrait = published[-1]
    check_published(portrait)
    for broken in (
        {**portrait, "extra": 1},
        {k: v for k, v in portrait.items() if k != "clv"},
        {**portrait, "windows": {**portrait["windows"], "1d": portrait["windows"]["7d"]}},
        {**portrait, "lifetime": {**portrait["lifetime"], "events": "812"}},
        {**portrait, "profile": {"favourite_colour": "red"}},
        {**portrait, "churn": {**portrait["churn"], "risk": 1.5}},
        {**portrait, "as_of": "2026-02-10 00:00:00"},
    ):
        with pytest.raises(ValidationError):
            check_published(broken)


def test_the_model_reads_the_portrait_by_attribute(published):
    portrait = next(p for p in published if p["clv"] and p["segment"])
    typed = Portrait.model_validate(portrait)
    assert typed.windows.d30.spend == portrait["windows"]["30d"]["spend"]
    assert typed.churn.model_version == portrait["churn"]["model_version"]
    assert typed.model_dump(mode="json", by_alias=True, exclude_unset=True) == portrait


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    """The API's OpenAPI document."""
    from tests.unit.test_api_synthetic import make_client, make_store

    store = make_store(tmp_path_factory.mktemp("openapi") / "store", [])
    try:
        with make_client(store) as client:
            return client.get("/openapi.json").json()
    finally:
        store.close()


def test_the_portrait_route_documents_this_model(openapi):
    route = next(ops["get"] for path, ops in openapi["paths"].items() if path.startswith("/v1/users/") and path.endswith("/portrait"))
    assert route["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Portrait"}
    documented = openapi["components"]["schemas"]["Portrait"]
    assert documented["properties"].keys() == portrait_json_schema()["properties"].keys()
    assert documented["required"] == portrait_json_schema()["required"]


def test_the_portrait_fields_tag_rules_may_name_are_in_the_model_with_their_kind():
    from online_models.tags import PORTRAIT_FIELDS

    schema = portrait_json_schema()
    types = {"number": {"integer", "number"}, "string": {"string"}}
    for path, kind in PORTRAIT_FIELDS.items():
        node = schema
        for key in path.split("."):
            node = node["properties"][key]
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
        found = {option.get("type") for option in node.get("anyOf", [node])} - {"null"}
        assert found and found <= types[kind], (path, found)


@pytest.fixture(scope="module")
def item_published() -> list[dict]:
    """Item and category portraits of a simulated shop as the item engines publish them."""
    from tests.unit.test_item_portraits import delivered, portraits_of, route, run_users, segmenting_models

    simulator = ShopSimulator(n_users=40, start_ms=START_MS, seed=6)
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    facts = run_users(delivered(list(simulator.history(20)), seed=2), profiles, segmenting_models())
    return list(portraits_of(route(facts, seed=2)).values())


def test_real_item_portraits_are_the_model_exactly(item_published):
    for portrait in item_published:
        check_item_published(orjson.dumps(portrait))
    windows = [w for p in item_published for w in p["windows"].values()]
    assert {p["kind"] for p in item_published} == {"item", "category"}
    assert {w["conversion"] is None for w in windows} == {True, False}
    assert {w["repurchase_rate"] is None for w in windows} == {True, False}
    assert any(w["buyers_by"]["segments"] for w in windows) and any(not w["buyers_by"]["layers"] for w in windows)


def test_the_item_check_refuses_unknown_missing_and_mistyped_fields(item_published):
    portrait = next(p for p in item_published if p["kind"] == "item")
    check_item_published(portrait)
    window = portrait["windows"]["7d"]
    for broken in (
        {**portrait, "extra": 1},
        {k: v for k, v in portrait.items() if k != "category"},
        {**portrait, "kind": "shop"},
        {**portrait, "as_of_day": "2026-1-1"},
        {**portrait, "windows": {**portrait["windows"], "7d": {**window, "buyers": -1}}},
        {**portrait, "windows": {**portrait["windows"], "7d": {**window, "repurchase_rate": 1.5}}},
        {**portrait, "lifetime": {**portrait["lifetime"], "gmv": "12.5"}},
    ):
        with pytest.raises(ValidationError):
            check_item_published(broken)


def test_the_item_routes_document_the_item_model(openapi):
    routes = [ops["get"] for path, ops in openapi["paths"].items() if path.startswith(("/v1/items/", "/v1/categories/"))]
    assert len(routes) == 2
    for route in routes:
        assert route["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ItemPortrait"}
        assert "404" in route["responses"]
    documented = openapi["components"]["schemas"]["ItemPortrait"]
    assert documented["properties"].keys() == ItemPortrait.model_json_schema()["properties"].keys()
