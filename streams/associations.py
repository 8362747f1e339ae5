"""The association aggregator: one partition of ``baskets``, so one worker of the group counts co-purchases.

Workers send each user's basket when it closes (:mod:`online_models.baskets`); the worker
holding the baskets partition folds them into
:class:`~online_models.associations.AssociationCounts` and publishes, when something new was
counted, its state (key ``state``) and its summary (key ``summary``) to the compacted
``associations`` topic, which the API follows. Like the trainer it resumes from the last
snapshot; unlike the trainer it counts every basket exactly once: the snapshot keeps the
offset of the last basket record it applied, a restarted or new owner skips the records up
to it and reads any it would miss (Faust's committed offset may lie past the snapshot)
directly from the broker, and a basket closed again after a worker's crash is recognised by
its id.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from online_models.associations import ADDED, AssociationCounts
from online_models.topic_names import ASSOCIATIONS
from streams import kafka_security, metrics
from streams.faust_repairs import SkippedRecordReader, settle
from streams.model_feed import ModelFeed
from streams.settings import Settings

log = logging.getLogger(__name__)

STATE_KEY = b"state"
SUMMARY_KEY = b"summary"
#: how often an aggregator waiting for the associations topic says so
FEED_WAIT_WARNING_SECONDS = 30.0
#: the baskets partition is held, records are past the counts, and none came for this long: read them directly
STALL_SECONDS = 20.0


class Aggregator:
    """The co-purchase counts of the worker that holds the baskets partition (None elsewhere)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counts: AssociationCounts | None = None
        self.published = -1
        #: held while records are counted (the agent's, or a stalled partition's read by the timer)
        self.turn = asyncio.Lock()
        self.last_record_at = time.monotonic()
        self.feed = ModelFeed(
            settings.topic(ASSOCIATIONS), settings.bootstrap_servers, kafka_security.kafka_python_options(settings)
        )
        self.reader = SkippedRecordReader(
            settings.bootstrap_servers,
            client_id=f"{settings.app_id}-baskets",
            client_options=kafka_security.aiokafka_options(settings),
        )

    async def resume(self, loop) -> None:
        """Load the counts of the last snapshot on the associations topic (waiting, without a deadline, until it
        is read to its end), or start afresh."""
        self.feed.ensure_started()
        waited = 0.0
        while not await loop.run_in_executor(None, self.feed.caught_up.wait, 1.0):
            waited += 1.0
            if waited % FEED_WAIT_WARNING_SECONDS == 0:
                log.warning("waiting %.0f s for the associations topic to be read before counting baskets", waited)
        raw = self.feed.latest.get(STATE_KEY)
        counts = None
        if raw is not None:
            try:
                counts = AssociationCounts.from_bytes(raw, self.settings.association_config())
            except Exception as error:
                log.warning("counting baskets afresh; the last association snapshot does not load: %s", error)
        self.counts = counts or AssociationCounts(self.settings.association_config())
        self.published = self.counts.version

    def apply(self, offset: int, value: bytes | None) -> None:
        """Count the basket record at ``offset`` (one at or before the counts' offset is already in them)."""
        counts = self.counts
        if counts.offset is not None and offset <= counts.offset:
            return
        counts.offset = offset
        try:
            outcome = counts.add(orjson.loads(value))
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as error:
            log.warning("skipping a malformed basket record at offset %s: %s", offset, error)
            return
        metrics.BASKETS_COUNTED.labels(outcome).inc()

    async def handle(self, message, app) -> None:
        """One record from Faust: read and count any records before it the counts miss, then count it."""
        self.last_record_at = time.monotonic()
        async with self.turn:
            await self._handle(message, app)

    async def _handle(self, message, app) -> None:
        if self.counts is None:
            await self.resume(app.loop)
        applied = self.counts.offset
        if applied is None or message.offset > applied + 1:
            first = applied + 1 if applied is not None else await self.reader.log_start(message.topic, message.partition)
            last = message.offset - 1
            if last >= first:
                log.warning("baskets[%s]: record %s arrived with %s the next to count: reading %s to %s directly",
                            message.partition, message.offset, first, first, last)
                async for missed in self.reader.read(message.topic, message.partition, first, last):
                    self.apply(missed.offset, missed.value)
                await settle(app.consumer, message.tp, first, last)
        self.apply(message.offset, message.value)

    async def catch_up(self, app, topic: str) -> int:
        """Count the records of the baskets partition this worker holds that Faust has not handed over for
        :data:`STALL_SECONDS` (a hand-over cut short by a rebalance drops a record, and nothing may come after
        it); how many. Faust delivers them later, if at all, and they are skipped as counted already."""
        held = [tp for tp in app.assignor.assigned_actives() if tp.topic == topic]
        if not held or time.monotonic() - self.last_record_at < STALL_SECONDS:
            return 0
        tp = held[0]
        counted = 0
        async with self.turn:
            if self.counts is None:
                await self.resume(app.loop)
            end = await self.reader.log_end(tp.topic, tp.partition)
            applied = self.counts.offset
            first = applied + 1 if applied is not None else await self.reader.log_start(tp.topic, tp.partition)
            if end - 1 >= first:
                log.warning("baskets[%s]: records %s to %s not handed over for %.0f s: reading them directly",
                            tp.partition, first, end - 1, STALL_SECONDS)
                async for missed in self.reader.read(tp.topic, tp.partition, first, end - 1):
                    self.apply(missed.offset, missed.value)
                    counted += 1
        self.last_record_at = time.monotonic()
        return counted

    def snapshot(self) -> tuple[bytes, bytes] | None:
        """The state and summary to publish, None when nothing was counted since the last."""
        counts = self.counts
        if counts is None or counts.version == self.published:
            return None
        self.published = counts.version
        return counts.to_bytes(), orjson.dumps(counts.summary())


def install_aggregator(app, settings: Settings, baskets_topic, associations_topic) -> Aggregator:
    """Register the aggregator's agent and snapshot timer on ``app``; its :class:`Aggregator`."""
    aggregator = Aggregator(settings)

    @app.agent(baskets_topic)
    async def count_baskets(stream):
        """Fold every worker's closed baskets into the co-purchase counts, one record at a time (as the trainer)."""
        async for event in stream.events():
            await aggregator.handle(event.message, app)

    @app.timer(interval=settings.association_snapshot_interval)
    async def publish_associations() -> None:
        """Publish the counts' state and summary when baskets were counted since the last snapshot."""
        snapshot = aggregator.snapshot()
        if snapshot is None:
            return
        state, summary = snapshot
        await associations_topic.send(key=STATE_KEY, value=state)
        await associations_topic.send(key=SUMMARY_KEY, value=summary)

    @app.timer(interval=STALL_SECONDS / 2)
    async def mind_baskets_partition() -> None:
        """Count what a held baskets partition has past the counts when Faust stops handing it over.

        A broker that is away (restarting) fails the read: the next tick tries again, the worker carries on."""
        try:
            await aggregator.catch_up(app, baskets_topic.get_topic_name())
        except Exception as error:
            log.warning("baskets: reading a stalled partition failed, trying again in %.0f s: %s: %s",
                        STALL_SECONDS / 2, type(error).__name__, error)

    @app.on_before_shutdown.connect
    async def _close_reader(app, **kwargs) -> None:
        await aggregator.reader.stop()

    return aggregator

