"""PopulationQuantiles: accuracy against numpy, period rotation, persistence, merging."""

from __future__ import annotations

import numpy as np
import pytest

from online_models.quantiles import DAY_MS, PopulationQuantiles

WEEK = 7 * DAY_MS


def mid_rank(sorted_values: np.ndarray, probe: float) -> float:
    below = np.searchsorted(sorted_values, probe, side="left")
    at_or_below = np.searchsorted(sorted_values, probe, side="right")
    return (below + at_or_below) / 2 / len(sorted_values)


@pytest.fixture(scope="module")
def values() -> np.ndarray:
    # spend-like, skewed; float32 as the sketch keeps them, so ties are compared exactly
    return np.random.default_rng(42).lognormal(mean=4.0, sigma=1.0, size=100_000).astype(np.float32)


def filled(values: np.ndarray, ts_ms: int = 0, **kwargs) -> PopulationQuantiles:
    pq = PopulationQuantiles(**kwargs)
    for v in values.tolist():
        pq.update(v, ts_ms)
    return pq


def test_rank_and_quantile_within_kll_error_bound(values):
    pq = filled(values)
    truth = np.sort(values)
    eps = pq.rank_error
    assert pq.n == len(values)
    assert 0.005 < eps < 0.02  # k=200: about 1.3 %
    probes = np.quantile(values, np.linspace(0.005, 0.995, 199))
    errors = [abs(pq.rank(float(p)) - mid_rank(truth, float(p))) for p in probes]
    assert max(errors) <= eps
    for q in np.linspace(0.0, 1.0, 101):
        v = pq.quantile(float(q))
        lo = np.searchsorted(truth, v, side="left") / len(truth)
        hi = np.searchsorted(truth, v, side="right") / len(truth)
        assert lo - eps <= q <= hi + eps
    assert pq.quantile(0.0) == truth[0] and pq.quantile(1.0) == truth[-1]


def test_rank_extremes_and_ties():
    pq = PopulationQuantiles()
    for _ in range(1000):
        pq.update(7.0, 0)
    assert pq.rank(7.0) == 0.5  # everyone ties: the middle, not 0 or 1
    assert pq.score(7.0) == 3
    assert pq.rank(-1e30) == 0.0 and pq.rank(1e30) == 1.0
    assert pq.score(1e30) == 5 and pq.score(-1e30) == 1
    with pytest.raises(ValueError):
        pq.rank(float("nan"))


def test_quintile_scores():
    pq = PopulationQuantiles()
    for v in range(1, 1001):
        pq.update(v, 0)
    assert [pq.score(v) for v in (50, 300, 500, 700, 950)] == [1, 2, 3, 4, 5]
    assert [pq.score(v, higher_is_better=False) for v in (50, 300, 500, 700, 950)] == [5, 4, 3, 2, 1]
    assert [pq.score(v, bins=3) for v in (100, 500, 900)] == [1, 2, 3]
    scores = [pq.score(v) for v in range(0, 1100, 7)]
    assert scores == sorted(scores)
    with pytest.raises(ValueError):
        pq.score(1, bins=0)


def test_empty_sketch_is_neutral():
    pq = PopulationQuantiles()
    assert pq.n == 0 and pq.period_start is None
    assert pq.score(123.0) == 3 and pq.score(123.0, higher_is_better=False) == 3
    assert pq.score(1.0, bins=3) == 2
    assert pq.rank(5.0) == 0.5
    assert pq.quantile(0.5) is None


def test_bad_values_are_ignored():
    pq = PopulationQuantiles()
    assert pq.update(None, 0) is False
    assert pq.update(float("nan"), 0) is False
    assert pq.update(float("inf"), 0) is False
    assert pq.update(3, 0) is True
    assert pq.n == 1


def test_rotation_forgets_old_periods():
    pq = PopulationQuantiles(period_ms=WEEK)
    for i in range(1000):
        pq.update(100.0, ts_ms=i * 1000)  # period 0
    assert pq.period_start == 0
    for i in range(1000):
        pq.update(1.0, ts_ms=WEEK + i)  # period 1: previous = period 0
    assert pq.n == 2000 and pq.period_start == WEEK
    assert pq.quantile(1.0) == 100.0
    pq.update(1.0, ts_ms=2 * WEEK)  # period 2: period 0 is gone
    assert pq.n == 1001
    assert pq.quantile(1.0) == 1.0 and pq.rank(50.0) == 1.0
    pq.advance(10 * WEEK + 5)  # a long silence forgets everything
    assert pq.n == 0 and pq.period_start == 10 * WEEK
    pq.advance(3 * WEEK)  # never backward
    assert pq.period_start == 10 * WEEK


