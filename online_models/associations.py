"""Co-purchase counts over a rolling event-time window, folded from closed baskets with bounded memory.

The single aggregator (``streams/associations.py``) folds every closed basket
(:func:`online_models.baskets.basket_record`) into :class:`AssociationCounts` and publishes
its :meth:`~AssociationCounts.summary`; :mod:`online_models.association_rules` turns a
summary into support, confidence and lift.

**What is counted.** Per calendar day of the shop's time zone (the day of the basket's
last payment): the baskets that name a category, how many of them hold each category,
and how many hold each pair of distinct categories; the same for items (an item is
``category\\x1fitem_id``, :func:`online_models.baskets.item_name`). Each count is kept in a
frequent-items sketch of Apache DataSketches (``frequent_strings_sketch``, a Misra-Gries
summary: weights in a hash map of at most ``0.75 * 2**lg_k`` entries; when it is full every
counter is lowered by a common amount, those reaching zero are dropped, and the amount is
added to the sketch's *maximum error*). While a sketch has evicted nothing, its counts are exact (maximum error 0);
afterwards every count it reports lies between its lower and upper bound, which differ by
the maximum error, and the maximum error is at most ``epsilon * total weight``
(``epsilon = 3.5 / 2**lg_k``); a value it does not hold is below that error. The category
sketches are large (``category_lg_k`` 12: 3,072 categories or category pairs a day
exactly), the item ones bounded (``item_lg_k`` 10: 768 items or item pairs a day).

**The window** is the last ``window_days`` days up to the day of the newest basket seen
(``as_of``: the time of its last payment); its counts are the day sketches merged (merging
keeps the bounds, Agarwal et al., "Mergeable summaries", 2012). A day leaves the window,
with its sketches, once a basket of a day ``window_days`` later arrives; a basket of a day
already out of the window is not counted (``too_old``). Memory is bounded by
``window_days`` days of four sketches each.

**Each basket once.** A basket closed again after a worker's crash has the same id; the
ids of the last ``recent_ids`` baskets are kept, and a basket among them is not counted
again (``duplicates``). The caller also keeps here the offset of the last record of the
baskets topic it applied (``offset``), so a restarted aggregator resumes exactly after it.

>>> counts = AssociationCounts(AssociationConfig(window_days=30))
>>> for i, categories in enumerate((["baby", "health"], ["baby", "health", "toys"], ["baby"], ["snacks"])):
...     _ = counts.add({"id": f"b{i}", "ts": 1_000 + i, "categories": categories, "items": []})
>>> counts.add({"id": "b1", "ts": 1_001, "categories": ["baby", "health", "toys"], "items": []})
'duplicate'
>>> summary = counts.summary()
>>> summary["categories"]["baskets"], summary["categories"]["counts"]["baby"], summary["categories"]["pairs"][0]
(4, 3, ['baby', 'health', 2])
>>> AssociationCounts.from_bytes(counts.to_bytes()).summary() == summary
True
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import orjson
from datasketches import frequent_items_error_type, frequent_strings_sketch

from online_models.clock import DAY_MS
from online_models.portrait import iso
from online_models.vocabulary import local_day

#: joins the two names of a pair (no name holds a control character)
PAIR_SEPARATOR = "\x1e"
#: a key no sketch holds: its upper bound is the sketch's maximum error
_ABSENT = "\x00"
_ALL = frequent_items_error_type.NO_FALSE_NEGATIVES
#: what :meth:`AssociationCounts.add` says about a basket
ADDED, DUPLICATE, TOO_OLD = "added", "duplicate", "too_old"


@dataclass(frozen=True)
class AssociationConfig:
    """The aggregator's knobs; the summary carries the ones its readers need."""

    #: days of baskets the counts cover, up to the day of the newest basket
    window_days: int = 30
    #: the shop's time zone: what a day is
    timezone: str = "UTC"
    #: log2 of the category sketches' map size (exact up to 0.75 * 2**lg_k distinct values a day)
    category_lg_k: int = 12
    #: log2 of the item sketches' map size
    item_lg_k: int = 10
    #: category pairs a summary lists (the most frequent)
    top_category_pairs: int = 2000
    #: item pairs a summary lists (the most frequent)
    top_item_pairs: int = 200
    #: ids of the last baskets kept to recognise one sent again
    recent_ids: int = 100_000
    #: a category pair bought together in fewer baskets than this is no ground for next_categories
    min_pair_baskets: int = 3
    #: next categories suggested per user
    next_categories: int = 3

    def __post_init__(self) -> None:
        if self.window_days < 1:
            raise ValueError("window_days must be at least 1")
        for name in ("category_lg_k", "item_lg_k"):
            if not 3 <= getattr(self, name) <= 21:
                raise ValueError(f"{name} must be from 3 to 21")
        if min(self.top_category_pairs, self.top_item_pairs, self.recent_ids, self.min_pair_baskets, self.next_categories) < 1:
            raise ValueError("top pairs, recent ids, min_pair_baskets and next_categories must be positive")


