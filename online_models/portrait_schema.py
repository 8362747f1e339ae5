"""The published portrait as one typed model: every field with its unit and definition.

:func:`online_models.portrait.render` gives the :class:`RenderedPortrait` part;
:meth:`online_models.population.PopulationModels.enrich` adds the decisions
(``rfm``, ``lifecycle``, ``segment``, ``tags``, ``churn``, ``clv``) that make a
:class:`Portrait`, the value the worker publishes on the ``portraits`` topic and
the API serves. The model describes that JSON; the hot path builds the slotted dataclasses
of :mod:`online_models.portrait_types` that mirror these models field for field, so nothing
is validated per event. ``schemas/portrait.schema.json`` is
:func:`portrait_json_schema`, written by
``python -m online_models.portrait_schema > schemas/portrait.schema.json``. The item and category
portrait (:func:`online_models.item_portrait.render`) is :class:`ItemPortrait`, written to
``schemas/item-portrait.schema.json`` by ``python -m online_models.portrait_schema item``.

>>> import orjson
>>> from online_models.events import parse_event
>>> from online_models.population import PopulationModels
>>> from online_models.portrait import PortraitConfig, PortraitState, render, update
>>> state = PortraitState("u1")
>>> _ = update(state, parse_event(b'{"event_id":"1","user_id":"u1","type":"pay","ts":1714536000000,"amount":80}'),
...            watermark=0, config=PortraitConfig())
>>> portrait = PopulationModels().enrich(render(state, as_of=1714536060000, config=PortraitConfig()))
>>> typed = Portrait.model_validate_json(orjson.dumps(portrait), strict=True, extra="forbid")
>>> typed.windows.d30.spend, typed.rfm.layer, typed.last_purchase
(80.0, 'ordinary', '2024-05-01T04:00:00.000Z')
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from online_models.events import PAYMENT_METHODS
from online_models.lifecycle import STAGES
from online_models.rfm import LAYERS
from online_models.risk_selection import CANDIDATES
from online_models.vocabulary import PRICE_BANDS

__all__ = [
    "CategoryScore",
    "Churn",
    "Clv",
    "Funnel",
    "ItemPortrait",
    "Lifetime",
    "NextCategory",
    "PriceBand",
    "Portrait",
    "ProfileAttributes",
    "NegativeReview",
    "RenderedPortrait",
    "ReviewSentiment",
    "Rfm",
    "Segment",
    "WeeklyLedger",
    "WindowTotals",
    "Windows",
    "item_portrait_json_schema",
    "portrait_json_schema",
]

#: an event-time instant as the portrait writes it: ISO-8601 in UTC with milliseconds
Instant = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        json_schema_extra={"format": "date-time"},
        examples=["2026-11-22T04:31:00.000Z"],
    ),
]
Count = Annotated[int, Field(ge=0)]
#: money in the shop's currency units (not cents), as sent in the events' ``amount``/``price``
Money = Annotated[float, Field(ge=0)]
#: a share or probability, 0-1, rounded to 4 places
Share = Annotated[float, Field(ge=0, le=1)]
Days = float


class WindowTotals(BaseModel):
    """Totals over the events with ``as_of - N days < ts <= as_of``."""

    events: Count = Field(description="Events of any type in the window")
    purchases: Count = Field(description="Payments (pay events) in the window")
    spend: Money = Field(description="Sum of the window's payment amounts, currency units (gross of refunds)")


class Windows(BaseModel):
    """Rolling windows ending at ``as_of``, keyed by their length."""

    # attributes d7, d30, d90; keys 7d, 30d, 90d on the wire

    d7: WindowTotals = Field(alias="7d", description="The last 7 days")
    d30: WindowTotals = Field(alias="30d", description="The last 30 days")
    d90: WindowTotals = Field(alias="90d", description="The last 90 days")


class Lifetime(BaseModel):
    """Totals since the user's first event."""

    events: Count = Field(description="Events of any type, each event_id counted once")
    purchases: Count = Field(description="Payments (pay events)")
    spend: Money = Field(description="Sum of payment amounts, currency units (gross of refunds)")
    refunds: Count = Field(description="Refund events")
    refund_amount: Money = Field(description="Sum of refunded amounts, currency units")
    net_spend: float = Field(description="spend - refund_amount, currency units (negative if refunds exceed spend)")
    repeat_spend: Money | None = Field(
        description="Spend on the purchase days (calendar days of the shop's time zone) after the first one, currency units: the repeat "
        "purchases' value Gamma-Gamma's mean spend is made of; 0 for a non-buyer; null in a state kept before "
        "it was counted"
    )


