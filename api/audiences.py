"""Audiences: which users match a filter, found through the secondary indexes.

A filter (:class:`~api.models.AudienceFilter`) compiles into *terms*, one per
condition. Each term has a predicate on the portrait (the definition), and most
have postings in an index (:mod:`api.indexes`) that answer it without reading
portraits. The planner reads the postings of the term with the fewest users
first (the running aggregates know every posting count), then for each other
term picks the cheapest of: reading its postings and intersecting, seeking each
candidate in its postings, or checking it on the candidates' portraits. A filter
whose conditions have no index at all reads every portrait (``plan.full_scan``);
an empty filter lists the ``all`` index.

Everything is read from one RocksDB snapshot, so postings and portraits agree. Every loop
checks the query's :class:`~api.limits.Deadline`. An export lets go of the snapshot once the
audience is selected: its rows read the portraits as the download reaches them, so a user
erased meanwhile is left out rather than kept alive by the export.
"""

from __future__ import annotations

import base64
import bisect
import csv
import hashlib
import heapq
import io
import math
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field as dataclass_field
from typing import Any

import orjson

from api import indexes as ix
from api import portrait_paths as paths
from api.indexes import PORTRAITS_SPACE, PortraitSpace, count, instant_ms, label, number, parse_portrait
from api.limits import NO_DEADLINE, Deadline
from api.models import (
    COUNTED_EVENTS,
    AudienceFilter,
    AudienceMember,
    AudiencePlan,
    AudienceQuery,
    AudienceResult,
    CartedNotPaid,
    Performed,
    Spend,
)
from api.portrait_paths import PortraitPath
from api.store import LocalStore, prefix_end
from online_models.clock import DAY_MS


class BadCursor(ValueError):
    """A cursor that is malformed or belongs to another filter."""


@dataclass(eq=False)
class Term:
    """One condition of a filter: a predicate on the portrait, and maybe postings that answer it."""

    label: str
    predicate: Callable[[dict], bool]
    index: str | None = None
    values: tuple[str, ...] = ()  # categorical: any of these (raw values)
    ranged: bool = False  # numeric: low <= value <= high (encoded; None is open)
    low: bytes | None = None
    high: bytes | None = None
    low_value: float | None = None  # the same bounds, decoded (for estimates)
    high_value: float | None = None
    exact: bool = True  # the postings alone answer the term
    negative: bool = False  # users in the postings are excluded
    counted: int | None = None  # an index the aggregates do not count: its postings counted (up to a bound)

    def ranges(self) -> list[tuple[bytes, bytes, int]]:
        """The key ranges of the term's postings, each with the offset of the user id in its keys."""
        if self.ranged:
            lower, upper = ix.range_bounds(self.index, self.low, self.high)
            width = len(ix.encode_float(0.0) if self.index in ix.FLOAT_INDEXES else ix.encode_count(0))
            return [(lower, upper, len(ix.index_bounds(self.index)[0]) + width + 1)]
        out = []
        for prefix in self.prefixes():
            out.append((prefix, prefix_end(prefix), len(prefix)))
        return out

    def prefixes(self) -> list[bytes]:
        """Categorical terms: the posting prefix of each value."""
        return [ix.posting_prefix(self.index, ix.encode_label(value)) for value in self.values]

    def estimate(self, aggregates: dict[str, int]) -> int:
        """Users in the postings, from the running aggregates (or from :func:`count_postings`)."""
        if self.counted is not None:
            return self.counted
        if self.index == "all":
            return aggregates.get("users", 0)
        if not self.ranged:
            return sum(aggregates.get(ix.agg("n", self.index, value), 0) for value in self.values)
        if self.index == "risk":
            low = 0 if self.low_value is None else min(99, max(0, int(self.low_value * 100)))
            high = 99 if self.high_value is None else min(99, max(0, int(self.high_value * 100)))
            return sum(aggregates.get(ix.agg("riskbin", b), 0) for b in range(low, high + 1))
        if self.index == "clv":
            low = 0 if self.low_value is None else ix.clv_bin(self.low_value)
            high = len(ix.CLV_EDGES) - 1 if self.high_value is None else ix.clv_bin(self.high_value)
            return sum(aggregates.get(ix.agg("clvbin", b), 0) for b in range(low, high + 1))
        prefix = ix.agg("n", self.index, "")
        total = 0
        for key, n in aggregates.items():
            if key.startswith(prefix):
                value = int(key[len(prefix) :])
                if (self.low_value is None or value >= self.low_value) and (self.high_value is None or value <= self.high_value):
                    total += n
        return total


