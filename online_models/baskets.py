"""A user's open baskets: the purchases bought together, kept until no admissible event can add to them.

A *basket* is one order (the ``pay`` events sharing an ``order_id``), or, for payments
without an ``order_id``, the user's purchases of one calendar day of the shop's time zone.
The user's state keeps each open basket as a short list (see :data:`OpenBasket`); a basket
*closes* when the partition's watermark passes the last instant an event could still join
it, and its record (:func:`basket_record`) then goes to the single aggregator of
:mod:`online_models.associations`.

Membership is decided by event times alone, so the baskets are the same whatever the
order the events arrive in (within the allowed lateness):

* an order's payments more than ``order_gap_ms`` apart are separate baskets (session
  windows on the payments of one ``order_id``): a payment joins every open basket of its
  order whose span it comes within ``order_gap_ms`` of, merging them. Such a basket
  closes when the watermark passes its last payment plus ``order_gap_ms``: by then any
  payment that could join it is behind the watermark, and so refused as late;
* a day's basket closes when the watermark reaches the start of the next day.

A basket keeps the distinct categories and items of its payments, each list sorted and
cut to its ``max_lines`` smallest values (order-insensitive too); items are named
``category\\x1fitem_id`` (the contract allows no control character in either), so an
item's category travels with it. A payment naming neither is not part of any basket.

>>> baskets = []
>>> zone, gap = "UTC", 3_600_000
>>> add_purchase(baskets, ts=1_000, order_id="o1", category="baby", item_id="b-1", zone=zone, order_gap_ms=gap)
>>> add_purchase(baskets, ts=9_000, order_id="o1", category="health", item_id="h-7", zone=zone, order_gap_ms=gap)
>>> add_purchase(baskets, ts=5_000, order_id=None, category="snacks", item_id=None, zone=zone, order_gap_ms=gap)
>>> next_close(baskets)                  # the order, an hour after its last payment
3609001
>>> closed = close_due(baskets, watermark=3_609_001)
>>> [(key, categories, items) for key, first, last, close_at, categories, items in closed]
[('o:o1', ['baby', 'health'], ['baby\\x1fb-1', 'health\\x1fh-7'])]
>>> [b[0] for b in baskets], next_close(baskets)    # the day's basket waits for the next day
(['d:0'], 86400000)
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any

from online_models.vocabulary import day_start_ms, local_day

#: One open basket in the user's state: ``[key, first_ts, last_ts, close_at, categories, items]``;
#: ``key`` is ``"o:" + order_id`` or ``"d:" + day number``; ``close_at`` the watermark at which it closes.
OpenBasket = list
#: default most distinct categories, and items, one basket keeps
MAX_BASKET_LINES = 32
#: separates an item's category from its id in the item names of a basket
ITEM_SEPARATOR = "\x1f"

ORDER_PREFIX = "o:"
DAY_PREFIX = "d:"


def item_name(category: str | None, item_id: str) -> str:
    """The name an item is counted under: its category, the separator, its id.

    >>> item_name("baby", "b-1"), item_name(None, "x")
    ('baby\\x1fb-1', '\\x1fx')
    """
    return f"{category or ''}{ITEM_SEPARATOR}{item_id}"


def _add_line(values: list[str], value: str, max_lines: int) -> None:
    """Insert ``value`` into the sorted distinct ``values``, keeping the ``max_lines`` smallest."""
    i = bisect.bisect_left(values, value)
    if i < len(values) and values[i] == value:
        return
    if i >= max_lines:
        return
    values.insert(i, value)
    if len(values) > max_lines:
        values.pop()


def _merge_lines(into: list[str], other: list[str], max_lines: int) -> None:
    for value in other:
        _add_line(into, value, max_lines)


def add_purchase(
    baskets: list[OpenBasket],
    *,
    ts: int,
    order_id: str | None,
    category: str | None,
    item_id: str | None,
    zone: str,
    order_gap_ms: int,
    max_lines: int = MAX_BASKET_LINES,
    day: int | None = None,
) -> None:
    """Put one payment into its open basket (made, or merged, as the module describes); a payment
    naming neither a category nor an item changes nothing. ``day`` is ``local_day(ts, zone)`` when
    the caller has it already."""
    if not category and not item_id:
        return
    if order_id is not None:
        key = ORDER_PREFIX + order_id
        joined = [b for b in baskets if b[0] == key and b[1] - order_gap_ms <= ts <= b[2] + order_gap_ms]
        if joined:
            basket = joined[0]
            for other in joined[1:]:  # the payment bridges two sessions of the order: one basket
                basket[1], basket[2] = min(basket[1], other[1]), max(basket[2], other[2])
                _merge_lines(basket[4], other[4], max_lines)
                _merge_lines(basket[5], other[5], max_lines)
            if len(joined) > 1:
                merged = {id(b) for b in joined[1:]}
                baskets[:] = [b for b in baskets if id(b) not in merged]
        else:
            basket = [key, ts, ts, 0, [], []]
            baskets.append(basket)
        basket[1], basket[2] = min(basket[1], ts), max(basket[2], ts)
        basket[3] = basket[2] + order_gap_ms + 1
    else:
        day = local_day(ts, zone) if day is None else day
        key = DAY_PREFIX + str(day)
        basket = next((b for b in baskets if b[0] == key), None)
        if basket is None:
            basket = [key, ts, ts, day_start_ms(day + 1, zone), [], []]
            baskets.append(basket)
        basket[1], basket[2] = min(basket[1], ts), max(basket[2], ts)
    if category:
        _add_line(basket[4], category, max_lines)
    if item_id:
        _add_line(basket[5], item_name(category, item_id), max_lines)


def next_close(baskets: list[OpenBasket]) -> int | None:
    """The watermark at which the first open basket closes; None with none open."""
    return min((b[3] for b in baskets), default=None)


def close_due(baskets: list[OpenBasket], *, watermark: int) -> list[OpenBasket]:
    """Remove and return the baskets the watermark has closed (``close_at <= watermark``), in key order."""
    closed = [b for b in baskets if b[3] <= watermark]
    if closed:
        baskets[:] = [b for b in baskets if b[3] > watermark]
    return sorted(closed, key=lambda b: (b[0], b[1]))


def basket_id(user_id: str, basket: OpenBasket) -> str:
    """A digest naming the basket (the user, its key and first payment), not the user: 16 hex digits.
    A basket closed again after a crash's replay gets the same id, so the aggregator counts it once.

    >>> basket_id("u1", ["o:o1", 1000, 9000, 0, [], []]) == basket_id("u1", ["o:o1", 1000, 9500, 0, ["x"], []])
    True
    >>> len(basket_id("u1", ["d:0", 5, 5, 0, [], []]))
    16
    """
    text = f"{user_id}{ITEM_SEPARATOR}{basket[0]}{ITEM_SEPARATOR}{basket[1]}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def basket_record(user_id: str, basket: OpenBasket) -> dict[str, Any]:
    """What the aggregator gets of a closed basket: its id, the time of its last payment, its categories and items.

    >>> basket_record("u1", ["d:0", 5, 70, 86_400_000, ["baby", "toys"], ["toys\\x1ft-1"]])["categories"]
    ['baby', 'toys']
    """
    return {"id": basket_id(user_id, basket), "ts": basket[2], "categories": list(basket[4]), "items": list(basket[5])}
