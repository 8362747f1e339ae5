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

Erasure: a record of ``erasures`` (co-partitioned, keyed like the user's
events) makes the agent send the tombstones and markers of
:func:`online_models.erasure.erasure_records`, wait until Kafka has them, then
drop the user from its schedule and publication queue and delete their state.

Crash safety: each partition's :class:`~streams.progress.PartitionProgress`
(input offsets applied, stream time, change sequence) is written into the state
table after the changes it covers, so a restarted or rebalanced worker skips
what the restored state holds and re-applies the rest exactly once; alerts are
delivered before the state that remembers them; portraits changed after the last
completed publication are republished when a partition is taken over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import faust
import faust.streams
import orjson
import tenacity
from prometheus_client import generate_latest

from online_models.admission import admit_erasure, admit_event, admit_profile, fold_event
from online_models.clock import EventClock
from online_models.erasure import erasure_records, forget_local
from online_models.events import InvalidEvent
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitState, render, update_profile
from online_models.retention import due_at, is_expired
from online_models.schedule import CheckSchedule
from online_models.tags import TagRules
from online_models.watch import watch_user
from streams import holes, metrics, topics
from streams.model_feed import ModelFeed
from streams.progress import PROGRESS_KEY, PartitionProgress, is_internal_key
from streams.quiet_worker import QuietWorker
from streams.settings import get_settings

log = logging.getLogger(__name__)
# Table writes are buffered while the conductor drains them; Faust warns on every full buffer.
logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
# The publisher's timer waits for the broker's acknowledgements by design, so it overlaps its
# interval whenever a batch is large; a warning on each overlap says nothing.
logging.getLogger("mode.timers").setLevel(logging.ERROR)

settings = get_settings()
config = settings.portrait_config()
watch_config = settings.watch_config()
rules = TagRules.load(settings.tag_rules) if settings.tag_rules else TagRules.default()
population_config = PopulationConfig(layers=settings.layer_config())


class PortraitsApp(faust.App):
    """Faust's app, writing every partition's progress at a graceful stop, once the streams are drained.

    Before it stops, Faust drains the agents (waits until every record taken is
    processed and acknowledged) and commits. Progress written right there covers
    exactly what is committed, so the worker that takes the partitions next (or this
    one, restarted) finds nothing to read again; a crash leaves up to
    ``progress_every`` records for that. Not in a rebalance's drain: a table write
    there left the next owner's changelog recovery stuck (tests/integration/test_scale_out.py).
    """

    async def _consumer_wait_empty(self, consumer, logger) -> None:
        await super()._consumer_wait_empty(consumer, logger)
        if self.should_stop:  # stopping, not revoking partitions in a rebalance
            _save_progress_after_drain()


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
    broker_session_timeout=settings.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    table_standby_replicas=settings.standby_replicas,
)

#: full names of the topics the agent tells its records apart by
EVENTS_NAME, PROFILES_NAME, TICKS_NAME, ERASURES_NAME = (
    settings.topic(name) for name in (topics.EVENTS, topics.PROFILES, topics.TICKS, topics.ERASURES)
)
#: the co-partitioned inputs whose offsets a partition's progress records
SOURCE_NAMES = (EVENTS_NAME, PROFILES_NAME, ERASURES_NAME)
source_topic = app.topic(EVENTS_NAME, PROFILES_NAME, TICKS_NAME, ERASURES_NAME)
ticks_topic = app.topic(TICKS_NAME)
dead_letter_topic = app.topic(settings.topic(topics.DEAD_LETTERS))
portraits_topic = app.topic(settings.topic(topics.PORTRAITS))
alerts_topic = app.topic(settings.topic(topics.CHURN_ALERTS))
training_topic = app.topic(settings.topic(topics.MODEL_TRAINING))
models_topic = app.topic(settings.topic(topics.MODELS))
#: where an erasure's records go, by short topic name
erasure_topics = {
    name: app.topic(settings.topic(name)) for name in (topics.PORTRAITS, topics.PROFILES, topics.CHURN_ALERTS, topics.MODEL_TRAINING)
}
#: with a secret, user ids are replaced by their pseudonyms at admission
pseudonym_key = settings.pseudonym_secret()

