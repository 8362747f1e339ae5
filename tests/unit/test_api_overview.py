"""Group portraits equal a brute-force computation over the same portraits."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from tests.reference import band_of, batch_habits, events_by_user, mid_rank
from tests.unit.shop_history import ZONE, replayed_shop
from tests.unit.test_api_synthetic import auth, churned_population, make_client, make_store, records, synthetic_portraits

AGE_BANDS = ("<18", "18-24", "25-29", "30-34", "35-39", "40-49", "50-54", "55+")


def ratio(a, b):
    return round(a / b, 4) if b else None


def opt(p: dict, name: str) -> dict:
    return p.get(name) or {}


def brute_overview(portraits: list[dict]) -> dict:
    """The figures of the overview, computed the plain way."""
    n = len(portraits)
    profile = lambda name: Counter(str(p["profile"][name]) for p in portraits if p["profile"].get(name) is not None)  # noqa: E731
    regions = profile("region")
    top5 = sorted(regions.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    with_devices = [p for p in portraits if p["devices"]]
    device_names = {d for p in with_devices for d in p["devices"]}
    devices = {d: sum(p["devices"].get(d, 0) for p in with_devices) / len(with_devices) for d in device_names}
    hours = [sum(p["active_hours"][h] for p in portraits) for h in range(24)]
    weekdays = [sum(p["weekdays"][d] for p in portraits) for d in range(7)]
    layers = Counter(opt(p, "rfm").get("layer") for p in portraits if opt(p, "rfm").get("layer"))
    gmv30 = sum(p["windows"]["30d"]["spend"] for p in portraits)
    gmv_life = sum(p["lifetime"]["spend"] for p in portraits)
    layer_gmv30 = Counter()
    layer_gmv_life = Counter()
    for p in portraits:
        layer = opt(p, "rfm").get("layer")
        if layer:
            layer_gmv30[layer] += p["windows"]["30d"]["spend"]
            layer_gmv_life[layer] += p["lifetime"]["spend"]
    buyers = sum(p["windows"]["30d"]["purchases"] >= 1 for p in portraits)
    repeaters = sum(p["windows"]["30d"]["purchases"] >= 2 for p in portraits)
    bands = profile("age_band")
    core = max(sum(bands[b] for b in AGE_BANDS[i : i + 3]) for i in range(6)) if bands else 0
    risks = [p["churn"]["risk"] for p in portraits if opt(p, "churn").get("risk") is not None]
    histogram = [0] * 10
    for risk in risks:
        histogram[min(9, int(risk * 100) // 10)] += 1
    mobile = sum(devices.get(d, 0) for d in ("ios", "android", "mini_program"))
    valued = [(opt(p, "rfm").get("layer"), opt(p, "clv")["value"]) for p in portraits if opt(p, "clv").get("value") is not None]
    clv_total = sum(v for _, v in valued)
    layer_clv = Counter()
    for layer, value in valued:
        if layer:
            layer_clv[layer] += value
    edges = [0.0] + [m * 10**e for e in range(7) for m in (1, 2, 5)]
    clv_bins = Counter(max(i for i, edge in enumerate(edges) if value >= edge) for _, value in valued)
    return {
        "users": n,
        "age_bands": bands,
        "genders": profile("gender"),
        "city_tiers": profile("city_tier"),
        "regions": top5,
        "top5_region_share": ratio(sum(v for _, v in top5), sum(regions.values())),
        "devices": devices,
        "mobile_share": mobile,
        "ios_share": devices.get("ios", 0),
        "hours": hours,
        "weekdays": weekdays,
        "evening_share": ratio(hours[20] + hours[21], sum(hours)),
        "peak_hour": max(range(24), key=lambda h: (hours[h], -h)),
        "cat_any": Counter(c["category"] for p in portraits for c in p["top_categories"]),
        "cat_top": Counter(p["top_categories"][0]["category"] for p in portraits if p["top_categories"]),
        "layers": layers,
        "layer_gmv30_share": {k: v / gmv30 for k, v in layer_gmv30.items()},
        "layer_gmv_life_share": {k: v / gmv_life for k, v in layer_gmv_life.items()},
        "segments": Counter(str(opt(p, "segment").get("id")) for p in portraits if opt(p, "segment").get("id") is not None),
        "lifecycle": Counter(p["lifecycle"] for p in portraits if p.get("lifecycle")),
        "tags": Counter(t for p in portraits for t in (p.get("tags") or [])),
        "repurchase": (buyers, repeaters, ratio(repeaters, buyers)),
        "churn": (len(risks), sum(risks) / len(risks) if risks else None, histogram),
        "core_age_band_share": ratio(core, sum(bands.values())),
        "high_value_gmv_share_30d": layer_gmv30["high_value"] / gmv30 if gmv30 else None,
        "clv": (len(valued), clv_total, clv_total / len(valued) if valued else None),
        "clv_bins": {(edges[i], edges[i + 1] if i + 1 < len(edges) else None): n for i, n in clv_bins.items()},
        "layer_clv": layer_clv,
        "layer_clv_share": {k: v / clv_total for k, v in layer_clv.items()},
    }


def check(overview: dict, expected: dict) -> None:
    assert overview["users"] == expected["users"]
    for name in ("age_bands", "genders", "city_tiers", "lifecycle", "segments"):
        got = {s["value"]: s["users"] for s in overview[name]} if name != "segments" else {s["id"]: s["users"] for s in overview[name]}
        assert got == dict(expected[name]), name
    total_bands = sum(expected["age_bands"].values())
    assert [s["share"] for s in overview["age_bands"]] == [ratio(s["users"], total_bands) for s in overview["age_bands"]]
    assert [(s["value"], s["users"]) for s in overview["regions"]] == expected["regions"]
    assert overview["top5_region_share"] == expected["top5_region_share"]
    assert {d["device"]: d["share"] for d in overview["devices"]} == pytest.approx(expected["devices"], abs=1e-4)
    assert overview["mobile_share"] == pytest.approx(expected["mobile_share"], abs=1e-4)
    assert overview["ios_share"] == pytest.approx(expected["ios_share"], abs=1e-4)
    assert overview["activity"]["hours"] == expected["hours"]
    assert overview["activity"]["weekdays"] == expected["weekdays"]
    assert overview["activity"]["peak_hour"] == expected["peak_hour"]
    assert overview["activity"]["evening_share"] == expected["evening_share"]
    for category in overview["top_categories"]:
        assert category["users_any"] == expected["cat_any"][category["category"]]
        assert category["users_top"] == expected["cat_top"][category["category"]]
    assert [c["users_any"] for c in overview["top_categories"]] == sorted(expected["cat_any"].values(), reverse=True)[:10]
    layers = {s["layer"]: s for s in overview["value_layers"]}
    assert {k: v["users"] for k, v in layers.items() if v["users"]} == dict(expected["layers"])
    for layer, share in expected["layer_gmv30_share"].items():
        assert layers[layer]["gmv_30d_share"] == pytest.approx(share, abs=1e-4)
    for layer, share in expected["layer_gmv_life_share"].items():
        assert layers[layer]["gmv_lifetime_share"] == pytest.approx(share, abs=1e-4)
    for layer, share in expected["layer_clv_share"].items():
        assert layers[layer]["clv_share"] == pytest.approx(share, abs=1e-4)
        assert layers[layer]["clv"] == pytest.approx(expected["layer_clv"][layer], abs=0.01)
    users_valued, clv_total, clv_mean = expected["clv"]
    clv = overview["clv"]
    assert (clv["users_valued"], clv["total"]) == (users_valued, pytest.approx(clv_total, abs=0.01))
    assert clv["mean"] == (None if clv_mean is None else pytest.approx(clv_mean, abs=1e-4))
    histogram = {(b["low"], b["high"]): b["users"] for b in clv["histogram"]}
    assert {k: n for k, n in histogram.items() if n} == expected["clv_bins"]
    assert sum(histogram.values()) == users_valued
    assert {t["value"]: t["users"] for t in overview["tags"]} == dict(expected["tags"])
    repurchase = overview["repurchase"]
    assert (repurchase["buyers_30d"], repurchase["repeat_buyers_30d"], repurchase["rate"]) == expected["repurchase"]
    scored, mean, histogram = expected["churn"]
    assert overview["churn"]["users_scored"] == scored
    assert overview["churn"]["mean_risk"] == pytest.approx(mean, abs=1e-4)
    assert overview["churn"]["histogram"] == histogram
    health = {h["marker"]: h for h in overview["health"]}
    for marker in ("core_age_band_share", "top5_region_share", "mobile_share", "high_value_gmv_share_30d"):
        expected_value = expected[marker]
        assert health[marker]["value"] == pytest.approx(expected_value, abs=1e-4), marker
        assert health[marker]["ok"] == (health[marker]["value"] >= health[marker]["healthy_at"])
    assert health["repurchase_rate_30d"]["value"] == expected["repurchase"][2]
    assert health["evening_peak_share"]["value"] == expected["evening_share"]
    assert {h["healthy_at"] for h in overview["health"]} >= {0.6, 0.7, 0.9, 0.4, 0.1}


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    path = tmp_path_factory.mktemp("overview")
    with churned_population(path, size=1500, seed=8, rng_seed=3, changed=300, gone=100, offset=2000) as both:
        yield both


def test_the_overview_of_everyone_equals_a_brute_force_computation(population):
    client, current = population
    response = client.get("/v1/overview", headers=auth())
    assert response.status_code == 200
    overview = response.json()
    check(overview, brute_overview(list(current.values())))
    assert overview["warnings"] == [] and overview["plan"] is None
    assert client.post("/v1/overview", json={}, headers=auth()).json() == overview


def test_a_filtered_overview_equals_a_brute_force_computation_over_the_audience(population):
    client, current = population
    f = {"layers": ["high_value", "potential"], "attributes": {"gender": ["female"]}}
    overview = client.post("/v1/overview", json={"filter": f}, headers=auth()).json()
    members = [
        p
        for p in current.values()
        if (p.get("rfm") or {}).get("layer") in ("high_value", "potential") and p["profile"].get("gender") == "female"
    ]
    assert 0 < len(members) < 1000
    check(overview, brute_overview(members))
    assert overview["warnings"] == [f"statistics over {len(members)} users are thin (fewer than 1000); read the shares with care"]
    assert overview["plan"]["indexes"]


def test_an_empty_group_has_an_overview_too(population):
    client, _ = population
    overview = client.post("/v1/overview", json={"filter": {"tags": {"all": ["no-such-tag"]}}}, headers=auth()).json()
    assert overview["users"] == 0 and overview["warnings"] == ["the group is empty"]
    assert all(h["ok"] is None for h in overview["health"])


def test_a_bad_overview_filter_is_a_422(population):
    client, _ = population
    response = client.post("/v1/overview", json={"filter": {"lifecycle": ["zombie"]}}, headers=auth())
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:3] == ["body", "filter", "lifecycle"]


def test_the_running_overview_follows_updates(tmp_path):
    portraits = list(synthetic_portraits(50, seed=11))
    store = make_store(tmp_path, portraits)
    with make_client(store) as client:
        before = client.get("/v1/overview", headers=auth()).json()
        check(before, brute_overview(portraits))
        moved = copy.deepcopy(portraits[0])
        moved["rfm"] = {"r": 5, "f": 5, "m": 5, "layer": "high_value"}
        moved["lifecycle"] = "returning"
        store.apply("portraits", b"p:", records([moved], start_offset=100))
        after = client.get("/v1/overview", headers=auth()).json()
        check(after, brute_overview([moved, *portraits[1:]]))
    store.close()


def test_decision_habits_and_price_bands_equal_the_batch_computation_over_the_events(tmp_path):
    events, portraits, _, _ = replayed_shop()
    habits = {user: batch_habits(mine, ZONE) for user, mine in events_by_user(events).items()}
    population = [h["aov"] for h in habits.values() if h["aov"] is not None]
    with make_client(make_store(tmp_path, portraits)) as client:
        overview = client.get("/v1/overview", headers=auth()).json()
    got = overview["habits"]
    assert got["visits"] == sum(h["visits"] for h in habits.values())
    assert got["browse_depth"] == ratio(sum(h["visit_views"] for h in habits.values()), got["visits"])
    assert got["item_purchases"] == sum(h["item_purchases"] for h in habits.values())
    assert got["same_day_share"] == ratio(sum(h["same_day_purchases"] for h in habits.values()), got["item_purchases"])
    payers = [h["payment_methods"] for h in habits.values() if h["payment_methods"]]
    means = {m: sum(p.get(m, 0.0) for p in payers) / len(payers) for p in payers for m in p}
    assert {row["method"] for row in got["payment_methods"]} == set(means) and len(means) > 3
    for row in got["payment_methods"]:  # each user's shares are rounded to 4 decimals before they are averaged
        assert abs(row["share"] - means[row["method"]]) < 2e-4, row
    bands = Counter(band_of(mid_rank(aov, population)) for aov in population)
    assert {row["value"]: row["users"] for row in got["price_bands"]} == dict(bands) and len(bands) == 3
    depth = {h["marker"]: h for h in overview["health"]}["browse_depth"]
    assert depth["value"] == got["browse_depth"] and depth["healthy_at"] == 3.0
