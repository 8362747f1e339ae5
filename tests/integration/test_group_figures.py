"""Audiences and the group overview on the real broker, equal to a batch computation over the raw events.

The expectation comes from the simulated events and profiles alone (tests/reference.py, which
shares no code with the product). The one thing read from the API is each user's ``as_of``: the
event-time instant the portrait's figures refer to (its partition's stream time when the user was
last rendered), which differs between users. Segments and churn risk are what fitted models say,
so they have no independent recomputation and are left out here; so are the figures built on them
(segment sizes and GMV, the churn histogram and mean risk).
"""

from __future__ import annotations

import time
from collections import Counter

import httpx

from online_models.simulation import ShopSimulator
from tests.integration.conftest import send_history, wait_until
from tests.reference import DAY, MOBILE, events_by_user, parse_iso, user_figures

USERS = 60
DAYS = 40  # long enough for users older than 14 days (not new) and silent for more than 30 (at risk)


def lifecycle_users(now: int) -> list[dict]:
    """Users the simulated history lacks: new, silent for 45 and 120 days, back after 120 days."""
    shapes = {  # user: (days ago of each visit, days ago of each payment)
        "x-new": ((5, 2), (2,)),
        "x-at-risk": ((60, 45, 10), (45,)),
        "x-churned": ((130, 120), (120,)),
        "x-returning": ((140, 130, 9), (130, 9)),
        "x-browser": ((100, 50, 40), ()),
    }
    events = []
    for user, (visits, payments) in shapes.items():
        for i, ago in enumerate(visits):
            ts = now - ago * DAY - 3_600_000
            events.append({"event_id": f"{user}-v{i}", "user_id": user, "type": "view", "ts": ts, "category": "books", "device": "pc"})
            events.append({"event_id": f"{user}-c{i}", "user_id": user, "type": "add_to_cart", "ts": ts + 60_000, "category": "books"})
        for i, ago in enumerate(payments):
            ts = now - ago * DAY - 3_000_000
            events.append({"event_id": f"{user}-p{i}", "user_id": user, "type": "pay", "ts": ts, "amount": 180.0 + i, "category": "books"})
    return events


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def shares(counts: Counter) -> dict[str, tuple[int, float]]:
    total = sum(counts.values())
    return {str(k): (n, round(n / total, 4)) for k, n in counts.items()}


def audience(client: httpx.Client, flt: dict) -> list[str]:
    response = client.post("/v1/audiences/query", json={"filter": flt, "limit": 1000})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None and body["count"] == len(body["users"])
    return [m["user_id"] for m in body["users"]]


def settle(client: httpx.Client, users: list[str], expected_events: dict[str, int]) -> dict[str, int]:
    """Wait until every portrait holds all its events and no portrait changes any more; their as_of."""
    previous: dict[str, int] = {}

    def stable():
        current = {}
        for user in users:
            response = client.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200:
                return False
            portrait = response.json()
            if portrait["lifetime"]["events"] != expected_events.get(user, 0):
                return False
            current[user] = (parse_iso(portrait["as_of"]), portrait["version"])
        settled = current == previous
        previous.clear()
        previous.update(current)
        return settled

    wait_until(stable, timeout=420, interval=3, what="every portrait complete and unchanged between two reads")
    return {user: as_of for user, (as_of, _) in previous.items()}


