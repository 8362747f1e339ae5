"""HTTP ingestion: validate a batch of events and write the good ones to the ``events`` topic.

Each event goes through :func:`online_models.events.parse_event`, the rule the
stream applies (with the wall clock as "now", and the same bounds on event time:
``PORTRAITS_MAX_FUTURE_SECONDS`` ahead, ``PORTRAITS_EARLIEST_EVENT_TIME`` back, see
:func:`admission_bounds`), so what the API accepts the worker admits. Accepted
events are produced keyed by user id with ``acks=all`` and the producer is
flushed, and every send confirmed, before the API answers: an accepted event is
in the log even if the API dies right after. A retry after an error is safe: the
worker counts each ``event_id`` once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
from fastapi import HTTPException, Request

from api.models import EventError
from online_models import kafka_security
from online_models.events import MIN_TS_MS, InvalidEvent, parse_event
from online_models.settings import Settings, instant_ms
from online_models.topic_names import EVENTS


class EventLogUnavailable(Exception):
    """The topic did not take (all of) the batch."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = HTTPException(413, f"the body exceeds {limit} bytes; send fewer events per request")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_batch(body: bytes, max_events: int) -> list[Any]:
    """The events of a body: a JSON array, or an object with an ``events`` array."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise HTTPException(400, f"the body is not JSON: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("events"), list):
        data = data["events"]
    if not isinstance(data, list):
        raise HTTPException(422, 'expected a JSON array of events, or {"events": [...]}')
    if len(data) > max_events:
        raise HTTPException(422, f"at most {max_events} events per request; this one has {len(data)}")
    return data


def admission_bounds(settings: Settings) -> dict[str, int]:
    """The event-time bounds the worker admits with (:meth:`online_models.settings.Settings.engine_config`),
    as :func:`validate`'s keyword arguments."""
    return {
        "max_future_ms": int(settings.max_future_seconds * 1000),
        "earliest_ms": instant_ms(settings.earliest_event_time),
    }


def validate(
    items: list[Any], *, now_ms: int, max_future_ms: int, earliest_ms: int = MIN_TS_MS
) -> tuple[list[tuple[bytes, bytes]], list[EventError]]:
    """(key, value) records of the valid events, and an error for each invalid one
    (event times from ``earliest_ms`` to ``now_ms + max_future_ms`` are valid)."""
    records: list[tuple[bytes, bytes]] = []
    errors: list[EventError] = []
    for index, item in enumerate(items):
        raw = orjson.dumps(item)
        try:
            event = parse_event(raw, now_ms=now_ms, max_future_ms=max_future_ms, earliest_ms=earliest_ms)
        except InvalidEvent as error:
            errors.append(EventError(index=index, reason=error.reason, detail=error.detail))
        else:
            records.append((event.user_id.encode(), raw))
    return records, errors


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class EventSink:
    """Writes records to the events topic (or another) and waits until the broker has acknowledged each one.

    ``producer`` is anything with kafka-python's ``send(topic, key=, value=)`` (returning a
    future with ``get(timeout)``) and ``flush(timeout)``; by default a kafka-python producer
    with ``acks=all`` is made on first use.
    """

    def __init__(self, settings: Settings, producer=None, *, timeout_s: float = 30.0):
        self.settings = settings
        self.topic = settings.topic(EVENTS)
        self.timeout_s = timeout_s
        self._producer = producer
        self._owned = producer is None
        self._lock = threading.Lock()

    def _get_producer(self):
        with self._lock:
            if self._producer is None:
                from kafka import KafkaProducer
                from kafka.errors import KafkaError

                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.settings.bootstrap_servers,
                        acks="all",
                        linger_ms=5,
                        retries=5,
                        max_block_ms=int(self.timeout_s * 1000),
                        request_timeout_ms=int(self.timeout_s * 1000),
                        client_id="portraits-api-ingest",
                        **kafka_security.kafka_python_options(self.settings),
                    )
                except KafkaError as error:
                    raise EventLogUnavailable(f"cannot reach Kafka: {type(error).__name__}") from None
            return self._producer

    def write(self, records: list[tuple[bytes, bytes]], *, topic: str | None = None) -> None:
        """Send and confirm every record (to ``topic``, default the events topic);
        :class:`EventLogUnavailable` if any is not acknowledged."""
        if not records:
            return
        topic = topic or self.topic
        producer = self._get_producer()
        failed = 0
        try:
            futures = [producer.send(topic, key=key, value=value) for key, value in records]
            producer.flush(timeout=self.timeout_s)
        except Exception as error:  # kafka-python raises KafkaTimeoutError and friends
            raise EventLogUnavailable(f"the {topic} topic did not take the batch: {type(error).__name__}") from None
        for future in futures:
            try:
                future.get(timeout=self.timeout_s)
            except Exception:
                failed += 1
        if failed:
            noun = "events" if topic == self.topic else "records"
            raise EventLogUnavailable(f"{failed} of {len(records)} {noun} were not acknowledged by the {topic} topic")

    def close(self) -> None:
        with self._lock:
            if self._producer is not None and self._owned:
                self._producer.close(timeout=5)
            self._producer = None
