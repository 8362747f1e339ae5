"""One follower of (compacted) topics, for the workers' model feed and the API's store.

A daemon thread reads the topics with kafka-python (imported when the thread runs, so this
module needs no Kafka), from the positions :meth:`Follower.positions` gives (else from the
beginning), and hands each polled batch of a topic partition to :meth:`Follower.apply`. A topic
that does not exist yet is looked for again every few seconds while the others are followed; the
follower never creates topics. It measures its lag to the topics' ends and sets ``caught_up``
once it has read them all (and :meth:`Follower.settled` agrees); on an error it keeps what it has
and connects again. A subclass may also place newly found partitions itself
(:meth:`Follower.seek_stored`) and act after each poll (:meth:`Follower.polled`), after each
measure of the lag (:meth:`Follower.measured`) and before the consumer closes
(:meth:`Follower.closing`).
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

    def seek_stored(self, consumer, tps: list) -> None:
        """Place newly found partitions at :meth:`positions` (at their beginning where that offset is gone)."""
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        stored = {topic: self.positions(topic) for topic in {tp.topic for tp in tps}}
        for tp in tps:
            offset = stored[tp.topic].get(tp.partition, 0)
            if offset > end[tp] or offset < beginning[tp]:
                offset = beginning[tp]  # the topic was recreated or compacted past us
            consumer.seek(tp, offset)

    def polled(self, consumer) -> None:
        """After the batches of a poll have been applied (nothing here)."""

    def measured(self, consumer, tps: list, end: Mapping, asked_ms: int) -> None:
        """After a measure of the lag: ``end`` the end offsets of ``tps``, asked for at wall time ``asked_ms`` (nothing here)."""

    def settled(self) -> bool:
        """Whether the follower counts as caught up once it has read the topics to their ends."""
        return True

    def closing(self, consumer) -> None:
        """Before the consumer closes (nothing here)."""

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
                        self.seek_stored(consumer, found)
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
                self.polled(consumer)
                now = time.monotonic()
                if now - last_lag_check > 1.0 or not polled:
                    asked_ms = int(time.time() * 1000)  # before the end offsets: what was appended by then is below them
                    end = consumer.end_offsets(tps)
                    self.lag = sum(max(0, end[tp] - consumer.position(tp)) for tp in tps)
                    self.measured(consumer, tps, end, asked_ms)
                    if self.lag == 0 and self.settled():
                        self.caught_up.set()
                    last_lag_check = now
        finally:
            try:
                self.closing(consumer)
            finally:
                consumer.close()
