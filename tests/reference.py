"""An independent batch computation of portrait figures, for checking the stream.

It works from the plain event dicts with pandas-free Python and shares no code
with the streaming core: every figure is recomputed from scratch at ``as_of``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

DAY = 86_400_000
WEIGHTS = {"view": 1.0, "click": 1.0, "search": 0.5, "add_to_cart": 3.0, "favorite": 3.0, "order": 4.0, "pay": 5.0, "review": 2.0}


def parse_iso(text: str | None) -> int | None:
    if text is None:
        return None
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def cents(event: dict) -> int:
    amount = event.get("amount")
    if amount is None:
        amount = (event.get("price") or 0) * (event.get("quantity") or 1)
    return int(Decimal(repr(float(amount))).scaleb(2).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def unique_events(events):
    """First occurrence of each event_id per user (what the stream must count)."""
    seen = set()
    for event in events:
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            yield event


def batch_portrait(events: list[dict], as_of: int, *, half_life_days: float = 30.0, cart_timeout_ms: int = DAY) -> dict:
    """Figures of one user's portrait recomputed over all of their events."""
    events = sorted(unique_events(events), key=lambda e: e["ts"])
    pays = [e for e in events if e["type"] == "pay"]
    refunds = [e for e in events if e["type"] == "refund"]
    out = {
        "first_seen": events[0]["ts"] if events else None,
        "last_seen": events[-1]["ts"] if events else None,
        "last_purchase": pays[-1]["ts"] if pays else None,
        "lifetime": {
            "events": len(events),
            "purchases": len(pays),
            "spend": sum(cents(e) for e in pays) / 100,
            "refunds": len(refunds),
        },
        "windows": {},
    }
    for days in (7, 30, 90):
        inside = [e for e in events if as_of - days * DAY < e["ts"] <= as_of]
        inside_pays = [e for e in inside if e["type"] == "pay"]
        out["windows"][f"{days}d"] = {
            "events": len(inside),
            "purchases": len(inside_pays),
            "spend": sum(cents(e) for e in inside_pays) / 100,
        }
    hours = [0] * 24
    weekdays = [0] * 7
    for e in events:
        moment = datetime.fromtimestamp(e["ts"] / 1000, tz=timezone.utc)
        hours[moment.hour] += 1
        weekdays[moment.weekday()] += 1
    out["active_hours"] = hours
    out["weekdays"] = weekdays
    types = Counter(e["type"] for e in events)
    carts = [e["ts"] for e in events if e["type"] == "add_to_cart"]
    pay_times = [e["ts"] for e in pays]
    abandoned = sum(
        1 for c in carts if c + cart_timeout_ms <= as_of and not any(c <= p < c + cart_timeout_ms for p in pay_times)
    )
    out["funnel"] = {
        "views": types["view"],
        "add_to_cart": types["add_to_cart"],
        "favorites": types["favorite"],
        "purchases": len(pays),
        "abandoned_carts": abandoned,
    }
    scores = defaultdict(float)
    for e in events:
        weight = WEIGHTS.get(e["type"], 0.0)
        if e.get("category") and weight:
            scores[e["category"]] += weight * 0.5 ** ((as_of - e["ts"]) / (half_life_days * DAY))
    out["category_scores"] = dict(scores)
    return out
