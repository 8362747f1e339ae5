"""When to look at a silent user again, and an index of those times.

A user who sends no events is never recomputed by the event flow, yet their
churn risk keeps rising as event time passes. A sweep driven by the event-time
watermark re-checks them; :class:`CheckSchedule` keeps each user's next check
time in a heap so the sweep only touches users who are due, at
O(due users * log n) instead of a scan of every user.

A check is worth making only at an instant where something about the user can
change: the functions below solve for those instants instead of polling. With
no event, a user's lifecycle stage changes only when a day threshold passes
(:func:`lifecycle_change_ms`), their value layer only when a purchase leaves the
30-day window (:func:`layer_change_ms`); :func:`first_minute_where` finds when
a rising score of time (the lapse risk) first reaches a level, and
:func:`follow_until_ms` says when a silent user stops being followed at all.
:mod:`online_models.watch` combines them into the user's next check.

>>> from online_models.schedule import CheckSchedule
>>> schedule = CheckSchedule()
>>> schedule.set("u1", 300); schedule.set("u2", 100); schedule.set("u3", 200)
>>> schedule.set("u2", 400)                    # replaces u2's earlier entry
>>> schedule.pop_due(300), len(schedule), schedule.peek()
(['u3', 'u1'], 1, 400)
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from functools import lru_cache

from online_models.clock import DAY_MS, MINUTE_MS, days_between
from online_models.lifecycle import LifecycleConfig, last_return_gap_days, stage_of
from online_models.portrait import PortraitState, window_totals
from online_models.rfm import LayerConfig, layer_of

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "LAYER_WINDOW_DAYS",
    "CheckSchedule",
    "first_minute_where",
    "follow_until_ms",
    "layer_at",
    "layer_change_ms",
    "lifecycle_at",
    "lifecycle_change_ms",
    "typical_gap_ms",
]

HOUR_MS = 3_600_000
#: the rolling window the value layer reads (``windows.30d``)
LAYER_WINDOW_DAYS = 30


class CheckSchedule:
    """User ids ordered by their next check time (event-time epoch ms).

    Each user has at most one live entry: :meth:`set` replaces the earlier one.
    Replaced and removed entries stay in the heap until they reach its top
    (lazy deletion); when stale entries outnumber the live ones the heap is
    rebuilt in O(live), so it never holds more than ``max(min_compact, 2 * live)``
    entries and the rebuilds cost O(1) amortised per update. Ties in time come out in user-id order, so the order does
    not depend on the history of updates. Not thread-safe.
    """

    def __init__(self, *, min_compact: int = 1024):
        if min_compact < 0:
            raise ValueError("min_compact must not be negative")
        self.min_compact = min_compact
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._due

    def get(self, user_id: str) -> int | None:
        """The user's next check time, None when none is scheduled."""
        return self._due.get(user_id)

    def set(self, user_id: str, at_ms: int | None) -> None:
        """Schedule ``user_id`` at ``at_ms``, replacing any earlier entry; None removes it.

        >>> schedule = CheckSchedule()
        >>> schedule.set("u1", 100); schedule.set("u1", None)
        >>> "u1" in schedule
        False
        """
        if at_ms is None:
            self.remove(user_id)
            return
        if self._due.get(user_id) == at_ms:
            return
        self._due[user_id] = at_ms
        heapq.heappush(self._heap, (at_ms, user_id))
        self._maybe_compact()

    def remove(self, user_id: str) -> None:
        """Forget ``user_id``'s entry, if any."""
        if self._due.pop(user_id, None) is not None:
            self._maybe_compact()

    def pop_due(self, now_ms: int, limit: int | None = None) -> list[str]:
        """Remove and return the users due by ``now_ms`` (check time <= now), earliest first.

        Each due user comes out once; at most ``limit`` of them when given (the
        rest stay due for the next call).
        """
        out: list[str] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now_ms and (limit is None or len(out) < limit):
            at_ms, user_id = heapq.heappop(heap)
            if due.get(user_id) == at_ms:
                del due[user_id]
                out.append(user_id)
        if out:
            self._maybe_compact()
        return out

    def peek(self) -> int | None:
        """The earliest scheduled check time, None when nothing is scheduled."""
        heap, due = self._heap, self._due
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _maybe_compact(self) -> None:
        if len(self._heap) > max(self.min_compact, 2 * len(self._due)):
            self._heap = [(at_ms, user_id) for user_id, at_ms in self._due.items()]
            heapq.heapify(self._heap)


