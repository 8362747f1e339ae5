"""What a user's state keeps for the group figures of AARRR and the decision habits, each fold bounded.

Three records, each an order-insensitive aggregate like the rest of the portrait state
(:mod:`online_models.portrait` folds events into them and renders them):

* the **weekly ledger**: the shop weeks (:func:`~online_models.vocabulary.week_of_day`) with an
  event, each with its payments, spend and shares, for the newest ``keep`` weeks of the user's
  events (weeks older than that are dropped, whatever order the events come in);
* **sessions** (visits): events less than :data:`~online_models.vocabulary.SESSION_GAP_MS` apart
  belong to one session. Sessions a late event can still join are kept open; once the watermark
  is a whole gap past a session's end it is settled into two counters, visits (sessions with a
  view) and the views in them;
* **same-day decisions**: the first view of each of the user's ``max_items`` most recently viewed
  items, and per payment naming an item whether that item was first viewed earlier on the same shop
  day. A payment's answer can change while a view stamped before it may still arrive late, so it
  stays open until the watermark passes the payment.

>>> from online_models.portrait import PortraitState
>>> state = PortraitState("u1")
>>> for ts, views in ((0, 1), (60_000, 1), (35 * 60_000, 0), (10 * 60_000, 1)):   # the last one arrives late
...     count_session(state, ts, views)
>>> state.session_starts, state.session_ends, state.session_views
([0], [2100000], [3])
>>> settle_sessions(state, watermark=70 * 60_000); state.visits, state.visit_views, state.session_starts
(1, 3, [])
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

from online_models.portrait_types import WeeklyLedger
from online_models.vocabulary import SESSION_GAP_MS, local_day, week_start

if TYPE_CHECKING:  # pragma: no cover
    from online_models.portrait import PortraitState

__all__ = [
    "count_session",
    "count_week",
    "note_item_payment",
    "note_view",
    "render_weeks",
    "settle_decisions",
    "settle_sessions",
    "visit_totals",
]


# -- the weekly ledger ----------------------------------------------------------------------------


def count_week(state: "PortraitState", week: int, keep: int) -> int | None:
    """The ledger slot of shop week ``week`` (made if new), or None for a week older than the newest ``keep``.

    >>> from online_models.portrait import PortraitState
    >>> state = PortraitState("u1")
    >>> [count_week(state, w, keep=3) for w in (10, 12, 11, 14, 11)], state.week_numbers
    ([0, 1, 1, 1, None], [12, 14])
    """
    weeks = state.week_numbers
    if weeks and weeks[-1] == week:
        return len(weeks) - 1
    if not weeks or week > weeks[-1]:
        weeks.append(week)
        state.week_purchases.append(0)
        state.week_cents.append(0)
        state.week_shares.append(0)
        oldest = week - keep + 1
        if weeks[0] < oldest:
            cut = bisect.bisect_left(weeks, oldest)
            for column in (weeks, state.week_purchases, state.week_cents, state.week_shares):
                del column[:cut]
        return len(weeks) - 1
    if week <= weeks[-1] - keep:
        return None
    i = bisect.bisect_left(weeks, week)
    if weeks[i] != week:
        weeks.insert(i, week)
        state.week_purchases.insert(i, 0)
        state.week_cents.insert(i, 0)
        state.week_shares.insert(i, 0)
    return i


def render_weeks(state: "PortraitState") -> WeeklyLedger:
    """The ledger as the portrait publishes it, in columns, oldest week first."""
    return WeeklyLedger(
        [week_start(week) for week in state.week_numbers],
        list(state.week_purchases),
        [cents / 100 for cents in state.week_cents],
        list(state.week_shares),
    )


# -- sessions -------------------------------------------------------------------------------------


def count_session(state: "PortraitState", ts: int, views: int) -> None:
    """Put an event at ``ts`` (a view if ``views`` is 1) into its session: the last one, a new one, or
    (out of order) the one or two open sessions within a gap of it, merged."""
    starts, ends, counts = state.session_starts, state.session_ends, state.session_views
    if starts and ts >= starts[-1]:
        if ts - ends[-1] < SESSION_GAP_MS:
            if ts > ends[-1]:
                ends[-1] = ts
            counts[-1] += views
            return
    elif starts:
        i = bisect.bisect_right(starts, ts)  # sessions before i start at or before ts
        lo = i - 1 if i and ts - ends[i - 1] < SESSION_GAP_MS else i
        hi = i + 1 if i < len(starts) and starts[i] - ts < SESSION_GAP_MS else i
        if lo < hi:
            start, end = min(starts[lo], ts), max(ends[hi - 1], ts)
            total = sum(counts[lo:hi]) + views
            starts[lo:hi], ends[lo:hi], counts[lo:hi] = [start], [end], [total]
            return
        starts.insert(i, ts)
        ends.insert(i, ts)
        counts.insert(i, views)
        return
    starts.append(ts)
    ends.append(ts)
    counts.append(views)


def settle_sessions(state: "PortraitState", watermark: int) -> None:
    """Settle the sessions no admissible (``ts >= watermark``) event can join: their end is a gap or more behind."""
    ends = state.session_ends
    if not ends or ends[0] + SESSION_GAP_MS > watermark:
        return
    cut = bisect.bisect_right(ends, watermark - SESSION_GAP_MS)
    for views in state.session_views[:cut]:
        if views:
            state.visits += 1
            state.visit_views += views
    del state.session_starts[:cut], ends[:cut], state.session_views[:cut]


def visit_totals(state: "PortraitState") -> tuple[int, int]:
    """Visits (sessions with a view) and the views in them, settled and open."""
    visits, views = state.visits, state.visit_views
    for n in state.session_views:
        if n:
            visits += 1
            views += n
    return visits, views


# -- same-day decisions ---------------------------------------------------------------------------


def _same_day(first_view: int | None, pay_ts: int, day: int, zone: str) -> int:
    return int(first_view is not None and first_view <= pay_ts and local_day(first_view, zone) == day)


def note_view(state: "PortraitState", item: str, ts: int, max_items: int, zone: str) -> None:
    """Remember the first view of ``item`` (the earliest ``ts``) among the ``max_items`` items viewed last.

    An earlier first view that comes late answers again the open payments of the item.
    """
    views = state.first_views
    first = views.pop(item, None)
    views[item] = ts if first is None or ts < first else first
    if first is None and len(views) > max_items:
        del views[next(iter(views))]  # the item viewed longest ago
    if state.pending_decisions and (first is None or ts < first):
        for entry in state.pending_decisions:
            pay_ts, day, paid_item, answer = entry
            if paid_item == item:
                now = _same_day(views[item], pay_ts, day, zone)
                state.same_day_purchases += now - answer
                entry[3] = now


def note_item_payment(state: "PortraitState", item: str, ts: int, day: int, zone: str) -> None:
    """Count a payment at ``ts`` (shop day ``day``) for ``item``: a same-day decision if the item was first viewed
    earlier that day; open until the watermark passes it."""
    answer = _same_day(state.first_views.get(item), ts, day, zone)
    state.item_purchases += 1
    state.same_day_purchases += answer
    bisect.insort(state.pending_decisions, [ts, day, item, answer])


def settle_decisions(state: "PortraitState", watermark: int) -> None:
    """Close the payments no admissible event can be stamped before."""
    pending = state.pending_decisions
    if pending and pending[0][0] < watermark:
        del pending[: bisect.bisect_left(pending, [watermark])]
