"""The association aggregator's bookkeeping (streams/associations.py) with a fake broker: each basket record
counted once, whatever Faust hands over twice, skips or stops handing over."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from types import SimpleNamespace

import orjson
import pytest

import streams.associations as aggregation
from online_models.associations import AssociationCounts
from streams.associations import Aggregator
from streams.settings import Settings

TOPIC = "baskets"
START_MS = 1_788_307_200_000


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def tp(self):
        return (self.topic, self.partition)


def basket(i: int, categories=("baby", "health")) -> bytes:
    return orjson.dumps({"id": f"b{i % 7}" if i >= 100 else f"b{i}", "ts": START_MS + i * 60_000, "categories": list(categories), "items": []})


class FakeReader:
    """The broker's baskets partition: ``log`` by offset."""

    def __init__(self, log: list[bytes]):
        self.log = log
        self.reads: list[tuple[int, int]] = []

    async def log_start(self, topic, partition):
        return 0

    async def log_end(self, topic, partition):
        return len(self.log)

    async def read(self, topic, partition, first, last):
        self.reads.append((first, last))
        for offset in range(first, last + 1):
            yield Message(topic, partition, offset, self.log[offset])

    async def stop(self):
        pass


class FakeFeed:
    def __init__(self, latest: dict[bytes, bytes]):
        self.latest = latest
        self.caught_up = threading.Event()
        self.caught_up.set()

    def ensure_started(self):
        pass


@pytest.fixture
def settled(monkeypatch):
    """The ranges registered as handled in Faust's commit bookkeeping."""
    ranges = []

    async def settle(consumer, tp, first, last):
        ranges.append((first, last))

    monkeypatch.setattr(aggregation, "settle", settle)
    return ranges


def aggregator_over(log: list[bytes], latest: dict[bytes, bytes] | None = None) -> Aggregator:
    aggregator = Aggregator(Settings(kafka="127.0.0.1:1"))
    aggregator.feed = FakeFeed(latest or {})
    aggregator.reader = FakeReader(log)
    return aggregator


def app(held: bool = True):
    loop = asyncio.get_running_loop()
    assignor = SimpleNamespace(assigned_actives=lambda: [SimpleNamespace(topic=TOPIC, partition=0)] if held else [])
    return SimpleNamespace(loop=loop, consumer=None, assignor=assignor)


def test_skipped_records_are_read_directly_and_redelivered_ones_skipped(settled):
    log = [basket(i) for i in range(10)]
    aggregator = aggregator_over(log)

    async def run():
        the_app = app()
        for offset in (2, 3, 3, 7, 8, 5, 9):  # Faust starts past the first records, hands one twice, skips, goes back
            await aggregator.handle(Message(TOPIC, 0, offset, log[offset]), the_app)

    asyncio.run(run())
    counts = aggregator.counts
    assert counts.offset == 9 and counts.counted == 10 and counts.duplicates == 0
    assert aggregator.reader.reads == [(0, 1), (4, 6)] and settled == [(0, 1), (4, 6)]
    state, summary = aggregator.snapshot()
    assert orjson.loads(summary)["categories"]["pairs"] == [["baby", "health", 10]]
    assert aggregator.snapshot() is None  # nothing new since


def test_a_new_owner_resumes_from_the_snapshot_and_its_offset(settled):
    log = [basket(i) for i in range(12)] + [basket(100), basket(101)]  # the last two: baskets sent again after a crash
    first = aggregator_over(log)

    async def first_owner():
        for offset in range(6):
            await first.handle(Message(TOPIC, 0, offset, log[offset]), app())

    asyncio.run(first_owner())
    state, _ = first.snapshot()
    first.apply(6, log[6])  # counted after the snapshot, then the worker is gone
    second = aggregator_over(log, {b"state": state})

    async def second_owner():  # Faust's committed offset lies past the snapshot's
        for offset in range(9, len(log)):
            await second.handle(Message(TOPIC, 0, offset, log[offset]), app())

    asyncio.run(second_owner())
    assert second.reader.reads == [(6, 8)]
    counts = second.counts
    assert counts.counted == 12 and counts.duplicates == 2 and counts.offset == len(log) - 1
    expected = AssociationCounts(counts.config)
    for raw in log:
        expected.add(orjson.loads(raw))
    assert counts.summary() == expected.summary()


def test_a_partition_faust_stops_handing_over_is_read_to_its_end(settled, monkeypatch):
    log = [basket(i) for i in range(5)]
    aggregator = aggregator_over(log)

    async def run():
        the_app = app()
        await aggregator.handle(Message(TOPIC, 0, 0, log[0]), the_app)
        assert await aggregator.catch_up(the_app, TOPIC) == 0  # not stalled yet
        monkeypatch.setattr(aggregation, "STALL_SECONDS", 0.0)
        assert await aggregator.catch_up(app(held=False), TOPIC) == 0  # not this worker's partition
        assert await aggregator.catch_up(the_app, TOPIC) == 4
        assert await aggregator.catch_up(the_app, TOPIC) == 0
        await aggregator.handle(Message(TOPIC, 0, 3, log[3]), the_app)  # delivered late after all: counted once

    asyncio.run(run())
    assert aggregator.counts.counted == 5 and aggregator.counts.offset == 4 and settled == []


def test_a_malformed_record_is_skipped_and_the_rest_counted(settled):
    log = [basket(0), b"{not json", orjson.dumps({"id": "x", "ts": "later"}), orjson.dumps([1]), basket(1)]
    aggregator = aggregator_over(log)

    async def run():
        for offset, raw in enumerate(log):
            await aggregator.handle(Message(TOPIC, 0, offset, raw), app())

    asyncio.run(run())
    assert aggregator.counts.counted == 2 and aggregator.counts.offset == 4
