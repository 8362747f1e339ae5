"""The Faust worker: thin shells that feed Kafka records through the pure core.

* ``ingest`` folds each record of ``events`` and ``profiles`` (keyed by user id,
  co-partitioned) into the user's state in a RocksDB-backed table, watches the
  user (samples for the models, churn labels, alerts) and, as the partition's
  watermark passes their scheduled checks, re-scores users who stay silent.
* ``publish_portraits`` publishes the users that changed, coalesced, to the
  compacted ``portraits`` topic, scored with the latest model snapshot.
* ``train`` (one partition, so one trainer in the group) learns the population
  models from the samples and publishes snapshots to the compacted ``models``
  topic, which every worker follows.

Anything that breaks the contract goes to ``events.dlq`` with its original
bytes and the reason in the headers.
"""

from __future__ import annotations

import logging
import time

import faust
import orjson
from prometheus_client import generate_latest

from online_models.admission import admit_event, admit_profile, fold_event
from online_models.clock import EventClock
from online_models.events import InvalidEvent
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitState, render, update_profile
from online_models.schedule import CheckSchedule
from online_models.tags import TagRules
from online_models.watch import watch_user
from streams import metrics, topics
from streams.model_feed import ModelFeed
from streams.settings import get_settings

log = logging.getLogger(__name__)
# Table writes are buffered while the conductor drains them; Faust warns on every full buffer.
logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)

settings = get_settings()
config = settings.portrait_config()
watch_config = settings.watch_config()
rules = TagRules.load(settings.tag_rules) if settings.tag_rules else TagRules.default()
population_config = PopulationConfig(layers=settings.layer_config())

app = faust.App(
    settings.app_id,
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
)

source_topic = app.topic(settings.topic(topics.EVENTS), settings.topic(topics.PROFILES), settings.topic(topics.TICKS))
ticks_topic = app.topic(settings.topic(topics.TICKS))
dead_letter_topic = app.topic(settings.topic(topics.DEAD_LETTERS))
portraits_topic = app.topic(settings.topic(topics.PORTRAITS))
alerts_topic = app.topic(settings.topic(topics.CHURN_ALERTS))
training_topic = app.topic(settings.topic(topics.MODEL_TRAINING))
models_topic = app.topic(settings.topic(topics.MODELS))

#: user id -> PortraitState bytes
portrait_table = app.Table("portrait-state", partitions=settings.partitions)
#: partition number -> stream time (ms), so the watermark survives restarts
stream_time_table = app.Table("stream-time", partitions=settings.partitions)
for _table in (portrait_table, stream_time_table):
    # values are our own compact bytes: store them as they are
    _table.key_serializer = _table.value_serializer = "raw"

clock = EventClock(lateness_ms=int(settings.lateness_seconds * 1000))
STREAM_TIME_SAVE_STEP_MS = 60_000
_stream_time_saved: dict[int, int] = {}
#: partition -> users by next check time (rebuilt from the table when a partition arrives)
schedules: dict[int, CheckSchedule] = {}
#: partition -> wall-clock time of its last record (live mode: idle partitions follow the wall clock)
_last_record_wall: dict[int, float] = {}
#: user id -> partition, for users whose portrait changed since the last publication
_dirty: dict[str, int] = {}
model_feed = ModelFeed(settings.topic(topics.MODELS), settings.bootstrap_servers)
_scoring: tuple[bytes | None, PopulationModels | None] = (None, None)
_webhook = None
if settings.alert_webhook:
    from online_models.webhook import WebhookSender

    _webhook = WebhookSender(settings.alert_webhook)


def current_models() -> PopulationModels | None:
    """The latest model snapshot (reloaded when the feed brings a new one)."""
    global _scoring
    raw = model_feed.latest.get(b"snapshot")
    if raw is not None and raw is not _scoring[0]:
        try:
            _scoring = (raw, PopulationModels.from_bytes(raw, rules))
        except Exception as error:  # a bad snapshot must not stop scoring with the last good one
            log.warning("ignoring a model snapshot that does not load: %s", error)
            _scoring = (raw, _scoring[1])
    return _scoring[1]


def _take_partition(partition: int) -> None:
    """On the first record of a newly assigned partition: its stream time and check schedule."""
    if partition in schedules:
        return
    raw = stream_time_table.get(str(partition).encode())
    if raw is not None:
        clock.observe(partition, int(raw))
        _stream_time_saved[partition] = int(raw)
    schedule = schedules[partition] = CheckSchedule()
    db = portrait_table.data._db_for_partition(partition)  # this partition's RocksDB only
    for key, value in db.items():
        if key.startswith(b"__faust"):  # Faust's own bookkeeping (changelog offset)
            continue
        next_check = orjson.loads(value).get("next_check")
        if next_check is not None:
            schedule.set(key.decode(), next_check)


