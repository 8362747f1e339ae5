"""The API's local view of the product's topics, kept in RocksDB.

A background thread consumes the followed topics with kafka-python and writes
each record (or deletes its key, on a tombstone) together with the consumed
offset in one atomic RocksDB write batch, so a restarted API resumes where it
stopped and a fresh one rebuilds everything from the topics. Every topic lives
in its own key space (a short prefix).

A key space may have a :class:`SpaceHandler` that decides how a record is
stored and what else is written with it in the same batch: secondary indexes
and running aggregates of the portraits (:mod:`api.indexes`), the de-duplicated
alerts (:mod:`api.alerts`). Handlers read the previous value of a key through
the batch (:class:`Txn`), so several records for one key in one batch chain
correctly. They also see the record's headers (an erasure names its request
there, :mod:`api.erasures`).

The follower also keeps, per partition, when the store last held every record
of it; a store that comes back later than a compacted topic keeps its tombstones
reads that topic again from its start and drops the keys it no longer holds
(:mod:`api.resync`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

from api.resync import Guarantee, Resync, read_guarantees, stale_reason
from online_models.topic_follower import Follower

log = logging.getLogger(__name__)

_OFFSET_PREFIX = b"\x00offset:"
_COUNT_PREFIX = b"\x00count:"
#: per topic partition: the wall time (ms) at which the store had read every record of it (:mod:`api.resync`)
_SYNCED_PREFIX = b"\x00synced:"
#: per topic: a re-read from the start is under way (:mod:`api.resync`)
_RESYNC_PREFIX = b"\x00resync:"
#: per key space: the keys a re-read found in the topic
_SEEN_PREFIX = b"\x00seen:"

#: Separates the parts of composite keys (index name, value, user id).
SEP = b"\x1f"

#: Kafka record headers as kafka-python gives them.
Headers = Sequence[tuple[str, bytes]]


def header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` as text, or None.

    >>> header([("erasure-request", b"r1")], "erasure-request"), header([], "x")
    ('r1', None)
    """
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode("utf-8", errors="replace")
    return None


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``.

    >>> prefix_end(b"p:"), prefix_end(b"a\\xff")
    (b'p;', b'b')
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of only 0xff bytes has no end")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _bounded(lower: bytes, upper: bytes) -> ReadOptions:
    read = ReadOptions()
    read.set_iterate_lower_bound(lower)
    read.set_iterate_upper_bound(upper)
    return read


class Txn:
    """One atomic write batch that can read its own pending writes."""

    def __init__(self, db: Rdict):
        self._db = db
        self.batch = WriteBatch(raw_mode=True)
        self._pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        """The value ``key`` will have once the batch is written."""
        if key in self._pending:
            return self._pending[key]
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value
        self.batch.put(key, value)

    def delete(self, key: bytes) -> None:
        self._pending[key] = None
        self.batch.delete(key)

    def stored_keys(self, lower: bytes, upper: bytes, limit: int) -> list[bytes]:
        """Up to ``limit`` keys ``lower <= key < upper`` in the database (not this batch's), in key order."""
        keys = self._db.keys(from_key=lower, read_opt=_bounded(lower, upper))
        return [key for key, _ in zip(keys, range(limit))]

    def keys_with_prefix(self, prefix: bytes) -> list[bytes]:
        """Keys starting with ``prefix`` once the batch is written, in key order."""
        keys = set(self._db.keys(from_key=prefix, read_opt=_bounded(prefix, prefix_end(prefix))))
        for key, value in self._pending.items():
            if key.startswith(prefix):
                if value is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)


class SpaceHandler:
    """How records of one followed topic are stored in their key space.

    The default stores the record key as is (a tombstone deletes it) and keeps
    an exact key count. Subclasses add derived keys in the same batch.
    """

    def __init__(self, space: bytes):
        self.space = space
        self.count = 0
        self._count_delta = 0

    # -- lifecycle -------------------------------------------------------------
    def open(self, store: "LocalStore") -> None:
        """Load (or rebuild) what the handler keeps besides the records."""
        raw = store.db.get(_COUNT_PREFIX + self.space)
        self.count = int(raw) if raw is not None else sum(1 for _ in store.scan(self.space))

    # -- one batch -------------------------------------------------------------
    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        """Stage one record: ``value`` None deletes ``key``."""
        full = self.space + key
        existed = txn.get(full) is not None
        if value is None:
            if existed:
                txn.delete(full)
                self._count_delta -= 1
        else:
            txn.put(full, value)
            self._count_delta += 0 if existed else 1

    def prepare(self, txn: Txn) -> None:
        """Stage what the handler persists with the batch (called once, before the write)."""
        txn.put(_COUNT_PREFIX + self.space, str(self.count + self._count_delta).encode())

    def committed(self) -> None:
        """The batch is durable: make its effects visible in memory."""
        self.count += self._count_delta
        self._count_delta = 0

    def rolled_back(self) -> None:
        """The batch failed: forget what it staged."""
        self._count_delta = 0