def typical_gap_ms(state: PortraitState) -> int | None:
    """Mean time between the first and last purchase per repeat purchase day; None before a repeat.

    >>> typical_gap_ms(PortraitState("u1", first_purchase=0, last_purchase=20 * DAY_MS, purchase_days=[0, 10, 20]))
    864000000
    """
    if len(state.purchase_days) < 2 or state.first_purchase is None or state.last_purchase is None:
        return None
    return (state.last_purchase - state.first_purchase) // (len(state.purchase_days) - 1)


def follow_until_ms(
    last_purchase_ms: int | None,
    last_seen_ms: int | None,
    typical_gap_ms: int | None,
    *,
    horizon_ms: int = 180 * DAY_MS,
) -> int | None:
    """The instant a silent user stops being followed for their churn risk; None with nothing known.

    ``horizon_ms`` (180 days) after their last event, or twice their usual gap
    between purchases after the last purchase if that is later. Past it, only the
    instants that come to an end by themselves (lifecycle, layer, pending labels)
    are still worth a check.

    >>> follow_until_ms(0, 100 * DAY_MS, None) // DAY_MS          # still browsing on day 100
    280
    >>> follow_until_ms(0, 0, 150 * DAY_MS) // DAY_MS, follow_until_ms(None, None, None)  # long-gap buyer
    (300, None)
    """
    known = [t for t in (last_purchase_ms, last_seen_ms) if t is not None]
    if not known:
        return None
    end = max(known) + horizon_ms
    if last_purchase_ms is not None and typical_gap_ms is not None and typical_gap_ms > 0:
        end = max(end, last_purchase_ms + 2 * typical_gap_ms)
    return end


# -- what render shows, at any instant, without rendering ---------------------------


def _days_since(as_of_ms: int, then_ms: int | None) -> float | None:
    """``days_since_*`` exactly as :func:`online_models.portrait.render` rounds it."""
    return None if then_ms is None else round((as_of_ms - then_ms) / DAY_MS, 3)


def _tenure_days(as_of_ms: int, first_seen_ms: int) -> float:
    """:func:`online_models.lifecycle.tenure_days` of a rendered portrait, without its ISO strings."""
    return max(0.0, days_between(first_seen_ms, as_of_ms))


def lifecycle_at(state: PortraitState, as_of_ms: int, config: LifecycleConfig = LifecycleConfig()) -> str:
    """The lifecycle stage of ``render(state, as_of=as_of_ms)``, from the few fields the stage reads.

    >>> state = PortraitState("u1", first_seen=0, last_seen=0, last_purchase=0, purchase_days=[0])
    >>> [lifecycle_at(state, day * DAY_MS) for day in (3, 20, 45, 100)]
    ['new', 'active', 'at_risk', 'churned']
    """
    return stage_of(
        _tenure_days(as_of_ms, state.first_seen) if state.first_seen is not None else None,
        _days_since(as_of_ms, state.last_purchase),
        _days_since(as_of_ms, state.last_seen),
        last_return_gap_days(state.purchase_days),
        config,
    )


def layer_at(state: PortraitState, as_of_ms: int, config: LayerConfig = LayerConfig()) -> str:
    """The value layer of ``render(state, as_of=as_of_ms)``, from the few fields the layer reads.

    ``as_of_ms`` is meant to be on a whole minute, as the windows are.
    """
    counts = state.type_counts
    window = window_totals(state, as_of_ms, LAYER_WINDOW_DAYS)
    return layer_of(window.purchases, window.spend, len(state.purchase_days), counts.get("view", 0), counts.get("add_to_cart", 0), config)


# -- instants solved for ---------------------------------------------------------

