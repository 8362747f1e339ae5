"""Records gathered in whole batches per topic partition, and the outbox that watches their delivery.

The producer here records the batches it is handed (built with aiokafka's own batch builder);
the real broker path is covered by every integration test, since the worker sends all its
records this way.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from streams.record_batches import Outbox, RecordBatches


class _Producer:
    """``create_batch``, ``partitions_for`` and ``send_batch`` of an aiokafka producer, recorded."""

    def __init__(self, partitions: int = 8, batch_bytes: int = 16384):
        self.partitions, self.batch_bytes = partitions, batch_bytes
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []
        self.deliveries: list[asyncio.Future] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0)

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send_batch(self, builder: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future:
        records = [(r.key, r.value) for r in DefaultRecordBatch(builder._build())]
        self.sent.append((topic, partition, records))
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        return delivery


def test_keys_land_where_every_other_kafka_client_puts_them():
    # the portraits topic is compacted: a key must always go to one partition, whoever sends it
    async def run():
        batches = RecordBatches(_Producer(partitions=8))
        await batches.know(["portraits"])
        return [batches.partition_for("portraits", f"u{i:05d}".encode()) for i in range(500)]

    # Java's default partitioner, with kafka-python's own murmur2: toPositive(murmur2(key)) % partitions
    expected = [(kafka_python_murmur2(f"u{i:05d}".encode()) & 0x7FFFFFFF) % 8 for i in range(500)]
    assert asyncio.run(run()) == expected
    assert len(set(expected)) == 8


def test_remembered_placements_stay_those_of_the_partitioner(monkeypatch):
    # keys are placed once and remembered; asked again (also after the memory was emptied) they land where they did
    monkeypatch.setattr("streams.record_batches.MAX_PLACED_KEYS", 64)

    async def run():
        batches = RecordBatches(_Producer(partitions=8))
        await batches.know(["portraits", "item-facts"])
        keys = [f"u{i:05d}".encode() for i in range(200)]
        return [[batches.partition_for(topic, key) for key in keys for topic in ("portraits", "item-facts")] for _ in range(3)]

    expected = [(kafka_python_murmur2(f"u{i:05d}".encode()) & 0x7FFFFFFF) % 8 for i in range(200) for _ in range(2)]
    assert asyncio.run(run()) == [expected] * 3


def test_records_of_a_partition_keep_their_order_across_full_batches():
    async def run():
        producer = _Producer(partitions=2, batch_bytes=2048)
        batches = RecordBatches(producer)
        await batches.know(["changelog"])
        for i in range(40):
            batches.add("changelog", f"k{i}".encode(), b"x" * 200, partition=i % 2)
        assert batches.pending
        shipped = await batches.ship()
        assert not batches.pending
        return producer, shipped

    producer, shipped = asyncio.run(run())
    assert len(producer.sent) > 2  # 20 records of ~200 bytes per partition do not fit one 2 KB batch
    for partition in (0, 1):
        keys = [key for topic, p, records in producer.sent if p == partition for key, _ in records]
        assert keys == [f"k{i}".encode() for i in range(partition, 40, 2)]
    assert sum(one.count for one in shipped) == 40
    assert [(one.topic, one.partition, one.count) for one in shipped] == [
        (topic, p, len(records)) for topic, p, records in producer.sent
    ]


def test_a_record_larger_than_a_batch_travels_alone():
    async def run():
        producer = _Producer(partitions=1, batch_bytes=1024)
        batches = RecordBatches(producer)
        await batches.know(["t"])
        batches.add("t", b"small", b"s")
        batches.add("t", b"big", b"b" * 5000)
        batches.add("t", b"after", b"a")
        await batches.ship()
        return producer.sent

    sent = asyncio.run(run())
    assert [[key for key, _ in records] for _, _, records in sent] == [[b"small"], [b"big"], [b"after"]]


def test_the_last_offset_of_a_delivered_batch():
    async def run():
        producer = _Producer(partitions=1)
        batches = RecordBatches(producer)
        await batches.know(["t"])
        for i in range(3):
            batches.add("t", b"k", b"v")
        (shipped,) = await batches.ship()
        producer.deliveries[0].set_result(type("Meta", (), {"offset": 100})())
        return shipped.last_offset()

    assert asyncio.run(run()) == 102


def test_the_outbox_reports_deliveries_and_stops_at_a_failed_one():
    async def run():
        producer, delivered = _Producer(partitions=1), []
        outbox = Outbox(producer, on_delivered=delivered.append)
        await outbox.batches.know(["t"])
        outbox.batches.add("t", b"a", b"1")
        await outbox.ship()
        producer.deliveries[0].set_result(type("Meta", (), {"offset": 7})())
        await asyncio.sleep(0)
        assert [one.last_offset() for one in delivered] == [7]
        outbox.batches.add("t", b"b", b"2")
        await outbox.ship()
        producer.deliveries[1].set_exception(ConnectionError("broker away"))
        outbox.batches.add("t", b"c", b"3")
        with pytest.raises(RuntimeError, match="not delivered"):
            await outbox.deliver()
        assert len(delivered) == 1

    asyncio.run(run())
