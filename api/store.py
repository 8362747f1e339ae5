"""The API's local view of the product's compacted topics, kept in RocksDB.

A background thread consumes the followed topics with kafka-python and writes
each record (or deletes its key, on a tombstone) together with the consumed
offset in one atomic RocksDB write batch, so a restarted API resumes where it
stopped and a fresh one rebuilds everything from the topics. Every topic lives
in its own key space (a short prefix).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger(__name__)

_OFFSET_PREFIX = b"\x00offset:"


class LocalStore:
    """Records of followed topics by key, one key space per topic."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options=options)

    def get(self, space: bytes, key: str | bytes) -> bytes | None:
        """The stored value of ``key`` in key space ``space``, or None."""
        raw_key = key.encode() if isinstance(key, str) else key
        return self._db.get(space + raw_key)

    def scan(self, space: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of a key space, in key order."""
        for key, value in self._db.items(from_key=space):
            if not key.startswith(space):
                break
            yield key[len(space) :], value

    def count(self, space: bytes) -> int:
        """Number of keys in a key space (a scan)."""
        return sum(1 for _ in self.scan(space))

    def offsets(self, topic: str) -> dict[int, int]:
        """Next offset to read per partition of ``topic``."""
        prefix = _OFFSET_PREFIX + topic.encode() + b":"
        return {int(key): int(value) for key, value in self.scan(prefix)}

    def apply(self, topic: str, space: bytes, records: list[tuple[int, int, bytes | None, bytes | None]]) -> None:
        """Write (partition, offset, key, value) records atomically; a None value deletes the key."""
        batch = WriteBatch(raw_mode=True)
        last: dict[int, int] = {}
        for partition, offset, key, value in records:
            last[partition] = offset
            if key is None:
                continue
            if value is None:
                batch.delete(space + key)
            else:
                batch.put(space + key, value)
        for partition, offset in last.items():
            batch.put(_OFFSET_PREFIX + f"{topic}:{partition}".encode(), str(offset + 1).encode())
        self._db.write(batch)

    def close(self) -> None:
        """Flush and close the database."""
        self._db.close()


class TopicFollower(threading.Thread):
    """Keeps a :class:`LocalStore` up to date with some topics, from a daemon thread.

    ``spaces`` maps each followed topic to its key space in the store.
    """

    def __init__(self, store: LocalStore, spaces: dict[str, bytes], bootstrap_servers: list[str]):
        super().__init__(name="topic-follower", daemon=True)
        self.store = store
        self.spaces = spaces
        self.bootstrap_servers = bootstrap_servers
        self._stopping = threading.Event()
        self.caught_up = threading.Event()
        self.lag: int | None = None
        self.error: str | None = None

    def stop(self) -> None:
        """Ask the thread to finish its current poll and exit."""
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception as error:  # keep serving what we have; retry the broker
                self.error = f"{type(error).__name__}: {error}"
                log.warning("topic follower: %s; retrying", self.error)
                self._stopping.wait(2.0)

    def _partitions(self, consumer) -> list:
        from kafka import TopicPartition

        tps = []
        for topic in self.spaces:
            partitions = None
            while partitions is None and not self._stopping.is_set():
                partitions = consumer.partitions_for_topic(topic)
                if partitions is None:
                    self._stopping.wait(1.0)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        return tps

    def _follow(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            client_id="portraits-api",
            max_poll_records=5000,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        try:
            tps = self._partitions(consumer)
            if self._stopping.is_set():
                return
            consumer.assign(tps)
            beginning = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            stored = {topic: self.store.offsets(topic) for topic in self.spaces}
            for tp in tps:
                offset = stored[tp.topic].get(tp.partition, 0)
                if offset > end[tp] or offset < beginning[tp]:
                    offset = beginning[tp]  # the topic was recreated or compacted past us
                consumer.seek(tp, offset)
            self.error = None
            last_lag_check = 0.0
            while not self._stopping.is_set():
                polled = consumer.poll(timeout_ms=200)
                for tp, batch in polled.items():
                    records = [(r.partition, r.offset, r.key, r.value) for r in batch]
                    self.store.apply(tp.topic, self.spaces[tp.topic], records)
                now = time.monotonic()
                if now - last_lag_check > 1.0 or not polled:
                    end = consumer.end_offsets(tps)
                    self.lag = sum(max(0, end[tp] - consumer.position(tp)) for tp in tps)
                    if self.lag == 0:
                        self.caught_up.set()
                    last_lag_check = now
        finally:
            consumer.close()
