"""Delayed churn labels: snapshot at t, label after the watermark passes t + H."""

from __future__ import annotations

import random

import orjson
import pytest

from online_models.label_delay import LabelDelay

H = 1_000
P = 100


@pytest.fixture
def delay() -> LabelDelay:
    return LabelDelay(horizon_ms=H, sample_every_ms=P)


def test_snapshots_at_most_once_per_period(delay):
    pending: list = []
    for ts in (0, 50, 99, 100, 150, 250, 120):
        pending = delay.maybe_snapshot(pending, ts, {"ts": ts})
    assert [t for t, _ in pending] == [0, 100, 250]
    assert delay.due(pending, 350) and not delay.due(pending, 349)


def test_snapshot_copies_the_features(delay):
    features = {"a": 1.0}
    pending = delay.maybe_snapshot([], 0, features)
    features["a"] = 2.0
    assert pending[0][1] == {"a": 1.0}


def test_labels_only_after_the_watermark_passes_t_plus_h(delay):
    pending = delay.maybe_snapshot([], 500, {"x": 1})
    for watermark in (0, 500, 1_000, 1_499, 1_500):
        left, labelled = delay.release(pending, watermark, [])
        assert labelled == [] and left == pending
    left, labelled = delay.release(pending, 1_501, [])
    assert left == [] and labelled == [({"x": 1}, True)]


def test_purchase_at_exactly_t_plus_h_counts_at_t_does_not(delay):
    pending = delay.maybe_snapshot([], 500, {"x": 1})
    assert delay.release(pending, 2_000, [500 + H])[1] == [({"x": 1}, False)]
    assert delay.release(pending, 2_000, [500])[1] == [({"x": 1}, True)]
    assert delay.release(pending, 2_000, [500 + H + 1])[1] == [({"x": 1}, True)]
    assert delay.release(pending, 2_000, [400, 501])[1] == [({"x": 1}, False)]


def test_out_of_order_purchases(delay):
    pending: list = []
    for ts in (0, 100, 200):
        pending = delay.maybe_snapshot(pending, ts, {"t": ts})
    purchases: list[int] = []
    for ts in (1_150, 90, 1_150, 50):  # arrive out of order, one twice
        purchases = delay.add_purchase(purchases, ts)
    assert purchases == [50, 90, 1_150]
    left, labelled = delay.release(pending, 10_000, purchases)
    assert left == []
    assert labelled == [({"t": 0}, False), ({"t": 100}, True), ({"t": 200}, False)]
    # an unsorted list is accepted too
    assert delay.release(pending, 10_000, [1_150, 50, 90])[1] == labelled


def test_partial_release_keeps_the_rest_in_order(delay):
    pending: list = []
    for ts in (0, 100, 200, 300):
        pending = delay.maybe_snapshot(pending, ts, {"t": ts})
    left, labelled = delay.release(pending, 1_150, [])
    assert [f["t"] for f, _ in labelled] == [0, 100]
    assert [t for t, _ in left] == [200, 300]


def test_pending_list_is_capped_oldest_dropped():
    delay = LabelDelay(horizon_ms=H, sample_every_ms=P, max_pending=3)
    pending: list = []
    for ts in range(0, 1_000, P):
        pending = delay.maybe_snapshot(pending, ts, {"t": ts})
    assert [t for t, _ in pending] == [700, 800, 900]
    default = LabelDelay(horizon_ms=H, sample_every_ms=P)
    assert default.max_pending == H // P + 2
    bounded: list = []
    for ts in range(0, 100 * P, P):
        bounded = default.maybe_snapshot(bounded, ts, {})
    assert len(bounded) == default.max_pending


def test_purchase_list_is_capped_and_pruned():
    delay = LabelDelay(horizon_ms=H, sample_every_ms=P, max_purchases=5)
    purchases: list[int] = []
    for ts in range(20):
        purchases = delay.add_purchase(purchases, ts)
    assert purchases == [15, 16, 17, 18, 19]
    pending = [[17, {}]]
    assert delay.prune_purchases(purchases, pending, watermark_ms=100) == [18, 19]
    assert delay.prune_purchases(purchases, [], watermark_ms=16) == [17, 18, 19]


def test_state_survives_json(delay):
    """The lists live in the user's state, which the store keeps as JSON."""
    pending = delay.maybe_snapshot([], 0, {"a": 0.5})
    pending = delay.maybe_snapshot(pending, 200, {"a": 0.25})
    stored = orjson.loads(orjson.dumps({"pending": pending, "purchases": [1_100]}))
    pending = delay.maybe_snapshot(stored["pending"], 250, {"a": 0.0})  # too soon after 200
    left, labelled = delay.release(pending, 1_201, stored["purchases"])
    assert labelled == [({"a": 0.5}, True), ({"a": 0.25}, False)] and left == []


def test_matches_a_brute_force_definition():
    rng = random.Random(7)
    delay = LabelDelay(horizon_ms=H, sample_every_ms=P)
    for _ in range(200):
        purchases_seen = sorted(rng.sample(range(5_000), rng.randrange(0, 6)))
        pending: list = []
        t = 0
        for t in sorted(rng.sample(range(3_000), 8)):
            pending = delay.maybe_snapshot(pending, t, {"t": t})
        watermark = rng.randrange(0, 6_000)
        left, labelled = delay.release(pending, watermark, purchases_seen)
        expected = [({"t": s}, not any(s < p <= s + H for p in purchases_seen)) for s, _ in pending if s + H < watermark]
        assert labelled == expected
        assert len(left) + len(labelled) == len(pending)


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        LabelDelay(horizon_ms=0, sample_every_ms=1)
    with pytest.raises(ValueError):
        LabelDelay(horizon_ms=10, sample_every_ms=20)
    with pytest.raises(ValueError):
        LabelDelay(horizon_ms=10, sample_every_ms=5, max_pending=0)
