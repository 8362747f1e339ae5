"""Prometheus metrics of the API: request latency by route template, and the store's state."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: bucket bounds (seconds) of a record's way from its producer into the API's store
RECORD_DELAY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 30.0, 300.0)


class StateCollector(Collector):
    """Gauges read at scrape time from the app's store and follower."""

    def __init__(self, read_state: Callable[[], dict[str, float | None]]):
        self._read_state = read_state

    def collect(self):
        state = self._read_state()
        for name, help_text in (
            ("portraits_api_follower_lag", "Records of the followed topics not yet in the local store"),
            ("portraits_api_follower_caught_up", "1 once the local store has caught up with the topics"),
            ("portraits_api_portraits_stored", "Portraits in the local store"),
            ("portraits_api_item_portraits_stored", "Item and category portraits in the local store"),
            ("portraits_api_alerts_stored", "Churn alerts in the local store"),
            ("portraits_api_alert_subscribers", "Live alert stream connections"),
        ):
            value = state.get(name)
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], math.nan if value is None else float(value))
            yield family
        for name, help_text in (
            ("portraits_api_follower_resyncs", "Compacted topics read again from their start because the store "
             "resumed later than the topic keeps its tombstones (delete.retention.ms)"),
            ("portraits_api_follower_resync_removed", "Keys those re-reads removed from the store: the topic no longer held them"),
        ):
            value = state.get(name)
            if value is not None:
                family = CounterMetricFamily(name, help_text)
                family.add_metric([], float(value))
                yield family


class ApiMetrics:
    """The API's metrics in a registry of their own (several apps may live in one process)."""

    def __init__(self, read_state: Callable[[], dict[str, float | None]]):
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "portraits_api_request_duration_seconds",
            "Time to the response headers, by route template, method and status",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "portraits_api_ingested_events",
            "Events received over HTTP, by outcome (accepted or the rejection reason)",
            ["outcome"],
            registry=self.registry,
        )
        self.record_delay = Histogram(
            "portraits_api_record_delay_seconds",
            "From a followed record's Kafka timestamp (when its producer sent it) to its write in the API's store, by topic",
            ["topic"],
            buckets=RECORD_DELAY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(StateCollector(read_state))

    def records_stored(self, topic: str, records: list) -> None:
        """Observe each record's delay from its Kafka timestamp (ms) to now: it is in the store."""
        now_ms = time.time() * 1000
        observe = self.record_delay.labels(topic).observe
        for record in records:
            if record.timestamp is not None and record.timestamp > 0:
                observe(max(0.0, now_ms - record.timestamp) / 1000)


class MetricsMiddleware:
    """Times every HTTP request to its response headers and labels it with the matched route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            nonlocal observed
            if observed:
                return
            observed = True
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "<unmatched>"
            self.metrics.latency.labels(template, scope["method"], str(status)).observe(time.perf_counter() - start)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                observe(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            observe(500)
            raise
