"""Product workers under measurement: started as ``portraits worker`` processes, watched through /metrics."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchkit.procs import Managed, free_port, histograms, managed, python_module, scrape, wait_http
from benchkit.stats import cpu_us_per_record, window_rate

#: what a worker has handled: folded, ignored as redelivered, or dead-lettered
HANDLED = ("portraits_events_processed_total", "portraits_events_duplicate_total", "portraits_events_rejected_total")


@dataclass
class Deployment:
    """One deployment under test: broker, topic prefix, consumer group and a data directory per worker."""

    kafka: str
    prefix: str
    app_id: str
    workdir: Path
    partitions: int = 8
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, data_dir: Path, web_port: int) -> dict[str, str]:
        return {
            "PORTRAITS_KAFKA": self.kafka,
            "PORTRAITS_TOPIC_PREFIX": self.prefix,
            "PORTRAITS_APP_ID": self.app_id,
            "PORTRAITS_DATA_DIR": str(data_dir),
            "PORTRAITS_PARTITIONS": str(self.partitions),
            "PORTRAITS_WORKER_WEB_PORT": str(web_port),
            **self.extra_env,
        }


@dataclass
class RunningWorker:
    process: Managed
    port: int
    data_dir: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def histograms(self, wanted: dict[str, tuple[str, dict[str, str]]]) -> dict[str, dict[float, float]]:
        """The worker's histograms ``wanted`` (:func:`benchkit.procs.histograms`), from one read of its page."""
        return histograms(self.metrics_url, wanted)

    def handled(self) -> float | None:
        """Records this worker has handled so far (None when its page does not answer)."""
        values = [scrape(self.metrics_url, name) for name in HANDLED]
        return None if values[0] is None else sum(v or 0.0 for v in values)


def start_workers(stack: contextlib.ExitStack, deployment: Deployment, names: list[str]) -> list[RunningWorker]:
    """Start several workers of the group at once, then wait for each one's web page."""
    workers = [start_worker(stack, deployment, name, wait=False) for name in names]
    for worker in workers:
        wait_http(worker.metrics_url, worker.process, timeout_s=120)
    return workers


def start_worker(stack: contextlib.ExitStack, deployment: Deployment, name: str, *, loglevel: str = "warn",
                 wait: bool = True) -> RunningWorker:
    """Start one worker (stopped when ``stack`` closes) and wait for its web page unless told not to."""
    port = free_port()
    data_dir = deployment.workdir / name
    process = stack.enter_context(
        managed(name, python_module("streams.cli", "worker", "--loglevel", loglevel), deployment.env(data_dir, port),
                 deployment.workdir / f"{name}.log")
    )
    worker = RunningWorker(process, port, data_dir)
    if wait:
        wait_http(worker.metrics_url, process, timeout_s=120)
    return worker


@dataclass
class Progress:
    """Handled records over time, summed over the workers."""

    samples: list[tuple[float, float]]
    started: float
    first_progress_s: float | None
    capped: bool
    all_active: bool = True
    #: CPU seconds of all the workers at each sample
    cpu: list[float] = field(default_factory=list)

    @property
    def handled(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def rate(self, warmup_s: float) -> float:
        """Records per second from ``warmup_s`` after the first progress to the end."""
        return window_rate(self.samples, skip_s=warmup_s)

    def to_json(self, warmup_s: float) -> dict:
        return {
            "handled": self.handled,
            "seconds_to_first_record": self.first_progress_s,
            "measured_seconds": round(self.samples[-1][0] - self.samples[0][0], 1) if self.samples else 0,
            "rate": round(self.rate(warmup_s), 1),
            "cpu_us_per_record": cpu_us_per_record(self.samples, self.cpu, warmup_s) if self.cpu else None,
            "capped": self.capped,
            "every_worker_handled_records": self.all_active,
        }


def follow_progress(workers: list[RunningWorker], *, target: float, cap_s: float, startup_s: float = 180.0,
                    every_s: float = 1.0, quiet: bool = False) -> Progress:
    """Sample the workers' counters until ``target`` records are handled, or for ``cap_s``.

    The measurement starts once every worker has handled a record (the group has settled its
    partitions), or ``startup_s`` after the start if some never does; samples before it are dropped.
    """
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    cpu: list[float] = []
    first: float | None = None
    all_active = True
    while True:
        for worker in workers:
            if not worker.process.alive():
                raise RuntimeError(f"{worker.process.name} exited; see {worker.process.log}")
        counts = [w.handled() for w in workers]
        now = time.monotonic() - started
        total = sum(c or 0.0 for c in counts)
        if first is None and total > 0 and (all(counts) or now > startup_s):
            first, all_active = now, all(counts)
            samples, cpu = samples[-1:], cpu[-1:]  # the sample just before: the window starts there
        samples.append((now, total))
        cpu.append(sum(w.process.cpu_seconds() for w in workers))
        if not quiet and len(samples) % 10 == 0:
            print(f"  t={now:6.1f}s handled={total:,.0f}", flush=True)
        if total >= target:
            return Progress(samples, started, first, capped=False, all_active=all_active, cpu=cpu)
        if first is not None and now - first >= cap_s:
            return Progress(samples, started, first, capped=True, all_active=all_active, cpu=cpu)
        if first is None and total == 0 and now > startup_s:
            raise TimeoutError(f"no record handled within {startup_s:.0f} s")
        time.sleep(every_s)
