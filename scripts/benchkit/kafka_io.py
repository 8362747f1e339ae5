"""Kafka for the benchmarks: topics, a fast producer, the bare-consumer floor, consumer-group progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import orjson

from streams.settings import Settings
from streams.topics import create_topics


def settings_for(kafka: str, prefix: str, partitions: int, app_id: str = "portraits") -> Settings:
    """Settings of a deployment with its own topic prefix (and consumer group ``app_id``)."""
    return Settings(kafka=kafka, topic_prefix=prefix, partitions=partitions, app_id=app_id)


def ensure_topics(kafka: str, prefix: str, partitions: int) -> None:
    """Create the product's topics under ``prefix`` (idempotent); each worker makes its own state changelog."""
    create_topics(settings_for(kafka, prefix, partitions), with_state_changelog=False)


def delete_topics(kafka: str, prefix: str, *, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a run's, its workers' changelogs among them); the names deleted."""
    from kafka.admin import KafkaAdminClient

    if not prefix:
        raise ValueError("a prefix is needed: every topic would match an empty one")
    admin = KafkaAdminClient(bootstrap_servers=kafka, client_id="bench-cleanup", request_timeout_ms=int(timeout_s * 1000))
    try:
        names = sorted(name for name in admin.list_topics() if name.startswith(prefix))
        if names:
            admin.delete_topics(names, timeout_ms=int(timeout_s * 1000))
        return names
    finally:
        admin.close()


async def _produce(kafka: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks=1, max_batch_size=1024 * 1024, linger_ms=50)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        choose = DefaultPartitioner()
        batches: dict[int, object] = {}
        pending: list[asyncio.Future] = []
        count = 0

        async def submit(partition: int) -> None:
            pending.append(await producer.send_batch(batches.pop(partition), topic, partition=partition))
            if len(pending) > 64:  # bound what is in flight
                await asyncio.gather(*pending)
                pending.clear()

        for key, value in records:
            partition = choose(key, partitions, partitions)
            batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                await submit(partition)
                batch = batches.setdefault(partition, producer.create_batch())
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        for partition in list(batches):
            await submit(partition)
        await asyncio.gather(*pending)
        return count
    finally:
        await producer.stop()


def produce(kafka: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> tuple[int, float]:
    """Send every record in full batches per partition (key-hashed like Kafka's default); (count, seconds)."""
    start = time.monotonic()
    count = asyncio.run(_produce(kafka, topic, records))
    return count, time.monotonic() - start


def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    """Log-end offset per partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=kafka.split(","), group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def count_records(kafka: str, topic: str, *, timeout_s: float = 300.0) -> int:
    """Records ``topic`` holds now, read from its start (what a compacted topic kept)."""
    return asyncio.run(_count_records(kafka, topic, timeout_s))


async def _count_records(kafka: str, topic: str, timeout_s: float) -> int:
    async with _from_start(kafka, topic) as (consumer, ends):
        left = {tp for tp, end in ends.items() if end > 0}
        count = 0
        deadline = time.monotonic() + timeout_s
        while left and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(*left, timeout_ms=500, max_records=10_000)).items():
                count += len(records)
                if records and records[-1].offset >= ends[tp] - 1:
                    left.discard(tp)
        if left:
            raise TimeoutError(f"{topic}: could not read to the end within {timeout_s:.0f} s")
        return count


@contextlib.asynccontextmanager
async def _from_start(kafka: str, topic: str):
    """A consumer of no group on every partition of ``topic``, at its start, and the end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(end_offsets(kafka, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


def group_offsets(kafka: str, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition of ``topic`` for consumer group ``group`` (missing: none committed)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    admin = KafkaAdminClient(bootstrap_servers=kafka.split(","), client_id="portraits-bench-admin")
    try:
        answer = admin.list_group_offsets(group).get(group, {})  # {group: {tp: OffsetAndMetadata}}
    except KafkaError:  # no coordinator yet: nothing committed
        return {}
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in answer.items() if tp.topic == topic and meta.offset >= 0}


async def _floor(kafka: str, topic: str, limit: int, timeout_s: float) -> tuple[int, float]:
    async with _from_start(kafka, topic) as (consumer, ends):
        target = min(limit, sum(ends.values()))
        count = 0
        start = time.monotonic()
        while count < target and time.monotonic() - start < timeout_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    orjson.loads(record.value)
                count += len(records)
        return count, time.monotonic() - start


def floor(kafka: str, topic: str, *, limit: int, timeout_s: float = 600.0) -> tuple[int, float]:
    """A bare aiokafka consumer reading and JSON-decoding ``topic`` from the start: (records, seconds)."""
    return asyncio.run(_floor(kafka, topic, limit, timeout_s))
