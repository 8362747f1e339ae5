"""Faust's own ceiling on this machine: bare agents on the benchmark's events topic.

Four apps read the same topic with one fresh consumer group each: one does nothing per
record, one sends one record per record read through ``Topic.send``, one the same through the
app's producer (``app.producer.send``), one writes one table entry (RocksDB plus its changelog
record) per record read. Their rates, next to the worker's records produced per
event, say how much of the worker's time is Faust's per-record machinery.
"""

from __future__ import annotations

import contextlib
import os
import time

from benchkit import kafka_io
from benchkit.common import Run, ensure_events
from benchkit.procs import free_port, managed, python_module

MODES = ("read", "take", "send", "rawsend", "table")


def run_probe(run: Run, mode: str, *, records: int, timeout_s: float) -> dict | None:
    """One bare agent of ``mode`` (see :mod:`benchkit.faust_probe`) reading ``records`` records of the run's
    events topic with a fresh group: ``{"records", "seconds", "rate", "cpu_us_per_record"}``, None when it
    did not read them within ``timeout_s``."""
    out = run.workdir / f"probe-{mode}.out"
    env = {
        **os.environ,
        "PROBE_MODE": mode, "PROBE_RECORDS": str(records), "PROBE_OUT": str(out), "PROBE_KAFKA": run.kafka,
        "PROBE_APP_ID": run.app_id(f"probe-{mode}"), "PROBE_DATA": str(run.workdir / f"probe-{mode}"),
        "PROBE_TOPIC": run.topic("events"), "PROBE_SINK": run.topic("probe-sink"),
        "PROBE_PARTITIONS": str(run.partitions), "PROBE_WEB_PORT": str(free_port()),
    }
    with contextlib.ExitStack() as stack:
        child = stack.enter_context(
            managed(f"probe-{mode}", python_module("benchkit.faust_probe", "worker", "-l", "warn"), env,
                    run.workdir / f"probe-{mode}.log"))
        deadline = time.monotonic() + timeout_s
        while not out.exists() and child.alive() and time.monotonic() < deadline:
            time.sleep(0.5)
    if not out.exists():
        return None
    done, took, cpu = out.read_text().split()
    return {"records": int(done), "seconds": round(float(took), 2), "rate": round(int(done) / float(took)),
            "cpu_us_per_record": round(float(cpu) / int(done) * 1e6, 1)}


def run_ceiling(run: Run, *, events: int, users: int, days: float, records: int, timeout_s: float,
                traffic: str = "uniform") -> None:
    """Each probe reads ``records`` records (from the start of the topic); its rate is recorded."""
    ensure_events(run, events=events, users=users, days=days, traffic=traffic)
    count, seconds = kafka_io.floor(run.kafka, run.topic("events"), limit=records)
    rates = {"floor (aiokafka + orjson)": count / seconds}
    for mode in MODES:
        probe = run_probe(run, mode, records=records, timeout_s=timeout_s)
        if probe is None:
            run.record(f"probe_{mode}", {"error": f"did not read {records} records within {timeout_s} s"})
            continue
        rates[f"faust agent: {mode}"] = probe["rate"]
        run.record(f"probe_{mode}", probe)
    read = rates.get("faust agent: read")
    for mode in ("send", "rawsend", "table"):
        rate = rates.get(f"faust agent: {mode}")
        if read and rate:
            run.record(f"cost_of_one_{mode}_us", round((1 / rate - 1 / read) * 1e6))
    run.record("rates", {name: round(rate) for name, rate in rates.items()})