class CategoryScore(BaseModel):
    """One category's decayed interest."""

    category: str = Field(description="Category name as sent in the events")
    score: float = Field(
        ge=0,
        description="Interest at as_of: each event of the category weighted by its kind (view and click 1, search "
        "0.5, add_to_cart and favorite 3, order 4, pay 5, review 2), halved every PORTRAITS_CATEGORY_HALF_LIFE_DAYS; "
        "4 decimals",
    )


class Funnel(BaseModel):
    """Decision behaviour, lifetime counts by event type."""

    views: Count = Field(description="view events")
    searches: Count = Field(description="search events")
    clicks: Count = Field(description="click events")
    add_to_cart: Count = Field(description="add_to_cart events")
    favorites: Count = Field(description="favorite events")
    orders: Count = Field(description="order events")
    purchases: Count = Field(description="pay events")
    cart_to_purchase: Share | None = Field(description="purchases / add_to_cart, capped at 1; null without carts")
    favorite_to_purchase: Share | None = Field(description="purchases / favorites, capped at 1; null without favourites")
    abandoned_carts: Count = Field(
        description="Carts (add_to_cart events) no payment followed within PORTRAITS_CART_TIMEOUT_HOURS, as of as_of"
    )
    last_abandoned_cart: Instant | None = Field(
        description="Time of the newest abandoned cart (its add_to_cart event); null when none is abandoned"
    )
    shares: Count = Field(description="share events (the user shared an item or the shop: referrals)")
    visits: Count = Field(
        description="Visits: sessions holding a view, a session being the user's events less than 30 minutes apart "
        "(a 30-minute gap without an event starts the next)"
    )
    visit_views: Count = Field(description="view events in those visits")
    browse_depth: float | None = Field(
        ge=1, description="visit_views / visits: pages viewed per visit, 4 decimals; null without a visit"
    )
    item_purchases: Count = Field(description="pay events naming an item_id")
    same_day_purchases: Count = Field(
        description="Of item_purchases, the same-day decisions: paid on the shop calendar day the user first viewed "
        "the item, before the payment (first views are remembered for the 32 items the user viewed last)"
    )
    same_day_share: Share | None = Field(
        description="same_day_purchases / item_purchases, 4 decimals; null without a payment naming an item"
    )


class WeeklyLedger(BaseModel):
    """The shop weeks (Monday to Sunday, shop time zone) in which the user had an event, in columns: the i-th
    entry of each list is the i-th week's."""

    start: list[Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"})]] = Field(
        max_length=53, description="Each week's Monday, YYYY-MM-DD in the shop's calendar, oldest first", examples=[["2026-11-16"]]
    )
    purchases: list[Count] = Field(max_length=53, description="pay events in each week")
    spend: list[Money] = Field(max_length=53, description="Sum of each week's payment amounts, currency units (gross of refunds)")
    shares: list[Count] = Field(max_length=53, description="share events in each week")


class ProfileAttributes(BaseModel):
    """Static attributes from the ``profiles`` topic (newest record wins); an attribute never given is absent."""

    age: int | None = Field(None, ge=0, le=130, description="Age in years")
    age_band: str | None = Field(None, description="Age band as given, else derived from age: <18, 18-24, 25-29, ..., 55+")
    gender: str | None = Field(None, description="As given in the profile")
    region: str | None = Field(None, description="Province or region, as given")
    city_tier: int | str | None = Field(None, description="City tier, as given (1 = largest cities)")
    member_level: str | int | None = Field(None, description="Membership level, as given")


#: a review's sentiment: -1 wholly negative, 0 neutral, +1 wholly positive
Sentiment = Annotated[float, Field(ge=-1, le=1)]


