"""The derived notions of a portrait, each defined once: parts of the day, weekend, mobile, ratios,
the shop's calendar days and weeks, sessions.

Hours, weekdays, purchase days and weeks are local to the shop's time zone (the
portrait's ``timezone``): :func:`local_hour_weekday`, :func:`local_day` and
:func:`local_calendar`; weekdays run from Monday (0) to Sunday (6), and a shop
week from Monday to Sunday (:func:`week_of_day`, :func:`week_start`).

>>> NIGHT_HOURS, WEEKEND_DAYS
((23, 0, 1), (5, 6))
>>> share_of([4, 1, 1] + [0] * 20 + [4], NIGHT_HOURS)  # hours 0, 1 and 23 of 10 events
0.9
>>> is_mobile("iOS"), is_mobile("pc"), is_mobile("smart_tv")
(True, False, False)
>>> ratio(3, 4), ratio(5, 4, cap=1.0), ratio(1, 0), ratio(None, 2)
(0.75, 1.0, None, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from online_models.clock import DAY_MS

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Night: the domain brief's night owls are active 23:00-02:00.
NIGHT_HOURS = (23, 0, 1)
#: Morning, 06:00-11:59.
MORNING_HOURS = tuple(range(6, 12))
#: Afternoon, 12:00-17:59.
AFTERNOON_HOURS = tuple(range(12, 18))
#: Evening, 18:00-22:59 (up to the night).
EVENING_HOURS = tuple(range(18, 23))
#: The evening visit peak the domain brief's health marker reads (20:00-22:00).
VISIT_PEAK_HOURS = (20, 21)
#: Saturday and Sunday.
WEEKEND_DAYS = (5, 6)
#: Devices that count as mobile: the phone apps and the mini program (any case).
MOBILE_DEVICES = ("ios", "android", "mini_program")
#: Consumption levels: a buyer's average order value ranked among the buyers' (:func:`price_band`).
PRICE_BANDS = ("low", "mid", "high")
#: A session (a visit) ends after 30 minutes without an event of the user: the next event starts another.
SESSION_GAP_MS = 30 * 60_000
_EPOCH_DATE = date(1970, 1, 1)


def _local(ts_ms: int, zone: str) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(ZoneInfo(zone))


_QUARTER_MS = 900_000


@lru_cache(maxsize=8192)
def _quarter_offset_ms(quarter: int, zone: str) -> int | None:
    """The zone's UTC offset throughout quarter hour ``quarter`` (ms), or None when it changes inside it."""
    start = quarter * _QUARTER_MS
    first = _local(start, zone).utcoffset() // timedelta(milliseconds=1)
    return first if _local(start + _QUARTER_MS - 1, zone).utcoffset() // timedelta(milliseconds=1) == first else None


