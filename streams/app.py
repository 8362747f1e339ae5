"""The Faust worker: the app, its topics and table, and the agent and timers that drive the engines.

* ``ingest`` hands each record of ``events``, ``profiles``, ``erasures`` and
  ``ticks`` (co-partitioned, keyed by user id) to :class:`streams.engines.Engines`,
  which runs its partition's :class:`~online_models.processor.PartitionProcessor`
  and executes the effects it returns, in order: state writes to the partition's
  RocksDB table and its changelog, every record sent in whole batches per topic
  partition (:mod:`streams.record_batches`), a confirmed send delivered before
  any later write (an alert before the state that remembers it, an erasure's
  tombstones before the state's deletion), and every state write delivered
  before the progress record that covers it.
* ``fold_item_facts`` hands each record of ``item-facts`` (the users' events
  re-keyed by item and category, co-partitioned with ``events``) to
  :class:`streams.engines.ItemEngines`, whose partition engines keep the item and
  category states in a table of their own, crash-safe the same way.
* ``publish_portraits`` publishes the portraits each engine has changed since the
  last tick (every ``PORTRAITS_PUBLISH_INTERVAL`` seconds, start to start), rendered from its live states and scored with the latest models;
  ``publish_item_portraits`` does the same for items and categories, every
  ``PORTRAITS_ITEM_PUBLISH_INTERVAL`` seconds; ``flush_idle_partitions`` writes the
  changes a partition holds in memory at least every ``PORTRAITS_FLUSH_INTERVAL`` seconds.
* the trainer (:mod:`streams.trainer`, one partition, so one in the group) learns
  the population models from the samples and publishes snapshots to the
  compacted ``models`` topic, which every worker follows.
* the association aggregator (:mod:`streams.associations`, one partition too) counts
  the baskets the engines close and publishes the co-purchase counts to the compacted
  ``associations`` topic, which the API follows.

What works around Faust itself (records it skips or drops, its commit bookkeeping,
stalled partitions, writes by partition, the drain at a graceful stop) is in
:mod:`streams.faust_repairs`.
"""

from __future__ import annotations

import logging
import time

import orjson
from prometheus_client import generate_latest

from streams import faust_repairs, kafka_security, metrics, topics
from streams.associations import Aggregator, install_aggregator
from streams.cadence import run_every
from streams.engine_group import FLUSH_SLICES, EngineGroup
from streams.engines import Engines, ItemEngines
from streams.faust_repairs import PartitionWriter, RawSchema, RepairedApp
from streams.quiet_worker import QuietWorker
from streams.settings import get_settings
from streams.trainer import Trainer, install_trainer

log = logging.getLogger(__name__)
# Table writes are buffered while the conductor drains them; Faust warns on every full buffer.
logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
# The publisher's timer waits for the broker's acknowledgements by design, so it overlaps its
# interval whenever a batch is large; a warning on each overlap says nothing.
logging.getLogger("mode.timers").setLevel(logging.ERROR)
faust_repairs.check_faust_version()

#: records of one topic partition gathered into one produce batch (below the topics' max.message.bytes)
BATCH_BYTES = 256 * 1024
#: an idle agent with unread records on an assigned partition for this long is stalled
STALL_SECONDS = 20.0
#: seconds between two reports of the engines' counts to the metrics
COUNTS_INTERVAL = 0.25


class PortraitsApp(RepairedApp):
    """Faust's app with this worker's engines; a graceful stop writes what every engine holds."""

    engines: Engines
    item_engines: ItemEngines
    writer: PartitionWriter
    item_writer: PartitionWriter
    trainer: Trainer
    aggregator: Aggregator

    async def on_drained_for_stop(self) -> None:
        for group in (self.engines, self.item_engines):
            await group.flush()
            await group.deliver()