class LocalStore:
    """Records of followed topics by key, one key space per topic."""

    def __init__(self, path: Path, handlers: Iterable[SpaceHandler] = (), *, cache_mb: int = 256):
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_mb << 20))  # index scans read many small keys: keep blocks hot
        options.set_block_based_table_factory(table)
        self.path = path
        self.db = Rdict(str(path), options=options)
        self._write_lock = threading.Lock()
        self.handlers: dict[bytes, SpaceHandler] = {}
        for handler in handlers:
            self.handlers[handler.space] = handler
            handler.open(self)

    def handler(self, space: bytes) -> SpaceHandler:
        """The handler of a key space (a plain one is made on first use)."""
        if space not in self.handlers:
            handler = SpaceHandler(space)
            handler.open(self)
            self.handlers[space] = handler
        return self.handlers[space]

    # -- reads -----------------------------------------------------------------
    def get(self, space: bytes, key: str | bytes) -> bytes | None:
        """The stored value of ``key`` in key space ``space``, or None."""
        raw_key = key.encode() if isinstance(key, str) else key
        return self.db.get(space + raw_key)

    def get_json(self, space: bytes, key: str | bytes):
        """The stored value parsed as JSON, or None."""
        raw = self.get(space, key)
        return None if raw is None else orjson.loads(raw)

    def snapshot(self):
        """A consistent read-only view (``[key]``, ``keys``, ``items``) of the whole store."""
        return self.db.snapshot()

    def keys_between(self, lower: bytes, upper: bytes, *, view=None, backwards: bool = False) -> Iterator[bytes]:
        """Keys ``lower <= key < upper`` in key order (or reverse), from ``view`` or the live store."""
        source = view if view is not None else self.db
        read = _bounded(lower, upper)
        # a generator, so the read options (which own the bounds) live as long as the iteration
        if backwards:
            for key in source.keys(backwards=True, from_key=upper, read_opt=read):
                if key < lower:  # rocksdict does not apply the lower bound backwards
                    return
                if key < upper:
                    yield key
        else:
            yield from source.keys(from_key=lower, read_opt=read)

    def items_between(self, lower: bytes, upper: bytes, *, view=None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) with ``lower <= key < upper`` in key order."""
        source = view if view is not None else self.db
        read = _bounded(lower, upper)
        yield from source.items(from_key=lower, read_opt=read)

    def keys_after(self, space: bytes, after: bytes = b"") -> Iterator[bytes]:
        """Keys of a key space (without the prefix) that sort after ``after``, in key order."""
        n = len(space)
        lower = space + after + b"\x00" if after else space
        for key in self.keys_between(lower, prefix_end(space)):
            yield key[n:]

    def scan(self, space: bytes, after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a key space whose key (without the prefix) sorts after ``after``, in key order."""
        n = len(space)
        lower = space + after + b"\x00" if after else space
        for key, value in self.items_between(lower, prefix_end(space)):
            yield key[n:], value

    def count(self, space: bytes) -> int:
        """Number of keys in a key space (kept exactly by its handler)."""
        return self.handler(space).count

    def offsets(self, topic: str) -> dict[int, int]:
        """Next offset to read per partition of ``topic``."""
        return self._per_partition(_OFFSET_PREFIX, topic)

    def synced(self, topic: str) -> dict[int, int]:
        """Per partition of ``topic``: the wall time (ms) at which the store last held every record of it."""
        return self._per_partition(_SYNCED_PREFIX, topic)

    def _per_partition(self, kind: bytes, topic: str) -> dict[int, int]:
        prefix = kind + topic.encode() + b":"
        return {int(key[len(prefix) :]): int(value) for key, value in self.items_between(prefix, prefix_end(prefix))}

    def resync_interrupted(self, topic: str) -> bool:
        """Whether a re-read of ``topic`` from its start began and never finished."""
        return self.db.get(_RESYNC_PREFIX + topic.encode()) is not None

    # -- writes ----------------------------------------------------------------
    def apply(self, topic: str | None, space: bytes, records: Sequence[tuple], *, mark: bool = False) -> None:
        """Write (partition, offset, key, value[, headers]) records atomically; a None value deletes the key.

        ``topic`` None writes records of the API's own (no offset is kept). ``mark``: a re-read
        is under way, so each key is also marked present (or, on a tombstone, absent) in the topic.
        """

        def stage(txn: Txn, handler: SpaceHandler) -> None:
            last: dict[int, int] = {}
            for partition, offset, key, value, *rest in records:
                last[partition] = offset
                if key is not None:
                    handler.write(txn, key, value, rest[0] if rest else ())
                    if mark:
                        self._mark(txn.batch, space, key, value)
            for partition, offset in last.items() if topic is not None else ():
                txn.put(_OFFSET_PREFIX + f"{topic}:{partition}".encode(), str(offset + 1).encode())

        self._atomically(space, stage)

    @staticmethod
    def _mark(batch: WriteBatch, space: bytes, key: bytes, value: bytes | None) -> None:
        if value is None:
            batch.delete(_SEEN_PREFIX + space + key)
        else:
            batch.put(_SEEN_PREFIX + space + key, b"")

    def mark_seen(self, space: bytes, records: Sequence[tuple]) -> None:
        """Mark the keys of (partition, offset, key, value, ...) records as present in (or, on a tombstone, absent
        from) the topic, without applying them: their effect is in the store already."""
        batch = WriteBatch(raw_mode=True)
        for _, _, key, value, *_ in records:
            if key is not None:
                self._mark(batch, space, key, value)
        with self._write_lock:
            self.db.write(batch)

    def begin_resync(self, topic: str, space: bytes, started_ms: int) -> None:
        """Note that ``topic`` is being read again from its start, with no key of ``space`` marked yet."""
        with self._write_lock:
            self.db.delete_range(_SEEN_PREFIX + space, prefix_end(_SEEN_PREFIX + space))
            self.db.put(_RESYNC_PREFIX + topic.encode(), str(started_ms).encode())

    def finish_resync(self, topic: str, space: bytes, synced_ms: int, partitions: Iterable[int], batch_size: int = 5000) -> int:
        """Remove every key of ``space`` the re-read did not find, through its handler; how many.

        The partitions then count as read to their end at ``synced_ms`` (when the re-read took its targets).
        """
        removed = 0
        marks = _SEEN_PREFIX + space
        after = b""
        while True:
            keys = list(itertools.islice(self.keys_after(space, after), batch_size))
            if not keys:
                break
            after = keys[-1]
            gone = [key for key in keys if self.db.get(marks + key) is None]
            if gone:
                self.apply(None, space, [(0, 0, key, None) for key in gone])
                removed += len(gone)
        with self._write_lock:
            self.db.delete_range(marks, prefix_end(marks))
            self.db.delete(_RESYNC_PREFIX + topic.encode())
        self.record_synced(topic, dict.fromkeys(partitions, synced_ms))
        return removed

    def record_synced(self, topic: str, synced: dict[int, int]) -> None:
        """Note when each partition of ``topic`` was last read to its end."""
        batch = WriteBatch(raw_mode=True)
        for partition, ms in synced.items():
            batch.put(_SYNCED_PREFIX + f"{topic}:{partition}".encode(), str(ms).encode())
        with self._write_lock:
            self.db.write(batch)

    def rewrite(
        self, space: bytes, computed: Mapping[bytes, tuple[bytes, bytes]], change: Callable[[bytes | None], bytes | None]
    ) -> int:
        """Write the values ``computed`` outside the write lock (key -> (value read, new value)); a key the follower
        wrote meanwhile gets ``change(its current value)`` (None: leave it) instead, under the lock, so no record
        it writes is lost. How many changed."""
        changed = 0

        def stage(txn: Txn, handler: SpaceHandler) -> None:
            nonlocal changed
            for key, (read, value) in computed.items():
                current = txn.get(space + key)
                if current != read:
                    value = change(current)
                if value is not None:
                    handler.write(txn, key, value)
                    changed += 1

        self._atomically(space, stage)
        return changed

    def _atomically(self, space: bytes, stage: Callable[[Txn, SpaceHandler], None]) -> None:
        """Stage writes through the key space's handler and write them in one batch."""
        handler = self.handler(space)
        with self._write_lock:
            txn = Txn(self.db)
            try:
                stage(txn, handler)
                handler.prepare(txn)
                self.db.write(txn.batch)
            except BaseException:
                handler.rolled_back()
                raise
            handler.committed()

    def put_local(self, space: bytes, key: bytes, value: bytes | None) -> None:
        """Write one record of the API's own, through the key space's handler."""
        self.apply(None, space, [(0, 0, key, value)])

    def close(self) -> None:
        """Flush and close the database."""
        self.db.close()