#: user id -> PortraitState bytes, and each partition's progress under PROGRESS_KEY
# bytes in and out (our own compact JSON), also on the changelog topic that recovery reads
# the changelog is compacted (Faust's default for tables), but Kafka compacts closed segments only:
# rolled every 10 minutes, it keeps about one record per user plus the last minutes of changes, so a
# worker rebuilding its partitions reads that rather than every change since the topic began
portrait_table = app.Table(
    topics.STATE_TABLE,
    partitions=settings.partitions,
    key_type=bytes,
    value_type=bytes,
    extra_topic_configs=topics.CHANGELOG_CONFIGS,
)

clock = EventClock(lateness_ms=int(settings.lateness_seconds * 1000))
retention_ms = int(settings.retention_days * 86_400_000)
#: a progress record at least every this much stream time, so a replay after a crash spans
#: far less event time than the dedupe horizon
PROGRESS_TIME_STEP_MS = 3_600_000
#: partition -> what its state holds (restored from the table when a partition arrives)
progress: dict[int, PartitionProgress] = {}
#: partition -> (records applied, stream time) when its progress was last written
_progress_written: dict[int, tuple[int, int]] = {}
#: partition -> sequence number up to which every change is on the portraits topic
_published_seq: dict[int, int] = {}
#: partition -> users by their next check or expiry (rebuilt from the table when a partition arrives)
schedules: dict[int, CheckSchedule] = {}
#: partition -> wall-clock time of its last record (live mode: idle partitions follow the wall clock)
_last_record_wall: dict[int, float] = {}
#: user id -> partition, for users whose portrait changed since the last publication
_dirty: dict[str, int] = {}
#: users being erased: the publisher leaves them alone
_erasing: set[str] = set()
#: held from reading a user's state to handing its record to the producer, by everyone who
#: writes to the portraits topic: a send may wait for room in a full batch while a smaller
#: record (a tombstone) of the same partition overtakes it, which would bring a forgotten
#: user back (found by tests/integration/test_resilience.py)
_portraits_order = asyncio.Lock()
model_feed = ModelFeed(settings.topic(topics.MODELS), settings.bootstrap_servers)
_scoring: tuple[bytes | None, PopulationModels | None] = (None, None)
_unfitted_models = PopulationModels(population_config, rules)
_webhook = None
if settings.alert_webhook:
    from online_models.webhook import WebhookSender

    _webhook = WebhookSender(settings.alert_webhook)


def current_models() -> PopulationModels:
    """The latest model snapshot (reloaded when the feed brings a new one).

    Before the first snapshot, unfitted models: the rule-based parts of a portrait (value
    layer, lifecycle, tags) need no fit, so a portrait published early has them too; its
    segment and churn risk stay empty until a snapshot fits them.
    """
    global _scoring
    raw = model_feed.latest.get(b"snapshot")
    if raw is not None and raw is not _scoring[0]:
        try:
            _scoring = (raw, PopulationModels.from_bytes(raw, rules))
        except Exception as error:  # a bad snapshot must not stop scoring with the last good one
            log.warning("ignoring a model snapshot that does not load: %s", error)
            _scoring = (raw, _scoring[1])
    return _scoring[1] or _unfitted_models


def _take_partition(partition: int) -> PartitionProgress:
    """On the first record of a newly assigned partition: its progress, clock, schedule, unpublished users."""
    if partition in progress:
        return progress[partition]
    db = portrait_table.data._db_for_partition(partition)  # this partition's RocksDB only
    raw = db.get(PROGRESS_KEY)
    restored = PartitionProgress.from_bytes(raw) if raw is not None else PartitionProgress()
    if restored.stream_time is not None:
        clock.observe(partition, restored.stream_time)
    schedule = schedules[partition] = CheckSchedule()
    last_seq = restored.seq
    for key, value in db.items():
        if is_internal_key(key):
            continue
        state = PortraitState.from_bytes(value)
        schedule.set(state.user_id, due_at(state, retention_ms))
        if state.seq > restored.published_seq:  # changed, maybe never published: publish again
            _dirty[state.user_id] = partition
        last_seq = max(last_seq, state.seq)
    restored.seq = last_seq  # changes made after the progress record keep their numbers unique
    _published_seq[partition] = restored.published_seq
    for topic, offset in restored.offsets.items():
        metrics.APPLIED_OFFSET.labels(topic, str(partition)).set(offset)
    _progress_written[partition] = (0, clock.stream_time.get(partition, 0))
    progress[partition] = restored
    return restored


def _store(state: PortraitState, partition: int) -> None:
    """Write a changed state (numbered in its partition) and mark it for publication."""
    state.seq = progress[partition].next_seq()
    portrait_table[state.user_id.encode()] = state.to_bytes()
    _dirty[state.user_id] = partition


