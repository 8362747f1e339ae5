"""The arithmetic of ``scripts/bench``: percentiles, rates, metric parsing and the paper estimate (no timing)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit.procs import metric  # noqa: E402
from benchkit.stats import PaperEstimate, percentile, summary, window_rate  # noqa: E402


def test_percentiles_interpolate_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == 99.01
    assert percentile([], 50) is None
    assert summary([0.001, 0.002, 0.003], scale=1000) == {"n": 3, "p50": 2.0, "p90": 2.8, "p99": 2.98, "max": 3.0}


def test_the_window_rate_leaves_out_the_start_and_the_warmup():
    samples = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 50.0), (4.0, 150.0), (5.0, 250.0), (6.0, 350.0)]
    assert window_rate(samples) == 350 / 4
    assert window_rate(samples, skip_s=2.0) == 100.0  # from t=4 (first rise at t=3, its previous sample t=2, +2 s)
    assert window_rate([(0.0, 5.0), (1.0, 5.0)]) == 0.0


def test_metric_sums_labelled_samples_and_ignores_longer_names():
    page = 'x_total 4.0\nx_total_created 1.7e9\ny{reason="a"} 2.0\ny{reason="b"} 3.0\n'
    assert metric(page, "x_total") == 4.0
    assert metric(page, "y") == 5.0
    assert metric(page, "z") == 0.0


def test_the_paper_estimate_rounds_up_workers_and_partitions():
    estimate = PaperEstimate(100_000_000, 50_000, 700, 1.5, None, None)
    assert estimate.workers == 108  # 75000 / 700 = 107.1
    assert estimate.partitions == 256
    assert PaperEstimate(1_000, 100, 1_000, 1.0, None, None).partitions == 2
    assert len(estimate.lines()) == 3  # no state or rebuild line without those figures
