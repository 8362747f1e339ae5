"""The Faust worker: an adapter that runs each partition's engine and executes its effects.

* ``ingest`` hands each record of ``events``, ``profiles``, ``erasures`` and
  ``ticks`` (co-partitioned, keyed by user id) to its partition's
  :class:`~online_models.processor.PartitionProcessor` and executes the effects
  it returns, in order: state writes to the partition's RocksDB table and its
  changelog, every record sent in whole batches per topic partition
  (:mod:`streams.record_batches`), a confirmed send delivered before any later
  write (an alert before the state that remembers it, an erasure's tombstones
  before the state's deletion), and every state write delivered before the
  progress record that covers it.
* ``publish_portraits`` publishes the portraits each engine has changed since the
  last tick, rendered from its live states and scored with the latest models;
  ``flush_idle_partitions`` writes the changes a partition holds in memory at
  least every ``PORTRAITS_FLUSH_INTERVAL`` seconds.
* the trainer (:mod:`streams.trainer`, one partition, so one in the group) learns
  the population models from the samples and publishes snapshots to the
  compacted ``models`` topic, which every worker follows.

What works around Faust itself (records it skips, stalled partitions, writes by
partition, the drain at a graceful stop) is in :mod:`streams.faust_repairs`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from prometheus_client import generate_latest

from online_models.population import PopulationConfig, PopulationModels
from online_models.processor import PROGRESS_KEY, TICKS, PartitionProcessor, PartitionProgress, Put, Record, Send
from online_models.tags import TagRules
from streams import faust_repairs, metrics, topics
from streams.faust_repairs import DrainHookApp, PartitionWriter, SkippedRecordReader, settle
from streams.model_feed import ModelFeed
from streams.record_batches import RecordBatches, Shipped
from streams.quiet_worker import QuietWorker
from streams.settings import Settings, get_settings
from streams.trainer import Trainer, install_trainer

log = logging.getLogger(__name__)
# Table writes are buffered while the conductor drains them; Faust warns on every full buffer.
logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
# The publisher's timer waits for the broker's acknowledgements by design, so it overlaps its
# interval whenever a batch is large; a warning on each overlap says nothing.
logging.getLogger("mode.timers").setLevel(logging.ERROR)
faust_repairs.check_faust_version()

#: the publisher never takes more than this share of the worker's time: it skips ticks to keep it
PUBLISH_SHARE = 0.2
#: records of one topic partition gathered into one produce batch (below the topics' max.message.bytes)
BATCH_BYTES = 256 * 1024
#: an idle agent with unread records on an assigned partition for this long is stalled
STALL_SECONDS = 20.0
#: how often a worker waiting for the models topic says so
MODEL_WAIT_WARNING_SECONDS = 30.0


class Engines:
    """This worker's partition engines, the models they score with, and the execution of their effects."""

    def __init__(self, app: "PortraitsApp", settings: Settings):
        self.app, self.settings = app, settings
        self.config = settings.engine_config()
        self.rules = TagRules.load(settings.tag_rules) if settings.tag_rules else TagRules.default()
        self.unfitted = PopulationModels(PopulationConfig(layers=settings.layer_config()), self.rules)
        self.feed = ModelFeed(settings.topic(topics.MODELS), settings.bootstrap_servers)
        self.skipped = SkippedRecordReader(settings.bootstrap_servers, client_id=f"{settings.app_id}-holes")
        self.by_partition: dict[int, PartitionProcessor] = {}
        self.kinds = {settings.topic(name): name for name in (topics.EVENTS, topics.PROFILES, topics.ERASURES, topics.TICKS)}
        #: partitions whose next profiles record is checked for a hole (Faust skips around rebalances)
        self.profiles_unchecked: set[int] = set()
        self._batches: RecordBatches | None = None
        self._publication: RecordBatches | None = None
        #: batches shipped whose delivery was not seen yet
        self.in_flight: list[Shipped] = []
        #: held while one engine call and its effects run, so a timer's flush never splits them
        self.turn = asyncio.Lock()
        self.last_record_at = time.monotonic()
        self.publish_not_before = 0.0
        self._scoring: tuple[bytes | None, PopulationModels | None] = (None, None)
        self.webhook = None
        if settings.alert_webhook:
            from online_models.webhook import WebhookSender

            self.webhook = WebhookSender(settings.alert_webhook)

    # -------------------------------------------------------------- models
    def models(self) -> PopulationModels:
        """The latest snapshot from the feed; before the first, unfitted models (layers, lifecycle, tags need no fit)."""
        raw = self.feed.latest.get(b"snapshot")
        if raw is not None and raw is not self._scoring[0]:
            try:
                self._scoring = (raw, PopulationModels.from_bytes(raw, self.rules))
            except Exception as error:  # a bad snapshot must not stop scoring with the last good one
                log.warning("ignoring a model snapshot that does not load: %s", error)
                self._scoring = (raw, self._scoring[1])
        return self._scoring[1] or self.unfitted

    async def wait_for_models(self) -> None:
        """Wait, without a deadline, until the models topic is read to its end, so the first records score as a replay would.

        The feed starts here, not in an app task: Faust starts those only after the
        tables are recovered, which after a crash can take longer than the agents wait.
        """
        self.feed.ensure_started()
        waited = 0.0
        while not await self.app.loop.run_in_executor(None, self.feed.caught_up.wait, 1.0):
            waited += 1.0
            self.last_record_at = time.monotonic()  # waiting is not a stall
            if waited % MODEL_WAIT_WARNING_SECONDS == 0:
                log.warning("waiting %.0f s for the models topic to be read before applying any record", waited)

    # -------------------------------------------------------------- partitions
    def engine(self, partition: int) -> PartitionProcessor:
        """The partition's engine, restored from its table on first use."""
        engine = self.by_partition.get(partition)
        if engine is None:
            engine = self.by_partition[partition] = PartitionProcessor(partition, self.app.writer.reader(partition), self.config)
            self._show_applied(partition, engine.progress)
        return engine

    @staticmethod
    def _show_applied(partition: int, progress: PartitionProgress) -> None:
        """The offsets the partition's state holds, on /metrics."""
        for topic, offset in progress.offsets.items():
            metrics.APPLIED_OFFSET.labels(topic, str(partition)).set(offset)

    async def handle(self, message) -> None:
        """One record from Faust: fill any hole before it, then apply it."""
        self.last_record_at = time.monotonic()
        kind = self.kinds[message.topic]
        engine = self.engine(message.partition)
        if kind != TICKS and not engine.progress.covers(message.topic, message.offset) and self._gapless(kind, message.partition):
            applied = engine.applied_offset(message.topic)
            # with no progress yet, everything the broker holds of the partition is still to apply
            first = applied + 1 if applied is not None else await self.skipped.log_start(message.topic, message.partition)
            if message.offset > first:
                await self.fill_hole(message, first, engine)
        await self.apply(engine, kind, message)

    def _gapless(self, kind: str, partition: int) -> bool:
        """Whether a gap before this record is a hole: always for events and erasures; for the
        compacted profiles only on the first record after a rebalance (elsewhere gaps are compaction's)."""
        if kind != topics.PROFILES:
            return True
        if partition in self.profiles_unchecked:
            self.profiles_unchecked.discard(partition)
            return True
        return False

    async def fill_hole(self, message, first: int, engine: PartitionProcessor) -> None:
        """Apply the records from ``first`` up to before ``message`` that Faust skipped, read from the broker."""
        last = message.offset - 1
        log.warning("%s[%s]: record %s arrived with %s the next to apply: reading %s to %s directly",
                    message.topic, message.partition, message.offset, first, first, last)
        metrics.HOLES_REREAD.inc()
        async for missed in self.skipped.read(message.topic, message.partition, first, last):
            await self.apply(engine, self.kinds[message.topic], missed)
        await settle(self.app.consumer, message.tp, first, last)

    async def apply(self, engine: PartitionProcessor, kind: str, message) -> None:
        record = Record(kind, message.topic, message.offset, message.key, message.value)
        async with self.turn:
            effects = engine.process(record, now_ms=int(time.time() * 1000), models=self.models())
            if effects:
                await self.execute(engine.partition, effects)
        metrics.add_engine_counts(engine.counts)

    async def flush(self, partitions=None) -> None:
        """Write what the engines of ``partitions`` (default: all) hold in memory, and their progress."""
        async with self.turn:
            for partition in list(self.by_partition if partitions is None else partitions):
                engine = self.by_partition.get(partition)
                if engine is not None:
                    await self.execute(partition, engine.flush())

    async def execute(self, partition: int, effects: list) -> None:
        """Carry out effects in order. Records travel in batches; a write waits until every confirmed
        send before it is delivered, and the progress record until every state write before it is."""
        batches, writer = await self.batches(), self.app.writer
        confirm = False
        for effect in effects:
            if type(effect) is Send:
                batches.add(self.settings.topic(effect.topic), effect.key, effect.value, headers=effect.headers)
                confirm = confirm or effect.confirm
                if effect.kind == "alert" and self.webhook is not None:
                    self.webhook.submit(effect.value)
                continue
            if confirm or effect.key == PROGRESS_KEY:
                await self.deliver()
                confirm = False
            writer.write(partition, effect.key, effect.value if type(effect) is Put else None, batches)
        if batches.pending:
            await self.ship()
        last = effects[-1]
        if type(last) is Put and last.key == PROGRESS_KEY:
            self._show_applied(partition, PartitionProgress.from_bytes(last.value))

    async def batches(self) -> RecordBatches:
        """The batches of the engines' records (made once the producer runs)."""
        if self._batches is None:
            batches = RecordBatches(faust_repairs.aiokafka_producer(self.app))
            await batches.know([self.settings.topic(name) for name in topics.ENGINE_OUTPUTS] + [self.app.writer.changelog])
            self._batches = batches
        return self._batches

    async def ship(self) -> None:
        """Hand the gathered records to the producer; a delivery that failed before stops the worker here."""
        self.check_deliveries()
        for shipped in await self._batches.ship():
            self.in_flight.append(shipped)
            shipped.delivery.add_done_callback(lambda done, shipped=shipped: self._delivered(shipped))

    def _delivered(self, shipped: Shipped) -> None:
        if not shipped.delivery.cancelled() and shipped.delivery.exception() is None:
            self.app.writer.delivered(shipped)

    def check_deliveries(self) -> None:
        """Forget delivered batches; raise the error of one that failed (its records may be lost)."""
        waiting = []
        for shipped in self.in_flight:
            if not shipped.delivery.done():
                waiting.append(shipped)
            elif shipped.delivery.exception() is not None:
                raise RuntimeError(f"records to {shipped.topic}[{shipped.partition}] were not delivered") from shipped.delivery.exception()
        self.in_flight = waiting

    async def deliver(self) -> None:
        """Ship what is gathered and wait until Kafka has every record shipped so far."""
        await self.batches()
        await self.ship()
        await asyncio.gather(*(shipped.delivery for shipped in self.in_flight), return_exceptions=True)
        self.check_deliveries()

    # -------------------------------------------------------------- publication
    async def publish(self, partitions=None) -> float:
        """Publish the changed portraits of ``partitions`` (default: all); wait until Kafka has them. Seconds spent rendering."""
        models, rendering, covered = self.models(), 0.0, []
        topic = self.settings.topic(topics.PORTRAITS)
        if self._publication is None:
            publication = RecordBatches(faust_repairs.aiokafka_producer(self.app))
            await publication.know([topic])
            self._publication = publication
        batches = self._publication
        for partition in list(self.by_partition if partitions is None else partitions):
            engine = self.by_partition.get(partition)
            if engine is None or not engine.unpublished:
                continue
            started = time.monotonic()
            sends, seq = engine.publication(models)
            for send in sends:
                batches.add(topic, send.key, send.value)
            covered.append((engine, seq, len(sends)))
            rendering += time.monotonic() - started
            await asyncio.sleep(0)  # let the agent run between partitions
        shipped = await batches.ship()
        await asyncio.gather(*(one.delivery for one in shipped))
        for engine, seq, _ in covered:
            engine.published(seq)
        metrics.PORTRAITS_PUBLISHED.inc(sum(count for _, _, count in covered))
        return rendering


