"""The worker's user engines send their item facts and training samples in packs.

:class:`streams.engines.Engines` executes a user partition engine's effects over a producer and a
table writer that record what they are handed, in one log: the facts wait for the partition's next
write, then leave as one record per item partition (every fact of it on that partition), delivered
before that write; the samples wait for the same write and leave as packs on the training topic,
ahead of any erasure marker that follows them; nothing is lost or sent twice.
"""

from __future__ import annotations

import asyncio

import orjson

from online_models.item_facts import parse_item_facts
from online_models.processor import EVENTS, EngineConfig, PartitionProcessor, Record, Send
from online_models.simulation import ShopSimulator
from online_models.training_samples import unpack_samples
from tests.unit.engine_doubles import NOW_MS, START_MS, Log


def test_item_facts_leave_packed_by_item_partition_before_the_write_that_covers_their_events(worker):
    engines, log = worker
    history = list(ShopSimulator(n_users=30, start_ms=START_MS, seed=3).history(10))[:600]
    engine = PartitionProcessor(2, {}, EngineConfig(progress_every=50, retention_ms=0))
    made = []

    def facts_sent(entries) -> int:
        return sum(len(parse_item_facts(value)) for kind, *rest in entries if kind == "send" and rest[0] == "item-facts"
                   for _, value in rest[2])

    async def run():
        for offset, event in enumerate(history):
            effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=NOW_MS)
            made.extend(e.value for e in effects if isinstance(e, Send) and e.kind == "item_fact")
            before = len(log.entries)
            if effects:
                await engines.execute(2, effects)
            writes = [i for i, entry in enumerate(log.entries) if i >= before and entry[0] == "write"]
            if writes:  # every fact made so far left before the first write of this execution
                assert facts_sent(log.entries[: writes[0]]) == len(made)
                checked.append(offset)
        await engines.execute(2, engine.flush())
        await engines.deliver()

    checked: list[int] = []
    asyncio.run(run())
    assert len(checked) >= 10 and not engines.held_facts
    packs = [(partition, records) for kind, *rest in log.entries if kind == "send"
             for topic, partition, records in [rest] if topic == "item-facts"]
    sent = []
    for partition, records in packs:
        for key, value in records:
            facts = parse_item_facts(value)
            assert key.decode() == facts[0].key
            # every fact of a pack belongs on the pack's partition, as the producer places its key
            assert {engines._outbox.batches.partition_for("item-facts", f.key.encode()) for f in facts} == {partition}
            sent += orjson.loads(value)
    # each fact sent once, none lost; far fewer records than facts
    assert sorted(map(orjson.dumps, sent)) == sorted(orjson.dumps(orjson.loads(v)) for v in made)
    assert len(sum((records for _, records in packs), [])) < len(made) / 5


def test_held_facts_of_a_partition_that_moves_are_forgotten(worker):
    engines, _ = worker
    event = {"event_id": "v1", "user_id": "u1", "type": "view", "ts": START_MS, "item_id": "a", "category": "toys"}
    engine = PartitionProcessor(1, {}, EngineConfig())

    async def run():
        await engines.execute(1, engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(event)), now_ms=NOW_MS))

    asyncio.run(run())
    assert sum(len(facts) for facts in engines.held_facts[1].values()) == 2
    engines.drop(1)
    assert 1 not in engines.held_facts


def training_records(log: Log) -> list[bytes]:
    return [value for kind, *rest in log.entries if kind == "send" and rest[0] == "model-training" for _, value in rest[2]]


def test_samples_leave_packed_in_order_with_the_partitions_next_write(worker):
    engines, log = worker
    history = list(ShopSimulator(n_users=40, start_ms=START_MS, seed=5).history(60))[:3000]
    engine = PartitionProcessor(2, {}, EngineConfig(progress_every=200, retention_ms=0))
    made = []

    async def run():
        for offset, event in enumerate(history):
            effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=NOW_MS)
            made.extend(e.value for e in effects if isinstance(e, Send) and e.kind == "sample")
            if effects:
                await engines.execute(2, effects)
            if not engine.unflushed:  # a flush wrote: every sample made so far has left
                assert sum(len(unpack_samples(r)) for r in training_records(log)) == len(made)
        await engines.execute(2, engine.flush())
        await engines.deliver()

    asyncio.run(run())
    records = training_records(log)
    sent = [orjson.dumps(sample) for record in records for sample in unpack_samples(record)]
    assert len(made) > 50 and not engines.held_samples
    assert sent == [orjson.dumps(orjson.loads(v)) for v in made]  # each once, in the order made
    assert len(records) < len(made) / 5


def test_an_erasure_marker_follows_the_samples_made_before_it(worker):
    engines, log = worker
    engine = PartitionProcessor(0, {}, EngineConfig(retention_ms=0))
    view = {"event_id": "v1", "user_id": "u1", "type": "view", "ts": START_MS, "category": "toys"}
    erasure = {"request_id": "r1", "user_id": "u1", "requested_at": START_MS + 60_000}

    async def run():
        first = engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(view)), now_ms=NOW_MS)
        assert [e.kind for e in first if isinstance(e, Send)].count("sample") == 1
        await engines.execute(0, first)
        assert engines.held_samples[0] and not training_records(log)
        await engines.execute(0, engine.process(Record("erasures", "erasures", 0, b"u1", orjson.dumps(erasure)), now_ms=NOW_MS))
        await engines.deliver()

    asyncio.run(run())
    kinds = [sample["kind"] for record in training_records(log) for sample in unpack_samples(record)]
    assert kinds == ["user", "forget"]


def test_held_samples_of_a_partition_that_moves_are_forgotten(worker):
    engines, _ = worker
    engine = PartitionProcessor(1, {}, EngineConfig())
    view = {"event_id": "v1", "user_id": "u1", "type": "view", "ts": START_MS}

    async def run():
        await engines.execute(1, engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(view)), now_ms=NOW_MS))

    asyncio.run(run())
    assert len(engines.held_samples[1]) == 1
    engines.drop(1)
    assert 1 not in engines.held_samples
