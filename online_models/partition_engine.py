"""What every partition engine shares: records in, effects out, progress, flushes and publication.

A partition engine owns one input partition: its event clock, its progress
(input offsets applied, stream time, change numbers), the keys changed since the
last flush and since the last publication, and a cache of live states in front
of the partition's state store. It takes :class:`Record` values and returns what
must happen as values (:class:`Put`, :class:`Delete`, :class:`Send`); the caller
executes them in order. There is no Kafka, Faust or asyncio in here.

The model is Kafka Streams' processor with punctuators and its record cache:

* a state changed N times between two flushes is written once;
* a flush writes the changed states and then the progress record that covers
  them, so any prefix of the state's changelog that holds a progress record
  holds every change it covers; records after it are applied again after a
  crash, and each engine recognises in its states what it already folded in;
* a :class:`Send` with ``confirm`` must be delivered before any later
  :class:`Put` or :class:`Delete` is executed.

:class:`PartitionEngine` is that machinery; the users' engine
(:class:`online_models.processor.PartitionProcessor`) and the items' engine
(:class:`online_models.item_processor.ItemPartitionProcessor`) say what a record
does to their states and how a state is published.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import orjson

from online_models.clock import EventClock
from online_models.events import InvalidEvent
from online_models.topic_names import DEAD_LETTERS

log = logging.getLogger(__name__)

#: state-store key of a partition's progress record; no state key starts with a NUL byte
PROGRESS_KEY = b"\x00progress"
#: most bytes of key and value a dead letter carries; the rest is cut (headers say so and how big it was)
MAX_DEAD_LETTER_BYTES = 1_000_000
#: most bytes of a record's key a dead letter carries (ids are far shorter)
MAX_DEAD_LETTER_KEY_BYTES = 1024
#: most characters of the ``detail`` header
MAX_DETAIL_CHARS = 1000


def is_internal_key(key: bytes) -> bool:
    """Keys of the state store that are bookkeeping, not states."""
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
    #: every change up to this number is on the publication topic
    published_seq: int = 0
    #: erased users (:func:`online_models.processor.fence_key`) -> request time: their events and profiles
    #: stamped at or before it are dropped (the users' engine only)
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
    """One input record: short topic name (``events``, ``profiles``, ``item-facts``, ...), full topic name, offset, key, value."""

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
    ``sample``, ``dead_letter``, ``portrait``, ``erasure``, ``expiry``, ``item_fact``).
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
    """What an engine reads of its partition's state store."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


def apply_to(store: MutableMapping[bytes, bytes], effects: Iterable[Effect]) -> None:
    """Execute the store effects of ``effects`` on an in-memory store (sends are left to the caller)."""
    for effect in effects:
        if isinstance(effect, Put):
            store[effect.key] = effect.value
        elif isinstance(effect, Delete):
            store.pop(effect.key, None)


class KeyedState(Protocol):
    """What the engine needs of a state: the number of the change that left it, and its bytes."""

    seq: int

    def to_bytes(self) -> bytes: ...


S = TypeVar("S", bound=KeyedState)


@dataclass(frozen=True)
class Flushing:
    """When an engine writes its changes, how many live states it caches, and how big its dead letters may be."""

    lateness_ms: int = 300_000
    #: records between two flushes (at most this many are applied again after a crash)
    progress_every: int = 10_000
    #: live states kept in memory beyond the changed ones
    cache_size: int = 20_000
    #: most bytes of key and value a dead letter carries
    dead_letter_max_bytes: int = MAX_DEAD_LETTER_BYTES


# ------------------------------------------------------------------ the engine


