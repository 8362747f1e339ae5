"""Test doubles for :class:`streams.engines.Engines`: a producer and a table writer that record what they are handed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams import faust_repairs
from streams.engines import Engines
from streams.settings import Settings

START_MS = 1788307200000  # 2026-09-01 00:00 UTC
NOW_MS = START_MS + 400 * 86_400_000


class Log:
    """What the producer and the table writer were handed, in order."""

    def __init__(self):
        self.entries: list[tuple] = []


class Producer:
    """An aiokafka producer's batch calls, every batch delivered at once."""

    def __init__(self, log: Log, partitions: int = 4):
        self.log, self.partitions, self.offsets = log, partitions, {}

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(1 << 20, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
        records = [(r.key, r.value) for r in DefaultRecordBatch(builder._build())]
        self.log.entries.append(("send", topic, partition, records))
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + len(records)
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(SimpleNamespace(offset=offset))
        return delivery


class Writer:
    """A table writer that records its writes instead of making them."""

    changelog = "portraits-portrait-state-changelog"

    def __init__(self, log: Log):
        self.log = log

    def write(self, partition, key, value, batches) -> None:
        self.log.entries.append(("write", partition, key))
        batches.add(self.changelog, key, value, partition=partition)

    def reader(self, partition) -> dict:
        return {}

    def apply_staged(self) -> None:
        pass

    def delivered(self, shipped) -> None:
        pass


def make_worker(monkeypatch) -> tuple[Engines, Log]:
    """The user engines of a worker of 4 partitions over a recording producer and table writer, and their log."""
    log = Log()
    producer = Producer(log)
    monkeypatch.setattr(faust_repairs, "aiokafka_producer", lambda app: producer)
    settings = Settings(kafka="127.0.0.1:1", partitions=4)
    return Engines(app=None, settings=settings, writer=Writer(log)), log