class NegativeReview(BaseModel):
    """One negative review of the sentiment window."""

    at: Instant = Field(description="Time of the review event")
    item_id: str | None = Field(description="The reviewed item, as sent in the review event; null when it named none")
    score: Sentiment = Field(description="The review's sentiment, -1 to +1, 4 decimals (at most -0.2: negative)")


class ReviewSentiment(BaseModel):
    """Sentiment of the user's reviews, each scored once when its review event was admitted.

    A review's score runs from -1 (wholly negative) through 0 (neutral) to +1 (wholly positive):
    Chinese text under pysenti's naive Bayes model (2 P(positive) - 1), English text under VADER
    (compound score), else the rating, (stars - 3) / 2 clipped to [-1, 1]. At most -0.2 is
    negative, at least 0.2 positive. Reviews with neither readable text nor a rating are not scored.
    """

    mean: Sentiment | None = Field(description="Mean score of the reviews scored (lifetime), -1 to +1, 4 decimals; null before any")
    reviews: Count = Field(description="Review events given a sentiment score (lifetime)")
    from_text: Count = Field(description="Reviews scored from their text (the rest from their rating)")
    positive: Count = Field(description="Reviews scoring 0.2 or more (lifetime)")
    negative: Count = Field(description="Reviews scoring -0.2 or less (lifetime)")
    window_days: float = Field(gt=0, description="Days before as_of the recent negative reviews are counted over (PORTRAITS_SENTIMENT_WINDOW_DAYS)")
    negative_recent: Count = Field(
        description="Negative reviews with as_of - window_days < time <= as_of (the newest 50 of the window are kept)"
    )
    recent_negative: list[NegativeReview] = Field(
        description="The newest negative reviews of the window, newest first, at most 3"
    )


class RenderedPortrait(BaseModel):
    """What ``render`` gives: one user's figures valued at ``as_of``; instants are ISO-8601 UTC with milliseconds."""

    user_id: str = Field(description="The user id, as the events' key")
    as_of: Instant = Field(
        description="Event-time instant the figures are valued at: the partition's stream time rounded up to the "
        "whole minute"
    )
    first_seen: Instant | None = Field(description="Time of the first event; null for a user known from a profile only")
    last_seen: Instant | None = Field(description="Time of the newest event; null for a user known from a profile only")
    first_purchase: Instant | None = Field(description="Time of the first payment; null for a non-buyer")
    last_purchase: Instant | None = Field(description="Time of the newest payment; null for a non-buyer")
    days_since_last_seen: Days | None = Field(
        description="(as_of - last_seen) in days, 3 decimals (slightly negative for an event stamped ahead of the "
        "stream time); null without events"
    )
    days_since_last_purchase: Days | None = Field(
        description="(as_of - last_purchase) in days, 3 decimals; null for a non-buyer"
    )
    lifetime: Lifetime
    windows: Windows
    aov: Money | None = Field(description="Average order value: lifetime spend / purchases, currency units, 2 decimals; null for a non-buyer")
    purchase_days: Count = Field(description="Distinct days with a payment, calendar days of the shop's time zone (the F of RFM; x + 1 of BG/NBD)")
    last_return_gap_days: Count | None = Field(
        description="Whole days between the last two distinct purchase days (shop time zone); null with fewer than two"
    )
    refund_rate: float | None = Field(
        ge=0, description="refunds / purchases (lifetime), 4 decimals; can exceed 1; null for a non-buyer"
    )
    active_hours: list[Count] = Field(
        min_length=24, max_length=24, description="Events by hour of day 0-23, in the shop's time zone (timezone)"
    )
    weekdays: list[Count] = Field(
        min_length=7, max_length=7, description="Events by weekday, Monday first, in the shop's time zone"
    )
    peak_hour: int | None = Field(
        ge=0, le=23, description="Hour of day (0-23, shop time zone) with the most events, the earliest of equal ones; null without events"
    )
    weekend_share: Share | None = Field(description="Share of events on Saturday and Sunday (shop time zone); null without events")
    timezone: str = Field(description="IANA time zone of active_hours, weekdays and weekend_share (PORTRAITS_TIMEZONE)")
    top_categories: list[CategoryScore] = Field(
        description="The highest-scoring categories (5 by default), best first, ties by name"
    )
    category_count: Count = Field(description="Categories the user has a score in (at most 32 are kept)")
    funnel: Funnel
    devices: dict[str, Share] = Field(
        description="Share of the events that named a device, by device (ios, android, pc, mini_program, ...), "
        "4 decimals; devices beyond the first 8 seen are counted under 'other'"
    )
    payment_methods: dict[Literal[PAYMENT_METHODS], Share] = Field(  # type: ignore[valid-type]
        description="Share of the payments (pay events) that named a payment method, by method (the event "
        "contract's vocabulary), 4 decimals; empty when none named one"
    )
    promo_share: Share | None = Field(description="Share of payments made on a promotion; null for a non-buyer")
    sentiment: ReviewSentiment
    bought_items: list[str] = Field(
        description="Item ids the user paid for on one of the last 90 calendar days of the shop's time zone (as_of's day "
        "and the 89 before), most recent purchase day first, ties by id; at most the 50 items bought last are remembered"
    )
    profile: ProfileAttributes
    weeks: WeeklyLedger = Field(
        description="The shop weeks with an event among the 53 up to the week of the user's newest event, oldest "
        "first: what the AARRR figures (GET /v1/aarrr) count",
    )
    version: Count = Field(description="Changes folded into the user's state (events and profile records); grows with each")


