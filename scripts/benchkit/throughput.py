"""Throughput: a bare consumer's floor against one product worker catching up on the same topic."""

from __future__ import annotations

import contextlib
import dataclasses
import time

from benchkit import kafka_io, profile
from benchkit.ceiling import run_probe
from benchkit.common import Run, ensure_events
from benchkit.procs import scrape
from benchkit.worker import Deployment, RunningWorker, follow_progress, start_worker
from online_models.topic_names import ITEM_FACTS, MODEL_TRAINING

#: counters of the worker whose ratio to the events folded says how much Kafka work an event causes
WORK_COUNTERS = {
    "checks of silent users (each a state write)": "portraits_users_swept_total",
    "portraits published": "portraits_published_total",
    "training samples learned": "portraits_training_samples_total",
}


def work_per_event(worker: RunningWorker) -> dict[str, float] | None:
    """Each of :data:`WORK_COUNTERS` per event folded so far (None when the page does not answer)."""
    folded = scrape(worker.metrics_url, "portraits_events_processed_total")
    if not folded:
        return None
    return {label: round((scrape(worker.metrics_url, name) or 0.0) / folded, 2) for label, name in WORK_COUNTERS.items()}


#: the topics a worker reads besides the events, whose records an event causes (read by the same worker)
CAUSED_TOPICS = (ITEM_FACTS, MODEL_TRAINING)


def wait_caught_up(run: Run, group: str, topics: list[str], *, timeout_s: float, every_s: float = 1.0) -> float | None:
    """Seconds until ``group``'s committed offsets reach the end of every one of ``topics`` (the ends read
    at each look, so what is still being written counts); None if not within ``timeout_s``."""
    def caught_up(topic: str) -> bool:
        committed = kafka_io.group_offsets(run.kafka, group, topic)
        return all(committed.get(partition, 0) >= end for partition, end in kafka_io.end_offsets(run.kafka, topic).items())

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if all(caught_up(topic) for topic in topics):
            return time.monotonic() - started
        time.sleep(every_s)
    return None


