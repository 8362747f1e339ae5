"""The distribution of one figure over the current user population, in a KLL sketch.

A :class:`PopulationQuantiles` answers "what share of users have less than this?"
from a streaming, mergeable KLL quantile sketch (``datasketches``), never a scan
of the users. The population drifts, so the sketch lives in event-time periods:
one sketch for the current period and one for the previous, and every query reads
the two together. When event time enters a new period the older sketch is dropped,
so a query always sees between one and two periods of samples.

Periods are aligned on the epoch (period ``i`` holds ``i * period_ms <= ts <
(i + 1) * period_ms``), so two instances fed by different partitions line up and
:meth:`~PopulationQuantiles.merge` is well defined.

>>> from online_models.quantiles import PopulationQuantiles
>>> DAY = 86_400_000
>>> pq = PopulationQuantiles(period_ms=7 * DAY)
>>> for i, value in enumerate([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]):
...     _ = pq.update(value, ts_ms=i * 1000)
>>> pq.n, pq.rank(55), pq.quantile(0.5)
(10, 0.5, 50.0)

Quintile scores, as RFM uses them (5 is best):

>>> pq.score(95), pq.score(15), pq.score(15, higher_is_better=False)
(5, 1, 5)

Two periods later the old samples are gone:

>>> _ = pq.update(1, ts_ms=14 * DAY)
>>> pq.n, pq.quantile(0.5)
(1, 1.0)
>>> PopulationQuantiles.from_bytes(pq.to_bytes()).n
1
"""

from __future__ import annotations

import math
import struct

from datasketches import kll_floats_sketch

__all__ = ["PopulationQuantiles"]

DAY_MS = 86_400_000
_MAGIC = b"PQS1"
_HEADER = struct.Struct("<4sBqqHII")  # magic, has period, period_ms, period index, k, two sketch lengths


def _float_key(value: float) -> int:
    """An integer that orders like the float32 ``value`` (adjacent floats differ by 1)."""
    bits = struct.unpack("<i", struct.pack("<f", value))[0]
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _key_float(key: int) -> float:
    bits = key if key >= 0 else (-key) | 0x80000000
    return struct.unpack("<f", struct.pack("<I", bits))[0]


