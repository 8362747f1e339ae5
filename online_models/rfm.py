"""RFM quintile scores against the live population, and the value layers ops work with.

:class:`RFMScorer` keeps one :class:`~online_models.quantiles.PopulationQuantiles`
per RFM figure and scores a portrait 1..5 on each, 5 being best:

* **R**ecency: days since the last purchase (fewer is better);
* **F**requency: distinct days with a purchase, lifetime (``purchase_days``) by
  default -- several payments of one checkout (one per shop) count once, and a
  lapsed loyal customer stays told apart from a lapsed one-off buyer, which recall
  campaigns need. ``frequency_measure="purchases_90d"`` counts payments in 90 days
  instead;
* **M**onetary: spend in the last 90 days.

Only users who have bought are sampled and scored: a never-buyer has no recency,
and counting their zeros would make any single purchase look top-quintile.

>>> from online_models.portrait_types import portrait_from_json
>>> from online_models.rfm import LayerConfig, RFMScorer, value_layer
>>> def buyer(days_ago, purchase_days, spend_90d):
...     return portrait_from_json({"days_since_last_purchase": days_ago, "purchase_days": purchase_days,
...                                "windows": {"90d": {"purchases": purchase_days, "spend": spend_90d}}})
>>> scorer = RFMScorer()
>>> for i in range(100):
...     _ = scorer.learn_one(buyer(i, 1 + i % 10, 10.0 * i), ts_ms=0)
>>> scorer.score(buyer(2, 9, 950.0))
{'r': 5, 'f': 5, 'm': 5}
>>> scorer.score(buyer(80, 1, 50.0))
{'r': 1, 'f': 1, 'm': 1}
>>> scorer.score(portrait_from_json({"days_since_last_purchase": None, "purchase_days": 0}))
{'r': None, 'f': None, 'm': None}

Value layers (see :func:`value_layer`):

>>> portrait = portrait_from_json({"windows": {"30d": {"purchases": 1, "spend": 180.0}},
...                                "purchase_days": 1, "funnel": {"views": 40, "add_to_cart": 6}})
>>> value_layer(portrait, LayerConfig())
'potential'
>>> value_layer(portrait, LayerConfig(benchmark_aov=200.0))
'ordinary'
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from online_models.portrait_types import RenderedPortrait
from online_models.quantiles import DAY_MS, PopulationQuantiles

__all__ = [
    "LAYERS",
    "LayerConfig",
    "RFMScorer",
    "add_to_cart_rate",
    "layer_of",
    "order_value_30d",
    "repurchase_rate",
    "value_layer",
]

FrequencyMeasure = Literal["purchase_days", "purchases_90d"]
_MEASURES: tuple[FrequencyMeasure, ...] = ("purchase_days", "purchases_90d")
_MAGIC = b"RFM1"
_HEADER = struct.Struct("<4sBBIII")  # magic, bins, measure, three blob lengths

#: Every value layer, best first.
LAYERS = ("high_value", "potential", "ordinary", "low_value")


class RFMScorer:
    """RFM quintile scores of a portrait against the recent population of buyers.

    Parameters
    ----------
    period_days
        Event-time period of the underlying sketches: scores compare a user with the
        buyers sampled in the last one to two periods.
    k
        KLL accuracy parameter of each sketch.
    bins
        Number of score bins (5: quintiles).
    frequency_measure
        ``"purchase_days"`` (distinct purchase days, lifetime) or ``"purchases_90d"``.

    Sampling is the caller's business: the population a score compares against is
    made of the samples given to :meth:`learn_one`. Give each user one sample per
    period (e.g. when their first event of a period arrives, see
    :meth:`PopulationQuantiles.period_index`), otherwise busy users weigh more.
    Users silent for two periods are not sampled at all unless the caller also
    feeds samples from a periodic sweep, so the scores rank a user among the
    *recently active* buyers.
    """

    def __init__(
        self,
        period_days: float = 7.0,
        k: int = 200,
        bins: int = 5,
        frequency_measure: FrequencyMeasure = "purchase_days",
    ):
        if frequency_measure not in _MEASURES:
            raise ValueError(f"frequency_measure must be one of {', '.join(_MEASURES)}")
        if not 1 <= bins <= 255:
            raise ValueError("bins must be between 1 and 255")
        period_ms = int(period_days * DAY_MS)
        self.bins = bins
        self.frequency_measure: FrequencyMeasure = frequency_measure
        self.recency = PopulationQuantiles(period_ms, k)
        self.frequency = PopulationQuantiles(period_ms, k)
        self.monetary = PopulationQuantiles(period_ms, k)

    def features(self, portrait: RenderedPortrait) -> tuple[float, float, float] | None:
        """``(recency_days, frequency, monetary)`` of a buyer; None for a user who never bought."""
        recency = portrait.days_since_last_purchase
        if recency is None:
            return None
        w90 = portrait.windows.d90
        return float(recency), self._frequency(portrait.purchase_days, w90.purchases), float(w90.spend or 0.0)

    def _frequency(self, purchase_days: int | None, purchases_90d: int | None) -> float:
        """The frequency figure under :attr:`frequency_measure`."""
        return float((purchase_days if self.frequency_measure == "purchase_days" else purchases_90d) or 0.0)

    def learn_one(self, portrait: RenderedPortrait, ts_ms: int) -> bool:
        """Add one user's figures, observed at event time ``ts_ms``; False for a never-buyer."""
        features = self.features(portrait)
        if features is None:
            return False
        self._learn(*features, ts_ms)
        return True

    def learn_figures(self, recency_days: float, purchase_days: int, purchases_90d: int, spend_90d: float, ts_ms: int) -> None:
        """:meth:`learn_one` from a buyer's figures themselves (what a training sample carries), not a portrait."""
        self._learn(float(recency_days), self._frequency(purchase_days, purchases_90d), float(spend_90d or 0.0), ts_ms)

    def _learn(self, recency: float, frequency: float, monetary: float, ts_ms: int) -> None:
        self.recency.update(recency, ts_ms)
        self.frequency.update(frequency, ts_ms)
        self.monetary.update(monetary, ts_ms)

    def score(self, portrait: RenderedPortrait) -> dict[str, int | None]:
        """``{"r", "f", "m"}`` scores in ``1..bins``; all None for a user who never bought.

        Before any sample has been learnt each score is the neutral middle bin.
        """
        features = self.features(portrait)
        if features is None:
            return {"r": None, "f": None, "m": None}
        recency, frequency, monetary = features
        return {
            "r": self.recency.score(recency, self.bins, higher_is_better=False),
            "f": self.frequency.score(frequency, self.bins),
            "m": self.monetary.score(monetary, self.bins),
        }

    def merge(self, other: "RFMScorer") -> "RFMScorer":
        """Fold another scorer (same bins and frequency measure) into this one; returns self."""
        if (other.bins, other.frequency_measure) != (self.bins, self.frequency_measure):
            raise ValueError("cannot merge scorers with different bins or frequency measures")
        self.recency.merge(other.recency)
        self.frequency.merge(other.frequency)
        self.monetary.merge(other.monetary)
        return self

    def to_bytes(self) -> bytes:
        """The three sketches and the settings."""
        blobs = [q.to_bytes() for q in (self.recency, self.frequency, self.monetary)]
        header = _HEADER.pack(_MAGIC, self.bins, _MEASURES.index(self.frequency_measure), *map(len, blobs))
        return header + b"".join(blobs)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "RFMScorer":
        """Inverse of :meth:`to_bytes`."""
        if len(raw) < _HEADER.size or raw[:4] != _MAGIC:
            raise ValueError("not a serialised RFMScorer")
        _, bins, measure, *sizes = _HEADER.unpack_from(raw)
        if len(raw) != _HEADER.size + sum(sizes):
            raise ValueError("truncated RFMScorer bytes")
        scorer = cls(bins=bins, frequency_measure=_MEASURES[measure])
        offset = _HEADER.size
        parts = []
        for size in sizes:
            parts.append(PopulationQuantiles.from_bytes(raw[offset : offset + size]))
            offset += size
        scorer.recency, scorer.frequency, scorer.monetary = parts
        return scorer

    def __repr__(self) -> str:
        return (
            f"RFMScorer(n={self.recency.n}, bins={self.bins}, "
            f"frequency_measure={self.frequency_measure!r})"
        )