#: the portrait paths the behaviour conditions read (their ``source``), each checked against the schema at import
SOURCE_PATHS = types.MappingProxyType({
    source: paths.declare(source)
    for source in (
        *(source for by_days in COUNTED_EVENTS.values() for source in by_days.values()),
        paths.LIFETIME_SPEND.dotted,
        *(path.dotted for path in paths.WINDOW_SPEND.values()),
    )
})


def _within(value: float | None, low: float | None, high: float | None) -> bool:
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def _categorical(name: str, index: str, values: list, read: Callable[[dict], Any]) -> Term:
    wanted = tuple(dict.fromkeys(v for v in map(label, values) if v is not None))
    chosen = frozenset(wanted)
    return Term(name, lambda p: label(read(p)) in chosen, index=index, values=wanted)


def _count_range(name: str, index: str | None, path: PortraitPath, low: int, high: int | None, *, exact: bool = True) -> Term:
    def predicate(p: dict) -> bool:
        return _within(count(path.read(p)), low, high)

    if index is None:
        return Term(name, predicate)
    return Term(
        name,
        predicate,
        index=index,
        ranged=True,
        low=ix.encode_count(low),
        high=None if high is None else ix.encode_count(high),
        low_value=low,
        high_value=high,
        exact=exact,
    )


def _float_range(name: str, index: str, path: PortraitPath, low: float | None, high: float | None) -> Term:
    return Term(
        name,
        lambda p: _within(number(path.read(p)), low, high),
        index=index,
        ranged=True,
        low=None if low is None else ix.encode_float(low),
        high=None if high is None else ix.encode_float(high),
        low_value=low,
        high_value=high,
    )


#: most postings of an index the aggregates do not count that a query counts for its estimate
UNCOUNTED_COUNT_CAP = 10_000


def count_postings(store: LocalStore, view, terms: list[Term], deadline: Deadline = NO_DEADLINE) -> None:
    """Give each term on an index the aggregates do not count (:data:`api.indexes.UNCOUNTED_INDEXES`) its size:
    the postings of its values, counted up to :data:`UNCOUNTED_COUNT_CAP` (beyond it the estimate stays there)."""
    for term in terms:
        if term.index not in ix.UNCOUNTED_INDEXES:
            continue
        counted = 0
        for lower, upper, _ in term.ranges():
            left = UNCOUNTED_COUNT_CAP - counted
            counted += sum(1 for _ in zip(deadline.watch(store.keys_between(lower, upper, view=view)), range(left)))
        term.counted = counted


def clv_floor(
    store: LocalStore, view, flt: AudienceFilter, aggregates: dict[str, int], deadline: Deadline = NO_DEADLINE
) -> float | None:
    """The lowest ``clv.value`` in the filter's top share (None: no top share asked; inf: no one valued).

    The user ranked ``ceil(top_share x users with a value)``-th from the top of the ``clv`` index sets it.
    """
    if flt.clv is None or flt.clv.top_share is None:
        return None
    wanted = math.ceil(flt.clv.top_share * aggregates.get("clv_users", 0) - 1e-9)
    lower, upper = ix.index_bounds("clv")
    floor = math.inf
    ranked = deadline.watch(store.keys_between(lower, upper, view=view, backwards=True))
    for key, _ in zip(ranked, range(max(1, wanted))):
        floor = ix.decode_float(key[len(lower) :].split(ix.SEP, 1)[0])
    return floor