async def _dead_letter(message, error: InvalidEvent) -> None:
    metrics.EVENTS_REJECTED.labels(error.reason).inc()
    await dead_letter_topic.send(
        key=message.key,
        value=message.value,
        headers=[
            ("reason", error.reason.encode()),
            ("detail", error.detail.encode()),
            ("source.topic", message.topic.encode()),
            ("source.partition", str(message.partition).encode()),
            ("source.offset", str(message.offset).encode()),
        ],
    )


def _load(user_id: str) -> PortraitState:
    raw = portrait_table.get(user_id.encode())
    return PortraitState(user_id) if raw is None else PortraitState.from_bytes(raw)


async def _watch(state: PortraitState, partition: int, as_of: int) -> None:
    """Score the user as of ``as_of``; send samples and any alert; reschedule."""
    outcome = watch_user(state, as_of=as_of, watermark=clock.watermark(partition), models=current_models(), config=watch_config)
    for sample in outcome.samples:
        await training_topic.send(key=state.user_id.encode(), value=orjson.dumps(sample))
    if outcome.alert is not None:
        body = outcome.alert.to_json_bytes()
        await alerts_topic.send(key=state.user_id.encode(), value=body)
        metrics.ALERTS_FIRED.inc()
        if _webhook is not None:
            _webhook.submit(body)
    schedules[partition].set(state.user_id, outcome.next_check)


async def _sweep(partition: int) -> None:
    """Re-score the users whose check time the partition's watermark has passed."""
    schedule = schedules[partition]
    watermark = clock.watermark(partition)
    for user_id in schedule.pop_due(watermark, limit=settings.sweep_batch):
        raw = portrait_table.get(user_id.encode())
        if raw is None:
            continue
        state = PortraitState.from_bytes(raw)
        if state.next_check is None or state.next_check > watermark:
            schedule.set(user_id, state.next_check)  # the entry was stale
            continue
        # valued at the check time itself, so replays alert at the same event time
        await _watch(state, partition, as_of=state.next_check)
        portrait_table[user_id.encode()] = state.to_bytes()
        _dirty[user_id] = partition
        metrics.USERS_SWEPT.inc()


@app.agent(source_topic)
async def ingest(stream):
    """Fold each admitted record into its user's portrait state and watch the user."""
    profiles_topic = settings.topic(topics.PROFILES)
    ticks_name = settings.topic(topics.TICKS)
    async for event in stream.events():
        message = event.message
        partition = message.partition
        _take_partition(partition)
        if message.topic == ticks_name:
            await _on_tick(partition, message.value)
            continue
        _last_record_wall[partition] = time.time()
        try:
            if message.topic == profiles_topic:
                profile = admit_profile(message.key, message.value)
                state = _load(profile.user_id)
                if update_profile(state, profile):
                    portrait_table[profile.user_id.encode()] = state.to_bytes()
                    _dirty[profile.user_id] = partition
                metrics.PROFILES_PROCESSED.inc()
                continue
            before = clock.stream_time.get(partition)
            admitted = admit_event(
                message.key,
                message.value,
                now_ms=int(time.time() * 1000),
                max_future_ms=int(settings.max_future_seconds * 1000),
            )
            state = _load(admitted.user_id)
            applied = fold_event(state, admitted, clock=clock, partition=partition, config=config)
        except InvalidEvent as error:
            await _dead_letter(message, error)
            continue
        if applied:
            as_of = clock.as_of(partition)
            # a purchase may lower the risk (re-arming alerts); a new period means a new sample
            if admitted.type == "pay" or as_of // watch_config.sample_period_ms != state.sample_period:
                await _watch(state, partition, as_of)
            portrait_table[admitted.user_id.encode()] = state.to_bytes()
            _dirty[admitted.user_id] = partition
            metrics.EVENTS_PROCESSED.inc()
        else:
            metrics.EVENTS_DUPLICATE.inc()
        if clock.stream_time[partition] != before:
            await _time_moved(partition)


async def _time_moved(partition: int) -> None:
    """Save the partition's stream time now and then, and sweep the users now due."""
    after = clock.stream_time[partition]
    if after - _stream_time_saved.get(partition, 0) >= STREAM_TIME_SAVE_STEP_MS:
        # saved every event-time minute: after a restart the watermark may lag that much
        stream_time_table[str(partition).encode()] = str(after).encode()
        _stream_time_saved[partition] = after
    await _sweep(partition)


