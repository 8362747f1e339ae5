"""Records Faust never hands over, on the real broker: read directly, counted once.

The reader of :mod:`streams.faust_repairs` against the broker itself (records deleted from a
partition's start, offsets that hold a transaction marker, offsets not there yet), and a
worker whose group has committed offsets past records its state never applied, as when
Faust skips the first records of a partition with no progress.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import httpx
import pytest

from streams.faust_repairs import SkippedRecordReader
from online_models.simulation import ShopSimulator
from tests.integration.conftest import (
    assert_matches_batch,
    portrait_mismatches,
    read_topic,
    send_history,
    wait_until,
    worker_applied_everything,
)
from tests.reference import events_by_user

DAY = 86_400_000


def _make_topic(bootstrap: str, name: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


async def _produce_transaction(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """``values`` in one committed transaction: its commit marker takes the offset after them."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-tx")
    await producer.start()
    try:
        async with producer.transaction():
            for value in values:
                await producer.send(topic, value, partition=0)
    finally:
        await producer.stop()


def test_reader_yields_what_the_broker_holds_and_stops_at_a_marker(kafka_bootstrap, tmp_path):
    from kafka import KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient

    topic = f"holes-{tmp_path.name}"
    _make_topic(kafka_bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(20):
        producer.send(topic, str(n).encode(), partition=0)
    producer.flush()
    producer.close()
    asyncio.run(_produce_transaction(kafka_bootstrap, topic, [str(n).encode() for n in range(20, 25)]))  # marker at 25
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(topic, 0): 4})  # as retention would
    finally:
        admin.close()

    async def scenario() -> tuple[int, list[int], list[int], list[bytes]]:
        reader = SkippedRecordReader(kafka_bootstrap, client_id="holes-test", timeout_s=3.0)
        try:
            start = await reader.log_start(topic, 0)
            from_zero = [r.offset async for r in reader.read(topic, 0, 0, 9)]
            # the range ends on the transaction's marker, an offset with no record to deliver
            started = time.monotonic()
            to_marker = [r async for r in reader.read(topic, 0, 18, 25)]
            assert time.monotonic() - started < 3.0, "the reader waited for a record the marker offset cannot hold"
            with pytest.raises(RuntimeError, match="no record of offsets 26 to 30"):
                [r async for r in reader.read(topic, 0, 26, 30)]
            return start, from_zero, [r.offset for r in to_marker], [r.value for r in to_marker]
        finally:
            await reader.stop()

    start, from_zero, offsets, values = asyncio.run(scenario())
    assert start == 4
    assert from_zero == list(range(4, 10))  # what retention took is not waited for
    assert offsets == list(range(18, 25))
    assert values == [str(n).encode() for n in range(18, 25)]


def test_worker_applies_records_before_the_committed_offsets_of_partitions_with_no_progress(stack):
    settings = stack.settings()
    simulator = ShopSimulator(n_users=40, start_ms=int(time.time() * 1000) - 5 * DAY, seed=47)
    events = list(simulator.history(4))
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    send_history(settings, profiles=profiles.values(), events=events)

    # the group has committed half of every partition, the worker's state has nothing: Faust starts
    # each partition at the committed offset, and the records before it must be read all the same
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    halves = {}
    for name, sent in (("events", len(events)), ("profiles", len(profiles))):
        records = read_topic(settings.bootstrap_servers, settings.topic(name))
        assert len(records) == sent
        ends: dict[int, int] = defaultdict(int)
        for record in records:
            ends[record.partition] = max(ends[record.partition], record.offset + 1)
        halves.update({TopicPartition(settings.topic(name), p): OffsetAndMetadata(end // 2, "", -1) for p, end in ends.items()})
    committer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.app_id, enable_auto_commit=False)
    try:
        committer.commit(halves)
    finally:
        committer.close()
    assert all(meta.offset > 0 for tp, meta in halves.items() if tp.topic == settings.topic("events"))
    assert any(meta.offset > 0 for tp, meta in halves.items() if tp.topic == settings.topic("profiles"))

    worker = stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()
    wait_until(lambda: worker_applied_everything(stack, worker, ("events", "profiles")), timeout=240, interval=2, what="every event applied")
    by_user = events_by_user(events)
    counts = {user: len(user_events) for user, user_events in by_user.items()}
    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())
    wait_until(
        lambda: not portrait_mismatches(client, counts), timeout=120, interval=2,
        what="every portrait with all its events", explain=lambda: str(portrait_mismatches(client, counts)),
    )
    for user, user_events in by_user.items():
        assert_matches_batch(client.get(f"/v1/users/{user}/portrait").json(), user_events, profiles[user])
    assert "reading 0 to" in worker.log_path.read_text(errors="replace"), "no partition was read from its start"
