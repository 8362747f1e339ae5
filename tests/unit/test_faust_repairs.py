"""The Faust repairs against the Faust they were written for: a Faust upgrade starts here.

The reader of skipped records is tested on the real broker (tests/integration/test_skipped_records.py);
what needs no broker is tested here.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP

from streams import faust_repairs
from streams.faust_repairs import FAUST_VERSION, check_faust_version, read_stalled_again, settle


def test_the_installed_faust_is_the_one_the_repairs_were_written_against():
    # an upgrade fails here first: read streams/faust_repairs.py against the new Faust, then move FAUST_VERSION
    assert faust.__version__ == FAUST_VERSION
    assert check_faust_version()


def test_the_drain_hook_overrides_a_method_faust_still_has():
    assert callable(getattr(faust.App, "_consumer_wait_empty", None))
    assert faust_repairs.DrainHookApp._consumer_wait_empty is not faust.App._consumer_wait_empty


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


def test_an_engine_on_a_revoked_partition_does_not_keep_its_database_locked(tmp_path):
    # Faust closes a revoked partition's RocksDB by dropping its reference; a handle kept by an
    # engine held the lock, and the partition's next assignment failed to open it
    from online_models.processor import EngineConfig, PartitionProcessor
    from streams.faust_repairs import PartitionWriter

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
