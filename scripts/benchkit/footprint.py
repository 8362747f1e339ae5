"""Footprint: bytes per user on disk and in memory, and the time to rebuild a worker from its changelog."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from benchkit import kafka_io
from benchkit.apiserver import start_api
from benchkit.common import DAY_MS, Run
from benchkit.events import synthetic_events
from benchkit.procs import dir_bytes
from benchkit.stats import summary
from benchkit.worker import Deployment, follow_progress, start_worker
from streams.topics import STATE_TABLE, create_topics, state_changelog

READY = re.compile(r"Worker ready")
REMAINING = re.compile(r"total remaining=(\d+)")


def state_values(worker_dir: Path) -> dict:
    """Sizes of the stored portrait states (every partition's RocksDB), read after the worker stopped."""
    from rocksdict import AccessType, Options, Rdict

    sizes: list[float] = []
    for db_path in sorted(worker_dir.rglob(f"*{STATE_TABLE}*")):
        if not (db_path / "CURRENT").exists():
            continue
        db = Rdict(str(db_path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            sizes += [len(v) for k, v in db.items() if not k.startswith(b"__faust")]
        finally:
            db.close()
    return {"users": len(sizes), "mean_bytes": round(sum(sizes) / len(sizes)) if sizes else None,
            "bytes": summary(sizes)}


def wait_ready(log: Path, started: float, timeout_s: float) -> float | None:
    """Seconds from ``started`` until the worker's log says it is ready (recovery done); None after ``timeout_s``."""
    while time.monotonic() - started < timeout_s:
        if log.exists() and READY.search(log.read_text(errors="replace")):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def last_remaining(log: Path) -> int | None:
    """The last count of changelog records the worker said it still had to restore."""
    found = REMAINING.findall(log.read_text(errors="replace")) if log.exists() else []
    return int(found[-1]) if found else None


def wait_compacted(kafka: str, topic: str, *, timeout_s: float, every_s: float = 20.0) -> tuple[int, float]:
    """Count ``topic``'s records until the log cleaner stops taking any away: (records kept, seconds waited).

    The broker's cleaner looks for work every 15 s, so two counts in a row, ``every_s``
    apart, that did not fall mean it has compacted every closed segment.
    """
    started = time.monotonic()
    kept = kafka_io.count_records(kafka, topic)
    unchanged = 0
    while unchanged < 2 and time.monotonic() - started < timeout_s:
        time.sleep(every_s)
        now = kafka_io.count_records(kafka, topic)
        unchanged = unchanged + 1 if now >= kept else 0
        kept = min(kept, now)
    return kept, time.monotonic() - started


def run_footprint(run: Run, *, events: int, users: int, days: float, timeout_s: float, rebuild_timeout_s: float,
                  segment_s: float, compact_timeout_s: float) -> None:
    """Fill one worker and the API with ``users`` users, measure them, then rebuild a fresh worker from the changelog.

    The state changelog is made beforehand with segments of ``segment_s`` seconds
    (the product's are 10 minutes), so that the broker compacts it during a fill of
    minutes as it does over hours in production; the rebuild reads what compaction kept.
    """
    deployment = Deployment(run.kafka, run.prefix, run.app_id("footprint"), run.workdir, run.partitions)
    changelog = state_changelog(deployment.app_id)
    create_topics(kafka_io.settings_for(run.kafka, run.prefix, run.partitions, app_id=deployment.app_id),
                  changelog_segment_ms=int(segment_s * 1000))
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        worker = start_worker(stack, deployment, "worker-a", loglevel="info")
        cold_start = wait_ready(worker.process.log, started, 120) or 0.0
        api = start_api(stack, kafka=run.kafka, prefix=run.prefix, data_dir=run.workdir / "api-data", log=run.workdir / "api.log")
        time.sleep(5.0)
        rss = {"worker": worker.process.rss_bytes(), "api": api.process.rss_bytes()}
        span = int(days * DAY_MS)
        seen: set[bytes] = set()
        records = ((seen.add(k), (k, v))[1] for k, v in synthetic_events(
            events, users=users, start_ms=int(time.time() * 1000) - span - 60_000, span_ms=span, seed=5))
        count, _ = kafka_io.produce(run.kafka, run.topic("events"), records)
        progress = follow_progress([worker], target=count, cap_s=timeout_s)
        if progress.capped:
            raise TimeoutError(f"the worker handled {progress.handled:.0f} of {count} events in {timeout_s:.0f} s")
        deadline = time.monotonic() + 120
        while (api.stored_portraits() or 0) < len(seen) and time.monotonic() < deadline:
            time.sleep(1.0)
        time.sleep(5.0)  # the last publications and flushes
        stored = api.stored_portraits() or 0
        rss_after = {"worker": worker.process.rss_bytes(), "api": api.process.rss_bytes()}
        worker.process.stop()
        api.process.stop()
    n = len(seen)
    worker_disk = dir_bytes(worker.data_dir)
    api_disk = dir_bytes(run.workdir / "api-data")
    run.record("filled", {"events": count, "users": n, "api_portraits": stored, "event_time_days": days,
                          "worker_events_per_s": round(progress.rate(0), 1)})
    run.record("state_values", state_values(worker.data_dir))
    run.record("disk_bytes_per_user", {"worker": round(worker_disk / n), "api": round(api_disk / n),
                                       "worker_total": worker_disk, "api_total": api_disk})
    run.record("rss_bytes_per_user", {name: round((rss_after[name] - rss[name]) / n) for name in rss})
    run.record("rss_bytes", {"before": rss, "after": rss_after})

    changelog_records = sum(kafka_io.end_offsets(run.kafka, changelog).values())
    kept, waited = wait_compacted(run.kafka, changelog, timeout_s=compact_timeout_s)
    run.record("changelog", {"records_written": changelog_records, "records_kept": kept,
                             "records_kept_per_user": round(kept / n, 2), "segment_seconds": segment_s,
                             "compaction_wait_seconds": round(waited, 1)})
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        fresh = start_worker(stack, deployment, "worker-b", loglevel="info")
        rebuild = wait_ready(fresh.process.log, started, rebuild_timeout_s)
        rebuilt_disk = dir_bytes(fresh.data_dir)
    figures = {"changelog_records": kept, "users": n, "cold_start_seconds": round(cold_start, 1),
               "rebuilt_disk_bytes": rebuilt_disk}
    if rebuild is None:
        figures.update(finished=False, gave_up_after_seconds=rebuild_timeout_s,
                       records_still_to_restore=last_remaining(fresh.process.log))
    else:
        net = max(0.0, rebuild - cold_start)
        figures.update(finished=True, seconds_to_ready=round(rebuild, 1), restore_seconds=round(net, 1),
                       seconds_per_million_users=round(net / n * 1e6))
    run.record("rebuild", figures)
