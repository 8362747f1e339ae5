"""Secondary indexes and running aggregates of the stored portraits.

Every portrait written to the store (key space ``p:``) also writes, in the same
RocksDB batch, one *posting* key per indexed value it holds, and adjusts the
running aggregates by the difference between the old portrait's contribution
and the new one's. The old portrait is read before the write, so its postings
are removed exactly; a tombstone removes them all.

Posting keys are ``i:<index>\\x1f<value>\\x1f<user id>`` with an empty value:

============================  ===================================  ==================
index                         portrait field                       value encoding
============================  ===================================  ==================
``all``                       every portrait                       empty
``layer``                     ``rfm.layer``                        the name
``life``                      ``lifecycle``                        the name
``seg``                       ``segment.id``                       ``str(id)``
``tag``                       each name in ``tags``                the name
``topcat``                    ``top_categories[0].category``       the name
``cat``                       every ``top_categories[*].category`` the name
``next``                      every ``next_categories[*].category`` the name
``attr.<name>``               ``profile.<name>`` for age_band,     ``str(value)``
                              gender, region, city_tier
``item``                      every ``bought_items[*]``            the item id
``pay7``/``pay30``/``pay90``  ``windows.<D>d.purchases``           10-digit zero-padded
``risk``                      ``churn.risk``                       order-preserving hex
                                                                   of the IEEE double
``clv``                       ``clv.value``                        as ``risk``
============================  ===================================  ==================

Numeric postings sort by value, so a range is one contiguous key range. Values
are escaped (``%`` and ``\\x1f``) so the separator never occurs inside them;
the user id is everything after the second separator.

The aggregates are integer counters (money in cents, device shares in 1e-4
units), so subtracting an old contribution is exact. They hold the posting
count of every categorical and ``pay<D>`` value (the query planner's size
estimates) and every figure of the group overview (:mod:`api.overview`); the
AARRR counters (:mod:`api.aarrr`) are kept the same way, apart, so the overview
does not read them; the ``item`` postings are not counted there (a shop sells far more items than it has
categories or tags; the aggregates are written with every batch): a query counts
an item's postings itself, up to a bound (:data:`UNCOUNTED_INDEXES`).
"""

from __future__ import annotations

import bisect
import logging
import struct
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from api import aarrr
from api.associations import AssociationSpace
from api.erasures import ErasureLedger
from api import portrait_paths as paths
from api.fields import cents, count, label, number
from api.rescore import ModelSpace
from api.store import SEP, Headers, LocalStore, SpaceHandler, Txn, header, prefix_end
from online_models.clock import instant_ms
from online_models.erasure import ERASURE_HEADER

log = logging.getLogger(__name__)

PORTRAITS_SPACE = b"p:"
INDEX_SPACE = b"i:"

#: Bump when postings or aggregates change meaning: the store rebuilds them at open.
INDEX_VERSION = b"4"
_VERSION_KEY = b"\x00version:portrait-indexes"
_AGGREGATES_KEY = b"\x00aggregates:portraits"
_AARRR_KEY = b"\x00aggregates:aarrr"

ATTRIBUTES = tuple(paths.PROFILE_ATTRIBUTES)
WINDOWS = (7, 30, 90)
CATEGORICAL_INDEXES = ("layer", "life", "seg", "tag", "topcat", "cat", "next", *(f"attr.{name}" for name in ATTRIBUTES), "item")
#: categorical indexes whose values the aggregates do not count (a query counts their postings, up to a bound)
UNCOUNTED_INDEXES = ("item",)
NUMERIC_INDEXES = (*(f"pay{days}" for days in WINDOWS), "risk", "clv")
#: numeric indexes whose values are floats (:func:`encode_float`), not counts
FLOAT_INDEXES = ("risk", "clv")
#: lower edges of the CLV histogram's bins, in 1-2-5 steps; the last bin has no upper edge
CLV_EDGES = (0.0, *(float(m * 10**e) for e in range(7) for m in (1, 2, 5)))
#: ``all`` lists every user (``i:all\x1f\x1f<user>``): small keys, quicker to list than the portraits.
INDEXES = ("all",) + CATEGORICAL_INDEXES + NUMERIC_INDEXES

