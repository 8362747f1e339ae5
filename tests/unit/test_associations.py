"""Baskets closed by the engine and the co-purchase counts, against an independent batch computation."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from datasketches import frequent_strings_sketch

from online_models.association_rules import CategoryLifts, pair_rules
from online_models.associations import AssociationConfig, AssociationCounts, max_error
from online_models.baskets import add_purchase, basket_record, close_due
from online_models.processor import EVENTS, PROGRESS_KEY, EngineConfig, PartitionProcessor, Record, apply_to
from online_models.replay import REPLAY_NOW_MS, replay_history
from online_models.simulation import ShopSimulator
from online_models.watch import WatchConfig
from online_models.portrait import PortraitConfig
from tests.association_reference import batch_baskets, batch_counts, batch_next_categories, batch_rules

START_MS = 1_788_307_200_000  # 2026-09-01 00:00 UTC
DAY = 86_400_000
#: a figure rounded to 4 places is within this of the exact one
ROUNDED = 5.000001e-5
LATENESS = 300_000
GAP = 3_600_000


def history(users: int = 90, days: int = 35, seed: int = 5) -> list[dict]:
    events = list(ShopSimulator(n_users=users, start_ms=START_MS, seed=seed, companions=True).history(days))
    closer = {"event_id": "closer", "user_id": "closer", "type": "view", "ts": START_MS + (days + 2) * DAY}
    return events + [closer]  # its watermark closes every basket of the history


def as_records(baskets: list[dict]) -> set[tuple]:
    return {(b["last"], tuple(b["categories"]), tuple(b["items"])) for b in baskets}


def streamed(baskets: list[dict]) -> set[tuple]:
    return {(b["ts"], tuple(b["categories"]), tuple(b["items"])) for b in baskets}


@pytest.fixture(scope="module")
def replayed():
    events = history()
    return events, replay_history(events, lateness_ms=LATENESS)


def test_the_engine_closes_the_batch_baskets(replayed):
    events, result = replayed
    expected = batch_baskets(events, order_gap_ms=GAP, watermark=events[-1]["ts"] - LATENESS)
    assert len(result.baskets) == len(expected) > 500
    assert streamed(result.baskets) == as_records(expected)
    assert len({b["id"] for b in result.baskets}) == len(result.baskets)
    assert all(not state.baskets for state in result.states.values())  # all closed by the last watermark
    assert Counter(len(b["categories"]) for b in result.baskets)[2] > 50  # orders of several categories


def test_counts_and_rules_equal_the_batch_computation(replayed):
    """No sketch evicts anything here, so every count, support, confidence and lift is exact."""
    events, result = replayed
    counts = AssociationCounts(AssociationConfig(window_days=30))
    for record in result.baskets:
        counts.add(record)
    summary = counts.summary()
    truth = batch_counts(batch_baskets(events, order_gap_ms=GAP, watermark=events[-1]["ts"] - LATENESS), window_days=30)

    cats = summary["categories"]
    assert cats["max_error"] == cats["pair_max_error"] == 0
    assert cats["baskets"] == truth["category"]["baskets"]
    assert cats["counts"] == dict(truth["category"]["counts"])
    assert {(a, b): n for a, b, n in cats["pairs"]} == dict(truth["category"]["pairs"])
    items = summary["items"]
    assert items["max_error"] == items["pair_max_error"] == 0 and items["baskets"] == truth["item"]["baskets"]
    top = truth["item"]["pairs"].most_common()
    assert sorted(n for *_, n, _, _ in items["pairs"]) == sorted(n for _, n in top[:200])
    for a, b, n, low, high in items["pairs"]:
        assert n == low == high == truth["item"]["pairs"][(a, b)]
        assert items["counts"][a] == [truth["item"]["counts"][a]] * 3

    rules = {(r["a"], r["b"]): r for r in pair_rules(summary, limit=10_000)}
    expected = batch_rules(truth["category"])
    assert set(rules) == set(expected)
    for pair, rule in rules.items():
        for name in ("baskets", "support", "confidence_ab", "confidence_ba", "lift"):
            assert rule[name] == pytest.approx(expected[pair][name], abs=ROUNDED), (pair, name)
    # the simulated complements stand out: bought together far more often than chance
    assert expected[("baby", "health")]["lift"] > 1.5 and expected[("digital", "electronics")]["lift"] > 1.5

    lifts = CategoryLifts(summary)
    for top in (["baby"], ["electronics", "snacks"], ["apparel", "beauty", "home"], []):
        served = [(n["category"], n["because"]) for n in lifts.next_for(top)]
        assert served == batch_next_categories(top, truth["category"], min_baskets=3, limit=3)
    assert lifts.next_for(["baby"])[0]["category"] == "health"


def test_the_window_keeps_the_last_days(replayed):
    events, result = replayed
    for days in (1, 7):
        counts = AssociationCounts(AssociationConfig(window_days=days))
        for record in result.baskets:  # in the order they closed: some arrive after later days
            counts.add(record)
        truth = batch_counts(batch_baskets(events, order_gap_ms=GAP, watermark=events[-1]["ts"] - LATENESS), window_days=days)
        summary = counts.summary()
        assert summary["categories"]["baskets"] == truth["category"]["baskets"] > 0
        assert {(a, b): n for a, b, n in summary["categories"]["pairs"]} == dict(truth["category"]["pairs"])
        assert len(counts.days) <= days
        assert summary["window"]["days"] == days and summary["window"]["last_day"] == summary["as_of"][:10]


@pytest.mark.slow
def test_out_of_order_arrival_within_the_lateness_closes_the_same_baskets(replayed):
    events, result = replayed
    rng = random.Random(3)
    # each event delayed by up to half the allowed lateness: the stream time before it never passes its
    # time by more, so it is admitted, in another order than it happened
    shuffled = sorted(events[:-1], key=lambda e: e["ts"] + rng.randrange(LATENESS // 2))
    assert shuffled != events[:-1]
    again = replay_history([*shuffled, events[-1]], lateness_ms=LATENESS)
    assert again.rejected == 0
    assert sorted(orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in again.baskets) == sorted(
        orjson.dumps(b, option=orjson.OPT_SORT_KEYS) for b in result.baskets
    )


def test_a_crash_replays_baskets_under_the_same_id_and_they_count_once():
    events = history(users=30, days=10, seed=9)
    config = EngineConfig(watch=WatchConfig(), lateness_ms=LATENESS, retention_ms=0, sweep_batch=None, progress_every=50)
    store: dict[bytes, bytes] = {}
    engine = PartitionProcessor(0, store, config)
    sent, crash_at = [], None
    for offset, event in enumerate(events):  # crash after the first record that closes baskets between two flushes
        effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=REPLAY_NOW_MS)
        apply_to(store, effects)  # the flushed prefix survives the crash
        sent += [e.payload for e in effects if getattr(e, "kind", None) == "basket"]
        flushed = any(getattr(e, "key", None) == PROGRESS_KEY for e in effects)
        if offset > len(events) // 3 and sent and not flushed and any(getattr(e, "kind", None) == "basket" for e in effects):
            crash_at = offset + 1
            break
    assert crash_at is not None
    restarted = PartitionProcessor(0, store, config)
    start = restarted.progress.offsets[EVENTS] + 1
    assert start < crash_at
    for offset in range(start, len(events)):
        event = events[offset]
        effects = restarted.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=REPLAY_NOW_MS)
        apply_to(store, effects)
        sent += [e.payload for e in effects if getattr(e, "kind", None) == "basket"]
    ids = Counter(b["id"] for b in sent)
    assert any(n > 1 for n in ids.values())  # some were sent again...
    by_id = {}
    for basket in sent:
        assert by_id.setdefault(basket["id"], basket) == basket  # ...the same each time
    counts = AssociationCounts(AssociationConfig(window_days=30))
    outcomes = Counter(counts.add(b) for b in sent)
    assert outcomes == {"added": len(ids), "duplicate": len(sent) - len(ids)}
    truth = batch_counts(batch_baskets(events, order_gap_ms=GAP, watermark=events[-1]["ts"] - LATENESS), window_days=30)
    assert {(a, b): n for a, b, n in counts.summary()["categories"]["pairs"]} == dict(truth["category"]["pairs"])


def test_orders_split_where_payments_are_further_apart_than_the_gap_whatever_the_order():
    pays = [(0, "a"), (50, "b"), (200, "c"), (260, "d"), (120, "e")]  # gap 60: 0-50 | 120 | 200-260
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        baskets: list = []
        for i in order:
            ts, category = pays[i]
            add_purchase(baskets, ts=ts, order_id="o", category=category, item_id=None, zone="UTC", order_gap_ms=60)
        closed = close_due(baskets, watermark=10_000)
        assert [b[4] for b in closed] == [["a", "b"], ["e"], ["c", "d"]] or sorted(b[4] for b in closed) == [["a", "b"], ["c", "d"], ["e"]]
        assert sorted((b[1], b[2], b[3]) for b in closed) == [(0, 50, 111), (120, 120, 181), (200, 260, 321)]
    bridge: list = []
    for ts, category in ((0, "a"), (100, "b"), (50, "c")):  # the last payment joins the first two
        add_purchase(bridge, ts=ts, order_id="o", category=category, item_id="i" + category, zone="UTC", order_gap_ms=60)
    assert len(bridge) == 1 and bridge[0][4] == ["a", "b", "c"] and basket_record("u", bridge[0])["ts"] == 100


def test_a_basket_keeps_its_smallest_lines_whatever_the_order():
    names = [f"c{i:02d}" for i in range(40)]
    results = set()
    for seed in range(5):
        random.Random(seed).shuffle(names)
        baskets: list = []
        for ts, name in enumerate(names):
            add_purchase(baskets, ts=ts, order_id=None, category=name, item_id=None, zone="UTC", order_gap_ms=60, max_lines=8)
        results.add(tuple(baskets[0][4]))
    assert results == {tuple(f"c{i:02d}" for i in range(8))}


def test_day_baskets_follow_the_shop_time_zone():
    config = PortraitConfig(timezone="Asia/Shanghai")
    baskets: list = []
    for ts, category in ((START_MS + 15 * 3_600_000, "a"), (START_MS + 17 * 3_600_000, "b")):  # 23:00 and 01:00 in Shanghai
        add_purchase(baskets, ts=ts, order_id=None, category=category, item_id=None, zone=config.timezone, order_gap_ms=60)
    assert [b[4] for b in baskets] == [["a"], ["b"]]
    assert baskets[0][3] == START_MS + 16 * 3_600_000  # midnight in Shanghai


def test_duplicates_too_old_and_malformed_baskets():
    counts = AssociationCounts(AssociationConfig(window_days=2, recent_ids=3))
    basket = {"id": "x", "ts": START_MS, "categories": ["a", "b"], "items": []}
    assert counts.add(basket) == "added" and counts.add(basket) == "duplicate"
    assert counts.add({**basket, "id": "y", "ts": START_MS + 2 * DAY}) == "added"
    assert counts.add({**basket, "id": "z", "ts": START_MS + 5_000}) == "too_old"  # day 0 left the window (days 1-2)
    assert counts.summary()["categories"]["baskets"] == 1 and list(counts.days) == [(START_MS + 2 * DAY) // DAY]
    for i in range(4):
        counts.add({**basket, "id": f"n{i}", "ts": START_MS + 2 * DAY})
    assert "x" not in counts.recent and len(counts.recent) == 3  # bounded: the oldest id is forgotten
    for bad in ({"ts": START_MS}, {"id": "q", "ts": "soon"}, {"id": "q", "ts": 5, "categories": "ab"}, {"id": "q", "ts": 5, "items": [3]}):
        with pytest.raises(ValueError):
            counts.add(bad)
    restored = AssociationCounts.from_bytes(counts.to_bytes())
    assert restored.summary() == counts.summary() and restored.recent == counts.recent
    shorter = AssociationCounts.from_bytes(counts.to_bytes(), AssociationConfig(window_days=1))
    assert list(shorter.days) == list(counts.days) and shorter.config.window_days == 1


def _zipf_baskets(rng: random.Random, n: int, universe: int) -> list[list[str]]:
    weights = [1 / (rank + 1) ** 1.1 for rank in range(universe)]
    names = [f"cat{rank % 7}\x1fitem{rank:04d}" for rank in range(universe)]
    return [sorted(set(rng.choices(names, weights=weights, k=rng.randint(1, 5)))) for _ in range(n)]


@pytest.mark.parametrize("lg_k", [4, 6])
def test_item_counts_stay_within_the_sketch_error_bound(lg_k):
    """With far more distinct items and pairs than the sketch holds, every count reported is within its
    bounds, the bounds within epsilon x total weight, and no pair above the maximum error is missed."""
    rng = random.Random(lg_k)
    config = AssociationConfig(window_days=3, item_lg_k=lg_k, top_item_pairs=10_000)
    counts = AssociationCounts(config)
    baskets = []
    for day in range(3):
        for i, items in enumerate(_zipf_baskets(rng, 800, 300)):
            record = {"id": f"{day}-{i}", "ts": START_MS + day * DAY + i, "categories": [], "items": items}
            baskets.append(record)
            counts.add(record)
    singles = Counter(name for b in baskets for name in b["items"])
    pairs = Counter((a, b) for basket in baskets for i, a in enumerate(basket["items"]) for b in basket["items"][i + 1 :])
    summary = counts.summary()["items"]
    epsilon = frequent_strings_sketch.get_epsilon_for_lg_size(lg_k)
    assert summary["baskets"] == len(baskets)
    assert 0 < summary["pair_max_error"] <= epsilon * sum(pairs.values())
    assert 0 < summary["max_error"] <= epsilon * sum(singles.values())
    reported = set()
    for a, b, estimate, low, high in summary["pairs"]:
        reported.add((a, b))
        assert low <= pairs[(a, b)] <= high and high - low <= summary["pair_max_error"] and low <= estimate <= high
    for (a, b), n in pairs.items():
        if n > summary["pair_max_error"]:
            assert (a, b) in reported, (a, b, n)
    for name, (estimate, low, high) in summary["counts"].items():
        assert low <= singles[name] <= high and high - low <= summary["max_error"]
    rules = pair_rules(counts.summary(), kind="item", category="cat0", limit=5)
    assert rules and all(r["a"].startswith("cat0\x1f") for r in rules)


def test_max_error_is_zero_until_the_sketch_evicts():
    sketch = frequent_strings_sketch(4)  # 12 values fit
    for i in range(12):
        sketch.update(f"v{i}", i + 1)
    assert max_error(sketch) == 0 and sketch.get_lower_bound("v5") == sketch.get_upper_bound("v5") == 6
    sketch.update("v12", 1)
    assert max_error(sketch) > 0
