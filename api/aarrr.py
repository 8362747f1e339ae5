"""AARRR over a window of shop weeks, from running counters the store keeps over the published portraits.

Every portrait contributes integer counters (:func:`contribution`) that the portraits' handler keeps
summed over the store, as it keeps the overview's aggregates (:class:`api.indexes.PortraitSpace`):
the difference between the old and the new portrait's counters is applied on each write, so a
changed, expired or erased portrait leaves the figures exactly. A portrait's ``weeks`` (its weekly
ledger), ``first_seen``, ``first_purchase``, ``timezone`` and ``as_of`` are all they read. Weeks are
the shop's calendar weeks, Monday to Sunday (:func:`online_models.vocabulary.week_of_day`), by
number (``|`` below stands for the separator ``\x1f`` of a counter's name):

================  ==============================================================================
counter           what it counts
================  ==============================================================================
``cohort|w``      users first seen in week ``w``: acquisition, and the retention cohorts' sizes
``act|w|d``       of those, users whose first purchase came ``d`` whole days after their first event
                  (``d`` < :data:`MAX_ACTIVATION_DAYS`)
``ret|w|k``       of cohort ``w``, users with an event in week ``w + k`` (``k`` < :data:`RETENTION_WEEKS`)
``active|w``      users with an event in week ``w``; ``payers|w`` with a payment, ``sharers|w`` a share
``gmv|w``         payments in week ``w``, cents; ``orders|w`` their number; ``shares|w`` share events
``active2|x|y``   users whose ledger has events in weeks ``x`` and then ``y`` and none between;
                  ``payers2``, ``sharers2`` likewise for payments and shares
``asof|w``        portraits whose ``as_of`` falls in week ``w``: the newest such week is the data's
================  ==============================================================================

Users active in any week of ``[a, b]`` are counted exactly, not summed week by week: each user's
weeks inside the range are a run of consecutive ledger weeks, so the weeks counted minus the
consecutive pairs counted (both weeks inside) is one for each user active in the range, zero for
the others (:func:`distinct_users`).

A user's ledger keeps the 53 weeks up to their newest event, so every week from 51 weeks before
the newest ``as_of`` week on is complete: a window must start there or later (:func:`window`).

>>> portrait = {"as_of": "2024-05-08T00:00:00.000Z", "timezone": "UTC",
...             "first_seen": "2024-04-24T10:00:00.000Z", "first_purchase": "2024-04-26T09:00:00.000Z",
...             "weeks": {"start": ["2024-04-22", "2024-05-06"], "purchases": [1, 0], "spend": [30.0, 0.0], "shares": [0, 2]}}
>>> figures = build(contribution(portrait), first_week=week_number("2024-04-22"), last_week=week_number("2024-05-06"))
>>> figures.acquisition.new_users, figures.activation.activated, figures.revenue.arpu, figures.referral.shares
(1, 1, 30.0, 2)
>>> [(cell.weeks_after, cell.users) for cell in figures.retention.cohorts[0].cells]
[(0, 1), (1, 0), (2, 1)]
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from api import portrait_paths as paths
from api.fields import cents, count
from api.models import (
    Aarrr,
    AarrrWindow,
    Acquisition,
    Activation,
    Referral,
    ReferralWeek,
    Retention,
    RetentionCell,
    RetentionCohort,
    Revenue,
    RevenueWeek,
    WeekCount,
)
from online_models.clock import DAY_MS, instant_ms
from online_models.events import MAX_TS_MS
from online_models.vocabulary import day_number, local_day, ratio, week_of_day, week_start

#: Activation windows (days from the first event to the first purchase) a query may ask for: 1 to this.
MAX_ACTIVATION_DAYS = 90
#: Retention columns: the cohort's week and the 51 after it.
RETENTION_WEEKS = 52
#: Weeks a window may reach back, counting the newest: every user's ledger holds them all.
WINDOW_WEEKS = 52
#: The window when a query names none: the four weeks up to the newest.
DEFAULT_WEEKS = 4
#: Figures over fewer users than this say they are thin (as the overview's do).
THIN_GROUP = 1000

_SEP = "\x1f"
#: The dates a window may name: event time the contract can hold (1970 to the year 2286).
EARLIEST_DATE, LATEST_DATE = date(1970, 1, 1), date(1970, 1, 1) + timedelta(milliseconds=MAX_TS_MS)


class WindowError(ValueError):
    """A window the counters cannot answer: ``parameter`` names the query parameter at fault, the message says why."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


@lru_cache(maxsize=4096)
def week_number(monday: Any) -> int | None:
    """The shop week holding a date given as ``YYYY-MM-DD`` (a ledger entry's ``week``); None if it is not one.

    >>> week_number("2024-04-29") == week_number("2024-05-05"), week_number("29/04")
    (True, None)
    """
    if not isinstance(monday, str):
        return None
    try:
        return week_of_day(day_number(date.fromisoformat(monday)))
    except ValueError:
        return None