class SecondaryStore(LocalStore):
    """A read-only view of another process's store: a RocksDB secondary instance of ``primary``.

    It sees what the primary had written when it was opened or last :meth:`caught up
    <catch_up>`, nothing newer, so the reads between two catch-ups agree with each other.
    ``own`` is the secondary's own directory (its info log; one per instance). The handlers
    only read: :meth:`catch_up` calls their ``open`` again to reload what they keep.
    """

    def __init__(self, primary: Path, own: Path, handlers: Iterable[SpaceHandler] = (), *, cache_mb: int = 64):
        own.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.set_max_open_files(-1)  # the primary may delete files a secondary still reads; keep them open
        table = BlockBasedOptions()
        table.set_block_cache(Cache(cache_mb << 20))
        options.set_block_based_table_factory(table)
        self.path = primary
        self.db = Rdict(str(primary), options=options, access_type=AccessType.secondary(str(own)))
        self._write_lock = threading.Lock()
        self.handlers = {}
        for handler in handlers:
            self.handlers[handler.space] = handler
            handler.open(self)

    def catch_up(self) -> None:
        """Read what the primary has written since, and reload the handlers' state from it."""
        self.db.try_catch_up_with_primary()
        for handler in self.handlers.values():
            handler.open(self)

    def _atomically(self, space: bytes, stage) -> None:
        raise PermissionError("a secondary store is read-only")