def _save_progress(partition: int, *, force: bool = False) -> None:
    """Write the partition's progress now and then (after the changes it covers)."""
    current = progress[partition]
    applied, written_at = _progress_written[partition]
    applied += 1
    stream_time = clock.stream_time.get(partition, 0)
    if force or applied >= settings.progress_every or stream_time - written_at >= PROGRESS_TIME_STEP_MS:
        current.stream_time = clock.stream_time.get(partition)
        current.published_seq = _published_seq.get(partition, current.published_seq)
        portrait_table[PROGRESS_KEY] = current.to_bytes()
        _progress_written[partition] = (0, stream_time)
    else:
        _progress_written[partition] = (applied, written_at)


#: partition -> the last event the ingest agent took from it (a drained partition's progress is
#: written in its name: Faust's table writes go to the partition of the event in hand)
_last_event: dict[int, faust.types.EventT] = {}


def _save_progress_after_drain() -> None:
    """Write every held partition's progress, with the agent idle and Faust about to commit."""
    for partition, event in list(_last_event.items()):
        if partition not in progress:
            continue
        # Faust keeps the event in hand in this context variable (``faust.current_event()`` reads it)
        token = faust.streams._current_event.set(weakref.ref(event))
        try:
            _save_progress(partition, force=True)
        finally:
            faust.streams._current_event.reset(token)


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
        # delivered before the state that remembers it is written: a crash in between sends
        # it again under the same alert id rather than never
        await (await alerts_topic.send(key=state.user_id.encode(), value=body))
        metrics.ALERTS_FIRED.inc()
        if _webhook is not None:
            _webhook.submit(body)
    schedules[partition].set(state.user_id, due_at(state, retention_ms))


async def _expire(user_id: str) -> None:
    """Forget a user idle past the retention: state, schedule and published portrait."""
    async with _portraits_order:
        del portrait_table[user_id.encode()]
        _dirty.pop(user_id, None)
        await portraits_topic.send(key=user_id.encode(), value=None)
    metrics.USERS_EXPIRED.inc()


async def _erase(message, partition: int) -> None:
    """Erase a user on request: tombstones and markers first, delivered, then the state.

    A crash before the state is deleted repeats the whole erasure on restart
    (the request's offset is not covered yet); erasing an absent user sends the
    same records, so a repeated request is harmless.
    """
    request, user_id = admit_erasure(message.key, message.value, pseudonym_key=pseudonym_key)
    _erasing.add(user_id)
    try:
        forget_local(user_id, schedule=schedules.get(partition), pending=_dirty)
        async with _portraits_order:  # after any portrait of the user already on its way
            deliveries = [
                await erasure_topics[record.topic].send(key=record.key, value=record.value, headers=list(record.headers))
                for record in erasure_records(request, user_id)
            ]
        for delivery in deliveries:
            await delivery
        if portrait_table.get(user_id.encode()) is not None:
            del portrait_table[user_id.encode()]  # the changelog gets the tombstone
    finally:
        _erasing.discard(user_id)
    metrics.USERS_ERASED.inc()


async def _sweep(partition: int) -> None:
    """Re-score (or expire) the users whose check time the partition's watermark has passed."""
    schedule = schedules[partition]
    watermark = clock.watermark(partition)
    for user_id in schedule.pop_due(watermark, limit=settings.sweep_batch):
        raw = portrait_table.get(user_id.encode())
        if raw is None:
            continue
        state = PortraitState.from_bytes(raw)
        if is_expired(state, watermark=watermark, retention_ms=retention_ms):
            await _expire(user_id)
            continue
        if state.next_check is None or state.next_check > watermark:
            schedule.set(user_id, due_at(state, retention_ms))  # the entry was stale
            continue
        # valued at the check time itself, so replays alert at the same event time
        await _watch(state, partition, as_of=state.next_check)
        _store(state, partition)
        metrics.USERS_SWEPT.inc()