def pair_key(a: str, b: str) -> str:
    """The key of an unordered pair: the two names in order, joined by :data:`PAIR_SEPARATOR`.

    >>> pair_key("toys", "baby") == pair_key("baby", "toys") == "baby\\x1etoys"
    True
    """
    return f"{a}{PAIR_SEPARATOR}{b}" if a < b else f"{b}{PAIR_SEPARATOR}{a}"


def max_error(sketch: frequent_strings_sketch) -> int:
    """The sketch's maximum error: 0 while it has evicted nothing; every count it reports is within it.

    >>> sketch = frequent_strings_sketch(3)            # room for 6 values
    >>> for value in "aabbbcdef": sketch.update(value)
    >>> max_error(sketch)
    0
    >>> for value in "ghij": sketch.update(value)
    >>> 0 < max_error(sketch) <= sketch.epsilon * sketch.total_weight
    True
    """
    return int(sketch.get_upper_bound(_ABSENT))


def counts_of(sketch: frequent_strings_sketch) -> list[tuple[str, int, int, int]]:
    """Every value the sketch holds as (value, estimate, lower bound, upper bound), most frequent first, ties by name."""
    found = sketch.get_frequent_items(_ALL, 0)
    return sorted(((value, int(est), int(low), int(high)) for value, est, low, high in found), key=lambda e: (-e[1], e[0]))


class DayCounts:
    """One day's baskets: how many name a category (an item), and the sketches of categories, items and their pairs."""

    __slots__ = ("category_baskets", "item_baskets", "categories", "category_pairs", "items", "item_pairs")

    def __init__(self, config: AssociationConfig):
        self.category_baskets = 0
        self.item_baskets = 0
        self.categories = frequent_strings_sketch(config.category_lg_k)
        self.category_pairs = frequent_strings_sketch(config.category_lg_k)
        self.items = frequent_strings_sketch(config.item_lg_k)
        self.item_pairs = frequent_strings_sketch(config.item_lg_k)

    SKETCHES = ("categories", "category_pairs", "items", "item_pairs")

    def add(self, categories: list[str], items: list[str]) -> None:
        """Count one basket's distinct categories and items, and each pair of them."""
        if categories:
            self.category_baskets += 1
            _count(self.categories, self.category_pairs, categories)
        if items:
            self.item_baskets += 1
            _count(self.items, self.item_pairs, items)

    def to_json(self) -> dict[str, Any]:
        """The day's counts with each sketch serialised (base64), for a snapshot."""
        out: dict[str, Any] = {"category_baskets": self.category_baskets, "item_baskets": self.item_baskets}
        for name in self.SKETCHES:
            out[name] = base64.b64encode(getattr(self, name).serialize()).decode()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], config: AssociationConfig) -> "DayCounts":
        """Inverse of :meth:`to_json`."""
        day = cls(config)
        day.category_baskets, day.item_baskets = int(data["category_baskets"]), int(data["item_baskets"])
        for name in cls.SKETCHES:
            setattr(day, name, frequent_strings_sketch.deserialize(base64.b64decode(data[name])))
        return day