class PortraitsApp(DrainHookApp):
    """Faust's app with this worker's engines; a graceful stop writes what every engine holds."""

    engines: Engines
    writer: PartitionWriter
    trainer: Trainer

    async def on_drained_for_stop(self) -> None:
        await self.engines.flush()
        await self.engines.deliver()


settings = get_settings()
app = PortraitsApp(
    settings.app_id,
    Worker=QuietWorker,
    broker=";".join(f"kafka://{server}" for server in settings.bootstrap_servers),
    store="rocksdb://",
    datadir=str(settings.data_dir / "worker"),
    topic_partitions=settings.partitions,
    topic_replication_factor=1,
    key_serializer="raw",
    value_serializer="raw",
    web_port=settings.worker_web_port,
    web_host="127.0.0.1",
    web_in_thread=False,
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    producer_max_request_size=topics.MAX_MODEL_BYTES,
    producer_max_batch_size=BATCH_BYTES,
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    table_standby_replicas=settings.standby_replicas,
)
SOURCE_NAMES = tuple(settings.topic(name) for name in (topics.EVENTS, topics.PROFILES, topics.ERASURES))
source_topic = app.topic(*SOURCE_NAMES, settings.topic(topics.TICKS))
training_topic = app.topic(settings.topic(topics.MODEL_TRAINING))
models_topic = app.topic(settings.topic(topics.MODELS))
ticks_topic = app.topic(settings.topic(topics.TICKS))
#: user id -> PortraitState bytes, and each partition's progress record; bytes in and out, also on the
#: changelog that recovery reads (compacted; segments rolled every 10 minutes keep about one record per user)
portrait_table = app.Table(
    topics.STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes,
    extra_topic_configs=topics.CHANGELOG_CONFIGS,
)
app.writer = PartitionWriter(portrait_table)
app.engines = Engines(app, settings)
app.trainer = install_trainer(app, settings, training_topic, models_topic)