def compile_filter(flt: AudienceFilter, top_clv_floor: float | None = None) -> list[Term]:
    """The terms of a filter, each labelled with the part of the filter it comes from.

    ``top_clv_floor``: the filter's CLV top share as a lowest value (:func:`clv_floor`).
    """
    terms: list[Term] = []
    if flt.segments is not None:
        terms.append(_categorical("segments", "seg", flt.segments, paths.SEGMENT_ID.read))
    if flt.layers is not None:
        terms.append(_categorical("layers", "layer", flt.layers, paths.RFM_LAYER.read))
    if flt.lifecycle is not None:
        terms.append(_categorical("lifecycle", "life", flt.lifecycle, paths.LIFECYCLE.read))
    if flt.tags is not None:
        for tag in dict.fromkeys(flt.tags.all or ()):
            terms.append(Term(f"tags.all[{tag}]", lambda p, t=tag: t in ix.tags_of(p), index="tag", values=(tag,)))
        if flt.tags.any is not None:
            wanted = tuple(dict.fromkeys(flt.tags.any))
            terms.append(
                Term("tags.any", lambda p, w=frozenset(wanted): not w.isdisjoint(ix.tags_of(p)), index="tag", values=wanted)
            )
        if flt.tags.none is not None:
            unwanted = tuple(dict.fromkeys(flt.tags.none))
            terms.append(
                Term(
                    "tags.none",
                    lambda p, u=frozenset(unwanted): u.isdisjoint(ix.tags_of(p)),
                    index="tag",
                    values=unwanted,
                    negative=True,
                )
            )
    if flt.churn_risk is not None:
        terms.append(_float_range("churn_risk", "risk", paths.CHURN_RISK, flt.churn_risk.min, flt.churn_risk.max))
    if flt.clv is not None:
        lows = [v for v in (flt.clv.min, top_clv_floor) if v is not None]
        terms.append(_float_range("clv", "clv", paths.CLV_VALUE, max(lows) if lows else None, flt.clv.max))
    if flt.categories is not None:
        if flt.categories.top_in is not None:
            terms.append(
                _categorical("categories.top_in", "topcat", flt.categories.top_in, paths.TOP_CATEGORY.read)
            )
        if flt.categories.score_at_least is not None:
            wanted = flt.categories.score_at_least

            def scored(p: dict, category: str = wanted.category, minimum: float = wanted.at_least) -> bool:
                return any(c == category and s is not None and s >= minimum for c, s in ix.top_categories(p))

            terms.append(Term("categories.score_at_least", scored, index="cat", values=(wanted.category,), exact=False))
        if flt.categories.next_in is not None:
            suggested = tuple(dict.fromkeys(flt.categories.next_in))
            terms.append(
                Term(
                    "categories.next_in",
                    lambda p, w=frozenset(suggested): not w.isdisjoint(ix.next_categories_of(p)),
                    index="next",
                    values=suggested,
                )
            )
    if flt.bought_items is not None:
        wanted = tuple(dict.fromkeys(flt.bought_items))
        terms.append(
            Term("bought_items", lambda p, w=frozenset(wanted): not w.isdisjoint(ix.bought_items_of(p)), index="item", values=wanted)
        )
    if flt.attributes is not None:
        for attribute in ix.ATTRIBUTES:
            values = getattr(flt.attributes, attribute)
            if values is not None:
                terms.append(
                    _categorical(
                        f"attributes.{attribute}", f"attr.{attribute}", values, paths.PROFILE_ATTRIBUTES[attribute].read
                    )
                )
    for i, condition in enumerate(flt.behaviour or ()):
        name = f"behaviour[{i}]"
        if isinstance(condition, Performed):
            index = f"pay{condition.days}" if condition.event == "pay" and condition.days else None
            terms.append(_count_range(name, index, SOURCE_PATHS[condition.source], condition.at_least, condition.at_most))
        elif isinstance(condition, Spend):
            path, low, high = SOURCE_PATHS[condition.source], condition.at_least, condition.at_most
            terms.append(Term(name, lambda p, path=path, low=low, high=high: _within(number(path.read(p)), low, high)))
        elif isinstance(condition, CartedNotPaid):
            days = condition.days

            def carted_not_paid(p: dict, days: int = days) -> bool:
                newest, as_of = instant_ms(paths.LAST_ABANDONED_CART.read(p)), instant_ms(paths.AS_OF.read(p))
                return (
                    newest is not None
                    and as_of is not None
                    and newest > as_of - days * DAY_MS
                    and count(paths.WINDOW_PURCHASES[days].read(p)) == 0
                )

            terms.append(
                Term(
                    name,
                    carted_not_paid,
                    index=f"pay{days}",
                    ranged=True,
                    low=ix.encode_count(0),
                    high=ix.encode_count(0),
                    low_value=0,
                    high_value=0,
                    exact=False,
                )
            )
    return terms


