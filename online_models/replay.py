"""A whole history through the partition engines in one process: what the workers compute, without Kafka.

The same :class:`~online_models.processor.PartitionProcessor` the workers run
folds the events over an in-memory store, on one partition, and the trainer's
models learn its samples as they come, with a snapshot for scoring every
``snapshot_every`` events; the item facts it sends are folded as they come by an
:class:`~online_models.item_processor.ItemPartitionProcessor`, the items' engine.
Used to evaluate the models against ground truth, to train a model snapshot
offline (for example to score a replay with frozen models) and to measure the engines.

>>> history = [
...     {"event_id": f"e{i}", "user_id": f"u{i % 3}", "type": "pay" if i % 4 == 0 else "view",
...      "ts": 1_714_536_000_000 + i * 3_600_000, "amount": 20.0}
...     for i in range(40)
... ]
>>> result = replay_history(history)
>>> result.events, sorted(result.states), result.states["u0"].events
(40, ['u0', 'u1', 'u2'], 14)
>>> result.item_states  # no event named an item or a category
{}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from online_models.alerts import Alert
from online_models.item_facts import MAX_PACKED_FACTS, pack_facts
from online_models.item_portrait import ItemState
from online_models.item_processor import ItemEngineConfig, ItemPartitionProcessor
from online_models.population import PopulationModels
from online_models.portrait import PortraitState
from online_models.processor import EVENTS, ITEM_FACTS, EngineConfig, PartitionProcessor, Record, Send, apply_to
from online_models.watch import WatchConfig

#: the wall clock a replay admits with: far past any history, so no recorded event is ahead of it
REPLAY_NOW_MS = 2**62


@dataclass
class ReplayResult:
    """Final states, the trained models, the alerts fired, the baskets closed, the end of event time and the engine's counts."""

    states: dict[str, PortraitState]
    models: PopulationModels
    alerts: list[Alert] = field(default_factory=list)
    events: int = 0
    as_of: int = 0
    #: looks at users (after an event or at a scheduled check)
    checks: int = 0
    #: records the engine dead-lettered
    rejected: int = 0
    #: item and category states (key ``item:<id>`` / ``category:<name>``), and the end of their event time
    item_states: dict[str, ItemState] = field(default_factory=dict)
    item_as_of: int = 0
    #: the baskets the engine closed (online_models.baskets.basket_record), in the order they closed
    baskets: list[dict] = field(default_factory=list)

    def snapshot(self) -> PopulationModels:
        """The models as a scorer would load them from the ``models`` topic."""
        return PopulationModels.from_bytes(self.models.to_bytes())


def replay_history(
    events: Iterable[dict],
    *,
    config: WatchConfig | None = None,
    models: PopulationModels | None = None,
    lateness_ms: int = 300_000,
    snapshot_every: int = 5000,
    frozen: PopulationModels | None = None,
    engine: EngineConfig | None = None,
    items: ItemEngineConfig | None = None,
) -> ReplayResult:
    """Fold ``events`` (contract dicts, in delivery order) and train ``models`` as the workers would.

    With ``frozen`` models, score with them throughout and learn nothing (a worker with
    ``PORTRAITS_TRAIN_MODELS=false``). ``engine`` overrides the engine's settings
    (by default: no retention, every due user looked at per record), ``items`` the items' engine's.
    """
    config = config or WatchConfig()
    engine = engine or EngineConfig(watch=config, lateness_ms=lateness_ms, retention_ms=0, sweep_batch=None)
    models = models if models is not None else PopulationModels()
    store: dict[bytes, bytes] = {}
    processor = PartitionProcessor(0, store, engine)
    item_store: dict[bytes, bytes] = {}
    item_feed = _ItemFeed(ItemPartitionProcessor(0, item_store, items or ItemEngineConfig(retention_ms=0)), item_store)
    result = ReplayResult(states={}, models=models)
    scorer = frozen
    for offset, event in enumerate(events):
        value = orjson.dumps(event)
        key = event["user_id"].encode() if isinstance(event.get("user_id"), str) else None
        before = processor.counts["events_processed"]
        effects = processor.process(Record(EVENTS, EVENTS, offset, key, value), now_ms=REPLAY_NOW_MS, models=scorer)
        _execute(effects, store, result, learn=models if frozen is None else None, items=item_feed)
        if processor.counts["events_processed"] != before:
            result.events += 1
            if frozen is None and result.events % snapshot_every == 0:  # the trainer publishes snapshots
                scorer = PopulationModels.from_bytes(models.to_bytes())
    _execute(processor.flush(), store, result, learn=None, items=item_feed)
    item_feed.release()
    apply_to(item_store, item_feed.engine.flush())
    result.item_states = {state.key: state for state in item_feed.engine.states()}
    result.item_as_of = item_feed.engine.as_of or 0
    result.states = {state.user_id: state for state in processor.states()}
    result.as_of = processor.as_of or 0
    result.checks = processor.counts["checks"]
    result.rejected = sum(n for name, n in processor.counts.items() if name.startswith("rejected:"))
    return result


def _execute(
    effects: list, store: dict[bytes, bytes], result: ReplayResult, *, learn: PopulationModels | None, items: "_ItemFeed"
) -> None:
    apply_to(store, effects)
    wrote = False
    for effect in effects:
        if not isinstance(effect, Send):
            wrote = True
            continue
        if effect.kind == "alert":
            result.alerts.append(effect.payload)
        elif effect.kind == "basket":
            result.baskets.append(effect.payload)
        elif effect.kind == "sample" and learn is not None:
            learn.learn(effect.payload)
        elif effect.kind == "item_fact":
            items.held.append((effect.key, effect.value))
    if wrote:
        items.release()


@dataclass
class _ItemFeed:
    """A replay's items' engine over an in-memory store, the item facts held back and the next offset.

    As in the worker, the facts wait for the users' engine's next write and then reach the
    items' engine in packs (:data:`MAX_PACKED_FACTS` at most; one item partition here).
    """

    engine: ItemPartitionProcessor
    store: dict[bytes, bytes] = field(default_factory=dict)
    held: list[tuple[bytes, bytes]] = field(default_factory=list)
    offset: int = 0

    def release(self) -> None:
        """Fold the facts held back, pack by pack, as the worker holding their partition would."""
        held, self.held = self.held, []
        for start in range(0, len(held), MAX_PACKED_FACTS):
            pack = held[start : start + MAX_PACKED_FACTS]
            record = Record(ITEM_FACTS, ITEM_FACTS, self.offset, pack[0][0], pack_facts(value for _, value in pack))
            self.offset += 1
            apply_to(self.store, self.engine.process(record, now_ms=REPLAY_NOW_MS))
