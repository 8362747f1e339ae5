"""What every benchmark shares: its run directory, topic prefix, the event topic and the report."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchkit import kafka_io
from benchkit.events import shop_events, synthetic_events

DAY_MS = 86_400_000


@dataclass
class Run:
    """One benchmark run: a fresh directory and topic prefix, and the figures it reports."""

    kafka: str
    name: str
    workdir: Path
    prefix: str
    partitions: int = 8
    figures: dict = field(default_factory=dict)

    @classmethod
    def create(cls, kafka: str, name: str, root: Path, prefix: str | None, partitions: int) -> "Run":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        workdir = root / f"{name}-{stamp}"
        workdir.mkdir(parents=True, exist_ok=True)
        run = cls(kafka, name, workdir, prefix or f"bench-{stamp}-", partitions)
        print(f"{name}: run directory {workdir}, topic prefix {run.prefix!r}, broker {kafka}", flush=True)
        return run

    def topic(self, short: str) -> str:
        return f"{self.prefix}{short}"

    def app_id(self, label: str) -> str:
        """A consumer group never used before."""
        return f"{self.prefix}{label}-{time.monotonic_ns() % 10**9}"

    def record(self, key: str, value) -> None:
        """Keep a figure for the JSON report and print it."""
        self.figures[key] = value
        print(f"{key}: {json.dumps(value)}", flush=True)

    def write(self, path: Path | None) -> None:
        if path is not None:
            path.write_text(json.dumps({"benchmark": self.name, "prefix": self.prefix, **self.figures}, indent=2) + "\n")
            print(f"wrote {path}")

    def drop_topics(self) -> None:
        """Delete the run's topics from the broker (the runs of a sitting would otherwise pile up there,
        gigabytes each, and slow the broker down); a failure is reported, not raised."""
        try:
            names = kafka_io.delete_topics(self.kafka, self.prefix)
        except Exception as error:  # the figures are printed already: a broker gone by now costs only the clean-up
            print(f"could not delete the topics of prefix {self.prefix!r}: {type(error).__name__}: {error}", flush=True)
            return
        print(f"deleted {len(names)} topics of prefix {self.prefix!r} (--keep keeps them)", flush=True)

    def clean(self, keep: bool) -> None:
        """Drop the RocksDB directories (logs stay) unless asked to keep them."""
        if keep:
            return
        for path in self.workdir.iterdir():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


TRAFFIC = ("uniform", "shop")


def ensure_events(run: Run, *, events: int, users: int, days: float, seed: int = 1, traffic: str = "uniform") -> int:
    """Topics under the run's prefix and at least ``events`` records in its events topic; returns the count there.

    ``traffic`` is ``uniform`` (:func:`synthetic_events`, a fixed mix) or ``shop`` (the simulator's
    session-shaped users, :func:`shop_events`, at most ``events``; their profiles go to the profiles topic first).
    """
    if traffic not in TRAFFIC:
        raise ValueError(f"traffic is one of {', '.join(TRAFFIC)}, not {traffic!r}")
    kafka_io.ensure_topics(run.kafka, run.prefix, run.partitions)
    topic = run.topic("events")
    present = sum(kafka_io.end_offsets(run.kafka, topic).values())
    if present >= events:
        print(f"{topic} already holds {present:,} events; producing none")
        return present
    span = int(days * DAY_MS)
    start = int(time.time() * 1000) - span - 60_000
    if traffic == "shop":
        return present + _produce_shop(run, events - present, users=users, start_ms=start, days=days, seed=seed + present)
    records = synthetic_events(events - present, users=users, start_ms=start, span_ms=span, seed=seed + present,
                               id_prefix=f"{run.prefix}{present}-")
    count, seconds = kafka_io.produce(run.kafka, topic, records)
    run.record("produce", {"events": count, "users": users, "event_time_days": days, "seconds": round(seconds, 1),
                           "rate": round(count / seconds)})
    return present + count


def _produce_shop(run: Run, cap: int, *, users: int, start_ms: int, days: float, seed: int) -> int:
    """Profiles, then at most ``cap`` simulated events; records what was produced and returns the event count."""
    from streams.producer import encode_events

    profiles, history = shop_events(cap, users=users, start_ms=start_ms, days=days, seed=seed)
    kafka_io.produce(run.kafka, run.topic("profiles"), encode_events(profiles))
    seen = {"users": set(), "first_ts": None, "last_ts": None}

    def tallied(events):
        for event in events:
            seen["users"].add(event["user_id"])
            seen["first_ts"] = seen["first_ts"] or event["ts"]
            seen["last_ts"] = event["ts"]
            yield event

    count, seconds = kafka_io.produce(run.kafka, run.topic("events"), encode_events(tallied(history)))
    span_days = (seen["last_ts"] - seen["first_ts"]) / DAY_MS if count else 0.0
    run.record("produce", {"traffic": "shop", "events": count, "cap": cap, "profiles": len(profiles),
                           "users_with_events": len(seen["users"]), "event_time_days": round(span_days, 2),
                           "seconds": round(seconds, 1), "rate": round(count / seconds) if seconds else None})
    if count < cap:
        print(f"the simulator made {count:,} events ({users:,} users x {days:g} days), fewer than --events {cap:,}")
    return count
