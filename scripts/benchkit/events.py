"""Contract-valid synthetic events, fast: a fixed event mix over uniformly chosen users.

The mix follows a shop's funnel (mostly views, a few carts, fewer payments);
timestamps rise evenly over the span, so nothing is late. Every event passes
:func:`online_models.events.parse_event`. :func:`shop_events` gives session-shaped
traffic instead: the first events of :class:`online_models.simulation.ShopSimulator`'s history.

>>> from online_models.events import parse_event
>>> records = list(synthetic_events(50, users=7, start_ms=1_717_171_200_000, span_ms=3_600_000, seed=1))
>>> len(records), all(parse_event(v).user_id == k.decode() for k, v in records)
(50, True)
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import orjson

TYPES = ("view", "click", "search", "add_to_cart", "favorite", "remove_from_cart", "order", "pay", "refund", "review")
WEIGHTS = (55, 15, 8, 8, 3, 2, 3, 4, 1, 1)
CATEGORIES = ("snacks", "beauty", "apparel", "electronics", "home", "books", "baby", "sports", "pets", "fresh_food")
DEVICES = ("ios", "android", "pc", "mini_program")
CHANNELS = ("organic", "search", "recommend", "live_stream", "social", "push", "ad")


def user_id(index: int) -> str:
    """The id of synthetic user ``index``."""
    return f"b{index:07d}"


def make_event(rng: random.Random, event_id: str, user: str, kind: str, ts_ms: int) -> dict:
    """One event of ``kind`` with the fields that kind carries."""
    category = rng.choice(CATEGORIES)
    event = {
        "event_id": event_id,
        "user_id": user,
        "type": kind,
        "ts": ts_ms,
        "item_id": f"{category}-{rng.randrange(40):03d}",
        "category": category,
        "price": round(rng.uniform(5, 500), 2),
        "device": rng.choice(DEVICES),
        "channel": rng.choice(CHANNELS),
        "session_id": f"s{ts_ms // 1_800_000}-{user}",
    }
    if kind in ("order", "pay", "refund"):
        event["order_id"] = f"o{user}-{ts_ms // 86_400_000}"
    if kind == "pay":
        event["amount"] = event["price"]
        event["promo"] = rng.random() < 0.3
    elif kind == "refund":
        event["amount"] = round(event["price"] / 2, 2)
    elif kind == "review":
        event["rating"] = rng.randrange(1, 6)
    return event


def synthetic_events(
    n: int, *, users: int, start_ms: int, span_ms: int, seed: int = 0, id_prefix: str = "e"
) -> Iterator[tuple[bytes, bytes]]:
    """``n`` (key, value) records over ``users`` users, timestamps rising from ``start_ms`` over ``span_ms``."""
    rng = random.Random(seed)
    kinds = rng.choices(TYPES, WEIGHTS, k=min(n, 100_000))
    for i in range(n):
        user = user_id(rng.randrange(users))
        ts = start_ms + span_ms * i // max(1, n)
        event = make_event(rng, f"{id_prefix}{i}", user, kinds[i % len(kinds)], ts)
        yield user.encode(), orjson.dumps(event)


def shop_events(n: int, *, users: int, start_ms: int, days: float, seed: int = 0) -> tuple[list[dict], Iterator[dict]]:
    """(profiles, at most ``n`` events in event-time order) of ``users`` simulated shoppers over ``days`` from ``start_ms``.

    The simulator sets the volume (users x days x about 10 a day); ``n`` caps how many are taken,
    so a cap below it keeps the start of the span only.

    >>> profiles, events = shop_events(500, users=20, start_ms=1_717_171_200_000, days=3, seed=1)
    >>> events = list(events)
    >>> len(profiles), len(events), all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
    (20, 500, True)
    """
    from online_models.simulation import ShopSimulator

    simulator = ShopSimulator(n_users=users, start_ms=start_ms, seed=seed)
    return simulator.profiles(), itertools.islice(simulator.history(days), n)