class Rfm(BaseModel):
    """RFM quintile scores against the recent population of buyers (5 best), and the value layer."""

    r: int | None = Field(ge=1, le=5, description="Recency score of days_since_last_purchase (fewer days, higher); null for a non-buyer")
    f: int | None = Field(ge=1, le=5, description="Frequency score of purchase_days; null for a non-buyer")
    m: int | None = Field(ge=1, le=5, description="Monetary score of the 90-day spend; null for a non-buyer")
    layer: Literal[LAYERS] = Field(  # type: ignore[valid-type]
        description="Value layer (DOMAIN.md): high_value, potential, ordinary (30-day buyers, by purchases, order "
        "value against PORTRAITS_BENCHMARK_AOV, repurchase and add-to-cart rate) or low_value (no purchase in 30 days)"
    )


class Segment(BaseModel):
    """The behaviour cluster the user is nearest to."""

    id: Count = Field(description="Segment id, stable across model snapshots")
    name: str = Field(description="Readable description of the segment's centre, e.g. 'night active, snacks and beauty'")


class Churn(BaseModel):
    """Churn risk under the newest model snapshot, at the portrait's as_of."""

    risk: Share | None = Field(
        description="Churn risk from the model named in model, 4 decimals: for a buyer, the candidate with the lowest "
        "Brier score on matured labels (1 - p_alive until one qualifies); for a non-buyer, the classifier's "
        "probability of no purchase within PORTRAITS_CHURN_HORIZON_DAYS once it has proven itself; null otherwise"
    )
    p_alive: Share | None = Field(description="P(alive) under MBG/NBD, 4 decimals; null for a non-buyer or before MBG/NBD is fitted")
    p_alive_bgnbd: Share | None = Field(
        description="P(alive) under BG/NBD (every one-time buyer counts as alive), 4 decimals; null for a non-buyer or before BG/NBD is fitted"
    )
    model: Literal[(*CANDIDATES, "none")] = Field(  # type: ignore[valid-type]
        description="What risk comes from: mbgnbd (1 - p_alive), mbgnbd_horizon (MBG/NBD's probability of no purchase "
        "within the horizon), classifier, stacked (both combined); none when risk is null"
    )
    reasons: list[str] = Field(
        description="Readable grounds, e.g. '41 days since last purchase; usual gap 9 days' or '2 negative reviews in "
        "the last 30 days; latest 2024-05-03 on item snacks-004 (sentiment -0.82)'"
    )
    model_version: Count = Field(description="Version of the model snapshot that scored this block")


