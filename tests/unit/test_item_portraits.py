"""Item and category portraits: the users' engines send item facts, the item engines fold them; both pure.

Every figure is compared with tests/item_reference.py, a batch computation over the raw events
that shares no code with the stream. The users' engines run over the partitions of a simulated
shop's events, delivered out of order within the lateness and with redeliveries; their item facts
reach the item partitions interleaved across sources as a broker would deliver them.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import defaultdict

import orjson
import pytest

from online_models.events import parse_event
from online_models.item_facts import BuyerAttributes, facts_for, pack_facts, parse_item_facts, remember_purchase
from online_models.item_portrait import ItemConfig, ItemState, fold, render
from online_models.item_processor import ItemEngineConfig, ItemPartitionProcessor
from online_models.partition_engine import PROGRESS_KEY, Delete, Flushing, Put, Record, Send, apply_to
from online_models.population import PopulationModels
from online_models.portrait import PortraitConfig, PortraitState, render as render_user, update
from online_models.processor import EVENTS, ITEM_FACTS, PROFILES, EngineConfig, PartitionProcessor
from online_models.simulation import ShopSimulator
from online_models.watch import WatchConfig
from tests.item_reference import counted_purchases_segment, item_portraits
from tests.reference import DAY, parse_iso

START_MS = 1788307200000  # 2026-09-01 00:00 UTC
NOW_MS = START_MS + 400 * DAY
PARTITIONS = 3
ENGINE = EngineConfig(watch=WatchConfig(), progress_every=40, retention_ms=0, sweep_batch=None)
ITEMS = ItemEngineConfig(flushing=Flushing(progress_every=30))


class PurchaseCountSegments:
    """A stand-in segment model: a buyer's segment is their 90-day purchase count (at most 3), read back from
    the ``purchases_90d`` behaviour feature, so the reference can name it without the stream's code."""

    seeded = True

    def predict_one(self, features: dict) -> int:
        return min(3, round(math.expm1(features["purchases_90d"] * math.log1p(100))))

    def describe(self) -> list:
        return []


def segmenting_models() -> PopulationModels:
    models = PopulationModels()
    models.segments = PurchaseCountSegments()
    return models


