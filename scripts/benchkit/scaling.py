"""Scaling: one, two and three workers of one group on the same topic, and a paper estimate for a target load."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from benchkit.common import Run, ensure_events
from benchkit.stats import PaperEstimate
from benchkit.worker import Deployment, follow_progress, start_workers


def run_scaling(run: Run, *, events: int, users: int, days: float, counts: list[int], cap_s: float, warmup_s: float,
                target_users: int, target_rate: float, headroom: float, footprint: Path | None) -> None:
    """Each worker count in a fresh consumer group over the same events; then the estimate."""
    total = ensure_events(run, events=events, users=users, days=days)
    rates: dict[int, float] = {}
    for n in counts:
        deployment = Deployment(run.kafka, run.prefix, run.app_id(f"scale{n}"), run.workdir, run.partitions)
        with contextlib.ExitStack() as stack:
            workers = start_workers(stack, deployment, [f"scale{n}-worker-{i + 1}" for i in range(n)])
            progress = follow_progress(workers, target=total, cap_s=cap_s, startup_s=120)
            per_worker = [w.handled() for w in workers]
        figures = progress.to_json(warmup_s)
        figures["per_worker_handled"] = per_worker
        rates[n] = figures["rate"]
        run.record(f"workers_{n}", figures)
    base = rates[counts[0]] / counts[0]
    run.record("speedup", {n: round(rates[n] / rates[counts[0]], 2) if rates[counts[0]] else None for n in counts})

    bytes_per_user = restore = None
    if footprint is not None:
        measured = json.loads(footprint.read_text())
        bytes_per_user = measured["disk_bytes_per_user"]["worker"]
        restore = measured.get("rebuild", {}).get("seconds_per_million_users")  # absent when the rebuild did not finish
    estimate = PaperEstimate(target_users, target_rate, base, headroom, bytes_per_user, restore)
    lines = estimate.lines()
    print(f"paper estimate for {target_users:,} users and {target_rate:,.0f} events/s, "
          f"{base:.0f} events/s per worker (measured with {counts[0]} worker(s) on this machine):")
    for line in lines:
        print(f"  {line}")
    run.figures["estimate"] = {"workers": estimate.workers, "partitions": estimate.partitions, "arithmetic": lines}
