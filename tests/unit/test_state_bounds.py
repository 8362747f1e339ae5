"""Per-user state is bounded: devices, dedupe ids, the serialized size; and the topics take what the engine writes."""

from __future__ import annotations

import orjson
import pytest

from online_models.events import parse_event
from online_models.portrait import OTHER_DEVICES, PortraitConfig, PortraitState, update
from online_models.processor import (
    DEAD_LETTERS,
    EVENTS,
    MAX_DEAD_LETTER_BYTES,
    MAX_STATE_BYTES,
    PROFILES,
    STATE_TOO_LARGE,
    EngineConfig,
    PartitionProcessor,
    Put,
    Record,
    apply_to,
)
from online_models.watch import WatchConfig
from streams import topics
from tests.unit.portrait_builder import published

NOW = 1_788_307_200_000
CONFIG = PortraitConfig()


def event(i: int, **fields) -> dict:
    return {"event_id": f"e{i}", "user_id": "u1", "type": "view", "ts": NOW + i, **fields}


def fold(state: PortraitState, body: dict, config: PortraitConfig = CONFIG) -> bool:
    return update(state, parse_event(orjson.dumps(body)), watermark=NOW - 300_000, config=config)


def test_devices_keep_the_first_names_and_count_every_further_one_as_other():
    state = PortraitState("u1")
    for i in range(400):
        fold(state, event(i, device="ios" if i % 2 else f"junk-{i}"))
    assert len(state.devices) == CONFIG.max_devices + 1
    assert state.devices["ios"] == 200 and sum(state.devices.values()) == 400
    assert state.devices[OTHER_DEVICES] == 400 - 200 - (CONFIG.max_devices - 1)
    shares = published(state, as_of=NOW + 60_000, config=CONFIG)["devices"]
    assert shares["ios"] == 0.5 and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_few_devices_show_as_before():
    state = PortraitState("u1")
    for i, device in enumerate(("ios", "ios", "pc", "android")):
        fold(state, event(i, device=device))
    assert published(state, as_of=NOW + 60_000, config=CONFIG)["devices"] == {"android": 0.25, "ios": 0.5, "pc": 0.25}


def test_seen_keeps_the_last_ids_folded_in_and_an_older_redelivery_within_the_lateness_counts_again():
    config = PortraitConfig(max_seen_ids=100)
    state = PortraitState("u1")
    for i in range(1000):  # a thousand events within a second: all within the dedupe horizon
        fold(state, event(i), config)
    assert len(state.seen) == 100 and list(state.seen) == [f"e{i}" for i in range(900, 1000)]
    assert not fold(state, event(950), config)  # recent ids are still recognised
    assert fold(state, event(5), config) and state.events == 1001  # e5 left the ids kept: counted again (documented)


def test_an_id_that_left_seen_and_is_older_than_the_watermark_is_dead_lettered_as_late():
    engine = PartitionProcessor(0, {}, EngineConfig(watch=WatchConfig(portrait=PortraitConfig(max_seen_ids=300)), progress_every=200))
    bodies = [{**event(i), "ts": NOW + i * 1000} for i in range(400)]
    for offset, body in enumerate(bodies):
        engine.process(Record(EVENTS, EVENTS, offset, b"u1", orjson.dumps(body)), now_ms=NOW + 10**6)
    (letter,) = engine.process(Record(EVENTS, EVENTS, 400, b"u1", orjson.dumps(bodies[0])), now_ms=NOW + 10**6)
    assert dict(letter.headers)["reason"] == b"late_event" and engine.state("u1").events == 400


def big_event(i: int, user: str = "u1") -> dict:
    # every event a new category, new minute and a long id: the state grows by some 300 bytes each
    return {"event_id": f"{user}-{i:0>100}", "user_id": user, "type": "pay", "ts": NOW + i * 60_000,
            "amount": 1.0, "category": f"c{i}"}