_ASEP = "\x1f"  # separator inside aggregate names


def top_categories(portrait: Any) -> list[tuple[str, float | None]]:
    """(category, score) pairs of ``top_categories``, best first, skipping malformed entries."""
    entries = paths.TOP_CATEGORIES.read(portrait)
    if not isinstance(entries, list):
        return []
    result = []
    for entry in entries:
        if isinstance(entry, dict):
            name = label(entry.get("category"))
            if name is not None:
                result.append((name, number(entry.get("score"))))
    return result


def bought_items_of(portrait: Any) -> list[str]:
    """The distinct item ids of a portrait's ``bought_items``, in order."""
    items = paths.BOUGHT_ITEMS.read(portrait)
    if not isinstance(items, list):
        return []
    return list(dict.fromkeys(name for name in map(label, items) if name is not None))


def next_categories_of(portrait: Any) -> list[str]:
    """The distinct category names of ``next_categories``, in order.

    >>> next_categories_of({"next_categories": [{"category": "health", "lift": 2.1}, {"category": None}, "x"]})
    ['health']
    """
    entries = paths.NEXT_CATEGORIES.read(portrait)
    if not isinstance(entries, list):
        return []
    return list(dict.fromkeys(name for e in entries if isinstance(e, dict) and (name := label(e.get("category"))) is not None))


def tags_of(portrait: Any) -> list[str]:
    """The distinct tag names of a portrait, in order."""
    tags = paths.TAGS.read(portrait)
    if not isinstance(tags, list):
        return []
    return list(dict.fromkeys(name for name in map(label, tags) if name is not None))


# -- encodings -------------------------------------------------------------------


def encode_label(value: str) -> bytes:
    """A categorical value as it appears inside a key.

    >>> encode_label("a\\x1fb%")
    b'a%1Fb%25'
    """
    if "%" in value or "\x1f" in value:
        value = value.replace("%", "%25").replace("\x1f", "%1F")
    return value.encode()


def encode_count(value: int) -> bytes:
    """A count, zero-padded so keys sort numerically."""
    return b"%010d" % value


def encode_float(value: float) -> bytes:
    """A finite float as 16 hex digits that sort like the numbers.

    >>> sorted([-1.5, 0.0, 0.25, 1.0, -0.1], key=encode_float)
    [-1.5, -0.1, 0.0, 0.25, 1.0]
    """
    (bits,) = struct.unpack(">Q", struct.pack(">d", value + 0.0))
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | (1 << 63)
    return b"%016x" % bits


def decode_float(encoded: bytes) -> float:
    """Inverse of :func:`encode_float`.

    >>> [decode_float(encode_float(v)) for v in (-2.5, 0.0, 1234.56)]
    [-2.5, 0.0, 1234.56]
    """
    bits = int(encoded, 16)
    bits = bits ^ (1 << 63) if bits >> 63 else bits ^ 0xFFFF_FFFF_FFFF_FFFF
    return struct.unpack(">d", struct.pack(">Q", bits))[0]


def clv_bin(value: float) -> int:
    """The CLV histogram bin of a value (:data:`CLV_EDGES`).

    >>> [clv_bin(v) for v in (0.0, 0.99, 1.0, 4.99, 5.0, 120.0, 1e9)]
    [0, 0, 1, 2, 3, 7, 21]
    """
    return max(0, bisect.bisect_right(CLV_EDGES, value) - 1)


def posting_prefix(index: str, value: bytes) -> bytes:
    """Prefix of every posting of one indexed value."""
    return INDEX_SPACE + index.encode() + SEP + value + SEP


def posting_key(index: str, value: bytes, user: bytes) -> bytes:
    return posting_prefix(index, value) + user


def posting_user(key: bytes) -> bytes:
    """The user id of a posting key (everything after the second separator)."""
    return key.split(SEP, 2)[2]


def index_bounds(index: str) -> tuple[bytes, bytes]:
    """[lower, upper) of every posting of an index."""
    start = INDEX_SPACE + index.encode() + SEP
    return start, prefix_end(start)