class PartitionEngine(Generic[S]):
    """The machinery of one partition's engine; subclasses say what a record does and how a state is published.

    Subclasses give :attr:`publish_topic` and implement :meth:`_decode`, :meth:`_key`,
    :meth:`_apply` and :meth:`_render`; the other hooks do nothing by default.
    """

    #: the topic (short name) the publication sends the rendered states to
    publish_topic: str = ""
    #: the ``kind`` of the publication's sends
    publish_kind: str = "portrait"

    def __init__(self, partition: int, store: StateReader, flushing: Flushing):
        self.partition = partition
        self.store = store
        self.flushing = flushing
        self.clock = EventClock(lateness_ms=flushing.lateness_ms)
        #: key -> live state (changed or recently read)
        self.cache: dict[str, S] = {}
        #: key -> changed state (None: delete) since the last flush, in order of change
        self.changed: dict[str, S | None] = {}
        #: keys whose state changed since the last publication
        self.unpublished: dict[str, None] = {}
        #: counts of what happened (records folded, checks, alerts, ...), drained by the caller
        self.counts: Counter[str] = Counter()
        #: key -> an upper bound of the bytes of the cached state (absent: measure it)
        self._state_bytes: dict[str, int] = {}
        self.progress = self._restore()
        self._records_since_flush = 0
        self._last_record_wall_ms = 0

    # ------------------------------------------------------------- what subclasses say
    def _decode(self, raw: bytes) -> S:
        """A state from its stored bytes."""
        raise NotImplementedError

    def _key(self, state: S) -> str:
        """The key a state is stored and published under."""
        raise NotImplementedError

    def _apply(self, record: Record, effects: list[Effect], *, now_ms: int, models) -> None:
        """Apply one record not covered by the progress; raise :class:`InvalidEvent` to dead-letter it."""
        raise NotImplementedError

    def _render(self, state: S, as_of: int | None, models) -> bytes:
        """The published value of a state at ``as_of``."""
        raise NotImplementedError

    def _restored(self, state: S) -> None:
        """A state found in the store at start (the users' engine schedules its checks)."""

    def _time_moved(self, effects: list[Effect], models) -> None:
        """The partition's stream time moved forward while applying a record."""

    def _flush_now(self, record: Record) -> bool:
        """Whether the record must be recorded as applied at once (an erasure)."""
        return False

    def _before_progress(self) -> None:
        """Just before a flush writes the progress record."""

    # ------------------------------------------------------------- restoring
    def _restore(self) -> PartitionProgress:
        """Progress, clock and unpublished states from what the store holds."""
        raw = self.store.get(PROGRESS_KEY)
        restored = PartitionProgress.from_bytes(raw) if raw is not None else PartitionProgress()
        if restored.stream_time is not None:
            self.clock.observe(self.partition, restored.stream_time)
        last_seq = restored.seq
        for key, value in self.store.items():
            if is_internal_key(key):
                continue
            state = self._decode(value)
            self._restored(state)
            if state.seq > restored.published_seq:  # changed, maybe never published: publish again
                name = self._key(state)
                self.unpublished[name] = None
                self.cache[name] = state
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
        """The instant the partition's published states describe."""
        return self.clock.as_of(self.partition)

    @property
    def unflushed(self) -> bool:
        """Whether records were applied (or states changed) since the last flush."""
        return self._records_since_flush > 0 or bool(self.changed)

    def applied_offset(self, topic: str) -> int | None:
        """The last offset of ``topic`` (full name) in the state, None before any."""
        return self.progress.offsets.get(topic)

    def state(self, key: str) -> S | None:
        """The key's live state, None for an unknown key."""
        state = self.cache.get(key)
        if state is None and key not in self.changed:
            raw = self.store.get(key.encode())
            if raw is not None:
                state = self.cache[key] = self._decode(raw)
                self._state_bytes[key] = len(raw)
        return state

    def states(self) -> Iterator[S]:
        """Every live state: the store's, with the changes not flushed yet."""
        for key, value in self.store.items():
            if is_internal_key(key):
                continue
            name = key.decode()
            if name not in self.cache and name not in self.changed:
                yield self._decode(value)
        for name, state in self.cache.items():
            if name not in self.changed:
                yield state
        yield from (state for state in self.changed.values() if state is not None)

    # ------------------------------------------------------------- records
    def process(self, record: Record, *, now_ms: int, models=None) -> list[Effect]:
        """Apply one record and return its effects (a flush's when one is due).

        ``now_ms`` is the wall clock; ``models`` the latest model snapshot (None: none).
        """
        if self.progress.covers(record.topic, record.offset):
            self.counts["records_skipped"] += 1  # already in the state restored after a crash or a move
            return []
        self._last_record_wall_ms = now_ms
        effects: list[Effect] = []
        before = self.stream_time
        try:
            self._apply(record, effects, now_ms=now_ms, models=models)
        except InvalidEvent as error:
            effects.append(self._dead_letter(record, error))
        except Exception as error:  # a fault of ours must not stop the flow: the record is kept, dead-lettered
            log.exception("%s[%s]@%s: applying failed; dead-lettered", record.topic, self.partition, record.offset)
            effects.append(self._dead_letter(record, InvalidEvent("apply_failed", f"{type(error).__name__}: {error}")))
        self.progress.offsets[record.topic] = record.offset
        if self.stream_time != before:
            self._time_moved(effects, models)
        self._records_since_flush += 1
        if self._flush_now(record) or self._flush_due():
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
        room = max(0, self.flushing.dead_letter_max_bytes - len(key or b""))
        if value is not None and len(value) > room:
            cut.append("value")
            headers.append(("original.value.bytes", str(len(value)).encode()))
            value = value[:room]
        if cut:
            headers.append(("truncated", ",".join(cut).encode()))
            self.counts["dead_letters_truncated"] += 1
        return Send(DEAD_LETTERS, key, value, tuple(headers), kind="dead_letter")

    def _changed(self, state: S, *, publish: bool = True) -> None:
        """Number the change, and keep the state for the next flush and (``publish``: its portrait changed too)
        the next publication."""
        self.progress.seq += 1
        state.seq = self.progress.seq
        key = self._key(state)
        self.cache[key] = state
        self.changed[key] = state
        if publish:
            self.unpublished[key] = None

    def _drop(self, key: str) -> None:
        """Forget a key's state here: its deletion is written in the next flush, and it is not published again."""
        known = self.state(key) is not None or key in self.changed
        self.unpublished.pop(key, None)
        self.cache.pop(key, None)
        self._state_bytes.pop(key, None)
        if known:
            self.changed.pop(key, None)  # the deletion takes the place of any change in the flush's order
            self.changed[key] = None

    # ------------------------------------------------------------- flushes
    def _flush_due(self) -> bool:
        return self._records_since_flush >= self.flushing.progress_every

    def flush(self) -> list[Effect]:
        """The changed states, each written once, then the progress record that covers them."""
        effects: list[Effect] = []
        for key, state in self.changed.items():
            if state is None:
                effects.append(Delete(key.encode()))
                continue
            effects.append(self._put(key, state))
        self.changed = {}
        self.progress.stream_time = self.stream_time
        self._before_progress()
        effects.append(Put(PROGRESS_KEY, self.progress.to_bytes()))
        self._records_since_flush = 0
        self._trim_cache()
        return effects

    def _put(self, key: str, state: S) -> Put:
        """The write of ``state`` under ``key``, its size noted."""
        value = state.to_bytes()
        self._state_bytes[key] = len(value)
        return Put(key.encode(), value)

    def _trim_cache(self) -> None:
        excess = len(self.cache) - self.flushing.cache_size
        if excess <= 0:
            return
        for key in [k for k in self.cache if k not in self.unpublished][:excess]:
            del self.cache[key]
            self._state_bytes.pop(key, None)

    # ------------------------------------------------------------- publication
    def publication(self, models) -> tuple[list[Send], int]:
        """The states changed since the last publication, each rendered once, and the change number they cover.

        Call :meth:`published` with that number once Kafka has them.
        """
        covered = self.progress.seq
        as_of = self.as_of
        sends = []
        for key in self.unpublished:
            state = self.cache.get(key)
            if state is None:
                continue
            sends.append(Send(self.publish_topic, key.encode(), self._render(state, as_of, models), kind=self.publish_kind))
        self.unpublished = {}
        return sends, covered

    def published(self, seq: int) -> None:
        """Every change numbered up to ``seq`` is on the publication topic."""
        self.progress.published_seq = max(self.progress.published_seq, seq)
