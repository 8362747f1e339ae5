"""The behaviour-event contract and its validation.

An event is one JSON object on the ``events`` topic, keyed by user id. Validation
turns raw bytes into an :class:`Event` or raises :class:`InvalidEvent` carrying a
short machine-readable ``reason`` and a human-readable ``detail``; the stream
sends such records to the dead-letter topic with that reason.

>>> e = parse_event(b'{"event_id": "e1", "user_id": "u1", "type": "pay", '
...                 b'"ts": "2024-05-01T12:00:00+08:00", "amount": 12.5}')
>>> e.ts, e.amount_cents
(1714536000000, 1250)
>>> parse_event(b'{"event_id": "e2", "user_id": "u1", "type": "teleport", "ts": 0}')
Traceback (most recent call last):
...
online_models.events.InvalidEvent: unknown_type: type: 'teleport' is not one of ...
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EVENT_TYPES = (
    "view",
    "search",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "favorite",
    "order",
    "pay",
    "refund",
    "review",
    "share",
)
EventType = Literal[
    "view",
    "search",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "favorite",
    "order",
    "pay",
    "refund",
    "review",
    "share",
]
#: The payment methods an ``order`` or ``pay`` event may name (``payment_method``): wallets, cards, instalment
#: credit (Huabei, Baitiao and the like), cash on delivery; ``other`` for anything else.
PAYMENT_METHODS = (
    "alipay",
    "wechat_pay",
    "unionpay",
    "jd_pay",
    "credit_card",
    "debit_card",
    "installment",
    "apple_pay",
    "paypal",
    "cash_on_delivery",
    "other",
)
PaymentMethod = Literal[PAYMENT_METHODS]  # type: ignore[valid-type]

# Dead-letter reasons, stable strings that ops can count and filter on.
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
UNKNOWN_TYPE = "unknown_type"
NEGATIVE_AMOUNT = "negative_amount"
MISSING_AMOUNT = "missing_amount"
FUTURE_TIMESTAMP = "future_timestamp"
LATE_EVENT = "late_event"
KEY_MISMATCH = "key_mismatch"

MAX_ID_LENGTH = 128
#: Characters no id, category or profile value may hold: C0 controls (the worker's own table keys start
#: with NUL), DEL, C1 controls, line and paragraph separators, and the bidirectional controls that make
#: text display in another order than it is stored (U+202E "right-to-left override" and its kin).
#: Any other character is allowed, ``/`` too (the API takes such ids as path parameters).
FORBIDDEN_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
#: Free text (``text``) may also hold tabs and line breaks.
FORBIDDEN_IN_TEXT = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
#: A user id: 1 to 128 characters, none of :data:`FORBIDDEN_CHARACTERS` (for schemas and path contracts).
USER_ID_PATTERN = f"^[^{FORBIDDEN_CHARACTERS}]+$"
MAX_TEXT_LENGTH = 4096
#: The default earliest accepted event time (2000-01-01T00:00:00Z): older timestamps are taken for
#: nonsense unless the deployment sets an earlier one (``PORTRAITS_EARLIEST_EVENT_TIME``, for old history).
MIN_TS_MS = 946_684_800_000
#: Beyond this (about the year 2286) a timestamp no longer fits the pipeline's integers.
MAX_TS_MS = 9_999_999_999_999


def _refuse(forbidden: str):
    search = re.compile(f"[{forbidden}]").search

    def check(value: str) -> str:
        found = search(value)
        if found is not None:
            raise ValueError(
                f"holds the control or bidirectional character U+{ord(found.group()):04X} at position {found.start()}, "
                "which no id, category or profile value may hold"
            )
        return value

    return check


#: The values :data:`Printable` and :data:`FreeText` take, as patterns pydantic checks natively (no Python call
#: per field); a value that fails one is dead-lettered with :func:`printable`'s (or the free-text check's) message.
PRINTABLE_PATTERN = f"^[^{FORBIDDEN_CHARACTERS}]*$"
FREE_TEXT_PATTERN = f"^[^{FORBIDDEN_IN_TEXT}]*$"

printable = _refuse(FORBIDDEN_CHARACTERS)
printable.__doc__ = """``value`` if it holds none of :data:`FORBIDDEN_CHARACTERS`, else ValueError naming the first.