def range_bounds(index: str, low: bytes | None, high: bytes | None) -> tuple[bytes, bytes]:
    """[lower, upper) of the postings with ``low <= value <= high`` (encoded; None: open)."""
    start, end = index_bounds(index)
    lower = start + low + SEP if low is not None else start
    upper = start + high + prefix_end(SEP) if high is not None else end
    return lower, upper


# -- what one portrait puts into the indexes and the aggregates -------------------


def postings(portrait: Any) -> set[tuple[str, bytes]]:
    """Every (index, encoded value) the portrait is listed under."""
    return entries(portrait)[0]


def contribution(portrait: Any) -> dict[str, int]:
    """The portrait's share of every running aggregate (integers only, zeros left out)."""
    return entries(portrait, with_postings=False)[1]


def agg(*parts: object) -> str:
    """Name of one aggregate counter."""
    return _ASEP.join(str(part) for part in parts)


_HOUR_KEYS = tuple(agg("hour", h) for h in range(24))
_WEEKDAY_KEYS = tuple(agg("weekday", d) for d in range(7))
_WINDOW_KEYS = tuple((paths.WINDOW_PURCHASES[days], f"pay{days}") for days in WINDOWS)
_EMPTY: dict = {}


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else _EMPTY


def _add(c: dict[str, int], key: str, n: int) -> None:
    c[key] = c.get(key, 0) + n


def entries(portrait: Any, *, with_postings: bool = True) -> tuple[set[tuple[str, bytes]], dict[str, int]]:
    """The portrait's postings and its contribution to the aggregates, in one pass.

    Written for speed (the follower runs it twice per portrait update, a filtered
    overview once per member): the declared paths of :mod:`api.portrait_paths`, every field
    optional and type-checked.
    """
    p = _obj(portrait)
    posts: set[tuple[str, bytes]] = {("all", b"")} if with_postings else set()
    c: dict[str, int] = {"users": 1}

    def categorical(index: str, value: str) -> None:  # each (index, value) comes once per portrait
        if with_postings:
            posts.add((index, encode_label(value)))
        c[f"n{_ASEP}{index}{_ASEP}{value}"] = 1

    layer = label(paths.RFM_LAYER.read(p))
    if layer is not None:
        categorical("layer", layer)
    stage = label(paths.LIFECYCLE.read(p))
    if stage is not None:
        categorical("life", stage)
    segment = label(paths.SEGMENT_ID.read(p))
    if segment is not None:
        categorical("seg", segment)
        segment_name = label(paths.SEGMENT_NAME.read(p))
        if segment_name is not None:
            c[f"segname{_ASEP}{segment}{_ASEP}{segment_name}"] = 1
    for tag in tags_of(p):
        categorical("tag", tag)
    seen_categories = set()
    for position, (name, _) in enumerate(top_categories(p)):
        if name in seen_categories:
            continue
        seen_categories.add(name)
        categorical("cat", name)
        if position == 0:
            categorical("topcat", name)
    if with_postings:
        for item in bought_items_of(p):
            posts.add(("item", encode_label(item)))
    for name in next_categories_of(p):
        categorical("next", name)
    for name, path in paths.PROFILE_ATTRIBUTES.items():
        value = label(path.read(p))
        if value is not None:
            categorical(f"attr.{name}", value)
    for path, index in _WINDOW_KEYS:
        purchases = count(path.read(p))
        if purchases is not None:
            if with_postings:
                posts.add((index, encode_count(purchases)))
            c[f"n{_ASEP}{index}{_ASEP}{purchases}"] = 1
    def valued(index: str, value: float, bin_number: int) -> None:  # a float index: posting, bin, users
        if with_postings:
            posts.add((index, encode_float(value)))
        c[f"{index}bin{_ASEP}{bin_number}"] = 1
        c[f"{index}_users"] = 1

    risk = number(paths.CHURN_RISK.read(p))
    if risk is not None:
        valued("risk", risk, min(99, max(0, int(risk * 100))))
        c["risk_sum_e6"] = int(round(risk * 1_000_000))

    hours = paths.ACTIVE_HOURS.read(p)
    if isinstance(hours, list) and len(hours) == 24:
        for key, n in zip(_HOUR_KEYS, hours):
            if type(n) is int and n > 0:
                c[key] = n
    weekdays = paths.WEEKDAYS.read(p)
    if isinstance(weekdays, list) and len(weekdays) == 7:
        for key, n in zip(_WEEKDAY_KEYS, weekdays):
            if type(n) is int and n > 0:
                c[key] = n
    for kind, users, path in (("device", "device_users", paths.DEVICES), ("method", "method_users", paths.PAYMENT_METHODS)):
        shares = path.read(p)  # mean shares, in 1e-4 units
        if isinstance(shares, dict) and shares:
            c[users] = 1
            for name, share in shares.items():
                units = number(share)
                if units is not None and units > 0:
                    _add(c, f"{kind}{_ASEP}{name}", int(round(units * 10_000)))
    for path in paths.FUNNEL_TOTALS:
        n = count(path.read(p))
        if n:
            c[path[-1]] = n
    band = label(paths.PRICE_BAND.read(p))
    if band is not None:
        c[f"priceband{_ASEP}{band}"] = 1

    gmv_30d = cents(paths.WINDOW_SPEND[30].read(p))
    gmv_life = cents(paths.LIFETIME_SPEND.read(p))
    if gmv_30d:
        c["gmv_30d"] = gmv_30d
    if gmv_life:
        c["gmv_life"] = gmv_life
    if layer is not None:
        if gmv_30d:
            c[f"gmv_30d{_ASEP}layer{_ASEP}{layer}"] = gmv_30d
        if gmv_life:
            c[f"gmv_life{_ASEP}layer{_ASEP}{layer}"] = gmv_life
    if segment is not None and gmv_30d:
        c[f"gmv_30d{_ASEP}seg{_ASEP}{segment}"] = gmv_30d
    value = number(paths.CLV_VALUE.read(p))
    if value is not None:
        valued("clv", value, clv_bin(value))
        clv_cents = cents(value)
        if clv_cents:
            c["clv_cents"] = clv_cents
            if layer is not None:
                c[f"clv_cents{_ASEP}layer{_ASEP}{layer}"] = clv_cents
    purchases_30d = count(paths.WINDOW_PURCHASES[30].read(p)) or 0
    if purchases_30d >= 1:
        c["buyers_30d"] = 1
    if purchases_30d >= 2:
        c["repeat_buyers_30d"] = 1
    if c.get("risk_sum_e6") == 0:
        del c["risk_sum_e6"]
    return posts, c


