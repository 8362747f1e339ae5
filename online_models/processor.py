"""One user partition's engine: records in, effects out, with the partition's live states cached.

A :class:`PartitionProcessor` owns everything one input partition needs: its
event clock, its progress (input offsets applied, stream time, change numbers),
its check schedule, the users changed since the last flush and since the last
publication, and a cache of live :class:`~online_models.portrait.PortraitState`
objects in front of the state store. It takes records of ``events``,
``profiles``, ``erasures`` and ``ticks`` and returns what must happen as values
(:class:`Put`, :class:`Delete`, :class:`Send`); the caller executes them in
order. There is no Kafka, Faust or asyncio in here, so the worker, the
in-process replay, evaluation and the benchmarks drive the same code.

The machinery (flushes, progress records, the record cache, publication) is
:class:`online_models.partition_engine.PartitionEngine`'s, shared with the items'
engine; here is what the users' records do:

* events already folded in are recognised by ``event_id`` (a crash's replay
  re-applies the records after the last progress record);
* a :class:`Send` with ``confirm`` must be delivered before any later
  :class:`Put` or :class:`Delete` is executed: an alert reaches Kafka before
  the state that remembers it (written right after the record that fired it, so
  a crash does not fire it again), an erasure's tombstones before the state is
  deleted, an event's item facts (:mod:`online_models.item_facts`) before the
  state that has folded the event in;
* each event that names an item or a category is sent on, re-keyed, to the
  ``item-facts`` topic, where the items' engines fold it
  (:mod:`online_models.item_processor`).

>>> import orjson
>>> store = {}
>>> engine = PartitionProcessor(0, store, EngineConfig(progress_every=3))
>>> def event(i, kind="view"):
...     body = {"event_id": f"e{i}", "user_id": "u1", "type": kind, "ts": 1714536000000 + i * 60000, "amount": 30}
...     return Record("events", "events", i, b"u1", orjson.dumps(body))
>>> [e.kind for e in engine.process(event(0), now_ms=1714536000000)]  # a first look at the user: a sample
['sample']
>>> engine.process(event(1), now_ms=1714536000000)
[]
>>> effects = engine.process(event(2, "pay"), now_ms=1714536000000)
>>> [type(e).__name__ for e in effects]  # the third: the purchase's statistics for the trainer, u1 written once, the progress
['Send', 'Put', 'Put']
>>> effects[0].kind, effects[0].payload["kind"]
('sample', 'purchase_stats')
>>> apply_to(store, effects); sorted(store)
[b'\\x00progress', b'u1']
>>> engine.process(event(2, "pay"), now_ms=1714536000000), engine.counts["records_skipped"]
([], 1)
>>> sends, covered = engine.publication(None); [(s.topic, s.key) for s in sends], covered
([('portraits', b'u1')], 3)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace

import orjson

from online_models.admission import admit_erasure, admit_event, admit_profile, fold_event, review_sentiment
from online_models.alerts import AlertState
from online_models.baskets import basket_record, close_due
from online_models.erasure import erasure_records, forget_local
from online_models.events import MAX_ID_LENGTH, MIN_TS_MS, Event, InvalidEvent
from online_models.item_facts import ITEM_FACT_TYPES, buyer_attributes, facts_for
from online_models.partition_engine import (  # noqa: F401  (re-exported: the engine's values are read here too)
    MAX_DEAD_LETTER_BYTES,
    MAX_DEAD_LETTER_KEY_BYTES,
    MAX_DETAIL_CHARS,
    PROGRESS_KEY,
    Delete,
    Effect,
    Flushing,
    PartitionEngine,
    PartitionProgress,
    Put,
    Record,
    Send,
    StateReader,
    apply_to,
    is_internal_key,
)
from online_models.portrait import PortraitState, render, update_profile
from online_models.retention import due_at, is_expired
from online_models.schedule import CheckSchedule
from online_models.sentiment import ReviewScorer, ShippedModelScorer
from online_models.topic_names import (  # noqa: F401  (re-exported)
    BASKETS,
    CHURN_ALERTS,
    DEAD_LETTERS,
    ERASURES,
    EVENTS,
    ITEM_FACTS,
    MODEL_TRAINING,
    PORTRAITS,
    PROFILES,
    TICKS,
)
from online_models.watch import CrossingPlan, WatchConfig, crossing_plan, replanned_crossing, watch_user

log = logging.getLogger(__name__)

#: dead-letter reason of an event that could take its user's stored state past ``max_state_bytes``
STATE_TOO_LARGE = "state_too_large"
#: most bytes of a user's serialized state; the topics' record limit (streams/topics.py) leaves room above it
MAX_STATE_BYTES = 900_000
#: the most one event (and the look at the user after it) adds to a serialized state, besides its
#: strings: a minute bucket, times, counters, a label snapshot
EVENT_GROWTH_BYTES = 2048
#: bytes of a serialized state with an empty user id and nothing folded in
EMPTY_STATE_BYTES = len(PortraitState("").to_bytes())
#: least wall-clock time between two log lines about events stamped ahead of the wall clock
CLAMP_LOG_INTERVAL_MS = 60_000


def _new_state_bytes(user_id: str) -> int:
    """The most bytes a new user's state takes serialized, before anything is folded in (every character of the id
    escaped at six bytes)."""
    return EMPTY_STATE_BYTES + 6 * len(user_id)


def fence_key(user_id: str) -> str:
    """What a partition's progress keeps of an erased user: a digest, not the id.

    >>> fence_key("u1") == fence_key("u1") != fence_key("u2"), len(fence_key("u1"))
    (True, 32)
    """
    return hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class EngineConfig:
    """What a partition's engine needs to know; every field has a sensible default."""

    watch: WatchConfig = field(default_factory=WatchConfig)
    lateness_ms: int = 300_000
    max_future_ms: int = 86_400_000
    #: events stamped before this instant are invalid
    earliest_event_ms: int = MIN_TS_MS
    #: a user idle this long (event time) is forgotten; 0: never
    retention_ms: int = 400 * 86_400_000
    #: records between two flushes (at most this many are applied again after a crash)
    progress_every: int = 10_000
    #: most scheduled users looked at per record (None: every due user)
    sweep_batch: int | None = 500
    #: live mode: a partition without records this long follows the wall clock (0: off)
    live_idle_ms: int = 0
    pseudonym_key: bytes | None = None
    #: live states kept in memory beyond the changed ones
    cache_users: int = 20_000
    #: most bytes of a user's serialized state (an event that could pass it is dead-lettered)
    max_state_bytes: int = MAX_STATE_BYTES
    #: most bytes of key and value a dead letter carries
    dead_letter_max_bytes: int = MAX_DEAD_LETTER_BYTES
    #: scores each review once, at admission (see online_models.sentiment)
    scorer: ReviewScorer = field(default_factory=ShippedModelScorer, compare=False, repr=False)
    #: send each counted event that names an item or a category on to the items' engines (item-facts topic)
    item_facts: bool = True

    def flushing(self) -> Flushing:
        """The engine machinery's part of the configuration."""
        return Flushing(
            lateness_ms=self.lateness_ms,
            progress_every=self.progress_every,
            cache_size=self.cache_users,
            dead_letter_max_bytes=self.dead_letter_max_bytes,
        )


