"""Item and category portraits: per-key state, its update by one item fact, and its JSON view.

Everything here is a plain function of (state, fact) in event time. One state
holds one key of the item-facts topic (``item:<id>`` or ``category:<name>``,
:mod:`online_models.item_facts`): counters per calendar day of the shop's time
zone for the last 90 days, lifetime totals, the buyer counts the facts' moves
keep, and the last source offset folded in per partition of the events topic.
The state is an order-insensitive aggregate (sums per day), so facts folded in
any order leave the same state, and a fact from a source position already
folded in changes nothing: replaying the same events gives the same portraits.

The windows count whole days: a window of N days ends with the shop day of the
portrait's ``as_of`` and holds the N days up to it, ``day(as_of) - N < day <=
day(as_of)``. Day counters keep a popular item's or category's state at a few
kilobytes however busy it is (minute buckets over 90 days would not).

>>> from online_models.item_facts import Contribution, ItemFact
>>> state = ItemState("item:sku-1")
>>> now = Contribution(19844, None, "ordinary", None, "25-29")
>>> for fact in (ItemFact("item:sku-1", "view", 1714536000000, 19844, "sku-1", "snacks", 0, (0, 1)),
...              ItemFact("item:sku-1", "pay", 1714536060000, 19844, "sku-1", "snacks", 2500, (0, 2), None, now),
...              ItemFact("item:sku-1", "pay", 1714536060000, 19844, "sku-1", "snacks", 2500, (0, 2), None, now)):
...     _ = fold(state, fact)
>>> view = render(state, as_of=1714536120000, config=ItemConfig())
>>> view["windows"]["7d"]["purchases"], view["windows"]["7d"]["conversion"], view["windows"]["7d"]["buyers"]
(1, 1.0, 1)
>>> view["windows"]["7d"]["buyers_by"]["age_bands"]
{'25-29': 1}
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from online_models.item_facts import Contribution, ItemFact, split_key
from online_models.portrait import iso
from online_models.vocabulary import local_day, ratio

#: window lengths in days, as the user portrait's
WINDOW_DAYS = (7, 30, 90)
#: the shop days a state keeps counters for: the longest window
KEPT_DAYS = WINDOW_DAYS[-1]
#: a day's counters, in this order
TALLIES = ("views", "add_to_cart", "favorites", "purchases", "gmv_cents", "refunds", "refund_cents", "buyers", "repeat_buyers")
_VIEWS, _CARTS, _FAVORITES, _PURCHASES, _CENTS, _REFUNDS, _REFUND_CENTS, _BUYERS, _REPEAT = range(len(TALLIES))
#: the counter each fact type adds one to
_COUNTED = {"view": _VIEWS, "add_to_cart": _CARTS, "favorite": _FAVORITES, "pay": _PURCHASES, "refund": _REFUNDS}
#: lifetime totals: the first seven tallies
_LIFETIME = 7
#: what a buyer whose segment or age band is not known is counted under
UNKNOWN = "unknown"
#: most segments and age bands a day counts buyers under by name (profiles give age bands as free
#: text): the buyers of any further one are counted under :data:`OTHER`
MAX_VALUES = 16
OTHER = "other"
#: the distributions of buyers, by attribute, and the prefix of their counters
ATTRIBUTES = (("layers", "layer:"), ("segments", "segment:"), ("age_bands", "age_band:"))


@dataclass(frozen=True)
class ItemConfig:
    """Knobs of the item and category portraits."""

    timezone: str = "UTC"

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone


@dataclass(slots=True)
class ItemState:
    """Everything kept per item or category. Money is in integer cents so sums are exact.

    Bounded by event time: one row of counters (:data:`TALLIES`) and one map of buyer
    counts per shop day from ``floor_day`` on (:data:`KEPT_DAYS` days behind the
    watermark; 4 layers and :data:`MAX_VALUES` segments and age bands at most in a map),
    ``sources`` one entry per partition of the events topic.
    """

    key: str
    #: an item's category, from the newest fact that named one (None for a category)
    category: str | None = None
    category_ts: int | None = None
    first_seen: int | None = None
    last_seen: int | None = None
    #: views, carts, favourites, purchases, cents paid, refunds, cents refunded since the first fact
    lifetime: list[int] = field(default_factory=lambda: [0] * _LIFETIME)
    #: shop days with counters (sorted), each day's :data:`TALLIES`, and each day's buyers by attribute
    #: (``layer:<name>``, ``segment:<id>``, ``age_band:<band>``) whose latest purchase was that day
    days: list[int] = field(default_factory=list)
    tallies: list[list[int]] = field(default_factory=list)
    buyers_by: list[dict[str, int]] = field(default_factory=list)
    #: days before this one hold nothing any window can count (None: nothing pruned yet)
    floor_day: int | None = None
    #: partition of the events topic -> offset of the last fact from it folded in
    sources: dict[str, int] = field(default_factory=dict)
    version: int = 0
    #: the worker's sequence number of the change that left this state (see online_models.partition_engine)
    seq: int = 0

    def to_bytes(self) -> bytes:
        """Compact JSON for the state store."""
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ItemState":
        """Inverse of :meth:`to_bytes`."""
        return cls(**orjson.loads(raw))


def _row(state: ItemState, day: int) -> int | None:
    """Index of ``day``'s counters, made when missing; None for a day before ``floor_day``."""
    days = state.days
    if days and days[-1] == day:  # most facts are of the newest day
        return len(days) - 1
    if state.floor_day is not None and day < state.floor_day:
        return None
    i = bisect.bisect_left(days, day)
    if i == len(state.days) or state.days[i] != day:
        state.days.insert(i, day)
        state.tallies.insert(i, [0] * len(TALLIES))
        state.buyers_by.insert(i, {})
    return i