def add_into(total: dict[str, int], delta: Mapping[str, int], sign: int = 1) -> None:
    """``total += sign * delta``, dropping counters that reach zero."""
    for key, value in delta.items():
        new = total.get(key, 0) + sign * value
        if new:
            total[key] = new
        else:
            total.pop(key, None)


def parse_portrait(raw: bytes | None) -> dict | None:
    """A stored portrait as a dict; None for a missing one, ``{}`` for one that is not a JSON object."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def aggregate(portraits: Iterable[Any]) -> dict[str, int]:
    """The aggregates of a group of portraits, computed from scratch."""
    total: dict[str, int] = {}
    for portrait in portraits:
        add_into(total, contribution(portrait))
    return total


# -- the key space handler ----------------------------------------------------------


class PortraitSpace(SpaceHandler):
    """Stores portraits with their postings and keeps the running aggregates.

    A tombstone removes the portrait, every posting and its share of the
    aggregates (and of the AARRR counters); one with an ``erasure-request`` header
    also confirms that step of the request in ``erasures``, in the same batch.
    """

    def __init__(
        self,
        space: bytes = PORTRAITS_SPACE,
        erasures: ErasureLedger | None = None,
        models: ModelSpace | None = None,
        associations: AssociationSpace | None = None,
    ):
        super().__init__(space)
        self.erasures = erasures
        #: scores a portrait that arrives with an older snapshot's churn block, and its CLV (:mod:`api.rescore`)
        self.models = models
        #: gives each arriving portrait the next categories of the newest association summary (:mod:`api.associations`)
        self.associations = associations
        self._lock = threading.Lock()
        self._aggregates: dict[str, int] = {}
        self._delta: dict[str, int] = {}
        self._aarrr: dict[str, int] = {}
        self._aarrr_delta: dict[str, int] = {}

    def aggregates(self) -> dict[str, int]:
        """A copy of the running aggregates over every stored portrait."""
        with self._lock:
            return dict(self._aggregates)

    def aarrr_counters(self) -> dict[str, int]:
        """A copy of the running AARRR counters over every stored portrait (:mod:`api.aarrr`)."""
        with self._lock:
            return dict(self._aarrr)

    def open(self, store: LocalStore) -> None:
        if store.db.get(_VERSION_KEY) != INDEX_VERSION:
            self.rebuild(store)
        self.reload(store)

    def reload(self, store: LocalStore) -> None:
        """Read the aggregates as the store holds them (a read-only view of the store reloads after each catch-up)."""
        raw = store.db.get(_AGGREGATES_KEY)
        aggregates = orjson.loads(raw) if raw else {}
        raw = store.db.get(_AARRR_KEY)
        counters = orjson.loads(raw) if raw else {}
        with self._lock:
            self._aggregates = aggregates
            self._aarrr = counters
            self.count = aggregates.get("users", 0)

    def rebuild(self, store: LocalStore, batch_size: int = 10_000) -> None:
        """Recompute every posting and aggregate from the stored portraits."""
        log.info("rebuilding the portrait indexes")
        for index in INDEXES:
            lower, upper = index_bounds(index)
            store.db.delete_range(lower, upper)
        totals: dict[str, int] = {}
        counters: dict[str, int] = {}
        txn = Txn(store.db)
        pending = 0
        for user, raw in store.scan(self.space):
            portrait = parse_portrait(raw)
            user_postings, share = entries(portrait)
            for index, value in user_postings:
                txn.batch.put(posting_key(index, value, user), b"")
            add_into(totals, share)
            add_into(counters, aarrr.contribution(portrait))
            pending += 1
            if pending >= batch_size:
                store.db.write(txn.batch)
                txn, pending = Txn(store.db), 0
        txn.batch.put(_AGGREGATES_KEY, orjson.dumps(totals))
        txn.batch.put(_AARRR_KEY, orjson.dumps(counters))
        txn.batch.put(_VERSION_KEY, INDEX_VERSION)
        store.db.write(txn.batch)

    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        full = self.space + key
        if value is None and self.erasures is not None:
            request_id = header(headers, ERASURE_HEADER)
            if request_id:
                self.erasures.confirm(txn, request_id, "portraits")
        old_raw = txn.get(full)
        if old_raw is None and value is None:
            return
        new = parse_portrait(value)
        if new:
            rescored = False
            for scorer in (self.models, self.associations):
                fresh = scorer.score(new) if scorer is not None else None
                if fresh is not None:
                    new.update(fresh)
                    rescored = True
            if rescored:
                value = orjson.dumps(new)
        old = parse_portrait(old_raw) if old_raw is not None else None
        old_postings, old_share = entries(old) if old is not None else (set(), {})
        new_postings, new_share = entries(new) if value is not None else (set(), {})
        for index, encoded in old_postings - new_postings:
            txn.batch.delete(posting_key(index, encoded, key))
        for index, encoded in new_postings - old_postings:
            txn.batch.put(posting_key(index, encoded, key), b"")
        add_into(self._delta, old_share, -1)
        add_into(self._delta, new_share)
        if old is not None:
            add_into(self._aarrr_delta, aarrr.contribution(old), -1)
        if value is not None:
            add_into(self._aarrr_delta, aarrr.contribution(new))
        if value is None:
            txn.delete(full)
        else:
            txn.put(full, value)

    def prepare(self, txn: Txn) -> None:
        with self._lock:
            totals = dict(self._aggregates)
            counters = dict(self._aarrr) if self._aarrr_delta else None
        add_into(totals, self._delta)
        txn.put(_AGGREGATES_KEY, orjson.dumps(totals))
        if counters is not None:
            add_into(counters, self._aarrr_delta)
            txn.put(_AARRR_KEY, orjson.dumps(counters))

    def committed(self) -> None:
        with self._lock:
            add_into(self._aggregates, self._delta)
            add_into(self._aarrr, self._aarrr_delta)
            self.count = self._aggregates.get("users", 0)
        self._delta = {}
        self._aarrr_delta = {}

    def rolled_back(self) -> None:
        self._delta = {}
        self._aarrr_delta = {}
