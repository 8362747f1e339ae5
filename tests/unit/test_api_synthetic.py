"""Synthetic portraits for the API tests (and the audience benchmark), and a check that they fit the contract.

The generator writes portraits shaped like ``online_models.portrait.render`` plus the
decision fields (``rfm``, ``lifecycle``, ``segment``, ``tags``, ``churn``), which some
portraits lack or carry as null, as portraits stored by older versions may.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.models import Portrait
from streams.settings import Settings

store_path_placeholder = Path("/nonexistent/portraits-api-tests")

LAYERS = ("high_value", "potential", "ordinary", "low_value")
STAGES = ("new", "active", "at_risk", "churned", "returning")
CATEGORIES = ("snacks", "skincare", "apparel", "electronics", "home", "books", "toys", "sports", "beauty", "fresh")
REGIONS = ("Zhejiang", "Guangdong", "Jiangsu", "Shanghai", "Beijing", "Sichuan", "Hubei", "Shandong", "Fujian", "Henan")
AGE_BANDS = ("<18", "18-24", "25-29", "30-34", "35-39", "40-49", "50-54", "55+")
TAGS = ("night_owl", "weekend_shopper", "promotion_driven", "big_spender", "window_shopper", "cart_abandoner", "loyal")
SEGMENTS = {0: "typical shoppers", 1: "price-sensitive newcomers", 2: "quality-seeking loyal", 3: "young trend seekers"}
DEVICES = ("ios", "android", "mini_program", "pc")
#: item ids; the first ones are bought far more often
ITEMS = tuple(f"sku-{i:03d}" for i in range(200))


def iso(day: float) -> str:
    return f"2024-05-{1 + int(day) % 28:02d}T{int(day * 24) % 24:02d}:00:00.000Z"


def synthetic_portrait(rng: random.Random, user_id: str) -> dict:
    """One plausible portrait; about 10% lack each optional field and 5% carry it as null."""
    p7 = rng.choice((0, 0, 0, 1, 1, 2, 3))
    p30 = p7 + rng.choice((0, 0, 1, 2, 4))
    p90 = p30 + rng.choice((0, 1, 3, 6))
    life_purchases = p90 + rng.choice((0, 2, 10))
    spend = lambda n: round(n * rng.uniform(20, 400), 2)  # noqa: E731
    w7, w30, w90 = spend(p7), 0.0, 0.0
    w30 = round(w7 + spend(p30 - p7), 2)
    w90 = round(w30 + spend(p90 - p30), 2)
    lifetime_spend = round(w90 + spend(life_purchases - p90), 2)
    events = life_purchases * 5 + rng.randrange(1, 400)
    hours = [rng.randrange(0, 30) for _ in range(24)]
    weekdays = [rng.randrange(0, 60) for _ in range(7)]
    categories = rng.sample(CATEGORIES, rng.randrange(0, 6))
    scores = sorted((round(rng.uniform(0.1, 60), 4) for _ in categories), reverse=True)
    devices = rng.sample(DEVICES, rng.randrange(0, 4))
    weights = [rng.randrange(1, 10) for _ in devices]
    device_shares = {d: round(w / sum(weights), 4) for d, w in sorted(zip(devices, weights))}
    carts = rng.randrange(0, 30)
    portrait = {
        "user_id": user_id,
        "as_of": "2024-05-29T00:00:00.000Z",
        "first_seen": iso(0),
        "last_seen": iso(rng.uniform(0, 27)),
        "first_purchase": iso(1) if life_purchases else None,
        "last_purchase": iso(rng.uniform(1, 27)) if life_purchases else None,
        "days_since_last_seen": round(rng.choice((rng.uniform(0, 6), rng.uniform(0, 40), rng.uniform(0, 120))), 3),
        "days_since_last_purchase": round(rng.uniform(0, 90), 3) if life_purchases else None,
        "lifetime": {
            "events": events,
            "purchases": life_purchases,
            "spend": lifetime_spend,
            "refunds": rng.choice((0, 0, 1)),
            "refund_amount": 0.0,
            "net_spend": lifetime_spend,
        },
        "windows": {
            "7d": {"events": min(events, rng.randrange(0, 50)), "purchases": p7, "spend": w7},
            "30d": {"events": min(events, rng.randrange(0, 150)), "purchases": p30, "spend": w30},
            "90d": {"events": min(events, rng.randrange(0, 300)), "purchases": p90, "spend": w90},
        },
        "aov": round(lifetime_spend / life_purchases, 2) if life_purchases else None,
        "purchase_days": min(life_purchases, rng.randrange(0, 20)),
        "last_return_gap_days": rng.choice((None, rng.randrange(0, 120))) if life_purchases else None,
        "refund_rate": None,
        "active_hours": hours,
        "weekdays": weekdays,
        "peak_hour": max(range(24), key=lambda h: (hours[h], -h)),
        "weekend_share": 0.3,
        "timezone": "UTC",
        "top_categories": [{"category": c, "score": s} for c, s in zip(categories, scores)],
        "category_count": len(categories) + rng.randrange(0, 3),
        "funnel": {
            "views": rng.randrange(0, 300),
            "searches": rng.randrange(0, 50),
            "clicks": rng.randrange(0, 100),
            "add_to_cart": carts,
            "favorites": rng.randrange(0, 20),
            "orders": life_purchases,
            "purchases": life_purchases,
            "cart_to_purchase": None,
            "favorite_to_purchase": None,
            "abandoned_carts": rng.randrange(0, carts + 1),
        },
        "devices": device_shares,
        "promo_share": None,
        "profile": {
            k: v
            for k, v in {
                "age_band": rng.choice(AGE_BANDS),
                "gender": rng.choice(("female", "male", "unknown")),
                "region": rng.choice(REGIONS),
                "city_tier": rng.choice((1, 2, 3, 4, 5)),
            }.items()
            if rng.random() > 0.05
        },
        "version": rng.randrange(1, 1000),
    }
    segment_id = rng.choice(list(SEGMENTS))
    optional = {
        "rfm": {"r": rng.randrange(1, 6), "f": rng.randrange(1, 6), "m": rng.randrange(1, 6), "layer": rng.choice(LAYERS)},
        "lifecycle": rng.choice(STAGES),
        "segment": {"id": segment_id, "name": SEGMENTS[segment_id]},
        "tags": rng.sample(TAGS, rng.randrange(0, 4)),
        "churn": {
            "risk": round(rng.random(), 4),
            "p_alive": round(rng.random(), 4),
            "model": "mbgnbd",
            "reasons": ["no purchase for 40 days"],
        },
    }
    for name, value in optional.items():
        roll = rng.random()
        if roll < 0.10:
            continue  # absent
        portrait[name] = None if roll < 0.15 else value
    if portrait["funnel"]["abandoned_carts"]:  # its own generator, so the fields above stay as they were
        portrait["funnel"]["last_abandoned_cart"] = iso(random.Random(user_id).uniform(0, 27.9))
    clv_rng = random.Random(f"clv:{user_id}")  # also its own: absent, null, without a value, a round (tied) value or any
    roll = clv_rng.random()
    if roll >= 0.10:
        value = None if roll < 0.20 else float(clv_rng.choice((100, 250, 1000))) if roll < 0.35 else round(clv_rng.lognormvariate(6, 1.5), 2)
        purchases = round(clv_rng.uniform(0, 12), 4)
        portrait["clv"] = None if roll < 0.15 else {
            "expected_purchases": purchases,
            "expected_order_value": None if value is None else round(value / max(purchases, 0.01), 2),
            "value": value,
            "horizon_days": 365,
        }
    items_rng = random.Random(f"items:{user_id}")  # its own too: absent (stored before it was published) or a few items
    if items_rng.random() >= 0.1:
        picked = {ITEMS[min(len(ITEMS) - 1, int(items_rng.paretovariate(1.2)) - 1)] for _ in range(items_rng.randrange(0, 7))}
        portrait["bought_items"] = sorted(picked, key=lambda item: items_rng.random())
    return portrait


def synthetic_portraits(n: int, seed: int = 0, prefix: str = "u") -> Iterator[dict]:
    rng = random.Random(seed)
    width = len(str(n))
    for i in range(n):
        yield synthetic_portrait(rng, f"{prefix}{i:0{width}d}")


def records(portraits: list[dict], start_offset: int = 0) -> list[tuple[int, int, bytes, bytes]]:
    """(partition, offset, key, value) records for ``LocalStore.apply``."""
    return [(0, start_offset + i, p["user_id"].encode(), orjson.dumps(p)) for i, p in enumerate(portraits)]


TOKENS = {"t-admin": "admin", "t-operator": "operator", "t-reader": "reader"}


def auth(role: str = "reader") -> dict[str, str]:
    """The Authorization header of the test token with ``role``."""
    return {"Authorization": f"Bearer t-{role}"}


def make_store(path: Path, portraits: list[dict] = ()):
    """An API store in ``path`` holding ``portraits`` (written through ``LocalStore.apply``)."""
    from api.app import open_store

    store = open_store(path)
    if portraits:
        store.apply("portraits", b"p:", records(list(portraits)))
    return store


def make_client(store, **kwargs) -> TestClient:
    """A TestClient of an app over ``store`` (no Kafka) with the test tokens."""
    from api.app import create_app

    settings = Settings(data_dir=store_path_placeholder, kafka="127.0.0.1:1")
    return TestClient(create_app(settings, tokens=TOKENS, store=store, follow=False, **kwargs))


@contextmanager
def churned_population(path: Path, *, size: int, seed: int, rng_seed: int, changed: int, gone: int, offset: int):
    """A client over a store of ``size`` portraits after ``changed`` replacements and ``gone`` deletions.

    Yields ``(client, current)``, ``current`` the portraits the store should now hold by user id.
    The replacements are written from ``offset`` on and the deletions from ``offset + 1000``.
    """
    rng = random.Random(rng_seed)
    portraits = list(synthetic_portraits(size, seed=seed))
    store = make_store(path, portraits)
    current = {p["user_id"]: p for p in portraits}
    replacements = []
    for portrait in rng.sample(portraits, changed):
        replacement = copy.deepcopy(rng.choice(portraits))
        replacement["user_id"] = portrait["user_id"]
        replacements.append(replacement)
        current[portrait["user_id"]] = replacement
    store.apply("portraits", b"p:", records(replacements, start_offset=offset))
    deleted = rng.sample(sorted(current), gone)
    store.apply("portraits", b"p:", [(0, offset + 1000 + i, u.encode(), None) for i, u in enumerate(deleted)])
    for user in deleted:
        del current[user]
    with make_client(store) as client:
        yield client, current
    store.close()


def test_synthetic_portraits_fit_the_portrait_contract_but_for_absent_and_null_fields():
    """Looser than what the worker publishes (fields absent or null, as in portraits stored by older versions),
    never different: no field unknown to the published portrait, none of another type."""
    portraits = list(synthetic_portraits(300, seed=1))
    for portrait in portraits:
        try:
            Portrait.model_validate(portrait, extra="forbid")
        except ValidationError as error:
            odd = [e for e in error.errors() if e["type"] != "missing" and e["input"] is not None]
            assert not odd, odd
    for name in ("rfm", "lifecycle", "segment", "tags", "churn", "clv"):
        kinds = {("absent" if name not in p else "null" if p[name] is None else "set") for p in portraits}
        assert kinds == {"absent", "null", "set"}, name