settings = get_settings()
app = PortraitsApp(
    settings.app_id,
    Worker=QuietWorker,
    broker=";".join(f"kafka://{server}" for server in settings.bootstrap_servers),
    broker_credentials=kafka_security.faust_credentials(settings),
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
#: the agents of these two read each record's raw message: no decoding on the way (RawSchema)
source_topic = app.topic(
    *SOURCE_NAMES, settings.topic(topics.TICKS), schema=RawSchema(key_serializer="raw", value_serializer="raw")
)
training_topic = app.topic(settings.topic(topics.MODEL_TRAINING))
models_topic = app.topic(settings.topic(topics.MODELS))
ticks_topic = app.topic(settings.topic(topics.TICKS))
ITEM_FACTS_NAME = settings.topic(topics.ITEM_FACTS)
item_facts_topic = app.topic(ITEM_FACTS_NAME, schema=RawSchema(key_serializer="raw", value_serializer="raw"))
baskets_topic = app.topic(settings.topic(topics.BASKETS))
associations_topic = app.topic(settings.topic(topics.ASSOCIATIONS))
#: user id -> PortraitState bytes, and each partition's progress record; bytes in and out, also on the
#: changelog that recovery reads (compacted; segments rolled every 10 minutes keep about one record per user)
portrait_table = app.Table(
    topics.STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes,
    extra_topic_configs=topics.CHANGELOG_CONFIGS,
)
#: item:<id> / category:<name> -> ItemState bytes, and each item partition's progress record, as above
item_table = app.Table(
    topics.ITEM_STATE_TABLE, partitions=settings.partitions, key_type=bytes, value_type=bytes,
    extra_topic_configs=topics.CHANGELOG_CONFIGS,
)
app.writer = PartitionWriter(portrait_table)
app.item_writer = PartitionWriter(item_table)
app.engines = Engines(app, settings, app.writer)
app.item_engines = ItemEngines(app, settings, app.item_writer)
app.trainer = install_trainer(app, settings, training_topic, models_topic)
app.aggregator = install_aggregator(app, settings, baskets_topic, associations_topic)


@app.agent(source_topic)
async def ingest(stream):
    """Hand each record to its partition's engine and execute what it returns."""
    await app.engines.wait_for_models()
    async for event in stream.events():
        await app.engines.handle(event.message)


@app.agent(item_facts_topic)
async def fold_item_facts(stream):
    """Hand each item fact to its partition's item engine and execute what it returns."""
    async for event in stream.events():
        await app.item_engines.handle(event.message)


async def publish_paced(group: EngineGroup) -> None:
    """Publish what the group's engines changed, when its pace says so (:mod:`online_models.publication_pace`)."""
    backlog = group.backlog()
    metrics.UNREAD_RECORDS.labels(group.publish_topic).set(backlog)
    metrics.CATCHING_UP.labels(group.publish_topic).set(int(group.pace.catching_up(backlog)))
    if group.pace.due(now=time.monotonic(), backlog=backlog, applied=group.handled):
        rendering = await group.publish()
        group.pace.published(now=time.monotonic(), rendering_s=rendering)


async def publish_portraits() -> None:
    """Publish every portrait that changed since the last tick, once, scored with the latest models."""
    engines = app.engines
    now_ms = time.time() * 1000
    for partition, engine in list(engines.by_partition.items()):
        if engine.stream_time is not None:
            metrics.WATERMARK_DELAY.labels(str(partition)).set(max(0.0, (now_ms - engine.stream_time) / 1000))
            metrics.STREAM_TIME_AHEAD.labels(str(partition)).set(max(0.0, (engine.stream_time - now_ms) / 1000))
    await publish_paced(engines)


@app.task
async def publish_portraits_on_time() -> None:
    """:func:`publish_portraits` every ``publish_interval`` seconds, start to start (:mod:`streams.cadence`)."""
    await run_every(settings.publish_interval, publish_portraits, should_stop=lambda: app.should_stop, sleep=app.sleep)


@app.timer(interval=COUNTS_INTERVAL)
async def report_engine_counts() -> None:
    """What the engines counted (records folded, checks, alerts, rejections, ...) and the collector's pauses onto /metrics."""
    app.engines.report_counts()
    app.item_engines.report_counts()
    app.engines.collector.report()


@app.timer(interval=settings.item_publish_interval)
async def publish_item_portraits() -> None:
    """Publish every item and category portrait that changed since the last tick, once."""
    await publish_paced(app.item_engines)


@app.timer(interval=settings.flush_interval / FLUSH_SLICES)
async def flush_idle_partitions() -> None:
    """Write the changes engines hold in memory: live, a share of the partitions at each tick, each partition about
    once per ``flush_interval``; a busy partition flushes by itself every ``progress_every`` records, and while
    catching up the timer leaves it to that for up to ``flush_interval_behind`` seconds
    (:meth:`streams.engine_group.EngineGroup.due_for_timed_flush`).

    Not while a rebalance or a table recovery is under way, and only for partitions this worker
    holds as active: a table write in a rebalance's drain left a partition uncommitted and the next
    owner's recovery stuck (tests/integration/test_scale_out.py).
    """
    if app.rebalancing or getattr(app, "in_recovery", False):
        return
    actives = app.assignor.assigned_actives()
    now = time.monotonic()
    for group, source in ((app.engines, SOURCE_NAMES[0]), (app.item_engines, ITEM_FACTS_NAME)):
        active = {tp.partition for tp in actives if tp.topic == source}
        await group.flush(group.due_for_timed_flush(
            active, now=now, interval=settings.flush_interval, behind_interval=settings.flush_interval_behind
        ))


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
async def _read_profiles_after_rebalance(app, assigned, **kwargs) -> None:
    app.engines.profiles_unread.update(tp.partition for tp in assigned if tp.topic == SOURCE_NAMES[1])


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:
    """Publish what changed before the partitions move (or come straight back), then drop their engines.

    Nothing is written here: a table write in a rebalance's drain left the next owner's
    recovery stuck; the next owner reads again what the last flush does not cover.
    """
    for group, source in ((app.engines, SOURCE_NAMES[0]), (app.item_engines, ITEM_FACTS_NAME)):
        leaving = {tp.partition for tp in revoked if tp.topic == source}
        async with group.turn:
            await group.publish(leaving, hold_turn=False)
            for partition in leaving:
                group.drop(partition)
    if any(tp.topic == training_topic.get_topic_name() for tp in revoked):
        app.trainer.models = None  # another worker resumes from the last snapshot
    if any(tp.topic == baskets_topic.get_topic_name() for tp in revoked):
        app.aggregator.counts = None  # another worker resumes from the last snapshot and the offset it holds


@app.on_before_shutdown.connect
async def _close_skipped_records(app, **kwargs) -> None:
    await app.engines.skipped.stop()
    await app.item_engines.skipped.stop()


@app.timer(interval=2.0)
async def mind_assigned_partitions() -> None:
    """Take over newly assigned partitions at once; read a stalled one again from its progress.

    A partition that comes back after a rebalance may get no new record for a long time;
    its unpublished states must still be published. A source partition that delivered nothing
    for :data:`STALL_SECONDS` (three times that, and only in a group idle as long, while a
    rebalance or recovery is not over) and has unread records is stalled
    (:func:`streams.faust_repairs.read_stalled_again`), whatever the other partitions deliver.
    """
    busy = app.rebalancing or getattr(app, "in_recovery", False)
    after = 3 * STALL_SECONDS if busy else STALL_SECONDS
    actives = app.assignor.assigned_actives()
    for group, names in ((app.engines, SOURCE_NAMES), (app.item_engines, (ITEM_FACTS_NAME,))):
        now = time.monotonic()
        idle = now - group.last_record_at
        if busy and idle < after:
            continue
        source = [tp for tp in actives if tp.topic in names]
        for tp in source:
            group.engine(tp.partition)
        quiet = group.quiet.quiet(source, now=now, after=after)
        if quiet:
            if busy:
                log.warning("idle for %.0f s with the rebalance or recovery not over", idle)
            engines = group.by_partition
            applied = {tp: engines[tp.partition].applied_offset(tp.topic) for tp in quiet if tp.partition in engines}
            sought = await faust_repairs.read_stalled_again(app.consumer, quiet, applied)
            metrics.PARTITIONS_UNSTALLED.inc(len(sought))


@app.page("/metrics")
async def metrics_page(web, request):
    """Prometheus metrics of this worker."""
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
