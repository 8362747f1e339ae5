"""Churn alerts: stored once per ``alert_id``, listed newest first, pushed live to subscribers.

Records of the ``churn-alerts`` topic (key: user id) are stored under
``a:<alert_id>``, so a redelivered alert is stored (and pushed) once. Two
posting key spaces order them by event time: ``i:alert_ts\\x1f<ts_ms>\\x1f<alert_id>``
and ``i:alert_user\\x1f<user>\\x1f<ts_ms>\\x1f<alert_id>``.

Live subscribers (server-sent events) each own a bounded asyncio queue; the
follower thread hands every newly stored alert to their event loops with
``loop.call_soon_threadsafe`` once the write is durable. A subscriber that falls
behind loses its oldest queued alerts and is told how many (``dropped``). A token may
hold ``per_owner`` subscriptions at once and the process ``total``
(:class:`StreamLimit` beyond); an :class:`AlertStream` response ends its subscription
however it ends, also when the client left before anything was sent.

Alerts are kept for ``retention_ms`` of event time: each batch that stores new alerts
removes (up to :data:`PRUNE_BATCH` of) those older than that before the newest of them,
with their postings, so the store does not grow for ever.

An erasure marker on the topic (:func:`online_models.erasure.erasure_marker`,
keyed by the user like their alerts, so after all of them) removes every stored
alert of the user with its postings, takes their queued alerts out of the
subscribers' queues, and confirms that step of the erasure request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send

from api.erasures import ErasureLedger
from api.indexes import encode_label
from api.store import SEP, Headers, LocalStore, SpaceHandler, Txn, prefix_end
from online_models.erasure import marker_request

log = logging.getLogger(__name__)

ALERTS_SPACE = b"a:"
_BY_TIME = b"i:alert_ts" + SEP
_BY_USER = b"i:alert_user" + SEP
#: Most old alerts one batch removes (the rest go with the next batches).
PRUNE_BATCH = 1000


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
    owner: str = ""

    def offer(self, alert: dict) -> None:
        """Queue an alert (runs on the subscriber's loop); the oldest goes when the queue is full."""
        if not matches(alert, **self.filters):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(alert)

    def forget(self, user_id: str) -> None:
        """Take the user's alerts out of the queue (runs on the subscriber's loop)."""
        kept = []
        while not self.queue.empty():
            alert = self.queue.get_nowait()
            if alert.get("user_id") != user_id:
                kept.append(alert)
        for alert in kept:
            self.queue.put_nowait(alert)


class StreamLimit(Exception):
    """No subscription: its owner, or the process, holds as many as allowed; ``status`` 429 or 503."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class AlertHub:
    """Hands newly stored alerts from the follower thread to asyncio subscribers, at most ``per_owner``
    subscriptions per owner (a token) and ``total`` in all."""

    def __init__(self, queue_size: int = 256, *, per_owner: int = 4, total: int = 256):
        self.queue_size = queue_size
        self.per_owner, self.total = per_owner, total
        self._subscribers: set[Subscription] = set()
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, owner: str = "", **filters: Any) -> Subscription:
        """A new subscription on the running event loop; :class:`StreamLimit` when a cap is reached."""
        subscription = Subscription(asyncio.get_running_loop(), asyncio.Queue(self.queue_size), filters=filters, owner=owner)
        with self._lock:
            if len(self._subscribers) >= self.total:
                raise StreamLimit(503, f"this API serves {self.total} live alert streams at once, all in use; retry later")
            if sum(1 for s in self._subscribers if s.owner == owner) >= self.per_owner:
                raise StreamLimit(429, f"this token has {self.per_owner} live alert streams open already; close one first")
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def publish(self, alerts: list[dict]) -> None:
        """Offer alerts to every subscriber (thread-safe, never blocks)."""
        self._call_each(lambda subscription: [(subscription.offer, alert) for alert in alerts])

    def forget(self, users: list[str]) -> None:
        """Remove erased users' alerts still queued for any subscriber (thread-safe, never blocks)."""
        self._call_each(lambda subscription: [(subscription.forget, user) for user in users])

    def _call_each(self, calls) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            for method, argument in calls(subscription):
                try:
                    subscription.loop.call_soon_threadsafe(method, argument)
                except RuntimeError:  # its loop is closed
                    self.unsubscribe(subscription)
                    break


async def alert_events(subscription: Subscription) -> AsyncIterator[dict[str, str]]:
    """The server-sent events of a subscription: ``alert``, preceded by ``dropped`` when it fell behind."""
    while True:
        alert = await subscription.queue.get()
        if subscription.dropped:
            yield {"event": "dropped", "data": orjson.dumps({"dropped": subscription.dropped}).decode()}
            subscription.dropped = 0
        yield {"event": "alert", "id": str(alert.get("alert_id", "")), "data": orjson.dumps(alert).decode()}


class AlertStream(EventSourceResponse):
    """The live stream of one subscription, which it ends however the response ends: a client gone before
    the first event (its generator never started), a HEAD request, a server shutting down."""

    def __init__(self, hub: AlertHub, subscription: Subscription, *, ping: int = 15):
        super().__init__(alert_events(subscription), ping=ping)
        self.hub, self.subscription = hub, subscription

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.hub.unsubscribe(self.subscription)


class AlertSpace(SpaceHandler):
    """Stores each alert once under its ``alert_id``, with its time postings."""

    def __init__(
        self,
        hub: AlertHub,
        space: bytes = ALERTS_SPACE,
        erasures: ErasureLedger | None = None,
        retention_ms: int = 90 * 86_400_000,
    ):
        super().__init__(space)
        self.hub = hub
        self.erasures = erasures
        self.retention_ms = retention_ms
        self._new: list[dict] = []
        self._erased: list[str] = []

    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        if value is None:
            return  # a tombstone names a user, not an alert; an erasure marker removes a user's alerts
        try:
            alert = orjson.loads(value)
        except orjson.JSONDecodeError:
            log.warning("skipped a churn alert that is not JSON")
            return
        request_id = marker_request(alert)
        if request_id is not None:
            self._erase(txn, key.decode("utf-8", errors="replace"), request_id)
            return
        try:
            alert_id, user_id, ts_ms = str(alert["alert_id"]), str(alert["user_id"]), int(alert["ts_ms"])
        except (KeyError, TypeError, ValueError):
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

    def _erase(self, txn: Txn, user_id: str, request_id: str) -> None:
        """Stage the removal of every alert of ``user_id`` stored so far, and confirm the step."""
        by_user = _BY_USER + encode_label(user_id) + SEP
        for posting in txn.keys_with_prefix(by_user):
            ts, encoded_id = posting[len(by_user) :].split(SEP, 1)
            if txn.get(self.space + encoded_id) is not None:
                txn.delete(self.space + encoded_id)
                self._count_delta -= 1
            txn.delete(_BY_TIME + ts + SEP + encoded_id)
            txn.delete(posting)
        self._new = [alert for alert in self._new if alert.get("user_id") != user_id]
        self._erased.append(user_id)
        if self.erasures is not None:
            self.erasures.confirm(txn, request_id, "alerts")

    def prepare(self, txn: Txn) -> None:
        if self._new:
            self._prune(txn, max(int(alert["ts_ms"]) for alert in self._new) - self.retention_ms)
        super().prepare(txn)

    def _prune(self, txn: Txn, cutoff_ms: int) -> None:
        """Stage the removal of stored alerts older than ``cutoff_ms`` (event time), with their postings."""
        for posting in txn.stored_keys(_BY_TIME, _BY_TIME + _ts(cutoff_ms), PRUNE_BATCH):
            ts, encoded_id = posting[len(_BY_TIME) :].split(SEP, 1)
            raw = txn.get(self.space + encoded_id)
            if raw is not None:
                user_id = str(orjson.loads(raw).get("user_id"))
                txn.delete(_BY_USER + encode_label(user_id) + SEP + ts + SEP + encoded_id)
                txn.delete(self.space + encoded_id)
                self._count_delta -= 1
            txn.delete(posting)

    def committed(self) -> None:
        super().committed()
        new, self._new = self._new, []
        erased, self._erased = self._erased, []
        if erased:
            self.hub.forget(erased)
        if new:
            self.hub.publish(new)

    def rolled_back(self) -> None:
        super().rolled_back()
        self._new, self._erased = [], []


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
