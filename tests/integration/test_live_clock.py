"""Live mode: when a partition goes quiet, its event time follows the wall clock."""

from __future__ import annotations

import re
import time

import httpx

from streams.producer import make_producer, send_events
from tests.integration.conftest import free_port, wait_until


def watermark_delays(metrics_url: str) -> dict[str, float]:
    text = httpx.get(metrics_url, timeout=5).text
    return {m[0]: float(m[1]) for m in re.findall(r'portraits_watermark_delay_seconds\{partition="(\d+)"\} (\S+)', text)}


def test_idle_partitions_follow_the_wall_clock(stack):
    port = str(free_port())  # not a fixed one: other test processes run workers too
    stack.start("worker", "worker", PORTRAITS_LIVE_IDLE_SECONDS="2", PORTRAITS_WORKER_WEB_PORT=port)
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    events = [
        {"event_id": f"e{i}", "user_id": f"u{i % 8}", "type": "view", "ts": two_hours_ago + i * 1000, "category": "books"}
        for i in range(40)
    ]
    producer = make_producer(stack.settings())
    send_events(producer, stack.settings(), events)
    producer.flush()
    producer.close()
    metrics = f"http://127.0.0.1:{port}/metrics"
    # first the stream time is the events' (two hours behind), then it catches up with the wall clock
    wait_until(lambda: any(d > 3600 for d in watermark_delays(metrics).values()), timeout=120, what="event-time watermark")
    wait_until(
        lambda: (d := watermark_delays(metrics)) and all(v < 60 for v in d.values()),
        timeout=120,
        what="idle partitions to follow the wall clock",
    )
