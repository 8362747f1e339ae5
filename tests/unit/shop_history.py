"""One simulated shop replayed through the pure core, shared by the tests of the group figures built on it."""

from __future__ import annotations

import random
from functools import lru_cache

from online_models.population import PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator
from online_models.watch import WatchConfig
from tests.reference import DAY, batch_habits, events_by_user
from tests.unit.portrait_builder import as_json

ZONE = "Asia/Shanghai"
START = 1_767_196_800_000  # 2025-12-31T16:00:00Z: midnight of 2026-01-01 in the shop's zone


def long_histories(rng: random.Random) -> list[dict]:
    """Users seen over more than a year, a visit every few weeks, so their ledgers drop weeks."""
    events = []
    for u in range(6):
        ts = START - 420 * DAY + u * 3 * DAY
        i = 0
        while ts < START + 60 * DAY:
            events.append({"event_id": f"L{u}-{i}", "user_id": f"long{u}", "type": "view", "ts": ts, "item_id": "x"})
            if rng.random() < 0.5:
                events.append({"event_id": f"L{u}-{i}p", "user_id": f"long{u}", "type": "pay", "ts": ts + 60_000, "amount": 12.5})
            if rng.random() < 0.3:
                events.append({"event_id": f"L{u}-{i}s", "user_id": f"long{u}", "type": "share", "ts": ts + 120_000})
            ts += int(rng.uniform(2, 40) * DAY)
            i += 1
    return events


@lru_cache(maxsize=1)
def replayed_shop() -> tuple[list[dict], list[dict], int, PopulationModels]:
    """The raw events, the portraits a worker publishes from them at the end (scored with a frozen snapshot whose
    order values are the buyers' average order values from the batch computation) as their JSON, their as_of, the
    snapshot."""
    simulator = ShopSimulator(n_users=36, start_ms=START, seed=21)
    events = sorted([*simulator.history(63), *long_histories(random.Random(3))], key=lambda e: e["ts"])
    snapshot = PopulationModels()
    for user_events in events_by_user(events).values():
        aov = batch_habits(user_events, ZONE)["aov"]
        if aov is not None:
            snapshot.order_values.update(aov, START)
    config = PortraitConfig(timezone=ZONE)
    result = replay_history(events, config=WatchConfig(portrait=config), frozen=snapshot)
    portraits = [as_json(snapshot.enrich(render(state, as_of=result.as_of, config=config))) for state in result.states.values()]
    return events, portraits, result.as_of, snapshot
