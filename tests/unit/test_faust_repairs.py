"""The Faust repairs against the Faust they were written for: a Faust upgrade starts here.

The reader of skipped records is tested on the real broker (tests/integration/test_skipped_records.py);
what needs no broker is tested here.
"""

from __future__ import annotations

import asyncio
import gc
import time

import faust
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord
from faust.types import TP
from mode.utils.queues import FlowControlQueue

from streams import faust_repairs
from streams.faust_repairs import FAUST_VERSION, QuietPartitions, RepairedConsumer, check_faust_version, read_stalled_again, settle


def test_the_installed_faust_is_the_one_the_repairs_were_written_against():
    # an upgrade fails here first: read streams/faust_repairs.py against the new Faust, then move FAUST_VERSION
    assert faust.__version__ == FAUST_VERSION
    assert check_faust_version()


def test_the_drain_hook_overrides_a_method_faust_still_has():
    assert callable(getattr(faust.App, "_consumer_wait_empty", None))
    assert faust_repairs.RepairedApp._consumer_wait_empty is not faust.App._consumer_wait_empty


class _Consumer:
    """The two calls read_stalled_again makes of Faust's consumer, recorded."""

    def __init__(self, ends: dict, assigned: set):
        self.ends, self.assigned, self.seeks, self.resumed = ends, assigned, [], []

    def assignment(self):
        return set(self.assigned)

    async def highwaters(self, *partitions):
        return {tp: self.ends[tp] for tp in partitions if tp in self.ends}

    async def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def resume_partitions(self, partitions):
        self.resumed += list(partitions)


def test_a_stalled_partition_is_sought_back_to_the_first_record_its_progress_lacks():
    behind, current, fresh, revoked, moved = (TP("events", p) for p in range(5))
    consumer = _Consumer({behind: 50, current: 10, fresh: 5, revoked: 9, moved: 20}, assigned={behind, current, fresh, revoked})
    # `revoked` left: its engine is gone; `moved` has an engine but the consumer no longer holds it
    applied = {behind: 29, current: 9, fresh: None, moved: 3}
    sought = asyncio.run(read_stalled_again(consumer, [behind, current, fresh, revoked, moved], applied))
    assert sought == [behind, fresh]
    assert consumer.seeks == [(behind, 30), (fresh, 0)] and consumer.resumed == [behind, fresh]


def test_settled_offsets_let_faust_commit_past_a_hole():
    consumer = faust.App("repairs-test", broker="kafka://127.0.0.1:1").consumer
    tp = TP("events", 0)
    consumer._committed_offset[tp] = 99
    for offset in range(110, 120):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    assert consumer._new_offset(tp) is None
    asyncio.run(settle(consumer, tp, 100, 109))
    assert consumer._new_offset(tp) == 120


class _ConsumerThread:
    """What Faust's consumer asks of its aiokafka thread when it delivers records and seeks, recorded."""

    def __init__(self, assigned: set, committed: dict | None = None):
        self.assigned, self.committed = assigned, dict(committed or {})
        self.seeks, self.sought_to_start = [], []

    def highwater(self, tp):
        return 1000

    def seek(self, tp, offset):
        if tp not in self.assigned:  # as aiokafka does
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.seeks.append((tp, offset))

    async def seek_to_committed(self):
        return dict(self.committed)

    async def seek_to_beginning(self, *partitions):
        assert all(isinstance(tp, TopicPartition) for tp in partitions)  # aiokafka's own, or a TypeError
        if not set(partitions) <= self.assigned:  # as aiokafka does
            raise IllegalStateError(f"Partitions {set(partitions) - self.assigned} are not assigned")
        self.sought_to_start += partitions


def _repaired_consumer(name: str, assigned: set, committed: dict | None = None, **conf):
    """The consumer of a :class:`~streams.faust_repairs.RepairedApp` with one table, on a recording thread."""
    app = faust_repairs.RepairedApp(name, broker="kafka://127.0.0.1:1", **conf)
    app.Table("state", partitions=2, key_type=bytes, value_type=bytes)
    consumer = app.consumer
    assert isinstance(consumer, faust_repairs.RepairedConsumer)
    consumer._thread = _ConsumerThread(assigned, committed)
    return consumer