# -- value layers ---------------------------------------------------------------


@dataclass(frozen=True)
class LayerConfig:
    """Thresholds of the value layers; the defaults follow the Taobao rule of thumb.

    ``benchmark_aov`` is the shop's (or industry's) average order value, in the
    currency of the events.
    """

    benchmark_aov: float = 150.0
    high_value_min_purchases_30d: int = 2
    high_value_aov_ratio: float = 1.5
    high_value_min_repurchase: float = 0.30
    potential_min_purchases_30d: int = 1
    potential_aov_ratio: float = 1.0
    potential_min_add_to_cart_rate: float = 0.10

    def __post_init__(self) -> None:
        if not self.benchmark_aov > 0:
            raise ValueError("benchmark_aov must be positive")
        if self.potential_min_purchases_30d < 1 or self.high_value_min_purchases_30d < 1:
            raise ValueError("the purchase minimums must be at least 1 (low_value is 'no purchase in 30 days')")
        for name in ("high_value_aov_ratio", "potential_aov_ratio", "potential_min_add_to_cart_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.high_value_min_repurchase <= 1:
            raise ValueError("high_value_min_repurchase must be in [0, 1]")


def add_to_cart_rate(portrait: RenderedPortrait) -> float | None:
    """Lifetime ``funnel.add_to_cart / funnel.views``; None without views.

    Not capped: carts put in from search results or lists without a view event can
    make it exceed 1.

    >>> from online_models.portrait_types import portrait_from_json
    >>> add_to_cart_rate(portrait_from_json({"funnel": {"views": 50, "add_to_cart": 5}}))
    0.1
    >>> add_to_cart_rate(portrait_from_json({"funnel": {}})) is None
    True
    """
    return _cart_rate(portrait.funnel.views, portrait.funnel.add_to_cart)


def _cart_rate(views: float | None, carts: float | None) -> float | None:
    return (carts or 0) / views if views else None


def repurchase_rate(portrait: RenderedPortrait) -> float | None:
    """Share of the user's purchase days beyond the first: ``(purchase_days - 1) / purchase_days``.

    0 for one purchase day, 0.5 for two, 0.75 for four; None for a never-buyer.
    Purchase days are distinct (UTC) days, so two payments of one checkout count
    once. It is a lifetime figure.

    >>> from online_models.portrait_types import portrait_from_json
    >>> repurchase_rate(portrait_from_json({"purchase_days": 4})), repurchase_rate(portrait_from_json({"purchase_days": 0}))
    (0.75, None)
    """
    return _repurchase(portrait.purchase_days)


def _repurchase(days: float | None) -> float | None:
    return (days - 1) / days if days and days >= 1 else None


def order_value_30d(portrait: RenderedPortrait) -> float | None:
    """Average order value of the last 30 days, ``spend / purchases``; None without a purchase.

    >>> from online_models.portrait_types import portrait_from_json
    >>> order_value_30d(portrait_from_json({"windows": {"30d": {"purchases": 2, "spend": 300.0}}}))
    150.0
    """
    w30 = portrait.windows.d30
    return _order_value(w30.purchases, w30.spend)


def _order_value(purchases: float | None, spend: float | None) -> float | None:
    if not purchases or purchases <= 0:
        return None
    return (spend or 0.0) / purchases


def value_layer(portrait: RenderedPortrait, config: LayerConfig = LayerConfig()) -> str:
    """The user's value layer: ``high_value``, ``potential``, ``ordinary`` or ``low_value`` (see :func:`layer_of`)."""
    w30, funnel = portrait.windows.d30, portrait.funnel
    return layer_of(w30.purchases, w30.spend, portrait.purchase_days, funnel.views, funnel.add_to_cart, config)


def layer_of(
    purchases_30d: float | None,
    spend_30d: float | None,
    purchase_days: float | None,
    views: float | None,
    add_to_cart: float | None,
    config: LayerConfig = LayerConfig(),
) -> str:
    """The value layer from the figures it reads: 30-day purchases and spend, purchase days, lifetime views and carts.

    The rules are tried in this order and the first that holds wins, so every
    portrait gets exactly one layer:

    1. ``high_value``: at least ``high_value_min_purchases_30d`` (2) purchases in 30
       days, a 30-day order value of at least ``high_value_aov_ratio`` (1.5) times
       ``benchmark_aov``, and a :func:`repurchase_rate` of at least
       ``high_value_min_repurchase`` (0.30, i.e. purchases on two distinct days or
       more);
    2. ``potential``: at least ``potential_min_purchases_30d`` (1) purchase in 30
       days, a 30-day order value of at least ``potential_aov_ratio`` (1.0) times the
       benchmark, and an :func:`add_to_cart_rate` of at least
       ``potential_min_add_to_cart_rate`` (0.10);
    3. ``ordinary``: any other user with a purchase in the last 30 days;
    4. ``low_value``: no purchase in the last 30 days, never-buyers included.

    Edge cases:

    * Order value is the 30-day one (``windows.30d.spend / windows.30d.purchases``),
      not the lifetime ``aov``: the layer describes the current month. Spend is
      gross of refunds.
    * The rule of thumb says "1 purchase" for potential; a user with more purchases
      who misses the high-value bar but meets potential's is potential too, so that
      buying more never moves a user down.
    * Without any view event the add-to-cart rate is unknown (None), which fails
      the potential test: such a buyer is ordinary.
    * Missing or null figures count as zero purchases / no views.
    """
    purchases_30d = purchases_30d or 0
    if purchases_30d < 1:
        return "low_value"
    order_value = _order_value(purchases_30d, spend_30d) or 0.0
    repurchase = _repurchase(purchase_days)
    if (
        purchases_30d >= config.high_value_min_purchases_30d
        and order_value >= config.high_value_aov_ratio * config.benchmark_aov
        and repurchase is not None
        and repurchase >= config.high_value_min_repurchase
    ):
        return "high_value"
    cart_rate = _cart_rate(views, add_to_cart)
    if (
        purchases_30d >= config.potential_min_purchases_30d
        and order_value >= config.potential_aov_ratio * config.benchmark_aov
        and cart_rate is not None
        and cart_rate >= config.potential_min_add_to_cart_rate
    ):
        return "potential"
    return "ordinary"
