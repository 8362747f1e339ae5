"""Item and category portraits end to end on the real broker, through a worker killed mid-stream.

Simulated events go in (out of order within a minute, some delivered twice); the worker is killed
with SIGKILL while it works through them and a new one takes over from the changelogs. Every item
and category portrait the API then serves must equal tests/item_reference.py, a batch computation
over the raw events that shares no code with the product, at the portrait's ``as_of``: a fact
counted twice, or lost, in the crash shows. The audience of an item's buyers is checked the same way.
Segments come from fitted models and are not recomputed here: the shop is too small for the
segment model to be seeded, so every buyer's segment is ``unknown`` on both sides.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter

import httpx
import orjson

from online_models.simulation import ShopSimulator
from tests.integration.conftest import read_topic, send_history, served_product, wait_until, worker_processed
from tests.item_reference import COUNTED, first_deliveries, item_portraits, keys_of
from tests.portrait_contract import check_item_published
from tests.reference import DAY, events_by_user, parse_iso

USERS = 80
DAYS = 20


def test_item_and_category_portraits_from_the_api_equal_a_batch_computation(stack, kafka_bootstrap):
    settings = stack.settings()
    worker = stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * DAY, seed=17)
    rng = random.Random(5)
    events = sorted(simulator.history(DAYS), key=lambda e: e["ts"] + rng.random() * 60_000)
    for i in sorted(rng.sample(range(len(events)), 60), reverse=True):
        events.insert(i + rng.randrange(1, 30), events[i])
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    client = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))

    # the profiles first, so each buyer's age band is known at every purchase, as the reference takes it
    send_history(settings, profiles=profiles.values())
    wait_until(lambda: all(client.get(f"/v1/users/{u}/portrait").status_code == 200 for u in profiles), timeout=120,
               interval=2, what="every profile applied")
    send_history(settings, events=events)

    # killed partway through, a new worker takes the partitions over from the changelogs
    unique = first_deliveries(events)
    wait_until(lambda: worker_processed(worker) >= len(unique) * 0.4, timeout=240, interval=0.5, what="40% of the events folded")
    worker.stop(signal.SIGKILL)
    stack.start("worker-after-kill", "worker")

    by_user = events_by_user(unique)
    counted = Counter(key for e in unique if e["type"] in COUNTED for key in keys_of(e))
    assert len(counted) > 200 and sum(k.startswith("category:") for k in counted) >= 10

    def short_of() -> dict[str, str]:
        wrong = {}
        for key, n in counted.items():
            portrait = served_product(client, key)
            version = portrait["version"] if portrait else None
            if version != n:
                wrong[key] = f"{version}/{n}"
        for user, user_events in by_user.items():
            if client.get(f"/v1/users/{user}/portrait").json()["lifetime"]["events"] != len(user_events):
                wrong[user] = "events"
        return wrong

    wait_until(lambda: not short_of(), timeout=420, interval=3, what="every item, category and user complete",
               explain=lambda: f"folded/expected: {dict(list(short_of().items())[:10])}")
    time.sleep(3)  # nothing is counted twice later either
    assert not short_of()

    portraits = {key: served_product(client, key) for key in counted}
    expected = item_portraits(events, profiles, {key: parse_iso(p["as_of"]) for key, p in portraits.items()})
    for key, portrait in portraits.items():
        check_item_published(portrait)
        want = expected[key]
        for name in ("key", "kind", "id", "category", "lifetime", "windows"):
            assert portrait[name] == want[name], (key, name)
        assert (parse_iso(portrait["first_seen"]), parse_iso(portrait["last_seen"])) == (want["first_seen"], want["last_seen"]), key
    windows = [p["windows"]["30d"] for p in portraits.values()]
    assert sum(w["repeat_buyers"] for w in windows) > 0 and sum(w["refunds"] for w in windows) > 0
    assert len({band for w in windows for band in w["buyers_by"]["age_bands"]}) >= 4

    # every record the worker published is the documented item portrait
    published = [r.value for r in read_topic(kafka_bootstrap, settings.topic("item-portraits")) if r.value is not None]
    assert len(published) >= len(counted)
    for value in published:
        check_item_published(value)

    # the buyers of the most bought items: the users who paid for one of them within the last 90 shop days
    bought = Counter(e["item_id"] for e in unique if e["type"] == "pay" and e.get("item_id"))
    items = [item for item, _ in bought.most_common(3)]
    as_of = {user: parse_iso(client.get(f"/v1/users/{user}/portrait").json()["as_of"]) for user in by_user}
    buyers = sorted(
        user for user, user_events in by_user.items()
        if any(e["type"] == "pay" and e.get("item_id") in items and e["ts"] // DAY > as_of[user] // DAY - 90 for e in user_events)
    )
    response = client.post("/v1/audiences/query", json={"filter": {"bought_items": items}, "limit": 1000, "exact_count": True})
    assert response.status_code == 200, response.text
    assert [m["user_id"] for m in response.json()["users"]] == buyers and len(buyers) >= 3

    missing = client.get("/v1/items/no-such-item/portrait")
    assert missing.status_code == 404 and "no-such-item" in missing.json()["detail"]
    assert orjson.loads(client.get("/v1/categories/no-such-category/portrait").content)["detail"]