>>> printable("u/0001"), printable("小明")
('u/0001', '小明')
>>> printable("evil\u202etxt.exe")
Traceback (most recent call last):
...
ValueError: holds the control or bidirectional character U+202E at position 4, which no id, category or profile value may hold
"""
free_text = _refuse(FORBIDDEN_IN_TEXT)
#: Text that holds no control or bidirectional character.
Printable = Annotated[str, Field(pattern=PRINTABLE_PATTERN)]
#: Free text: tabs and line breaks allowed, other controls not.
FreeText = Annotated[str, Field(pattern=FREE_TEXT_PATTERN)]
#: A user id as every contract takes it.
UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=USER_ID_PATTERN)]
#: the check whose message a value failing each pattern is dead-lettered with
_PATTERN_CHECKS = {PRINTABLE_PATTERN: printable, FREE_TEXT_PATTERN: free_text, USER_ID_PATTERN: printable}


class InvalidEvent(ValueError):
    """A record that breaks the contract; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_epoch_ms(value: Any) -> int:
    """Event time as integer epoch milliseconds.

    Accepts epoch milliseconds (int, or a float without NaN/inf) or an ISO-8601
    string that carries a UTC offset.

    >>> to_epoch_ms("1970-01-01T00:00:01Z"), to_epoch_ms(1500)
    (1000, 1500)
    """
    if isinstance(value, bool):
        raise ValueError("timestamp must be epoch milliseconds or ISO-8601, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("timestamp must be a finite number")
        return int(value)
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError("timestamp string too long")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO-8601 timestamp: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            raise ValueError("ISO-8601 timestamp needs a UTC offset")
        return int(parsed.timestamp() * 1000)
    raise ValueError("timestamp must be epoch milliseconds or an ISO-8601 string")


def _iso(ts_ms: int) -> str:
    """``ts_ms`` as ISO-8601 UTC to the second, for messages."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money_cents(value: float | None, field: str) -> int | None:
    if value is None:
        return None
    if not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number")
    if value < 0:
        raise ValueError(f"{field} must not be negative")
    if value > 1e12:
        raise ValueError(f"{field} is implausibly large")
    return int(round(value * 100))


class Event(BaseModel):
    """One behaviour event. Money is also kept in integer cents for exact sums."""

    model_config = ConfigDict(extra="ignore", strict=True, str_max_length=MAX_TEXT_LENGTH)

    event_id: Printable = Field(min_length=1, max_length=MAX_ID_LENGTH)
    user_id: UserId
    type: EventType
    ts: int
    item_id: Printable | None = Field(default=None, max_length=MAX_ID_LENGTH)
    category: Printable | None = Field(default=None, max_length=MAX_ID_LENGTH)
    price: float | None = None
    quantity: int | None = Field(default=None, ge=0, le=1_000_000)
    amount: float | None = None
    order_id: Printable | None = Field(default=None, max_length=MAX_ID_LENGTH)
    session_id: Printable | None = Field(default=None, max_length=MAX_ID_LENGTH)
    device: Printable | None = Field(default=None, max_length=32)
    channel: Printable | None = Field(default=None, max_length=64)
    promo: bool | None = None
    rating: float | None = Field(default=None, ge=0, le=5)
    text: FreeText | None = None
    #: how an order is (to be) paid: one of :data:`PAYMENT_METHODS`; counted from pay events
    payment_method: PaymentMethod | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> int:
        return to_epoch_ms(value)

    @field_validator("price", "amount")
    @classmethod
    def _money(cls, value: float | None, info) -> float | None:
        _money_cents(value, info.field_name)
        return value

    @property
    def amount_cents(self) -> int:
        """Money moved by a pay or refund, in cents (``amount``, else price x quantity)."""
        if self.amount is not None:
            return _money_cents(self.amount, "amount") or 0
        if self.price is not None:
            quantity = 1 if self.quantity is None else self.quantity
            return _money_cents(self.price * quantity, "price") or 0
        return 0


class Profile(BaseModel):
    """Static attributes of a user from the ``profiles`` topic."""

    model_config = ConfigDict(extra="ignore", strict=True, str_max_length=256)

    user_id: UserId
    ts: int
    age: int | None = Field(default=None, ge=0, le=130)
    age_band: Printable | None = None
    gender: Printable | None = None
    region: Printable | None = None
    city_tier: int | Printable | None = None
    member_level: Printable | int | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, value: Any) -> int:
        return to_epoch_ms(value)

    def attributes(self) -> dict[str, Any]:
        """The static attributes that were given, with ``age_band`` derived from ``age``."""
        attrs = self.model_dump(exclude={"user_id", "ts"}, exclude_none=True)
        if self.age_band is None and self.age is not None:
            attrs["age_band"] = age_band(self.age)
        return attrs


def age_band(age: int) -> str:
    """The age band ops report on.

    >>> age_band(17), age_band(24), age_band(61)
    ('<18', '18-24', '55+')
    """
    for upper, band in ((18, "<18"), (25, "18-24"), (30, "25-29"), (35, "30-34"), (40, "35-39"), (50, "40-49"), (55, "50-54")):
        if age < upper:
            return band
    return "55+"


def _reason_for(error: ValidationError) -> InvalidEvent:
    errors = error.errors(include_url=False)
    first = errors[0]
    field = first["loc"][:1]
    # a union field (``str | int``) fails once per member: a check of ours that failed says the most
    first = next((e for e in errors if e["loc"][:1] == field and e["type"] in OUR_CHECKS), first)
    loc = str(field[0]) if field else "<root>"  # the contracts are flat: the field, not the union member
    kind = first["type"]
    msg = first["msg"]
    if kind == "string_pattern_mismatch":
        msg = _pattern_message(first) or msg
    if kind == "json_invalid" or kind == "json_type":
        return InvalidEvent(MALFORMED_JSON, msg)
    if kind == "model_type" or (loc == "<root>" and kind.endswith("_type")):
        return InvalidEvent(NOT_AN_OBJECT, "the event must be a JSON object")
    if kind == "missing":
        return InvalidEvent(MISSING_FIELD, f"{loc}: required field is missing")
    if loc == "type" and kind == "literal_error" and isinstance(first.get("input"), str):
        value = first.get("input")
        return InvalidEvent(UNKNOWN_TYPE, f"type: {str(value)[:40]!r} is not one of {', '.join(EVENT_TYPES)}")
    if "must not be negative" in msg:
        return InvalidEvent(NEGATIVE_AMOUNT, f"{loc}: {msg.removeprefix('Value error, ')}")
    return InvalidEvent(INVALID_FIELD, f"{loc}: {msg.removeprefix('Value error, ')}"[:300])


#: the error types of the contracts' own checks (a validator of ours, or a forbidden character)
OUR_CHECKS = ("value_error", "string_pattern_mismatch")


def _pattern_message(error: dict) -> str | None:
    """What the check behind a failed pattern says of the value (which character, where), None if it has nothing to say."""
    check = _PATTERN_CHECKS.get(str((error.get("ctx") or {}).get("pattern")))
    value = error.get("input")
    if check is None or not isinstance(value, str):
        return None
    try:
        check(value)
    except ValueError as refused:
        return str(refused)
    return None


def invalid_record(error: ValidationError) -> InvalidEvent:
    """The dead-letter reason for a record that failed validation against one of the contracts."""
    return _reason_for(error)


def parse_event(
    raw: bytes | str, *, now_ms: int | None = None, max_future_ms: int = 86_400_000, earliest_ms: int = MIN_TS_MS
) -> Event:
    """Validate one raw event; raise :class:`InvalidEvent` with the reason if it breaks the contract.

    ``now_ms`` is the wall clock used to reject timestamps more than ``max_future_ms`` ahead;
    timestamps before ``earliest_ms`` are invalid.

    >>> old = b'{"event_id":"e","user_id":"u","type":"view","ts":"1997-03-01T10:00:00Z"}'
    >>> parse_event(old).ts
    Traceback (most recent call last):
    ...
    online_models.events.InvalidEvent: invalid_field: ts: 857210400000 is before the earliest accepted event time 2000-01-01T00:00:00Z
    >>> parse_event(old, earliest_ms=to_epoch_ms("1990-01-01T00:00:00Z")).ts
    857210400000
    """
    try:
        event = Event.model_validate_json(raw)
    except ValidationError as error:
        raise _reason_for(error) from None
    if event.ts > MAX_TS_MS:
        raise InvalidEvent(FUTURE_TIMESTAMP, f"ts: {event.ts} is beyond the year 2286")
    if event.ts < earliest_ms:
        raise InvalidEvent(INVALID_FIELD, f"ts: {event.ts} is before the earliest accepted event time {_iso(earliest_ms)}")
    if now_ms is not None and event.ts > now_ms + max_future_ms:
        raise InvalidEvent(FUTURE_TIMESTAMP, f"ts: {event.ts} is more than {max_future_ms} ms ahead of the clock")
    if event.type in ("pay", "refund") and event.amount is None and event.price is None:
        raise InvalidEvent(MISSING_AMOUNT, f"{event.type} events need amount (or price)")
    try:
        event.amount_cents  # price x quantity must be plausible too
    except ValueError as error:
        raise InvalidEvent(INVALID_FIELD, f"price x quantity: {error}") from None
    return event


def parse_profile(raw: bytes | str) -> Profile:
    """Validate one record of the ``profiles`` topic."""
    try:
        return Profile.model_validate_json(raw)
    except ValidationError as error:
        raise _reason_for(error) from None


def _with_timestamp_forms(schema: dict[str, Any], title: str) -> dict[str, Any]:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}
    schema["properties"]["ts"] = {
        "description": "Event time: epoch milliseconds, or ISO-8601 with a UTC offset",
        "anyOf": [{"type": "integer"}, {"type": "string", "format": "date-time"}],
    }
    return schema


def event_json_schema() -> dict[str, Any]:
    """JSON Schema of one record of the ``events`` topic (``schemas/event.schema.json``)."""
    return _with_timestamp_forms(Event.model_json_schema(), "Behaviour event")


def profile_json_schema() -> dict[str, Any]:
    """JSON Schema of one record of the ``profiles`` topic (``schemas/profile.schema.json``)."""
    return _with_timestamp_forms(Profile.model_json_schema(), "User profile")