def _add(counts: dict[str, int], name: str, n: int) -> None:
    """``counts[name] += n``, never below zero, dropping zeros."""
    value = max(0, counts.get(name, 0) + n)
    if value:
        counts[name] = value
    else:
        counts.pop(name, None)


def _count_value(counts: dict[str, int], prefix: str, value: str, sign: int) -> None:
    """Count a buyer under ``prefix + value``; past :data:`MAX_VALUES` values of the attribute in the day,
    under ``prefix + "other"`` (a value not counted by name is taken away from there too)."""
    name, other = prefix + value, prefix + OTHER
    if name not in counts and (sign < 0 or sum(key.startswith(prefix) and key != other for key in counts) >= MAX_VALUES):
        name = other
    _add(counts, name, sign)


def _move(state: ItemState, contribution: Contribution, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) one buyer's contribution to the buyer counts.

    A count never goes below zero: a contribution taken away whose addition was not
    counted here (a crash's replay that scored the buyer under other models) is dropped.
    """
    i = _row(state, contribution.latest_day)
    if i is not None:
        tallies = state.tallies[i]
        tallies[_BUYERS] = max(0, tallies[_BUYERS] + sign)
        counts = state.buyers_by[i]
        _add(counts, "layer:" + contribution.layer, sign)
        _count_value(counts, "segment:", UNKNOWN if contribution.segment is None else str(contribution.segment), sign)
        _count_value(counts, "age_band:", contribution.age_band or UNKNOWN, sign)
    if contribution.second_day is not None:
        j = _row(state, contribution.second_day)
        if j is not None:
            state.tallies[j][_REPEAT] = max(0, state.tallies[j][_REPEAT] + sign)


def fold(state: ItemState, fact: ItemFact) -> bool:
    """Fold one fact into ``state``; False (and no change) for a source position already folded in.

    The facts of one key from one partition of the events topic come in the order
    of their offsets, so the last offset folded in per partition recognises a fact
    sent again (a user partition read again after a crash, an item-facts record read again).
    """
    source = str(fact.source[0])
    last = state.sources.get(source)
    if last is not None and fact.source[1] <= last:
        return False
    state.sources[source] = fact.source[1]
    state.version += 1
    ts = fact.ts
    if state.first_seen is None or ts < state.first_seen:
        state.first_seen = ts
    if state.last_seen is None or ts > state.last_seen:
        state.last_seen = ts
    if fact.item_id is not None and fact.category and state.key.startswith("item:"):
        if state.category_ts is None or ts >= state.category_ts:
            state.category, state.category_ts = fact.category, ts
    counter = _COUNTED[fact.type]
    state.lifetime[counter] += 1
    if fact.type in ("pay", "refund"):
        state.lifetime[counter + 1] += fact.cents
    i = _row(state, fact.day)
    if i is not None:
        tallies = state.tallies[i]
        tallies[counter] += 1
        if fact.type in ("pay", "refund"):
            tallies[counter + 1] += fact.cents
    if fact.was is not None:
        _move(state, fact.was, -1)
    if fact.now is not None:
        _move(state, fact.now, 1)
    return True


def floor_day(watermark: int, config: ItemConfig) -> int:
    """The oldest shop day a window can still count: a window ends on the day of an ``as_of`` past the watermark."""
    return local_day(watermark, config.timezone) - KEPT_DAYS + 1


def prune(state: ItemState, floor: int) -> None:
    """Drop the days before ``floor`` (:func:`floor_day`): no window can count them any more."""
    if state.floor_day is not None and floor <= state.floor_day:
        return
    state.floor_day = floor
    if state.days and state.days[0] < floor:
        cut = bisect.bisect_left(state.days, floor)
        del state.days[:cut], state.tallies[:cut], state.buyers_by[:cut]


def _figures(totals: list[int], by: dict[str, int]) -> dict[str, Any]:
    """One window's figures from its summed :data:`TALLIES` and buyer counts."""
    views, purchases, buyers = totals[_VIEWS], totals[_PURCHASES], totals[_BUYERS]
    return {
        "views": views,
        "add_to_cart": totals[_CARTS],
        "favorites": totals[_FAVORITES],
        "purchases": purchases,
        "gmv": totals[_CENTS] / 100,
        "refunds": totals[_REFUNDS],
        "refund_amount": totals[_REFUND_CENTS] / 100,
        "conversion": ratio(purchases, views),
        "refund_rate": ratio(totals[_REFUNDS], purchases),
        "buyers": buyers,
        "repeat_buyers": totals[_REPEAT],
        "repurchase_rate": ratio(totals[_REPEAT], buyers),
        "buyers_by": {
            name: {value[len(prefix) :]: n for value, n in sorted(by.items()) if value.startswith(prefix)}
            for name, prefix in ATTRIBUTES
        },
    }


def _windows(state: ItemState, last_day: int) -> dict[str, dict[str, Any]]:
    """Every window's figures: the days up to ``last_day`` summed newest first, in one pass."""
    totals = [0] * len(TALLIES)
    by: dict[str, int] = {}
    out = {}
    i = bisect.bisect_right(state.days, last_day) - 1
    for days in WINDOW_DAYS:
        while i >= 0 and state.days[i] > last_day - days:
            for k, n in enumerate(state.tallies[i]):
                totals[k] += n
            for name, n in state.buyers_by[i].items():
                by[name] = by.get(name, 0) + n
            i -= 1
        out[f"{days}d"] = _figures(totals, by)
    return out


def day_iso(day: int) -> str:
    """A shop day number as its calendar date.

    >>> day_iso(0), day_iso(19844)
    ('1970-01-01', '2024-05-01')
    """
    return iso(day * 86_400_000)[:10]


def render(state: ItemState, *, as_of: int | None, config: ItemConfig) -> dict[str, Any]:
    """The item or category portrait as the API serves it, with windows ending on the shop day of ``as_of``."""
    if as_of is None:
        as_of = state.last_seen or 0
    kind, name = split_key(state.key) or ("item", state.key)
    last_day = local_day(as_of, config.timezone)
    lifetime = state.lifetime
    return {
        "key": state.key,
        "kind": kind,
        "id": name,
        "category": state.category if kind == "item" else None,
        "as_of": iso(as_of),
        "as_of_day": day_iso(last_day),
        "timezone": config.timezone,
        "first_seen": iso(state.first_seen),
        "last_seen": iso(state.last_seen),
        "lifetime": {
            "views": lifetime[_VIEWS],
            "add_to_cart": lifetime[_CARTS],
            "favorites": lifetime[_FAVORITES],
            "purchases": lifetime[_PURCHASES],
            "gmv": lifetime[_CENTS] / 100,
            "refunds": lifetime[_REFUNDS],
            "refund_amount": lifetime[_REFUND_CENTS] / 100,
        },
        "windows": _windows(state, last_day),
        "version": state.version,
    }