@app.agent(source_topic)
async def ingest(stream):
    """Hand each record to its partition's engine and execute what it returns."""
    await app.engines.wait_for_models()
    async for event in stream.events():
        await app.engines.handle(event.message)


@app.timer(interval=settings.publish_interval)
async def publish_portraits() -> None:
    """Publish every portrait that changed since the last tick, once, scored with the latest models."""
    engines = app.engines
    now_ms = time.time() * 1000
    for partition, engine in list(engines.by_partition.items()):
        if engine.stream_time is not None:
            metrics.WATERMARK_DELAY.labels(str(partition)).set(max(0.0, (now_ms - engine.stream_time) / 1000))
    if time.monotonic() >= engines.publish_not_before:
        rendering = await engines.publish()
        # the share counts the rendering only: waiting for the broker (say, while it restarts) is not work
        engines.publish_not_before = time.monotonic() + rendering * (1 / PUBLISH_SHARE - 1)


@app.timer(interval=settings.flush_interval)
async def flush_idle_partitions() -> None:
    """Write the changes engines hold in memory (a busy partition flushes by itself every ``progress_every`` records).

    Not while a rebalance or a table recovery is under way, and only for partitions this worker
    holds as active: a table write in a rebalance's drain left a partition uncommitted and the next
    owner's recovery stuck (tests/integration/test_scale_out.py).
    """
    if app.rebalancing or getattr(app, "in_recovery", False):
        return
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == SOURCE_NAMES[0]}
    await app.engines.flush([p for p, engine in app.engines.by_partition.items() if engine.unflushed and p in active])