@dataclass
class Selection:
    """The users of an audience (sorted by id) and how they were found."""

    users: list[bytes]
    plan: AudiencePlan
    view: Any = dataclass_field(repr=False)

    def portrait(self, user: bytes) -> dict | None:
        return read_portrait(self.view, user)


def read_portrait(view, user: bytes) -> dict | None:
    """A portrait from a snapshot, parsed; None if absent."""
    try:
        raw = view[PORTRAITS_SPACE + user]
    except Exception:  # rocksdict raises a bare Exception for a missing key
        return None
    return parse_portrait(raw)


def _postings(store: LocalStore, view, term: Term, deadline: Deadline = NO_DEADLINE) -> list[bytes]:
    """The users in a term's postings, sorted and distinct (one range scan per value)."""
    runs = [
        [key[offset:] for key in deadline.watch(store.keys_between(lower, upper, view=view))]
        for lower, upper, offset in term.ranges()
    ]
    if term.ranged:
        return sorted(runs[0])  # sorted by value first; every user has one value
    if len(runs) == 1:
        return runs[0]  # one value: already in user order
    merged: list[bytes] = []
    for user in heapq.merge(*runs):
        if not merged or merged[-1] != user:
            merged.append(user)
    return merged


def _posting_set(store: LocalStore, view, term: Term, deadline: Deadline = NO_DEADLINE) -> set[bytes]:
    users: set[bytes] = set()
    for lower, upper, offset in term.ranges():
        users.update(key[offset:] for key in deadline.watch(store.keys_between(lower, upper, view=view)))
    return users


def _probe(view, term: Term, candidates: list[bytes], deadline: Deadline = NO_DEADLINE) -> set[bytes]:
    """The candidates (sorted) listed in a categorical term's postings: one seek per candidate and value."""
    found: set[bytes] = set()
    iterator = view.iter()
    for prefix in term.prefixes():
        for user in deadline.watch(candidates):  # seeks in key order reuse the blocks just read
            if user in found:
                continue
            key = prefix + user
            iterator.seek(key)
            if iterator.valid() and iterator.key() == key:
                found.add(user)
    return found


#: Indexes that list each user under at most one value: their per-value counts add up exactly.
SINGLE_VALUED = frozenset({"layer", "life", "seg", "topcat", *(f"attr.{name}" for name in ix.ATTRIBUTES)})

#: Rough costs in microseconds (measured on 100k portraits): reading one posting key, one seek
#: to test a candidate against one value, reading and parsing a portrait, checking a predicate.
COST_READ, COST_PROBE, COST_PARSE, COST_CHECK = 2.5, 8.0, 50.0, 3.0


