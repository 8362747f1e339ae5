"""Delayed churn labels: snapshot a user's features now, label them once the horizon has passed.

Whether a user has churned at instant ``t`` is only known ``H`` later: the
snapshot taken at ``t`` is labelled **churned** (``True``) if the user makes no
purchase in ``(t, t + H]``, and **not churned** (``False``) otherwise. The
functions here keep the pending snapshots in a small per-user list that lives in
the user's state (plain JSON-able ``[t_ms, features]`` pairs, oldest first), so a
worker calls them from its per-user handler and its periodic sweep:

* :meth:`LabelDelay.maybe_snapshot` records ``features`` at event time ``t`` if
  the newest pending snapshot is at least ``sample_every_ms`` older (at most one
  snapshot per ``sample_every_ms``; an event older than the newest snapshot
  records nothing).
* :meth:`LabelDelay.release` turns every snapshot with ``t + H < watermark`` into
  ``(features, label)``. Strictly less: the event clock admits events with
  ``ts >= watermark``, so while ``watermark <= t + H`` a purchase at exactly
  ``t + H`` may still arrive and must still count. A purchase at ``t`` itself does
  not count (the snapshot at ``t`` already holds it).
* The purchase times it needs are a separate sorted list kept with
  :meth:`LabelDelay.add_purchase` and trimmed by :meth:`LabelDelay.prune_purchases`;
  their order of arrival does not matter.

A churned user sends no more events, so ``release`` must also run from a timer
over all users' states (not only when the user has an event): otherwise the
positive labels would never come out. Taking the snapshots in that same sweep,
with the portrait rendered as of the sweep instant, keeps training features like
the ones scored later (a snapshot taken on an event always has recency 0). The pending list is capped at
``max_pending`` snapshots (the oldest are dropped first); with the watermark
advancing it never holds more than ``ceil(H / sample_every_ms) + 1``.

>>> DAY = 86_400_000
>>> delay = LabelDelay(horizon_ms=7 * DAY, sample_every_ms=7 * DAY)
>>> pending, purchases = [], []
>>> pending = delay.maybe_snapshot(pending, 0, {"spend": 1.0})
>>> pending = delay.maybe_snapshot(pending, 3 * DAY, {"spend": 2.0})  # too soon: ignored
>>> pending = delay.maybe_snapshot(pending, 7 * DAY, {"spend": 0.5})
>>> [t // DAY for t, _ in pending]
[0, 7]
>>> purchases = delay.add_purchase(purchases, 7 * DAY)  # exactly t + H for the first snapshot
>>> pending, labelled = delay.release(pending, 7 * DAY, purchases)
>>> labelled  # the watermark has not passed day 7 yet
[]
>>> pending, labelled = delay.release(pending, 7 * DAY + 1, purchases)
>>> labelled
[({'spend': 1.0}, False)]
>>> pending, labelled = delay.release(pending, 15 * DAY, purchases)
>>> labelled  # no purchase in (day 7, day 14]: churned
[({'spend': 0.5}, True)]
>>> pending, delay.prune_purchases(purchases, pending, 15 * DAY)
([], [])
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

__all__ = ["LabelDelay"]


class LabelDelay:
    """Snapshot-now, label-later bookkeeping for churn within ``horizon_ms``."""

    def __init__(self, horizon_ms: int, sample_every_ms: int, max_pending: int | None = None, max_purchases: int = 256):
        if horizon_ms <= 0 or sample_every_ms <= 0:
            raise ValueError("horizon_ms and sample_every_ms must be positive")
        if sample_every_ms > horizon_ms:
            # Otherwise a snapshot could be released (and forgotten) before the next
            # one is due, and the spacing between snapshots could not be kept.
            raise ValueError("sample_every_ms must not exceed horizon_ms")
        self.horizon_ms = int(horizon_ms)
        self.sample_every_ms = int(sample_every_ms)
        natural = math.ceil(horizon_ms / sample_every_ms) + 1
        self.max_pending = natural + 1 if max_pending is None else int(max_pending)
        if self.max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_purchases = int(max_purchases)

    def due(self, pending: list, ts_ms: int) -> bool:
        """Whether :meth:`maybe_snapshot` at ``ts_ms`` would record (render features only then)."""
        return not pending or ts_ms >= pending[-1][0] + self.sample_every_ms

    def maybe_snapshot(self, pending: list, ts_ms: int, features: Mapping[str, Any] | Any, context: Any = None) -> list:
        """``pending`` with ``[ts_ms, features]`` appended if a snapshot is due at ``ts_ms``.

        A mapping of ``features`` is copied; any other JSON-able form is kept as given.
        A ``context`` that is not None (JSON-able: what else was known at ``ts_ms``, e.g. the
        purchase statistics) is kept as a third element and handed back by :meth:`release`.
        """
        if not self.due(pending, ts_ms):
            return pending
        kept = dict(features) if isinstance(features, Mapping) else features
        entry = [int(ts_ms), kept] if context is None else [int(ts_ms), kept, context]
        out = [*pending, entry]
        return out[-self.max_pending :]

    def release(
        self, pending: list, watermark_ms: int, purchase_times: list[int], *, with_context: bool = False
    ) -> tuple[list, list[tuple]]:
        """``(still pending, [(features, churned), ...])`` for the snapshots the watermark has passed.

        A snapshot at ``t`` is released once ``t + horizon_ms < watermark_ms``; its label
        is ``True`` (churned) unless some purchase time ``p`` has ``t < p <= t + horizon_ms``.
        ``with_context``: ``(features, churned, context)`` triples (context None when none was kept).
        """
        if not pending or pending[0][0] + self.horizon_ms >= watermark_ms:
            return pending, []
        times = sorted(purchase_times)
        remaining, labelled = [], []
        for snapshot in pending:
            t, features = snapshot[0], snapshot[1]
            if t + self.horizon_ms >= watermark_ms:
                remaining.append(snapshot)
                continue
            i = bisect.bisect_right(times, t)  # first purchase strictly after t
            bought = i < len(times) and times[i] <= t + self.horizon_ms
            if with_context:
                labelled.append((features, not bought, snapshot[2] if len(snapshot) > 2 else None))
            else:
                labelled.append((features, not bought))
        return remaining, labelled

    def add_purchase(self, purchase_times: list[int], ts_ms: int) -> list[int]:
        """``purchase_times`` (sorted) with ``ts_ms`` inserted, keeping the newest ``max_purchases``."""
        out = list(purchase_times)
        i = bisect.bisect_left(out, ts_ms)
        if i < len(out) and out[i] == ts_ms:
            return out
        out.insert(i, int(ts_ms))
        return out[-self.max_purchases :]

    def prune_purchases(self, purchase_times: list[int], pending: list, watermark_ms: int) -> list[int]:
        """Drop the purchase times no pending or future snapshot can need.

        A pending snapshot at ``t`` needs purchases after ``t``; a future one is taken at
        an admitted event time ``>= watermark_ms`` and needs purchases after that.
        """
        floor = min(pending[0][0], watermark_ms) if pending else watermark_ms
        return purchase_times[bisect.bisect_right(purchase_times, floor) :]
