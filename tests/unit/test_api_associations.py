"""GET /v1/associations, the overview's co-purchase pairs and the portraits' next_categories, in the API."""

from __future__ import annotations

import orjson
import pytest

from api.associations import ASSOCIATIONS_SPACE
from api.rescore import rescore_stored
from online_models.associations import AssociationConfig, AssociationCounts
from online_models.population import PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.portrait_schema import Portrait
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator
from tests.association_reference import batch_baskets, batch_counts, batch_next_categories, batch_rules
from tests.unit.test_api_synthetic import auth, make_client, make_store, records
from tests.unit.portrait_builder import as_json

START_MS = 1_788_307_200_000
DAY = 86_400_000
#: a figure rounded to 4 places is within this of the exact one
ROUNDED = 5.000001e-5


def replayed(events: list[dict]):
    """``events`` replayed: the replay's result, the aggregator's counts of its baskets, the portraits published."""
    result = replay_history(events)
    counts = AssociationCounts(AssociationConfig(window_days=30))
    for basket in result.baskets:
        counts.add(basket)
    models = PopulationModels()
    portraits = [as_json(models.enrich(render(s, as_of=result.as_of, config=PortraitConfig()))) for _, s in sorted(result.states.items())]
    return result, counts, portraits


@pytest.fixture(scope="module")
def shop():
    """A replayed shop: its portraits, its association summary, and the batch counts of its baskets."""
    events = list(ShopSimulator(n_users=80, start_ms=START_MS, seed=12, companions=True).history(30))
    events.append({"event_id": "closer", "user_id": "closer", "type": "view", "ts": START_MS + 32 * DAY})
    _, counts, portraits = replayed(events)
    truth = batch_counts(batch_baskets(events, watermark=events[-1]["ts"] - 300_000), window_days=30)
    return portraits, counts, truth


def publish(store, counts: AssociationCounts, offset: int = 0) -> None:
    """The aggregator's two records, as the follower applies them."""
    store.apply("associations", ASSOCIATIONS_SPACE, [
        (0, offset, b"state", counts.to_bytes()), (0, offset + 1, b"summary", orjson.dumps(counts.summary())),
    ])


@pytest.fixture
def store(tmp_path, shop):
    portraits, _, _ = shop
    store = make_store(tmp_path / "store", portraits)
    yield store
    store.close()


def test_no_summary_yet_is_a_404_with_a_message(store):
    with make_client(store) as client:
        response = client.get("/v1/associations", headers=auth())
        assert response.status_code == 404 and "no association summary yet" in response.json()["detail"]
        assert client.get("/v1/associations").status_code == 401
        assert client.get("/v1/overview", headers=auth()).json()["co_purchase"] is None
        portrait = client.get("/v1/users/u00/portrait", headers=auth()).json()
        assert portrait.get("next_categories") is None


def test_category_pairs_equal_the_batch_computation(store, shop):
    _, counts, truth = shop
    publish(store, counts)
    expected = batch_rules(truth["category"])
    with make_client(store) as client:
        body = client.get("/v1/associations", params={"limit": 500}, headers=auth()).json()
        assert body["kind"] == "category" and body["baskets"] == truth["category"]["baskets"]
        assert body["max_error"] == body["pair_max_error"] == 0
        assert body["window"]["days"] == 30 and body["window"]["last_day"] == body["as_of"][:10]
        assert len(body["pairs"]) == len(expected)
        supports = [p["support"] for p in body["pairs"]]
        assert supports == sorted(supports, reverse=True)
        for pair in body["pairs"]:
            rule = expected[(pair["a"], pair["b"])]
            assert pair["baskets"] == rule["baskets"] == pair["baskets_low"] == pair["baskets_high"]
            for name in ("support", "confidence_ab", "confidence_ba", "lift"):
                assert pair[name] == pytest.approx(rule[name], abs=ROUNDED)

        by_lift = client.get("/v1/associations", params={"category": "baby", "sort": "lift", "min_baskets": 3}, headers=auth()).json()
        assert by_lift["pairs"] and all(p["a"] == "baby" and p["baskets"] >= 3 for p in by_lift["pairs"])
        lifts = [p["lift"] for p in by_lift["pairs"]]
        assert lifts == sorted(lifts, reverse=True) and by_lift["pairs"][0]["b"] == "health"
        wanted = {tuple(sorted(pair)) for pair, rule in expected.items() if "baby" in pair and rule["baskets"] >= 3}
        assert len(by_lift["pairs"]) == min(20, len(wanted))
        assert client.get("/v1/associations", params={"category": "no-such"}, headers=auth()).json()["pairs"] == []


