"""One follower of (compacted) topics, for the workers' model feed and the API's store.

A daemon thread reads the topics with kafka-python (imported when the thread runs, so this
module needs no Kafka), from the positions :meth:`Follower.positions` gives (else from the
beginning), and hands each polled batch of a topic partition to :meth:`Follower.apply`. A topic
that does not exist yet is looked for again every few seconds while the others are followed; the
follower never creates topics. It measures its lag to the topics' ends and sets ``caught_up``
once it has read them all; on an error it keeps what it has and connects again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)


class Follower(threading.Thread):
    """Follows ``topics``; subclasses say where to start (:meth:`positions`) and what a batch does (:meth:`apply`).

    ``consumer_options`` go to kafka-python's ``KafkaConsumer`` besides the bootstrap servers.
    """

    RECHECK_SECONDS = 5.0
    POLL_MS = 200

    def __init__(
        self, topics: Iterable[str], bootstrap_servers: list[str], *, name: str, consumer_options: Mapping[str, Any]
    ):
        super().__init__(name=name, daemon=True)
        self.topics = sorted(topics)
        self.bootstrap_servers = bootstrap_servers
        self.consumer_options = dict(consumer_options)
        self._stopping = threading.Event()
        self._starting = threading.Lock()
        self.caught_up = threading.Event()
        self.lag: int | None = None
        self.error: str | None = None
        self.missing_topics: list[str] = list(self.topics)

    def positions(self, topic: str) -> Mapping[int, int]:
        """Next offset to read per partition of ``topic`` (a partition not given starts at the beginning)."""
        return {}

    def apply(self, topic: str, records: list) -> None:
        """Take one polled batch (kafka-python ``ConsumerRecord``\\ s) of one partition of ``topic``."""
        raise NotImplementedError

    def ensure_started(self) -> None:
        """Start the thread unless it runs already (any caller, any number of times)."""
        with self._starting:
            if self.ident is None:  # never started
                self.start()

    def stop(self) -> None:
        """Ask the thread to finish its current poll and exit."""
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except Exception as error:  # keep what we have; retry the broker
                self.error = f"{type(error).__name__}: {error}"
                log.warning("%s: %s; retrying", self.name, self.error)
                self._stopping.wait(2.0)

    def consumer(self):
        """A kafka-python consumer of no group, for the thread's own use."""
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False, group_id=None, **self.consumer_options
        )

    def _existing_partitions(self, consumer, topics: Iterable[str]) -> list:
        from kafka import TopicPartition

        tps = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in sorted(partitions or ())]
        return tps

    def _seek_stored(self, consumer, tps: list) -> None:
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        stored = {topic: self.positions(topic) for topic in {tp.topic for tp in tps}}
        for tp in tps:
            offset = stored[tp.topic].get(tp.partition, 0)
            if offset > end[tp] or offset < beginning[tp]:
                offset = beginning[tp]  # the topic was recreated or compacted past us
            consumer.seek(tp, offset)

    def _follow(self) -> None:
        consumer = self.consumer()
        try:
            tps: list = []
            missing = set(self.topics)
            next_check = 0.0
            last_lag_check = 0.0
            while not self._stopping.is_set():
                now = time.monotonic()
                if missing and now >= next_check:
                    found = self._existing_partitions(consumer, sorted(missing))
                    if found:
                        positions = {tp: consumer.position(tp) for tp in tps}
                        tps = tps + found
                        consumer.assign(tps)
                        for tp, position in positions.items():
                            consumer.seek(tp, position)
                        self._seek_stored(consumer, found)
                        missing -= {tp.topic for tp in found}
                    self.missing_topics = sorted(missing)
                    next_check = now + self.RECHECK_SECONDS
                    self.error = None
                if not tps:
                    self._stopping.wait(0.5)
                    continue
                polled = consumer.poll(timeout_ms=self.POLL_MS)
                for tp, batch in polled.items():
                    self.apply(tp.topic, batch)
                now = time.monotonic()
                if now - last_lag_check > 1.0 or not polled:
                    end = consumer.end_offsets(tps)
                    self.lag = sum(max(0, end[tp] - consumer.position(tp)) for tp in tps)
                    if self.lag == 0:
                        self.caught_up.set()
                    last_lag_check = now
        finally:
            consumer.close()
