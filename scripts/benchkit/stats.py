"""Percentiles, rates and the paper estimate of a deployment: the arithmetic of the benchmarks.

>>> percentile([1.0, 2.0, 3.0, 4.0], 50)
2.5
>>> rate(1000, 2.0)
500.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float], scale: float = 1.0) -> dict[str, float | int | None]:
    """Count, p50, p90, p99, max of ``values`` times ``scale`` (e.g. 1000 for seconds to ms)."""

    def scaled(x: float | None) -> float | None:
        return None if x is None else round(x * scale, 3)

    return {
        "n": len(values),
        "p50": scaled(percentile(values, 50)),
        "p90": scaled(percentile(values, 90)),
        "p99": scaled(percentile(values, 99)),
        "max": scaled(max(values) if values else None),
    }


def histogram_window(before: dict[float, float], after: dict[float, float]) -> dict[str, float | int | None]:
    """What a Prometheus histogram observed between two scrapes (cumulative counts by bucket bound ``le``):
    the count, and the bucket bound holding the p50, the p99 and the largest observation (inf: above every bound).

    >>> histogram_window({0.1: 5, 1.0: 5, math.inf: 5}, {0.1: 100, 1.0: 104, math.inf: 105})
    {'n': 100, 'p50_le': 0.1, 'p99_le': 1.0, 'max_le': inf}
    """
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0

    def bound(share: float) -> float | None:
        return next((b for b, n in zip(bounds, counts) if n >= share * total), None) if total else None

    return {"n": int(total), "p50_le": bound(0.5), "p99_le": bound(0.99), "max_le": bound(1.0)}


def rate(count: float, seconds: float) -> float:
    """Events per second; 0 for an empty interval."""
    return count / seconds if seconds > 0 else 0.0


def window(samples: Sequence[tuple[float, float]], skip_s: float = 0.0) -> tuple[int, int] | None:
    """Indices of the first and last sample of the window from ``skip_s`` after a counter's first increase.

    >>> window([(0, 0), (1, 0), (2, 100), (3, 300), (4, 500)], skip_s=1)
    (2, 4)
    """
    moving = [i for i, (_, v) in enumerate(samples) if v > samples[0][1]]
    if not moving:
        return None
    start_time = samples[max(0, moving[0] - 1)][0] + skip_s
    inside = [i for i, (t, _) in enumerate(samples) if t >= start_time]
    if len(inside) < 2:
        return None
    return inside[0], inside[-1]


def window_rate(samples: Sequence[tuple[float, float]], skip_s: float = 0.0) -> float:
    """Rate of a counter sampled as (time, value), from ``skip_s`` after its first increase to the last sample.

    >>> window_rate([(0, 0), (1, 0), (2, 100), (3, 300), (4, 500)], skip_s=1)
    200.0
    """
    found = window(samples, skip_s)
    if found is None:
        return 0.0
    (t0, v0), (t1, v1) = samples[found[0]], samples[found[1]]
    return rate(v1 - v0, t1 - t0)


def cpu_us_per_record(samples: Sequence[tuple[float, float]], cpu_s: Sequence[float], skip_s: float = 0.0) -> float | None:
    """CPU microseconds per record over :func:`window_rate`'s window (``cpu_s``: CPU seconds at each sample).

    CPU time per record, unlike a rate, barely moves when other processes share the cores.

    >>> cpu_us_per_record([(0, 0), (1, 0), (2, 100), (3, 300), (4, 500)], [0.0, 0.1, 0.2, 0.3, 0.4], skip_s=1)
    500.0
    """
    found = window(samples, skip_s)
    if found is None or samples[found[1]][1] == samples[found[0]][1]:
        return None
    i, j = found
    return round((cpu_s[j] - cpu_s[i]) / (samples[j][1] - samples[i][1]) * 1e6, 1)


@dataclass(frozen=True)
class PaperEstimate:
    """Workers, partitions and state for a target load, from measured per-worker figures."""

    users: int
    events_per_s: float
    worker_rate: float
    headroom: float
    bytes_per_user: float | None
    restore_s_per_million: float | None

    @property
    def workers(self) -> int:
        """Workers (one core each) for the target rate with the headroom."""
        return math.ceil(self.events_per_s * self.headroom / self.worker_rate)

    @property
    def partitions(self) -> int:
        """Partitions: a power of two at least twice the workers, so the group can still grow."""
        return 1 << math.ceil(math.log2(max(1, 2 * self.workers)))

    def lines(self) -> list[str]:
        """The arithmetic, one step a line.

        >>> for line in PaperEstimate(100_000_000, 50_000, 1_000, 1.5, 4_000, 60).lines(): print(line)
        workers = ceil(50000 ev/s x 1.5 headroom / 1000 ev/s per worker) = 75
        partitions = next power of two >= 2 x 75 workers = 256
        users per worker = 100000000 / 75 = 1333334
        state per worker = 1333334 users x 4000 B = 5.33 GB (total 400.00 GB)
        restore of one worker from its changelog = 1.333 M users x 60 s per M = 80 s (1.3 min)
        """
        per_worker = math.ceil(self.users / self.workers)
        out = [
            f"workers = ceil({self.events_per_s:.0f} ev/s x {self.headroom} headroom / {self.worker_rate:.0f} ev/s per worker)"
            f" = {self.workers}",
            f"partitions = next power of two >= 2 x {self.workers} workers = {self.partitions}",
            f"users per worker = {self.users} / {self.workers} = {per_worker}",
        ]
        if self.bytes_per_user is not None:
            out.append(
                f"state per worker = {per_worker} users x {self.bytes_per_user:.0f} B = {per_worker * self.bytes_per_user / 1e9:.2f} GB"
                f" (total {self.users * self.bytes_per_user / 1e9:.2f} GB)"
            )
        if self.restore_s_per_million is not None:
            seconds = per_worker / 1e6 * self.restore_s_per_million
            out.append(
                f"restore of one worker from its changelog = {per_worker / 1e6:.3f} M users x {self.restore_s_per_million:.0f} s per M"
                f" = {seconds:.0f} s ({seconds / 60:.1f} min)"
            )
        return out
