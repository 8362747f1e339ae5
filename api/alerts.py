"""Churn alerts: stored once per ``alert_id``, listed newest first, pushed live to subscribers.

Records of the ``churn-alerts`` topic (key: user id) are stored under
``a:<alert_id>``, so a redelivered alert is stored (and pushed) once. Two
posting key spaces order them by event time: ``i:alert_ts\\x1f<ts_ms>\\x1f<alert_id>``
and ``i:alert_user\\x1f<user>\\x1f<ts_ms>\\x1f<alert_id>``.

Live subscribers (server-sent events) each own a bounded asyncio queue; the
follower thread hands every newly stored alert to their event loops with
``loop.call_soon_threadsafe`` once the write is durable. A subscriber that falls
behind loses its oldest queued alerts and is told how many (``dropped``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from api.indexes import encode_label
from api.store import SEP, LocalStore, SpaceHandler, Txn, prefix_end

log = logging.getLogger(__name__)

ALERTS_SPACE = b"a:"
_BY_TIME = b"i:alert_ts" + SEP
_BY_USER = b"i:alert_user" + SEP


def _ts(ts_ms: int) -> bytes:
    return b"%013d" % max(0, min(ts_ms, 9_999_999_999_999))


def matches(alert: dict, *, user_id: str | None = None, layer: str | None = None, min_risk: float | None = None) -> bool:
    """Whether an alert passes the listing filters."""
    if user_id is not None and alert.get("user_id") != user_id:
        return False
    if layer is not None and alert.get("layer") != layer:
        return False
    if min_risk is not None:
        risk = alert.get("risk")
        if isinstance(risk, bool) or not isinstance(risk, (int, float)) or risk < min_risk:
            return False
    return True


@dataclass(eq=False)
class Subscription:
    """One live listener: a bounded queue on its own event loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    dropped: int = 0
    filters: dict[str, Any] = field(default_factory=dict)

    def offer(self, alert: dict) -> None:
        """Queue an alert (runs on the subscriber's loop); the oldest goes when the queue is full."""
        if not matches(alert, **self.filters):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(alert)


class AlertHub:
    """Hands newly stored alerts from the follower thread to asyncio subscribers."""

    def __init__(self, queue_size: int = 256):
        self.queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, **filters: Any) -> Subscription:
        """A new subscription on the running event loop."""
        subscription = Subscription(asyncio.get_running_loop(), asyncio.Queue(self.queue_size), filters=filters)
        with self._lock:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def publish(self, alerts: list[dict]) -> None:
        """Offer alerts to every subscriber (thread-safe, never blocks)."""
        if not alerts:
            return
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            for alert in alerts:
                try:
                    subscription.loop.call_soon_threadsafe(subscription.offer, alert)
                except RuntimeError:  # its loop is closed
                    self.unsubscribe(subscription)
                    break


class AlertSpace(SpaceHandler):
    """Stores each alert once under its ``alert_id``, with its time postings."""

    def __init__(self, hub: AlertHub, space: bytes = ALERTS_SPACE):
        super().__init__(space)
        self.hub = hub
        self._new: list[dict] = []

    def write(self, txn: Txn, key: bytes, value: bytes | None) -> None:
        if value is None:
            return  # a tombstone names a user, not an alert; erasure removes a user's alerts
        try:
            alert = orjson.loads(value)
            alert_id, user_id, ts_ms = str(alert["alert_id"]), str(alert["user_id"]), int(alert["ts_ms"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("skipped a churn alert without alert_id, user_id and ts_ms")
            return
        if not alert_id:
            return
        encoded_id = encode_label(alert_id)
        full = self.space + encoded_id
        if txn.get(full) is not None:
            return  # redelivered
        txn.put(full, value)
        txn.put(_BY_TIME + _ts(ts_ms) + SEP + encoded_id, b"")
        txn.put(_BY_USER + encode_label(user_id) + SEP + _ts(ts_ms) + SEP + encoded_id, b"")
        self._count_delta += 1
        self._new.append(alert)

    def committed(self) -> None:
        super().committed()
        new, self._new = self._new, []
        self.hub.publish(new)

    def rolled_back(self) -> None:
        super().rolled_back()
        self._new = []


def recent_alerts(
    store: LocalStore,
    *,
    user_id: str | None = None,
    layer: str | None = None,
    min_risk: float | None = None,
    since_ms: int | None = None,
    limit: int = 100,
) -> list[dict]:
    """Stored alerts, newest (event time) first, with ``ts_ms >= since_ms``."""
    prefix = _BY_USER + encode_label(user_id) + SEP if user_id is not None else _BY_TIME
    lower = prefix + (_ts(since_ms) if since_ms is not None else b"")
    out: list[dict] = []
    for key in store.keys_between(lower, prefix_end(prefix), backwards=True):
        raw = store.get(ALERTS_SPACE, key.rsplit(SEP, 1)[1])
        if raw is None:
            continue
        alert = orjson.loads(raw)
        if matches(alert, user_id=user_id, layer=layer, min_risk=min_risk):
            out.append(alert)
            if len(out) >= limit:
                break
    return out


def iter_alerts(store: LocalStore) -> Iterator[dict]:
    """Every stored alert, oldest first."""
    for key in store.keys_between(_BY_TIME, prefix_end(_BY_TIME)):
        raw = store.get(ALERTS_SPACE, key.rsplit(SEP, 1)[1])
        if raw is not None:
            yield orjson.loads(raw)