class TopicFollower(Follower):
    """Keeps a :class:`LocalStore` up to date with some topics, from a daemon thread.

    ``spaces`` maps each followed topic to its key space in the store. A topic
    that does not exist yet is looked for again every few seconds (the follower
    never creates topics), while the others are followed. ``client_options`` are the
    connection's security (:func:`online_models.kafka_security.kafka_python_options`).
    ``guarantees`` gives the topics' cleanup policy and ``delete.retention.ms``
    (default: read from the broker, :func:`api.resync.read_guarantees`).
    """

    #: how often the partitions' sync times (:mod:`api.resync`) are written down, at most
    SYNC_RECORD_SECONDS = 10.0

    def __init__(
        self,
        store: LocalStore,
        spaces: dict[str, bytes],
        bootstrap_servers: list[str],
        client_options: Mapping[str, Any] | None = None,
        *,
        guarantees: Callable[[list[str]], dict[str, Guarantee]] | None = None,
        on_stored: Callable[[str, list], object] | None = None,
    ):
        super().__init__(
            spaces,
            bootstrap_servers,
            name="topic-follower",
            consumer_options={
                "client_id": "portraits-api",
                "max_poll_records": 5000,
                "fetch_max_bytes": 32 * 1024 * 1024,
                "allow_auto_create_topics": False,
                **(client_options or {}),
            },
        )
        self.store = store
        self.spaces = spaces
        #: the connection's security, for the admin client that reads the topics' configs
        self.client_options = dict(client_options or {})
        #: the topics' cleanup policy and delete.retention.ms (default: read from the broker)
        self.guarantees = guarantees or (lambda names: read_guarantees(self.bootstrap_servers, self.client_options, names))
        #: called with each batch of a topic once it is in the store (its records, kafka-python ``ConsumerRecord``\ s)
        self.on_stored = on_stored
        #: re-reads from the start under way, by topic
        self.resyncing: dict[str, Resync] = {}
        #: re-reads begun, and keys they removed because their topic no longer held them
        self.resyncs = 0
        self.resync_removed = 0
        self._synced: dict[tuple[str, int], int] = {}
        self._synced_written = 0.0

    def positions(self, topic: str) -> dict[int, int]:
        """Where the store stands in ``topic``."""
        return self.store.offsets(topic)

    def apply(self, topic: str, records: list) -> None:
        """Write a batch of one partition and its offsets to the topic's key space, atomically; during a
        re-read (:mod:`api.resync`) the records the store already holds only mark their keys."""
        space = self.spaces[topic]
        rows = [(r.partition, r.offset, r.key, r.value, r.headers) for r in records]
        resync = self.resyncing.get(topic)
        if resync is None or not rows:
            self.store.apply(topic, space, rows)
        else:
            known, new = resync.split(rows[0][0], rows)
            if known:
                self.store.mark_seen(space, known)
            if new:
                self.store.apply(topic, space, new, mark=True)
        if self.on_stored is not None:
            self.on_stored(topic, records)

    def seek_stored(self, consumer, tps: list) -> None:
        """Resume each topic where the store stands, or read it again from its start when the store
        may have missed deletions the topic no longer shows (:func:`api.resync.stale_reason`)."""
        now_ms = int(time.time() * 1000)  # before the end offsets: records appended until now are below them
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        topics = sorted({tp.topic for tp in tps})
        stored = {topic: self.positions(topic) for topic in topics}
        guarantees = self.guarantees(topics)
        for topic in topics:
            mine = [tp for tp in tps if tp.topic == topic]
            reason = stale_reason(
                guarantees.get(topic, Guarantee(compacted=True)),
                stored[topic],
                self.store.synced(topic),
                {tp.partition: beginning[tp] for tp in mine},
                {tp.partition: end[tp] for tp in mine},
                now_ms,
                interrupted=self.store.resync_interrupted(topic),
            )
            if reason is not None:
                self._begin_resync(consumer, topic, mine, stored[topic], beginning, end, now_ms, reason)
                continue
            for tp in mine:
                offset = stored[topic].get(tp.partition, 0)
                if offset > end[tp] or offset < beginning[tp]:
                    offset = beginning[tp]  # the topic was recreated or records were deleted past us
                consumer.seek(tp, offset)

    def _begin_resync(self, consumer, topic: str, tps: list, stored: dict[int, int], beginning, end, now_ms: int, reason: str) -> None:
        """Read ``topic`` again from its start, then drop what it no longer holds (:mod:`api.resync`)."""
        space = self.spaces[topic]
        resume = {
            tp.partition: 0 if stored.get(tp.partition, 0) > end[tp] else stored.get(tp.partition, 0) for tp in tps
        }
        resync = Resync(topic, space, resume=resume, targets={tp.partition: end[tp] for tp in tps}, started_ms=now_ms, reason=reason)
        log.warning(
            "topic follower: %s may have lost deletions the store never applied (%s); reading it again from its start "
            "(%d records) and dropping every key it no longer holds",
            topic, reason, sum(end[tp] - beginning[tp] for tp in tps),
        )
        self.store.begin_resync(topic, space, now_ms)
        self.resyncing[topic] = resync
        self.resyncs += 1
        self.caught_up.clear()
        for tp in tps:
            consumer.seek(tp, beginning[tp])
        self._finish_resyncs(consumer)

    def polled(self, consumer) -> None:
        """Finish the re-reads that have reached their targets."""
        if self.resyncing:
            self._finish_resyncs(consumer)

    def _finish_resyncs(self, consumer) -> None:
        """Sweep each re-read whose partitions have all reached their targets."""
        for topic, resync in list(self.resyncing.items()):
            positions = {tp.partition: consumer.position(tp) for tp in consumer.assignment() if tp.topic == topic}
            if not resync.reached(positions):
                continue
            removed = self.store.finish_resync(topic, resync.space, resync.started_ms, positions)
            del self.resyncing[topic]
            self.resync_removed += removed
            log.warning("topic follower: %s read again from its start; %d key(s) it no longer holds removed from the store",
                        topic, removed)

    def settled(self) -> bool:
        """Not while a re-read from the start is under way."""
        return not self.resyncing

    def measured(self, consumer, tps: list, end: Mapping, asked_ms: int) -> None:
        """Remember which partitions were read to their end as of ``asked_ms``; write it down now and then."""
        for tp in tps:
            if tp.topic not in self.resyncing and consumer.position(tp) >= end[tp]:
                self._synced[(tp.topic, tp.partition)] = asked_ms
        now = time.monotonic()
        if self._synced and now - self._synced_written >= self.SYNC_RECORD_SECONDS:
            by_topic: dict[str, dict[int, int]] = {}
            for (topic, partition), ms in self._synced.items():
                by_topic.setdefault(topic, {})[partition] = ms
            for topic, synced in by_topic.items():
                self.store.record_synced(topic, synced)
            self._synced.clear()
            self._synced_written = now

    def closing(self, consumer) -> None:
        """Write down what is known of the partitions' sync times."""
        self._synced_written = 0.0
        self.measured(consumer, [], {}, 0)
