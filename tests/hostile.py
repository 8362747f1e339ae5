"""Hostile records for the events topic: (key, raw value) pairs that try to break the worker.

Shared by the property-based unit test and the real-broker integration test. Plain
``random.Random`` driven, so a seed reproduces a batch exactly; the unit test drives it
from hypothesis (``st.randoms``) next to its own native strategies.
"""

from __future__ import annotations

import json
import random

import orjson

from online_models import events as contract

#: Every reason the worker may put in the ``reason`` header of a dead letter.
KNOWN_REASONS = frozenset(
    {
        contract.MALFORMED_JSON,
        contract.NOT_AN_OBJECT,
        contract.MISSING_FIELD,
        contract.INVALID_FIELD,
        contract.UNKNOWN_TYPE,
        contract.NEGATIVE_AMOUNT,
        contract.MISSING_AMOUNT,
        contract.FUTURE_TIMESTAMP,
        contract.LATE_EVENT,
        contract.KEY_MISMATCH,
    }
)

DAY_MS = 86_400_000
TS_1970 = 0  # 1970-01-01
TS_2200 = 7_258_118_400_000  # 2200-01-01

STRING_FIELDS = ("event_id", "user_id", "item_id", "category", "order_id", "session_id", "device", "channel", "text")
#: JSON values of the wrong type for each field (strict mode: no coercion).
WRONG_TYPES: dict[str, tuple] = {
    **{f: (1, 2.5, True, [], {}, ["a"], {"a": 1}) for f in STRING_FIELDS},
    "type": (1, True, None, [], {}, "VIEW", "teleport", ""),
    "ts": (None, True, False, [], {}, {"seconds": 1}, "yesterday", "2024-05-01T10:00:00", "", [1714536000000]),
    "price": ("abc", "12.5", True, [], {}, [1.0]),
    "amount": ("abc", "12.5", True, [], {}, [1.0]),
    "quantity": (1.5, "3", True, [], {}, -1, 10**7),
    "rating": ("5", True, [], {}, 5.5, -0.1),
    "promo": (1, 0, "yes", [], {}, "true"),
}
#: fields whose absence breaks the contract
REQUIRED = ("event_id", "user_id", "type", "ts")
NUMBER_LITERALS = (b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"inf", b"1e400", b"-1e400", b"nan")

HOSTILE_KINDS = (
    "wrong_type",
    "missing_field",
    "huge_string",
    "huge_unknown_field",
    "deep_nesting",
    "deep_nesting_root",
    "invalid_utf8",
    "invalid_utf8_escape",
    "nan_infinity",
    "ts_1970",
    "ts_2200",
    "ts_iso_1970",
    "ts_iso_2200",
    "ts_no_offset",
    "unknown_fields_bad",
    "duplicate_keys",
    "empty",
    "whitespace",
    "not_an_object",
    "truncated",
    "trailing_garbage",
    "random_bytes",
    "key_mismatch",
    "negative_amount",
    "missing_amount",
    "too_long_id",
)


def good_event(rng: random.Random, user_id: str, event_id: str, ts: int) -> dict:
    """A valid event (amount set for money events)."""
    kind = rng.choice(contract.EVENT_TYPES)
    event = {"event_id": event_id, "user_id": user_id, "type": kind, "ts": ts}
    if rng.random() < 0.7:
        event["category"] = rng.choice(("snacks", "beauty", "books", "toys"))
    if kind in ("pay", "refund"):
        event["amount"] = round(rng.uniform(1, 500), 2)
    return event


def _dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def _with_raw_field(event: dict, name: str, raw_value: bytes) -> bytes:
    """``event`` serialised with ``name`` set to a raw JSON token (NaN, deep nesting, ...)."""
    body = orjson.dumps({k: v for k, v in event.items() if k != name})
    return body[:-1] + b',"' + name.encode() + b'":' + raw_value + b"}"