async def _on_tick(partition: int, value: bytes) -> None:
    """Live mode: a partition without records for a while follows the wall clock."""
    idle_for = time.time() - _last_record_wall.get(partition, 0.0)
    if not settings.live_idle_seconds or idle_for < settings.live_idle_seconds:
        return
    before = clock.stream_time.get(partition)
    clock.observe(partition, int(orjson.loads(value)["wall_ms"]))
    if clock.stream_time.get(partition) != before:
        await _time_moved(partition)


@app.timer(interval=max(0.5, settings.live_idle_seconds / 2) if settings.live_idle_seconds else 60.0)
async def send_ticks() -> None:
    """Live mode: a tick to each partition this worker holds, so idle time still moves."""
    if not settings.live_idle_seconds:
        return
    body = orjson.dumps({"wall_ms": int(time.time() * 1000)})
    for tp in app.assignor.assigned_actives():
        if tp.topic == settings.topic(topics.EVENTS):
            await ticks_topic.send(value=body, partition=tp.partition)


#: the publisher never takes more than a fifth of the worker's time: it skips ticks to keep that
_PUBLISH_SHARE = 0.2
_publish_not_before = 0.0


@app.timer(interval=settings.publish_interval)
async def publish_portraits() -> None:
    """Publish every portrait that changed since the last tick, once, scored with the latest models."""
    global _dirty, _publish_not_before
    started = time.monotonic()
    now_ms = time.time() * 1000
    for partition, high in list(clock.stream_time.items()):
        metrics.WATERMARK_DELAY.labels(str(partition)).set(max(0.0, (now_ms - high) / 1000))
    if not _dirty or started < _publish_not_before:
        return
    batch, _dirty = _dirty, {}
    models = current_models()
    for user_id, partition in batch.items():
        raw = portrait_table.get(user_id.encode())
        if raw is None:  # partition moved to another worker meanwhile
            continue
        portrait = render(PortraitState.from_bytes(raw), as_of=clock.as_of(partition), config=config)
        if models is not None:
            portrait = models.enrich(portrait)
        await portraits_topic.send(key=user_id.encode(), value=orjson.dumps(portrait))
        metrics.PORTRAITS_PUBLISHED.inc()
    spent = time.monotonic() - started
    _publish_not_before = started + spent / _PUBLISH_SHARE


def _resume_models() -> PopulationModels:
    model_feed.caught_up.wait(timeout=30)
    raw = model_feed.latest.get(b"snapshot")
    if raw is not None:
        try:
            return PopulationModels.from_bytes(raw, rules)
        except Exception as error:
            log.warning("starting the models afresh; the last snapshot does not load: %s", error)
    return PopulationModels(population_config, rules)


#: the trainer's live models, on the one worker that owns the training partition
_training: dict[str, PopulationModels | int | None] = {"models": None, "published": -1}


@app.agent(training_topic)
async def train(stream):
    """Learn the population models from every worker's samples."""
    async for batch in stream.take(1000, within=1.0):
        models = _training["models"]
        if models is None:
            models = _training["models"] = await app.loop.run_in_executor(None, _resume_models)
            _training["published"] = models.version
        for raw in batch:
            try:
                models.learn(orjson.loads(raw))
            except (KeyError, TypeError, ValueError) as error:
                log.warning("skipping a malformed training sample: %s", error)
        metrics.TRAINING_SAMPLES.inc(len(batch))


@app.timer(interval=settings.snapshot_interval)
async def publish_models() -> None:
    """Publish a snapshot of the trainer's models when they learned something new."""
    models = _training["models"]
    if models is None or models.version == _training["published"]:
        return
    _training["published"] = models.version
    await models_topic.send(key=b"snapshot", value=models.to_bytes())
    await models_topic.send(key=b"summary", value=orjson.dumps(models.summary()))


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:
    for tp in revoked:
        if tp.topic == training_topic.get_topic_name():
            _training["models"] = None  # another worker resumes from the last snapshot
        elif tp.topic == source_topic.topics[0]:
            schedules.pop(tp.partition, None)
            clock.stream_time.pop(tp.partition, None)


@app.task
async def _start_model_feed() -> None:
    if not model_feed.is_alive():
        model_feed.start()


@app.page("/metrics")
async def metrics_page(web, request):
    """Prometheus metrics of this worker."""
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
