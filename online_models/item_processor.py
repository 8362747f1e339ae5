"""One item partition's engine: item facts in, item and category portraits out.

An :class:`ItemPartitionProcessor` owns one partition of the ``item-facts``
topic (co-partitioned with ``events``: a worker holding user partition N holds
item partition N too) and the states of the items and categories keyed to it.
It is the same machinery as the users' engine
(:class:`online_models.partition_engine.PartitionEngine`): a flush writes the
changed states once, then the partition's progress record; after a crash the
records past the progress are applied again, and each state recognises the
facts it already holds by their source position (:func:`online_models.item_portrait.fold`).
A record is a pack of facts (:func:`online_models.item_facts.parse_item_facts`), folded
whole; one that is not is dead-lettered whole.
Its clock is its own: stream time is the newest fact's time (never past the
wall clock), and the portraits' windows end on the shop day of its ``as_of``.
A key without facts for ``retention_ms`` of event time is forgotten (state and
published portrait).

>>> import orjson
>>> store = {}
>>> engine = ItemPartitionProcessor(0, store, ItemEngineConfig())
>>> fact = {"key": "item:sku-1", "type": "view", "ts": 1714536000000, "day": 19844,
...         "item_id": "sku-1", "category": "snacks", "cents": 0, "source": [2, 17]}
>>> record = Record(ITEM_FACTS, ITEM_FACTS, 0, b"item:sku-1", orjson.dumps([fact]))
>>> engine.process(record, now_ms=1714536000000), engine.counts["item_facts_applied"]
([], 1)
>>> again = Record(ITEM_FACTS, ITEM_FACTS, 1, b"item:sku-1", orjson.dumps([fact]))  # the same fact sent twice
>>> engine.process(again, now_ms=1714536000000), engine.counts["item_facts_duplicate"]
([], 1)
>>> sends, _ = engine.publication(None)
>>> [(s.topic, s.key, orjson.loads(s.value)["windows"]["7d"]["views"]) for s in sends]
[('item-portraits', b'item:sku-1', 1)]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from online_models.clock import DAY_MS
from online_models.item_facts import parse_item_facts
from online_models.item_portrait import ItemConfig, ItemState, floor_day, fold, prune, render
from online_models.partition_engine import Effect, Flushing, PartitionEngine, Record, Send, StateReader
from online_models.schedule import CheckSchedule
from online_models.topic_names import ITEM_FACTS, ITEM_PORTRAITS


@dataclass(frozen=True)
class ItemEngineConfig:
    """What an item partition's engine needs to know; every field has a sensible default."""

    item: ItemConfig = field(default_factory=ItemConfig)
    flushing: Flushing = field(default_factory=Flushing)
    #: a key without facts this long (event time) is forgotten; 0: never
    retention_ms: int = 400 * 86_400_000


class ItemPartitionProcessor(PartitionEngine[ItemState]):
    """The pure engine of one item partition (see the module's docstring)."""

    publish_topic = ITEM_PORTRAITS
    publish_kind = "item_portrait"

    def __init__(self, partition: int, store: StateReader, config: ItemEngineConfig):
        self.config = config
        #: keys by the event time they expire at
        self.expiries = CheckSchedule()
        #: the watermark the oldest day kept was last worked out for, and that day
        self._floor: tuple[int, int] | None = None
        super().__init__(partition, store, config.flushing)

    def _decode(self, raw: bytes) -> ItemState:
        return ItemState.from_bytes(raw)

    def _key(self, state: ItemState) -> str:
        return state.key

    def _restored(self, state: ItemState) -> None:
        self._schedule(state)

    def _render(self, state: ItemState, as_of: int | None, models) -> bytes:
        return orjson.dumps(render(state, as_of=as_of, config=self.config.item))

    def _apply(self, record: Record, effects: list[Effect], *, now_ms: int, models) -> None:
        """Fold every fact of the record (a pack), or none of them when one is not a fact."""
        for fact in parse_item_facts(record.value):
            state = self.state(fact.key) or ItemState(fact.key)
            # a fact sent again moves the clock as the first one did: never past the wall clock
            self.clock.observe(self.partition, fact.ts, limit_ms=now_ms)
            if not fold(state, fact):
                self.counts["item_facts_duplicate"] += 1
                continue
            prune(state, self._floor_day())
            self._schedule(state)
            self._changed(state)
            self.counts["item_facts_applied"] += 1

    def _floor_day(self) -> int:
        """The oldest shop day a window can still count, worked out again only when the watermark moves."""
        watermark = self.watermark
        if self._floor is None or self._floor[0] != watermark:
            self._floor = (watermark, floor_day(watermark, self.config.item))
        return self._floor[1]

    def _time_moved(self, effects: list[Effect], models) -> None:
        """Forget the keys idle past the retention: state and published portrait."""
        watermark = self.watermark
        for key in self.expiries.pop_due(watermark):
            state = self.state(key)
            if state is None:
                continue
            if state.last_seen is not None and state.last_seen + self.config.retention_ms > watermark:
                self._schedule(state)  # a fact came since, within the day the entry was rounded to
                continue
            self._drop(key)
            effects.append(Send(ITEM_PORTRAITS, key.encode(), None, kind="expiry"))
            self.counts["item_keys_expired"] += 1

    def _schedule(self, state: ItemState) -> None:
        """Look at the key again when the retention has passed since its last fact: at the end of that
        day (the entry then stays put while facts keep coming that day)."""
        if self.config.retention_ms and state.last_seen is not None:
            self.expiries.set(state.key, -(-(state.last_seen + self.config.retention_ms) // DAY_MS) * DAY_MS)