# ------------------------------------------------------------------ the processor


class PartitionProcessor(PartitionEngine[PortraitState]):
    """The pure engine of one user partition (see the module's docstring)."""

    publish_topic = PORTRAITS

    def __init__(self, partition: int, store: StateReader, config: EngineConfig):
        self.config = config
        self.schedule = CheckSchedule()
        #: user id -> the alert crossing planned at the user's last look (users an alert could fire for)
        self.crossing_plans: dict[str, CrossingPlan] = {}
        #: the purchase model (its parameters) the crossings were planned under; None: not known
        self._planned_under: tuple | None = None
        #: the snapshot last compared with it
        self._models_seen: object = None
        super().__init__(partition, store, config.flushing())
        #: the most one look at a silent user adds to the serialized state: what an event's look adds, with
        #: the label snapshot's category names at their longest
        self._look_growth = EVENT_GROWTH_BYTES + 6 * MAX_ID_LENGTH * config.watch.portrait.top_categories
        #: users an alert fired for while applying the current record: their states are written right after it
        self._alerted: dict[str, None] = {}
        #: events ahead of the wall clock since the last log line about them, the most one was ahead, that line's time
        self._ahead_unlogged = 0
        self._ahead_most_ms = 0
        self._ahead_logged_at = -CLAMP_LOG_INTERVAL_MS

    # ------------------------------------------------------------- the engine's hooks
    def _decode(self, raw: bytes) -> PortraitState:
        return PortraitState.from_bytes(raw)

    def _key(self, state: PortraitState) -> str:
        return state.user_id

    def _restored(self, state: PortraitState) -> None:
        self.schedule.set(state.user_id, due_at(state, self.config.retention_ms))
        # every armed, followed buyer: whether an alert is worth it is asked of the models when one is re-planned
        looked_at = max(state.last_seen or 0, AlertState.from_json(state.alert).last_ms or 0)
        self._plan(state.user_id, crossing_plan(state, as_of=looked_at, models=None, config=self.config.watch, worth=False))

    def _render(self, state: PortraitState, as_of: int | None, models) -> bytes:
        portrait = render(state, as_of=as_of, config=self.config.watch.portrait)
        if models is not None:
            portrait = models.enrich(portrait)
        return orjson.dumps(portrait)

    def _time_moved(self, effects: list[Effect], models) -> None:
        self._sweep(effects, models)

    def _flush_now(self, record: Record) -> bool:
        # an erasure is recorded as applied at once, so a replay never brings back what it erased
        return record.kind == ERASURES

    def _before_progress(self) -> None:
        if self.progress.fences:  # a fence below the watermark guards nothing: older events are late anyway
            watermark = self.watermark
            self.progress.fences = {key: at for key, at in self.progress.fences.items() if at >= watermark}

    # ------------------------------------------------------------- records
    def process(self, record: Record, *, now_ms: int, models=None) -> list[Effect]:
        """Apply one record and return its effects (a flush's when one is due).

        ``now_ms`` is the wall clock (admission of future events, live mode);
        ``models`` the latest model snapshot (None: no churn scores, no alerts).
        """
        self._replan(models)
        if record.kind == TICKS:
            effects = self._tick(record, now_ms=now_ms, models=models)
        else:
            effects = super().process(record, now_ms=now_ms, models=models)
        if self._alerted:
            self._write_alerted(effects)
        return effects

    def _write_alerted(self, effects: list[Effect]) -> None:
        """Write the state of each user an alert fired for, after the alert (a confirmed send): a crash
        before the next flush then replays the records without firing it again. The state stays
        changed, so the flush writes it again with the progress that covers it; a flush that came
        with the record has written it already (and left nothing changed)."""
        alerted, self._alerted = self._alerted, {}
        for user_id in alerted:
            state = self.changed.get(user_id)
            if state is not None:
                effects.append(self._put(user_id, state))

    def _apply(self, record: Record, effects: list[Effect], *, now_ms: int, models) -> None:
        if record.kind == ERASURES:
            self._erase(record, effects)
        elif record.kind == PROFILES:
            self._profile(record)
        else:
            self._event(record, effects, now_ms=now_ms, models=models)

    def _event(self, record: Record, effects: list[Effect], *, now_ms: int, models) -> None:
        config = self.config
        admitted = admit_event(
            record.key,
            record.value,
            now_ms=now_ms,
            max_future_ms=config.max_future_ms,
            earliest_ms=config.earliest_event_ms,
            pseudonym_key=config.pseudonym_key,
        )
        if self._fenced(admitted.user_id, admitted.ts):
            return
        state = self.state(admitted.user_id) or PortraitState(admitted.user_id)
        sentiment = None
        if not state.has_seen(admitted.event_id, record.offset):
            self._make_room(state, admitted)
            sentiment = review_sentiment(admitted, config.scorer)
        # stream time stops at the wall clock: one event stamped ahead must not make the others late
        folded = fold_event(
            state,
            admitted,
            clock=self.clock,
            partition=self.partition,
            config=config.watch.portrait,
            wall_ms=now_ms,
            sentiment=sentiment,
            offset=record.offset,
        )
        if admitted.ts > now_ms:
            self._ahead_of_wall_clock(admitted.ts - now_ms, now_ms)
        if not folded:
            self.counts["events_duplicate"] += 1
            return
        as_of = self.as_of
        # a purchase may lower the risk (re-arming alerts); a new period means a new sample
        if admitted.type == "pay" or as_of // config.watch.sample_period_ms != state.sample_period:
            self._watch(state, as_of, effects, models)
        if config.item_facts and admitted.type in ITEM_FACT_TYPES:
            self._item_facts(state, admitted, record.offset, effects, models)
        self._changed(state)
        self.counts["events_processed"] += 1

    def _item_facts(self, state: PortraitState, event: Event, offset: int, effects: list[Effect], models) -> None:
        """The event re-keyed by item and category for the items' engines, delivered before the state that holds it."""
        if not (event.item_id or event.category):
            return
        portrait_config = self.config.watch.portrait
        buyer = buyer_attributes(state, event.ts, models=models, config=portrait_config) if event.type == "pay" else None
        for key, value in facts_for(state, event, partition=self.partition, offset=offset, buyer=buyer, config=portrait_config):
            effects.append(Send(ITEM_FACTS, key, value, confirm=True, kind="item_fact"))

    def _make_room(self, state: PortraitState, event: Event) -> None:
        """Raise ``state_too_large`` if folding ``event`` could take the user's serialized state past the cap.

        The state is serialized only when an upper bound of its size (its size when last
        measured, plus the most each event since could add) comes near the cap.
        """
        strings = len(event.event_id) + len(event.category or "") + len(event.device or "") + len(event.item_id or "")
        if event.type == "pay":  # a payment's order, category and item go into its open basket
            strings += len(event.order_id or "") + 2 * len(event.category or "") + len(event.item_id or "")
        growth = EVENT_GROWTH_BYTES + 6 * strings
        if state.user_id not in self.cache:  # a new user: one event is far below the cap
            self._state_bytes[state.user_id] = _new_state_bytes(state.user_id) + growth
            return
        cap = self.config.max_state_bytes
        bound = self._state_bytes.get(state.user_id)
        if bound is None or bound + growth > cap:
            bound = len(state.to_bytes())
            if bound + growth > cap:
                self._state_bytes[state.user_id] = bound
                raise InvalidEvent(
                    STATE_TOO_LARGE, f"the user's state holds {bound} bytes; with this event it could pass the cap of {cap}"
                )
        self._state_bytes[state.user_id] = bound + growth

    def _ahead_of_wall_clock(self, ahead_ms: int, now_ms: int) -> None:
        """Count an event stamped ahead of the wall clock (stream time was held there); log now and then."""
        self.counts["clock_clamped"] += 1
        self.counts["clock_clamped_ms"] += ahead_ms
        self._ahead_unlogged += 1
        self._ahead_most_ms = max(self._ahead_most_ms, ahead_ms)
        if now_ms - self._ahead_logged_at >= CLAMP_LOG_INTERVAL_MS:
            log.warning(
                "partition %s: %d event(s) stamped up to %.1f s ahead of the wall clock; stream time held at the wall clock",
                self.partition,
                self._ahead_unlogged,
                self._ahead_most_ms / 1000,
            )
            self._ahead_unlogged, self._ahead_most_ms, self._ahead_logged_at = 0, 0, now_ms

    def _profile(self, record: Record) -> None:
        if record.value is None:  # a tombstone (an erasure writes them): nothing to apply
            return
        profile = admit_profile(record.key, record.value, pseudonym_key=self.config.pseudonym_key)
        if self._fenced(profile.user_id, profile.ts):
            return
        state = self.state(profile.user_id) or PortraitState(profile.user_id)
        bound = self._state_bytes.get(state.user_id) if state.user_id in self.cache else _new_state_bytes(state.user_id)
        if update_profile(state, profile, offset=record.offset):
            if bound is None:
                self._state_bytes.pop(state.user_id, None)  # measured before the next event
            else:  # the attributes, serialized again, take at most six bytes per byte of the record
                self._state_bytes[state.user_id] = bound + 6 * len(record.value) + EVENT_GROWTH_BYTES
            if state.seq == 0:  # a new user: schedule the expiry
                self.schedule.set(state.user_id, due_at(state, self.config.retention_ms))
            self._changed(state)
        self.counts["profiles_processed"] += 1

    def _erase(self, record: Record, effects: list[Effect]) -> None:
        """Tombstones and markers first, confirmed; the state's deletion follows in the flush."""
        request, user_id = admit_erasure(record.key, record.value, pseudonym_key=self.config.pseudonym_key)
        effects += [
            Send(out.topic, out.key, out.value, out.headers, confirm=True, kind="erasure") for out in erasure_records(request, user_id)
        ]
        self._forget(user_id)
        # what of the user is still queued on the inputs (not ordered against erasures) stays out
        key = fence_key(user_id)
        self.progress.fences[key] = max(self.progress.fences.get(key, 0), request.requested_at)
        self.counts["users_erased"] += 1

    def _fenced(self, user_id: str, ts: int) -> bool:
        """Whether a record of ``user_id`` stamped ``ts`` predates the user's erasure (it is dropped, counted)."""
        fences = self.progress.fences
        if not fences:
            return False
        fence = fences.get(fence_key(user_id))
        if fence is None or ts > fence:
            return False
        self.counts["records_fenced"] += 1
        return True

    def _tick(self, record: Record, *, now_ms: int, models) -> list[Effect]:
        """Live mode: a partition without records for a while follows the wall clock.

        A malformed tick is dead-lettered in every mode; a sound one moves nothing outside live mode.
        """
        try:
            wall_ms = orjson.loads(record.value)["wall_ms"]
            if type(wall_ms) is not int:
                raise TypeError("wall_ms is not an integer")
        except (orjson.JSONDecodeError, KeyError, TypeError) as error:
            return [self._dead_letter(record, InvalidEvent("invalid_tick", f"{type(error).__name__}: {error}"))]
        idle_for = now_ms - self._last_record_wall_ms
        if not self.config.live_idle_ms or idle_for < self.config.live_idle_ms:
            return []
        # a tick moves the clock no further than the wall clock itself
        before = self.stream_time
        self.clock.observe(self.partition, min(wall_ms, now_ms))
        effects: list[Effect] = []
        if self.stream_time != before:
            self._sweep(effects, models)
            if self._flush_due():
                effects += self.flush()
        return effects

    # ------------------------------------------------------------- checks
    def _watch(self, state: PortraitState, as_of: int, effects: list[Effect], models) -> None:
        """Score the user as of ``as_of``; samples and any alert become sends; reschedule."""
        outcome = watch_user(state, as_of=as_of, watermark=self.watermark, models=models, config=self.config.watch)
        key = state.user_id.encode()
        for sample in outcome.samples:
            effects.append(Send(MODEL_TRAINING, key, orjson.dumps(sample), kind="sample", payload=sample))
        if outcome.alert is not None:
            effects.append(Send(CHURN_ALERTS, key, outcome.alert.to_json_bytes(), confirm=True, kind="alert", payload=outcome.alert))
            self._alerted[state.user_id] = None
            self.counts["alerts_fired"] += 1
        self.counts["checks"] += 1
        self.schedule.set(state.user_id, due_at(state, self.config.retention_ms))
        self._plan(state.user_id, outcome.crossing_plan)

    def _plan(self, user_id: str, plan: CrossingPlan | None) -> None:
        if plan is None:
            self.crossing_plans.pop(user_id, None)
        else:
            self.crossing_plans[user_id] = plan

    def _replan(self, models) -> None:
        """With a new purchase model, bring forward the checks whose alert crossing it makes earlier.

        A snapshot that leaves the purchase model as it was costs nothing (the lapse
        risk an alert reads is its alone); one with a new fit costs one P(alive) per
        planned user (:func:`online_models.watch.replanned_crossing`, from the plan
        alone, no state read), and a state write for each user whose check it brings forward.
        """
        if models is self._models_seen:
            return
        self._models_seen = models
        mbgnbd = getattr(models, "mbgnbd", None)
        key = None if mbgnbd is None else tuple(sorted(mbgnbd.params_.items()))
        if key == self._planned_under:
            return
        self._planned_under = key
        if mbgnbd is None:
            return
        watch, now = self.config.watch, self.watermark
        self.counts["replans"] += 1
        for user_id, plan in list(self.crossing_plans.items()):
            at = replanned_crossing(plan, now_ms=now, mbgnbd=mbgnbd, threshold=watch.alerts.threshold)
            if at is None:
                continue
            state = self.state(user_id)
            if state is None or crossing_plan(state, as_of=plan.earliest - 1, models=models, config=watch) is None:
                self.crossing_plans.pop(user_id, None)  # gone, or not worth an alert under the models' settings
                continue
            state.next_check = at
            self.schedule.set(user_id, due_at(state, self.config.retention_ms))
            self.crossing_plans[user_id] = replace(plan, next_check=at)
            self._changed(state)
            self.counts["checks_brought_forward"] += 1

    def _sweep(self, effects: list[Effect], models) -> None:
        """Re-score (or expire) the users whose check time the watermark has passed."""
        watermark = self.watermark
        retention_ms = self.config.retention_ms
        for user_id in self.schedule.pop_due(watermark, limit=self.config.sweep_batch):
            state = self.state(user_id)
            if state is None:
                continue
            if is_expired(state, watermark=watermark, retention_ms=retention_ms):
                self._expire(user_id, effects)
                continue
            closed = self._close_baskets(state, watermark, effects) if state.baskets else False
            if state.next_check is None or state.next_check > watermark:
                self.schedule.set(user_id, due_at(state, retention_ms))  # the entry was stale, or a basket closed
                if closed:
                    self._changed(state, publish=False)
                continue
            # valued at the check time itself, so replays alert at the same event time
            self._watch(state, state.next_check, effects, models)
            bound = self._state_bytes.get(user_id)
            if bound is not None:  # the size's bound grows by the most a look adds (measured again near the cap)
                self._state_bytes[user_id] = bound + self._look_growth
            self._changed(state)
            self.counts["users_swept"] += 1

    def _close_baskets(self, state: PortraitState, watermark: int, effects: list[Effect]) -> bool:
        """Send the record of each of the user's baskets the watermark has closed; whether any closed."""
        closed = close_due(state.baskets, watermark=watermark)
        for basket in closed:
            record = basket_record(state.user_id, basket)
            effects.append(Send(BASKETS, record["id"].encode(), orjson.dumps(record), kind="basket", payload=record))
        self.counts["baskets_closed"] += len(closed)
        return bool(closed)

    def _expire(self, user_id: str, effects: list[Effect]) -> None:
        """Forget a user idle past the retention: state, schedule and published portrait."""
        self._forget(user_id)
        effects.append(Send(PORTRAITS, user_id.encode(), None, kind="expiry"))
        self.counts["users_expired"] += 1

    def _forget(self, user_id: str) -> None:
        """Drop the user from the schedule, the cache and the publication; their state is deleted in the next flush."""
        forget_local(user_id, schedule=self.schedule, pending=self.unpublished)
        self.crossing_plans.pop(user_id, None)
        self._drop(user_id)
