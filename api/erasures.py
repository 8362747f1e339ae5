"""Erasure requests as the API sees them: asked for, and which of their effects are applied.

``DELETE /v1/users/{id}`` records a request (key space ``e:``, by request id)
before it writes the request to the ``erasures`` topic. The worker answers with
a tombstone of the portrait carrying the header ``erasure-request: <id>`` and a
marker on ``churn-alerts``; when the store applies each of them, in the same
batch that removes the portrait (with its postings and aggregates) or the
alerts, the request's step is confirmed here. A request is ``completed`` once
both steps are: from then on no endpoint answers anything about the user.

A confirmation may arrive before the request is recorded (another API
instance took it, or this one was slow to write): records merge, so the order
does not matter. The ledger keeps no user id.

>>> merge({"request_id": "r1", "steps": {"portraits": 5}}, {"request_id": "r1", "requested_at": 3, "steps": {}})
{'request_id': 'r1', 'requested_at': 3, 'steps': {'portraits': 5}, 'completed_at': None}
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from api.store import Headers, LocalStore, SpaceHandler, Txn

ERASURES_SPACE = b"e:"
#: What the API must have applied before a request is completed.
STEPS = ("portraits", "alerts")


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Two views of one request as one: the earliest request time, every confirmed step."""
    old = old or {}
    times = [t for t in (old.get("requested_at"), new.get("requested_at")) if isinstance(t, int)]
    steps = {**(new.get("steps") or {}), **(old.get("steps") or {})}  # the first confirmation wins
    merged = {"request_id": new.get("request_id") or old.get("request_id"), "requested_at": min(times) if times else None}
    merged["steps"] = {step: steps[step] for step in STEPS if step in steps}
    done = all(step in merged["steps"] for step in STEPS)
    merged["completed_at"] = max(merged["steps"].values()) if done else None
    return merged


def status(record: dict[str, Any]) -> str:
    """``completed`` when every step is confirmed, else ``pending``."""
    return "completed" if record.get("completed_at") is not None else "pending"


class ErasureLedger(SpaceHandler):
    """Erasure requests by id, merged with the confirmations of their steps."""

    def __init__(self, space: bytes = ERASURES_SPACE):
        super().__init__(space)

    def open(self, store: LocalStore) -> None:
        """Nothing to load: requests are read from the store when asked for."""

    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        full = self.space + key
        if value is None:
            txn.delete(full)
            return
        old = txn.get(full)
        merged = merge(orjson.loads(old) if old is not None else None, orjson.loads(value))
        txn.put(full, orjson.dumps(merged))

    def prepare(self, txn: Txn) -> None:
        """The ledger keeps no count."""

    def confirm(self, txn: Txn, request_id: str, step: str) -> None:
        """Stage that ``step`` of request ``request_id`` has been applied (in the batch that applies it)."""
        now = int(time.time() * 1000)
        self.write(txn, request_id.encode(), orjson.dumps({"request_id": request_id, "steps": {step: now}}))

    @staticmethod
    def record(store: LocalStore, request_id: str, requested_at: int) -> None:
        """Record a new request as pending."""
        body = {"request_id": request_id, "requested_at": requested_at, "steps": {}}
        store.put_local(ERASURES_SPACE, request_id.encode(), orjson.dumps(body))

    @staticmethod
    def lookup(store: LocalStore, request_id: str) -> dict[str, Any] | None:
        """The request as this API knows it, or None."""
        return store.get_json(ERASURES_SPACE, request_id)
