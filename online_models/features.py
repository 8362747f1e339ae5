"""Scaled behaviour features of one portrait, for segmentation and churn models.

:func:`behaviour_features` turns the portrait :func:`online_models.portrait.render` gives
into a flat ``dict[str, float]`` with no ids and no static (CRM) attributes. Every
value lies in ``[0, 1]`` so that distance-based clusterers work without a scaler:
counts and money go through ``log1p(x) / log1p(cap)`` clipped at 1, shares and rates
are already fractions. The same portrait always gives the same vector.

==================  =========================================================================
feature             definition (``None`` in the portrait counts as 0 unless said otherwise)
==================  =========================================================================
spend_90d           ``log1p(windows.90d.spend) / log1p(20000)``
purchases_90d       ``log1p(windows.90d.purchases) / log1p(100)``
events_30d          ``log1p(windows.30d.events) / log1p(1000)``
aov                 ``log1p(aov) / log1p(5000)``; 0 for a user who never paid
buyer               1 if the user ever paid, else 0
night               share of activity at night (:data:`online_models.vocabulary.NIGHT_HOURS`, 23:00-01:59)
morning             share at hours 6-11
afternoon           share at hours 12-17
evening             share at hours 18-22
weekend_share       share of activity on Saturday and Sunday
promo_share         share of purchases that were on promotion
cart_to_purchase    purchases per add-to-cart (capped at 1)
browse_to_buy       ``log1p(views / (purchases + 1)) / log1p(500)``: high = looks, rarely buys
refund_rate         refunds per purchase (capped at 1)
recency             ``log1p(days_since_last_seen) / log1p(90)``; 1 if never seen
purchase_recency    ``log1p(days_since_last_purchase) / log1p(90)``; 1 if never paid
tenure              ``log1p(days since first_seen) / log1p(365)``
diversity           ``log1p(category_count) / log1p(32)``
mobile              share of events from a mobile device (:func:`online_models.vocabulary.is_mobile`)
cat:<name>          that category's share of the summed scores of ``top_categories``
==================  =========================================================================

The category block sums to 1 (or is empty), so two users with disjoint interests
are at most ``sqrt(2)`` apart on it: comparable to one or two behaviour features.

>>> from online_models.portrait_types import portrait_from_json
>>> portrait = portrait_from_json({
...     "as_of": "2024-06-30T00:00:00.000Z", "first_seen": "2024-06-01T00:00:00.000Z",
...     "days_since_last_seen": 0.5, "days_since_last_purchase": 3.0,
...     "lifetime": {"events": 40, "purchases": 4, "spend": 400.0, "refunds": 0},
...     "windows": {"7d": {"events": 10, "purchases": 1, "spend": 100.0},
...                 "30d": {"events": 40, "purchases": 4, "spend": 400.0},
...                 "90d": {"events": 40, "purchases": 4, "spend": 400.0}},
...     "aov": 100.0, "active_hours": [5] + [0] * 21 + [5, 10], "weekdays": [4] * 5 + [10, 10],
...     "weekend_share": 0.5, "promo_share": 0.25, "refund_rate": 0.0, "category_count": 2,
...     "top_categories": [{"category": "snacks", "score": 30.0}, {"category": "beauty", "score": 10.0}],
...     "funnel": {"views": 20, "add_to_cart": 8, "purchases": 4, "cart_to_purchase": 0.5},
...     "devices": {"ios": 0.75, "pc": 0.25},
... })
>>> x = behaviour_features(portrait)
>>> x["night"], x["weekend_share"], x["mobile"], x["cat:snacks"], x["cat:beauty"]
(0.75, 0.5, 0.75, 0.75, 0.25)
>>> round(x["spend_90d"], 3), round(x["tenure"], 3), x["buyer"]
(0.605, 0.576, 1.0)
>>> all(0.0 <= v <= 1.0 for v in x.values())
True
>>> behaviour_features(portrait_from_json({}))["recency"]  # an empty portrait: never seen, never paid
1.0
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

import orjson

from online_models.clock import days_between, instant_ms
from online_models.portrait import (
    PortraitConfig,
    PortraitState,
    average_order_value,
    days_since,
    device_shares,
    top_categories,
    weekend_share,
    window_totals,
)
from online_models.portrait_types import RenderedPortrait, WindowTotals
from online_models.vocabulary import AFTERNOON_HOURS, EVENING_HOURS, MORNING_HOURS, NIGHT_HOURS, is_mobile, ratio, share_of

__all__ = ["behaviour_features", "state_features", "scaled_features", "compact_features", "expand_features", "BEHAVIOUR_FEATURES", "CATEGORY_PREFIX"]

#: Prefix of the category-interest features.
CATEGORY_PREFIX = "cat:"


#: The names of the non-category features, always present, in a fixed order.
BEHAVIOUR_FEATURES = (
    "spend_90d",
    "purchases_90d",
    "events_30d",
    "aov",
    "buyer",
    "night",
    "morning",
    "afternoon",
    "evening",
    "weekend_share",
    "promo_share",
    "cart_to_purchase",
    "browse_to_buy",
    "refund_rate",
    "recency",
    "purchase_recency",
    "tenure",
    "diversity",
    "mobile",
)


def _log_scale(value: Any, cap: float) -> float:
    """``log1p(value) / log1p(cap)`` clipped to ``[0, 1]``; None and negatives give 0."""
    if value is None or value <= 0:
        return 0.0
    return min(math.log1p(value) / math.log1p(cap), 1.0)


def _fraction(value: Any) -> float:
    if value is None:
        return 0.0
    return min(max(float(value), 0.0), 1.0)


def _days_between(start: str | None, end: str | None) -> float | None:
    start_ms, end_ms = instant_ms(start), instant_ms(end)
    if start_ms is None or end_ms is None:
        return None
    return max(days_between(start_ms, end_ms), 0.0)


def behaviour_features(portrait: RenderedPortrait) -> dict[str, float]:
    """The scaled behaviour vector of one rendered portrait (see the module table)."""
    windows = portrait.windows
    w90, w30 = windows.d90, windows.d30
    funnel = portrait.funnel
    return scaled_features(
        spend_90d=w90.spend,
        purchases_90d=w90.purchases,
        events_30d=w30.events,
        aov=portrait.aov,
        purchases=portrait.lifetime.purchases or funnel.purchases or 0,
        hours=portrait.active_hours or [0] * 24,
        weekend_share=portrait.weekend_share,
        promo_share=portrait.promo_share,
        cart_to_purchase=funnel.cart_to_purchase,
        views=funnel.views or 0,
        refund_rate=portrait.refund_rate,
        days_since_last_seen=portrait.days_since_last_seen,
        days_since_last_purchase=portrait.days_since_last_purchase,
        tenure_days=_days_between(portrait.first_seen, portrait.as_of),
        category_count=portrait.category_count,
        devices=portrait.devices or {},
        top_categories=[(c.category, c.score or 0.0) for c in portrait.top_categories or ()],
    )


def state_features(
    state: PortraitState, *, as_of: int, config: PortraitConfig, windows: tuple[WindowTotals, WindowTotals] | None = None
) -> dict[str, float]:
    """:func:`behaviour_features` of ``render(state, as_of=as_of, config=config)``, read off the state without
    rendering it; ``windows``: the state's 90- and 30-day :func:`~online_models.portrait.window_totals` at ``as_of``,
    when already computed."""
    w90, w30 = windows or (window_totals(state, as_of, 90), window_totals(state, as_of, 30))
    purchases, counts = state.purchases, state.type_counts
    return scaled_features(
        spend_90d=w90.spend,
        purchases_90d=w90.purchases,
        events_30d=w30.events,
        aov=average_order_value(state),
        purchases=purchases,
        hours=state.hours,
        weekend_share=weekend_share(state),
        promo_share=ratio(state.promo_purchases, purchases),
        cart_to_purchase=ratio(purchases, counts.get("add_to_cart", 0), cap=1.0),
        views=counts.get("view", 0),
        refund_rate=ratio(state.refunds, purchases),
        days_since_last_seen=days_since(state.last_seen, as_of),
        days_since_last_purchase=days_since(state.last_purchase, as_of),
        tenure_days=None if state.first_seen is None else max(days_between(state.first_seen, as_of), 0.0),
        category_count=len(state.category_scores),
        devices=device_shares(state),
        top_categories=top_categories(state, as_of, config),
    )


def scaled_features(
    *,
    spend_90d: float | None,
    purchases_90d: int | None,
    events_30d: int | None,
    aov: float | None,
    purchases: int,
    hours: list[int],
    weekend_share: float | None,
    promo_share: float | None,
    cart_to_purchase: float | None,
    views: int,
    refund_rate: float | None,
    days_since_last_seen: float | None,
    days_since_last_purchase: float | None,
    tenure_days: float | None,
    category_count: int | None,
    devices: Mapping[str, float],
    top_categories: list[tuple[str, float]],
) -> dict[str, float]:
    """The vector of the module table from the portrait's figures as it publishes them (``devices``: shares,
    ``top_categories``: ``(name, rounded score)`` pairs); read off a portrait by :func:`behaviour_features`, off
    a state by :func:`state_features`."""

    def hour_share(selected: tuple[int, ...]) -> float:
        return share_of(hours, selected) or 0.0

    device_total = sum(devices.values())
    mobile = sum(share for name, share in devices.items() if is_mobile(name)) if device_total else 0
    seen, paid = days_since_last_seen, days_since_last_purchase
    x = {
        "spend_90d": _log_scale(spend_90d, 20_000),
        "purchases_90d": _log_scale(purchases_90d, 100),
        "events_30d": _log_scale(events_30d, 1_000),
        "aov": _log_scale(aov, 5_000),
        "buyer": 1.0 if purchases else 0.0,
        "night": hour_share(NIGHT_HOURS),
        "morning": hour_share(MORNING_HOURS),
        "afternoon": hour_share(AFTERNOON_HOURS),
        "evening": hour_share(EVENING_HOURS),
        "weekend_share": _fraction(weekend_share),
        "promo_share": _fraction(promo_share),
        "cart_to_purchase": _fraction(cart_to_purchase),
        "browse_to_buy": _log_scale(views / (purchases + 1), 500),
        "refund_rate": _fraction(refund_rate),
        "recency": 1.0 if seen is None else _log_scale(seen, 90),
        "purchase_recency": 1.0 if paid is None else _log_scale(paid, 90),
        "tenure": _log_scale(tenure_days, 365),
        "diversity": _log_scale(category_count, 32),
        "mobile": _fraction(mobile / device_total) if device_total else 0.0,
    }
    score_total = sum(score for name, score in top_categories if name and score > 0)
    if score_total > 0:
        for name, score in top_categories:
            if name and score > 0:
                x[CATEGORY_PREFIX + name] = score / score_total
    return x


_behaviour_values = operator.itemgetter(*BEHAVIOUR_FEATURES)


def compact_features(features: Mapping[str, float]) -> str:
    """``features`` as a state keeps them: JSON text of the values of :data:`BEHAVIOUR_FEATURES` in that
    order, then the category shares by category name. About half the bytes of the dict, and a state
    holding it serializes it as one string instead of float by float.

    A change of :data:`BEHAVIOUR_FEATURES` must read the vectors states already hold.

    >>> x = {**dict.fromkeys(BEHAVIOUR_FEATURES, 0.5), "cat:snacks": 1.0}
    >>> kept = compact_features(x); kept[-15:], expand_features(kept) == x
    ('{"snacks":1.0}]', True)
    """
    shares = {name[len(CATEGORY_PREFIX) :]: value for name, value in features.items() if name.startswith(CATEGORY_PREFIX)}
    return orjson.dumps([*_behaviour_values(features), shares]).decode()


def expand_features(kept: str | list | Mapping[str, float]) -> dict[str, float]:
    """The features dict of :func:`compact_features`'s text, in :func:`behaviour_features`' order (the list and
    the dict, the forms states held before, are read too; a dict is copied as it is)."""
    if isinstance(kept, str):
        kept = orjson.loads(kept)
    if isinstance(kept, Mapping):
        return dict(kept)
    *values, shares = kept
    features = dict(zip(BEHAVIOUR_FEATURES, values, strict=True))
    for name, share in shares.items():
        features[CATEGORY_PREFIX + name] = share
    return features