def measure_worker(run: Run, *, name: str, total: int, cap_s: float, warmup_s: float, profile_s: float,
                   extra_env: dict[str, str], whole: bool = False) -> dict:
    """One worker of a fresh group (its own settings on top of ``extra_env``) catching up on the run's topic.

    ``whole``: no cap; after the last event, also until the group has read what the events caused
    (:data:`CAUSED_TOPICS`: item facts, training samples) to its end, and ``whole_job`` holds the
    events per second over all of it.
    """
    deployment = Deployment(run.kafka, run.prefix, run.app_id(name), run.workdir, run.partitions, extra_env)
    with contextlib.ExitStack() as stack:
        worker = start_worker(stack, deployment, name)
        progress = follow_progress([worker], target=total, cap_s=float("inf") if whole else cap_s)
        figures = progress.to_json(warmup_s)
        if whole:
            events_s = progress.samples[-1][0] - progress.first_progress_s
            tail_s = wait_caught_up(run, deployment.app_id, [run.topic(t) for t in CAUSED_TOPICS], timeout_s=1800.0)
            figures["whole_job"] = None if tail_s is None else {
                "events": total,
                "seconds_to_last_event": round(events_s, 1),
                "seconds_to_all_caused_records": round(events_s + tail_s, 1),
                "rate": round(total / (events_s + tail_s), 1),
            }
        figures.update(events_in_topic=total, cap_seconds=None if whole else cap_s, warmup_seconds=warmup_s,
                       settings=extra_env)
        figures["rss_bytes"] = worker.process.rss_bytes()
        figures["per_event_folded"] = work_per_event(worker)
        if profile_s > 0 and progress.capped:
            out = profile.record(worker.process.pid, profile_s, run.workdir / f"{name}.pyspy.txt")
            summary = profile.summarise(out)
            profile.print_summary(summary)
            figures["profile"] = {"seconds": profile_s, **summary}
        committed = kafka_io.group_offsets(run.kafka, deployment.app_id, run.topic("events"))
        figures["committed_offsets"] = sum(committed.values())
    return figures


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> (NAME, {KEY: VALUE}).

    >>> parse_variant("aio:PORTRAITS_WORKER_LOOP=aio,PORTRAITS_PUBLISH_INTERVAL=1")
    ('aio', {'PORTRAITS_WORKER_LOOP': 'aio', 'PORTRAITS_PUBLISH_INTERVAL': '1'})
    """
    name, _, assignments = text.partition(":")
    if not name or not assignments:
        raise ValueError(f"a variant is NAME:KEY=VALUE[,KEY=VALUE...], not {text!r}")
    env = dict(item.split("=", 1) for item in assignments.split(","))
    return name, env


def run_throughput(run: Run, *, events: int, users: int, days: float, cap_s: float, warmup_s: float,
                   profile_s: float, variants: list[tuple[str, dict[str, str]]] = (), traffic: str = "uniform",
                   whole: bool = False, read_probe: int = 0) -> None:
    """Produce (if needed), measure the floor, then one worker for at most ``cap_s`` after its first record.

    Each of ``variants`` (name, extra ``PORTRAITS_*`` settings) is then measured the same way, with
    a fresh group, on topics of its own (the run's prefix plus its name) holding the same seeded
    events, so settings compare side by side in one run.
    ``traffic`` picks the events produced (see :func:`benchkit.common.ensure_events`); ``whole``
    measures the whole job instead of a capped window (see :func:`measure_worker`). ``read_probe`` > 0: then the
    bare Faust agent that only reads (:func:`benchkit.ceiling.run_probe`) reads that many records of the same
    topic, and each worker's rate is recorded as a share of its rate (``share_of_faust_read``), all in one run.
    """
    run.record("traffic", traffic)
    total = ensure_events(run, events=events, users=users, days=days, traffic=traffic)
    count, seconds = kafka_io.floor(run.kafka, run.topic("events"), limit=total)
    floor_rate = count / seconds
    run.record("floor", {"events": count, "seconds": round(seconds, 2), "rate": round(floor_rate)})

    figures = measure_worker(run, name="worker-1", total=total, cap_s=cap_s, warmup_s=warmup_s,
                             profile_s=profile_s, extra_env={}, whole=whole)
    if "profile" in figures:
        run.figures["profile"] = figures.pop("profile")
    run.record("worker", figures)
    ratio = floor_rate / figures["rate"] if figures["rate"] else None
    run.record("floor_to_worker_ratio", round(ratio, 1) if ratio else None)
    for name, env in variants:
        # topics of its own, with the same seeded events: on the run's topics its trainer would also
        # learn every training sample the workers before it sent, a cost the first worker never had
        own = dataclasses.replace(run, prefix=f"{run.prefix}{name}-", figures={})
        produced = ensure_events(own, events=events, users=users, days=days, traffic=traffic)
        other = measure_worker(own, name=f"worker-{name}", total=produced, cap_s=cap_s, warmup_s=warmup_s,
                               profile_s=0.0, extra_env=env, whole=whole)
        other["prefix"] = own.prefix
        other["worker_to_variant_ratio"] = round(figures["rate"] / other["rate"], 2) if other["rate"] else None
        run.record(f"variant {name}", other)
    if read_probe > 0:
        probe = run_probe(run, "read", records=read_probe, timeout_s=300.0)
        run.record("probe_read", probe or {"error": f"did not read {read_probe} records within 300 s"})
        if probe is not None:
            shares = {"worker": figures["rate"] / probe["rate"]}
            shares.update((name, run.figures[f"variant {name}"]["rate"] / probe["rate"]) for name, _ in variants)
            run.record("share_of_faust_read", {name: round(share, 3) for name, share in shares.items()})