def test_audiences_and_overview_equal_a_batch_computation(stack):
    worker = stack.start_product()
    settings = stack.settings()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * DAY, seed=31)
    events = sorted([*simulator.history(DAYS), *lifecycle_users(now)], key=lambda e: e["ts"])
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    send_history(settings, profiles=profiles.values(), events=events)

    by_user = events_by_user(events)
    users = sorted(set(profiles) | set(by_user))
    client = httpx.Client(base_url=stack.api, timeout=30, headers=stack.auth_headers("test-reader"))
    assert worker.alive(), worker.tail()
    as_of = settle(client, users, {u: len({e["event_id"] for e in evs}) for u, evs in by_user.items()})
    truth = {u: user_figures(by_user.get(u, []), profiles.get(u), as_of[u]) for u in users}

    def who(predicate) -> list[str]:
        return [u for u in users if predicate(truth[u])]

    # -- audiences: the same users, by id -----------------------------------------------------
    categories = Counter(f["top_categories"][0] for f in truth.values() if f["top_categories"])
    favourite = categories.most_common(1)[0][0]
    scores = sorted(f["top_scores"][favourite] for f in truth.values() if favourite in f["top_scores"])
    threshold = round(scores[len(scores) // 2], 1)
    while any(abs(s - threshold) < 1e-3 for s in scores):  # keep clear of the portrait's 4-decimal rounding
        threshold += 0.05
    female_core = {"gender": ["female"], "age_band": ["25-29", "30-34"]}
    cases = {
        "valuable layers": ({"layers": ["high_value", "potential"]}, lambda f: f["layer"] in ("high_value", "potential")),
        "ordinary layer": ({"layers": ["ordinary"]}, lambda f: f["layer"] == "ordinary"),
        "at risk or churned": ({"lifecycle": ["at_risk", "churned"]}, lambda f: f["lifecycle"] in ("at_risk", "churned")),
        "returning": ({"lifecycle": ["returning"]}, lambda f: f["lifecycle"] == "returning"),
        "active or new": ({"lifecycle": ["active", "new"]}, lambda f: f["lifecycle"] in ("active", "new")),
        "night owls": ({"tags": {"all": ["night_owl"]}}, lambda f: f["tags"]["night_owl"]),
        "weekend or big spender": (
            {"tags": {"any": ["weekend_shopper", "big_spender"]}},
            lambda f: f["tags"]["weekend_shopper"] or f["tags"]["big_spender"],
        ),
        "paid twice in 30 days": (
            {"behaviour": [{"kind": "performed", "event": "pay", "days": 30, "at_least": 2}]},
            lambda f: f["windows"]["30d"]["purchases"] >= 2,
        ),
        "paid in 7 days, at most 3 times in 90": (
            {
                "behaviour": [
                    {"kind": "performed", "event": "pay", "days": 7, "at_least": 1},
                    {"kind": "performed", "event": "pay", "days": 90, "at_least": 0, "at_most": 3},
                ]
            },
            lambda f: f["windows"]["7d"]["purchases"] >= 1 and f["windows"]["90d"]["purchases"] <= 3,
        ),
        "first category": (
            {"categories": {"top_in": [favourite]}},
            lambda f: bool(f["top_categories"]) and f["top_categories"][0] == favourite,
        ),
        "category score": (
            {"categories": {"score_at_least": {"category": favourite, "at_least": threshold}}},
            lambda f: f["top_scores"].get(favourite, 0.0) >= threshold,
        ),
        "female 25-34": (
            {"attributes": female_core},
            lambda f: f["profile"].get("gender") == "female" and f["profile"].get("age_band") in ("25-29", "30-34"),
        ),
        "Guangdong, tier 1": (
            {"attributes": {"region": ["Guangdong"], "city_tier": [1]}},
            lambda f: f["profile"].get("region") == "Guangdong" and f["profile"].get("city_tier") == 1,
        ),
        "low value women": (
            {"layers": ["low_value"], "attributes": {"gender": ["female"]}},
            lambda f: f["layer"] == "low_value" and f["profile"].get("gender") == "female",
        ),
    }
    sizes = {}
    for name, (flt, predicate) in cases.items():
        expected = who(predicate)
        assert audience(client, flt) == expected, name
        sizes[name] = len(expected)
    # the filters are not all trivial: most pick some users and leave others out
    assert sum(0 < n < len(users) for n in sizes.values()) >= len(cases) - 2, sizes
    assert set(Counter(f["lifecycle"] for f in truth.values())) == {"new", "active", "at_risk", "churned", "returning"}

    # "carted but did not pay in D days": a cart no payment followed within a day, put in during
    # the window, and no payment in the window
    for days in (7, 30):
        answer = audience(client, {"behaviour": [{"kind": "carted_not_paid", "days": days}]})
        expected = who(
            lambda f: f["windows"][f"{days}d"]["purchases"] == 0
            and any(c > f["as_of"] - days * DAY for c in f["abandoned_cart_times"])
        )
        assert answer == expected, days
        sizes[f"carted not paid {days}"] = len(expected)

    # -- the group overview ---------------------------------------------------------------------
    overview = client.get("/v1/overview").json()
    assert overview["users"] == len(users) == USERS + 5

    def share_map(items: list[dict]) -> dict[str, tuple[int, float]]:
        return {s["value"]: (s["users"], s["share"]) for s in items}

    attribute = lambda name: Counter(f["profile"][name] for f in truth.values() if f["profile"].get(name) is not None)  # noqa: E731
    assert share_map(overview["genders"]) == shares(attribute("gender"))
    assert share_map(overview["age_bands"]) == shares(attribute("age_band"))
    assert share_map(overview["city_tiers"]) == shares(attribute("city_tier"))
    regions = attribute("region")
    top5 = sorted(regions.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [(s["value"], s["users"]) for s in overview["regions"]] == top5
    assert overview["top5_region_share"] == ratio(sum(n for _, n in top5), sum(regions.values()))

    layers = Counter(f["layer"] for f in truth.values())
    for row in overview["value_layers"]:
        members = [f for f in truth.values() if f["layer"] == row["layer"]]
        assert row["users"] == layers[row["layer"]], row
        assert round(row["gmv_30d"], 2) == round(sum(f["windows"]["30d"]["spend"] for f in members), 2), row
        assert round(row["gmv_lifetime"], 2) == round(sum(f["lifetime"]["spend"] for f in members), 2), row
    assert {(s["value"], s["users"]) for s in overview["lifecycle"]} == set(Counter(f["lifecycle"] for f in truth.values()).items())

    buyers = sum(f["windows"]["30d"]["purchases"] >= 1 for f in truth.values())
    repeaters = sum(f["windows"]["30d"]["purchases"] >= 2 for f in truth.values())
    assert overview["repurchase"] == {"buyers_30d": buyers, "repeat_buyers_30d": repeaters, "rate": ratio(repeaters, buyers)}

    hours = [sum(f["active_hours"][h] for f in truth.values()) for h in range(24)]
    weekdays = [sum(f["weekdays"][d] for f in truth.values()) for d in range(7)]
    assert sum(hours) == len({e["event_id"] for e in events})
    activity = overview["activity"]
    assert activity["hours"] == hours and activity["weekdays"] == weekdays
    assert activity["peak_hour"] == max(range(24), key=lambda h: (hours[h], -h))
    assert activity["evening_share"] == ratio(hours[20] + hours[21], sum(hours))

    anys = Counter(c for f in truth.values() for c in f["top_categories"])
    firsts = Counter(f["top_categories"][0] for f in truth.values() if f["top_categories"])
    expected_categories = sorted(anys.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(c["category"], c["users_any"], c["users_top"]) for c in overview["top_categories"]] == [
        (name, n, firsts[name]) for name, n in expected_categories
    ]

    with_devices = [f["device_shares"] for f in truth.values() if f["device_shares"]]
    device_means = {d: sum(s.get(d, 0.0) for s in with_devices) / len(with_devices) for d in {d for s in with_devices for d in s}}
    # each portrait rounds its shares to 4 decimals before they are summed
    assert {d["device"] for d in overview["devices"]} == set(device_means)
    for row in overview["devices"]:
        assert abs(row["share"] - device_means[row["device"]]) < 2e-4, row
    assert abs(overview["mobile_share"] - sum(device_means.get(d, 0.0) for d in MOBILE)) < 4e-4
    assert abs(overview["ios_share"] - device_means.get("ios", 0.0)) < 2e-4

    tags = share_map(overview["tags"])
    for tag in ("night_owl", "weekend_shopper", "big_spender"):
        assert tags.get(tag, (0, 0.0))[0] == sum(f["tags"][tag] for f in truth.values()), tag