def hostile_record(
    rng: random.Random, *, now_ms: int, user_ids: list[str], kind: str | None = None, huge_bytes: int = 1_000_000
) -> tuple[bytes | None, bytes, str]:
    """One hostile ``(key, value, kind)``; the value is meant to be dead-lettered.

    The key is usually the user's id, sometimes None, another user, empty or invalid UTF-8.
    """
    kind = kind or rng.choice(HOSTILE_KINDS)
    user = rng.choice(user_ids)
    event = good_event(rng, user, f"h-{rng.getrandbits(48):012x}", now_ms - rng.randrange(3_600_000))
    roll = rng.random()
    if roll < 0.7:
        key: bytes | None = user.encode()
    elif roll < 0.8:
        key = None
    elif roll < 0.85:
        key = b""
    elif roll < 0.93:
        key = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 12))) + b"\xff"
    else:
        key = rng.choice(user_ids).encode() + b"-other"

    if kind == "wrong_type":
        field = rng.choice(sorted(WRONG_TYPES))
        event[field] = rng.choice(WRONG_TYPES[field])
        if field in ("price", "amount"):
            event["type"] = "pay"
        value = _dumps(event)
    elif kind == "missing_field":
        del event[rng.choice(REQUIRED)]
        value = _dumps(event)
    elif kind == "huge_string":
        field = rng.choice(("event_id", "user_id", "text", "category", "type", "ts"))
        event[field] = rng.choice("ab\u00e9\u4e2d") * max(huge_bytes // 3, 2 * contract.MAX_TEXT_LENGTH)
        value = orjson.dumps(event)
    elif kind == "huge_unknown_field":
        # an unknown field is ignored, but the event carries a broken field too
        event["blob"] = "x" * huge_bytes
        event["ts"] = "not a time"
        value = orjson.dumps(event)
    elif kind == "deep_nesting":
        depth = rng.choice((50, 300, 1000, 10_000))
        field = rng.choice(("ts", "event_id", "extra", "amount"))
        nested = b"[" * depth + b"]" * depth if rng.random() < 0.5 else b'{"a":' * depth + b"1" + b"}" * depth
        if field == "extra":  # unknown field: only malformed once past the parser's depth limit
            event["ts"] = TS_1970
        value = _with_raw_field(event, field, nested)
    elif kind == "deep_nesting_root":
        depth = rng.choice((10, 500, 10_000))
        value = b"[" * depth + b"]" * depth
    elif kind == "invalid_utf8":
        blob = orjson.dumps(event)
        at = rng.randrange(1, len(blob))
        value = blob[:at] + rng.choice((b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf")) + blob[at:]
    elif kind == "invalid_utf8_escape":
        value = _with_raw_field(event, rng.choice(("event_id", "user_id", "text")), rng.choice((b'"\\ud800"', b'"\\udfff x"', b'"\\u12"', b'"\\x41"')))
    elif kind == "nan_infinity":
        field = rng.choice(("ts", "amount", "price", "rating", "quantity"))
        event["type"] = "pay"
        value = _with_raw_field(event, field, rng.choice(NUMBER_LITERALS))
    elif kind == "ts_1970":
        event["ts"] = TS_1970 + rng.randrange(0, 10 * 365 * DAY_MS)
        value = _dumps(event)
    elif kind == "ts_2200":
        event["ts"] = TS_2200 + rng.randrange(0, 365 * DAY_MS)
        value = _dumps(event)
    elif kind == "ts_iso_1970":
        event["ts"] = rng.choice(("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000+08:00", "1999-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00"))
        value = _dumps(event)
    elif kind == "ts_iso_2200":
        event["ts"] = rng.choice(("2200-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2286-11-20T17:46:40Z"))
        value = _dumps(event)
    elif kind == "ts_no_offset":
        event["ts"] = "2024-05-01T10:00:00"
        value = _dumps(event)
    elif kind == "unknown_fields_bad":
        for i in range(rng.randrange(1, 20)):
            event[f"x{i}_{rng.getrandbits(16)}"] = rng.choice((None, 1, "s", [1, 2], {"k": [None]}, 1.5))
        del event["event_id"]
        value = _dumps(event)
    elif kind == "duplicate_keys":
        # the last duplicate wins in the parser; make that one invalid
        body = orjson.dumps(event)
        bad = rng.choice((b'"ts":"oops"', b'"user_id":7', b'"type":"teleport"', b'"event_id":""'))
        value = body[:-1] + b"," + bad + b"}"
    elif kind == "empty":
        value = b""
    elif kind == "whitespace":
        value = rng.choice((b" ", b"\n\t", b"\x00", b"null", b"true", b"0", b'""'))
    elif kind == "not_an_object":
        value = rng.choice((_dumps([event]), b"42", b'"event"', b"[]", b"3.14"))
    elif kind == "truncated":
        blob = orjson.dumps(event)
        value = blob[: rng.randrange(1, len(blob) - 1)]
    elif kind == "trailing_garbage":
        value = orjson.dumps(event) + rng.choice((b"}", b",", b" x", b"\x00", orjson.dumps(event)))
    elif kind == "random_bytes":
        value = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
        if value[:1] in (b"{", b"[", b'"') or value.strip() == b"":
            value = b"\x01" + value
    elif kind == "key_mismatch":
        key = rng.choice((None, b"someone-else", user.encode() + b" ", user.upper().encode() + b"X"))
        value = orjson.dumps(event)
    elif kind == "negative_amount":
        event["type"] = rng.choice(("pay", "refund"))
        event[rng.choice(("amount", "price"))] = -round(rng.uniform(0.01, 500), 2)
        value = orjson.dumps(event)
    elif kind == "missing_amount":
        event["type"] = rng.choice(("pay", "refund"))
        event.pop("amount", None)
        event.pop("price", None)
        value = orjson.dumps(event)
    elif kind == "too_long_id":
        event[rng.choice(("event_id", "user_id", "item_id", "order_id", "device"))] = "i" * rng.randrange(129, 5000)
        value = orjson.dumps(event)
    else:
        raise ValueError(f"unknown hostile kind {kind!r}")
    return key, value, kind


# -- the soak's other cases (tests/integration/test_hostile_input.py) -----------------------------

#: how long the event ids of the heavy user are: 2,000 of them fill about 240 KB of its state
HEAVY_ID_LENGTH = 120


def heavy_user_events(user_id: str, n: int, start_ms: int, end_ms: int) -> list[dict]:
    """``n`` valid events of one user, each from a device of its own and with a long id of its own:
    state that would grow without bound if every device and id were kept."""
    step = max(1, (end_ms - start_ms) // max(1, n))
    return [
        {
            "event_id": f"heavy-{i:08d}-".ljust(HEAVY_ID_LENGTH, "x"),
            "user_id": user_id,
            "type": "view",
            "ts": start_ms + i * step,
            "device": f"device-{i:08d}",
            "category": ("snacks", "beauty", "books", "toys")[i % 4],
        }
        for i in range(n)
    ]


def future_events(rng: random.Random, user_ids: list[str], n: int, now_ms: int, max_ahead_ms: int) -> list[dict]:
    """``n`` valid events stamped ahead of the wall clock, by up to ``max_ahead_ms``."""
    return [
        good_event(rng, rng.choice(user_ids), f"future-{i}", now_ms + rng.randrange(60_000, max_ahead_ms))
        for i in range(n)
    ]


def old_history(n_users: int, n: int, start_ms: int, end_ms: int) -> list[dict]:
    """``n`` valid events of users of their own between ``start_ms`` and ``end_ms`` (a 1997-98 shop log)."""
    step = max(1, (end_ms - start_ms) // max(1, n))
    rng = random.Random(1997)
    return [good_event(rng, f"old-{i % n_users:04d}", f"old-{i}", start_ms + i * step) for i in range(n)]


def oversized_record(rng: random.Random, user_id: str, now_ms: int, size: int) -> tuple[bytes, bytes]:
    """A record of exactly ``size`` value bytes that breaks the contract (a time that is none), for
    a dead letter that cannot fit its topic whole."""
    event = good_event(rng, user_id, f"big-{rng.getrandbits(48):012x}", now_ms)
    event["ts"] = "not a time"
    event["blob"] = ""
    body = orjson.dumps(event)
    event["blob"] = "x" * (size - len(body))
    value = orjson.dumps(event)
    assert len(value) == size
    return user_id.encode(), value


#: ticks that break their contract ({"wall_ms": <integer>}): each must be dead-lettered as ``invalid_tick``
BAD_TICKS = (
    b"",
    b"not json",
    b"{",
    b"null",
    b"[1, 2]",
    b'"wall_ms"',
    b"{}",
    b'{"wall_ms": "1714521600000"}',
    b'{"wall_ms": 1714521600000.5}',
    b'{"wall_ms": true}',
    b'{"wall_ms": null}',
    b'{"wall_ms": 1e300}',
    b'{"wall_ms": 123456789012345678901234567890}',
    b'{"wall_ms": [1]}',
)


def crafted_ticks(now_ms: int) -> list[bytes]:
    """Well-formed ticks that try to move a partition's clock far ahead (or back)."""
    return [
        orjson.dumps({"wall_ms": wall_ms})
        for wall_ms in (now_ms + DAY_MS, now_ms + 365 * DAY_MS, TS_2200, 2**63 - 1, -1, 0)
    ]