def partition_of(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS


@pytest.fixture(scope="module")
def shop():
    simulator = ShopSimulator(n_users=70, start_ms=START_MS, seed=5)
    history = list(simulator.history(45))
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    return history, profiles


def delivered(history: list[dict], seed: int) -> list[dict]:
    """The events as a broker hands them on: out of order within a minute, 150 delivered twice."""
    rng = random.Random(seed)
    order = sorted(history, key=lambda e: e["ts"] + rng.random() * 60_000)
    for i in sorted(rng.sample(range(len(order)), 150), reverse=True):
        order.insert(i + rng.randrange(1, 40), order[i])
    return order


def run_users(events: list[dict], profiles: dict, models) -> dict[int, list[list[tuple[bytes, bytes]]]]:
    """Every user partition's engine over its profiles, then its events; the item facts each sent, in order,
    in the runs the worker packs: the facts sent between two flushes."""
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for profile in profiles.values():
        key = profile["user_id"].encode()
        records = by_partition[partition_of(key)]
        records.append(Record(PROFILES, PROFILES, len(records), key, orjson.dumps(profile)))
    offsets: dict[int, int] = defaultdict(int)
    for event in events:
        key = event["user_id"].encode()
        p = partition_of(key)
        by_partition[p].append(Record(EVENTS, EVENTS, offsets[p], key, orjson.dumps(event)))
        offsets[p] += 1
    facts = {}
    for partition, records in by_partition.items():
        engine = PartitionProcessor(partition, {}, ENGINE)
        facts[partition] = runs_of([engine.process(record, now_ms=NOW_MS, models=models) for record in records])
    return facts


def runs_of(log: list[list]) -> list[list[tuple[bytes, bytes]]]:
    """The item facts of an engine's effects, cut at each write: what the worker packs and sends before it."""
    runs, run = [], []
    for effects in log:
        for effect in effects:
            if isinstance(effect, Send) and effect.kind == "item_fact":
                run.append((effect.key, effect.value))
            elif isinstance(effect, (Put, Delete)) and run:
                runs.append(run)
                run = []
    return runs + ([run] if run else [])


def route(facts: dict[int, list[list[tuple[bytes, bytes]]]], seed: int) -> dict[int, list[Record]]:
    """The facts on the item-facts partitions as the worker sends them: each run of a source packed by item
    partition (cut at random, some packs of one fact), each source's packs in order, the sources interleaved."""
    rng = random.Random(seed)
    queues: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for source, runs in facts.items():
        for run in runs:
            by_partition: dict[int, list] = defaultdict(list)
            for key, value in run:
                by_partition[partition_of(key)].append((key, value))
            for partition, pack in by_partition.items():
                while pack:
                    size = rng.choice((1, len(pack), rng.randrange(1, len(pack) + 1)))
                    queues[partition][source].append((pack[0][0], pack_facts(value for _, value in pack[:size])))
                    pack = pack[size:]
    out = {}
    for partition, by_source in queues.items():
        pending = {source: list(reversed(items)) for source, items in by_source.items()}
        records = []
        while pending:
            source = rng.choice(sorted(pending))
            key, value = pending[source].pop()
            records.append(Record(ITEM_FACTS, ITEM_FACTS, len(records), key, value))
            if not pending[source]:
                del pending[source]
        out[partition] = records
    return out


def run_items(records: list[Record], store: dict, partition: int = 0):
    """An item engine restored from ``store`` over ``records``, effects executed; the engine and its effects."""
    engine = ItemPartitionProcessor(partition, store, ITEMS)
    log = []
    for record in records:
        effects = engine.process(record, now_ms=NOW_MS)
        apply_to(store, effects)
        log.append(effects)
    return engine, log


def portraits_of(routed: dict[int, list[Record]]) -> dict[str, dict]:
    out = {}
    for partition, records in routed.items():
        engine, _ = run_items(records, {}, partition)
        sends, _ = engine.publication(None)
        out.update({send.key.decode(): orjson.loads(send.value) for send in sends})
    return out


def assert_equal_to_reference(served: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(served) == set(expected)
    for key, portrait in served.items():
        want = expected[key]
        for name in ("key", "kind", "id", "category", "lifetime", "windows"):
            assert portrait[name] == want[name], (key, name)
        assert (parse_iso(portrait["first_seen"]), parse_iso(portrait["last_seen"])) == (want["first_seen"], want["last_seen"]), key


@pytest.fixture(scope="module")
def streamed(shop):
    history, profiles = shop
    events = delivered(history, seed=3)
    models = segmenting_models()
    facts = run_users(events, profiles, models)
    return events, facts, portraits_of(route(facts, seed=1))


def test_item_and_category_portraits_equal_a_batch_computation(shop, streamed):
    _, profiles = shop
    events, _, served = streamed
    as_of = {key: parse_iso(portrait["as_of"]) for key, portrait in served.items()}
    expected = item_portraits(events, profiles, as_of, segment_of=counted_purchases_segment)
    assert_equal_to_reference(served, expected)
    # the history is rich enough that every figure is exercised
    windows = [p["windows"]["30d"] for p in served.values()]
    assert sum(p["kind"] == "category" for p in served.values()) >= 10 and sum(p["kind"] == "item" for p in served.values()) >= 100
    assert sum(w["repeat_buyers"] for w in windows) > 0 and sum(w["refunds"] for w in windows) > 0
    assert len({name for w in windows for name in w["buyers_by"]["layers"]}) >= 2
    assert len({name for w in windows for name in w["buyers_by"]["segments"]}) >= 3
    assert len({name for w in windows for name in w["buyers_by"]["age_bands"]}) >= 4
    assert any(w["conversion"] is not None and 0 < w["conversion"] < 1 for w in windows)


def test_every_window_counts_whole_shop_days_up_to_the_day_of_as_of(shop, streamed):
    """The same keys valued later, on a day past the last event: the windows move, the reference agrees."""
    _, profiles = shop
    events, facts, served = streamed
    later = max(parse_iso(p["as_of"]) for p in served.values()) + 20 * DAY
    states = {}
    for partition, records in route(facts, seed=1).items():
        engine, _ = run_items(records, {}, partition)
        states.update({state.key: state for state in engine.states()})
    rendered = {key: render(state, as_of=later, config=ItemConfig()) for key, state in states.items()}
    expected = item_portraits(events, profiles, dict.fromkeys(rendered, later), segment_of=counted_purchases_segment)
    assert_equal_to_reference(rendered, expected)
    assert any(p["windows"]["7d"]["views"] == 0 < p["windows"]["30d"]["views"] for p in rendered.values())


def test_the_same_events_interleaved_otherwise_give_the_same_portraits(shop, streamed):
    events, facts, served = streamed
    again = portraits_of(route(facts, seed=99))
    assert again == served


def test_item_facts_delivered_again_change_nothing(streamed):
    _, facts, served = streamed
    for partition, records in route(facts, seed=1).items():
        rng = random.Random(partition)
        again = rng.sample(records, len(records) // 3)
        twice = records + [Record(ITEM_FACTS, ITEM_FACTS, len(records) + i, r.key, r.value) for i, r in enumerate(again)]
        engine, _ = run_items(twice, {}, partition)
        total = sum(len(parse_item_facts(r.value)) for r in records)
        assert engine.counts["item_facts_applied"] == total
        assert engine.counts["item_facts_duplicate"] == sum(len(parse_item_facts(r.value)) for r in again) > 0
        sends, _ = engine.publication(None)
        assert all(orjson.loads(s.value) == served[s.key.decode()] for s in sends)


def final_states(store: dict) -> dict[str, dict]:
    out = {}
    for key, value in store.items():
        if key != PROGRESS_KEY:
            state = orjson.loads(value)
            state.pop("seq")
            out[key.decode()] = state
    return out


@pytest.mark.slow
def test_a_crash_of_an_item_engine_between_any_two_writes_ends_where_an_uninterrupted_run_does(streamed):
    _, facts, _ = streamed
    partition, records = max(route(facts, seed=1).items(), key=lambda pair: len(pair[1]))
    straight_store: dict = {}
    straight, log = run_items(records, straight_store, partition)
    apply_to(straight_store, straight.flush())
    expected = final_states(straight_store)
    changelog = [e for effects in log for e in effects if isinstance(e, (Put, Delete))]
    for cut in sorted(set(random.Random(4).sample(range(len(changelog)), 12)) | {0, len(changelog)}):
        store: dict = {}
        apply_to(store, changelog[:cut])
        # the worker reads again from the progress: what it covers is skipped, the rest applied again
        engine, _ = run_items(records, store, partition)
        apply_to(store, engine.flush())
        assert final_states(store) == expected, f"crash after changelog record {cut}"


@pytest.mark.slow
def test_a_crash_of_a_user_engine_sends_facts_again_and_the_items_count_them_once(shop, streamed):
    """A user partition's engine crashes after any write: the item facts confirmed before it reached Kafka,
    the restarted engine reads again from its progress and sends facts again; the items count each once."""
    history, profiles = shop
    events, facts, served = streamed
    source = 1
    records, offset = [], 0
    for profile in profiles.values():
        if partition_of(profile["user_id"].encode()) == source:
            records.append(Record(PROFILES, PROFILES, len(records), profile["user_id"].encode(), orjson.dumps(profile)))
    for event in events:
        if partition_of(event["user_id"].encode()) == source:
            records.append(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)))
            offset += 1
    models = segmenting_models()
    straight = PartitionProcessor(source, {}, ENGINE)
    log = [straight.process(record, now_ms=NOW_MS, models=models) for record in records]
    # a crash after the n-th state write: the writes before it survive, and every fact confirmed before it
    writes = [(i, j) for i, effects in enumerate(log) for j, e in enumerate(effects) if isinstance(e, (Put, Delete))]
    for n in sorted(random.Random(8).sample(range(len(writes)), 4)):
        at_record, at_effect = writes[n]
        store: dict = {}
        before = []
        for i, effects in enumerate(log[: at_record + 1]):
            upto = effects if i < at_record else effects[:at_effect]
            apply_to(store, upto)
            before.append(upto)
        restarted = PartitionProcessor(source, store, ENGINE)
        after = [restarted.process(record, now_ms=NOW_MS, models=models) for record in records]
        resent = {**facts, source: runs_of(before) + runs_of(after)}
        assert portraits_of(route(resent, seed=1)) == served, f"crash after state write {n}"


def test_an_item_partition_forgets_a_key_idle_past_the_retention():
    engine = ItemPartitionProcessor(0, {}, ItemEngineConfig(retention_ms=30 * DAY))
    view = {"key": "item:a", "type": "view", "ts": START_MS, "day": START_MS // DAY, "item_id": "a",
            "category": None, "cents": 0, "source": [0, 0]}
    engine.process(Record(ITEM_FACTS, ITEM_FACTS, 0, b"item:a", orjson.dumps([view])), now_ms=NOW_MS)
    later = {**view, "key": "item:b", "ts": START_MS + 31 * DAY, "day": START_MS // DAY + 31, "item_id": "b",
             "source": [0, 1]}
    effects = engine.process(Record(ITEM_FACTS, ITEM_FACTS, 1, b"item:b", orjson.dumps([later])), now_ms=NOW_MS)
    assert [(e.key, e.value, e.kind) for e in effects if isinstance(e, Send)] == [(b"item:a", None, "expiry")]
    assert engine.state("item:a") is None and engine.counts["item_keys_expired"] == 1
    assert Delete(b"item:a") in engine.flush()


GOOD = {"key": "item:a", "type": "view", "ts": START_MS, "day": START_MS // DAY, "item_id": "a",
        "category": None, "cents": 0, "source": [0, 1]}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        orjson.dumps(GOOD),  # a fact, not a pack of them
        orjson.dumps([]),
        orjson.dumps([GOOD, {**GOOD, "key": "sku-a"}]),
        orjson.dumps([{**GOOD, "item_id": "b"}]),
        orjson.dumps([{**GOOD, "type": "search"}]),
        orjson.dumps([{k: v for k, v in GOOD.items() if k != "source"}]),
        orjson.dumps([{**GOOD, "cents": -5}]),
        orjson.dumps([{**GOOD, "type": "pay", "was": [0, None, "ordinary", None, None], "now": None}]),
        orjson.dumps([{**GOOD, "type": "pay", "now": [0, 0, "ordinary", None, None]}]),
        orjson.dumps([{**GOOD, "type": "pay", "now": [0, None, "vip", None, None]}]),
    ],
)
def test_a_record_that_is_not_a_pack_of_item_facts_is_dead_lettered_whole_and_the_flow_goes_on(body):
    engine = ItemPartitionProcessor(2, {}, ItemEngineConfig())
    (letter,) = engine.process(Record(ITEM_FACTS, "shop.item-facts", 7, b"item:a", body), now_ms=NOW_MS)
    headers = dict(letter.headers)
    assert letter.topic == "events.dlq" and letter.value == body and headers["reason"] == b"invalid_item_fact"
    assert headers["source.topic"] == b"shop.item-facts" and headers["source.offset"] == b"7" and headers["detail"]
    assert engine.state("item:a") is None  # nothing of the record was folded in
    good = {**GOOD, "source": [0, 0]}
    engine.process(Record(ITEM_FACTS, "shop.item-facts", 8, b"item:a", orjson.dumps([good])), now_ms=NOW_MS)
    assert engine.state("item:a").lifetime[0] == 1 and engine.applied_offset("shop.item-facts") == 8