def _count(singles: frequent_strings_sketch, pairs: frequent_strings_sketch, names: list[str]) -> None:
    names = sorted(set(names))
    for name in names:
        singles.update(name)
    for a, b in combinations(names, 2):  # sorted, so a < b: the pair's key without a comparison
        pairs.update(f"{a}{PAIR_SEPARATOR}{b}")


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise ValueError(f"a basket's {what} must be a list of names")
    return value


@dataclass
class AssociationCounts:
    """The co-purchase counts of the window (see the module's docstring)."""

    config: AssociationConfig = field(default_factory=AssociationConfig)
    #: shop day -> its counts, for the days of the window
    days: dict[int, DayCounts] = field(default_factory=dict)
    #: the time of the newest basket's last payment (epoch ms); its day ends the window
    as_of_ms: int | None = None
    #: ids of the last baskets counted, oldest first
    recent: dict[str, None] = field(default_factory=dict)
    #: offset of the last record of the baskets topic applied (kept for the caller)
    offset: int | None = None
    #: baskets counted, sent again, too old for the window
    counted: int = 0
    duplicates: int = 0
    too_old: int = 0
    #: grows with each basket counted
    version: int = 0

    def __post_init__(self) -> None:
        self._window: tuple[int, dict[str, Any]] | None = None

    @property
    def last_day(self) -> int | None:
        """The day the window ends with (the newest basket's), None before any basket."""
        return None if self.as_of_ms is None else local_day(self.as_of_ms, self.config.timezone)

    def add(self, record: dict[str, Any]) -> str:
        """Count one closed basket (``{"id", "ts", "categories", "items"}``): :data:`ADDED`, or why not
        (:data:`DUPLICATE`, :data:`TOO_OLD`); ValueError for a malformed record."""
        basket_id, ts = record.get("id"), record.get("ts")
        if not isinstance(basket_id, str) or not basket_id or type(ts) is not int:
            raise ValueError("a basket needs an id (text) and ts (epoch ms)")
        categories, items = _names(record.get("categories", []), "categories"), _names(record.get("items", []), "items")
        if basket_id in self.recent:
            self.duplicates += 1
            return DUPLICATE
        day = local_day(ts, self.config.timezone)
        last_day = self.last_day
        if last_day is not None and day <= last_day - self.config.window_days:
            self.too_old += 1
            return TOO_OLD
        self.recent[basket_id] = None
        if len(self.recent) > self.config.recent_ids:
            del self.recent[next(iter(self.recent))]
        if self.as_of_ms is None or ts > self.as_of_ms:
            self.as_of_ms = ts
            first_kept = local_day(ts, self.config.timezone) - self.config.window_days + 1
            for old in [d for d in self.days if d < first_kept]:
                del self.days[old]
        counts = self.days.get(day)
        if counts is None:
            counts = self.days[day] = DayCounts(self.config)
        counts.add(categories, items)
        self.counted += 1
        self.version += 1
        return ADDED

    # ------------------------------------------------------------------ the window
    def window(self) -> dict[str, Any]:
        """The window's baskets and merged sketches (cached until the next basket)."""
        if self._window is not None and self._window[0] == self.version:
            return self._window[1]
        merged: dict[str, Any] = {
            "category_baskets": 0,
            "item_baskets": 0,
            "categories": frequent_strings_sketch(self.config.category_lg_k),
            "category_pairs": frequent_strings_sketch(self.config.category_lg_k),
            "items": frequent_strings_sketch(self.config.item_lg_k),
            "item_pairs": frequent_strings_sketch(self.config.item_lg_k),
        }
        for day in sorted(self.days):
            counts = self.days[day]
            merged["category_baskets"] += counts.category_baskets
            merged["item_baskets"] += counts.item_baskets
            for name in DayCounts.SKETCHES:
                if not getattr(counts, name).is_empty():
                    merged[name].merge(getattr(counts, name))
        self._window = (self.version, merged)
        return merged

    def summary(self) -> dict[str, Any]:
        """What the API serves: the window, and the counts of categories, items and their most frequent pairs."""
        config = self.config
        merged = self.window()
        last_day = self.last_day
        category_pairs = counts_of(merged["category_pairs"])[: config.top_category_pairs]
        item_pairs = counts_of(merged["item_pairs"])[: config.top_item_pairs]
        items_named = {name for value, *_ in item_pairs for name in value.split(PAIR_SEPARATOR)}
        items = merged["items"]
        return {
            "version": self.version,
            "as_of": iso(self.as_of_ms),
            "window": {
                "days": config.window_days,
                "timezone": config.timezone,
                "first_day": None if last_day is None else _date(last_day - config.window_days + 1),
                "last_day": None if last_day is None else _date(last_day),
            },
            "categories": {
                "baskets": merged["category_baskets"],
                "counts": {value: est for value, est, _, _ in counts_of(merged["categories"])},
                "pairs": [[*value.split(PAIR_SEPARATOR), est] for value, est, _, _ in category_pairs],
                "max_error": max_error(merged["categories"]),
                "pair_max_error": max_error(merged["category_pairs"]),
            },
            "items": {
                "baskets": merged["item_baskets"],
                "counts": {
                    name: [int(items.get_estimate(name)), int(items.get_lower_bound(name)), int(items.get_upper_bound(name))]
                    for name in sorted(items_named)
                },
                "pairs": [[*value.split(PAIR_SEPARATOR), est, low, high] for value, est, low, high in item_pairs],
                "max_error": max_error(items),
                "pair_max_error": max_error(merged["item_pairs"]),
            },
            "next_categories": {"limit": config.next_categories, "min_pair_baskets": config.min_pair_baskets},
            "baskets": {"counted": self.counted, "duplicates": self.duplicates, "too_old": self.too_old},
        }

    # ------------------------------------------------------------------ snapshots
    def to_bytes(self) -> bytes:
        """The whole state, for the aggregator that resumes from it."""
        return orjson.dumps(
            {
                "config": asdict(self.config),
                "days": {str(day): counts.to_json() for day, counts in self.days.items()},
                "as_of_ms": self.as_of_ms,
                "recent": list(self.recent),
                "offset": self.offset,
                "counted": self.counted,
                "duplicates": self.duplicates,
                "too_old": self.too_old,
                "version": self.version,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes, config: AssociationConfig | None = None) -> "AssociationCounts":
        """Inverse of :meth:`to_bytes`; with ``config``, the counts continue under it (sketch sizes stay as stored)."""
        data = orjson.loads(raw)
        stored = AssociationConfig(**data["config"])
        if config is not None:
            config = AssociationConfig(**{**asdict(config), "category_lg_k": stored.category_lg_k, "item_lg_k": stored.item_lg_k})
        counts = cls(
            config=config or stored,
            days={int(day): DayCounts.from_json(value, stored) for day, value in data["days"].items()},
            as_of_ms=data["as_of_ms"],
            recent=dict.fromkeys(data["recent"][-(config or stored).recent_ids :]),
            offset=data["offset"],
            counted=data["counted"],
            duplicates=data["duplicates"],
            too_old=data["too_old"],
            version=data["version"],
        )
        last_day = counts.last_day
        if last_day is not None:  # a shorter window or another time zone under the new config
            counts.days = {day: c for day, c in counts.days.items() if day > last_day - counts.config.window_days}
        return counts


def _date(day: int) -> str:
    """A shop day number as its date, ``YYYY-MM-DD``."""
    return iso(day * DAY_MS)[:10]
