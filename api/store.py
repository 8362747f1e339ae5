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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch

from online_models.topic_follower import Follower

_OFFSET_PREFIX = b"\x00offset:"
_COUNT_PREFIX = b"\x00count:"

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

    def scan(self, space: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a key space, in key order."""
        n = len(space)
        for key, value in self.items_between(space, prefix_end(space)):
            yield key[n:], value

    def count(self, space: bytes) -> int:
        """Number of keys in a key space (kept exactly by its handler)."""
        return self.handler(space).count

    def offsets(self, topic: str) -> dict[int, int]:
        """Next offset to read per partition of ``topic``."""
        prefix = _OFFSET_PREFIX + topic.encode() + b":"
        return {int(key[len(prefix) :]): int(value) for key, value in self.items_between(prefix, prefix_end(prefix))}

    # -- writes ----------------------------------------------------------------
    def apply(self, topic: str | None, space: bytes, records: Sequence[tuple]) -> None:
        """Write (partition, offset, key, value[, headers]) records atomically; a None value deletes the key.

        ``topic`` None writes records of the API's own (no offset is kept).
        """

        def stage(txn: Txn, handler: SpaceHandler) -> None:
            last: dict[int, int] = {}
            for partition, offset, key, value, *rest in records:
                last[partition] = offset
                if key is not None:
                    handler.write(txn, key, value, rest[0] if rest else ())
            for partition, offset in last.items() if topic is not None else ():
                txn.put(_OFFSET_PREFIX + f"{topic}:{partition}".encode(), str(offset + 1).encode())

        self._atomically(space, stage)

    def rewrite(self, space: bytes, keys: Sequence[bytes], change: Callable[[bytes | None], bytes | None]) -> int:
        """Replace the value of each of ``keys`` by ``change(current value)`` (None: leave it), read and
        written under the write lock, so no record the follower writes meanwhile is lost; how many changed."""
        changed = 0

        def stage(txn: Txn, handler: SpaceHandler) -> None:
            nonlocal changed
            for key in keys:
                value = change(txn.get(space + key))
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
    """

    def __init__(
        self,
        store: LocalStore,
        spaces: dict[str, bytes],
        bootstrap_servers: list[str],
        client_options: Mapping[str, Any] | None = None,
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

    def positions(self, topic: str) -> dict[int, int]:
        """Where the store stands in ``topic``."""
        return self.store.offsets(topic)

    def apply(self, topic: str, records: list) -> None:
        """Write a batch and its offsets to the topic's key space, atomically."""
        self.store.apply(topic, self.spaces[topic], [(r.partition, r.offset, r.key, r.value, r.headers) for r in records])