def contribution(portrait: Any) -> dict[str, int]:
    """The portrait's share of every AARRR counter (integers, zeros left out); every field is optional.

    Written for speed (the store runs it twice per portrait update): f-string keys, the declared paths of
    :mod:`api.portrait_paths`.
    """
    p = portrait if isinstance(portrait, dict) else {}
    c: dict[str, int] = {}
    zone = paths.TIMEZONE.read(p)
    zone = zone if isinstance(zone, str) else "UTC"
    as_of = instant_ms(paths.AS_OF.read(p))
    first = instant_ms(paths.FIRST_SEEN.read(p))
    cohort = None
    try:
        if as_of is not None:
            c[f"asof{_SEP}{week_of_day(local_day(as_of, zone))}"] = 1
        if first is not None:
            cohort = week_of_day(local_day(first, zone))
    except (ValueError, KeyError):  # an unknown time zone: the portrait counts for nothing
        return {}
    if cohort is not None:
        c[f"cohort{_SEP}{cohort}"] = 1
        bought = instant_ms(paths.FIRST_PURCHASE.read(p))
        if bought is not None and bought >= first and (bought - first) // DAY_MS < MAX_ACTIVATION_DAYS:
            c[f"act{_SEP}{cohort}{_SEP}{(bought - first) // DAY_MS}"] = 1
    ledger = paths.WEEKS.read(p)
    columns = [ledger.get(name) for name in ("start", "purchases", "spend", "shares")] if isinstance(ledger, dict) else ()
    if not columns or not all(isinstance(column, list) and len(column) == len(columns[0]) for column in columns):
        columns = [[], [], [], []]  # a ledger that is not four columns of one length counts for nothing
    active: list[int] = []
    paid: list[int] = []
    shared: list[int] = []
    for monday, purchases, spend, shares in zip(*columns):
        week = week_number(monday)
        if week is None or (active and week <= active[-1]):  # the ledger is sorted; anything else is skipped
            continue
        active.append(week)
        c[f"active{_SEP}{week}"] = 1
        if cohort is not None and 0 <= week - cohort < RETENTION_WEEKS:
            c[f"ret{_SEP}{cohort}{_SEP}{week - cohort}"] = 1
        purchases = count(purchases)
        if purchases:
            paid.append(week)
            c[f"payers{_SEP}{week}"] = 1
            c[f"orders{_SEP}{week}"] = purchases
            spend = cents(spend)
            if spend > 0:
                c[f"gmv{_SEP}{week}"] = spend
        shares = count(shares)
        if shares:
            shared.append(week)
            c[f"sharers{_SEP}{week}"] = 1
            c[f"shares{_SEP}{week}"] = shares
    for kind, weeks in (("active2", active), ("payers2", paid), ("sharers2", shared)):
        for x, y in zip(weeks, weeks[1:]):
            c[f"{kind}{_SEP}{x}{_SEP}{y}"] = 1
    return c


def _parse(counters: dict[str, int]) -> tuple[dict[str, dict[int, int]], dict[str, dict[tuple[int, int], int]]]:
    """The counters by kind: one-week ones ``{kind: {week: n}}`` and two-number ones ``{kind: {(a, b): n}}``."""
    single: dict[str, dict[int, int]] = defaultdict(dict)
    double: dict[str, dict[tuple[int, int], int]] = defaultdict(dict)
    for key, n in counters.items():
        parts = key.split(_SEP)
        if len(parts) == 2:
            single[parts[0]][int(parts[1])] = n
        elif len(parts) == 3:
            double[parts[0]][(int(parts[1]), int(parts[2]))] = n
    return single, double


def distinct_users(single: dict[int, int], pairs: dict[tuple[int, int], int], first: int, last: int) -> int:
    """Users counted in any week of ``[first, last]``: the weeks' counts less the pairs inside the range.

    >>> # one user in weeks 1, 2 and 5, another in week 2
    >>> single, pairs = {1: 1, 2: 2, 5: 1}, {(1, 2): 1, (2, 5): 1}
    >>> distinct_users(single, pairs, 1, 5), distinct_users(single, pairs, 2, 4), distinct_users(single, pairs, 3, 4)
    (2, 2, 0)
    """
    weeks = sum(n for week, n in single.items() if first <= week <= last)
    inside = sum(n for (x, y), n in pairs.items() if first <= x and y <= last)
    return weeks - inside


def newest_week(counters: dict[str, int]) -> int | None:
    """The newest shop week any stored portrait's ``as_of`` is in; None for an empty store."""
    weeks = [int(key.split(_SEP)[1]) for key, n in counters.items() if key.startswith("asof" + _SEP) and n > 0]
    return max(weeks) if weeks else None


