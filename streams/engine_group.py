"""A group of partition engines: records in from Faust, effects out to RocksDB and Kafka.

:class:`EngineGroup` keeps one engine (an
:class:`~online_models.partition_engine.PartitionEngine`) per partition this worker
holds of one kind of input, hands it each record (filling holes Faust left first),
executes the effects it returns in the order they require (a confirmed send
delivered before any later write, every state write delivered before the progress
record that covers it), flushes what the engines hold and publishes the states they
changed. The worker's two groups, the users' and the items', are in :mod:`streams.engines`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from faust.types import TP

from online_models.partition_engine import PROGRESS_KEY, PartitionEngine, PartitionProgress, Put, Record, Send
from online_models.population import PopulationModels
from online_models.processor import TICKS
from online_models.publication_pace import PublicationPace
from streams import faust_repairs, kafka_security, metrics
from streams.faust_repairs import PartitionWriter, QuietPartitions, SkippedRecordReader, settle
from streams.record_batches import Outbox
from streams.settings import Settings

log = logging.getLogger(__name__)

#: sends nobody waits for: they leave with the partition's next write (whose progress record waits for them),
#: or as soon as their batch is full, instead of a produce request of their own each
UNHURRIED_KINDS = frozenset({"dead_letter", "basket"})
#: live, the flush timer ticks this many times per flush interval, each tick writing a share of the partitions
FLUSH_SLICES = 4


class EngineGroup:
    """This worker's engines of one kind, by partition, and the execution of their effects.

    ``kinds`` are the short names of the inputs (their full names are the settings'),
    ``outputs`` of the topics the engines send to besides their table's changelog, and
    ``publish_topic`` of the topic their publication goes to.
    """

    #: Prometheus counter of the states published
    published_metric = metrics.PORTRAITS_PUBLISHED

    def __init__(self, app, settings: Settings, writer: PartitionWriter, *, kinds: tuple[str, ...],
                 outputs: tuple[str, ...], publish_topic: str, client_id: str, publish_interval: float):
        self.app, self.settings, self.writer = app, settings, writer
        self.kinds = {settings.topic(name): name for name in kinds}
        self.outputs = outputs
        self.publish_topic = publish_topic
        self.record_age = metrics.RECORD_AGE.labels(publish_topic)
        self.publication_wait = metrics.PUBLICATION_WAIT.labels(publish_topic)
        self.flush_seconds = metrics.FLUSH_SECONDS.labels(publish_topic)
        self.skipped = SkippedRecordReader(
            settings.bootstrap_servers, client_id=client_id, client_options=kafka_security.aiokafka_options(settings)
        )
        self.by_partition: dict[int, PartitionEngine] = {}
        self._outbox: Outbox | None = None
        self._publication: Outbox | None = None
        #: held while one engine call and its effects run, so a timer's flush never splits them
        self.turn = asyncio.Lock()
        self.last_record_at = time.monotonic()
        #: records handed to the engines (the publication's pace measures the rate from it)
        self.handled = 0
        #: when each source partition last delivered a record (stalls are looked for partition by partition)
        self.quiet = QuietPartitions()
        #: partition -> monotonic time of the last record (ticks aside) handed to its engine
        self.fed_at: dict[int, float] = {}
        #: partition -> monotonic time its engine last wrote its progress (or was made)
        self.flushed_at: dict[int, float] = {}
        #: partition -> monotonic time of the first change its next publication covers
        self.unpublished_since: dict[int, float] = {}
        #: when the publication runs: every publish_interval live, seldom while catching up
        self.pace = PublicationPace(
            interval_s=publish_interval,
            behind_interval_s=settings.publish_interval_behind,
            behind_s=settings.publish_behind_seconds,
            behind_max_interval_s=settings.publish_interval_behind_max,
        )

    # -------------------------------------------------------------- what a group says
    def make_engine(self, partition: int) -> PartitionEngine:
        """A new engine of the partition over its table."""
        raise NotImplementedError

    def models(self) -> PopulationModels | None:
        """What the engines score with (None: nothing)."""
        return None

    def _gapless(self, kind: str, partition: int) -> bool:
        """Whether a gap before a record of ``kind`` is a hole Faust left (the default: always)."""
        return True

    def _sent(self, effect: Send) -> None:
        """A send was handed to the batches."""

    def _held(self, partition: int, effect: Send, batches) -> bool:
        """Whether a send is held back, to leave with the partition's next write (none is, by default)."""
        return False

    def _release(self, partition: int, batches) -> bool:
        """Hand what is held back for the partition to the batches, before its next write; whether there was any."""
        return False

    def drop(self, partition: int) -> None:
        """Forget the partition's engine (it moved to another worker), and anything held back for it."""
        engine = self.by_partition.pop(partition, None)
        if engine is not None:
            metrics.add_engine_counts(engine.counts)
        self.quiet.forget(partition)
        self.fed_at.pop(partition, None)
        self.flushed_at.pop(partition, None)
        self.unpublished_since.pop(partition, None)

    # -------------------------------------------------------------- partitions
    def engine(self, partition: int) -> PartitionEngine:
        """The partition's engine, restored from its table on first use."""
        engine = self.by_partition.get(partition)
        if engine is None:
            engine = self.by_partition[partition] = self.make_engine(partition)
            self._progress_written(partition, engine.progress)
        return engine

    def _progress_written(self, partition: int, progress: PartitionProgress) -> None:
        """The partition's state holds ``progress`` as of now: its time of writing kept, its offsets on /metrics."""
        self.flushed_at[partition] = time.monotonic()
        for topic, offset in progress.offsets.items():
            metrics.APPLIED_OFFSET.labels(topic, str(partition)).set(offset)

    async def handle(self, message) -> None:
        """One record from Faust: fill any hole before it, then apply it."""
        self.last_record_at = now = time.monotonic()
        self.handled += 1
        if self.handled % metrics.RECORD_AGE_EVERY == 0 and message.timestamp:
            self.record_age.observe(max(0.0, time.time() - message.timestamp))
        self.quiet.delivered(message.topic, message.partition, now=now)
        kind = self.kinds[message.topic]
        if kind != TICKS:  # a tick is no work to catch up with
            self.fed_at[message.partition] = now
        engine = self.engine(message.partition)
        if kind != TICKS and not engine.progress.covers(message.topic, message.offset) and self._gapless(kind, message.partition):
            first = await self._next_to_apply(engine, message.topic)
            if message.offset > first:
                await self.fill_hole(message, first, engine)
        await self.apply(engine, kind, message)

    async def _next_to_apply(self, engine: PartitionEngine, topic: str) -> int:
        """The offset of ``topic`` after the engine's progress; with no progress yet, the first the broker holds."""
        applied = engine.applied_offset(topic)
        return applied + 1 if applied is not None else await self.skipped.log_start(topic, engine.partition)

    async def _apply_from_broker(self, engine: PartitionEngine, topic: str, first: int, last: int) -> None:
        """Apply the records of ``topic`` at offsets ``first`` to ``last`` of the engine's partition, read from the broker."""
        async for record in self.skipped.read(topic, engine.partition, first, last):
            await self.apply(engine, self.kinds[topic], record)

    async def fill_hole(self, message, first: int, engine: PartitionEngine) -> None:
        """Apply the records from ``first`` up to before ``message`` that Faust skipped, read from the broker."""
        last = message.offset - 1
        log.warning("%s[%s]: record %s arrived with %s the next to apply: reading %s to %s directly",
                    message.topic, message.partition, message.offset, first, first, last)
        metrics.HOLES_REREAD.inc()
        await self._apply_from_broker(engine, message.topic, first, last)
        await settle(self.app.consumer, message.tp, first, last)

    async def apply(self, engine: PartitionEngine, kind: str, message) -> None:
        record = Record(kind, message.topic, message.offset, message.key, message.value)
        async with self.turn:
            effects = engine.process(record, now_ms=int(time.time() * 1000), models=self.models())
            if engine.unpublished and engine.partition not in self.unpublished_since:
                self.unpublished_since[engine.partition] = time.monotonic()
            if effects:
                await self.execute(engine.partition, effects, write_follows=engine.unflushed)

    def report_counts(self) -> None:
        """Add what the engines counted since the last report to the metrics."""
        for engine in list(self.by_partition.values()):
            if engine.counts:
                metrics.add_engine_counts(engine.counts)

    def due_for_timed_flush(self, active: set[int], *, now: float, interval: float, behind_interval: float) -> list[int]:
        """The partitions of ``active`` whose engines hold changes the flush timer writes now.

        Live, the timer ticks :data:`FLUSH_SLICES` times per ``interval``: each tick, the share
        of the partitions holding changes that wrote longest ago (and any that wrote ``interval``
        seconds ago or more), so the flushes spread over the interval and the records waiting
        for one wait for a slice of the partitions' writes, not all of them.

        While the worker catches up, those nothing came for
        in ``interval`` seconds, and those that last wrote their progress ``behind_interval``
        seconds ago or more (as Kafka Streams' commit interval, so a crash reads no more than that
        much work again): a busy partition otherwise flushes by itself every ``progress_every``
        records, so its flushes (each waiting for Kafka) stay few and its writes and item-fact packs
        large, each state written once for many of its records.
        """
        held = [p for p, engine in self.by_partition.items() if engine.unflushed and p in active]
        if not held:
            return held
        if not self.pace.catching_up(self.backlog()):
            oldest_first = sorted(held, key=lambda p: self.flushed_at.get(p, 0.0))
            share = set(oldest_first[: math.ceil(len(held) / FLUSH_SLICES)])
            return [p for p in held if p in share or now - self.flushed_at.get(p, 0.0) >= interval]
        return [
            p for p in held
            if now - self.fed_at.get(p, 0.0) >= interval or now - self.flushed_at.get(p, 0.0) >= behind_interval
        ]

    async def flush(self, partitions=None) -> None:
        """Write what the engines of ``partitions`` (default: all) hold in memory, and their progress.

        In three steps across the partitions, each waiting for Kafka once: what is held back
        for them (confirmed before the states that remember it was sent), then their states,
        then their progress records, each covering states already confirmed. The records waiting
        for the turn wait for Kafka twice per flush, not twice per partition.
        """
        async with self.turn:
            started = time.monotonic()
            if await self._flush(partitions):
                self.flush_seconds.observe(time.monotonic() - started)

    async def _flush(self, partitions) -> bool:
        """:meth:`flush` with the turn held; whether any partition was flushed."""
        flushed = [
            (partition, engine.flush())
            for partition in list(self.by_partition if partitions is None else partitions)
            if (engine := self.by_partition.get(partition)) is not None
        ]
        if not flushed:
            return False
        outbox, writer = await self.outbox(), self.writer
        batches = outbox.batches
        if any([self._release(partition, batches) for partition, _ in flushed]):
            await outbox.deliver()
        for partition, effects in flushed:
            for effect in effects[:-1]:
                writer.write(partition, effect.key, effect.value if type(effect) is Put else None, batches)
        writer.apply_staged()
        await outbox.deliver()
        for partition, effects in flushed:
            writer.write(partition, PROGRESS_KEY, effects[-1].value, batches)
        writer.apply_staged()
        await outbox.ship()
        for partition, effects in flushed:
            self._progress_written(partition, PartitionProgress.from_bytes(effects[-1].value))
        return True

    async def execute(self, partition: int, effects: list, *, write_follows: bool = False) -> None:
        """Carry out effects in order. Records travel in batches; a write waits until every confirmed
        send before it is delivered (and whatever was held back for the partition), and the progress
        record until every state write and send before it is. When the partition's next write is
        sure to follow (``write_follows``: its engine holds changes a flush will write), sends of
        :data:`UNHURRIED_KINDS` alone are not shipped at once: they leave with that write or a full batch."""
        outbox, writer = await self.outbox(), self.writer
        batches, confirm, released, hurried = outbox.batches, False, False, False
        for effect in effects:
            if type(effect) is Send:
                if self._held(partition, effect, batches):
                    continue
                batches.add(self.settings.topic(effect.topic), effect.key, effect.value, headers=effect.headers)
                confirm = confirm or effect.confirm
                hurried = hurried or effect.kind not in UNHURRIED_KINDS
                self._sent(effect)
                continue
            if not released:  # what was held back leaves before the first write, confirmed
                released = True
                confirm = self._release(partition, batches) or confirm
            if confirm or effect.key == PROGRESS_KEY:
                writer.apply_staged()
                await outbox.deliver()
                confirm = False
            writer.write(partition, effect.key, effect.value if type(effect) is Put else None, batches)
        writer.apply_staged()
        if batches.full or (batches.pending and (hurried or not write_follows)):
            await outbox.ship()
        last = effects[-1]
        if type(last) is Put and last.key == PROGRESS_KEY:
            self._progress_written(partition, PartitionProgress.from_bytes(last.value))

    async def outbox(self) -> Outbox:
        """Where the engines' records and table writes leave (made once the producer runs)."""
        if self._outbox is None:
            outbox = Outbox(faust_repairs.aiokafka_producer(self.app), on_delivered=self.writer.delivered)
            await outbox.batches.know([self.settings.topic(name) for name in self.outputs] + [self.writer.changelog])
            self._outbox = outbox
        return self._outbox

    async def deliver(self) -> None:
        """Wait until Kafka has every record the engines sent so far."""
        await (await self.outbox()).deliver()

    # -------------------------------------------------------------- publication
    def backlog(self) -> int:
        """Unread records of the inputs (ticks aside) of the partitions this group's engines hold, as far as the consumer knows."""
        consumer, unread = self.app.consumer, 0
        for partition, engine in list(self.by_partition.items()):
            for topic, kind in self.kinds.items():
                if kind == TICKS:
                    continue
                end = faust_repairs.known_highwater(consumer, TP(topic, partition))
                if end:
                    applied = engine.applied_offset(topic)
                    unread += end - (applied + 1 if applied is not None else 0)
        return unread

    async def publish(self, partitions=None, *, hold_turn: bool = True) -> float:
        """Publish the changed states of ``partitions`` (default: all); wait until Kafka has them. Seconds spent rendering.

        Each partition's states are rendered and handed to the producer while the group's turn is
        held (``hold_turn`` False: the caller holds it), so a record an engine sends afterwards on
        the same topic partition (an expiry's tombstone) reaches Kafka after them, never before.
        """
        models, rendering, covered = self.models(), 0.0, []
        topic = self.settings.topic(self.publish_topic)
        if self._publication is None:
            publication = Outbox(faust_repairs.aiokafka_producer(self.app))
            await publication.batches.know([topic])
            self._publication = publication
        for partition in list(self.by_partition if partitions is None else partitions):
            engine = self.by_partition.get(partition)
            if engine is None or not engine.unpublished:
                continue
            async with self.turn if hold_turn else contextlib.nullcontext():
                rendering += await self._publish_partition(engine, topic, models, covered)
            await asyncio.sleep(0)  # let the agents run between partitions
        await self._publication.deliver()
        for engine, seq, _ in covered:
            engine.published(seq)
        self.published_metric.inc(sum(count for _, _, count in covered))
        return rendering

    async def _publish_partition(self, engine: PartitionEngine, topic: str, models, covered: list) -> float:
        """Render the engine's changed states and hand them to the producer; seconds spent rendering."""
        started = time.monotonic()
        sends, seq = engine.publication(models)
        batches = self._publication.batches
        for send in sends:
            batches.add(topic, send.key, send.value)
        covered.append((engine, seq, len(sends)))
        handed_over = time.monotonic()
        rendering = handed_over - started
        since = self.unpublished_since.pop(engine.partition, None)
        if since is not None:
            self.publication_wait.observe(handed_over - since)
        await self._publication.ship()
        return rendering