def test_late_samples():
    pq = PopulationQuantiles(period_ms=WEEK)
    assert pq.update(5.0, ts_ms=3 * WEEK + 1)
    assert pq.update(6.0, ts_ms=2 * WEEK + 1)  # previous period: still counted
    assert not pq.update(7.0, ts_ms=WEEK + 1)  # older: dropped
    assert pq.n == 2 and pq.period_start == 3 * WEEK
    assert pq.period_index(3 * WEEK - 1) == 2


def test_serialization_round_trip(values):
    pq = PopulationQuantiles(period_ms=WEEK, k=100)
    for i, v in enumerate(values[:20_000].tolist()):
        pq.update(v, ts_ms=WEEK + i * 60_000)  # spans two periods
    raw = pq.to_bytes()
    back = PopulationQuantiles.from_bytes(raw)
    assert back.to_bytes() == raw
    assert (back.n, back.k, back.period_ms, back.period_start) == (pq.n, 100, WEEK, pq.period_start)
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert back.quantile(q) == pq.quantile(q)
        assert back.rank(pq.quantile(q)) == pq.rank(pq.quantile(q))
    # it keeps rotating as the original would
    back.update(1.0, ts_ms=pq.period_start + WEEK)
    pq.update(1.0, ts_ms=pq.period_start + WEEK)
    assert back.n == pq.n

    empty = PopulationQuantiles.from_bytes(PopulationQuantiles().to_bytes())
    assert empty.n == 0 and empty.period_start is None and empty.score(1.0) == 3
    with pytest.raises(ValueError):
        PopulationQuantiles.from_bytes(b"nonsense")
    with pytest.raises(ValueError):
        PopulationQuantiles.from_bytes(raw[:-3])


def test_merge_equals_single_sketch(values):
    truth = np.sort(values)
    single = filled(values)
    a, b = PopulationQuantiles(), PopulationQuantiles()
    for i, v in enumerate(values.tolist()):
        (a if i % 3 else b).update(v, 0)
    merged = a.merge(b)
    assert merged is a and merged.n == single.n == len(values)
    eps = max(single.rank_error, merged.rank_error)
    for p in np.quantile(values, np.linspace(0.01, 0.99, 99)).tolist():
        assert abs(merged.rank(p) - mid_rank(truth, p)) <= eps
        assert abs(merged.rank(p) - single.rank(p)) <= 2 * eps


def test_merge_aligns_periods():
    old, new = PopulationQuantiles(period_ms=WEEK), PopulationQuantiles(period_ms=WEEK)
    old.update(1.0, ts_ms=0)  # period 0
    old.update(2.0, ts_ms=WEEK)  # period 1
    new.update(3.0, ts_ms=2 * WEEK)  # period 2
    old.merge(new)
    assert old.period_start == 2 * WEEK and old.n == 2  # period 0 forgotten
    assert old.quantile(0.0) == 2.0 and old.quantile(1.0) == 3.0

    fresh = PopulationQuantiles(period_ms=WEEK).merge(old)
    assert fresh.n == 2 and fresh.period_start == 2 * WEEK
    assert old.merge(PopulationQuantiles(period_ms=WEEK)).n == 2
    with pytest.raises(ValueError):
        old.merge(PopulationQuantiles(period_ms=DAY_MS))


def test_bad_parameters():
    with pytest.raises(ValueError):
        PopulationQuantiles(period_ms=0)
    with pytest.raises(ValueError):
        PopulationQuantiles(k=2)
    with pytest.raises(ValueError):
        PopulationQuantiles().quantile(1.5)


def test_queries_combine_both_periods():
    pq = PopulationQuantiles(period_ms=WEEK)
    for v in range(1000):
        pq.update(float(v), ts_ms=0)  # period 0: 0..999
    for v in range(1000, 4000):
        pq.update(float(v), ts_ms=WEEK)  # period 1: 1000..3999, three times as many
    truth = np.arange(4000, dtype=np.float32)
    eps = pq.rank_error
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        v = pq.quantile(q)
        assert abs(mid_rank(truth, v) - q) <= eps
        assert abs(pq.rank(v) - q) <= eps  # rank and quantile agree
    assert abs(pq.rank(1000.0) - 0.25) <= eps
    assert pq.quantile(0.0) == 0.0 and pq.quantile(1.0) == 3999.0
    # deterministic: the same state answers the same after a round trip
    back = PopulationQuantiles.from_bytes(pq.to_bytes())
    assert [back.quantile(q) for q in (0.1, 0.5, 0.9)] == [pq.quantile(q) for q in (0.1, 0.5, 0.9)]
