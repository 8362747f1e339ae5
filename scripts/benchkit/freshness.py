"""Freshness: events at a steady rate, stamped with their send time; how long until their effect shows.

Two views of "visible": every event's first portrait on the ``portraits`` topic whose
``last_seen`` covers it (exact), and a sample of events polled through the API's
``GET /v1/users/{id}/portrait`` every ``api_poll_s`` seconds (end to end, within the poll step:
``POLL_S`` by default; the rounds before the twentieth polled every 0.1 s).
The topic's delays are summed up twice: over every event, and over those sent after the
first ``FIRST_SECONDS``. The worker's own histograms over the run say where the delay goes
before a portrait is published (``WORKER_HISTOGRAMS``), the API's how long a published portrait
takes into its store (``API_HISTOGRAM``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import defaultdict, deque
from datetime import datetime

import orjson

from benchkit import kafka_io
from benchkit.apiserver import RunningApi, start_api
from benchkit.common import Run
from benchkit.events import make_event, user_id
from benchkit.stats import histogram_window, summary
from benchkit.worker import Deployment, RunningWorker, start_worker

#: seconds between two lookups of a followed event's user through the API (the API figure's resolution)
POLL_S = 0.025
API_SAMPLE_EVERY = 200  # one event in this many is also followed through the API
TICK_S = 0.01


def _ms(iso: str | None) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000) if iso else -1


class Tracker:
    """Sent events waiting for a portrait that covers them, and the delays measured so far."""

    def __init__(self) -> None:
        self.pending: dict[str, deque[int]] = defaultdict(deque)
        self.topic_delays: list[float] = []
        #: the same delays of the events sent after the first FIRST_SECONDS of sending
        self.settled_delays: list[float] = []
        self.first_sent_ms: int | None = None
        self.api_delays: list[float] = []
        self.api_timeouts = 0
        self.sent = 0

    def sent_event(self, user: str, ts_ms: int) -> None:
        if self.first_sent_ms is None:
            self.first_sent_ms = ts_ms
        self.pending[user].append(ts_ms)
        self.sent += 1

    def portrait_seen(self, user: str, last_seen_ms: int, now_ms: float) -> None:
        waiting = self.pending.get(user)
        while waiting and waiting[0] <= last_seen_ms:
            sent_ms = waiting.popleft()
            delay = (now_ms - sent_ms) / 1000
            self.topic_delays.append(delay)
            if sent_ms >= self.first_sent_ms + FIRST_SECONDS * 1000:
                self.settled_delays.append(delay)

    @property
    def unseen(self) -> int:
        return sum(len(q) for q in self.pending.values())


#: seconds at the start of sending whose events a second figure leaves out: a fresh worker meets every user for the
#: first time then (a new state, a first sample each), which makes those seconds the run's slowest
FIRST_SECONDS = 5

#: the worker's histograms a freshness run reports over its window (bucket bounds, seconds): where a portrait's delay
#: goes before it is published (a record's age when applied, a flush holding the records back, the longest wait of a
#: partition's changes for their publication, a full collection)
WORKER_HISTOGRAMS = {
    "record_age": ("portraits_record_age_seconds", {"engines": "portraits"}),
    "flush": ("portraits_flush_seconds", {"engines": "portraits"}),
    "publication_wait": ("portraits_publication_wait_seconds", {"engines": "portraits"}),
    "full_gc_pause": ("portraits_gc_pause_seconds", {"generation": "2"}),
}
#: the API's histogram of the last step (its series of the run's portraits topic): a portrait's way from the worker's
#: send into the API's store
API_HISTOGRAM = "portraits_api_record_delay_seconds"


def _windows(before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]) -> dict[str, dict]:
    """What each histogram read twice observed in between (:func:`benchkit.stats.histogram_window`)."""
    return {name: histogram_window(before[name], counts) for name, counts in after.items()}


async def _send(kafka: str, topic: str, tracker: Tracker, *, rate: float, seconds: float, users: int, api_queue: asyncio.Queue) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks=1, linger_ms=5)
    await producer.start()
    rng = random.Random(7)
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) - tracker.sent
            for _ in range(due):
                ts = int(time.time() * 1000)
                user = user_id(rng.randrange(users))
                event = make_event(rng, f"f{ts}-{tracker.sent}", user, "view", ts)
                await producer.send(topic, key=user.encode(), value=orjson.dumps(event))
                tracker.sent_event(user, ts)
                if tracker.sent % API_SAMPLE_EVERY == 0:
                    api_queue.put_nowait((user, ts))
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()


async def _follow_portraits(kafka: str, topic: str, tracker: Tracker, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(kafka_io.end_offsets(kafka, topic))]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now_ms = time.time() * 1000
            for records in batches.values():
                for record in records:
                    portrait = orjson.loads(record.value)
                    tracker.portrait_seen(portrait["user_id"], _ms(portrait.get("last_seen")), now_ms)
    finally:
        await consumer.stop()


async def _poll_api(api: RunningApi, tracker: Tracker, queue: asyncio.Queue, stop: asyncio.Event, timeout_s: float,
                    poll_s: float) -> None:
    import aiohttp

    async with aiohttp.ClientSession(headers=api.headers) as session:

        async def follow(user: str, ts: int) -> None:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                async with session.get(f"{api.url}/v1/users/{user}/portrait") as response:
                    if response.status == 200 and _ms((await response.json()).get("last_seen")) >= ts:
                        tracker.api_delays.append(time.time() - ts / 1000)
                        return
                await asyncio.sleep(poll_s)
            tracker.api_timeouts += 1

        tasks = []
        while not (stop.is_set() and queue.empty()):
            try:
                user, ts = await asyncio.wait_for(queue.get(), 0.2)
            except asyncio.TimeoutError:
                continue
            tasks.append(asyncio.create_task(follow(user, ts)))
        await asyncio.gather(*tasks)


async def _measure(run: Run, api: RunningApi, worker: RunningWorker, *, rate: float, seconds: float, users: int,
                   drain_s: float, api_poll_s: float) -> dict:
    tracker = Tracker()
    stop = asyncio.Event()
    queue: asyncio.Queue = asyncio.Queue()
    follower = asyncio.create_task(_follow_portraits(run.kafka, run.topic("portraits"), tracker, stop))
    poller = asyncio.create_task(_poll_api(api, tracker, queue, stop, timeout_s=seconds + drain_s, poll_s=api_poll_s))
    await asyncio.sleep(1.0)  # the follower is at the topic's end
    handled_before = worker.handled() or 0.0
    histograms_before = worker.histograms(WORKER_HISTOGRAMS)
    api_wanted = {"portrait_into_store": (API_HISTOGRAM, {"topic": run.topic("portraits")})}
    api_before = api.histograms(api_wanted)
    started = time.monotonic()
    await _send(run.kafka, run.topic("events"), tracker, rate=rate, seconds=seconds, users=users, api_queue=queue)
    send_seconds = time.monotonic() - started
    handled = (worker.handled() or 0.0) - handled_before
    backlog = tracker.sent - handled
    drain_end = time.monotonic() + drain_s
    while tracker.unseen and time.monotonic() < drain_end:
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(follower, poller)
    where = _windows(histograms_before, worker.histograms(WORKER_HISTOGRAMS))
    api_where = _windows(api_before, api.histograms(api_wanted))
    return {
        "target_rate": rate,
        "sent": tracker.sent,
        "send_rate": round(tracker.sent / send_seconds),
        "worker_rate_while_sending": round(handled / send_seconds),
        "backlog_at_end_of_sending": int(backlog),
        "keeps_up": backlog <= rate * 5,
        "topic_freshness_ms": summary(tracker.topic_delays, 1000),
        f"topic_freshness_after_first_{FIRST_SECONDS}s_ms": summary(tracker.settled_delays, 1000),
        "not_visible_after_drain": tracker.unseen,
        "api_freshness_ms": summary(tracker.api_delays, 1000),
        "api_poll_s": api_poll_s,
        "api_sampled_timeouts": tracker.api_timeouts,
        "seconds": seconds,
        "users": users,
        "worker_histograms_s": where,
        "api_histograms_s": api_where,
    }


def one_rate(run: Run, label: str, *, rate: float, seconds: float, users: int, drain_s: float, api_poll_s: float) -> dict:
    """A fresh deployment (topics, worker, API) measured at one rate."""
    prefix = f"{run.prefix}{label}-"
    kafka_io.ensure_topics(run.kafka, prefix, run.partitions)
    deployment = Deployment(run.kafka, prefix, run.app_id(label), run.workdir, run.partitions)
    with contextlib.ExitStack() as stack:
        worker = start_worker(stack, deployment, f"{label}-worker")
        api = start_api(stack, kafka=run.kafka, prefix=prefix, data_dir=run.workdir / f"{label}-api",
                        log=run.workdir / f"{label}-api.log")
        time.sleep(5.0)  # the worker has its partitions
        figures = asyncio.run(_measure(Run(run.kafka, run.name, run.workdir, prefix, run.partitions), api, worker,
                                       rate=rate, seconds=seconds, users=users, drain_s=drain_s, api_poll_s=api_poll_s))
    run.record(f"freshness_at_{rate:.0f}", figures)
    return figures


def run_freshness(run: Run, *, rate: float, seconds: float, users: int, drain_s: float, fallback: float,
                  api_poll_s: float = POLL_S) -> None:
    """Measure at ``rate``; if the worker falls behind, again at ``fallback`` x the rate it managed."""
    first = one_rate(run, "r1", rate=rate, seconds=seconds, users=users, drain_s=drain_s, api_poll_s=api_poll_s)
    if first["keeps_up"]:
        return
    sustainable = first["worker_rate_while_sending"]
    run.record("max_sustainable_rate", sustainable)
    lower = max(10.0, round(sustainable * fallback, -1))
    one_rate(run, "r2", rate=lower, seconds=seconds, users=users, drain_s=drain_s, api_poll_s=api_poll_s)
