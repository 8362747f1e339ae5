"""Admission of raw records into the portrait stream: contract, key, duplicates, lateness.

Pure: the caller passes the raw record, the user's state, the partition's
:class:`EventClock` and the wall clock. A record that fails raises
:class:`InvalidEvent` with the reason the dead-letter topic records.

>>> from online_models.clock import EventClock
>>> from online_models.portrait import PortraitConfig, PortraitState
>>> clock, state = EventClock(lateness_ms=1000), PortraitState("u1")
>>> raw = b'{"event_id":"a","user_id":"u1","type":"view","ts":1714536000000}'
>>> event = admit_event(b"u1", raw, now_ms=1714536000000)
>>> fold_event(state, event, clock=clock, partition=0, config=PortraitConfig())
True
>>> fold_event(state, event, clock=clock, partition=0, config=PortraitConfig())  # redelivered
False
>>> admit_event(b"u2", raw, now_ms=1714536000000)
Traceback (most recent call last):
...
online_models.events.InvalidEvent: key_mismatch: record key 'u2' differs from user_id 'u1'

With a pseudonym key, the admitted record carries the pseudonym instead of the id:

>>> admit_event(b"u1", raw, now_ms=1714536000000, pseudonym_key=b"secret").user_id
'8a629605d37d74d6c872140bed892da5'
"""

from __future__ import annotations

from online_models.clock import EventClock
from online_models.events import (
    INVALID_FIELD,
    KEY_MISMATCH,
    LATE_EVENT,
    MIN_TS_MS,
    Event,
    InvalidEvent,
    Profile,
    parse_event,
    parse_profile,
)
from online_models.erasure import ErasureRequest, parse_erasure
from online_models.portrait import PortraitConfig, PortraitState, update
from online_models.pseudonym import user_key
from online_models.sentiment import ReviewScore, ReviewScorer


def _check_key(key: bytes | None, user_id: str) -> None:
    if key is None:
        raise InvalidEvent(KEY_MISMATCH, f"record has no key; key it by user_id {user_id!r}")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent(INVALID_FIELD, "record key is not UTF-8") from None
    if text != user_id:
        raise InvalidEvent(KEY_MISMATCH, f"record key {text[:40]!r} differs from user_id {user_id!r}")


def admit_event(
    key: bytes | None,
    value: bytes,
    *,
    now_ms: int,
    max_future_ms: int = 86_400_000,
    earliest_ms: int = MIN_TS_MS,
    pseudonym_key: bytes | None = None,
) -> Event:
    """Validate a record of the events topic (contract and key); with ``pseudonym_key``, pseudonymise it.

    Event times from ``earliest_ms`` to ``now_ms + max_future_ms`` are accepted.
    """
    event = parse_event(value, now_ms=now_ms, max_future_ms=max_future_ms, earliest_ms=earliest_ms)
    _check_key(key, event.user_id)
    if pseudonym_key is not None:
        event = event.model_copy(update={"user_id": user_key(event.user_id, pseudonym_key)})
    return event


def review_sentiment(event: Event, scorer: ReviewScorer) -> ReviewScore | None:
    """A review's sentiment score, given once at admission (None for other events and unreadable reviews).

    Only ``review`` events pay for scoring; the score goes into the fold with the
    event (:func:`fold_event`), so the state and every replay hold the same score.
    """
    if event.type != "review":
        return None
    return scorer.score(event.text, event.rating)


def fold_event(
    state: PortraitState,
    event: Event,
    *,
    clock: EventClock,
    partition: int,
    config: PortraitConfig,
    wall_ms: int | None = None,
    sentiment: ReviewScore | None = None,
    offset: int | None = None,
) -> bool:
    """Fold a valid event into its user's state: False for a redelivery, InvalidEvent if too late.

    A redelivered ``event_id`` is recognised first, and so is a record read again
    after a crash by its ``offset`` in the events topic (the state keeps that of
    the last event folded in; None: not known), so a late duplicate is
    silently dropped rather than dead-lettered; a new event older than the
    watermark is refused; an admitted one moves the partition's stream time,
    but never past ``wall_ms`` (the wall clock; None: no bound, for replays of
    history): an event stamped ahead of the wall clock is folded in with its own
    time, and the partition's clock stops at the wall clock, so one bad clock
    upstream cannot make every other event late. ``sentiment`` is a review's score
    (:func:`review_sentiment`).
    """
    if state.has_seen(event.event_id, offset):
        # the original moved stream time to at least min(event.ts, its wall clock), so this changes
        # nothing in a straight run; a replay after a crash that finds the event already folded in
        # still moves the restored clock as the first pass did (no further than the wall clock)
        clock.observe(partition, event.ts, limit_ms=wall_ms)
        return False
    if not clock.admits(partition, event.ts):
        raise InvalidEvent(
            LATE_EVENT,
            f"ts {event.ts} is older than the watermark {clock.watermark(partition)} "
            f"(allowed lateness {clock.lateness_ms} ms)",
        )
    clock.observe(partition, event.ts, limit_ms=wall_ms)
    folded = update(state, event, watermark=clock.watermark(partition), config=config, sentiment=sentiment)
    if folded and offset is not None:
        state.event_offset = offset
    return folded


def admit_profile(key: bytes | None, value: bytes, *, pseudonym_key: bytes | None = None) -> Profile:
    """Validate a record of the profiles topic; with ``pseudonym_key``, pseudonymise it."""
    profile = parse_profile(value)
    _check_key(key, profile.user_id)
    if pseudonym_key is not None:
        profile = profile.model_copy(update={"user_id": user_key(profile.user_id, pseudonym_key)})
    return profile


def admit_erasure(key: bytes | None, value: bytes, *, pseudonym_key: bytes | None = None) -> tuple[ErasureRequest, str]:
    """Validate a record of the erasures topic: the request, and the id the user's state is kept under.

    The request keeps the id as sent (the profiles topic is keyed by it); the
    second value is its pseudonym when ``pseudonym_key`` is given.
    """
    request = parse_erasure(value)
    _check_key(key, request.user_id)
    return request, user_key(request.user_id, pseudonym_key)