def test_a_state_that_would_pass_the_cap_is_not_written_its_event_is_dead_lettered():
    cap = 40_000
    store: dict = {}
    engine = PartitionProcessor(0, store, EngineConfig(max_state_bytes=cap, progress_every=50))
    letters = []
    for i in range(400):
        effects = engine.process(Record(EVENTS, EVENTS, i, b"u1", orjson.dumps(big_event(i))), now_ms=NOW + 400 * 86_400_000)
        apply_to(store, effects)
        letters += [e for e in effects if getattr(e, "topic", None) == DEAD_LETTERS]
        assert all(len(e.value) <= cap for e in effects if isinstance(e, Put))
    apply_to(store, engine.flush())
    state = engine.state("u1")
    assert letters and {dict(e.headers)["reason"] for e in letters} == {STATE_TOO_LARGE.encode()}
    assert engine.counts[f"rejected:{STATE_TOO_LARGE}"] == len(letters)
    assert state.events + len(letters) == 400 and len(store[b"u1"]) <= cap
    # the refused events changed nothing; another user goes on as usual
    assert state.events == engine.counts["events_processed"]
    engine.process(Record(EVENTS, EVENTS, 400, b"u2", orjson.dumps(big_event(400, "u2"))), now_ms=NOW + 400 * 86_400_000)
    assert engine.state("u2").events == 1


def test_the_cap_is_measured_the_same_after_a_restart():
    cap = 40_000
    records = [Record(EVENTS, EVENTS, i, b"u1", orjson.dumps(big_event(i))) for i in range(300)]
    straight = PartitionProcessor(0, {}, EngineConfig(max_state_bytes=cap, progress_every=50))
    for r in records:
        straight.process(r, now_ms=NOW + 400 * 86_400_000)
    store: dict = {}
    first = PartitionProcessor(0, store, EngineConfig(max_state_bytes=cap, progress_every=50))
    for r in records[:137]:
        apply_to(store, first.process(r, now_ms=NOW + 400 * 86_400_000))
    restarted = PartitionProcessor(0, store, EngineConfig(max_state_bytes=cap, progress_every=50))
    for r in records:
        restarted.process(r, now_ms=NOW + 400 * 86_400_000)
    assert restarted.state("u1").events == straight.state("u1").events < 300


def test_every_topic_has_a_record_limit_above_what_the_engine_writes():
    for spec in topics.TOPICS:
        assert "max.message.bytes" in spec.configs, spec.name
    assert topics.CHANGELOG_CONFIGS["max.message.bytes"] == str(topics.MAX_RECORD_BYTES)
    # a state is the value of a changelog record with a user id key; a dead letter carries a few headers more
    assert MAX_STATE_BYTES + 4096 < topics.MAX_RECORD_BYTES
    dead_letters = next(spec for spec in topics.TOPICS if spec.name == topics.DEAD_LETTERS)
    assert MAX_DEAD_LETTER_BYTES + 8192 < int(dead_letters.configs["max.message.bytes"])


def test_open_baskets_are_held_under_the_cap_and_a_closed_one_fits_its_topic():
    """A burst of payments, each its own long order of long item ids within the order gap: the open baskets
    grow the state, and the cap holds it as for any other growth; a basket record stays far below its topic's limit."""
    cap = 60_000
    store: dict = {}
    engine = PartitionProcessor(0, store, EngineConfig(max_state_bytes=cap, progress_every=50))
    letters = []
    for i in range(600):
        body = {"event_id": f"p{i}", "user_id": "u1", "type": "pay", "ts": NOW + i * 1000, "amount": 1.0,
                "order_id": f"o{i:0>120}", "category": f"c{i % 40:0>100}", "item_id": f"i{i:0>120}"}
        effects = engine.process(Record(EVENTS, EVENTS, i, b"u1", orjson.dumps(body)), now_ms=NOW + 86_400_000)
        apply_to(store, effects)
        letters += [e for e in effects if getattr(e, "topic", None) == DEAD_LETTERS]
        assert all(len(e.value) <= cap for e in effects if isinstance(e, Put))
    assert letters and {dict(e.headers)["reason"] for e in letters} == {STATE_TOO_LARGE.encode()}
    assert len(engine.state("u1").baskets) == engine.state("u1").purchases
    # a payment two hours later closes them all (the watermark passes every order's gap)
    late = {"event_id": "late", "user_id": "u1", "type": "view", "ts": NOW + 2 * 3_600_000 + 600_000}
    effects = engine.process(Record(EVENTS, EVENTS, 600, b"u1", orjson.dumps(late)), now_ms=NOW + 86_400_000)
    baskets = [e for e in effects if getattr(e, "kind", None) == "basket"]
    assert len(baskets) == engine.counts["baskets_closed"] == 600 - len(letters) and not engine.state("u1").baskets
    baskets_topic = next(spec for spec in topics.TOPICS if spec.name == topics.BASKETS)
    widest = {"id": "0" * 16, "ts": NOW, "categories": ["c" * 128] * 32, "items": ["c" * 128 + "\x1f" + "i" * 128] * 32}
    assert len(orjson.dumps(widest)) * 2 < int(baskets_topic.configs["max.message.bytes"])


