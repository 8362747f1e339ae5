"""The values of stored portraits as the indexes and the group figures take them: every one type-checked
(a portrait of an older or newer worker may hold another type). Where they are read is
:mod:`api.portrait_paths`."""

from __future__ import annotations

import math
from typing import Any

_MAX_COUNT = 9_999_999_999


def label(value: Any) -> str | None:
    """A categorical value as the string that is indexed: strings as is, integers in decimal.

    >>> label("vip"), label(3), label(True), label(2.5), label("")
    ('vip', '3', None, None, None)
    """
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def count(value: Any) -> int | None:
    """A non-negative integer count, or None (integral floats count too).

    >>> count(3), count(2.0), count(-1), count(True), count("3")
    (3, 2, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def number(value: Any) -> float | None:
    """A finite number as a float (-0.0 becomes 0.0), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value) + 0.0
    return value if math.isfinite(value) else None


def cents(value: Any) -> int:
    """An amount of money in cents (0 for anything that is not a finite number)."""
    amount = number(value)
    return 0 if amount is None else int(round(amount * 100))
