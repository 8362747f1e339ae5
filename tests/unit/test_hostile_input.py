"""Hostile input against the pure admission core: only ever an Event or an InvalidEvent.

Hypothesis generates hostile records (wrong types, huge strings, deep nesting, invalid
UTF-8, NaN/Infinity literals, 1970 and 2200 timestamps, unknown and duplicate fields,
empty bytes, bad keys) and mixes them with good events. Whatever the bytes,
:func:`admit_event` must return an :class:`Event` or raise :class:`InvalidEvent` with a
known reason, and every good event mixed in must be folded and counted exactly once.
"""

from __future__ import annotations

import json
import random
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_models.admission import admit_event, fold_event
from online_models.clock import EventClock
from online_models.events import INVALID_FIELD, EVENT_TYPES, MAX_TS_MS, MIN_TS_MS, Event, InvalidEvent
from online_models.portrait import PortraitConfig, PortraitState, render
from tests.hostile import HOSTILE_KINDS, KNOWN_REASONS, TS_1970, TS_2200, good_event, hostile_record

NOW = int(time.time() * 1000)
CONFIG = PortraitConfig()
GOOD_USERS = ["g0", "g1", "g2", "g3"]
HOSTILE_USERS = ["h0", "h1", "u\u00e9", "\u4e2d"]
#: far more than any timestamp spread here: arrival order never makes a good event late
LATENESS_MS = 100 * 365 * 86_400_000

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def admit(key: bytes | None, value: bytes) -> Event | InvalidEvent:
    """admit_event's outcome; any exception other than InvalidEvent propagates (a bug)."""
    try:
        return admit_event(key, value, now_ms=NOW)
    except InvalidEvent as error:
        return error


# ---------------------------------------------------------------- strategies

keys = st.one_of(
    st.none(),
    st.sampled_from([u.encode() for u in GOOD_USERS + HOSTILE_USERS]),
    st.binary(max_size=16),
    st.binary(max_size=8).map(lambda b: b + b"\xff"),  # never UTF-8
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from([0, -1, TS_1970, MIN_TS_MS - 1, NOW, NOW + 2 * 86_400_000, TS_2200, MAX_TS_MS + 1, 10**30]),
    st.sampled_from(["1970-01-01T00:00:00Z", "2200-01-01T00:00:00+00:00", "2024-05-01T10:00:00", "", "now"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

#: per field: a plausible value or anything at all (often of the wrong type)
FIELD_VALUES = {
    "event_id": st.text(min_size=1, max_size=10) | json_values,
    "user_id": st.sampled_from(HOSTILE_USERS) | json_values,
    "type": st.sampled_from(EVENT_TYPES) | json_values,
    "ts": st.integers(min_value=NOW - 86_400_000, max_value=NOW) | json_values,
    "amount": st.floats(min_value=0, max_value=1e4) | json_values,
    "price": st.floats(min_value=0, max_value=1e4) | json_values,
    "quantity": st.integers(min_value=0, max_value=100) | json_values,
    "rating": st.floats(min_value=0, max_value=5) | json_values,
    "promo": st.booleans() | json_values,
    "device": st.sampled_from(["ios", "pc"]) | json_values,
    "text": st.text(max_size=20) | json_values,
}


@st.composite
def json_events(draw) -> tuple[bytes | None, bytes]:
    """A JSON object with any subset of the fields, each plausible or of the wrong type, plus unknown fields."""
    event = draw(st.fixed_dictionaries({}, optional=FIELD_VALUES))
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in FIELD_VALUES), json_values, max_size=3))
    raw = json.dumps({**event, **extra}, allow_nan=True).encode()  # NaN/Infinity written as JS literals
    if draw(st.booleans()) and event:
        # a duplicate key: the same field again with another value
        name = draw(st.sampled_from(sorted(event)))
        raw = raw[:-1] + b", " + json.dumps(name).encode() + b": " + json.dumps(draw(json_values), allow_nan=True).encode() + b"}"
    key = draw(keys | st.just(str(event.get("user_id")).encode()))
    return key, raw


