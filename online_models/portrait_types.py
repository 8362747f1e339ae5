"""The published portrait as typed values: slotted dataclasses the core builds, reads by attribute and ``orjson`` serialises.

Each class mirrors the pydantic model of the same name in :mod:`online_models.portrait_schema`
field for field, in the same order (``tests/unit/test_portrait_types.py`` holds them together),
so ``orjson.dumps`` writes exactly the JSON the schema describes, with no conversion. Four wire
shapes are kept as mappings: :class:`Windows` (its keys ``7d``, ``30d``, ``90d`` are no Python
names: a ``dict`` with the attributes ``d7``, ``d30``, ``d90``), ``profile`` (sparse: an attribute
never given is absent) and the share tables ``devices`` and ``payment_methods``. The API's
``next_categories`` is not here: the worker never publishes it.

:func:`online_models.portrait.render` gives a :class:`RenderedPortrait`;
:meth:`online_models.population.PopulationModels.enrich` makes it a :class:`Portrait`.
A portrait read back from JSON (a training sample, a stored portrait) becomes one again
with :func:`portrait_from_json`:

>>> raw = {"user_id": "u1", "windows": {"7d": {"events": 2, "purchases": 1, "spend": 9.5}}, "rfm": {"layer": "ordinary"}}
>>> portrait = portrait_from_json(raw)
>>> type(portrait).__name__, portrait.windows.d7.spend, portrait.windows.d30.events, portrait.rfm.layer
('Portrait', 9.5, None, 'ordinary')
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

__all__ = [
    "CategoryScore",
    "Churn",
    "Clv",
    "Funnel",
    "Lifetime",
    "NegativeReview",
    "Portrait",
    "PriceBand",
    "RenderedPortrait",
    "ReviewSentiment",
    "Rfm",
    "Segment",
    "WeeklyLedger",
    "WindowTotals",
    "Windows",
    "enriched",
    "portrait_from_json",
]


class _Slotted:
    """Base of the portrait's dataclasses: no ``__dict__``, and a class attribute that says so at once.

    ``orjson`` asks an instance for ``__dict__`` before it reads the fields of a slotted
    dataclass; without an answer the lookup raises an ``AttributeError`` that orjson makes
    and clears, most of the cost of serialising a small block (0.9 us against 0.25 us).
    """

    __slots__ = ()
    __dict__ = None


@dataclass(slots=True)
class WindowTotals(_Slotted):
    """Totals over the events with ``as_of - N days < ts <= as_of``."""

    events: int
    purchases: int
    spend: float


class Windows(dict):
    """The rolling windows by their wire keys ``7d``, ``30d``, ``90d``; read as ``d7``, ``d30``, ``d90``."""

    __slots__ = ()
    #: (attribute, wire key) of each window, in wire order
    KEYS = (("d7", "7d"), ("d30", "30d"), ("d90", "90d"))

    @classmethod
    def of(cls, d7: WindowTotals, d30: WindowTotals, d90: WindowTotals) -> "Windows":
        """The three windows, shortest first."""
        return cls({"7d": d7, "30d": d30, "90d": d90})

    @property
    def d7(self) -> WindowTotals:
        return self["7d"]

    @property
    def d30(self) -> WindowTotals:
        return self["30d"]

    @property
    def d90(self) -> WindowTotals:
        return self["90d"]


@dataclass(slots=True)
class Lifetime(_Slotted):
    """Totals since the user's first event."""

    events: int
    purchases: int
    spend: float
    refunds: int
    refund_amount: float
    net_spend: float
    repeat_spend: float | None


@dataclass(slots=True)
class CategoryScore(_Slotted):
    """One category's decayed interest."""

    category: str
    score: float


@dataclass(slots=True)
class Funnel(_Slotted):
    """Decision behaviour, lifetime counts by event type."""

    views: int
    searches: int
    clicks: int
    add_to_cart: int
    favorites: int
    orders: int
    purchases: int
    cart_to_purchase: float | None
    favorite_to_purchase: float | None
    abandoned_carts: int
    last_abandoned_cart: str | None
    shares: int
    visits: int
    visit_views: int
    browse_depth: float | None
    item_purchases: int
    same_day_purchases: int
    same_day_share: float | None


@dataclass(slots=True)
class WeeklyLedger(_Slotted):
    """The shop weeks with an event, in columns."""

    start: list[str]
    purchases: list[int]
    spend: list[float]
    shares: list[int]


@dataclass(slots=True)
class NegativeReview(_Slotted):
    """One negative review of the sentiment window."""

    at: str
    item_id: str | None
    score: float


@dataclass(slots=True)
class ReviewSentiment(_Slotted):
    """Sentiment of the user's reviews."""

    mean: float | None
    reviews: int
    from_text: int
    positive: int
    negative: int
    window_days: float
    negative_recent: int
    recent_negative: list[NegativeReview]