@app.agent(source_topic)
async def ingest(stream):
    """Fold each admitted record into its user's portrait state and watch the user."""
    # score from the first record with the models on the topic, as a replay of the same events would
    await _wait_for_models()
    async for event in stream.events():
        _last_record_at[0] = time.monotonic()
        message = event.message
        partition = message.partition
        current = _take_partition(partition)
        _last_event[partition] = event
        if current.covers(message.topic, message.offset):
            metrics.RECORDS_SKIPPED.inc()  # already in the state restored after a crash or a move
            continue
        if message.topic == TICKS_NAME:
            await _on_tick(partition, message.value)
            continue
        if message.topic in CONTIGUOUS_NAMES or _first_profiles_since_rebalance(message.topic, partition):
            applied = current.offsets.get(message.topic)
            # with no progress yet, everything the broker holds of the partition is still to apply
            first = applied + 1 if applied is not None else await skipped_records.log_start(message.topic, partition)
            if message.offset > first:
                await _fill_hole(message, first, partition)
        await _handle(message, partition)


#: how often a worker waiting for the models topic says so
MODEL_WAIT_WARNING_SECONDS = 30.0


async def _wait_for_models() -> None:
    """Wait, without a deadline, until the models topic has been read to its end.

    Portraits folded or checked before would score with unfitted models, where a replay
    of the same events scores with the snapshot: an alert could fire a check later.
    The feed starts here, not in an app task: Faust starts those only after the tables
    are recovered, which after a crash can take longer than the agents wait.
    """
    model_feed.ensure_started()
    waited = 0.0
    while not await app.loop.run_in_executor(None, model_feed.caught_up.wait, 1.0):
        waited += 1.0
        _last_record_at[0] = time.monotonic()  # waiting is not a stall
        if waited % MODEL_WAIT_WARNING_SECONDS == 0:
            log.warning("waiting %.0f s for the models topic to be read before applying any record", waited)


async def _handle(message, partition: int) -> None:
    """Apply one record of events, profiles or erasures and move the partition's progress past it."""
    _last_record_wall[partition] = time.time()
    before = clock.stream_time.get(partition)
    await _apply_or_dead_letter(message, partition)
    progress[partition].offsets[message.topic] = message.offset
    metrics.APPLIED_OFFSET.labels(message.topic, str(partition)).set(message.offset)
    if clock.stream_time.get(partition) != before:
        await _sweep(partition)
    # an erasure is recorded as applied at once, so a replay never brings back what it erased
    _save_progress(partition, force=message.topic == ERASURES_NAME)


#: inputs whose offsets have no holes (not compacted): a record past an unapplied offset means
#: Faust skipped one (profiles are compacted: checked only on the first record after a rebalance)
CONTIGUOUS_NAMES = (EVENTS_NAME, ERASURES_NAME)
#: partitions whose next profiles record is checked for a hole like the contiguous inputs: Faust skips
#: records around rebalances, and elsewhere a gap in a compacted topic is compaction's
_profiles_unchecked: set[int] = set()


def _first_profiles_since_rebalance(topic: str, partition: int) -> bool:
    if topic != PROFILES_NAME or partition not in _profiles_unchecked:
        return False
    _profiles_unchecked.discard(partition)
    return True


@app.on_partitions_assigned.connect
async def _check_profiles_after_rebalance(app, assigned, **kwargs) -> None:
    _profiles_unchecked.update(tp.partition for tp in assigned if tp.topic == PROFILES_NAME)


#: reads the records Faust skipped (see :mod:`streams.holes`)
skipped_records = holes.SkippedRecordReader(settings.bootstrap_servers, client_id=f"{settings.app_id}-holes")


async def _fill_hole(message, first: int, partition: int) -> None:
    """Apply the records from ``first`` up to before ``message`` that Faust skipped, read from the broker.

    Records that were applied after all are recognised by event id, as after a crash.
    """
    last = message.offset - 1
    log.warning(
        "%s[%s]: record %s arrived with %s the next to apply: reading %s to %s directly",
        message.topic, partition, message.offset, first, first, last,
    )
    metrics.HOLES_REREAD.inc()
    async for missed in skipped_records.read(message.topic, partition, first, last):
        await _handle(missed, partition)
    await holes.settle(app.consumer, message.tp, first, last)


@app.on_before_shutdown.connect
async def _close_skipped_records(app, **kwargs) -> None:
    await skipped_records.stop()


#: tries at applying one record that fails for an unexpected reason, and the longest pause between two
APPLY_ATTEMPTS, APPLY_MAX_PAUSE_SECONDS = 5, 8.0