def _first_true_after(holds: Callable[[int], bool], after_ms: int, guess_ms: float) -> int | None:
    """The first instant ``> after_ms`` at which ``holds`` (false, then true for good) turns true.

    ``guess_ms`` is where it should turn, up to float rounding: the answer is
    bracketed around it and bisected to the millisecond. None when it already
    holds at ``after_ms``.
    """
    if holds(after_ms):
        return None
    width = 4  # the guess is off by float rounding only, so a few milliseconds bracket it
    low, high = max(after_ms, int(guess_ms) - width), max(after_ms + 1, int(guess_ms) + width)
    while holds(low):  # the guess was late: widen down (never past after_ms, where it is false)
        low = max(after_ms, low - width)
        width *= 2
    while not holds(high):  # the guess was early: widen up
        low, high = high, high + width
        width *= 2
    while high - low > 1:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle
    return high


@lru_cache(maxsize=64)
def _passed_after_ms(days: float, rounded: bool) -> int:
    """The fewest milliseconds after an instant at which more than ``days`` days count as passed.

    ``rounded``: as ``days_since_*`` shows them (rounded to 3 decimals, :func:`_days_since`), else
    as tenure counts them (:func:`_tenure_days`). Either count reads the difference of two
    instants alone, so a threshold's instant is its start plus this, solved once per ``days``.

    >>> _passed_after_ms(30, True) - 30 * DAY_MS, _passed_after_ms(30, False) - 30 * DAY_MS
    (43201, 1)
    """
    if rounded:
        def holds(elapsed: int) -> bool:
            return _days_since(elapsed, 0) > days
        guess = (days + 0.0005) * DAY_MS
    else:
        def holds(elapsed: int) -> bool:
            return _tenure_days(elapsed, 0) > days
        guess = days * DAY_MS
    passed = _first_true_after(holds, -1, guess)
    return -1 if passed is None else passed  # a negative threshold has passed already (at any elapsed time)


def lifecycle_change_ms(state: PortraitState, after_ms: int, config: LifecycleConfig = LifecycleConfig()) -> int | None:
    """The first instant after ``after_ms`` at which the user's lifecycle stage differs, if no event comes.

    The stage reads four thresholds of time (see
    :func:`online_models.lifecycle.lifecycle_stage`): tenure passing
    ``new_days``, silence passing ``at_risk_days`` and ``churn_days``, and the days
    since the last purchase passing ``returning_days``. Each is solved exactly as
    ``render`` computes it (``days_since_*`` rounded to 3 decimals, so "above 30
    days" starts some 43.2 s after 30 days: :func:`_passed_after_ms`); the answer is
    the first of those still ahead at which the stage really changes. None when it never will.

    >>> state = PortraitState("u1", first_seen=0, last_seen=0, last_purchase=0, purchase_days=[0])
    >>> [lifecycle_at(state, t) for t in (lifecycle_change_ms(state, 0) - 1, lifecycle_change_ms(state, 0))]
    ['new', 'active']
    >>> after_new = lifecycle_change_ms(state, 0)
    >>> (lifecycle_change_ms(state, after_new) - 30 * DAY_MS) / 1000   # "above 30 days" once rounded
    43.201
    >>> lifecycle_change_ms(state, 200 * DAY_MS) is None                 # churned for good
    True
    """
    silence_from = state.last_purchase if state.last_purchase is not None else state.last_seen
    if silence_from is None:
        return None  # no event: "new" until one comes
    thresholds = [silence_from + _passed_after_ms(config.at_risk_days, True), silence_from + _passed_after_ms(config.churn_days, True)]
    if state.first_seen is not None:
        thresholds.append(state.first_seen + _passed_after_ms(config.new_days, False))
    if state.last_purchase is not None:
        thresholds.append(state.last_purchase + _passed_after_ms(config.returning_days, True))
    stage = lifecycle_at(state, after_ms, config)
    for flip in sorted({at for at in thresholds if at > after_ms}):
        if lifecycle_at(state, flip, config) != stage:
            return flip
    return None


