"""Co-purchase pairs on the real broker: baskets closed by the workers, counted by the aggregator, served by
the API (GET /v1/associations, the overview, each portrait's next_categories), equal to a batch computation
over the raw events (tests/association_reference.py, which shares no code with the product)."""

from __future__ import annotations

import random
import time

import httpx
import orjson

from online_models.simulation import ShopSimulator
from streams.producer import make_producer, send_profiles
from tests.association_reference import batch_baskets, batch_counts, batch_next_categories, batch_rules, closing_users
from tests.integration.conftest import wait_until

USERS = 60
DAYS = 20
DAY = 86_400_000
LATENESS = 300_000
#: a figure rounded to 4 places is within this of the exact one
ROUNDED = 5.000001e-5


def day_baskets(now: int) -> list[dict]:
    """Payments without an order id: each user's purchases of one day make a basket (one pays for nothing named)."""
    events = []
    shapes = {  # user: (days ago, hour, category, item) of each payment
        "d-0": ((4, 9, "books", "b-1"), (4, 15, "toys", "t-1"), (3, 10, "books", "b-2")),
        "d-1": ((4, 20, "books", None), (4, 21, "toys", "t-2"), (4, 22, None, None)),
        "d-2": ((5, 8, "toys", "t-1"), (5, 23, "books", "b-1"), (2, 12, "pets", None)),
    }
    midnight = now // DAY * DAY
    for user, pays in shapes.items():
        for i, (ago, hour, category, item) in enumerate(pays):
            event = {"event_id": f"{user}-{i}", "user_id": user, "type": "pay", "ts": midnight - ago * DAY + hour * 3_600_000, "amount": 9.5}
            if category:
                event["category"] = category
            if item:
                event["item_id"] = item
            events.append(event)
    return events


def rounded_equal(served: dict, expected: dict) -> bool:
    return all(abs(served[name] - expected[name]) <= ROUNDED for name in ("support", "confidence_ab", "confidence_ba", "lift"))


def test_associations_through_the_broker_equal_a_batch_computation(stack):
    stack.env["PORTRAITS_ASSOCIATION_SNAPSHOT_INTERVAL"] = "1"
    worker = stack.start_product()
    settings = stack.settings()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * DAY, seed=17, companions=True)
    events = sorted([*simulator.history(DAYS), *day_baskets(now)], key=lambda e: e["ts"])
    # out of order within the allowed lateness, with redeliveries
    rng = random.Random(5)
    records = sorted(((e["user_id"].encode(), orjson.dumps(e), e["ts"] + rng.random() * 60_000) for e in events), key=lambda r: r[2])
    for i in sorted(rng.sample(range(len(records)), 150), reverse=True):
        records.insert(i + rng.randrange(1, 40), records[i])
    producer = make_producer(settings)
    send_profiles(producer, settings, simulator.profiles())
    topic = settings.topic("events")
    for key, value, _ in records:
        producer.send(topic, key=key, value=value)
    # last on each partition: an event whose watermark closes every basket of the history
    closed_at = int(time.time() * 1000) - 1000
    for user in closing_users(settings.partitions):
        producer.send(topic, key=user.encode(), value=orjson.dumps({"event_id": f"{user}-view", "user_id": user, "type": "view", "ts": closed_at}))
    producer.flush()
    producer.close()

    truth = batch_counts(batch_baskets(events, watermark=closed_at - LATENESS), window_days=30)
    categories, items = truth["category"], truth["item"]
    expected = batch_rules(categories)
    assert len(expected) > 30 and categories["baskets"] > 200
    client = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))

    def counted():
        assert worker.alive(), worker.tail()
        response = client.get("/v1/associations", params={"limit": 500})
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["baskets"] == categories["baskets"] and len(body["pairs"]) == len(expected) else None

    body = wait_until(counted, timeout=420, interval=2, what="every basket counted")
    assert body["max_error"] == body["pair_max_error"] == 0 and body["window"]["days"] == 30
    for pair in body["pairs"]:
        rule = expected[(pair["a"], pair["b"])]
        assert pair["baskets"] == rule["baskets"] and rounded_equal(pair, rule), pair
    # the day baskets (no order id) are among them
    assert expected[("books", "toys")]["baskets"] >= 3

    filtered = client.get("/v1/associations", params={"category": "health", "sort": "lift", "min_baskets": 2}).json()["pairs"]
    qualifying = {pair: rule for pair, rule in expected.items() if "health" in pair and rule["baskets"] >= 2}
    assert filtered and len(filtered) == min(20, len(qualifying)) and all(p["a"] == "health" for p in filtered)
    lifts = [p["lift"] for p in filtered]
    assert lifts == sorted(lifts, reverse=True)
    for pair in filtered:
        assert abs(pair["lift"] - qualifying[tuple(sorted(("health", pair["b"])))]["lift"]) <= ROUNDED
    left_out = [rule["lift"] for pair, rule in qualifying.items() if pair not in {tuple(sorted(("health", p["b"]))) for p in filtered}]
    assert all(lift <= lifts[-1] + ROUNDED for lift in left_out)  # the highest lifts are the ones served

    served_items = client.get("/v1/associations", params={"kind": "item", "limit": 30}).json()
    assert served_items["baskets"] == items["baskets"] and served_items["max_error"] == 0
    assert [p["baskets"] for p in served_items["pairs"]] == [n for _, n in items["pairs"].most_common(30)]
    for pair in served_items["pairs"]:
        a, b = f"{pair['a_category']}\x1f{pair['a']}", f"{pair['b_category']}\x1f{pair['b']}"
        assert items["pairs"][tuple(sorted((a, b)))] == pair["baskets"]

    overview = client.get("/v1/overview").json()["co_purchase"]
    best = sorted(expected.items(), key=lambda kv: (-kv[1]["baskets"], kv[0]))[:10]
    assert [(p["a"], p["b"]) for p in overview["pairs"]] == [pair for pair, _ in best]

    # every portrait's next categories: its top categories crossed with the batch lifts
    users = sorted({e["user_id"] for e in events})

    def next_categories_right() -> bool:
        for user in users:
            portrait = client.get(f"/v1/users/{user}/portrait").json()
            top = [c["category"] for c in portrait["top_categories"]]
            want = batch_next_categories(top, categories, min_baskets=3, limit=3)
            if [(n["category"], n["because"]) for n in portrait.get("next_categories") or []] != want:
                return False
        return True

    wait_until(next_categories_right, timeout=180, interval=2, what="every portrait's next categories from the last summary")
    health = client.post("/v1/audiences/query", json={"filter": {"categories": {"next_in": ["health"]}}, "exact_count": True}).json()
    assert health["count"] == sum(
        any(n["category"] == "health" for n in client.get(f"/v1/users/{u}/portrait").json()["next_categories"]) for u in users
    )
