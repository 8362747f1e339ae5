"""One partition's engine: records in, effects out, with the partition's live states cached.

A :class:`PartitionProcessor` owns everything one input partition needs: its
event clock, its progress (input offsets applied, stream time, change numbers),
its check schedule, the users changed since the last flush and since the last
publication, and a cache of live :class:`~online_models.portrait.PortraitState`
objects in front of the state store. It takes records of ``events``,
``profiles``, ``erasures`` and ``ticks`` and returns what must happen as values
(:class:`Put`, :class:`Delete`, :class:`Send`); the caller executes them in
order. There is no Kafka, Faust or asyncio in here, so the worker, the
in-process replay, evaluation and the benchmarks drive the same code.

The model is Kafka Streams' processor with punctuators and its record cache:

* a state changed N times between two flushes is written once;
* a flush writes the changed states and then the progress record that covers
  them, so any prefix of the state's changelog that holds a progress record
  holds every change it covers; records after it are applied again after a
  crash, and events already folded in are recognised by ``event_id``;
* a :class:`Send` with ``confirm`` must be delivered before any later
  :class:`Put` or :class:`Delete` is executed: an alert reaches Kafka before
  the state that remembers it, an erasure's tombstones before the state is
  deleted.

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
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from online_models.admission import admit_erasure, admit_event, admit_profile, fold_event
from online_models.alerts import AlertState
from online_models.clock import EventClock
from online_models.erasure import erasure_records, forget_local
from online_models.events import MIN_TS_MS, Event, InvalidEvent
from online_models.portrait import PortraitState, render, update_profile
from online_models.retention import due_at, is_expired
from online_models.schedule import CheckSchedule
from online_models.topic_names import CHURN_ALERTS, DEAD_LETTERS, ERASURES, EVENTS, MODEL_TRAINING, PORTRAITS, PROFILES, TICKS
from online_models.watch import CrossingPlan, WatchConfig, crossing_plan, replanned_crossing, watch_user

log = logging.getLogger(__name__)

#: state-store key of a partition's progress record; user ids cannot start with a NUL byte
PROGRESS_KEY = b"\x00progress"


#: dead-letter reason of an event that could take its user's stored state past ``max_state_bytes``
STATE_TOO_LARGE = "state_too_large"
#: most bytes of a user's serialized state; the topics' record limit (streams/topics.py) leaves room above it
MAX_STATE_BYTES = 900_000
#: the most one event (and the look at the user after it) adds to a serialized state, besides its
#: strings: a minute bucket, times, counters, a label snapshot
EVENT_GROWTH_BYTES = 2048
#: most bytes of key and value a dead letter carries; the rest is cut (headers say so and how big it was)
MAX_DEAD_LETTER_BYTES = 1_000_000
#: most bytes of a record's key a dead letter carries (user ids are far shorter)
MAX_DEAD_LETTER_KEY_BYTES = 1024
#: most characters of the ``detail`` header
MAX_DETAIL_CHARS = 1000
#: least wall-clock time between two log lines about events stamped ahead of the wall clock
CLAMP_LOG_INTERVAL_MS = 60_000


def fence_key(user_id: str) -> str:
    """What a partition's progress keeps of an erased user: a digest, not the id.

    >>> fence_key("u1") == fence_key("u1") != fence_key("u2"), len(fence_key("u1"))
    (True, 32)
    """
    return hashlib.blake2b(user_id.encode(), digest_size=16).hexdigest()


def is_internal_key(key: bytes) -> bool:
    """Keys of the state store that are bookkeeping, not users."""
    return key.startswith(b"\x00") or key.startswith(b"__faust")


@dataclass
class PartitionProgress:
    """Input offsets applied (by full topic name), stream time and change numbers of one partition.

    >>> p = PartitionProgress(offsets={"events": 41}, stream_time=1714536000000, seq=7)
    >>> PartitionProgress.from_bytes(p.to_bytes()) == p
    True
    >>> p.covers("events", 41), p.covers("events", 42), p.covers("profiles", 0)
    (True, False, False)
    """

    offsets: dict[str, int] = field(default_factory=dict)
    stream_time: int | None = None
    #: number of the last state change in the partition (each state carries its own)
    seq: int = 0
    #: every change up to this number is on the portraits topic
    published_seq: int = 0
    #: erased users (:func:`fence_key`) -> request time: their events and profiles stamped at or before it are dropped
    fences: dict[str, int] = field(default_factory=dict)

    def covers(self, topic: str, offset: int) -> bool:
        """Whether the record at ``offset`` of ``topic`` is already in the state."""
        applied = self.offsets.get(topic)
        return applied is not None and offset <= applied

    def to_bytes(self) -> bytes:
        """Compact JSON for the state store."""
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PartitionProgress":
        """Inverse of :meth:`to_bytes`."""
        return cls(**orjson.loads(raw))


# ------------------------------------------------------------------ values in and out


@dataclass(frozen=True, slots=True)
class Record:
    """One input record: short topic name (``events``, ``profiles``, ``erasures``, ``ticks``), full topic name, offset, key, value."""

    kind: str
    topic: str
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``value`` under ``key`` in the partition's state store (and its changelog)."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key`` from the partition's state store (a tombstone on its changelog)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Send:
    """Send a record to a topic (short name); ``value`` None is a tombstone.

    With ``confirm``, the record must be delivered before any later :class:`Put`
    or :class:`Delete` is executed. ``payload`` is what the value encodes
    (an :class:`~online_models.alerts.Alert`, a training sample), for callers
    that use it in process; ``kind`` says what the record is (``alert``,
    ``sample``, ``dead_letter``, ``portrait``, ``erasure``, ``expiry``).
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    confirm: bool = False
    kind: str = ""
    payload: Any = field(default=None, compare=False, repr=False)