class PopulationQuantiles:
    """Streaming population quantiles over the last one to two event-time periods.

    Parameters
    ----------
    period_ms
        Length of one period in event-time milliseconds (default 7 days). A query
        reads the current and the previous period, so samples are forgotten after
        one to two periods.
    k
        KLL accuracy parameter: the normalised rank error is about ``1.65 / k**0.96``
        (1.33 % at the default 200, 99th percentile), whatever the number of samples.

    Values are kept as 32-bit floats. ``None``, NaN and infinite values are ignored.
    """

    def __init__(self, period_ms: int = 7 * DAY_MS, k: int = 200):
        if period_ms <= 0:
            raise ValueError("period_ms must be positive")
        if not 8 <= k <= 65535:
            raise ValueError("k must be between 8 and 65535")
        self.period_ms = int(period_ms)
        self.k = int(k)
        self._period: int | None = None  # index of the current period
        self._current = kll_floats_sketch(self.k)
        self._previous = kll_floats_sketch(self.k)

    # -- state -----------------------------------------------------------------

    @property
    def n(self) -> int:
        """Number of samples the queries read (current plus previous period)."""
        return self._current.n + self._previous.n

    @property
    def period_start(self) -> int | None:
        """Event time (ms) at which the current period began; None before any sample."""
        return None if self._period is None else self._period * self.period_ms

    def period_index(self, ts_ms: int) -> int:
        """The period that holds ``ts_ms``: callers use it to sample a user once per period."""
        return int(ts_ms) // self.period_ms

    def advance(self, ts_ms: int) -> None:
        """Move the current period forward to the one holding ``ts_ms`` (never backward).

        Moving one period on turns the current sketch into the previous one; moving
        further empties both.
        """
        target = self.period_index(ts_ms)
        if self._period is None:
            self._period = target
            return
        if target <= self._period:
            return
        if target == self._period + 1:
            self._previous = self._current
        else:
            self._previous = kll_floats_sketch(self.k)
        self._current = kll_floats_sketch(self.k)
        self._period = target

    def update(self, value: float | None, ts_ms: int) -> bool:
        """Add one sample observed at event time ``ts_ms``; False if it was not counted.

        A sample from the previous period (a late one) still goes to the previous
        sketch; an older sample, or a value that is None, NaN or infinite, is ignored.
        """
        if value is None:
            return False
        value = float(value)
        if not math.isfinite(value):
            return False
        self.advance(ts_ms)
        index = self.period_index(ts_ms)
        if index == self._period:
            self._current.update(value)
        elif index == self._period - 1:
            self._previous.update(value)
        else:
            return False
        return True

    def merge(self, other: "PopulationQuantiles") -> "PopulationQuantiles":
        """Fold ``other`` (same ``period_ms``) into this one, period by period; returns self.

        Both end up at the later of the two current periods; samples of ``other``
        older than the resulting previous period are dropped, as :meth:`advance` would.
        """
        if other.period_ms != self.period_ms:
            raise ValueError(f"cannot merge period {other.period_ms} ms into period {self.period_ms} ms")
        if other._period is None:
            return self
        self.advance(other._period * other.period_ms)
        for index, sketch in ((other._period, other._current), (other._period - 1, other._previous)):
            if sketch.is_empty():
                continue
            if index == self._period:
                self._current.merge(sketch)
            elif index == self._period - 1:
                self._previous.merge(sketch)
        return self

    # -- queries ---------------------------------------------------------------

    def _parts(self) -> list[tuple[int, kll_floats_sketch]]:
        return [(sketch.n, sketch) for sketch in (self._previous, self._current) if not sketch.is_empty()]

    def _cdf(self, value: float, inclusive: bool) -> float:
        parts = self._parts()
        total = sum(n for n, _ in parts)
        return sum(n * sketch.get_rank(value, inclusive=inclusive) for n, sketch in parts) / total

    def rank(self, value: float) -> float:
        """Share of the population below ``value``, counting ties as half: in [0, 1].

        This is the mid-rank ``(share < value + share <= value) / 2``, so a value that
        every user shares ranks 0.5, not 0 or 1. With no samples the answer is 0.5.
        The two periods' sketches are combined weighted by their counts, which is
        exact for their estimates and deterministic (a KLL merge is randomised).
        """
        value = float(value)
        if math.isnan(value):
            raise ValueError("cannot rank NaN")
        if self.n == 0:
            return 0.5
        return (self._cdf(value, inclusive=False) + self._cdf(value, inclusive=True)) / 2

    def quantile(self, q: float) -> float | None:
        """The smallest sample whose share of values at or below it reaches ``q``; None if empty.

        ``q`` is in [0, 1]; 0 gives the exact minimum and 1 the exact maximum.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        parts = self._parts()
        if not parts:
            return None
        if q == 0.0:
            return float(min(sketch.get_min_value() for _, sketch in parts))
        if q == 1.0:
            return float(max(sketch.get_max_value() for _, sketch in parts))
        candidates = [sketch.get_quantile(q, inclusive=True) for _, sketch in parts]
        if len(candidates) == 1:
            return float(candidates[0])
        # The combined quantile lies between the two periods' own: bisect on the
        # float32 grid (at most 32 steps) for the smallest value reaching q.
        lo, hi = _float_key(min(candidates)), _float_key(max(candidates))
        if self._cdf(_key_float(lo), inclusive=True) >= q:
            return _key_float(lo)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._cdf(_key_float(mid), inclusive=True) >= q:
                hi = mid
            else:
                lo = mid
        return _key_float(hi)

    def score(self, value: float, bins: int = 5, higher_is_better: bool = True) -> int:
        """The bin of ``value`` in the population, ``1..bins`` (quintiles by default), best is ``bins``.

        The score is ``1 + floor(rank * bins)`` (capped at ``bins``), reversed when
        lower values are better. With no samples it is the neutral middle bin,
        ``(bins + 1) // 2`` -- 3 of 5 -- rather than a guess.
        """
        if bins < 1:
            raise ValueError("bins must be at least 1")
        if self.n == 0:
            return (bins + 1) // 2
        score = min(bins, 1 + int(self.rank(value) * bins))
        return score if higher_is_better else bins + 1 - score

    @property
    def rank_error(self) -> float:
        """Normalised rank error bound of the sketches (99th percentile of the worst error)."""
        return kll_floats_sketch.get_normalized_rank_error(self.k, False)

    # -- persistence -----------------------------------------------------------

    def __reduce__(self):
        # the KLL sketches do not pickle; their own serialisation does
        return (type(self).from_bytes, (self.to_bytes(),))

    def to_bytes(self) -> bytes:
        """Both sketches and the period, for a state store or a checkpoint."""
        current, previous = self._current.serialize(), self._previous.serialize()
        header = _HEADER.pack(
            _MAGIC,
            self._period is not None,
            self.period_ms,
            self._period or 0,
            self.k,
            len(current),
            len(previous),
        )
        return header + current + previous

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PopulationQuantiles":
        """Inverse of :meth:`to_bytes`."""
        if len(raw) < _HEADER.size or raw[:4] != _MAGIC:
            raise ValueError("not a serialised PopulationQuantiles")
        _, has_period, period_ms, period, k, n_current, n_previous = _HEADER.unpack_from(raw)
        if len(raw) != _HEADER.size + n_current + n_previous:
            raise ValueError("truncated PopulationQuantiles bytes")
        pq = cls(period_ms=period_ms, k=k)
        pq._period = period if has_period else None
        start = _HEADER.size
        pq._current = kll_floats_sketch.deserialize(bytes(raw[start : start + n_current]))
        pq._previous = kll_floats_sketch.deserialize(bytes(raw[start + n_current :]))
        return pq

    def __repr__(self) -> str:
        return f"PopulationQuantiles(n={self.n}, period_ms={self.period_ms}, period_start={self.period_start})"
