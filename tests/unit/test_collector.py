"""The worker's garbage-collector policy: survivors of full collections frozen, thawed on a schedule, pauses timed."""

import gc
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from streams.collector import CollectorPolicy


class FakeCollector:
    """Records what the policy asks of the ``gc`` module."""

    def __init__(self):
        self.callbacks = []
        self.calls = []

    def freeze(self):
        self.calls.append("freeze")

    def unfreeze(self):
        self.calls.append("unfreeze")


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def collect(policy, generation, *, took, pause_clock):
    policy.on_collection("start", {"generation": generation})
    pause_clock.now += took
    policy.on_collection("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


def pauses_observed(generation):
    return REGISTRY.get_sample_value("portraits_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_full_collections_freeze_their_survivors_until_the_thaw_interval_passes():
    collector, clock, pause_clock = FakeCollector(), Clock(), Clock()
    policy = CollectorPolicy(thaw_interval_s=600, collector=collector, clock=clock, pause_clock=pause_clock)
    policy.install()
    policy.install()
    assert collector.callbacks == [policy.on_collection]  # installed once
    collect(policy, 0, took=0.001, pause_clock=pause_clock)
    collect(policy, 1, took=0.002, pause_clock=pause_clock)
    assert collector.calls == []  # young collections walk little: nothing to set aside
    clock.now = 10
    collect(policy, 2, took=0.1, pause_clock=pause_clock)
    clock.now = 599
    collect(policy, 2, took=0.01, pause_clock=pause_clock)
    assert collector.calls == ["freeze", "freeze"]
    clock.now = 600  # time to thaw: the next full collection walks everything once
    collect(policy, 2, took=0.01, pause_clock=pause_clock)
    clock.now = 700
    collect(policy, 2, took=0.3, pause_clock=pause_clock)
    clock.now = 1199
    collect(policy, 2, took=0.01, pause_clock=pause_clock)
    clock.now = 1200
    collect(policy, 2, took=0.01, pause_clock=pause_clock)
    assert collector.calls == ["freeze", "freeze", "unfreeze", "freeze", "freeze", "unfreeze"]


def test_a_zero_interval_thaws_after_every_full_collection_as_python_does():
    collector, clock, pause_clock = FakeCollector(), Clock(), Clock()
    policy = CollectorPolicy(thaw_interval_s=0, collector=collector, clock=clock, pause_clock=pause_clock)
    policy.install()
    for _ in range(3):
        collect(policy, 2, took=0.05, pause_clock=pause_clock)
    assert collector.calls == ["unfreeze"] * 3


def test_every_pause_is_timed_by_generation_and_observed_at_the_next_report():
    collector, pause_clock = FakeCollector(), Clock()
    policy = CollectorPolicy(thaw_interval_s=600, collector=collector, clock=Clock(), pause_clock=pause_clock)
    before = [pauses_observed(g) for g in range(3)]
    for generation in (0, 0, 1, 2):
        collect(policy, generation, took=0.004, pause_clock=pause_clock)
    # observed by the report, not in the collector's callback (where a metric's lock could be held already)
    assert [pauses_observed(g) - b for g, b in zip(range(3), before)] == [0, 0, 0]
    policy.report()
    assert [pauses_observed(g) - b for g, b in zip(range(3), before)] == [2, 1, 1]
    policy.report()
    assert [pauses_observed(g) - b for g, b in zip(range(3), before)] == [2, 1, 1]


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="thaw_interval_s"):
        CollectorPolicy(thaw_interval_s=-1)


def test_with_the_real_collector_a_full_collection_leaves_the_heap_frozen_and_a_thaw_gives_it_back():
    policy = CollectorPolicy(thaw_interval_s=3600)
    policy.install()
    try:
        kept = [[i] for i in range(1000)]  # tracked containers that survive
        frozen_before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() >= frozen_before + len(kept)
        policy.thawed_at -= 3600
        gc.collect()
        assert gc.get_freeze_count() == 0  # thawed: the next full collection walks everything
        gc.collect()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        policy.uninstall()
    assert policy.on_collection not in gc.callbacks and gc.get_freeze_count() == 0
    policy.uninstall()  # again (as at exit): nothing more to do


def test_a_worker_exits_without_objects_left_frozen():
    script = """
import gc
from datasketches import kll_floats_sketch
from streams.collector import CollectorPolicy

class Holder:
    pass

holder = Holder()
holder.cycle, holder.sketch = holder, kll_floats_sketch(200)
CollectorPolicy(thaw_interval_s=600).install()
gc.collect()  # a full collection: its survivors (the sketch among them) are frozen
assert gc.get_freeze_count() > 0
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr
