"""Retention in event time: a user idle past the retention is forgotten.

Idle means no event and no profile change; the clock is the partition's
watermark, so a replay expires the same users at the same event time.

>>> from online_models.portrait import PortraitState
>>> state = PortraitState("u1", last_seen=1_000, profile_ts=5_000)
>>> expires_at(state, retention_ms=10_000)
15000
>>> is_expired(state, watermark=15_000, retention_ms=10_000), is_expired(state, watermark=14_999, retention_ms=10_000)
(True, False)
>>> due_at(state, retention_ms=10_000), due_at(PortraitState("u2", next_check=7), retention_ms=0)
(15000, 7)
>>> due_at(PortraitState("u3", next_check=70, baskets=[["d:0", 1, 2, 50, ["x"], []]]), retention_ms=0)  # a basket closes first
50
"""

from __future__ import annotations

from online_models.baskets import next_close
from online_models.portrait import PortraitState


def last_activity(state: PortraitState) -> int | None:
    """Event time of the user's last event or profile change."""
    times = [t for t in (state.last_seen, state.profile_ts) if t is not None]
    return max(times) if times else None


def expires_at(state: PortraitState, retention_ms: int) -> int | None:
    """When the user expires (None: retention off, or nothing to expire by)."""
    last = last_activity(state)
    if retention_ms <= 0 or last is None:
        return None
    return last + retention_ms


def is_expired(state: PortraitState, *, watermark: int, retention_ms: int) -> bool:
    """Whether the watermark has passed the user's expiry."""
    expiry = expires_at(state, retention_ms)
    return expiry is not None and expiry <= watermark


def due_at(state: PortraitState, retention_ms: int) -> int | None:
    """The next event time the worker must look at the user: its check, the closing of an open basket, or its expiry."""
    closing = next_close(state.baskets) if state.baskets else None
    times = [t for t in (state.next_check, closing, expires_at(state, retention_ms)) if t is not None]
    return min(times) if times else None