@app.timer(interval=max(0.5, settings.live_idle_seconds / 2) if settings.live_idle_seconds else 60.0)
async def send_ticks() -> None:
    """Live mode: a tick to each partition this worker holds, so idle time still moves."""
    if not settings.live_idle_seconds:
        return
    body = orjson.dumps({"wall_ms": int(time.time() * 1000)})
    for tp in app.assignor.assigned_actives():
        if tp.topic == SOURCE_NAMES[0]:
            await ticks_topic.send(value=body, partition=tp.partition)


@app.on_partitions_assigned.connect
async def _check_profiles_after_rebalance(app, assigned, **kwargs) -> None:
    app.engines.profiles_unchecked.update(tp.partition for tp in assigned if tp.topic == SOURCE_NAMES[1])


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:
    """Publish what changed before the partitions move (or come straight back), then drop their engines.

    Nothing is written here: a table write in a rebalance's drain left the next owner's
    recovery stuck; the next owner reads again what the last flush does not cover.
    """
    engines = app.engines
    leaving = {tp.partition for tp in revoked if tp.topic == SOURCE_NAMES[0]}
    async with engines.turn:
        await engines.publish(leaving)
        for partition in leaving:
            engines.by_partition.pop(partition, None)
    if any(tp.topic == training_topic.get_topic_name() for tp in revoked):
        app.trainer.models = None  # another worker resumes from the last snapshot


@app.on_before_shutdown.connect
async def _close_skipped_records(app, **kwargs) -> None:
    await app.engines.skipped.stop()


@app.timer(interval=2.0)
async def mind_assigned_partitions() -> None:
    """Take over newly assigned partitions at once; read a stalled one again from its progress.

    A partition that comes back after a rebalance may get no new record for a long time;
    its unpublished users must still be published. An agent idle for
    :data:`STALL_SECONDS` (three times that while a rebalance or recovery is not over)
    with unread records is stalled (:func:`streams.faust_repairs.read_stalled_again`).
    """
    engines = app.engines
    busy = app.rebalancing or getattr(app, "in_recovery", False)
    idle = time.monotonic() - engines.last_record_at
    stalled = idle >= (3 * STALL_SECONDS if busy else STALL_SECONDS)
    if busy and not stalled:
        return
    source = [tp for tp in app.assignor.assigned_actives() if tp.topic in SOURCE_NAMES]
    for tp in source:
        engines.engine(tp.partition)
    if stalled:
        if busy:
            log.warning("idle for %.0f s with the rebalance or recovery not over", idle)
        applied = {tp: engines.by_partition[tp.partition].applied_offset(tp.topic) for tp in source if tp.partition in engines.by_partition}
        sought = await faust_repairs.read_stalled_again(app.consumer, source, applied)
        metrics.PARTITIONS_UNSTALLED.inc(len(sought))
        engines.last_record_at = time.monotonic()  # give the seeks time to deliver


@app.page("/metrics")
async def metrics_page(web, request):
    """Prometheus metrics of this worker."""
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
