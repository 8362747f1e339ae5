"""An independent batch computation of item and category portraits, for checking the stream.

It works from the plain event dicts (in the order they were delivered) and the profiles, and
shares no code with the streaming core: for each purchase it works out who the buyer was from
the buyer's events delivered up to it, then counts every figure from scratch at ``as_of``.
Days are UTC calendar days (the product's default time zone).
"""

from __future__ import annotations

import math
from collections import defaultdict

from tests.reference import DAY, age_band_of, cents, layer_of

MINUTE = 60_000
COUNTED = ("view", "add_to_cart", "favorite", "pay", "refund")
WINDOWS = (7, 30, 90)


def first_deliveries(events: list[dict]) -> list[dict]:
    """Each user's events in delivery order, a redelivered event_id dropped."""
    seen, out = set(), []
    for event in events:
        key = (event["user_id"], event["event_id"])
        if key not in seen:
            seen.add(key)
            out.append(event)
    return out


def age_band(profile: dict | None) -> str | None:
    if not profile:
        return None
    if profile.get("age_band"):
        return profile["age_band"]
    return age_band_of(profile["age"]) if "age" in profile else None


def layer_at_purchase(delivered: list[dict], pay: dict, benchmark: float) -> str:
    """The value layer for the minute of ``pay``, from the buyer's events delivered so far (``pay`` included)."""
    at = -(-pay["ts"] // MINUTE) * MINUTE
    pays = [e for e in delivered if e["type"] == "pay"]
    window = [e for e in pays if at - 30 * DAY < e["ts"] <= at]
    figures = {
        "windows": {"30d": {"purchases": len(window), "spend": sum(cents(e) for e in window) / 100}},
        "purchase_day_count": len({e["ts"] // DAY for e in pays}),
        "funnel": {
            "views": sum(e["type"] == "view" for e in delivered),
            "add_to_cart": sum(e["type"] == "add_to_cart" for e in delivered),
        },
    }
    return layer_of(figures, benchmark)


def purchases_90d(delivered: list[dict], pay: dict) -> int:
    """The buyer's payments in the 90 days up to the minute of ``pay``, from what was delivered so far."""
    at = -(-pay["ts"] // MINUTE) * MINUTE
    return sum(e["type"] == "pay" and at - 90 * DAY < e["ts"] <= at for e in delivered)


def annotate(events: list[dict], profiles: dict[str, dict], *, benchmark: float = 150.0, segment_of=None) -> list[dict]:
    """The counted events that name an item or a category, in delivery order, each purchase with who bought it:
    ``layer``, ``segment`` (``segment_of(delivered, pay)``, default none) and ``age_band``."""
    delivered: dict[str, list[dict]] = defaultdict(list)
    out = []
    for event in first_deliveries(events):
        user = event["user_id"]
        delivered[user].append(event)
        if event["type"] not in COUNTED or not (event.get("item_id") or event.get("category")):
            continue
        row = dict(event)
        if event["type"] == "pay":
            row["buyer"] = (
                layer_at_purchase(delivered[user], event, benchmark),
                None if segment_of is None else segment_of(delivered[user], event),
                age_band(profiles.get(user)),
            )
        out.append(row)
    return out


def keys_of(row: dict) -> list[str]:
    keys = []
    if row.get("item_id"):
        keys.append("item:" + row["item_id"])
    if row.get("category"):
        keys.append("category:" + row["category"])
    return keys


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def key_portrait(key: str, rows: list[dict], as_of: int) -> dict:
    """The figures of one key at ``as_of`` from its annotated rows (in delivery order)."""
    last_day = as_of // DAY
    kind, name = key.split(":", 1)

    def totals(selected: list[dict]) -> dict:
        count = lambda kind: sum(r["type"] == kind for r in selected)  # noqa: E731
        money = lambda kind: sum(cents(r) for r in selected if r["type"] == kind) / 100  # noqa: E731
        return {
            "views": count("view"),
            "add_to_cart": count("add_to_cart"),
            "favorites": count("favorite"),
            "purchases": count("pay"),
            "gmv": money("pay"),
            "refunds": count("refund"),
            "refund_amount": money("refund"),
        }

    # each buyer: the days they bought it, and who they were at the last delivered purchase of their latest day
    pays_by_buyer: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["type"] == "pay":
            pays_by_buyer[row["user_id"]].append(row)
    latest = {}
    for buyer, pays in pays_by_buyer.items():
        top = max(r["ts"] // DAY for r in pays)
        latest[buyer] = [r for r in pays if r["ts"] // DAY == top][-1]["buyer"]

    windows = {}
    for days in WINDOWS:
        inside = [r for r in rows if last_day - days < r["ts"] // DAY <= last_day]
        figures = totals(inside)
        buyer_days: dict[str, set[int]] = defaultdict(set)
        for r in inside:
            if r["type"] == "pay":
                buyer_days[r["user_id"]].add(r["ts"] // DAY)
        by = {"layers": defaultdict(int), "segments": defaultdict(int), "age_bands": defaultdict(int)}
        for buyer in buyer_days:
            layer, segment, band = latest[buyer]
            by["layers"][layer] += 1
            by["segments"]["unknown" if segment is None else str(segment)] += 1
            by["age_bands"][band or "unknown"] += 1
        repeat = sum(len(d) >= 2 for d in buyer_days.values())
        windows[f"{days}d"] = {
            **figures,
            "conversion": ratio(figures["purchases"], figures["views"]),
            "refund_rate": ratio(figures["refunds"], figures["purchases"]),
            "buyers": len(buyer_days),
            "repeat_buyers": repeat,
            "repurchase_rate": ratio(repeat, len(buyer_days)),
            "buyers_by": {name: dict(sorted(counts.items())) for name, counts in by.items()},
        }
    named = [r for r in rows if r.get("category")] if kind == "item" else []
    category = max(enumerate(named), key=lambda pair: (pair[1]["ts"], pair[0]))[1]["category"] if named else None
    return {
        "key": key,
        "kind": kind,
        "id": name,
        "category": category,
        "first_seen": min(r["ts"] for r in rows),
        "last_seen": max(r["ts"] for r in rows),
        "lifetime": totals(rows),
        "windows": windows,
    }


def item_portraits(events: list[dict], profiles: dict[str, dict], as_of: dict[str, int], **annotation) -> dict[str, dict]:
    """Every item's and category's figures at its ``as_of[key]`` (keys as the topic's: item:<id>, category:<name>)."""
    rows_by_key: dict[str, list[dict]] = defaultdict(list)
    for row in annotate(events, profiles, **annotation):
        for key in keys_of(row):
            rows_by_key[key].append(row)
    return {key: key_portrait(key, rows, as_of[key]) for key, rows in rows_by_key.items() if key in as_of}


def counted_purchases_segment(delivered: list[dict], pay: dict) -> int:
    """A segment rule a test's stand-in segment model follows: the 90-day purchase count, at most 3."""
    return min(3, purchases_90d(delivered, pay))


def purchases_from_feature(value: float) -> int:
    """The purchase count the ``purchases_90d`` behaviour feature (log1p(n) / log1p(100)) encodes."""
    return round(math.expm1(value * math.log1p(100)))
