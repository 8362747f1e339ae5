"""The API's local view of the compacted ``portraits`` topic, kept in RocksDB.

A background thread consumes the topic with kafka-python and writes each
portrait (or deletes it, on a tombstone) together with the consumed offset in
one atomic RocksDB write batch, so a restarted API resumes where it stopped and
a fresh one rebuilds everything from the topic.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from rocksdict import Options, Rdict, WriteBatch

log = logging.getLogger(__name__)

_OFFSET_PREFIX = b"\x00offset:"
_PORTRAIT_PREFIX = b"p:"


class PortraitStore:
    """Portraits by user id, materialised from a compacted topic."""

    def __init__(self, path: Path):
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(str(path), options=options)
        self._lock = threading.Lock()

    def get(self, user_id: str) -> bytes | None:
        """The portrait JSON of ``user_id``, or None."""
        return self._db.get(_PORTRAIT_PREFIX + user_id.encode())

    def offsets(self) -> dict[int, int]:
        """Next offset to read per partition."""
        result = {}
        for key, value in self._db.items(from_key=_OFFSET_PREFIX):
            if not key.startswith(_OFFSET_PREFIX):
                break
            result[int(key[len(_OFFSET_PREFIX) :])] = int(value)
        return result

    def apply(self, records: list[tuple[int, int, bytes | None, bytes | None]]) -> None:
        """Write (partition, offset, key, value) records atomically; a None value deletes."""
        batch = WriteBatch(raw_mode=True)
        last: dict[int, int] = {}
        for partition, offset, key, value in records:
            last[partition] = offset
            if key is None:
                continue
            if value is None:
                batch.delete(_PORTRAIT_PREFIX + key)
            else:
                batch.put(_PORTRAIT_PREFIX + key, value)
        for partition, offset in last.items():
            batch.put(_OFFSET_PREFIX + str(partition).encode(), str(offset + 1).encode())
        with self._lock:
            self._db.write(batch)

    def count(self) -> int:
        """Number of stored portraits (a scan; for health and tests)."""
        return sum(1 for key in self._db.keys(from_key=_PORTRAIT_PREFIX) if key.startswith(_PORTRAIT_PREFIX))

    def close(self) -> None:
        """Flush and close the database."""
        self._db.close()


class TopicFollower(threading.Thread):
    """Keeps a :class:`PortraitStore` up to date with a topic, from a daemon thread."""

    def __init__(self, store: PortraitStore, topic: str, bootstrap_servers: list[str]):
        super().__init__(name="portraits-follower", daemon=True)
        self.store = store
        self.topic = topic
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
                log.warning("portrait follower: %s; retrying", self.error)
                self._stopping.wait(2.0)

    def _follow(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            group_id=None,
            client_id="portraits-api",
            max_poll_records=5000,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        try:
            partitions = None
            while partitions is None and not self._stopping.is_set():
                partitions = consumer.partitions_for_topic(self.topic)
                if partitions is None:
                    self._stopping.wait(1.0)
            if partitions is None:
                return
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            stored = self.store.offsets()
            beginning = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            for tp in tps:
                offset = stored.get(tp.partition, 0)
                if offset > end[tp] or offset < beginning[tp]:
                    offset = beginning[tp]  # the topic was recreated or compacted past us
                consumer.seek(tp, offset)
            self.error = None
            last_lag_check = 0.0
            while not self._stopping.is_set():
                polled = consumer.poll(timeout_ms=200)
                records = [
                    (r.partition, r.offset, r.key, r.value) for batch in polled.values() for r in batch
                ]
                if records:
                    self.store.apply(records)
                now = time.monotonic()
                if now - last_lag_check > 1.0 or not records:
                    end = consumer.end_offsets(tps)
                    self.lag = sum(max(0, end[tp] - consumer.position(tp)) for tp in tps)
                    if self.lag == 0:
                        self.caught_up.set()
                    last_lag_check = now
        finally:
            consumer.close()