def select(store: LocalStore, flt: AudienceFilter, deadline: Deadline = NO_DEADLINE) -> Selection:
    """Every user whose portrait matches ``flt``, and the plan that found them (:class:`QueryTimeout` past ``deadline``)."""
    handler = store.handler(PORTRAITS_SPACE)
    aggregates = handler.aggregates() if isinstance(handler, PortraitSpace) else {}
    view = store.snapshot()
    terms = compile_filter(flt, clv_floor(store, view, flt, aggregates, deadline))
    count_postings(store, view, terms, deadline)
    positive = [t for t in terms if t.index is not None and not t.negative]
    unindexed = [t for t in terms if t.index is None]

    if not positive and unindexed:
        # nothing narrows the search: read every portrait once
        users, read = [], 0
        for key, raw in deadline.watch(store.items_between(PORTRAITS_SPACE, prefix_end(PORTRAITS_SPACE), view=view)):
            read += 1
            portrait = parse_portrait(raw)
            if all(t.predicate(portrait) for t in terms):
                users.append(key[len(PORTRAITS_SPACE) :])
        plan = AudiencePlan(
            indexes=[],
            driver=None,
            full_scan=True,
            residual=[t.label for t in terms],
            candidates=read,
            portraits_read=read,
        )
        return Selection(users, plan, view)
    if not positive:
        positive = [Term("everyone", lambda p: True, index="all", values=("",))]

    estimates = {t: t.estimate(aggregates) for t in terms + positive if t.index is not None}
    positive.sort(key=lambda t: estimates[t])
    driver = positive[0]
    candidates = _postings(store, view, driver, deadline)
    used, probed = [driver], []
    residual = unindexed + ([] if driver.exact else [driver])
    for term in positive[1:] + [t for t in terms if t.negative]:
        if not candidates:
            break
        # cost of each way to apply the term, counting the portraits left to parse afterwards
        n = len(candidates)
        kept = n * min(1.0, estimates[term] / max(1, aggregates.get("users", 0)))
        if term.negative:
            kept = n - kept
        parse_after = kept * COST_PARSE if residual else 0.0
        costs = {
            "read": estimates[term] * COST_READ + parse_after,
            "residual": n * (COST_PARSE + COST_CHECK),
        }
        if not term.ranged:
            costs["probe"] = n * len(term.values) * COST_PROBE + parse_after
        choice = min(costs, key=costs.__getitem__)
        if choice == "residual":
            residual.append(term)
            continue
        listed = _posting_set(store, view, term, deadline) if choice == "read" else _probe(view, term, candidates, deadline)
        candidates = [u for u in candidates if (u in listed) != term.negative]  # stays sorted
        (used if choice == "read" else probed).append(term)
        if not term.exact:
            residual.append(term)

    users = candidates
    read = 0
    if residual and users:
        kept = []
        for user in deadline.watch(users):
            portrait = read_portrait(view, user)
            read += 1
            if portrait is not None and all(t.predicate(portrait) for t in residual):
                kept.append(user)
        users = kept
    plan = AudiencePlan(
        indexes=list(dict.fromkeys(t.index for t in used)),
        probed=list(dict.fromkeys(t.index for t in probed)),
        driver=driver.index,
        full_scan=False,
        residual=[t.label for t in residual],
        candidates=len(candidates),
        portraits_read=read,
    )
    return Selection(users, plan, view)


# -- one page without counting the audience ---------------------------------------------------


@dataclass
class Page:
    """One page of an audience (``users``, sorted by id) and how it was found.

    ``count`` is the size of the whole audience when the query found it (a full selection, or a
    walk from the start that reached the end); None when the page was found without it.
    ``estimate`` is the planner's estimate of that size from the running aggregates.
    """

    users: list[bytes]
    after: bytes | None  # continue after this user (None: this is the last page)
    count: int | None
    estimate: int
    plan: AudiencePlan
    view: Any = dataclass_field(repr=False)
    parsed: dict[bytes, dict | None] = dataclass_field(default_factory=dict, repr=False)

    def portrait(self, user: bytes) -> dict | None:
        if user not in self.parsed:
            self.parsed[user] = read_portrait(self.view, user)
        return self.parsed[user]


def _walk_postings(store: LocalStore, view, term: Term, after: bytes | None) -> Iterator[bytes]:
    """The users in a categorical term's postings after ``after``, in id order, lazily."""

    def users(prefix: bytes) -> Iterator[bytes]:
        lower = prefix if after is None else prefix + after + b"\x00"  # the first key past ``after``
        for key in store.keys_between(lower, prefix_end(prefix), view=view):
            yield key[len(prefix) :]

    runs = [users(prefix) for prefix in term.prefixes()]
    previous = None
    for user in runs[0] if len(runs) == 1 else heapq.merge(*runs):
        if user != previous:
            yield user
        previous = user


def _listed(iterator, term: Term, user: bytes) -> bool:
    """Whether ``user`` is in a categorical term's postings (one seek per value)."""
    for prefix in term.prefixes():
        key = prefix + user
        iterator.seek(key)
        if iterator.valid() and iterator.key() == key:
            return True
    return False