def layer_change_ms(state: PortraitState, after_ms: int, config: LayerConfig = LayerConfig()) -> int | None:
    """The first instant after ``after_ms`` at which the user's value layer differs, if no event comes.

    The layer reads lifetime figures and the 30-day window, and the window's
    purchases and spend change only when a minute bucket with a purchase enters
    it (at the end of its minute ``m``, for a purchase ahead of ``after_ms``) or
    leaves it (at ``m + 30 days``: the window holds ``as_of - 30 days < ts <= as_of``
    on whole minutes). Those instants are tried in order; the first at which the
    layer really changes is the answer. None when it never will.

    >>> state = PortraitState("u1", last_purchase=90_000, purchase_days=[0], bucket_minutes=[2],
    ...                       bucket_events=[1], bucket_purchases=[1], bucket_cents=[8000])
    >>> change = layer_change_ms(state, 60_000 * 2)
    >>> change == 120_000 + 30 * DAY_MS, layer_at(state, change - 60_000), layer_at(state, change)
    (True, 'ordinary', 'low_value')
    """
    window_ms = LAYER_WINDOW_DAYS * DAY_MS
    minutes, purchases = state.bucket_minutes, state.bucket_purchases
    start = bisect.bisect_right(minutes, (after_ms - window_ms) // MINUTE_MS)  # buckets still to leave
    changes: set[int] = set()
    for minute, bought in zip(minutes[start:], purchases[start:]):
        if bought:
            enters = minute * MINUTE_MS
            changes.update(t for t in (enters, enters + window_ms) if t > after_ms)
    if not changes:
        return None
    layer = layer_at(state, after_ms, config)
    for instant in sorted(changes):
        if layer_at(state, instant, config) != layer:
            return instant
    return None


def first_minute_where(holds: Callable[[int], bool], start_ms: int, end_ms: int, *, guess_ms: float | None = None) -> int | None:
    """The first whole minute in ``[start_ms, end_ms]`` at which ``holds`` is true; None when it never is.

    ``holds`` is a condition on an instant that never turns false again once true
    (a silent user's lapse risk at or above a threshold): the end is tried first
    (one call when it never holds), then the answer is bisected, ``1 + ceil(log2(minutes))``
    calls at most. With ``guess_ms``, where the answer should be, it is bracketed
    around the guess instead, with steps doubling from one minute: about
    ``3 + 2 log2(minutes the guess is off)`` calls, 3 for a guess within the minute.

    >>> calls = []
    >>> def above(t):
    ...     calls.append(t)
    ...     return t >= 1_000_000 * 60_000 + 123 * 60_000
    >>> first_minute_where(above, 1_000_000 * 60_000, 1_010_000 * 60_000) // 60_000, len(calls)
    (1000123, 14)
    >>> calls.clear()
    >>> first_minute_where(above, 1_000_000 * 60_000, 1_010_000 * 60_000, guess_ms=1_000_122.6 * 60_000) // 60_000, len(calls)
    (1000123, 3)
    >>> first_minute_where(lambda t: False, 0, DAY_MS) is None
    True
    """
    first, last = -(-start_ms // MINUTE_MS), end_ms // MINUTE_MS
    if first > last or not holds(last * MINUTE_MS):
        return None
    below, above = first - 1, last  # ``below`` is never evaluated: the answer may be ``first``
    if guess_ms is not None:
        below, above = _bracket(holds, first, last, min(last, max(first, -(-int(guess_ms) // MINUTE_MS))))
    while above - below > 1:
        middle = (below + above) // 2
        if holds(middle * MINUTE_MS):
            above = middle
        else:
            below = middle
    return above * MINUTE_MS


def _bracket(holds: Callable[[int], bool], first: int, last: int, guess: int) -> tuple[int, int]:
    """Minutes ``(below, above)`` around ``guess`` in ``[first - 1, last]`` with ``holds`` false at ``below`` (or ``first - 1``) and true at ``above``."""
    step = 1
    if holds(guess * MINUTE_MS):
        above = guess
        while True:
            below = max(first - 1, above - step)
            if below < first or not holds(below * MINUTE_MS):
                return below, above
            above, step = below, step * 2
    below = guess
    while True:
        above = min(last, below + step)
        if above == last or holds(above * MINUTE_MS):
            return below, above
        below, step = above, step * 2
