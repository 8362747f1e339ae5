"""The worker's user engines between records: when the timer flushes a partition, and the profiles a partition
reads before its first record after an assignment."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import orjson
from prometheus_client import REGISTRY

from online_models.partition_engine import PROGRESS_KEY
from online_models.processor import EVENTS, Record
from streams.engine_group import FLUSH_SLICES
from streams.metrics import RECORD_AGE_EVERY
from tests.unit.engine_doubles import NOW_MS, START_MS


def test_while_catching_up_a_busy_partition_is_flushed_by_the_timer_only_after_the_interval_behind(worker):
    engines, _ = worker
    engines.backlog = lambda: 10**9  # far more unread records than the pace's rate could read in its horizon
    for partition in (0, 1, 2):
        engine = engines.engine(partition)
        engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(
            {"event_id": f"e{partition}", "user_id": "u1", "type": "view", "ts": START_MS})), now_ms=NOW_MS)
        engines.flushed_at[partition] = 100.5
    engines.fed_at.update({0: 129.9, 1: 110.0, 2: 129.0})
    due = dict(active={0, 1, 2}, interval=1.0, behind_interval=30.0)
    assert engines.pace.catching_up(engines.backlog())
    # partition 1 is idle, 2 had its last record a second ago; 0 is busy and last wrote 29.5 s ago
    assert engines.due_for_timed_flush(now=130.0, **due) == [1, 2]
    engines.fed_at[0] = 130.8
    assert engines.due_for_timed_flush(now=130.9, **due) == [0, 1, 2]  # 30.4 s since partition 0 last wrote
    assert engines.due_for_timed_flush(now=130.9, **{**due, "active": {0}}) == [0]
    engines.backlog = lambda: 0  # caught up: the ones that wrote an interval ago or more, and the share that wrote longest ago
    engines.flushed_at[0] = 130.9
    assert engines.due_for_timed_flush(now=131.0, **due) == [1, 2]


def test_live_the_timer_writes_a_share_of_the_partitions_at_each_tick_each_about_once_an_interval(worker):
    engines, _ = worker
    engines.backlog = lambda: 0
    partitions = list(range(8))
    for partition in partitions:
        engines.engine(partition).process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(
            {"event_id": f"e{partition}", "user_id": "u1", "type": "view", "ts": START_MS})), now_ms=NOW_MS)
        engines.flushed_at[partition] = 100.0  # every partition wrote at the same instant
    tick = 1.0 / FLUSH_SLICES
    written: dict[int, list[float]] = {p: [] for p in partitions}
    for n in range(1, 4 * FLUSH_SLICES + 1):
        now = 100.0 + n * tick
        due = engines.due_for_timed_flush(set(partitions), now=now, interval=1.0, behind_interval=30.0)
        assert len(due) == len(partitions) // FLUSH_SLICES  # a share each tick, never all at once
        for partition in due:
            written[partition].append(now)
            engines.flushed_at[partition] = now  # as the flush does; the partition holds changes again by the next tick
    for partition, times in written.items():  # each partition about once an interval
        assert len(times) >= 3 and all(later - earlier <= 1.0 + 1e-9 for earlier, later in zip(times, times[1:]))


class Skipped:
    """The broker's records of each topic partition, as the hole reader reads them."""

    def __init__(self, records: dict[tuple[str, int], list]):
        self.records = records

    async def log_start(self, topic, partition):
        return 0

    async def log_end(self, topic, partition):
        return len(self.records.get((topic, partition), []))

    async def read(self, topic, partition, first, last):
        for record in self.records.get((topic, partition), [])[first : last + 1]:
            yield record


def test_a_partition_reads_its_profiles_to_the_end_before_its_first_record_after_an_assignment(worker):
    engines, _ = worker
    profiles, events = engines.settings.topic("profiles"), engines.settings.topic("events")
    profile = {"user_id": "u1", "ts": START_MS - 1000, "gender": "f", "birth_year": 1994}
    on_broker = [SimpleNamespace(topic=profiles, partition=2, offset=0, key=b"u1", value=orjson.dumps(profile))]
    engines.skipped = Skipped({(profiles, 2): on_broker})
    engines.profiles_unread.add(2)
    view = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": START_MS}
    message = SimpleNamespace(topic=events, partition=2, offset=0, key=b"u1", value=orjson.dumps(view))
    asyncio.run(engines.handle(message))
    state = engines.engine(2).state("u1")
    assert state.events == 1 and state.profile_ts == profile["ts"] and state.profile["gender"] == "f"
    assert engines.engine(2).applied_offset(profiles) == 0 and not engines.profiles_unread
    # Faust's own delivery of the same profile afterwards is covered by the progress: skipped
    again = SimpleNamespace(topic=profiles, partition=2, offset=0, key=b"u1", value=orjson.dumps(profile))
    asyncio.run(engines.handle(again))
    assert engines.engine(2).counts["records_skipped"] == 1


