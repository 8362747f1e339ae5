"""The latest model snapshot, followed from the compacted ``models`` topic by every worker."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class ModelFeed(threading.Thread):
    """Keeps the newest value of each key of a small compacted topic in memory (daemon thread)."""

    def __init__(self, topic: str, bootstrap_servers: list[str], client_options: dict | None = None):
        super().__init__(name="model-feed", daemon=True)
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        #: the connection's security (:func:`streams.kafka_security.kafka_python_options`)
        self.client_options = dict(client_options or {})
        self.latest: dict[bytes, bytes] = {}
        self.caught_up = threading.Event()
        self._stopping = threading.Event()
        self._starting = threading.Lock()

    def ensure_started(self) -> None:
        """Start the thread unless it runs already (any caller, any number of times)."""
        with self._starting:
            if self.ident is None:  # never started
                self.start()

    def stop(self) -> None:
        """Ask the thread to exit after its current poll."""
        self._stopping.set()

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        while not self._stopping.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self.bootstrap_servers,
                    enable_auto_commit=False,
                    group_id=None,
                    client_id="portraits-model-feed",
                    max_partition_fetch_bytes=64 * 1024 * 1024,
                    fetch_max_bytes=64 * 1024 * 1024,
                    **self.client_options,
                )
                try:
                    tp = TopicPartition(self.topic, 0)
                    consumer.assign([tp])
                    consumer.seek_to_beginning(tp)
                    end = consumer.end_offsets([tp])[tp]
                    while not self._stopping.is_set():
                        for records in consumer.poll(timeout_ms=500).values():
                            for record in records:
                                if record.value is None:
                                    self.latest.pop(record.key, None)
                                else:
                                    self.latest[record.key] = record.value
                        if consumer.position(tp) >= end:
                            self.caught_up.set()
                finally:
                    consumer.close()
            except Exception as error:  # broker away: keep the last snapshot, retry
                log.warning("model feed: %s: %s; retrying", type(error).__name__, error)
                self._stopping.wait(2.0)
