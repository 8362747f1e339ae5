"""The Faust worker: thin shells that feed Kafka records through the pure portrait core.

Records of ``events`` and ``profiles`` (keyed by user id, co-partitioned) are
admitted, folded into the user's state in a RocksDB-backed table, and the users
that changed are published, coalesced, to the compacted ``portraits`` topic.
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
from online_models.portrait import PortraitState, render, update_profile
from streams import metrics, topics
from streams.settings import get_settings

log = logging.getLogger(__name__)
# Table writes are buffered while the conductor drains them; Faust warns on every full buffer.
logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)

settings = get_settings()
config = settings.portrait_config()

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
)

source_topic = app.topic(settings.topic(topics.EVENTS), settings.topic(topics.PROFILES))
dead_letter_topic = app.topic(settings.topic(topics.DEAD_LETTERS))
portraits_topic = app.topic(settings.topic(topics.PORTRAITS))

#: user id -> PortraitState bytes
portrait_table = app.Table("portrait-state", partitions=settings.partitions)
#: partition number -> stream time (ms), so the watermark survives restarts
stream_time_table = app.Table("stream-time", partitions=settings.partitions)
for _table in (portrait_table, stream_time_table):
    # values are our own compact bytes: store them as they are
    _table.key_serializer = _table.value_serializer = "raw"

clock = EventClock(lateness_ms=int(settings.lateness_seconds * 1000))
_clock_loaded: set[int] = set()
#: user id -> partition, for users whose portrait changed since the last publication
_dirty: dict[str, int] = {}


def _restore_clock(partition: int) -> None:
    if partition not in _clock_loaded:
        raw = stream_time_table.get(str(partition).encode())
        if raw is not None:
            clock.observe(partition, int(raw))
        _clock_loaded.add(partition)


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


@app.agent(source_topic)
async def ingest(stream):
    """Fold each admitted record into its user's portrait state."""
    profiles_topic = settings.topic(topics.PROFILES)
    async for event in stream.events():
        message = event.message
        partition = message.partition
        _restore_clock(partition)
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
            portrait_table[admitted.user_id.encode()] = state.to_bytes()
            _dirty[admitted.user_id] = partition
            metrics.EVENTS_PROCESSED.inc()
        else:
            metrics.EVENTS_DUPLICATE.inc()
        after = clock.stream_time[partition]
        if after != before:
            stream_time_table[str(partition).encode()] = str(after).encode()


@app.timer(interval=settings.publish_interval)
async def publish_portraits() -> None:
    """Publish every portrait that changed since the last tick, once."""
    global _dirty
    if not _dirty:
        return
    batch, _dirty = _dirty, {}
    now_ms = time.time() * 1000
    for partition, high in list(clock.stream_time.items()):
        metrics.WATERMARK_DELAY.labels(str(partition)).set(max(0.0, (now_ms - high) / 1000))
    for user_id, partition in batch.items():
        raw = portrait_table.get(user_id.encode())
        if raw is None:  # partition moved to another worker meanwhile
            continue
        portrait = render(PortraitState.from_bytes(raw), as_of=clock.as_of(partition), config=config)
        await portraits_topic.send(key=user_id.encode(), value=orjson.dumps(portrait))
        metrics.PORTRAITS_PUBLISHED.inc()


@app.on_partitions_revoked.connect
async def _forget_revoked(app, revoked, **kwargs) -> None:
    for tp in revoked:
        _clock_loaded.discard(tp.partition)
        clock.stream_time.pop(tp.partition, None)


@app.page("/metrics")
async def metrics_page(web, request):
    """Prometheus metrics of this worker."""
    return web.bytes(generate_latest(), content_type="text/plain; version=0.0.4")
