"""The customer portrait: per-user state, its update by one event, and its JSON view.

Everything here is a plain function of (state, event) in event time; there is no
Kafka or Faust in it. The state is an order-insensitive aggregate: events that
arrive out of order (but within the allowed lateness) leave exactly the state
they would have left in order, and a redelivered ``event_id`` changes nothing.

>>> from online_models.events import parse_event
>>> config = PortraitConfig()
>>> state = PortraitState("u1")
>>> for raw in (
...     b'{"event_id":"1","user_id":"u1","type":"view","ts":"2024-05-01T10:00:00Z","category":"snacks"}',
...     b'{"event_id":"2","user_id":"u1","type":"pay","ts":"2024-05-01T10:05:00Z","amount":30}',
...     b'{"event_id":"2","user_id":"u1","type":"pay","ts":"2024-05-01T10:05:00Z","amount":30}',
... ):
...     _ = update(state, parse_event(raw), watermark=0, config=config)
>>> view = render(state, as_of=parse_event(raw).ts, config=config)
>>> view.lifetime
Lifetime(events=2, purchases=1, spend=30.0, refunds=0, refund_amount=0.0, net_spend=30.0, repeat_spend=0.0)
>>> view.windows.d7, view.peak_hour
(WindowTotals(events=2, purchases=1, spend=30.0), 10)
>>> orjson.dumps(view.windows)
b'{"7d":{"events":2,"purchases":1,"spend":30.0},"30d":{"events":2,"purchases":1,"spend":30.0},"90d":{"events":2,"purchases":1,"spend":30.0}}'
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from online_models.activity import (
    count_session,
    count_week,
    note_item_payment,
    note_view,
    render_weeks,
    settle_decisions,
    settle_sessions,
    visit_totals,
)
from online_models.baskets import MAX_BASKET_LINES, add_purchase
from online_models.clock import DAY_MS, MINUTE_MS, ceil_minute, iso
from online_models.events import Event, Profile
from online_models.lifecycle import last_return_gap_days
from online_models.portrait_types import (
    CategoryScore,
    Funnel,
    Lifetime,
    NegativeReview,
    RenderedPortrait,
    ReviewSentiment,
    WindowTotals,
    Windows,
)
from online_models.sentiment import NEGATIVE_AT, POSITIVE_AT, ReviewScore
from online_models.vocabulary import SESSION_GAP_MS, WEEKEND_DAYS, local_calendar, local_day, ratio, week_of_day

WINDOW_DAYS = (7, 30, 90)
#: calendar days (shop time zone) of purchases the portrait's ``bought_items`` lists
BOUGHT_ITEMS_DAYS = 90
#: the device entry that counts the events of every device beyond the ``max_devices`` most used
OTHER_DEVICES = "other"

#: How much each kind of event says about interest in its category.
DEFAULT_CATEGORY_WEIGHTS = {
    "view": 1.0,
    "click": 1.0,
    "search": 0.5,
    "add_to_cart": 3.0,
    "favorite": 3.0,
    "order": 4.0,
    "pay": 5.0,
    "review": 2.0,
}


@dataclass(frozen=True)
class PortraitConfig:
    """Knobs of the portrait update; every one has a sensible default."""

    timezone: str = "UTC"
    category_half_life_days: float = 30.0
    max_categories: int = 32
    top_categories: int = 5
    #: devices counted by name (the first ones seen); any further device is counted under ``"other"``
    max_devices: int = 8
    cart_timeout_ms: int = DAY_MS
    dedupe_horizon_ms: int = DAY_MS
    #: most event ids kept for dedupe (the last ones folded in); keep it well above the records
    #: between two flushes, so a crash's replay still recognises what it already folded in
    max_seen_ids: int = 2000
    purchase_memory_ms: int = 120 * DAY_MS
    #: negative reviews are counted over this many days before ``as_of`` (and kept that long)
    sentiment_window_days: float = 30.0
    #: the newest negative reviews of the window a portrait lists
    negative_reviews_shown: int = 3
    #: most negative reviews of the window kept per user (the newest); the window's count stops there
    max_recent_negative_reviews: int = 50
    #: shop weeks kept in the weekly ledger, counted back from the user's newest one (52 and the week an
    #: event stamped ahead of the stream time can open)
    activity_weeks: int = 53
    #: items whose first view is remembered for same-day decisions (the ones viewed last)
    max_viewed_items: int = 32
    #: items and categories whose last reported buyer contribution a user's state remembers
    #: (:mod:`online_models.item_facts`); past these, the one bought longest ago is forgotten
    max_bought_items: int = 50
    max_bought_categories: int = 32
    #: keep the user's open baskets (online_models.baskets) for the co-purchase counts
    track_baskets: bool = True
    #: payments of one order_id more than this apart are separate baskets; an order's basket closes
    #: once the watermark is this far past its last payment
    order_gap_ms: int = 3_600_000
    #: most distinct categories, and items, one basket keeps
    max_basket_lines: int = MAX_BASKET_LINES
    category_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_CATEGORY_WEIGHTS))

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.category_half_life_days <= 0:
            raise ValueError("category_half_life_days must be positive")
        if self.max_categories < self.top_categories:
            raise ValueError("max_categories must be at least top_categories")
        if self.max_devices < 1 or self.max_seen_ids < 1:
            raise ValueError("max_devices and max_seen_ids must be positive")
        if self.sentiment_window_days <= 0 or self.max_recent_negative_reviews < self.negative_reviews_shown:
            raise ValueError(
                "sentiment_window_days must be positive and max_recent_negative_reviews at least negative_reviews_shown"
            )
        if self.activity_weeks < 1 or self.max_viewed_items < 1:
            raise ValueError("activity_weeks and max_viewed_items must be positive")
        if self.max_bought_items < 1 or self.max_bought_categories < 1:
            raise ValueError("max_bought_items and max_bought_categories must be positive")
        if self.order_gap_ms < 0 or self.max_basket_lines < 2:
            raise ValueError("order_gap_ms must not be negative and max_basket_lines must be at least 2")


@dataclass(slots=True)
class PortraitState:
    """Everything kept per user. Money is in integer cents so sums are exact.

    Every collection is bounded. By count: ``devices`` (the first ``max_devices`` names; any
    further device is counted under ``"other"``), ``seen`` (the ids of the last ``max_seen_ids``
    events folded in, within the dedupe horizon), ``category_scores`` (``max_categories``),
    ``type_counts``, ``hours``, ``weekdays``, ``profile`` (the profile contract's fields),
    ``payment_methods`` (the contract's vocabulary), ``first_views`` (``max_viewed_items``),
    ``bought_items`` and ``bought_categories`` (``max_bought_items``, ``max_bought_categories``). By
    event time: the minute buckets (90 days), ``purchase_times`` (``purchase_memory_ms``),
    ``open_carts`` and ``recent_pays`` (the cart timeout and the lateness), ``pending_labels``
    (the label horizon), ``baskets`` (open until the watermark closes them, each of at most
    ``max_basket_lines`` categories and items), ``purchase_days`` (one entry per day with a purchase),
    ``recent_negative_reviews`` (the sentiment window, and at most ``max_recent_negative_reviews``), the weekly
    ledger (``activity_weeks``), the open sessions and ``pending_decisions`` (the lateness and a
    session gap; see :mod:`online_models.activity`). A redelivery
    whose id has left ``seen`` is dead-lettered as ``late_event`` when older than the watermark,
    else counted again: that takes more than ``max_seen_ids`` events of one user within the
    allowed lateness. The serialized state as a whole is capped by the partition engine
    (``EngineConfig.max_state_bytes``): an event that could take it past the cap is
    dead-lettered as ``state_too_large`` instead.
    """

    user_id: str
    first_seen: int | None = None
    last_seen: int | None = None
    first_purchase: int | None = None
    last_purchase: int | None = None
    events: int = 0
    purchases: int = 0
    spend_cents: int = 0
    # spend on the (UTC) day of the first purchase; the rest is repeat-day spend (None: a state
    # kept before this was counted)
    first_day_cents: int | None = None
    refunds: int = 0
    refund_cents: int = 0
    # per-minute totals of the last 90 days, as parallel lists sorted by the minute's end
    # (in whole minutes since the epoch): events, purchases, spend in cents
    bucket_minutes: list[int] = field(default_factory=list)
    bucket_events: list[int] = field(default_factory=list)
    bucket_purchases: list[int] = field(default_factory=list)
    bucket_cents: list[int] = field(default_factory=list)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    weekdays: list[int] = field(default_factory=lambda: [0] * 7)
    type_counts: dict[str, int] = field(default_factory=dict)
    devices: dict[str, int] = field(default_factory=dict)
    promo_purchases: int = 0
    # decayed category interest, valued at ``category_ref`` (ms)
    category_scores: dict[str, float] = field(default_factory=dict)
    category_ref: int = 0
    # carts not yet known to be bought or abandoned (sorted times), and recent payments
    open_carts: list[int] = field(default_factory=list)
    recent_pays: list[int] = field(default_factory=list)
    abandoned_carts: int = 0
    # time of the newest cart settled as abandoned
    last_abandoned_cart: int | None = None
    # distinct days of the shop's time zone with a purchase (sorted day numbers): repeat-purchase statistics
    purchase_days: list[int] = field(default_factory=list)
    # event_id -> event time, for duplicates within the dedupe horizon
    seen: dict[str, int] = field(default_factory=dict)
    # offset of the last events record folded in (its partition's: a user's events all share one), so a
    # record read again after a crash is recognised however long ago the last flush was (None: not known)
    event_offset: int | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    profile_ts: int | None = None
    # offset of the last profiles record applied (its partition's), so a record read again after a crash
    # is recognised: applying it twice would count the change twice (None: not known)
    profile_offset: int | None = None
    version: int = 0
    # purchase times (sorted) within ``purchase_memory_ms``: churn labels are read from them
    purchase_times: list[int] = field(default_factory=list)
    # open baskets (online_models.baskets): payments bought together, until the watermark closes them
    baskets: list = field(default_factory=list)
    # what the worker keeps to watch the user (see online_models.watch)
    sample_period: int = -1
    pending_labels: list = field(default_factory=list)  # [t, compact_features(...), (x, t_x, T)], oldest first
    alert: dict[str, Any] = field(default_factory=dict)
    next_check: int | None = None
    # the worker's sequence number of the change that left this state (see online_models.processor)
    seq: int = 0
    # reviews given a sentiment score at admission: how many, the sum of their scores in units of
    # 1e-4 (exact, so the sum does not depend on the order of arrival), how many were scored from
    # their text, how many were positive and negative
    reviews_scored: int = 0
    sentiment_units: int = 0
    reviews_from_text: int = 0
    positive_reviews: int = 0
    negative_reviews: int = 0
    # negative reviews within the sentiment window, sorted by time: [ts, item_id, score]
    recent_negative_reviews: list = field(default_factory=list)
    # payments (pay events) by the payment method they name
    payment_methods: dict[str, int] = field(default_factory=dict)
    # the weekly ledger (online_models.activity): shop weeks with an event, sorted, and per week the
    # payments, their spend in cents and the shares
    week_numbers: list[int] = field(default_factory=list)
    week_purchases: list[int] = field(default_factory=list)
    week_cents: list[int] = field(default_factory=list)
    week_shares: list[int] = field(default_factory=list)
    # sessions a late event can still join (start, end, views), sorted; settled visits and their views
    session_starts: list[int] = field(default_factory=list)
    session_ends: list[int] = field(default_factory=list)
    session_views: list[int] = field(default_factory=list)
    visits: int = 0
    visit_views: int = 0
    # item -> time of its first view, for the items viewed last (in order of their last view)
    first_views: dict[str, int] = field(default_factory=dict)
    # payments naming an item, those first viewed earlier on the payment's shop day, and the
    # answers a late view can still change: [pay time, shop day, item, 0 or 1]
    item_purchases: int = 0
    same_day_purchases: int = 0
    pending_decisions: list = field(default_factory=list)
    # item id / category -> the buyer contribution last reported to the items' engines
    # ([latest purchase day, previous purchase day, layer, segment, age band], online_models.item_facts)
    bought_items: dict[str, list] = field(default_factory=dict)
    bought_categories: dict[str, list] = field(default_factory=dict)

    def has_seen(self, event_id: str, offset: int | None = None) -> bool:
        """Whether the event was already folded in: its ``event_id`` (within the dedupe horizon),
        or its record's ``offset`` in the events topic, at or below that of the last one folded in.

        >>> state = PortraitState("u1", seen={"e1": 0}, event_offset=41)
        >>> state.has_seen("e1"), state.has_seen("e2", 41), state.has_seen("e2", 42), state.has_seen("e2")
        (True, True, False, False)
        """
        if event_id in self.seen:
            return True
        return offset is not None and self.event_offset is not None and offset <= self.event_offset

    def to_bytes(self) -> bytes:
        """Compact JSON for the state store."""
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PortraitState":
        """Inverse of :meth:`to_bytes`."""
        return cls(**orjson.loads(raw))


def _rescale_categories(state: PortraitState, ts_ms: int, half_life_ms: float) -> None:
    """Move the category scores' reference time forward to ``ts_ms``."""
    if ts_ms <= state.category_ref:
        return
    if state.category_scores:
        factor = 2.0 ** (-(ts_ms - state.category_ref) / half_life_ms)
        for name in state.category_scores:
            state.category_scores[name] *= factor
    state.category_ref = ts_ms


def _add_category(state: PortraitState, category: str, weight: float, ts_ms: int, config: PortraitConfig) -> None:
    half_life_ms = config.category_half_life_days * DAY_MS
    _rescale_categories(state, ts_ms, half_life_ms)
    value = weight * 2.0 ** (-(state.category_ref - ts_ms) / half_life_ms)
    scores = state.category_scores
    scores[category] = scores.get(category, 0.0) + value
    if len(scores) > config.max_categories:
        del scores[min(scores, key=scores.__getitem__)]


def _count_device(devices: dict[str, int], device: str, max_devices: int) -> None:
    """Count one event of ``device``: by name among the first ``max_devices`` names, else under ``"other"``.

    >>> devices = {"ios": 5, "pc": 2}
    >>> for name in ("tv", "pc", "fridge"): _count_device(devices, name, 2)
    >>> devices
    {'ios': 5, 'pc': 3, 'other': 2}
    """
    if device not in devices and len(devices) - (OTHER_DEVICES in devices) >= max_devices:
        device = OTHER_DEVICES
    devices[device] = devices.get(device, 0) + 1


def _count_first_day(state: PortraitState, day: int, cents: int, zone: str = "UTC") -> None:
    """Count a payment on the shop's ``day`` (in ``zone``) into the first purchase day's spend (before ``first_purchase`` moves).

    >>> state = PortraitState("u1", first_purchase=5 * DAY_MS, first_day_cents=100)
    >>> _count_first_day(state, 5, 50); state.first_day_cents
    150
    >>> _count_first_day(state, 6, 70); state.first_day_cents
    150
    >>> _count_first_day(state, 4, 20); state.first_day_cents
    20
    """
    if state.first_purchase is None:
        state.first_day_cents = cents
    elif state.first_day_cents is not None:
        first = local_day(state.first_purchase, zone)
        if day < first:
            state.first_day_cents = cents  # an earlier payment arrived late: the old first day is a repeat day
        elif day == first:
            state.first_day_cents += cents


def repeat_spend_cents(state: PortraitState) -> int | None:
    """Spend on the purchase days after the first (None when the first day's spend is unknown)."""
    if not state.purchases:
        return 0
    return None if state.first_day_cents is None else state.spend_cents - state.first_day_cents


def _count_review(state: PortraitState, event: Event, sentiment: ReviewScore, config: PortraitConfig) -> None:
    """Fold a review's sentiment (given at admission) into the user's sentiment figures."""
    state.reviews_scored += 1
    state.sentiment_units += round(sentiment.score * 10_000)
    if sentiment.source != "rating":
        state.reviews_from_text += 1
    if sentiment.score >= POSITIVE_AT:
        state.positive_reviews += 1
    elif sentiment.score <= NEGATIVE_AT:
        state.negative_reviews += 1
        kept = state.recent_negative_reviews
        bisect.insort(kept, [event.ts, event.item_id, sentiment.score], key=_review_time)
        if len(kept) > config.max_recent_negative_reviews:
            del kept[0]  # the oldest


def _review_time(entry: list) -> int:
    return entry[0]


def update(
    state: PortraitState, event: Event, *, watermark: int, config: PortraitConfig, sentiment: ReviewScore | None = None
) -> bool:
    """Fold one admitted event into ``state``; False (and no change) for a duplicate.

    ``watermark`` is the partition's event-time watermark after this event: state
    that no admissible event can touch any more is settled and pruned against it.
    ``sentiment`` is a review's score, given at admission (:func:`online_models.admission.review_sentiment`).
    """
    if event.event_id in state.seen:
        return False
    ts = event.ts
    seen = state.seen
    seen[event.event_id] = ts
    if len(seen) > config.max_seen_ids:
        del seen[next(iter(seen))]  # the id folded in first
    state.version += 1
    state.events += 1
    if state.first_seen is None or ts < state.first_seen:
        state.first_seen = ts
    if state.last_seen is None or ts > state.last_seen:
        state.last_seen = ts

    kind = event.type
    state.type_counts[kind] = state.type_counts.get(kind, 0) + 1
    zone = config.timezone
    hour, weekday, day = local_calendar(ts, zone)
    state.hours[hour] += 1
    state.weekdays[weekday] += 1
    if event.device:
        _count_device(state.devices, event.device, config.max_devices)
    # the common cases inline (hot path): the newest week of the ledger, the newest session
    week = week_of_day(day)
    weeks = state.week_numbers
    week_slot = len(weeks) - 1 if weeks and weeks[-1] == week else count_week(state, week, config.activity_weeks)
    ends = state.session_ends
    if ends and ts >= state.session_starts[-1] and ts - ends[-1] < SESSION_GAP_MS:
        if ts > ends[-1]:
            ends[-1] = ts
        if kind == "view":
            state.session_views[-1] += 1
    else:
        count_session(state, ts, 1 if kind == "view" else 0)

    minute = ceil_minute(ts) // MINUTE_MS
    i = bisect.bisect_left(state.bucket_minutes, minute)
    if i == len(state.bucket_minutes) or state.bucket_minutes[i] != minute:
        state.bucket_minutes.insert(i, minute)
        state.bucket_events.insert(i, 0)
        state.bucket_purchases.insert(i, 0)
        state.bucket_cents.insert(i, 0)
    state.bucket_events[i] += 1
    if kind == "pay":
        cents = event.amount_cents
        _count_first_day(state, day, cents, zone)
        state.purchases += 1
        state.spend_cents += cents
        state.bucket_purchases[i] += 1
        state.bucket_cents[i] += cents
        if state.last_purchase is None or ts > state.last_purchase:
            state.last_purchase = ts
        if state.first_purchase is None or ts < state.first_purchase:
            state.first_purchase = ts
        if event.promo:
            state.promo_purchases += 1
        i = bisect.bisect_left(state.purchase_days, day)
        if i == len(state.purchase_days) or state.purchase_days[i] != day:
            state.purchase_days.insert(i, day)
        # a payment settles every cart put in during the timeout before it
        state.open_carts = [c for c in state.open_carts if not (ts - config.cart_timeout_ms < c <= ts)]
        bisect.insort(state.recent_pays, ts)
        bisect.insort(state.purchase_times, ts)
        if week_slot is not None:
            state.week_purchases[week_slot] += 1
            state.week_cents[week_slot] += cents
        if event.payment_method:
            state.payment_methods[event.payment_method] = state.payment_methods.get(event.payment_method, 0) + 1
        if event.item_id:
            note_item_payment(state, event.item_id, ts, day, zone)
        if config.track_baskets:
            add_purchase(
                state.baskets, ts=ts, order_id=event.order_id, category=event.category, item_id=event.item_id,
                zone=zone, order_gap_ms=config.order_gap_ms, max_lines=config.max_basket_lines, day=day,
            )
    elif kind == "view":
        if event.item_id:
            note_view(state, event.item_id, ts, config.max_viewed_items, zone)
    elif kind == "share":
        if week_slot is not None:
            state.week_shares[week_slot] += 1
    elif kind == "refund":
        state.refunds += 1
        state.refund_cents += event.amount_cents
    elif kind == "add_to_cart":
        i = bisect.bisect_left(state.recent_pays, ts)
        if not (i < len(state.recent_pays) and state.recent_pays[i] < ts + config.cart_timeout_ms):
            bisect.insort(state.open_carts, ts)
    elif kind == "review" and sentiment is not None:
        _count_review(state, event, sentiment, config)

    weight = config.category_weights.get(kind, 0.0)
    if event.category and weight:
        _add_category(state, event.category, weight, ts, config)
    prune(state, watermark, config)
    return True


def update_profile(state: PortraitState, profile: Profile, offset: int | None = None) -> bool:
    """Take static attributes; the record with the newest ``ts`` wins, one of equal ``ts`` adds to it.

    False, changing nothing, for an older record and for one whose ``offset`` in the profiles topic
    is at or below that of the last one applied (None: not known).

    >>> from online_models.events import parse_profile
    >>> state = PortraitState("u1")
    >>> record = parse_profile(b'{"user_id":"u1","ts":1714536000000,"city_tier":"1"}')
    >>> update_profile(state, record, offset=7), update_profile(state, record, offset=7), state.version
    (True, False, 1)
    """
    if offset is not None and state.profile_offset is not None and offset <= state.profile_offset:
        return False
    if state.profile_ts is not None and profile.ts < state.profile_ts:
        return False
    if state.profile_ts is not None and profile.ts == state.profile_ts:
        state.profile = {**state.profile, **profile.attributes()}
    else:
        state.profile = profile.attributes()
    state.profile_ts = profile.ts
    if offset is not None:
        state.profile_offset = offset
    state.version += 1
    return True


def prune(state: PortraitState, watermark: int, config: PortraitConfig) -> None:
    """Settle and drop what no admissible (``ts >= watermark``) event can change."""
    if state.open_carts and state.open_carts[0] + config.cart_timeout_ms <= watermark:
        settled = bisect.bisect_right(state.open_carts, watermark - config.cart_timeout_ms)
        state.abandoned_carts += settled
        newest = state.open_carts[settled - 1]
        if state.last_abandoned_cart is None or newest > state.last_abandoned_cart:
            state.last_abandoned_cart = newest
        del state.open_carts[:settled]
    if state.recent_pays and state.recent_pays[0] < watermark:
        del state.recent_pays[: bisect.bisect_left(state.recent_pays, watermark)]
    memory = watermark - config.purchase_memory_ms
    if state.purchase_times and state.purchase_times[0] < memory:
        del state.purchase_times[: bisect.bisect_left(state.purchase_times, memory)]
    # ``seen`` fills in roughly event-time order, so its first entry is (nearly)
    # the oldest: a cheap test for whether a sweep is due.
    horizon = watermark - config.dedupe_horizon_ms
    if state.seen and next(iter(state.seen.values())) < horizon:
        state.seen = {k: v for k, v in state.seen.items() if v >= horizon}
    window_start = watermark - config.sentiment_window_days * DAY_MS
    if state.recent_negative_reviews and state.recent_negative_reviews[0][0] <= window_start:
        state.recent_negative_reviews = [entry for entry in state.recent_negative_reviews if entry[0] > window_start]
    oldest_needed = (watermark - WINDOW_DAYS[-1] * DAY_MS) // MINUTE_MS
    if state.bucket_minutes and state.bucket_minutes[0] <= oldest_needed:
        cut = bisect.bisect_right(state.bucket_minutes, oldest_needed)
        for column in (state.bucket_minutes, state.bucket_events, state.bucket_purchases, state.bucket_cents):
            del column[:cut]
    if state.session_ends and state.session_ends[0] + SESSION_GAP_MS <= watermark:
        settle_sessions(state, watermark)
    if state.pending_decisions and state.pending_decisions[0][0] < watermark:
        settle_decisions(state, watermark)


def window_totals(state: PortraitState, as_of: int, days: int) -> WindowTotals:
    """Events, purchases and spend with ``as_of - days < ts <= as_of`` (``as_of`` on a whole minute)."""
    lo = bisect.bisect_right(state.bucket_minutes, (as_of - days * DAY_MS) // MINUTE_MS)
    hi = bisect.bisect_right(state.bucket_minutes, as_of // MINUTE_MS)
    return WindowTotals(sum(state.bucket_events[lo:hi]), sum(state.bucket_purchases[lo:hi]), sum(state.bucket_cents[lo:hi]) / 100)


def bought_items(state: PortraitState, as_of: int, config: PortraitConfig, days: int = BOUGHT_ITEMS_DAYS) -> list[str]:
    """Items paid for on one of the last ``days`` calendar days (shop time zone) up to ``as_of``'s, most recent first, ties by id."""
    since = local_day(as_of, config.timezone) - days
    recent = [(entry[0], item) for item, entry in state.bought_items.items() if entry[0] > since]
    return [item for _, item in sorted(recent, key=lambda pair: (-pair[0], pair[1]))]


def category_scores(state: PortraitState, as_of: int, config: PortraitConfig) -> dict[str, float]:
    """Every kept category's decayed score valued at ``as_of``."""
    factor = 2.0 ** (-(as_of - state.category_ref) / (config.category_half_life_days * DAY_MS))
    return {name: score * factor for name, score in state.category_scores.items()}


def sentiment_view(state: PortraitState, as_of: int, config: PortraitConfig) -> ReviewSentiment:
    """The user's review sentiment at ``as_of``: mean, counts, and the window's negative reviews, newest first."""
    window_ms = config.sentiment_window_days * DAY_MS
    recent = [entry for entry in state.recent_negative_reviews if as_of - window_ms < entry[0] <= as_of]
    scored = state.reviews_scored
    return ReviewSentiment(
        None if not scored else round(state.sentiment_units / scored / 10_000, 4),  # mean
        scored,  # reviews
        state.reviews_from_text,  # from_text
        state.positive_reviews,  # positive
        state.negative_reviews,  # negative
        config.sentiment_window_days,  # window_days
        len(recent),  # negative_recent
        [  # recent_negative
            NegativeReview(iso(ts), item_id, score) for ts, item_id, score in reversed(recent[-config.negative_reviews_shown :])
        ],
    )


def days_since(ts_ms: int | None, as_of: int) -> float | None:
    """Days from ``ts_ms`` to ``as_of``, to 3 places, as portraits publish them; None stays None."""
    return None if ts_ms is None else round((as_of - ts_ms) / DAY_MS, 3)


def average_order_value(state: PortraitState) -> float | None:
    """Spend per purchase, to the cent; None for a user who never paid."""
    return None if not state.purchases else round(state.spend_cents / state.purchases / 100, 2)


def weekend_share(state: PortraitState) -> float | None:
    """The share of the user's activity on Saturday and Sunday, to 4 places."""
    return ratio(sum(state.weekdays[d] for d in WEEKEND_DAYS), sum(state.hours))


def device_shares(state: PortraitState) -> dict[str, float]:
    """Each device's share of the user's events, to 4 places, by device name."""
    total = sum(state.devices.values())
    return {name: round(n / total, 4) for name, n in sorted(state.devices.items())}


def top_categories(state: PortraitState, as_of: int, config: PortraitConfig) -> list[tuple[str, float]]:
    """The ``config.top_categories`` best-scored categories at ``as_of``, ``(name, score to 4 places)``, best first."""
    top = sorted(category_scores(state, as_of, config).items(), key=lambda kv: (-kv[1], kv[0]))[: config.top_categories]
    return [(name, round(score, 4)) for name, score in top]


def render(state: PortraitState, *, as_of: int | None, config: PortraitConfig) -> RenderedPortrait:
    """The portrait as the API serves it, with figures valued at ``as_of``."""
    if as_of is None:
        as_of = ceil_minute(state.last_seen or state.profile_ts or 0)
    counts = state.type_counts
    purchases = state.purchases
    overdue = bisect.bisect_right(state.open_carts, as_of - config.cart_timeout_ms)  # abandoned, not yet settled
    abandoned = state.abandoned_carts + overdue
    last_abandoned = state.last_abandoned_cart
    if overdue and (last_abandoned is None or state.open_carts[overdue - 1] > last_abandoned):
        last_abandoned = state.open_carts[overdue - 1]
    method_total = sum(state.payment_methods.values())
    visits, visit_views = visit_totals(state)
    active_total = sum(state.hours)
    carts, favorites = counts.get("add_to_cart", 0), counts.get("favorite", 0)
    repeat = repeat_spend_cents(state)
    return RenderedPortrait(
        state.user_id,  # user_id
        iso(as_of),  # as_of
        iso(state.first_seen),  # first_seen
        iso(state.last_seen),  # last_seen
        iso(state.first_purchase),  # first_purchase
        iso(state.last_purchase),  # last_purchase
        days_since(state.last_seen, as_of),  # days_since_last_seen
        days_since(state.last_purchase, as_of),  # days_since_last_purchase
        Lifetime(  # lifetime
            state.events,  # events
            purchases,  # purchases
            state.spend_cents / 100,  # spend
            state.refunds,  # refunds
            state.refund_cents / 100,  # refund_amount
            (state.spend_cents - state.refund_cents) / 100,  # net_spend
            None if repeat is None else repeat / 100,  # repeat_spend
        ),
        Windows.of(*[window_totals(state, as_of, days) for days in WINDOW_DAYS]),  # windows
        average_order_value(state),  # aov
        len(state.purchase_days),  # purchase_days
        last_return_gap_days(state.purchase_days),  # last_return_gap_days
        ratio(state.refunds, purchases),  # refund_rate
        list(state.hours),  # active_hours
        list(state.weekdays),  # weekdays
        None if not active_total else state.hours.index(max(state.hours)),  # peak_hour: the earliest of equal hours
        weekend_share(state),  # weekend_share
        config.timezone,  # timezone
        [CategoryScore(name, score) for name, score in top_categories(state, as_of, config)],  # top_categories
        len(state.category_scores),  # category_count
        Funnel(  # funnel
            counts.get("view", 0),  # views
            counts.get("search", 0),  # searches
            counts.get("click", 0),  # clicks
            carts,  # add_to_cart
            favorites,  # favorites
            counts.get("order", 0),  # orders
            purchases,  # purchases
            ratio(purchases, carts, cap=1.0),  # cart_to_purchase
            ratio(purchases, favorites, cap=1.0),  # favorite_to_purchase
            abandoned,  # abandoned_carts
            iso(last_abandoned),  # last_abandoned_cart
            counts.get("share", 0),  # shares
            visits,  # visits
            visit_views,  # visit_views
            ratio(visit_views, visits),  # browse_depth
            state.item_purchases,  # item_purchases
            state.same_day_purchases,  # same_day_purchases
            ratio(state.same_day_purchases, state.item_purchases),  # same_day_share
        ),
        device_shares(state),  # devices
        {name: round(n / method_total, 4) for name, n in sorted(state.payment_methods.items())},  # payment_methods
        ratio(state.promo_purchases, purchases),  # promo_share
        sentiment_view(state, as_of, config),  # sentiment
        bought_items(state, as_of, config),  # bought_items
        dict(state.profile),  # profile
        render_weeks(state),  # weeks
        state.version,  # version
    )
