"""An independent batch computation of portrait figures, for checking the stream.

It works from the plain event dicts with pandas-free Python and shares no code
with the streaming core: every figure is recomputed from scratch at ``as_of``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

from scipy.special import hyp2f1

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


def events_by_user(events) -> defaultdict[str, list[dict]]:
    """user id -> the user's events, in the given order."""
    by_user: defaultdict[str, list[dict]] = defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    return by_user


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
            "repeat_spend": sum(cents(e) for e in pays if e["ts"] // DAY > pays[0]["ts"] // DAY) / 100,
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


# -- decisions and group figures, from the rules as README.md states them --------------------

BENCHMARK_AOV = 150.0
NIGHT_HOURS = (23, 0, 1)  # the domain brief's night owls: 23:00-02:00
MOBILE = ("ios", "android", "mini_program")
AGE_BANDS = ((18, "<18"), (25, "18-24"), (30, "25-29"), (35, "30-34"), (40, "35-39"), (50, "40-49"), (55, "50-54"))


def age_band_of(age: int) -> str:
    """The README's bands: <18, 18-24, 25-29, 30-34, 35-39, 40-49, 50-54, 55+."""
    return next((band for upper, band in AGE_BANDS if age < upper), "55+")


def layer_of(figures: dict, benchmark: float = BENCHMARK_AOV) -> str:
    """Value layer: high_value (>= 2 purchases in 30 days, 30-day order value >= 1.5 x benchmark,
    purchases on >= 2 distinct days), potential (a 30-day purchase, order value >= benchmark,
    add-to-cart per view >= 10%), ordinary (another 30-day buyer), low_value (no 30-day purchase)."""
    window = figures["windows"]["30d"]
    if window["purchases"] < 1:
        return "low_value"
    order_value = window["spend"] / window["purchases"]
    days = figures["purchase_day_count"]
    if window["purchases"] >= 2 and order_value >= 1.5 * benchmark and (days - 1) / days >= 0.3:
        return "high_value"
    views, carts = figures["funnel"]["views"], figures["funnel"]["add_to_cart"]
    if order_value >= benchmark and views and carts / views >= 0.1:
        return "potential"
    return "ordinary"


def lifecycle_of(figures: dict, as_of: int) -> str:
    """new (first seen <= 14 days ago, or no event), returning (last purchase ended >= 90 silent
    days and is <= 30 days old), active (silent <= 30 days), at_risk (<= 90), churned; silence from
    the last purchase, or the last visit for never-buyers."""
    if figures["first_seen"] is None or (as_of - figures["first_seen"]) / DAY <= 14:
        return "new"
    last = figures["last_purchase"] if figures["last_purchase"] is not None else figures["last_seen"]
    silence = (as_of - last) / DAY
    days = figures["purchase_day_list"]
    if figures["last_purchase"] is not None and len(days) >= 2 and days[-1] - days[-2] >= 90 and silence <= 30:
        return "returning"
    if silence <= 30:
        return "active"
    return "at_risk" if silence <= 90 else "churned"


def user_figures(events: list[dict], profile: dict | None, as_of: int) -> dict:
    """One user's portrait figures plus what the group portrait and the audiences read."""
    out = batch_portrait(events, as_of)
    out["as_of"] = as_of
    unique = list(unique_events(events))
    pays = sorted(e["ts"] for e in unique if e["type"] == "pay")
    out["purchase_day_list"] = sorted({ts // DAY for ts in pays})
    out["purchase_day_count"] = len(out["purchase_day_list"])
    top = sorted(out["category_scores"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    out["top_categories"] = [name for name, _ in top]
    out["top_scores"] = dict(top)
    devices = Counter(e["device"] for e in unique if e.get("device"))
    total = sum(devices.values())
    out["device_shares"] = {name: n / total for name, n in devices.items()} if total else {}
    profile = dict(profile or {})
    if "age" in profile and "age_band" not in profile:
        profile["age_band"] = age_band_of(profile["age"])
    out["profile"] = profile
    out["layer"] = layer_of(out)
    out["lifecycle"] = lifecycle_of(out, as_of)
    hours, weekdays, n = out["active_hours"], out["weekdays"], len(unique)
    lifetime = out["lifetime"]
    out["tags"] = {
        "night_owl": n >= 20 and sum(hours[h] for h in NIGHT_HOURS) / n >= 0.3,
        "weekend_shopper": n >= 20 and (weekdays[5] + weekdays[6]) / n >= 0.5,
        "big_spender": out["windows"]["90d"]["spend"] >= 1500
        or (lifetime["purchases"] >= 2 and lifetime["spend"] / lifetime["purchases"] >= 450),
    }
    cart_times = [e["ts"] for e in unique if e["type"] == "add_to_cart"]
    out["abandoned_cart_times"] = [
        c for c in cart_times if c + DAY <= as_of and not any(c <= p < c + DAY for p in pays)
    ]
    return out


# -- customer lifetime value, from the papers' formulas ----------------------------------------


def purchase_history(events: list[dict], as_of: int) -> tuple[int, float, float, float] | None:
    """(x, t_x, T) in days and the spend of the x repeat purchase days, one purchase per UTC day; None for non-buyers."""
    pays = sorted((e for e in unique_events(events) if e["type"] == "pay"), key=lambda e: e["ts"])
    if not pays:
        return None
    first, last = pays[0]["ts"], pays[-1]["ts"]
    days = {e["ts"] // DAY for e in pays}
    repeat = sum(cents(e) for e in pays if e["ts"] // DAY != first // DAY) / 100
    return len(days) - 1, (last - first) / DAY, max(as_of - first, last - first) / DAY, repeat


def expected_purchases(t: float, x: int, t_x: float, T: float, *, r: float, alpha: float, a: float, b: float, mbg: bool) -> float:
    """E[Y(t) | x, t_x, T]: Fader, Hardie & Lee (2005) eq. 10 for BG/NBD; Batislam et al. (2007) for MBG/NBD."""
    k = 1 if mbg else 0
    hyper = hyp2f1(r + x, b + x + k, a + b + x + k - 1, t / (alpha + T + t))
    head = (a + b + x + k - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyper)
    if x == 0 and not mbg:
        return head
    return head / (1 + a / (b + x + k - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def batch_clv(
    events: list[dict], as_of: int, *, purchase: dict, mbg: bool, spend: dict, horizon_days: int, annual_rate: float
) -> dict | None:
    """The portrait's ``clv`` block from the raw events: each month of the horizon's expected purchases,
    discounted at the month's end, times Gamma-Gamma's E[Z | x, m] (Fader, Hardie & Lee 2005, JMR, eq. 5)."""
    history = purchase_history(events, as_of)
    if history is None:
        return None
    x, t_x, T, repeat = history
    months = math.ceil(horizon_days * 12 / 365)
    ends = [horizon_days * i / months for i in range(months + 1)]
    total = sum(
        (expected_purchases(hi, x, t_x, T, **purchase, mbg=mbg) - expected_purchases(lo, x, t_x, T, **purchase, mbg=mbg))
        / (1 + annual_rate) ** (hi / 365)
        for lo, hi in zip(ends, ends[1:])
    )
    p, q, v = spend["p"], spend["q"], spend["v"]
    order_value = p * (v + repeat) / (p * x + q - 1) if x else p * v / (q - 1)  # x * m is the repeat spend
    return {"expected_purchases": total, "expected_order_value": order_value, "value": total * order_value, "horizon_days": horizon_days}


# -- review sentiment, from the shipped models called directly -----------------------------------

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


@lru_cache(maxsize=1)
def _sentiment_models():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    from pysenti import ModelClassifier
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return ModelClassifier(), SentimentIntensityAnalyzer()


def review_score(text: str | None, rating: float | None) -> float | None:
    """A review's sentiment in [-1, 1]: the first 200 characters of its text (Chinese: pysenti's
    2 P(positive) - 1; English: VADER's compound, unless 0), else (rating - 3) / 2 clipped."""
    body = (text or "")[:200].strip()
    letters = sum(1 for c in body if c.isalpha())
    cjk, latin = len(CJK.findall(body)), len(LATIN.findall(body))
    chinese, english = _sentiment_models()
    if letters and cjk >= 0.3 * letters:
        return round(2 * chinese.classify(body)["positive_prob"] - 1, 4)
    if letters and latin >= 0.5 * letters:
        compound = round(english.polarity_scores(body)["compound"], 4)
        if compound != 0:
            return compound
    if rating is None:
        return None
    return round(min(1.0, max(-1.0, (rating - 3) / 2)), 4)


def batch_sentiment(events: list[dict], as_of: int, *, window_days: float = 30.0, shown: int = 3) -> dict:
    """The portrait's ``sentiment`` block recomputed from one user's raw events."""
    scored = []
    for e in unique_events(events):
        if e["type"] == "review":
            score = review_score(e.get("text"), e.get("rating"))
            if score is not None:
                scored.append((e["ts"], e.get("item_id"), score))
    scores = [s for _, _, s in scored]
    window = sorted((r for r in scored if r[2] <= -0.2 and as_of - window_days * DAY < r[0] <= as_of), key=lambda r: r[0])
    return {
        "mean": round(sum(scores) / len(scores), 4) if scores else None,
        "reviews": len(scores),
        "positive": sum(s >= 0.2 for s in scores),
        "negative": sum(s <= -0.2 for s in scores),
        "negative_recent": len(window),
        "recent_negative": [(ts, item, score) for ts, item, score in reversed(window[-shown:])],
    }
