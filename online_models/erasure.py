"""Erasure on request (right to be forgotten): the request contract and what it does.

A request is one JSON object on the ``erasures`` topic,
``{"request_id": str, "user_id": str, "requested_at": epoch ms}``, keyed by the
user id exactly as the shop keys that user's events, so it reaches the worker
that holds the user. The worker answers it with :func:`erasure_records`:

* a tombstone for the user's portrait on the compacted ``portraits`` topic and
  one for their static attributes on the compacted ``profiles`` topic, both with
  the header ``erasure-request: <request_id>``;
* a marker on ``churn-alerts`` keyed by the user, after every earlier alert of
  theirs in that partition, so readers drop those alerts;
* ``{"kind": "forget", "user_id": ...}`` on ``model-training``, so the trainer
  drops the user from its bounded purchase sample;

then removes the user from its own structures (:func:`forget_local`) and deletes
their state (the table's changelog gets the tombstone). Erasing an absent user
writes the same records, so a repeated request is harmless and a crash between
the sends and the deletion only repeats the erasure.

>>> request = parse_erasure(b'{"request_id": "r1", "user_id": "u1", "requested_at": 1714536000000}')
>>> [(r.topic, r.key, r.value is None) for r in erasure_records(request, "u1")]
[('portraits', b'u1', True), ('profiles', b'u1', True), ('churn-alerts', b'u1', False), ('model-training', b'u1', False)]
>>> marker_request(orjson.loads(erasure_marker("r1", "u1")))
'r1'
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from online_models.events import MAX_ID_LENGTH, UserId, invalid_record
from online_models.schedule import CheckSchedule
from online_models.topic_names import CHURN_ALERTS, MODEL_TRAINING, PORTRAITS, PROFILES

#: Header naming the erasure request on the tombstones it causes.
ERASURE_HEADER = "erasure-request"


class ErasureRequest(BaseModel):
    """One request to erase a user, as the ``erasures`` topic carries it."""

    model_config = ConfigDict(extra="ignore", strict=True)

    request_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    user_id: UserId = Field(description="The id the user's events are keyed by")
    requested_at: int = Field(ge=0, description="When the request was made, epoch milliseconds")

    def to_bytes(self) -> bytes:
        """The record value."""
        return orjson.dumps(self.model_dump())


def parse_erasure(raw: bytes | str) -> ErasureRequest:
    """Validate one record of the ``erasures`` topic; :class:`~online_models.events.InvalidEvent` if it is not one."""
    try:
        return ErasureRequest.model_validate_json(raw)
    except ValidationError as error:
        raise invalid_record(error) from None


@dataclass(frozen=True)
class Outgoing:
    """One record an erasure sends: short topic name, key, value (None: tombstone), headers."""

    topic: str
    key: bytes
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def erasure_marker(request_id: str, user_id: str) -> bytes:
    """The ``churn-alerts`` record that tells readers to drop the user's earlier alerts."""
    return orjson.dumps({"erased": True, "request_id": request_id, "user_id": user_id})


def marker_request(record: Any) -> str | None:
    """The request id of an erasure marker, or None when ``record`` is not one."""
    if isinstance(record, dict) and record.get("erased") is True:
        request_id = record.get("request_id")
        return request_id if isinstance(request_id, str) and request_id else None
    return None


def forget_sample(user_id: str) -> dict[str, Any]:
    """The training record that makes the trainer forget a user."""
    return {"kind": "forget", "user_id": user_id}


def erasure_records(request: ErasureRequest, stored_id: str) -> list[Outgoing]:
    """What the worker sends for ``request``; ``stored_id`` is the id the user's state is kept under.

    The portrait and the alerts are keyed by ``stored_id`` (the pseudonym when
    pseudonymisation is on); the profile is keyed by the id the shop sends.
    """
    header = ((ERASURE_HEADER, request.request_id.encode()),)
    key = stored_id.encode()
    return [
        Outgoing(PORTRAITS, key, None, header),
        Outgoing(PROFILES, request.user_id.encode(), None, header),
        Outgoing(CHURN_ALERTS, key, erasure_marker(request.request_id, stored_id)),
        Outgoing(MODEL_TRAINING, key, orjson.dumps(forget_sample(stored_id))),
    ]


def forget_local(user_id: str, *, schedule: CheckSchedule | None, pending: MutableMapping[str, Any]) -> None:
    """Drop the user from the partition's check schedule and the set awaiting publication."""
    if schedule is not None:
        schedule.remove(user_id)
    pending.pop(user_id, None)