@st.composite
def mangled_bytes(draw) -> tuple[bytes | None, bytes]:
    """A valid event's bytes, cut, spliced with bytes, or buried in deep nesting."""
    rng = draw(st.randoms(use_true_random=False))
    event = good_event(rng, draw(st.sampled_from(HOSTILE_USERS)), "m1", NOW)
    raw = orjson.dumps(event)
    how = draw(st.sampled_from(["cut", "splice", "nest", "garbage"]))
    if how == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif how == "splice":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=6)) + raw[at:]
    elif how == "nest":
        depth = draw(st.sampled_from([1, 199, 200, 201, 1000, 10_000]))
        raw = b"[" * depth + raw + b"]" * depth
    else:
        raw = draw(st.binary(max_size=300))
    return draw(keys), raw


random_hostile = st.builds(
    lambda rng, kind: hostile_record(rng, now_ms=NOW, user_ids=HOSTILE_USERS, kind=kind),
    st.randoms(use_true_random=False),
    st.sampled_from(HOSTILE_KINDS),
)

any_record = st.one_of(
    random_hostile.map(lambda r: (r[0], r[1])),
    json_events(),
    mangled_bytes(),
    st.tuples(keys, st.binary(max_size=200)),
)


# ---------------------------------------------------------------- properties


@FAST
@given(any_record)
def test_admission_only_ever_returns_an_event_or_raises_invalid_event(record):
    key, value = record
    outcome = admit(key, value)
    if isinstance(outcome, InvalidEvent):
        assert outcome.reason in KNOWN_REASONS, outcome
        assert isinstance(outcome.detail, str) and len(outcome.detail) <= 1000
    else:
        assert isinstance(outcome, Event)
        assert MIN_TS_MS <= outcome.ts <= NOW + 86_400_000
        assert outcome.type in EVENT_TYPES
        assert key is not None and key.decode() == outcome.user_id


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_every_hostile_kind_is_dead_lettered_with_a_known_reason(kind):
    rng = random.Random(kind)
    for _ in range(25):
        key, value, _ = hostile_record(rng, now_ms=NOW, user_ids=HOSTILE_USERS, kind=kind)
        outcome = admit(key, value)
        assert isinstance(outcome, InvalidEvent), (kind, key, value[:200])
        assert outcome.reason in KNOWN_REASONS


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"[" * 10_000 + b"]" * 10_000, "malformed_json"),  # the parser's depth limit, no RecursionError
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "malformed_json"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":%d,"x":%s}' % (NOW, b"[" * 10_000 + b"]" * 10_000), "malformed_json"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":%d,"text":"%s"}' % (NOW, b"a" * 1_000_000), "invalid_field"),
        (b'{"event_id":"%s","user_id":"u","type":"view","ts":%d}' % (b"\xe4\xb8\xad" * 400_000, NOW), "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":NaN}', "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"pay","ts":%d,"amount":Infinity}' % NOW, "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"pay","ts":%d,"amount":1e400}' % NOW, "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":0}', "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"1970-01-01T00:00:00Z"}', "invalid_field"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":7258118400000}', "future_timestamp"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"2200-01-01T00:00:00Z"}', "future_timestamp"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1%s}' % (b"0" * 400), "future_timestamp"),
        (b'{"event_id":"e","user_id":"u\xff","type":"view","ts":%d}' % NOW, "malformed_json"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":%d,"text":"\\ud800"}' % NOW, "malformed_json"),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":%d,"ts":"x"}' % NOW, "invalid_field"),
        (b"", "malformed_json"),
        (b"null", "not_an_object"),
    ],
    ids=lambda v: v[:30] if isinstance(v, bytes) else v,
)
def test_named_hostile_records(raw, reason):
    outcome = admit(b"u", raw)
    assert isinstance(outcome, InvalidEvent) and outcome.reason == reason, outcome


def test_bad_keys():
    raw = orjson.dumps({"event_id": "e", "user_id": "u", "type": "view", "ts": NOW})
    assert admit(None, raw).reason == "key_mismatch"
    assert admit(b"", raw).reason == "key_mismatch"
    assert admit(b"v", raw).reason == "key_mismatch"
    assert admit(b"u\xff", raw).reason == "invalid_field"
    assert isinstance(admit(b"u", raw), Event)


