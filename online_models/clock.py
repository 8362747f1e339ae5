"""Event time: per-partition stream time, watermark and the ``as_of`` instant.

Stream time is the largest event time seen on a partition. The watermark trails
it by the allowed lateness: an event older than the watermark is too late to be
folded in exactly and is turned away. Portraits are reported ``as_of`` the
stream time rounded up to the whole minute, the granularity of the rolling
windows.

>>> clock = EventClock(lateness_ms=60_000)
>>> clock.observe(0, 1_000_000)
>>> clock.admits(0, 950_000), clock.admits(0, 930_000)
(True, False)
>>> clock.watermark(0), clock.as_of(0)
(940000, 1020000)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

MINUTE_MS = 60_000
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


@lru_cache(maxsize=1 << 16)  # portraits repeat the same instants: as_of, first and last visits
def _parse_instant_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return None if moment.tzinfo is None else (moment - _EPOCH) // _MS


@lru_cache(maxsize=1 << 12)  # the days of a shop's recent months
def _iso_date(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).date().isoformat()


@lru_cache(maxsize=1 << 16)  # the same instants recur: as_of across a publication, a user's first and last visits
def iso(ts_ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds, the form portraits and alerts carry; None stays None.

    >>> iso(1714536000123), iso(-1), iso(None)
    ('2024-05-01T04:00:00.123Z', '1969-12-31T23:59:59.999Z', None)
    """
    if ts_ms is None:
        return None
    day, in_day = divmod(int(ts_ms), DAY_MS)
    seconds, millis = divmod(in_day, 1000)
    return "%sT%02d:%02d:%02d.%03dZ" % (_iso_date(day), seconds // 3600, seconds // 60 % 60, seconds % 60, millis)


def instant_ms(value: Any) -> int | None:
    """An ISO-8601 instant with an offset (as portraits carry them) as epoch milliseconds; None for anything else.

    >>> instant_ms("1970-01-01T00:00:01.500Z"), instant_ms("yesterday"), instant_ms("2024-01-01T00:00:00"), instant_ms(5)
    (1500, None, None, None)
    """
    return _parse_instant_ms(value) if value.__class__ is str else None


def days_between(start_ms: int, end_ms: int) -> float:
    """Days from ``start_ms`` to ``end_ms`` (negative when it is earlier), as a ``timedelta`` counts them.

    >>> days_between(0, 36 * 3_600_000)
    1.5
    """
    return (end_ms - start_ms) / 1000 / 86_400  # the same float as timedelta's total_seconds() / 86,400


def ceil_minute(ts_ms: int) -> int:
    """The end of the minute that holds ``ts_ms`` (``ts_ms`` itself when already whole).

    >>> ceil_minute(60_000), ceil_minute(60_001)
    (60000, 120000)
    """
    return -(-ts_ms // MINUTE_MS) * MINUTE_MS


class EventClock:
    """Stream time per partition and the watermark ``stream time - lateness``."""

    def __init__(self, lateness_ms: int):
        if lateness_ms < 0:
            raise ValueError("lateness must not be negative")
        self.lateness_ms = lateness_ms
        self.stream_time: dict[int, int] = {}

    def observe(self, partition: int, ts_ms: int, *, limit_ms: int | None = None) -> None:
        """Advance the partition's stream time to ``ts_ms`` if it is newer, but never past ``limit_ms``.

        >>> clock = EventClock(lateness_ms=0)
        >>> clock.observe(0, 5_000, limit_ms=3_000); clock.stream_time[0]
        3000
        """
        if limit_ms is not None and ts_ms > limit_ms:
            ts_ms = limit_ms
        if ts_ms > self.stream_time.get(partition, -1):
            self.stream_time[partition] = ts_ms

    def admits(self, partition: int, ts_ms: int) -> bool:
        """Whether an event at ``ts_ms`` is within the allowed lateness."""
        return ts_ms >= self.watermark(partition)

    def watermark(self, partition: int) -> int:
        """Event time before which the partition accepts nothing new."""
        high = self.stream_time.get(partition)
        return -(2**62) if high is None else high - self.lateness_ms

    def as_of(self, partition: int) -> int | None:
        """The instant the partition's portraits describe (stream time up to the whole minute)."""
        high = self.stream_time.get(partition)
        return None if high is None else ceil_minute(high)
