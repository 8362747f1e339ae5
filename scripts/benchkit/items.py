"""What item and category portraits cost the core: a history replayed with and without item facts, CPU per event.

The simulator's shop traffic (:class:`online_models.simulation.ShopSimulator`) or the uniform
synthetic workload (:func:`benchkit.events.synthetic_events`: every event a view, cart or payment
of an item) is replayed through :func:`online_models.replay.replay_history` with the item facts on
and off (``EngineConfig.item_facts``), alternating, ``repeats`` times each, the best CPU time
(``time.process_time``) kept: the difference is what the users' engine spends making the facts plus
what the items' engine spends folding them. The items' engine is also timed alone over the same
facts (one record per fact, the worst case of the worker's packs), and the render of an item or
category portrait (a publication's cost per changed key) over the replay's final states.
"""

from __future__ import annotations

import time

import orjson

from online_models.item_facts import pack_facts
from online_models.item_portrait import ItemConfig, ItemState, render
from online_models.item_processor import ItemEngineConfig, ItemPartitionProcessor
from online_models.partition_engine import Record, Send, apply_to
from online_models.processor import EVENTS, ITEM_FACTS, EngineConfig, PartitionProcessor
from online_models.replay import REPLAY_NOW_MS, replay_history
from online_models.simulation import ShopSimulator
from online_models.watch import WatchConfig

START_MS = 1_717_171_200_000
DAY_MS = 86_400_000


def history_of(traffic: str, users: int, days: float, seed: int, events: int) -> list[dict]:
    """The events of the chosen traffic."""
    if traffic == "shop":
        return list(ShopSimulator(n_users=users, start_ms=START_MS, seed=seed).history(days))
    from benchkit.events import synthetic_events

    span = int(days * DAY_MS)
    return [orjson.loads(value) for _, value in synthetic_events(events, users=users, start_ms=START_MS, span_ms=span, seed=seed)]


def _facts_of(history: list[dict]) -> list[tuple[bytes, bytes]]:
    """The item facts the users' engine makes over the history, in order."""
    engine = PartitionProcessor(0, {}, EngineConfig(retention_ms=0, sweep_batch=None))
    facts = []
    for offset, event in enumerate(history):
        effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=REPLAY_NOW_MS)
        facts += [(e.key, e.value) for e in effects if isinstance(e, Send) and e.kind == "item_fact"]
    return facts


def measure(traffic: str, users: int, days: float, seed: int, events: int, repeats: int = 3) -> dict:
    """CPU µs per event of the replay with and without item facts; the items' engine and render alone."""
    history = history_of(traffic, users, days, seed, events)
    frozen = replay_history(history[: len(history) // 3]).snapshot()
    best: dict[bool, float] = {}
    for _ in range(repeats):
        for on in (False, True):
            engine = EngineConfig(watch=WatchConfig(), retention_ms=0, sweep_batch=None, item_facts=on)
            started = time.process_time()
            result = replay_history(history, frozen=frozen, engine=engine)
            took = time.process_time() - started
            best[on] = min(took, best.get(on, took))
    n = result.events
    facts = _facts_of(history)
    records = [Record(ITEM_FACTS, ITEM_FACTS, i, key, pack_facts([value])) for i, (key, value) in enumerate(facts)]
    fold_best = None
    for _ in range(repeats):
        store: dict[bytes, bytes] = {}
        items = ItemPartitionProcessor(0, store, ItemEngineConfig(retention_ms=0))
        started = time.process_time()
        for record in records:
            apply_to(store, items.process(record, now_ms=REPLAY_NOW_MS))
        took = time.process_time() - started
        fold_best = took if fold_best is None else min(fold_best, took)
    states: list[ItemState] = list(result.item_states.values())
    config = ItemConfig()
    started = time.process_time()
    for state in states:
        render(state, as_of=result.item_as_of, config=config)
    rendering = time.process_time() - started
    raws = [state.to_bytes() for state in states]
    return {
        "traffic": traffic,
        "events": n,
        "facts": len(facts),
        "facts_per_event": round(len(facts) / n, 3),
        "replay_us_per_event": {"without item facts": round(best[False] / n * 1e6, 1), "with item facts": round(best[True] / n * 1e6, 1)},
        "difference_us_per_event": round((best[True] - best[False]) / n * 1e6, 1),
        "items_engine_us_per_fact": round(fold_best / len(records) * 1e6, 1),
        "keys": len(states),
        "render_us_per_key": round(rendering / len(states) * 1e6, 1),
        "state_bytes": {"mean": round(sum(map(len, raws)) / len(raws)), "max": max(map(len, raws))},
    }