def _selection_cost(terms: list[Term], estimates: dict[Term, int], users: int) -> float:
    """Rough microseconds :func:`select` spends: every indexed term's postings read, or every portrait."""
    indexed = sorted(estimates[t] for t in terms if t.index is not None and not t.negative)
    if not indexed:
        return users * (COST_PARSE if terms else COST_READ)
    driver = indexed[0]
    cost = driver * COST_READ + sum(min(n * COST_READ, driver * COST_PROBE) for n in indexed[1:])
    if any(t.index is None or not t.exact for t in terms):
        cost += driver * (COST_PARSE + COST_CHECK)
    return cost


def query_page(
    store: LocalStore,
    flt: AudienceFilter,
    after: bytes | None,
    limit: int,
    *,
    exact_count: bool = False,
    deadline: Deadline = NO_DEADLINE,
) -> Page:
    """The page of ``limit`` users after ``after``, by the cheaper of two plans.

    *Walk*: read a categorical driver's postings (or the ``all`` index) in user-id order from
    the cursor and test each user against the other conditions (by seeks in their postings, or
    on the portrait when a condition needs it), stopping at the first user past the page. It
    costs about ``limit / share of the driver's users who match`` tests, whatever the size of the
    audience, and does not count it. *Select*: find the whole audience (:func:`select`) and cut
    the page out of it; it counts the audience. The walk is taken when it is estimated to be
    cheaper and no exact count is asked (``exact_count``, or ``limit`` 0: only the count).
    """
    handler = store.handler(PORTRAITS_SPACE)
    aggregates = handler.aggregates() if isinstance(handler, PortraitSpace) else {}
    total = aggregates.get("users", store.count(PORTRAITS_SPACE))
    view = store.snapshot()
    terms = compile_filter(flt, clv_floor(store, view, flt, aggregates, deadline))
    count_postings(store, view, terms, deadline)
    estimates = {t: t.estimate(aggregates) for t in terms if t.index is not None}
    share = 1.0
    for term in terms:  # conditions taken as independent; one without an index as everyone
        if term.index is not None:
            part = min(1.0, estimates[term] / max(1, total))
            share *= 1.0 - part if term.negative else part
    estimate = round(total * share)

    drivers = [t for t in terms if t.index is not None and not t.ranged and not t.negative]
    driver = min(drivers, key=estimates.__getitem__) if drivers else Term("everyone", lambda p: True, index="all", values=("",))
    driver_size = estimates.get(driver, total)
    others = [t for t in terms if t is not driver]
    on_portrait = [t for t in others if t.index is None or t.ranged or not t.exact] + ([] if driver.exact else [driver])
    needs_portrait = bool(on_portrait)
    per_user = COST_READ + (COST_PARSE + COST_CHECK * len(terms) if needs_portrait else
                            COST_PROBE * sum(len(t.values) for t in others))
    walked = driver_size if estimate <= 0 else min(driver_size, (limit + 1) * driver_size / estimate)
    if exact_count or limit == 0 or walked * per_user >= _selection_cost(terms, estimates, total):
        selection = select(store, flt, deadline)
        chosen, last = page(selection.users, after, limit)
        return Page(chosen, last, len(selection.users), len(selection.users), selection.plan, selection.view)

    # with the portrait at hand every condition is checked on it (the definitions); else by seeks,
    # the rarest first so most users fail at the first
    probes: list[Term] = []
    if not needs_portrait:
        probes = sorted((t for t in others if not t.negative), key=estimates.__getitem__)
        probes += [t for t in others if t.negative]
    iterator = None if needs_portrait else view.iter()
    found: list[bytes] = []
    parsed: dict[bytes, dict | None] = {}
    read = candidates = 0
    more = False
    for user in deadline.watch(_walk_postings(store, view, driver, after)):
        candidates += 1
        if needs_portrait:
            portrait = read_portrait(view, user)
            read += 1
            if portrait is None or not all(t.predicate(portrait) for t in others + [driver]):
                continue
            parsed[user] = portrait
        elif not all(_listed(iterator, t, user) != t.negative for t in probes):
            continue
        if len(found) == limit:
            more = True
            break
        found.append(user)
    plan = AudiencePlan(
        indexes=[driver.index],
        probed=[] if needs_portrait else list(dict.fromkeys(t.index for t in probes)),
        driver=driver.index,
        full_scan=False,
        residual=[t.label for t in (others if needs_portrait else [])],
        candidates=candidates,
        portraits_read=read,
        walked=True,
    )
    count = len(found) if after is None and not more else None
    if count is None and (not terms or (terms == [driver] and driver.index in SINGLE_VALUED and driver.exact)):
        count = estimate  # the running counts are exact for everyone and for values of a field users have one of
    return Page(found, found[-1] if more else None, count, estimate if count is None else count, plan, view, parsed)