def test_a_flush_of_many_partitions_waits_for_kafka_twice_and_each_progress_follows_its_facts_and_states(worker):
    engines, log = worker
    partitions = (0, 1, 2, 3)

    async def run() -> int:
        for partition in partitions:
            engine = engines.engine(partition)
            for offset in range(5):
                event = {"event_id": f"e{partition}-{offset}", "user_id": f"u{partition}-{offset % 3}", "type": "add_to_cart",
                         "ts": START_MS + offset * 60_000, "item_id": f"i{offset}", "category": "snacks", "price": 5}
                effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)),
                                         now_ms=NOW_MS)
                await engines.execute(partition, effects, write_follows=engine.unflushed)
        assert all(engines.held_facts.get(p) for p in partitions)  # the facts wait for each partition's write
        outbox = await engines.outbox()
        deliver = outbox.deliver

        async def logged_deliver():
            log.entries.append(("deliver",))
            await deliver()

        outbox.deliver = logged_deliver
        start = len(log.entries)
        await engines.flush()
        await engines.flush([])  # nothing to flush: no observation
        return start

    observed = REGISTRY.get_sample_value("portraits_flush_seconds_count", {"engines": "portraits"}) or 0.0
    start = asyncio.run(run())
    assert REGISTRY.get_sample_value("portraits_flush_seconds_count", {"engines": "portraits"}) == observed + 1
    flushed = log.entries[start:]
    waits = [i for i, entry in enumerate(flushed) if entry[0] == "deliver"]
    assert len(waits) == 2
    facts_sent = [i for i, entry in enumerate(flushed) if entry[0] == "send" and entry[1] == "item-facts"]
    progress = {entry[1]: i for i, entry in enumerate(flushed) if entry[0] == "write" and entry[2] == PROGRESS_KEY}
    states = [(entry[1], i) for i, entry in enumerate(flushed) if entry[0] == "write" and entry[2] != PROGRESS_KEY]
    assert sorted(progress) == list(partitions) and {p for p, _ in states} == set(partitions)
    assert len(states) == 3 * len(partitions)  # each changed user written once
    # every partition's facts leave and are confirmed before any state is written; every state before any progress record
    assert facts_sent and waits[0] < min(facts_sent) and max(facts_sent) < min(i for _, i in states)
    assert max(i for _, i in states) < waits[1] < min(progress.values())
    assert not engines.held_facts.get(0) and all(engines.flushed_at[p] > 0 for p in partitions)


def test_every_sixteenth_record_handled_shows_its_age_since_its_kafka_timestamp(worker):
    engines, _ = worker
    engines.skipped = Skipped({})  # the broker holds the partition from offset 0
    events = engines.settings.topic("events")
    labels = {"engines": "portraits"}
    count = REGISTRY.get_sample_value("portraits_record_age_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("portraits_record_age_seconds_sum", labels) or 0.0
    sent_at = time.time() - 2.0  # each record waited two seconds or more

    async def run():
        for offset in range(2 * RECORD_AGE_EVERY):
            view = {"event_id": f"e{offset}", "user_id": "u1", "type": "view", "ts": START_MS + offset}
            await engines.handle(SimpleNamespace(topic=events, partition=1, offset=offset, key=b"u1",
                                                 value=orjson.dumps(view), timestamp=sent_at))

    asyncio.run(run())
    assert REGISTRY.get_sample_value("portraits_record_age_seconds_count", labels) == count + 2
    assert 4.0 <= REGISTRY.get_sample_value("portraits_record_age_seconds_sum", labels) - total < 4.0 + 60


def _view(partition: int, offset: int) -> SimpleNamespace:
    """A view of the partition's user, as a message of the events topic."""
    event = {"event_id": f"e{partition}-{offset}", "user_id": f"u{partition}", "type": "view", "ts": START_MS + offset}
    return SimpleNamespace(topic=EVENTS, offset=offset, key=event["user_id"].encode(), value=orjson.dumps(event))


def test_a_publication_shows_how_long_the_first_change_it_covers_waited(worker):
    engines, _ = worker
    labels = {"engines": "portraits"}
    count = REGISTRY.get_sample_value("portraits_publication_wait_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("portraits_publication_wait_seconds_sum", labels) or 0.0

    async def run():
        await engines.apply(engines.engine(1), EVENTS, _view(1, 0))
        first = engines.unpublished_since[1]
        await engines.apply(engines.engine(1), EVENTS, _view(1, 1))  # a later change does not move the start of the wait
        assert engines.unpublished_since[1] == first
        engines.unpublished_since[1] = first - 2.0  # as if the change had waited two seconds
        await engines.publish()
        assert 1 not in engines.unpublished_since
        await engines.publish()  # nothing changed since: nothing observed

    asyncio.run(run())
    assert REGISTRY.get_sample_value("portraits_publication_wait_seconds_count", labels) == count + 1
    assert 2.0 <= REGISTRY.get_sample_value("portraits_publication_wait_seconds_sum", labels) - total < 2.0 + 60
