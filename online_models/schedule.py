"""When to look at a silent user again, and an index of those times.

A user who sends no events is never recomputed by the event flow, yet their
churn risk keeps rising as event time passes. A sweep driven by the event-time
watermark re-checks them; :class:`CheckSchedule` keeps each user's next check
time in a heap so the sweep only touches users who are due, at
O(due users * log n) instead of a scan of every user. :func:`next_check_ms`
says when the next check of a user should be.

>>> from online_models.schedule import CheckSchedule
>>> schedule = CheckSchedule()
>>> schedule.set("u1", 300); schedule.set("u2", 100); schedule.set("u3", 200)
>>> schedule.set("u2", 400)                    # replaces u2's earlier entry
>>> schedule.pop_due(300), len(schedule), schedule.peek()
(['u3', 'u1'], 1, 400)
"""

from __future__ import annotations

import heapq

__all__ = ["DAY_MS", "HOUR_MS", "CheckSchedule", "next_check_ms"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


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


def next_check_ms(
    last_purchase_ms: int | None,
    last_seen_ms: int | None,
    now_ms: int,
    typical_gap_ms: int | None,
    *,
    horizon_ms: int = 180 * DAY_MS,
    step_ms: int = DAY_MS,
    fine_step_ms: int = 6 * HOUR_MS,
) -> int | None:
    """When a silent user should next be checked (always after ``now_ms``), None for never.

    * Checks fall on whole steps of silence after the anchor (the last purchase,
      else the last visit), so they land exactly on day thresholds such as
      "30 days since the last purchase".
    * The step is ``step_ms`` (a day), and ``fine_step_ms`` (6 hours) while the
      silence since the last purchase is within half to one and a half times the
      user's usual gap between purchases, where churn risk moves fastest.
    * Checks stop once the user has been silent (no event of any kind) for
      ``horizon_ms`` (180 days): the last check falls on that instant. A buyer
      whose usual gap is long is followed until twice the gap since the last
      purchase, if that is later. With neither time known, None.

    >>> DAY = 86_400_000
    >>> next_check_ms(0, 0, 10 * DAY + 5, None) // DAY                  # daily, on the day
    11
    >>> next_check_ms(0, 0, 10 * DAY, 12 * DAY) / DAY                   # near the usual gap
    10.25
    >>> next_check_ms(None, 0, 179 * DAY + 1, None) / DAY, next_check_ms(None, 0, 180 * DAY, None)
    (180.0, None)
    >>> next_check_ms(0, 0, 250 * DAY, 150 * DAY) / DAY                 # long-gap buyer
    251.0
    """
    if step_ms <= 0 or fine_step_ms <= 0:
        raise ValueError("steps must be positive")
    anchor = last_purchase_ms if last_purchase_ms is not None else last_seen_ms
    if anchor is None:
        return None
    last_activity = max(t for t in (last_purchase_ms, last_seen_ms) if t is not None)
    end = last_activity + horizon_ms
    gap = typical_gap_ms if typical_gap_ms is not None and typical_gap_ms > 0 else None
    if last_purchase_ms is not None and gap is not None:
        end = max(end, last_purchase_ms + 2 * gap)
    if now_ms >= end:
        return None
    step = step_ms
    if last_purchase_ms is not None and gap is not None:
        silence = now_ms - last_purchase_ms
        if gap // 2 <= silence < gap + gap // 2:
            step = min(step_ms, fine_step_ms)
    candidate = anchor + ((now_ms - anchor) // step + 1) * step
    return min(candidate, end)