Effect = Put | Delete | Send


class StateReader(Protocol):
    """What the processor reads of its partition's state store."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


def apply_to(store: MutableMapping[bytes, bytes], effects: Iterable[Effect]) -> None:
    """Execute the store effects of ``effects`` on an in-memory store (sends are left to the caller)."""
    for effect in effects:
        if isinstance(effect, Put):
            store[effect.key] = effect.value
        elif isinstance(effect, Delete):
            store.pop(effect.key, None)


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
    progress_every: int = 200
    #: a flush at least every this much stream time, far within the dedupe horizon
    progress_time_step_ms: int = 3_600_000
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

    def __post_init__(self) -> None:
        if self.progress_every >= self.watch.portrait.max_seen_ids:
            # a crash's replay recognises the events it already folded in by the ids each state keeps
            raise ValueError("progress_every must be below the portrait's max_seen_ids")


# ------------------------------------------------------------------ the processor


class PartitionProcessor:
    """The pure engine of one input partition (see the module's docstring)."""

    def __init__(self, partition: int, store: StateReader, config: EngineConfig):
        self.partition = partition
        self.config = config
        self.store = store
        self.clock = EventClock(lateness_ms=config.lateness_ms)
        self.schedule = CheckSchedule()
        #: user id -> live state (changed or recently read)
        self.cache: dict[str, PortraitState] = {}
        #: user id -> changed state (None: delete) since the last flush, in order of change
        self.changed: dict[str, PortraitState | None] = {}
        #: users whose portrait changed since the last publication
        self.unpublished: dict[str, None] = {}
        #: counts of what happened (records folded, checks, alerts, ...), drained by the caller
        self.counts: Counter[str] = Counter()
        #: user id -> the alert crossing planned at the user's last look (users an alert could fire for)
        self.crossing_plans: dict[str, CrossingPlan] = {}
        #: the purchase model (its parameters) the crossings were planned under; None: not known
        self._planned_under: tuple | None = None
        #: the snapshot last compared with it
        self._models_seen: object = None
        self.progress = self._restore()
        self._records_since_flush = 0
        #: stream time at the last flush (None: no event time seen yet)
        self._flushed_at = self.stream_time
        self._last_record_wall_ms = 0
        #: user id -> an upper bound of the bytes of the cached state (absent: measure it)
        self._state_bytes: dict[str, int] = {}
        #: events ahead of the wall clock since the last log line about them, the most one was ahead, that line's time
        self._ahead_unlogged = 0
        self._ahead_most_ms = 0
        self._ahead_logged_at = -CLAMP_LOG_INTERVAL_MS

    def _restore(self) -> PartitionProgress:
        """Progress, clock, schedule and unpublished users from what the store holds."""
        raw = self.store.get(PROGRESS_KEY)
        restored = PartitionProgress.from_bytes(raw) if raw is not None else PartitionProgress()
        if restored.stream_time is not None:
            self.clock.observe(self.partition, restored.stream_time)
        last_seq = restored.seq
        for key, value in self.store.items():
            if is_internal_key(key):
                continue
            state = PortraitState.from_bytes(value)
            self.schedule.set(state.user_id, due_at(state, self.config.retention_ms))
            # every armed, followed buyer: whether an alert is worth it is asked of the models when one is re-planned
            looked_at = max(state.last_seen or 0, AlertState.from_json(state.alert).last_ms or 0)
            self._plan(state.user_id, crossing_plan(state, as_of=looked_at, models=None, config=self.config.watch, worth=False))
            if state.seq > restored.published_seq:  # changed, maybe never published: publish again
                self.unpublished[state.user_id] = None
                self.cache[state.user_id] = state
            last_seq = max(last_seq, state.seq)
        restored.seq = last_seq  # changes made after the progress record keep their numbers unique
        return restored

    # ------------------------------------------------------------- reading
    @property
    def stream_time(self) -> int | None:
        """The largest event time seen on the partition."""
        return self.clock.stream_time.get(self.partition)

    @property
    def watermark(self) -> int:
        """Event time before which the partition accepts nothing new."""
        return self.clock.watermark(self.partition)

    @property
    def as_of(self) -> int | None:
        """The instant the partition's portraits describe."""
        return self.clock.as_of(self.partition)

    @property
    def unflushed(self) -> bool:
        """Whether records were applied (or states changed) since the last flush."""
        return self._records_since_flush > 0 or bool(self.changed)

    def applied_offset(self, topic: str) -> int | None:
        """The last offset of ``topic`` (full name) in the state, None before any."""
        return self.progress.offsets.get(topic)

    def state(self, user_id: str) -> PortraitState | None:
        """The user's live state, None for an unknown user."""
        state = self.cache.get(user_id)
        if state is None and user_id not in self.changed:
            raw = self.store.get(user_id.encode())
            if raw is not None:
                state = self.cache[user_id] = PortraitState.from_bytes(raw)
                self._state_bytes[user_id] = len(raw)
        return state

    def states(self) -> Iterator[PortraitState]:
        """Every user's live state: the store's, with the changes not flushed yet."""
        for key, value in self.store.items():
            if is_internal_key(key):
                continue
            user_id = key.decode()
            if user_id not in self.cache and user_id not in self.changed:
                yield PortraitState.from_bytes(value)
        for user_id, state in self.cache.items():
            if user_id not in self.changed:
                yield state
        yield from (state for state in self.changed.values() if state is not None)

    # ------------------------------------------------------------- records
    def process(self, record: Record, *, now_ms: int, models=None) -> list[Effect]:
        """Apply one record and return its effects (a flush's when one is due).

        ``now_ms`` is the wall clock (admission of future events, live mode);
        ``models`` the latest model snapshot (None: no churn scores, no alerts).
        """
        self._replan(models)
        if record.kind == TICKS:
            return self._tick(record, now_ms=now_ms, models=models)
        if self.progress.covers(record.topic, record.offset):
            self.counts["records_skipped"] += 1  # already in the state restored after a crash or a move
            return []
        self._last_record_wall_ms = now_ms
        effects: list[Effect] = []
        before = self.stream_time
        try:
            if record.kind == ERASURES:
                self._erase(record, effects)
            elif record.kind == PROFILES:
                self._profile(record)
            else:
                self._event(record, effects, now_ms=now_ms, models=models)
        except InvalidEvent as error:
            effects.append(self._dead_letter(record, error))
        except Exception as error:  # a fault of ours must not stop the flow: the record is kept, dead-lettered
            log.exception("%s[%s]@%s: applying failed; dead-lettered", record.topic, self.partition, record.offset)
            effects.append(self._dead_letter(record, InvalidEvent("apply_failed", f"{type(error).__name__}: {error}")))
        self.progress.offsets[record.topic] = record.offset
        if self.stream_time != before:
            self._sweep(effects, models)
        self._records_since_flush += 1
        # an erasure is recorded as applied at once, so a replay never brings back what it erased
        if record.kind == ERASURES or self._flush_due():
            effects += self.flush()
        return effects

    def dead_letter(self, record: Record, reason: str, detail: str) -> Send:
        """The dead-letter record for ``record`` (the caller's, for a record that failed to apply)."""
        return self._dead_letter(record, InvalidEvent(reason, detail))

    def _dead_letter(self, record: Record, error: InvalidEvent) -> Send:
        """The record as it came, with the reason in its headers; cut to fit the dead-letter topic.

        A key or value beyond the limits is cut; the ``truncated`` header names what
        was cut and ``original.key.bytes`` / ``original.value.bytes`` its size, and the
        ``source.*`` headers say where the whole record is.
        """
        self.counts[f"rejected:{error.reason}"] += 1
        headers = [
            ("reason", error.reason.encode()),
            ("detail", error.detail[:MAX_DETAIL_CHARS].encode()),
            ("source.topic", record.topic.encode()),
            ("source.partition", str(self.partition).encode()),
            ("source.offset", str(record.offset).encode()),
        ]
        key, value, cut = record.key, record.value, []
        if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
            cut.append("key")
            headers.append(("original.key.bytes", str(len(key)).encode()))
            key = key[:MAX_DEAD_LETTER_KEY_BYTES]
        room = max(0, self.config.dead_letter_max_bytes - len(key or b""))
        if value is not None and len(value) > room:
            cut.append("value")
            headers.append(("original.value.bytes", str(len(value)).encode()))
            value = value[:room]
        if cut:
            headers.append(("truncated", ",".join(cut).encode()))
            self.counts["dead_letters_truncated"] += 1
        return Send(DEAD_LETTERS, key, value, tuple(headers), kind="dead_letter")

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
        if not state.has_seen(admitted.event_id):
            self._make_room(state, admitted)
        # stream time stops at the wall clock: one event stamped ahead must not make the others late
        folded = fold_event(
            state, admitted, clock=self.clock, partition=self.partition, config=config.watch.portrait, wall_ms=now_ms
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
        self._changed(state)
        self.counts["events_processed"] += 1

    def _make_room(self, state: PortraitState, event: Event) -> None:
        """Raise ``state_too_large`` if folding ``event`` could take the user's serialized state past the cap.

        The state is serialized only when an upper bound of its size (its size when last
        measured, plus the most each event since could add) comes near the cap.
        """
        if state.user_id not in self.cache:
            return  # a new user: one event is far below the cap
        cap = self.config.max_state_bytes
        growth = EVENT_GROWTH_BYTES + 6 * (len(event.event_id) + len(event.category or "") + len(event.device or ""))
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
        if update_profile(state, profile):
            self._state_bytes.pop(state.user_id, None)  # measured again before the next event
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
            if state.next_check is None or state.next_check > watermark:
                self.schedule.set(user_id, due_at(state, retention_ms))  # the entry was stale
                continue
            # valued at the check time itself, so replays alert at the same event time
            self._watch(state, state.next_check, effects, models)
            self._state_bytes.pop(user_id, None)  # measured again before the next event
            self._changed(state)
            self.counts["users_swept"] += 1

    def _expire(self, user_id: str, effects: list[Effect]) -> None:
        """Forget a user idle past the retention: state, schedule and published portrait."""
        self._forget(user_id)
        effects.append(Send(PORTRAITS, user_id.encode(), None, kind="expiry"))
        self.counts["users_expired"] += 1

    def _forget(self, user_id: str) -> None:
        """Drop the user from the schedule, the cache and the publication; their state is deleted in the next flush."""
        known = self.state(user_id) is not None or user_id in self.changed
        forget_local(user_id, schedule=self.schedule, pending=self.unpublished)
        self.crossing_plans.pop(user_id, None)
        self.cache.pop(user_id, None)
        self._state_bytes.pop(user_id, None)
        if known:
            self.changed.pop(user_id, None)  # the deletion takes the place of any change in the flush's order
            self.changed[user_id] = None

    def _changed(self, state: PortraitState) -> None:
        self.progress.seq += 1
        state.seq = self.progress.seq
        self.cache[state.user_id] = state
        self.changed[state.user_id] = state
        self.unpublished[state.user_id] = None

    # ------------------------------------------------------------- flushes
    def _flush_due(self) -> bool:
        if self._flushed_at is None:
            self._flushed_at = self.stream_time
        return self._records_since_flush >= self.config.progress_every or (
            self.stream_time is not None and self.stream_time - self._flushed_at >= self.config.progress_time_step_ms
        )

    def flush(self) -> list[Effect]:
        """The changed states, each written once, then the progress record that covers them."""
        effects: list[Effect] = []
        for user_id, state in self.changed.items():
            if state is None:
                effects.append(Delete(user_id.encode()))
                continue
            value = state.to_bytes()
            self._state_bytes[user_id] = len(value)
            effects.append(Put(user_id.encode(), value))
        self.changed = {}
        self.progress.stream_time = self.stream_time
        if self.progress.fences:  # a fence below the watermark guards nothing: older events are late anyway
            watermark = self.watermark
            self.progress.fences = {key: at for key, at in self.progress.fences.items() if at >= watermark}
        effects.append(Put(PROGRESS_KEY, self.progress.to_bytes()))
        self._records_since_flush = 0
        self._flushed_at = self.stream_time
        self._trim_cache()
        return effects

    def _trim_cache(self) -> None:
        excess = len(self.cache) - self.config.cache_users
        if excess <= 0:
            return
        for user_id in [u for u in self.cache if u not in self.unpublished][:excess]:
            del self.cache[user_id]
            self._state_bytes.pop(user_id, None)

    # ------------------------------------------------------------- publication
    def publication(self, models) -> tuple[list[Send], int]:
        """Portraits of the users changed since the last publication, each once, and the change number they cover.

        Call :meth:`published` with that number once Kafka has them.
        """
        covered = self.progress.seq
        as_of = self.as_of
        portrait_config = self.config.watch.portrait
        sends = []
        for user_id in self.unpublished:
            state = self.cache.get(user_id)
            if state is None:
                continue
            portrait = render(state, as_of=as_of, config=portrait_config)
            if models is not None:
                portrait = models.enrich(portrait)
            sends.append(Send(PORTRAITS, user_id.encode(), orjson.dumps(portrait), kind="portrait"))
        self.unpublished = {}
        return sends, covered

    def published(self, seq: int) -> None:
        """Every change numbered up to ``seq`` is on the portraits topic."""
        self.progress.published_seq = max(self.progress.published_seq, seq)