def window(counters: dict[str, int], start: date | None, end: date | None) -> tuple[int, int] | None:
    """The shop weeks ``(first, last)`` holding ``start`` and ``end`` (default: the four weeks up to the newest).

    None when the store is empty and no date is given; :class:`WindowError` for a date outside event time, a
    window that ends before it starts, spans more than 52 weeks or starts more than 51 weeks before the newest week.
    """
    for name, given in (("from", start), ("to", end)):
        if given is not None and not EARLIEST_DATE <= given <= LATEST_DATE:
            raise WindowError(name, f"{name} ({given}) must lie between {EARLIEST_DATE} and {LATEST_DATE}")
    newest = newest_week(counters)
    last = week_of_day(day_number(end)) if end is not None else newest
    if last is None:
        if start is None:
            return None
        last = week_of_day(day_number(start)) + DEFAULT_WEEKS - 1
    first = week_of_day(day_number(start)) if start is not None else last - DEFAULT_WEEKS + 1
    if first > last:
        raise WindowError("from", f"from ({start}) is after to ({end})")
    if newest is not None:
        oldest = newest - WINDOW_WEEKS + 1
        if first < oldest:
            if start is None:
                first = oldest
            else:
                raise WindowError(
                    "from",
                    f"the window must start in one of the {WINDOW_WEEKS} weeks up to the newest (the week of "
                    f"{week_start(newest)}): from {week_start(oldest)} on; {start} is earlier"
                )
    if last - first >= WINDOW_WEEKS:
        raise WindowError("to", f"a window spans at most {WINDOW_WEEKS} weeks; from {start} to {end} spans {last - first + 1}")
    return first, last


def build(counters: dict[str, int], *, first_week: int | None, last_week: int | None, activation_days: int = 7) -> Aarrr:
    """The AARRR figures of weeks ``first_week`` to ``last_week`` (both None: an empty window)."""
    single, double = _parse(counters)
    newest = newest_week(counters)
    weeks = [] if first_week is None or last_week is None else list(range(first_week, last_week + 1))

    def weekly(kind: str, week: int) -> int:
        return single[kind].get(week, 0)

    def distinct(kind: str) -> int:
        return distinct_users(single[kind], double[f"{kind}2"], weeks[0], weeks[-1]) if weeks else 0

    new_users = sum(weekly("cohort", w) for w in weeks)
    activated = sum(
        n for (w, delay), n in double["act"].items() if weeks and weeks[0] <= w <= weeks[-1] and delay < activation_days
    )
    cohorts = []
    for w in weeks:
        size = weekly("cohort", w)
        span = min(RETENTION_WEEKS, newest - w + 1) if newest is not None else 0
        cohorts.append(
            RetentionCohort(
                week=week_start(w),
                users=size,
                cells=[
                    RetentionCell(weeks_after=k, users=(n := double["ret"].get((w, k), 0)), share=ratio(n, size))
                    for k in range(max(0, span))
                ],
            )
        )
    gmv = sum(weekly("gmv", w) for w in weeks)
    active, payers = distinct("active"), distinct("payers")
    shares, sharers = sum(weekly("shares", w) for w in weeks), distinct("sharers")

    warnings = []
    if not weeks:
        warnings.append("no portrait is stored yet: the window is empty")
    elif max(new_users, active) < THIN_GROUP:
        warnings.append(f"figures over fewer than {THIN_GROUP} users are thin; read the shares with care")
    if weeks and newest is not None and weeks[-1] >= newest:
        warnings.append(
            f"the last week is still running; users first seen in its last {activation_days} days may activate yet"
        )
    return Aarrr(
        window=AarrrWindow(
            start=None if not weeks else week_start(weeks[0]),
            end=None if not weeks else (date.fromisoformat(week_start(weeks[-1])) + timedelta(days=6)).isoformat(),
            weeks=len(weeks),
            newest_week=None if newest is None else week_start(newest),
        ),
        acquisition=Acquisition(
            new_users=new_users, by_week=[WeekCount(week=week_start(w), users=weekly("cohort", w)) for w in weeks]
        ),
        activation=Activation(
            within_days=activation_days, new_users=new_users, activated=activated, rate=ratio(activated, new_users)
        ),
        retention=Retention(cohorts=cohorts),
        revenue=Revenue(
            gmv=gmv / 100,
            purchases=sum(weekly("orders", w) for w in weeks),
            active_users=active,
            paying_users=payers,
            arpu=None if not active else round(gmv / 100 / active, 2),
            arppu=None if not payers else round(gmv / 100 / payers, 2),
            by_week=[
                RevenueWeek(
                    week=week_start(w),
                    gmv=weekly("gmv", w) / 100,
                    purchases=weekly("orders", w),
                    active_users=weekly("active", w),
                    paying_users=weekly("payers", w),
                )
                for w in weeks
            ],
        ),
        referral=Referral(
            shares=shares,
            sharing_users=sharers,
            share_rate=ratio(sharers, active),
            by_week=[ReferralWeek(week=week_start(w), shares=weekly("shares", w), sharing_users=weekly("sharers", w)) for w in weeks],
        ),
        warnings=warnings,
    )