def _offset_ms(ts_ms: int, zone: str) -> int:
    """The zone's UTC offset at ``ts_ms``: looked up once per quarter hour (offsets change on quarter hours)."""
    offset = _quarter_offset_ms(ts_ms // _QUARTER_MS, zone)
    return offset if offset is not None else _local(ts_ms, zone).utcoffset() // timedelta(milliseconds=1)


def local_hour_weekday(ts_ms: int, zone: str) -> tuple[int, int]:
    """The hour of the day (0-23) and the weekday (Monday 0) of ``ts_ms`` in the shop's time zone ``zone``.

    >>> local_hour_weekday(0, "UTC"), local_hour_weekday(0, "Asia/Shanghai")  # 1970-01-01 was a Thursday
    ((0, 3), (8, 3))
    """
    local = ts_ms if zone == "UTC" else ts_ms + _offset_ms(ts_ms, zone)
    return (local // 3_600_000) % 24, (local // DAY_MS + 3) % 7


def local_day(ts_ms: int, zone: str) -> int:
    """The number of the shop's calendar day holding ``ts_ms`` (days since 1970-01-01 in ``zone``):
    purchases on one such day count as one purchase day.

    >>> late = 16 * 3_600_000 + 30 * 60_000   # 16:30 UTC on day 0 is 00:30 on day 1 in Shanghai
    >>> local_day(late, "UTC"), local_day(late, "Asia/Shanghai")
    (0, 1)
    """
    return (ts_ms if zone == "UTC" else ts_ms + _offset_ms(ts_ms, zone)) // DAY_MS


def local_calendar(ts_ms: int, zone: str) -> tuple[int, int, int]:
    """The hour (0-23), the weekday (Monday 0) and the calendar day (:func:`local_day`) of ``ts_ms`` in ``zone``, at once.

    >>> late = 16 * 3_600_000 + 30 * 60_000
    >>> local_calendar(late, "UTC"), local_calendar(late, "Asia/Shanghai")
    ((16, 3, 0), (0, 4, 1))
    """
    local = ts_ms if zone == "UTC" else ts_ms + _offset_ms(ts_ms, zone)
    day = local // DAY_MS
    return (local // 3_600_000) % 24, (day + 3) % 7, day


def week_of_day(day: int) -> int:
    """The number of the shop week (Monday to Sunday) holding calendar day ``day``: weeks since the one of 1970-01-01.

    >>> week_of_day(0), week_of_day(3), week_of_day(4)  # 1970-01-01 was a Thursday; Monday 1970-01-05 starts week 1
    (0, 0, 1)
    """
    return (day + 3) // 7


@lru_cache(maxsize=4096)
def week_start(week: int) -> str:
    """The Monday that starts shop week ``week``, as an ISO date.

    >>> week_start(1), week_start(week_of_day(date(2024, 5, 1).toordinal() - _EPOCH_DATE.toordinal()))
    ('1970-01-05', '2024-04-29')
    """
    return (_EPOCH_DATE + timedelta(days=7 * week - 3)).isoformat()


def day_number(value: date) -> int:
    """The calendar day number (days since 1970-01-01) of a date.

    >>> day_number(date(1970, 1, 2))
    1
    """
    return value.toordinal() - _EPOCH_DATE.toordinal()


def price_band(rank: float) -> str:
    """The consumption level of an order value at mid-rank ``rank`` among the buyers': the lowest quarter is
    ``low``, the highest quarter (0.75 and above) ``high``, the rest ``mid``.

    >>> price_band(0.2), price_band(0.25), price_band(0.75)
    ('low', 'mid', 'high')
    """
    return "low" if rank < 0.25 else "high" if rank >= 0.75 else "mid"


def day_start_ms(day: int, zone: str) -> int:
    """The first instant (epoch ms) of the shop's calendar day number ``day`` in ``zone``: the inverse of :func:`local_day`.

    >>> day_start_ms(1, "UTC"), day_start_ms(1, "Asia/Shanghai")   # 1970-01-02 00:00 in Shanghai is 16:00 UTC the day before
    (86400000, 57600000)
    >>> all(local_day(day_start_ms(d, "Europe/Berlin"), "Europe/Berlin") == d == local_day(day_start_ms(d + 1, "Europe/Berlin") - 1, "Europe/Berlin")
    ...     for d in range(19_800, 19_830))                     # across a change of summer time too
    True
    """
    if zone == "UTC":
        return day * DAY_MS
    midnight = datetime(1970, 1, 1, tzinfo=ZoneInfo(zone)) + timedelta(days=day)
    return int(midnight.timestamp() * 1000)


def is_mobile(device: str) -> bool:
    """Whether events from ``device`` count as mobile."""
    return device.lower() in MOBILE_DEVICES


def share_of(counts: Sequence[float], picked: Sequence[int]) -> float | None:
    """The share of ``counts`` at the indices ``picked`` (hours of the day, days of the week); None when all are 0."""
    total = sum(counts)
    if not total:
        return None
    part = 0
    for index in picked:
        part += counts[index]
    return part / total


def ratio(numerator: float | None, denominator: float | None, cap: float | None = None) -> float | None:
    """``numerator / denominator`` rounded to 4 places, at most ``cap``; None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    value = numerator / denominator
    return round(min(value, cap) if cap is not None else value, 4)