@st.composite
def mixed_streams(draw):
    """Good events (with redeliveries and harmless unknown fields) interleaved with hostile records."""
    rng = draw(st.randoms(use_true_random=False))
    n_good = draw(st.integers(1, 60))
    good = []
    for i in range(n_good):
        event = good_event(rng, rng.choice(GOOD_USERS), f"g-{i}", NOW - rng.randrange(30 * 86_400_000))
        if rng.random() < 0.2:
            event[f"unknown_{i}"] = rng.choice([None, [1, {"a": []}], "x" * 1000, 1e308])
        good.append(event)
    redelivered = [dict(rng.choice(good)) for _ in range(draw(st.integers(0, 10)))]
    hostile = draw(st.lists(random_hostile, max_size=40))
    records = [("good", e["user_id"].encode(), orjson.dumps(e)) for e in good + redelivered]
    records += [("hostile", key, value) for key, value, _ in hostile]
    rng.shuffle(records)
    return good, records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mixed_streams())
def test_good_events_mixed_with_hostile_ones_are_all_counted(stream):
    good, records = stream
    clock = EventClock(LATENESS_MS)
    states: dict[str, PortraitState] = {}
    dead = []
    for origin, key, value in records:
        try:
            event = admit_event(key, value, now_ms=NOW)
            state = states.setdefault(event.user_id, PortraitState(event.user_id))
            fold_event(state, event, clock=clock, partition=0, config=CONFIG)
        except InvalidEvent as error:
            assert origin == "hostile", (error, value[:200])
            assert error.reason in KNOWN_REASONS
            dead.append(value)
    assert len(dead) == sum(1 for origin, _, _ in records if origin == "hostile")
    expected = {u: len({e["event_id"] for e in good if e["user_id"] == u}) for u in {e["user_id"] for e in good}}
    assert {u: s.events for u, s in states.items()} == expected


money = st.one_of(st.floats(min_value=0, max_value=1e12), st.integers(0, 10**12), st.sampled_from([0, 5e-324, 0.005, 999999999999.99, 1e12]))
edge_events = st.fixed_dictionaries(
    {
        "event_id": st.text(min_size=1, max_size=128),
        "user_id": st.text(min_size=1, max_size=128),
        "type": st.sampled_from(EVENT_TYPES),
        "ts": st.integers(MIN_TS_MS, NOW + 86_400_000) | st.sampled_from([MIN_TS_MS, NOW + 86_400_000]) | st.floats(MIN_TS_MS, NOW),
    },
    optional={
        "price": money,
        "amount": money,
        "quantity": st.integers(0, 1_000_000),
        "rating": st.floats(0, 5),
        "promo": st.booleans(),
        "device": st.text(max_size=32),
        "category": st.text(max_size=128),
        "text": st.text(max_size=200),
    },
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edge_events, min_size=1, max_size=6), st.sampled_from(["UTC", "Asia/Shanghai", "America/St_Johns", "Pacific/Kiritimati"]))
def test_admitted_edge_events_fold_render_and_round_trip(events, zone):
    """Events at the contract's edges that pass admission fold, render and serialise without error."""
    config = PortraitConfig(timezone=zone)
    clock = EventClock(LATENESS_MS)
    states: dict[str, PortraitState] = {}
    for raw_event in events:
        outcome = admit(raw_event["user_id"].encode(), orjson.dumps(raw_event))
        if isinstance(outcome, InvalidEvent):
            assert outcome.reason in KNOWN_REASONS
            continue
        state = states.setdefault(outcome.user_id, PortraitState(outcome.user_id))
        try:
            fold_event(state, outcome, clock=clock, partition=0, config=config)
        except InvalidEvent as error:
            assert error.reason in KNOWN_REASONS
    for state in states.values():
        orjson.dumps(render(state, as_of=clock.as_of(0), config=config))
        assert render(PortraitState.from_bytes(state.to_bytes()), as_of=None, config=config) == render(state, as_of=None, config=config)


def test_implausible_price_times_quantity_is_rejected_at_admission():
    raw = b'{"event_id":"e","user_id":"u","type":"pay","ts":%d,"price":100000000000.0,"quantity":100}' % NOW
    with pytest.raises(InvalidEvent) as caught:
        admit_event(b"u", raw, now_ms=NOW)
    assert caught.value.reason == INVALID_FIELD