def answer(store: LocalStore, query: AudienceQuery, after: bytes | None, deadline: Deadline = NO_DEADLINE) -> AudienceResult:
    """The answer to an audience query: a page of members with the chosen fields, counts, the next cursor."""
    found = query_page(store, query.filter, after, query.limit, exact_count=query.exact_count, deadline=deadline)
    members = [
        AudienceMember(
            user_id=user_text(user),
            fields=project(found.portrait(user), query.fields) if query.fields else {},
        )
        for user in found.users
    ]
    return AudienceResult(
        count=found.count,
        estimated_count=found.estimate,
        users=members,
        next_cursor=encode_cursor(query.filter, found.after) if found.after is not None else None,
        plan=found.plan,
    )


# -- pages and projections ---------------------------------------------------------------------


def filter_digest(flt: AudienceFilter) -> bytes:
    """Eight bytes that identify a filter, so a cursor is not reused with another one."""
    return hashlib.sha256(flt.model_dump_json(exclude_none=True).encode()).digest()[:8]


def encode_cursor(flt: AudienceFilter, after: bytes) -> str:
    return base64.urlsafe_b64encode(filter_digest(flt) + after).rstrip(b"=").decode()


def decode_cursor(flt: AudienceFilter, cursor: str) -> bytes:
    """The user id a page starts after; :class:`BadCursor` for a foreign or broken cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise BadCursor("cursor is not valid: pass next_cursor from the previous page unchanged") from None
    if len(raw) < 9:
        raise BadCursor("cursor is not valid: pass next_cursor from the previous page unchanged")
    if raw[:8] != filter_digest(flt):
        raise BadCursor("cursor belongs to a different filter: start again without a cursor")
    return raw[8:]


def page(users: list[bytes], after: bytes | None, limit: int) -> tuple[list[bytes], bytes | None]:
    """The users after ``after`` (at most ``limit``), and the id to continue after (None: no more)."""
    start = 0 if after is None else bisect.bisect_right(users, after)
    chosen = users[start : start + limit]
    more = start + limit < len(users)
    return chosen, (chosen[-1] if more and chosen else None)


def pick(portrait: Any, path: str) -> Any:
    """The value at a dotted path (list items by position), or None.

    >>> pick({"a": [{"b": 1}]}, "a.0.b"), pick({"a": 1}, "a.b")
    (1, None)
    """
    return PortraitPath.of(path).read(portrait)


def project(portrait: dict | None, fields: list[str]) -> dict[str, Any]:
    return {path: pick(portrait, path) for path in fields}


def user_text(user: bytes) -> str:
    return user.decode("utf-8", errors="replace")


# -- CSV ----------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """One CSV cell: nested values as JSON; text that a spreadsheet would run as a formula is quoted.

    >>> csv_cell(None), csv_cell(True), csv_cell(-1.5), csv_cell("=SUM(A1)"), csv_cell({"a": 1})
    ('', 'true', '-1.5', "'=SUM(A1)", '{"a":1}')
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    return orjson.dumps(value).decode()


def csv_rows(store: LocalStore, users: list[bytes], fields: list[str], chunk: int = 1000) -> Iterator[str]:
    """The users as CSV text, a chunk of rows at a time (header first), their fields read from the live store
    as the rows are made (no snapshot is held: a user gone since the selection is left out)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id", *fields])
    for start in range(0, len(users), chunk):
        for user in users[start : start + chunk]:
            raw = store.get(PORTRAITS_SPACE, user)
            if raw is None:
                continue  # erased or expired since the selection
            portrait = parse_portrait(raw) if fields else None
            writer.writerow([csv_cell(user_text(user)), *(csv_cell(pick(portrait, path)) for path in fields)])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