async def _apply_or_dead_letter(message, partition: int) -> None:
    """Apply a record, trying again when that fails unexpectedly; in the end dead-letter it.

    An exception would crash the agent, and Faust goes on with the next record: the one in
    hand would be lost (a table write fails while the worker's view of its changelog is
    stale, say). Applying again is safe: events are recognised by id, profiles and
    erasures are idempotent. The last failure sends the record to the dead-letter topic
    with reason ``apply_failed``, from where it can be sent again.
    """
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(APPLY_ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=1.0, max=APPLY_MAX_PAUSE_SECONDS),
        before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    try:
        await retrying(_apply, message, partition)
    except Exception as error:
        log.exception(
            "%s[%s]@%s: applying failed %s times; dead-lettered", message.topic, partition, message.offset, APPLY_ATTEMPTS,
        )
        await _dead_letter(message, InvalidEvent("apply_failed", f"{type(error).__name__}: {error}"))


async def _apply(message, partition: int) -> None:
    """Admit one record of events, profiles or erasures and apply it to its user's state (or dead-letter it)."""
    try:
        if message.topic == ERASURES_NAME:
            await _erase(message, partition)
            return
        if message.topic == PROFILES_NAME:
            if message.value is None:  # a tombstone (an erasure writes them): nothing to apply
                return
            profile = admit_profile(message.key, message.value, pseudonym_key=pseudonym_key)
            state = _load(profile.user_id)
            if update_profile(state, profile):
                if state.seq == 0:  # a new user: schedule the expiry
                    schedules[partition].set(state.user_id, due_at(state, retention_ms))
                _store(state, partition)
            metrics.PROFILES_PROCESSED.inc()
            return
        admitted = admit_event(
            message.key,
            message.value,
            now_ms=int(time.time() * 1000),
            max_future_ms=int(settings.max_future_seconds * 1000),
            pseudonym_key=pseudonym_key,
        )
        state = _load(admitted.user_id)
        applied = fold_event(state, admitted, clock=clock, partition=partition, config=config)
    except InvalidEvent as error:
        await _dead_letter(message, error)
        return
    if applied:
        as_of = clock.as_of(partition)
        # a purchase may lower the risk (re-arming alerts); a new period means a new sample
        if admitted.type == "pay" or as_of // watch_config.sample_period_ms != state.sample_period:
            await _watch(state, partition, as_of)
        _store(state, partition)
        metrics.EVENTS_PROCESSED.inc()
    else:
        metrics.EVENTS_DUPLICATE.inc()


async def _on_tick(partition: int, value: bytes) -> None:
    """Live mode: a partition without records for a while follows the wall clock."""
    idle_for = time.time() - _last_record_wall.get(partition, 0.0)
    if not settings.live_idle_seconds or idle_for < settings.live_idle_seconds:
        return
    before = clock.stream_time.get(partition)
    clock.observe(partition, int(orjson.loads(value)["wall_ms"]))
    if clock.stream_time.get(partition) != before:
        await _sweep(partition)


@app.timer(interval=max(0.5, settings.live_idle_seconds / 2) if settings.live_idle_seconds else 60.0)
async def send_ticks() -> None:
    """Live mode: a tick to each partition this worker holds, so idle time still moves."""
    if not settings.live_idle_seconds:
        return
    body = orjson.dumps({"wall_ms": int(time.time() * 1000)})
    for tp in app.assignor.assigned_actives():
        if tp.topic == EVENTS_NAME:
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
    # every change numbered up to here is in this batch or was published before
    covered = {partition: current.seq for partition, current in progress.items()}
    batch, _dirty = _dirty, {}
    rendering = await _publish(batch)
    for partition, seq in covered.items():
        if partition in progress:  # still ours: the next progress record carries it
            _published_seq[partition] = seq
    # the share counts the rendering only: waiting for the broker (say, while it restarts) is not work
    _publish_not_before = time.monotonic() + rendering * (1 / _PUBLISH_SHARE - 1)


async def _publish(batch: dict[str, int]) -> float:
    """Render, score and send the portraits of ``batch`` (user id -> partition); wait until Kafka has them.

    Returns the seconds spent rendering and scoring.
    """
    models = current_models()
    rendering = 0.0
    for user_id, partition in batch.items():
        async with _portraits_order:
            started = time.monotonic()
            raw = portrait_table.get(user_id.encode())
            if raw is None or user_id in _erasing:  # moved to another worker meanwhile, or being erased
                continue
            portrait = models.enrich(render(PortraitState.from_bytes(raw), as_of=clock.as_of(partition), config=config))
            body = orjson.dumps(portrait)
            rendering += time.monotonic() - started
            await portraits_topic.send(key=user_id.encode(), value=body)
        metrics.PORTRAITS_PUBLISHED.inc()
    await app.producer.flush()
    return rendering