@dataclass(slots=True)
class RenderedPortrait(_Slotted):
    """What ``render`` gives: one user's figures valued at ``as_of``."""

    user_id: str
    as_of: str
    first_seen: str | None
    last_seen: str | None
    first_purchase: str | None
    last_purchase: str | None
    days_since_last_seen: float | None
    days_since_last_purchase: float | None
    lifetime: Lifetime
    windows: Windows
    aov: float | None
    purchase_days: int
    last_return_gap_days: int | None
    refund_rate: float | None
    active_hours: list[int]
    weekdays: list[int]
    peak_hour: int | None
    weekend_share: float | None
    timezone: str
    top_categories: list[CategoryScore]
    category_count: int
    funnel: Funnel
    devices: dict[str, float]
    payment_methods: dict[str, float]
    promo_share: float | None
    sentiment: ReviewSentiment
    bought_items: list[str]
    profile: dict[str, Any]
    weeks: WeeklyLedger
    version: int


@dataclass(slots=True)
class Rfm(_Slotted):
    """RFM quintile scores and the value layer."""

    r: int | None
    f: int | None
    m: int | None
    layer: str


@dataclass(slots=True)
class Segment(_Slotted):
    """The behaviour cluster the user is nearest to."""

    id: int
    name: str


@dataclass(slots=True)
class Churn(_Slotted):
    """Churn risk under the newest model snapshot."""

    risk: float | None
    p_alive: float | None
    p_alive_bgnbd: float | None
    model: str
    reasons: list[str]
    model_version: int


@dataclass(slots=True)
class Clv(_Slotted):
    """Customer lifetime value under the newest model snapshot."""

    expected_purchases: float
    expected_order_value: float | None
    value: float | None
    horizon_days: int


@dataclass(slots=True)
class PriceBand(_Slotted):
    """The user's ``aov`` ranked among the recent buyers' average order values."""

    band: str
    rank: float


@dataclass(slots=True)
class Portrait(RenderedPortrait):
    """One user's live portrait as published on the ``portraits`` topic."""

    rfm: Rfm
    lifecycle: str
    segment: Segment | None
    tags: list[str]
    churn: Churn
    clv: Clv | None
    price_band: PriceBand | None


_RENDERED = attrgetter(*(f.name for f in dataclasses.fields(RenderedPortrait)))


def enriched(
    portrait: RenderedPortrait,
    rfm: Rfm,
    lifecycle: str,
    segment: Segment | None,
    tags: list[str],
    churn: Churn,
    clv: Clv | None,
    price_band: PriceBand | None,
) -> Portrait:
    """``portrait`` with the decisions added (its blocks shared, not copied)."""
    return Portrait(*_RENDERED(portrait), rfm, lifecycle, segment, tags, churn, clv, price_band)


# -- from JSON ------------------------------------------------------------------------------------


def _reader(hint: Any) -> Callable[[Any], Any] | None:
    """How a field of type ``hint`` is read from JSON: None for a value taken as it is."""
    if hint is Windows:
        return _windows
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list and args and dataclasses.is_dataclass(args[0]):
        item = _record_reader(args[0])
        return lambda value: [item(entry) for entry in value] if isinstance(value, list) else []
    for candidate in (hint, *args):
        if dataclasses.is_dataclass(candidate):
            nested = _record_reader(candidate)
            optional = type(None) in args
            return (lambda value: None if value is None else nested(value)) if optional else nested
    if typing.get_origin(hint) is dict:
        return lambda value: value if isinstance(value, dict) else {}
    if typing.get_origin(hint) is list:
        return lambda value: value if isinstance(value, list) else []
    return None


def _record_reader(cls: type) -> Callable[[Any], Any]:
    hints = typing.get_type_hints(cls)
    plan = tuple((f.name, _reader(hints[f.name])) for f in dataclasses.fields(cls))

    def read(data: Any) -> Any:
        if not isinstance(data, Mapping):
            data = {}
        get = data.get
        return cls(*[get(name) if convert is None else convert(get(name)) for name, convert in plan])

    return read


def _windows(data: Any) -> Windows:
    if not isinstance(data, Mapping):
        data = {}
    return Windows.of(*[_window_totals(data.get(key)) for _, key in Windows.KEYS])


_window_totals = _record_reader(WindowTotals)
_rendered = _record_reader(RenderedPortrait)
_portrait = _record_reader(Portrait)


def portrait_from_json(data: Mapping[str, Any]) -> RenderedPortrait:
    """A portrait parsed from its JSON (a :class:`Portrait` when it holds ``rfm``, else a :class:`RenderedPortrait`).

    Lenient, as a portrait of an older or newer worker needs: a missing value reads as None,
    a missing block as one of Nones, a missing list or mapping as an empty one; values are
    taken as they are, not checked.
    """
    return _portrait(data) if "rfm" in data else _rendered(data)