def test_the_size_bound_covers_what_looks_at_a_silent_user_add():
    """Looks at a silent user (samples, label snapshots, alert steps) raise the bound the cap is checked
    against by the most a look adds, instead of measuring the state again: it stays at or above the true size."""
    engine = PartitionProcessor(0, {}, EngineConfig(progress_every=10_000))
    long = "\u4e2d" * 128  # category names at their longest, each character three bytes
    offset = 0
    for i in range(5):
        body = {"event_id": f"p{i}", "user_id": "u1", "type": "pay", "ts": NOW + i * 60_000, "amount": 10.0,
                "category": f"{i}{long}"[:128]}
        engine.process(Record(EVENTS, EVENTS, offset, b"u1", orjson.dumps(body)), now_ms=NOW + 400 * 86_400_000)
        offset += 1
    engine.flush()  # the bound is now the size written
    sizes = []
    for day in range(1, 200):  # another user's events move the watermark a day at a time
        body = {"event_id": f"v{day}", "user_id": "u2", "type": "view", "ts": NOW + day * 86_400_000}
        engine.process(Record(EVENTS, EVENTS, offset, b"u2", orjson.dumps(body)), now_ms=NOW + 400 * 86_400_000)
        offset += 1
        size = len(engine.state("u1").to_bytes())
        assert engine._state_bytes["u1"] >= size
        sizes.append(size)
    assert engine.counts["users_swept"] >= 5 and max(sizes) > sizes[0]  # looked at, and grown by the looks


def test_a_new_users_size_bound_is_known_without_serializing_the_state(monkeypatch):
    """A new user's bound starts from an empty state's size: their first events (a profile among them) cost no
    serialization, and the bound stays at or above the true size."""
    engine = PartitionProcessor(0, {}, EngineConfig(progress_every=10_000))
    serialized = []
    real = PortraitState.to_bytes
    monkeypatch.setattr(PortraitState, "to_bytes", lambda self: serialized.append(self.user_id) or real(self))
    users = ["u1", "\u4e2d" * 64, "p1"]
    profile = {"user_id": "p1", "ts": NOW, "gender": "f", "region": "\u4e2d" * 60, "member_level": "gold"}
    engine.process(Record(PROFILES, PROFILES, 0, b"p1", orjson.dumps(profile)), now_ms=NOW)
    offset = 0
    for i in range(3):
        for user in users:
            body = {"event_id": f"{user}-{i}", "user_id": user, "type": "pay" if i == 1 else "view", "ts": NOW + i * 60_000,
                    "amount": 10.0, "category": "\u4e2d" * 100, "item_id": f"i{i}", "device": "ios"}
            engine.process(Record(EVENTS, EVENTS, offset, user.encode(), orjson.dumps(body)), now_ms=NOW + 86_400_000)
            offset += 1
    assert serialized == [] and engine.counts["profiles_processed"] == 1 and engine.state("p1").profile["region"]
    monkeypatch.setattr(PortraitState, "to_bytes", real)
    for user in users:
        assert engine._state_bytes[user] >= len(engine.state(user).to_bytes())