def _resume_models() -> PopulationModels:
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
    """Learn the population models from every worker's samples.

    One record at a time: with ``stream.take`` (Faust 0.15.3) a backlog on this topic after
    a restart could leave the take buffer waiting forever, and since one fetcher feeds every
    agent, all partitions stopped with it (found by tests/integration/test_chaos.py).
    """
    async for raw in stream:
        if not settings.train_models:
            continue  # frozen: score with the snapshot on the models topic as it is
        models = _training["models"]
        if models is None:
            await _wait_for_models()
            models = _training["models"] = await app.loop.run_in_executor(None, _resume_models)
            _training["published"] = models.version
        try:
            models.learn(orjson.loads(raw))
        except (KeyError, TypeError, ValueError) as error:
            log.warning("skipping a malformed training sample: %s", error)
        metrics.TRAINING_SAMPLES.inc()


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
    leaving = {tp.partition for tp in revoked if tp.topic == EVENTS_NAME}
    # publish what changed here before the partitions move (or come straight back after a
    # broker restart, with no new record to make us look at them again)
    unpublished = {user_id: p for user_id, p in _dirty.items() if p in leaving}
    for user_id in unpublished:
        del _dirty[user_id]
    await _publish(unpublished)
    for tp in revoked:
        if tp.topic == training_topic.get_topic_name():
            _training["models"] = None  # another worker resumes from the last snapshot
    for partition in leaving:
        _last_event.pop(partition, None)
        schedules.pop(partition, None)
        clock.stream_time.pop(partition, None)
        progress.pop(partition, None)
        _published_seq.pop(partition, None)


#: monotonic time the ingest agent last took a record
_last_record_at = [time.monotonic()]
#: an idle agent with unread records on an assigned partition for this long is stalled
STALL_SECONDS = 20.0


@app.timer(interval=2.0)
async def mind_assigned_partitions() -> None:
    """Take over newly assigned partitions at once, and read a stalled one again from its progress.

    A partition that comes back after a rebalance (a broker restart, a worker joining)
    may get no new record for a long time; its users changed since the last completed
    publication must still be published, and its silent users swept: it is taken over
    without waiting for a record.

    Faust 0.15.3 tracks a read offset per partition and silently drops fetched records
    below it; after restarts and rebalances mid-replay it could leave a partition with
    unread records and an idle agent for good (seen in tests/integration/test_chaos.py).
    When the agent has been idle for :data:`STALL_SECONDS` (three times that while a
    rebalance or recovery is not over), seeking to the first record the partition's
    progress does not cover makes Faust deliver them again; what is delivered twice is
    skipped or recognised as usual.
    """
    busy = app.rebalancing or getattr(app, "in_recovery", False)
    idle = time.monotonic() - _last_record_at[0]
    stalled = idle >= (3 * STALL_SECONDS if busy else STALL_SECONDS)
    if busy and not stalled:
        return
    source = [tp for tp in app.assignor.assigned_actives() if tp.topic in SOURCE_NAMES]
    for tp in source:
        _take_partition(tp.partition)  # at once, or the first time after a stall
    if stalled:
        await _read_stalled_again(source, idle=idle, busy=busy)


async def _read_stalled_again(source: list, *, idle: float, busy: bool) -> None:
    if busy:
        log.warning("idle for %.0f s with the rebalance or recovery not over", idle)
    consumer = app.consumer
    # end offsets asked of the broker: a partition that is not fetched has no highwater of its own
    ends = await consumer.highwaters(*source) if source else {}
    for tp in source:
        held = progress.get(tp.partition)
        if held is None:  # revoked by a rebalance while the broker answered
            continue
        applied = held.offsets.get(tp.topic)
        resume_at = 0 if applied is None else applied + 1
        end = ends.get(tp)
        if end is not None and end > resume_at:
            log.warning("partition %s stalled at %s of %s: reading again from there", tp, resume_at, end)
            metrics.PARTITIONS_UNSTALLED.inc()
            await consumer.seek(tp, resume_at)
            consumer.resume_partitions({tp})
    _last_record_at[0] = time.monotonic()  # give the seeks time to deliver


@app.page("/metrics")
async def metrics_page(web, request):
    """Prometheus metrics of this worker."""
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