class Clv(BaseModel):
    """Customer lifetime value under the newest model snapshot, at the portrait's ``as_of``."""

    expected_purchases: float = Field(
        ge=0,
        description="Purchase days the purchase model (MBG/NBD, else BG/NBD) expects within horizon_days, each month's "
        "discounted to as_of at PORTRAITS_CLV_ANNUAL_DISCOUNT_RATE; 4 decimals",
    )
    expected_order_value: float | None = Field(
        description="Gamma-Gamma's expected spend of one purchase day given the repeat days' mean spend, currency "
        "units, 2 decimals (null: no spend model fitted)"
    )
    value: float | None = Field(
        description="expected_purchases x expected_order_value, currency units, 2 decimals (null: no spend model fitted)"
    )
    horizon_days: int = Field(gt=0, description="Days ahead of as_of the value counts (PORTRAITS_CLV_HORIZON_DAYS)")


class NextCategory(BaseModel):
    """A category the user is likely to buy next: bought together with one of their top categories more often than chance."""

    category: str = Field(description="The category, as sent in the events; never one of the user's top_categories")
    lift: float = Field(
        gt=1,
        description="Lift of the pair (because, category) in the association window: baskets holding both x baskets / "
        "(baskets holding because x baskets holding category), 4 decimals; above 1: bought together more often than "
        "chance",
    )
    because: str = Field(description="The user's top category it is bought together with (the one of the highest lift)")


class PriceBand(BaseModel):
    """The user's consumption level: their ``aov`` ranked among the recent buyers' average order values."""

    band: Literal[PRICE_BANDS] = Field(  # type: ignore[valid-type]
        description="low: rank below 0.25; high: rank 0.75 or more; mid: between"
    )
    rank: Share = Field(
        description="Mid-rank of aov among the buyers' average order values: (share below + share at or below) / 2, "
        "4 decimals"
    )


class Portrait(RenderedPortrait):
    """One user's live portrait as published on the ``portraits`` topic and served by the API."""

    rfm: Rfm
    lifecycle: Literal[STAGES] = Field(  # type: ignore[valid-type]
        description="Lifecycle stage: new (first seen <= 14 days ago), returning (last purchase ended >= 90 silent "
        "days and is <= 30 days old), active (silent <= 30 days), at_risk (<= 90), churned; silence counts from the "
        "last purchase, or the last visit for never-buyers"
    )
    segment: Segment | None = Field(description="Behaviour segment; null until the segment model is seeded")
    tags: list[str] = Field(description="Names of the rule-defined tags that hold (PORTRAITS_TAG_RULES), sorted")
    churn: Churn
    clv: Clv | None = Field(description="Lifetime value of a buyer once a purchase model is fitted; null otherwise")
    price_band: PriceBand | None = Field(
        description="Where the user's average order value stands among the recent buyers' (one sample per buyer "
        "and week, the last one to two weeks); null for a non-buyer or before the population holds an order value"
    )
    next_categories: list[NextCategory] | None = Field(
        None,
        description="Up to PORTRAITS_ASSOCIATION_NEXT_CATEGORIES categories the user does not hold among top_categories, "
        "each with the highest lift it has with one of them over the category pairs bought together in at least "
        "PORTRAITS_ASSOCIATION_MIN_PAIR_BASKETS baskets of the association window (GET /v1/associations), lift above 1, "
        "highest first (then more baskets, then name); empty when none qualifies. Added by the API from the newest "
        "association summary (and kept up to date as summaries arrive), so absent on the portraits topic, and null "
        "before the first summary",
    )


def portrait_json_schema() -> dict[str, Any]:
    """JSON Schema of one record of the ``portraits`` topic (``schemas/portrait.schema.json``)."""
    schema = Portrait.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "Customer portrait"}


# ---------------------------------------------------------------------------------------------
# Item and category portraits (online_models.item_portrait.render)
# ---------------------------------------------------------------------------------------------


class ItemLifetime(BaseModel):
    """Totals since the first fact of the item or category."""

    views: Count = Field(description="view events naming it")
    add_to_cart: Count = Field(description="add_to_cart events naming it")
    favorites: Count = Field(description="favorite events naming it")
    purchases: Count = Field(description="pay events naming it")
    gmv: Money = Field(description="Sum of those payments' amounts, currency units (gross of refunds)")
    refunds: Count = Field(description="refund events naming it")
    refund_amount: Money = Field(description="Sum of those refunds' amounts, currency units")