def test_item_pairs_name_items_and_their_categories(store, shop):
    _, counts, truth = shop
    publish(store, counts)
    with make_client(store) as client:
        body = client.get("/v1/associations", params={"kind": "item", "limit": 50}, headers=auth()).json()
    assert body["baskets"] == truth["item"]["baskets"] and body["max_error"] == 0
    top = truth["item"]["pairs"].most_common()
    assert [p["baskets"] for p in body["pairs"]] == [n for _, n in top[:50]]
    for pair in body["pairs"]:
        a, b = f"{pair['a_category']}\x1f{pair['a']}", f"{pair['b_category']}\x1f{pair['b']}"
        assert truth["item"]["pairs"][tuple(sorted((a, b)))] == pair["baskets"]
        assert pair["a"].startswith(pair["a_category"] + "-")  # the simulator's item ids start with their category


@pytest.mark.parametrize(
    "params, where",
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"kind": "brand"}, "kind"),
        ({"sort": "random"}, "sort"),
        ({"min_baskets": 0}, "min_baskets"),
        ({"min_baskets": "many"}, "min_baskets"),
        ({"category": ""}, "category"),
        ({"category": "baby\u202e"}, "category"),
        ({"category": "x" * 200}, "category"),
    ],
)
def test_bad_queries_are_422_with_a_message(store, shop, params, where):
    publish(store, shop[1])
    with make_client(store) as client:
        response = client.get("/v1/associations", params=params, headers=auth())
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(p["loc"][-1] == where and p["msg"] for p in problems), problems


def test_next_categories_follow_the_newest_summary_in_portraits_audiences_and_overview(store, shop):
    portraits, counts, truth = shop
    publish(store, counts)
    handler = store.handlers[ASSOCIATIONS_SPACE]
    assert store.get(ASSOCIATIONS_SPACE, b"state") is None  # the aggregator's sketches are not kept
    assert rescore_stored(store, b"p:", handler) == len(portraits)
    expected = {}
    for portrait in portraits:
        top = [c["category"] for c in portrait["top_categories"]]
        expected[portrait["user_id"]] = batch_next_categories(top, truth["category"], min_baskets=3, limit=3)
    assert sum(bool(v) for v in expected.values()) > len(expected) // 2
    with make_client(store) as client:
        for user, wanted in expected.items():
            served = client.get(f"/v1/users/{user}/portrait", headers=auth()).json()
            assert [(n["category"], n["because"]) for n in served["next_categories"]] == wanted, user
            Portrait.model_validate(served, strict=True, extra="forbid")
        target = "health"
        audience = client.post(
            "/v1/audiences/query", headers=auth(), json={"filter": {"categories": {"next_in": [target]}}, "exact_count": True}
        ).json()
        assert sorted(m["user_id"] for m in audience["users"]) == sorted(u for u, w in expected.items() if target in dict(w))
        assert audience["count"] > 0
        overview = client.get("/v1/overview", headers=auth()).json()["co_purchase"]
        assert overview["baskets"] == truth["category"]["baskets"] and len(overview["pairs"]) == 10
        best = sorted(batch_rules(truth["category"]).items(), key=lambda kv: (-kv[1]["baskets"], kv[0]))[:10]
        assert [(p["a"], p["b"]) for p in overview["pairs"]] == [pair for pair, _ in best]
        filtered = client.post("/v1/overview", headers=auth(), json={"filter": {"layers": ["ordinary"]}}).json()
        assert filtered["co_purchase"] == client.get("/v1/overview", headers=auth()).json()["co_purchase"]
        status = client.get("/v1/associations", headers=auth()).json()["serving"]
    assert status["summary_version"] == counts.version and status["rescore_pending"] is True  # no Rescorer thread here

    # a portrait arriving later is stored with its next categories at once
    late = dict(portraits[0], version=portraits[0]["version"] + 1)
    late.pop("next_categories", None)
    store.apply("portraits", b"p:", records([late], start_offset=1000))
    assert [(n["category"], n["because"]) for n in store.get_json(b"p:", late["user_id"])["next_categories"]] == expected[late["user_id"]]
    # the same summary again rewrites nothing; a summary in which nothing qualifies empties every list
    assert rescore_stored(store, b"p:", handler) == 0
    strict = AssociationCounts.from_bytes(counts.to_bytes(), AssociationConfig(window_days=30, min_pair_baskets=10**6))
    publish(store, strict, offset=10)
    assert rescore_stored(store, b"p:", handler) == sum(bool(v) for v in expected.values())
    assert all(store.get_json(b"p:", u)["next_categories"] == [] for u in expected)
    with make_client(store) as client:
        emptied = client.post("/v1/audiences/query", headers=auth(), json={"filter": {"categories": {"next_in": [target]}}, "exact_count": True})
        assert emptied.json()["count"] == 0


def test_a_reopened_store_serves_the_stored_summary(tmp_path, shop):
    portraits, counts, _ = shop
    store = make_store(tmp_path / "s", portraits[:3])
    publish(store, counts)
    store.close()
    reopened = make_store(tmp_path / "s")
    try:
        handler = reopened.handlers[ASSOCIATIONS_SPACE]
        assert handler.version == counts.version and handler.snapshot_arrived.is_set()
        with make_client(reopened) as client:
            assert client.get("/v1/associations", headers=auth()).json()["baskets"] == counts.summary()["categories"]["baskets"]
    finally:
        reopened.close()
