"""An event stamped ahead of the wall clock is folded in, but its partition's clock stops at the wall clock."""

from __future__ import annotations

import logging
import random

import orjson
from prometheus_client import REGISTRY

from online_models.processor import DEAD_LETTERS, EVENTS, EngineConfig, PartitionProcessor, Record
from online_models.replay import replay_history
from streams import metrics
from online_models.simulation import ShopSimulator

NOW = 1_788_307_200_000  # 2026-09-01 00:00 UTC, the wall clock when the test starts
HOUR, DAY = 3_600_000, 86_400_000
LATENESS = 300_000


def record(offset: int, user: str, ts: int, event_id: str | None = None) -> Record:
    body = {"event_id": event_id or f"e{offset}", "user_id": user, "type": "view", "ts": ts, "category": "books"}
    return Record(EVENTS, EVENTS, offset, user.encode(), orjson.dumps(body))


def dead_letters(effects: list) -> list:
    return [e for e in effects if getattr(e, "topic", None) == DEAD_LETTERS]


def test_one_event_a_day_ahead_does_not_make_the_partition_refuse_the_next_ones():
    engine = PartitionProcessor(0, {}, EngineConfig(lateness_ms=LATENESS))
    engine.process(record(0, "u1", NOW - 1000), now_ms=NOW)
    assert not dead_letters(engine.process(record(1, "u2", NOW + 23 * HOUR), now_ms=NOW + 1000))  # a bad clock upstream
    assert engine.stream_time <= NOW + 1000 and engine.watermark <= NOW + 1000 - LATENESS
    # ordinary traffic goes on, up to a few minutes late as before: none of it is refused
    letters = []
    for i in range(2, 60):
        wall = NOW + i * 1000
        letters += dead_letters(engine.process(record(i, f"u{i % 5}", wall - 120_000), now_ms=wall))
    assert letters == [] and engine.counts["events_processed"] == 60
    assert engine.counts["clock_clamped"] == 1 and engine.counts["clock_clamped_ms"] == 23 * HOUR - 1000
    # the event itself is folded in with its own time
    assert engine.state("u2").last_seen == NOW + 23 * HOUR
    # a redelivery of it is recognised, and holds the clock at the wall clock too
    assert not dead_letters(engine.process(record(60, "u2", NOW + 23 * HOUR, event_id="e1"), now_ms=NOW + 61_000))
    assert engine.counts["events_duplicate"] == 1 and engine.stream_time <= NOW + 61_000


def test_stream_time_never_passes_the_wall_clock_whatever_the_timestamps():
    rng = random.Random(5)
    engine = PartitionProcessor(0, {}, EngineConfig(lateness_ms=LATENESS))
    wall = NOW
    for i in range(2000):
        wall += rng.randrange(0, 5000)
        ahead = rng.choice((0, 0, 0, 5_000, HOUR, DAY - 1))
        engine.process(record(i, f"u{i % 17}", wall - rng.randrange(0, LATENESS) + ahead), now_ms=wall)
        assert engine.stream_time <= wall
    # every event within the allowed lateness of the wall clock was taken
    assert engine.counts["events_processed"] == 2000


def test_a_log_line_now_and_then_and_no_user_id_in_it(caplog):
    engine = PartitionProcessor(0, {}, EngineConfig())
    with caplog.at_level(logging.WARNING, logger="online_models.processor"):
        engine.process(record(0, "secret-user-7", NOW + HOUR), now_ms=NOW)
        engine.process(record(1, "secret-user-7", NOW + 2 * HOUR), now_ms=NOW + 1000)  # within the minute: counted, not logged
        engine.process(record(2, "secret-user-8", NOW + 3 * HOUR), now_ms=NOW + 61_000)
    lines = [r.getMessage() for r in caplog.records if "ahead of the wall clock" in r.getMessage()]
    assert len(lines) == 2 and "2 event(s)" in lines[1]
    assert not any("secret-user" in line for line in lines)
    assert engine.counts["clock_clamped"] == 3


def test_the_engine_counts_reach_prometheus():
    before = REGISTRY.get_sample_value("portraits_clock_clamped_total") or 0.0
    ahead_before = REGISTRY.get_sample_value("portraits_clock_clamped_ahead_seconds_total") or 0.0
    counts = PartitionProcessor(0, {}, EngineConfig()).counts
    counts.update({"clock_clamped": 2, "clock_clamped_ms": 7500})
    metrics.add_engine_counts(counts)
    assert REGISTRY.get_sample_value("portraits_clock_clamped_total") == before + 2
    assert REGISTRY.get_sample_value("portraits_clock_clamped_ahead_seconds_total") == ahead_before + 7.5
    assert not counts


def test_a_replay_of_history_is_never_ahead_so_its_portraits_are_as_before():
    history = list(ShopSimulator(n_users=30, start_ms=NOW - 40 * DAY, seed=3).history(20))
    replayed = replay_history(history)
    # the same history with the wall clock far past it: nothing can be ahead, nothing is held back
    engine = PartitionProcessor(0, {}, EngineConfig(retention_ms=0, sweep_batch=None))
    for offset, event in enumerate(history):
        engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=NOW + 400 * DAY)
    assert engine.counts["clock_clamped"] == 0
    assert {s.user_id: s.events for s in engine.states()} == {u: s.events for u, s in replayed.states.items()}
    assert engine.as_of == replayed.as_of