def _changelog(consumer, partition: int) -> TP:
    return TP(consumer.app.tables["state"].changelog_topic.get_topic_name(), partition)


def test_a_partition_never_committed_is_sought_to_its_start_when_faust_seeks_back_to_the_committed_offsets():
    # Faust hands fetched records to the streams and drops them at a rebalance, and seeks back to the
    # committed offsets to fetch them again; aiokafka seeks only partitions with a committed offset, so a
    # partition never committed was left past records never processed
    committed, never, zero = TP("events", 0), TP("events", 1), TP("profiles", 1)
    consumer = _repaired_consumer("repairs-refetch", {committed, never, zero}, consumer_auto_offset_reset="earliest")
    changelog = _changelog(consumer, 1)
    consumer._thread = _ConsumerThread({committed, never, zero, changelog}, {committed: 120, never: None, zero: 0, changelog: None})
    consumer._committed_offset[never] = 40  # noted in an earlier assignment; the broker has none
    asyncio.run(consumer.perform_seek())
    assert consumer._thread.sought_to_start == [never, zero]  # not the changelog: recovery places it
    assert consumer._committed_offset.get(never) is None and consumer._committed_offset[committed] == 120
    assert consumer._read_offset[never] is None and consumer._read_offset[committed] == 120
    # every record of the partition is delivered again, so Faust acknowledges and commits it
    for offset in range(0, 5):
        consumer._acked[never].append(offset)
        consumer._acked_index[never].add(offset)
    assert consumer._new_offset(never) == 5


def test_no_partition_is_sought_to_its_start_when_the_assignment_changed_or_the_consumer_starts_at_the_end():
    never, moved = TP("events", 1), TP("events", 2)
    consumer = _repaired_consumer("repairs-refetch-moved", {never}, consumer_auto_offset_reset="earliest")
    assert asyncio.run(faust_repairs.seek_uncommitted_to_start(consumer, {never: None, moved: None})) == []
    latest = _repaired_consumer("repairs-refetch-latest", {never}, {never: None}, consumer_auto_offset_reset="latest")
    asyncio.run(latest.perform_seek())
    assert latest._thread.sought_to_start == []


def _fetched(tp: TP, offsets) -> list:
    return [ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ()) for offset in offsets]


async def _deliver(consumer, records: dict, active: set, on_delivered=lambda tp, offset: None) -> list:
    """What ``consumer.getmany`` delivers of ``records`` fetched while ``active`` was the active set."""

    async def fetched(timeout):
        return records, active

    consumer._wait_next_records = fetched
    delivered = []
    async for tp, message in consumer.getmany(timeout=1.0):
        delivered.append((tp, message.offset))
        on_delivered(tp, message.offset)
    return delivered


def test_records_fetched_for_a_partition_paused_meanwhile_are_fetched_again():
    # an assignment activates every partition, the fetcher fetches, then the app pauses them
    # until the tables recover: Faust skipped what was fetched for them, and a partition with no
    # committed offset (or a standby changelog) was never sought back to it
    consumer = _repaired_consumer("repairs-skipped", set())
    source, paused, standby = TP("events", 0), TP("events", 1), _changelog(consumer, 1)
    consumer._thread.assigned = {source, paused, standby}
    records = {source: _fetched(source, range(10, 13)), paused: _fetched(paused, range(0, 3)), standby: _fetched(standby, range(0, 4))}
    delivered = asyncio.run(_deliver(consumer, records, active={source}))
    assert delivered == [(source, 10), (source, 11), (source, 12)]
    assert sorted(consumer._thread.seeks) == [(paused, 0), (standby, 0)]


def test_a_partition_paused_in_the_middle_of_a_batch_delivers_nothing_after_its_first_skipped_record():
    first, second = TP("events", 0), TP("events", 1)
    consumer = _repaired_consumer("repairs-paused-midway", {first, second})
    active = {first, second}

    def pause_first_then_resume(tp, offset):  # in turn: first 5, second 20, first 6 (paused), second 21, first 7 (active)
        if (tp, offset) == (first, 5):
            active.discard(first)
        elif (tp, offset) == (second, 21):
            active.add(first)

    records = {first: _fetched(first, range(5, 9)), second: _fetched(second, range(20, 23))}
    delivered = asyncio.run(_deliver(consumer, records, active, pause_first_then_resume))
    assert [offset for tp, offset in delivered if tp == first] == [5]  # 7 and 8 wait for 6
    assert [offset for tp, offset in delivered if tp == second] == [20, 21, 22]
    assert consumer._thread.seeks == [(first, 6)]


