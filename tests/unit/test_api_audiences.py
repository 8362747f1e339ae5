"""Audience queries and CSV exports equal a brute-force filter over the same portraits."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import datetime, timedelta

import orjson
import pytest

from tests.unit.test_api_synthetic import (
    AGE_BANDS,
    CATEGORIES,
    ITEMS,
    LAYERS,
    REGIONS,
    SEGMENTS,
    STAGES,
    TAGS,
    auth,
    churned_population,
)

# -- an independent, deliberately plain reading of the filter --------------------------------


def get(portrait: dict, dotted: str):
    value = portrait
    for step in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


SOURCES = {
    ("pay", None): "lifetime.purchases",
    ("any", None): "lifetime.events",
    ("view", None): "funnel.views",
    ("add_to_cart", None): "funnel.add_to_cart",
    ("favorite", None): "funnel.favorites",
    ("refund", None): "lifetime.refunds",
    **{("pay", d): f"windows.{d}d.purchases" for d in (7, 30, 90)},
    **{("any", d): f"windows.{d}d.events" for d in (7, 30, 90)},
}


def between(value, low, high) -> bool:
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def top_clv_floor(portraits, share: float) -> float:
    """The clv.value of the user ranked ceil(share x valued users)-th from the top (inf: no one valued)."""
    values = sorted((get(p, "clv.value") for p in portraits if isinstance(get(p, "clv.value"), (int, float))), reverse=True)
    return values[max(1, math.ceil(share * len(values))) - 1] if values else math.inf


def brute_match(p: dict, f: dict, floor: float | None = None) -> bool:
    if "clv" in f:
        c = f["clv"]
        low = max(v for v in (c.get("min"), floor) if v is not None) if (c.get("min"), floor) != (None, None) else None
        if not between(get(p, "clv.value"), low, c.get("max")):
            return False
    if "segments" in f and str(get(p, "segment.id")) not in {str(s) for s in f["segments"]}:
        return False
    if "layers" in f and get(p, "rfm.layer") not in f["layers"]:
        return False
    if "lifecycle" in f and p.get("lifecycle") not in f["lifecycle"]:
        return False
    tags = set(p.get("tags") or [])
    t = f.get("tags", {})
    if "all" in t and not set(t["all"]) <= tags:
        return False
    if "any" in t and not set(t["any"]) & tags:
        return False
    if "none" in t and set(t["none"]) & tags:
        return False
    if "churn_risk" in f and not between(get(p, "churn.risk"), f["churn_risk"].get("min"), f["churn_risk"].get("max")):
        return False
    cats = p.get("top_categories") or []
    c = f.get("categories", {})
    if "top_in" in c and not (cats and cats[0]["category"] in c["top_in"]):
        return False
    if "score_at_least" in c:
        want = c["score_at_least"]
        if not any(e["category"] == want["category"] and e["score"] >= want["at_least"] for e in cats):
            return False
    if "bought_items" in f and not set(f["bought_items"]) & set(p.get("bought_items") or ()):
        return False
    for name, values in f.get("attributes", {}).items():
        value = (p.get("profile") or {}).get(name)
        if value is None or str(value) not in {str(v) for v in values}:
            return False
    for b in f.get("behaviour", []):
        if b["kind"] == "performed":
            value = get(p, SOURCES[(b["event"], b.get("days"))])
            if not between(value, b.get("at_least", 1), b.get("at_most")):
                return False
        elif b["kind"] == "spend":
            source = f"windows.{b['days']}d.spend" if b.get("days") else "lifetime.spend"
            if not between(get(p, source), b.get("at_least"), b.get("at_most")):
                return False
        elif b["kind"] == "carted_not_paid":
            d = b["days"]
            cart = get(p, "funnel.last_abandoned_cart")
            if not (
                cart is not None
                and datetime.fromisoformat(cart) > datetime.fromisoformat(p["as_of"]) - timedelta(days=d)
                and get(p, f"windows.{d}d.purchases") == 0
            ):
                return False
    return True


def random_filter(rng: random.Random) -> dict:
    f: dict = {}
    maybe = lambda: rng.random() < 0.3  # noqa: E731
    if maybe():
        f["segments"] = rng.sample(list(SEGMENTS), rng.randrange(1, 3))
    if maybe():
        f["layers"] = rng.sample(LAYERS, rng.randrange(1, 3))
    if maybe():
        f["lifecycle"] = rng.sample(STAGES, rng.randrange(1, 3))
    if maybe():
        t = {}
        for part in rng.sample(["all", "any", "none"], rng.randrange(1, 3)):
            t[part] = rng.sample(TAGS, rng.randrange(1, 3))
        f["tags"] = t
    if maybe():
        low = round(rng.random(), 2)
        f["churn_risk"] = rng.choice([{"min": low}, {"max": low}, {"min": low / 2, "max": low}])
    if maybe():
        c = {}
        if rng.random() < 0.6:
            c["top_in"] = rng.sample(CATEGORIES, rng.randrange(1, 4))
        if not c or rng.random() < 0.5:
            c["score_at_least"] = {"category": rng.choice(CATEGORIES), "at_least": round(rng.uniform(0, 40), 1)}
        f["categories"] = c
    if maybe():
        a = {}
        for name in rng.sample(["age_band", "gender", "region", "city_tier"], rng.randrange(1, 3)):
            a[name] = {
                "age_band": lambda: rng.sample(AGE_BANDS, 3),
                "gender": lambda: [rng.choice(["female", "male"])],
                "region": lambda: rng.sample(REGIONS, 4),
                "city_tier": lambda: rng.sample([1, 2, "3", 4, 5], 2),
            }[name]()
        f["attributes"] = a
    if maybe():
        behaviour = []
        for _ in range(rng.randrange(1, 3)):
            kind = rng.choice(["performed", "performed", "spend", "carted_not_paid"])
            if kind == "performed":
                event, days = rng.choice(list(SOURCES))
                b = {"kind": kind, "event": event, "at_least": rng.randrange(0, 4)}
                if days:
                    b["days"] = days
                if rng.random() < 0.3:
                    b["at_most"] = b["at_least"] + rng.randrange(0, 5)
            elif kind == "spend":
                b = {"kind": kind, "days": rng.choice([None, 7, 30, 90]), "at_least": round(rng.uniform(0, 500), 2)}
            else:
                b = {"kind": kind, "days": rng.choice([7, 30, 90])}
            behaviour.append({k: v for k, v in b.items() if v is not None})
        f["behaviour"] = behaviour
    return f


def random_items_filter(rng: random.Random) -> list[str]:
    """Buyers of one to three items, popular or not."""
    return rng.sample(ITEMS[:5], 1) + rng.sample(ITEMS, rng.randrange(0, 3))


def random_clv_filter(rng: random.Random) -> dict:
    c = rng.choice([{"min": 100.0}, {"max": 250.0}, {"min": 50.0, "max": 1000.0}, {"top_share": 0.1}, {"top_share": 0.5, "max": 2000.0}])
    return dict(c)


def brute_audience(current: dict, f: dict) -> list[str]:
    floor = top_clv_floor(current.values(), f["clv"]["top_share"]) if f.get("clv", {}).get("top_share") else None
    return sorted(u for u, p in current.items() if brute_match(p, f, floor))


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """A store of 3000 portraits after a round of updates and deletions, and the current portraits."""
    path = tmp_path_factory.mktemp("audiences")
    with churned_population(path, size=3000, seed=4, rng_seed=42, changed=600, gone=150, offset=3000) as both:
        yield both


def query_all(client, f: dict, limit: int, fields=(), exact_count: bool = True) -> tuple[int | None, list[dict], list[dict]]:
    """Follow the cursors to the end; (count, every member, every plan). With ``exact_count``
    every page carries the same count; without, the count given on any page is the same too."""
    members, plans, cursor, count = [], [], None, None
    while True:
        body = {"filter": f, "limit": limit, "fields": list(fields), "exact_count": exact_count}
        if cursor:
            body["cursor"] = cursor
        response = client.post("/v1/audiences/query", json=body, headers=auth())
        assert response.status_code == 200, response.text
        page = response.json()
        if exact_count:
            assert page["count"] is not None and not page["plan"]["walked"]
        if page["count"] is not None:
            assert count is None or page["count"] == count
            assert page["estimated_count"] == page["count"]
            count = page["count"]
        members += page["users"]
        plans.append(page["plan"])
        cursor = page["next_cursor"]
        if cursor is None:
            return count, members, plans


def random_audiences(population, seed: int, limits: list[int], exact_count: bool):
    """80 random filters, each queried page by page: (filter, expected users, count, members, plans)."""
    client, current = population
    rng, clv_rng, items_rng = random.Random(seed), random.Random(-seed), random.Random(seed + 0.5)
    for _ in range(80):
        f = random_filter(rng)
        if clv_rng.random() < 0.2:  # from a generator of its own, so the other conditions stay as they were
            f["clv"] = random_clv_filter(clv_rng)
        if items_rng.random() < 0.2:
            f["bought_items"] = random_items_filter(items_rng)
        expected = brute_audience(current, f)
        yield f, expected, *query_all(client, f, limit=rng.choice(limits), exact_count=exact_count)


@pytest.mark.slow
def test_random_filters_count_and_page_like_a_brute_force_filter(population):
    seen_plans = set()
    for f, expected, count, members, plans in random_audiences(population, 7, [50, 333, 1000], exact_count=True):
        assert count == len(expected), f
        assert [m["user_id"] for m in members] == expected, f
        plan = plans[0]
        seen_plans.add("full_scan" if plan["full_scan"] else "indexes")
        seen_plans |= {"probed"} if plan["probed"] else set()
        seen_plans |= {"residual"} if plan["residual"] and not plan["full_scan"] else set()
    assert seen_plans == {"full_scan", "indexes", "probed", "residual"}  # every strategy was exercised


@pytest.mark.slow
def test_pages_without_an_exact_count_list_the_same_users(population):
    """Without exact_count the planner may walk instead of counting: the same members, page by
    page, and a count only where it is exact."""
    walks = set()
    for f, expected, count, members, plans in random_audiences(population, 8, [10, 50, 333], exact_count=False):
        assert [m["user_id"] for m in members] == expected, f
        assert count is None or count == len(expected), f
        if plans[0]["walked"]:
            walks.add("probed" if plans[0]["probed"] else "on portraits" if plans[0]["residual"] else "driver only")
            assert all(p["walked"] and p["candidates"] >= 1 for p in plans), f
    assert walks == {"probed", "on portraits", "driver only"}  # every way of walking was exercised


def test_a_walked_page_reads_only_what_the_page_needs(population):
    """A broad audience's first page: a walk that stops after the page, with an estimate instead
    of a count; asked for, the exact count comes from a full selection."""
    client, current = population
    f = {"layers": ["high_value", "potential"], "churn_risk": {"min": 0.5}}
    expected = sorted(u for u, p in current.items() if brute_match(p, f))
    assert len(expected) > 200
    body = {"filter": f, "fields": ["rfm.layer", "churn.risk"], "limit": 20}
    page = client.post("/v1/audiences/query", json=body, headers=auth()).json()
    plan = page["plan"]
    assert plan["walked"] and plan["driver"] == "layer" and plan["residual"] == ["churn_risk"]
    assert page["count"] is None and [m["user_id"] for m in page["users"]] == expected[:20]
    # the users tested are those of the driver up to the 21st match, and no more
    layer_users = sorted(u for u, p in current.items() if brute_match(p, {"layers": f["layers"]}))
    assert plan["candidates"] == layer_users.index(expected[20]) + 1 == plan["portraits_read"]
    for member in page["users"]:
        p = current[member["user_id"]]
        assert member["fields"] == {"rfm.layer": get(p, "rfm.layer"), "churn.risk": get(p, "churn.risk")}
    # the estimate: users x the share of each condition, from counts of the stored portraits
    share_layer = len(layer_users) / len(current)
    share_risk = sum(brute_match(p, {"churn_risk": {"min": 0.5}}) for p in current.values()) / len(current)
    assert abs(page["estimated_count"] - len(current) * share_layer * share_risk) <= 0.02 * len(current)

    exact = client.post("/v1/audiences/query", json={**body, "exact_count": True}, headers=auth()).json()
    assert exact["count"] == exact["estimated_count"] == len(expected) and not exact["plan"]["walked"]
    assert exact["users"] == page["users"] and exact["next_cursor"] == page["next_cursor"]


def test_exact_counts_that_cost_nothing_are_given(population):
    """Everyone, and one value of a field every user has at most one of, are counted by the running
    aggregates; a walk from the start that reaches the end has counted its audience."""
    client, current = population
    everyone = client.post("/v1/audiences/query", json={"limit": 5}, headers=auth()).json()
    assert everyone["plan"]["walked"] and everyone["count"] == len(current)
    layer = client.post("/v1/audiences/query", json={"filter": {"layers": ["low_value"]}, "limit": 5}, headers=auth()).json()
    assert layer["plan"]["walked"] and layer["count"] == sum(get(p, "rfm.layer") == "low_value" for p in current.values())
    f = {"layers": ["high_value"], "lifecycle": ["new"], "tags": {"all": ["night_owl"]}}
    expected = [u for u, p in current.items() if brute_match(p, f)]
    small = client.post("/v1/audiences/query", json={"filter": f, "limit": 1000}, headers=auth()).json()
    assert small["next_cursor"] is None and small["count"] == len(expected)


def test_pages_carry_the_requested_fields(population):
    client, current = population
    f = {"layers": ["high_value"], "behaviour": [{"kind": "performed", "event": "pay", "days": 30, "at_least": 2}]}
    fields = ["rfm.layer", "windows.30d.purchases", "top_categories.0.category", "profile.region", "churn"]
    count, members, plans = query_all(client, f, limit=40, fields=fields)  # exact_count: the selection's plan
    assert count == len(members) > 40
    for member in members:
        p = current[member["user_id"]]
        assert member["fields"]["rfm.layer"] == "high_value"
        assert member["fields"]["windows.30d.purchases"] == p["windows"]["30d"]["purchases"] >= 2
        top = p["top_categories"][0]["category"] if p["top_categories"] else None
        assert member["fields"]["top_categories.0.category"] == top
        assert member["fields"]["profile.region"] == p["profile"].get("region")
        assert member["fields"]["churn"] == p.get("churn")
    assert plans[0]["indexes"] == [plans[0]["driver"], *[i for i in plans[0]["indexes"] if i != plans[0]["driver"]]]
    assert set(plans[0]["indexes"]) == {"layer", "pay30"} and plans[0]["residual"] == []


def test_the_plan_says_when_it_scans(population):
    client, current = population
    f = {"behaviour": [{"kind": "spend", "days": 30, "at_least": 100}]}
    page = client.post("/v1/audiences/query", json={"filter": f, "limit": 0}, headers=auth()).json()
    assert page["plan"]["full_scan"] and page["plan"]["residual"] == ["behaviour[0]"]
    assert page["plan"]["portraits_read"] == len(current)
    assert page["count"] == sum(brute_match(p, f) for p in current.values())
    assert page["users"] == [] and page["next_cursor"] is None

    everyone = client.post("/v1/audiences/query", json={"limit": 0}, headers=auth()).json()
    assert everyone["count"] == len(current) and not everyone["plan"]["full_scan"]


def test_the_export_is_the_whole_audience_as_csv(population):
    client, current = population
    f = {"lifecycle": ["at_risk", "churned"], "churn_risk": {"min": 0.5}}
    fields = ["churn.risk", "rfm.layer", "tags", "profile.city_tier"]
    response = client.post("/v1/audiences/export", json={"filter": f, "fields": fields}, headers=auth("operator"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["user_id", *fields]
    expected = sorted(u for u, p in current.items() if brute_match(p, f))
    assert [r[0] for r in rows[1:]] == expected
    assert response.headers["x-audience-count"] == str(len(expected))
    for row in rows[1:]:
        p = current[row[0]]
        assert float(row[1]) == p["churn"]["risk"]
        assert row[2] == ("" if not p.get("rfm") else p["rfm"]["layer"])
        assert row[3] == ("" if p.get("tags") is None else orjson.dumps(p["tags"]).decode())
        assert row[4] == str(p["profile"].get("city_tier", ""))


def test_the_export_needs_the_operator_role(population):
    client, _ = population
    response = client.post("/v1/audiences/export", json={}, headers=auth("reader"))
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        (
            {"filter": {"behaviour": [{"kind": "performed", "event": "add_to_cart", "days": 30}]}},
            ["body", "filter", "behaviour", 0, "performed"],
            "over the lifetime only",
        ),
        (
            {"filter": {"behaviour": [{"kind": "performed", "event": "review"}]}},
            ["body", "filter", "behaviour", 0, "performed", "event"],
            "does not count 'review'",
        ),
        ({"filter": {"behaviour": [{"kind": "performed", "event": "pay", "days": 14}]}}, ["days"], "7, 30 or 90"),
        ({"filter": {"behaviour": [{"kind": "teleported"}]}}, ["behaviour", 0], "performed"),
        ({"filter": {"churn_risk": {"min": 0.8, "max": 0.2}}}, ["churn_risk"], "above max"),
        ({"filter": {"layers": ["vip"]}}, ["layers", 0], "high_value"),
        ({"filter": {"layers": []}}, ["layers"], "at least 1"),
        ({"filter": {"segmnts": [1]}}, ["segmnts"], "Extra inputs"),
        ({"fields": ["rfm.layer", "bogus.field"]}, ["fields"], "no field 'bogus'"),
        ({"fields": ["rfm..layer"]}, ["fields", 0], "pattern"),
        ({"limit": 5000}, ["limit"], "1000"),
    ],
)
def test_what_cannot_be_answered_is_a_422_that_names_the_part(population, body, where, words):
    client, _ = population
    response = client.post("/v1/audiences/query", json=body, headers=auth())
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(
        all(part in error["loc"] for part in where) and words.lower() in error["msg"].lower() for error in errors
    ), errors


def test_a_foreign_or_broken_cursor_is_a_400(population):
    client, _ = population
    first = client.post("/v1/audiences/query", json={"filter": {"layers": ["potential"]}, "limit": 5}, headers=auth()).json()
    other = client.post(
        "/v1/audiences/query", json={"filter": {"layers": ["ordinary"]}, "cursor": first["next_cursor"]}, headers=auth()
    )
    assert other.status_code == 400 and "different filter" in other.json()["detail"]
    broken = client.post("/v1/audiences/query", json={"cursor": "!!!"}, headers=auth())
    assert broken.status_code == 400 and "cursor" in broken.json()["detail"]


@pytest.mark.parametrize(
    "f",
    [
        {"clv": {"top_share": 0.1}},
        {"clv": {"top_share": 0.25}, "layers": ["high_value", "potential"]},
        {"clv": {"min": 100.0, "max": 250.0}},
        {"clv": {"min": 1000.0}},
        {"clv": {"top_share": 1.0}},
        {"clv": {"top_share": 0.05, "min": 500.0}, "churn_risk": {"min": 0.5}},
    ],
)
def test_clv_ranges_and_top_shares_select_like_a_brute_force_filter(population, f):
    client, current = population
    expected = brute_audience(current, f)
    assert expected
    for exact_count, limit in ((True, 1000), (False, 37)):
        count, members, _ = query_all(client, f, limit=limit, fields=["clv.value"], exact_count=exact_count)
        assert [m["user_id"] for m in members] == expected and count in (None, len(expected))
        assert all(m["fields"]["clv.value"] is not None for m in members)


def test_the_top_share_is_that_share_of_valued_users_with_ties_at_the_floor_all_in(population):
    client, current = population
    valued = [p["clv"]["value"] for p in current.values() if (p.get("clv") or {}).get("value") is not None]
    count, members, _ = query_all(client, {"clv": {"top_share": 0.1}}, limit=1000)
    floor = top_clv_floor(current.values(), 0.1)
    assert count == sum(v >= floor for v in valued) >= math.ceil(0.1 * len(valued))
    assert count < 0.11 * len(valued)  # the round values at the floor are few


@pytest.mark.parametrize("also", [{}, {"layers": ["ordinary", "potential"]}, {"attributes": {"gender": ["female"]}},
                                  {"tags": {"none": ["loyal"]}}, {"behaviour": [{"kind": "spend", "days": 30, "at_least": 100}]}])
@pytest.mark.parametrize("items", [["sku-000"], ["sku-003", "sku-150"], ["sku-199"], ["no-such-sku"]])
def test_the_buyers_of_items_are_the_users_listing_one_of_them(population, items, also):
    client, current = population
    f = {"bought_items": items, **also}
    expected = brute_audience(current, f)
    for exact in (True, False):
        count, members, plans = query_all(client, f, limit=40, exact_count=exact)
        assert [m["user_id"] for m in members] == expected, (f, exact)
        assert count in (None, len(expected))
    if items == ["sku-000"] and not also:
        assert len(expected) > 100  # a popular item: the filter is not trivial
        answer = client.post("/v1/audiences/query", json={"filter": f, "limit": 0}, headers=auth()).json()
        assert answer["count"] == answer["estimated_count"] == len(expected)
        assert answer["plan"]["driver"] == "item" and answer["plan"]["residual"] == []


def test_an_items_estimate_counts_its_postings_up_to_a_bound(population, monkeypatch):
    from api import audiences
    from api.models import AudienceFilter

    client, current = population
    store = client.app.state.store
    f = {"bought_items": ["sku-000"]}
    expected = [u.encode() for u in brute_audience(current, f)]
    monkeypatch.setattr(audiences, "UNCOUNTED_COUNT_CAP", 25)  # in this process: the query runs here, not in a query process
    page = audiences.query_page(store, AudienceFilter(**f), None, 10)
    assert page.estimate == 25 < len(expected) and page.count is None and page.plan.walked  # found without counting
    assert page.users == expected[:10]
    assert audiences.query_page(store, AudienceFilter(**f), None, 10, exact_count=True).count == len(expected)


def test_too_many_items_is_a_422(population):
    client, _ = population
    response = client.post("/v1/audiences/query", json={"filter": {"bought_items": [f"s{i}" for i in range(101)]}}, headers=auth())
    assert response.status_code == 422 and "bought_items" in response.text