class BuyersBy(BaseModel):
    """The window's buyers, each counted once, by who they were at their latest purchase of it in the window."""

    layers: dict[str, Count] = Field(
        description="Buyers by value layer (rfm.layer) at that purchase, as the layer rules give it for the purchase's "
        "minute and the buyer's events folded in so far"
    )
    segments: dict[str, Count] = Field(
        description="Buyers by behaviour segment id at that purchase under the models of the moment; 'unknown' before "
        "the segment model is seeded"
    )
    age_bands: dict[str, Count] = Field(
        description="Buyers by the age band of their profile at that purchase; 'unknown' without one; a shop day counts "
        "16 bands by name at most (profiles may give any text), the buyers of any further one under 'other'"
    )


class ItemWindow(BaseModel):
    """Figures of the window's shop days: ``day(as_of) - N < day <= day(as_of)``, days of the shop's time zone."""

    views: Count = Field(description="view events in the window")
    add_to_cart: Count = Field(description="add_to_cart events in the window")
    favorites: Count = Field(description="favorite events in the window")
    purchases: Count = Field(description="pay events in the window")
    gmv: Money = Field(description="Sum of the window's payment amounts, currency units (gross of refunds)")
    refunds: Count = Field(description="refund events in the window")
    refund_amount: Money = Field(description="Sum of the window's refunded amounts, currency units")
    conversion: float | None = Field(
        ge=0,
        description="purchases / views in the window (events, not visitors), 4 decimals; can exceed 1 when items are "
        "bought without a recorded view; null without views",
    )
    refund_rate: float | None = Field(
        ge=0, description="refunds / purchases in the window, 4 decimals; can exceed 1; null without purchases"
    )
    buyers: Count = Field(description="Distinct buyers with a purchase in the window")
    repeat_buyers: Count = Field(description="Buyers with purchases on two or more distinct days in the window")
    repurchase_rate: Share | None = Field(description="repeat_buyers / buyers, 4 decimals; null without buyers")
    buyers_by: BuyersBy


class ItemWindows(BaseModel):
    """Windows of whole shop days ending with the day of ``as_of``, keyed by their length."""

    d7: ItemWindow = Field(alias="7d", description="The last 7 shop days")
    d30: ItemWindow = Field(alias="30d", description="The last 30 shop days")
    d90: ItemWindow = Field(alias="90d", description="The last 90 shop days")


class ItemPortrait(BaseModel):
    """One item's or category's live portrait, as published on the ``item-portraits`` topic and served by the API."""

    key: str = Field(description="The record key: item:<item_id> or category:<name>")
    kind: Literal["item", "category"] = Field(description="What the portrait describes")
    id: str = Field(description="The item id or the category name, as sent in the events")
    category: str | None = Field(description="An item's category, from its newest event that named one; null for a category")
    as_of: Instant = Field(
        description="Event-time instant the figures are valued at: the item partition's stream time (the newest "
        "fact's time, never past the wall clock) rounded up to the whole minute"
    )
    as_of_day: str = Field(
        pattern=r"^\d{4}-\d{2}-\d{2}$", description="The shop day of as_of (in timezone): the last day of every window"
    )
    timezone: str = Field(description="IANA time zone of the shop days (PORTRAITS_TIMEZONE)")
    first_seen: Instant | None = Field(description="Time of the first event counted")
    last_seen: Instant | None = Field(description="Time of the newest event counted")
    lifetime: ItemLifetime
    windows: ItemWindows
    version: Count = Field(description="Events folded into the state; grows with each")


def item_portrait_json_schema() -> dict[str, Any]:
    """JSON Schema of one record of the ``item-portraits`` topic (``schemas/item-portrait.schema.json``)."""
    schema = ItemPortrait.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "Item or category portrait"}


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "portrait"
    if which not in ("portrait", "item"):
        raise SystemExit("usage: python -m online_models.portrait_schema [portrait|item]")
    schema = portrait_json_schema() if which == "portrait" else item_portrait_json_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))