def test_a_batch_fetched_before_the_flow_stopped_is_sought_back_before_the_committed_offsets():
    # a partition with no committed offset was left where the skipped batch ended
    consumer = _repaired_consumer("repairs-flow-stopped", set())
    committed, never, changelog = TP("events", 0), TP("events", 1), _changelog(consumer, 1)
    consumer._thread = _ConsumerThread({committed, never, changelog}, {committed: 40, never: None, changelog: None})
    consumer.stop_flow()
    records = {committed: _fetched(committed, [40, 41]), never: _fetched(never, [0, 1]), changelog: _fetched(changelog, [7])}
    assert asyncio.run(_deliver(consumer, records, active={committed, never, changelog})) == []
    assert sorted(consumer._thread.seeks) == [(committed, 40), (never, 0), (changelog, 7)]
    # then Faust's own seek to the committed offsets, with the partition never committed sought to its start
    assert consumer._committed_offset[committed] == 40 and consumer._thread.sought_to_start == [never]


def test_nothing_is_sought_back_once_the_generation_changed_or_for_a_partition_no_longer_assigned():
    kept, moved = TP("events", 0), TP("events", 1)
    consumer = _repaired_consumer("repairs-generation", {kept})
    records = {kept: _fetched(kept, [3]), moved: _fetched(moved, [7])}
    asyncio.run(_deliver(consumer, records, active=set()))
    assert consumer._thread.seeks == [(kept, 3)]  # `moved` is not assigned: left alone
    consumer._thread.seeks.clear()

    def new_generation(tp, offset):
        consumer.app.consumer_generation_id += 1

    delivered = asyncio.run(_deliver(consumer, {kept: _fetched(kept, [3, 4]), moved: _fetched(moved, [7])}, {kept}, new_generation))
    assert delivered == [(kept, 3)] and consumer._thread.seeks == []


def _after_a_jump_and_a_hole(consumer) -> TP:
    """The bookkeeping of a partition seen in the scale-out test: committed at 466, records 466 to 480
    acknowledged, then a jump to 527 (Faust's gap: 467 to 527), the hole 481 to 526 read directly and
    settled, and records 527 to 995 acknowledged."""
    tp = TP("events", 1)
    consumer._committed_offset[tp] = 466
    for offset in [*range(466, 481), *range(527, 996)]:
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    asyncio.run(consumer._add_gap(tp, 467, 527))
    asyncio.run(settle(consumer, tp, 481, 526))
    return tp


def test_a_commit_passes_offsets_both_acknowledged_and_in_a_gap_at_once():
    plain = faust.App("repairs-plain", broker="kafka://127.0.0.1:1").consumer
    tp = _after_a_jump_and_a_hole(plain)
    assert plain._new_offset(tp) == 468  # Faust alone: one offset per commit up to 481
    consumer = faust_repairs.RepairedApp("repairs-fold", broker="kafka://127.0.0.1:1").consumer
    tp = _after_a_jump_and_a_hole(consumer)
    assert consumer._new_offset(tp) == 996
    assert not consumer._acked[tp] and not consumer._gap[tp] and not consumer._acked_index[tp]
    # nor is the record that ends a later jump (inside Faust's gap and acknowledged)
    consumer._committed_offset[tp] = 996
    for offset in (996, 998, 999):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    asyncio.run(consumer._add_gap(tp, 997, 998))
    assert consumer._new_offset(tp) == 1000