def test_a_buyer_taken_away_who_was_never_counted_leaves_no_negative_count():
    """A replay that scored the buyer otherwise (other models) takes away what it never added: counts stay at 0."""
    state = ItemState("item:a")
    (pay,) = parse_item_facts(orjson.dumps([{
        "key": "item:a", "type": "pay", "ts": START_MS, "day": START_MS // DAY, "item_id": "a", "category": None,
        "cents": 100, "source": [0, 5], "was": [START_MS // DAY - 1, None, "potential", 7, None],
        "now": [START_MS // DAY, START_MS // DAY - 1, "ordinary", 2, "25-29"]}]))
    assert fold(state, pay)
    window = render(state, as_of=START_MS, config=ItemConfig())["windows"]["7d"]
    assert window["buyers"] == 1 and window["repeat_buyers"] == 1
    assert window["buyers_by"] == {"layers": {"ordinary": 1}, "segments": {"2": 1}, "age_bands": {"25-29": 1}}


def test_a_user_remembers_a_bounded_number_of_bought_items_and_lists_the_last_90_days():
    config = PortraitConfig(max_bought_items=3)
    state = PortraitState("u1")
    for i, (item, day) in enumerate([("a", 0), ("b", 10), ("c", 50), ("d", 95), ("a", 96)]):
        event = parse_event(orjson.dumps({"event_id": f"p{i}", "user_id": "u1", "type": "pay", "ts": START_MS + day * DAY,
                                          "amount": 10, "item_id": item, "category": "toys"}))
        update(state, event, watermark=0, config=config)
        facts_for(state, event, partition=0, offset=i, buyer=BuyerAttributes("ordinary", None, None), config=config)
    assert sorted(state.bought_items) == ["a", "c", "d"]  # b, bought longest ago, was forgotten
    assert render_user(state, as_of=START_MS + 96 * DAY, config=config).bought_items == ["a", "d", "c"]
    assert render_user(state, as_of=START_MS + 140 * DAY, config=config).bought_items == ["a", "d"]  # c: 90 days past
    assert list(state.bought_categories) == ["toys"] and state.bought_categories["toys"][:2] == [START_MS // DAY + 96, START_MS // DAY + 95]


def test_a_purchase_moves_the_buyer_to_its_day_and_an_older_one_only_the_previous_day():
    memory: dict = {}
    buyer = BuyerAttributes("ordinary", None, None)
    assert remember_purchase(memory, "a", 10, buyer, 5)[0] is None
    was, now = remember_purchase(memory, "a", 12, BuyerAttributes("potential", 1, "18-24"), 5)
    assert (was.latest_day, now.latest_day, now.second_day, now.layer) == (10, 12, 10, "potential")
    assert remember_purchase(memory, "a", 9, buyer, 5) is None  # older than both days: nothing moves
    was, now = remember_purchase(memory, "a", 11, buyer, 5)
    assert (now.latest_day, now.second_day, now.layer, now.segment) == (12, 11, "potential", 1)
    was, now = remember_purchase(memory, "a", 12, buyer, 5)  # the latest day again: who the buyer is now
    assert (now.latest_day, now.second_day, now.layer) == (12, 11, "ordinary")


def test_an_item_fact_carries_no_user_id_nor_event_id():
    event = parse_event(orjson.dumps({"event_id": "v1-of-someone", "user_id": "someone", "type": "view", "ts": START_MS,
                                      "item_id": "a", "category": "toys"}))
    state = PortraitState("someone")
    update(state, event, watermark=0, config=PortraitConfig())
    facts = facts_for(state, event, partition=0, offset=0, buyer=None, config=PortraitConfig())
    assert [key for key, _ in facts] == [b"item:a", b"category:toys"]
    assert all(b"someone" not in value and b"v1" not in value for _, value in facts)


def test_item_facts_are_confirmed_before_any_later_write(shop):
    history, _ = shop
    engine = PartitionProcessor(0, {}, EngineConfig(progress_every=40, retention_ms=0, sweep_batch=None))
    for offset, event in enumerate(history[:400]):
        effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=NOW_MS)
        facts = [i for i, e in enumerate(effects) if isinstance(e, Send) and e.kind == "item_fact"]
        assert all(effects[i].confirm and effects[i].topic == ITEM_FACTS for i in facts)
        writes = [i for i, e in enumerate(effects) if isinstance(e, (Put, Delete))]
        assert not facts or not writes or max(facts) < min(writes)


def test_without_item_facts_the_users_engine_sends_none(shop):
    history, _ = shop
    engine = PartitionProcessor(0, {}, EngineConfig(item_facts=False, retention_ms=0))
    sent = []
    for offset, event in enumerate(history[:200]):
        sent += engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=NOW_MS)
    assert not [e for e in sent if isinstance(e, Send) and e.kind == "item_fact"]


def test_a_replay_folds_the_item_facts_as_the_workers_do(shop):
    """online_models.replay, one partition, no profiles, scored with unfitted models (no segments): the same figures."""
    from online_models.replay import replay_history

    history, _ = shop
    events = delivered(history, seed=8)
    result = replay_history(events, frozen=PopulationModels())
    rendered = {key: render(state, as_of=result.item_as_of, config=ItemConfig()) for key, state in result.item_states.items()}
    assert_equal_to_reference(rendered, item_portraits(events, {}, dict.fromkeys(rendered, result.item_as_of)))


def test_a_day_counts_its_buyers_under_a_bounded_number_of_age_bands():
    """Profiles give age bands as free text: past 16 in a day, buyers count under "other", taken away from there too."""
    from online_models.item_facts import Contribution, ItemFact

    state, day = ItemState("item:a"), START_MS // DAY

    def pay(i: int, was: Contribution | None, now: Contribution) -> ItemFact:
        return ItemFact("item:a", "pay", START_MS, day, "a", None, 100, (0, i), was, now)

    bands = [Contribution(day, None, "ordinary", None, f"band {i}") for i in range(40)]
    for i, band in enumerate(bands):
        fold(state, pay(i, None, band))
    counted = render(state, as_of=START_MS, config=ItemConfig())["windows"]["7d"]["buyers_by"]["age_bands"]
    assert len(counted) == 17 and counted["other"] == 24 and sum(counted.values()) == 40
    for i, band in enumerate(bands):  # every buyer buys again later the same day as someone else
        fold(state, pay(100 + i, band, Contribution(day, None, "ordinary", None, "25-29")))
    counted = render(state, as_of=START_MS, config=ItemConfig())["windows"]["7d"]["buyers_by"]["age_bands"]
    assert counted == {"25-29": 40}