def test_an_engine_on_a_revoked_partition_does_not_keep_its_database_locked(tmp_path):
    # Faust closes a revoked partition's RocksDB by dropping its reference; a handle kept by an
    # engine held the lock, and the partition's next assignment failed to open it
    from online_models.processor import EngineConfig, PartitionProcessor
    from streams.faust_repairs import PartitionWriter

    # Earlier tests' cyclic garbage is collected first: Faust's revoke runs a full collection while its
    # own frame still holds the handle, and a finalizer failing there leaves pytest an unraisable-exception
    # record whose traceback pins that frame (and the lock) until the test ends
    gc.collect()
    app = faust.App("repairs-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("state", partitions=2, key_type=bytes, value_type=bytes)
    writer = PartitionWriter(table)
    engine = PartitionProcessor(0, writer.reader(0), EngineConfig())
    assert list(engine.states()) == []
    table.data.revoke_partitions(table, {TP(table.changelog_topic.get_topic_name(), 0)})
    writer.db(0).put(b"u1", b"{}")  # the next assignment opens it again
    assert engine.store.get(b"u1") == b"{}"


def test_table_writes_are_staged_then_applied_in_order_in_one_batch_per_partition(tmp_path):
    from streams.faust_repairs import PartitionWriter

    class Changelog:
        def __init__(self):
            self.records = []

        def add(self, topic, key, value, *, partition):
            self.records.append((topic, partition, key, value))

    app = faust.App("repairs-staged", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("state", partitions=2, key_type=bytes, value_type=bytes)
    writer, changelog = PartitionWriter(table), Changelog()
    writer.db(0).put(b"gone", b"old")
    writer.write(0, b"u1", b"first", changelog)
    writer.write(0, b"u1", b"second", changelog)
    writer.write(1, b"u2", b"other", changelog)
    writer.write(0, b"gone", None, changelog)
    assert writer.db(0).get(b"u1") is None and writer.db(0).get(b"gone") == b"old"  # staged, not applied yet
    writer.apply_staged()
    assert writer.db(0).get(b"u1") == b"second" and writer.db(0).get(b"gone") is None
    assert writer.db(1).get(b"u2") == b"other"
    name = table.changelog_topic.get_topic_name()
    assert changelog.records == [(name, 0, b"u1", b"first"), (name, 0, b"u1", b"second"), (name, 1, b"u2", b"other"), (name, 0, b"gone", None)]
    writer.apply_staged()  # nothing staged: nothing changes
    assert writer.db(0).get(b"u1") == b"second"


def test_quiet_partitions_are_found_one_by_one_whatever_the_others_deliver():
    quiet = QuietPartitions()
    busy, still, profiles = TP("events", 0), TP("events", 1), TP("profiles", 1)
    for second in range(0, 30, 2):  # events-0 delivers every 2 s; events-1 and profiles-1 once, at 0
        quiet.delivered("events", 0, now=float(second))
        if second == 0:
            quiet.delivered("events", 1, now=0.0)
            quiet.delivered("profiles", 1, now=0.0)
    assert quiet.quiet([busy, still, profiles], now=29.0, after=20.0) == [still, profiles]
    assert quiet.quiet([busy, still, profiles], now=30.0, after=20.0) == []  # looked at: fresh again
    assert quiet.quiet([still], now=50.0, after=20.0) == [still]  # and looked at once per 20 s


def test_a_wait_of_the_group_and_a_partition_gone_are_no_silence():
    quiet = QuietPartitions()
    tp = TP("events", 3)
    quiet.delivered("events", 3, now=0.0)
    quiet.waited(now=25.0)  # the group waited for the models until 25 s
    assert quiet.quiet([tp], now=30.0, after=20.0) == []
    assert quiet.quiet([tp], now=45.0, after=20.0) == [tp]
    quiet.forget(3)  # moved away and back: first seen again
    assert quiet.quiet([tp], now=100.0, after=20.0) == []


# ------------------------------------------------------------------ a record's hand-over


class HandingConsumer:
    """What RepairedConsumer._hand_over reads of a consumer; ``wait_first`` records its calls and races like mode's."""

    _hand_over = RepairedConsumer._hand_over

    def __init__(self):
        self.suspend_flow, self._stopped, self._crashed = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.waited = 0

    async def wait_first(self, *coros):
        self.waited += 1
        tasks = [asyncio.ensure_future(c) for c in coros]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def handed(box: list, ready=None, sink=None):
    try:
        if ready is not None:
            await ready
        box.append("record")
    finally:
        if sink is not None:
            sink.append("hand-over ended")


def test_a_record_that_goes_straight_in_needs_no_wait():
    async def main():
        consumer, box = HandingConsumer(), []
        await consumer._hand_over(handed(box))
        return consumer.waited, box

    assert asyncio.run(main()) == (0, ["record"])


def test_a_blocked_hand_over_finishes_under_the_race_once_unblocked():
    async def main():
        consumer, box = HandingConsumer(), []
        ready = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, ready.set_result, None)
        await consumer._hand_over(handed(box, ready))
        return consumer.waited, box

    assert asyncio.run(main()) == (1, ["record"])


def test_a_blocked_hand_over_is_cut_short_when_the_flow_stops_as_faust_cuts_it():
    async def main():
        consumer, box, sink = HandingConsumer(), [], []
        never = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
        await consumer._hand_over(handed(box, never, sink))
        return consumer.waited, box, sink

    # the record is not handed over, and the hand-over's own cleanup ran (the cancellation reached it)
    assert asyncio.run(main()) == (1, [], ["hand-over ended"])


def test_with_the_flow_suspended_the_hand_over_races_from_its_first_step():
    async def main():
        consumer, box = HandingConsumer(), []
        consumer.suspend_flow.set()
        await consumer._hand_over(handed(box))
        return consumer.waited

    assert asyncio.run(main()) == 1


# ------------------------------------------------------------------ the queues at a resume


def test_a_resume_of_a_running_flow_keeps_the_queues_and_one_ending_a_suspension_clears_them():
    async def main():
        flow = faust_repairs.ResumeKeepingFlowControl()
        changelog = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        stream = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()  # ends the initial suspension
        changelog.put_nowait("standby record")
        stream.put_nowait("stream event")
        flow.resume()  # the recovery resumes again once the standbys fetch
        kept = (changelog.qsize(), stream.qsize(), flow.is_active())
        flow.suspend()  # a rebalance: what was fetched before it goes at the next resume
        flow.resume()
        return kept, (changelog.qsize(), stream.qsize(), flow.is_active())

    assert asyncio.run(main()) == ((1, 1, True), (0, 0, True))


def test_the_app_and_its_queues_use_the_resume_keeping_flow_control():
    app = faust_repairs.RepairedApp("flow-control-test", broker="kafka://127.0.0.1:1")
    assert isinstance(app.flow_control, faust_repairs.ResumeKeepingFlowControl)
    assert app.tables.changelog_queue._flow_control is app.flow_control


def test_the_lean_monitor_keeps_per_record_only_what_faust_reads():
    """Faust's stall warnings read ``stream_inbound_time`` (aiokafka driver, ``verify_event_path``); the lean
    monitor keeps that and none of the default monitor's per-record counts, and a repaired app uses it."""
    import inspect

    from faust.transport.drivers import aiokafka as driver

    assert "monitor.stream_inbound_time" in inspect.getsource(driver.AIOKafkaConsumerThread.verify_event_path)
    app = faust_repairs.RepairedApp("lean-monitor-test", broker="kafka://127.0.0.1:1")
    monitor = app.monitor
    assert isinstance(monitor, faust_repairs.LeanMonitor)
    tp = TP("events", 3)
    monitor.on_message_in(tp, 7, object())
    state = monitor.on_stream_event_in(tp, 7, object(), object())
    monitor.on_stream_event_out(tp, 7, object(), object(), state)
    monitor.on_message_out(tp, 7, object())
    assert tp in monitor.stream_inbound_time
    assert monitor.messages_received_total == monitor.events_total == 0 and not monitor.events_runtime
    # a stream that took an event just now is not reported stalled: the reading Faust does, by hand
    assert time.monotonic() - monitor.stream_inbound_time[tp] < 5


def test_the_raw_schema_hands_the_records_bytes_over_as_they_are():
    """The worker's agents read each record's raw message; Faust's decoding is skipped, with the same event."""
    from faust.types import Message

    from streams.faust_repairs import RawSchema

    app = faust_repairs.RepairedApp("raw-schema-test", broker="kafka://127.0.0.1:1", key_serializer="raw", value_serializer="raw")
    message = Message("events", 2, 41, 1_700_000_000.0, 0, {}, b"u1", b'{"x": 1}', None)
    default = asyncio.run(faust.Schema().compile(app)(message))
    raw = asyncio.run(RawSchema().compile(app)(message))
    assert (raw.key, raw.value, raw.message) == (default.key, default.value, default.message) == (b"u1", b'{"x": 1}', message)
    tombstone = Message("profiles", 0, 1, 1_700_000_000.0, 0, {}, b"u1", None, None)
    assert asyncio.run(RawSchema().compile(app)(tombstone)).value is None
