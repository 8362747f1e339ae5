"""API latency: portrait lookups and an audience query at a fixed rate over many stored portraits.

The portraits go straight into the API's store (``LocalStore.apply``, indexes included), then
the real server (``portraits api``) serves them and :mod:`benchkit.loadgen` loads it from a
second process.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from benchkit.apiserver import TOKEN, start_api
from benchkit.common import Run
from benchkit.procs import dir_bytes, python_module

BATCH = 2_000
#: closed-loop requests, one at a time, before the loaded phases (a tenth of them for audiences)
UNLOADED_REQUESTS = 200


def fill_store(data_dir: Path, portraits: int) -> dict:
    """``portraits`` synthetic portraits in ``data_dir/api/store`` (kept between runs); figures of the load."""
    from api.app import open_store
    from api.indexes import PORTRAITS_SPACE
    from tests.unit.test_api_synthetic import records, synthetic_portraits

    path = data_dir / "api" / "store"
    store = open_store(path)
    try:
        present = store.count(PORTRAITS_SPACE)
        if present >= portraits:
            print(f"{path} already holds {present:,} portraits")
            return {"portraits": present, "loaded_now": 0}
        start = time.monotonic()
        batch: list[dict] = []
        for i, portrait in enumerate(synthetic_portraits(portraits, seed=11)):
            batch.append(portrait)
            if len(batch) == BATCH:
                store.apply("portraits", PORTRAITS_SPACE, records(batch, start_offset=i + 1 - BATCH))
                batch = []
                if (i + 1) % 100_000 == 0:
                    print(f"  stored {i + 1:,} portraits ({time.monotonic() - start:.0f} s)", flush=True)
        if batch:
            store.apply("portraits", PORTRAITS_SPACE, records(batch, start_offset=portraits - len(batch)))
        seconds = time.monotonic() - start
        return {"portraits": store.count(PORTRAITS_SPACE), "loaded_now": portraits, "load_seconds": round(seconds, 1),
                "load_rate": round(portraits / seconds)}
    finally:
        store.close()


@dataclass
class CpuUse:
    """CPU time so far: the whole machine's (busy, ``/proc/stat``), the API's (its process and the
    processes below it, e.g. its query processes; ``api_main``: its own process), and that of this
    process's finished children (the load generators)."""

    at: float
    machine_busy: float
    api: float
    children: float

    api_main: float = 0.0

    @classmethod
    def now(cls, api_pid: int) -> "CpuUse":
        tick = os.sysconf("SC_CLK_TCK")
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(ticks) - ticks[3] - ticks[4]) / tick  # all but idle and iowait
        spent = _process_tree_cpu(api_pid, tick)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.monotonic(), busy, sum(spent.values()), usage.ru_utime + usage.ru_stime, spent.get(api_pid, 0.0))

    def since(self, start: "CpuUse") -> dict:
        """Cores in use on average between ``start`` and this: by the API, the load generator, everything else."""
        seconds = max(1e-9, self.at - start.at)
        busy = (self.machine_busy - start.machine_busy) / seconds
        api = (self.api - start.api) / seconds
        loadgen = (self.children - start.children) / seconds
        api_main = (self.api_main - start.api_main) / seconds
        return {"machine": round(busy, 2), "api": round(api, 2), "api_main_process": round(api_main, 2),
                "load_generator": round(loadgen, 2), "others": round(max(0.0, busy - api - loadgen), 2),
                "cores": os.cpu_count()}


def _process_tree_cpu(root: int, tick: int) -> dict[int, float]:
    """CPU seconds (user + system) of ``root`` and of each live process below it (the API's query processes)."""
    parents, spent = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        spent[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    below = {root}
    grown = True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in below} - below
        below |= more
        grown = bool(more)
    return {pid: spent[pid] for pid in below if pid in spent}


def run_api(run: Run, *, portraits: int, store_dir: Path | None, rate: float, audience_rate: float, seconds: float,
            mixed_audience_rate: float = 0.0, compare_fast_path: bool = False) -> None:
    """Fill (or reuse) the store, start the API over it, then one load phase per request kind.

    ``mixed_audience_rate``: then a phase of lookups at ``rate`` and audience queries at this
    rate at the same time (two load generators). ``compare_fast_path``: then the portrait phases
    again on an API with the fast path off (``PORTRAITS_API_FAST_LOOKUPS=false``), in the same
    run, for a side-by-side ratio.
    """
    data_dir = store_dir or run.workdir / "api-data"
    run.record("store", fill_store(data_dir, portraits))
    run.figures["store"]["bytes"] = dir_bytes(data_dir / "api" / "store")
    phases = [
        ("portrait_unloaded", [("portrait", 0)], UNLOADED_REQUESTS),
        ("audience_unloaded", [("audience", 0)], UNLOADED_REQUESTS // 10),
        ("audience_count_unloaded", [("audience_count", 0)], UNLOADED_REQUESTS // 20),
        ("portrait", [("portrait", rate)], seconds),
        ("audience", [("audience", audience_rate)], seconds),
    ]
    if mixed_audience_rate:
        phases.append(("mixed", [("portrait", rate), ("audience", mixed_audience_rate)], seconds))
    serve_phases(run, "", phases, data_dir=data_dir, portraits=portraits, env={})
    if compare_fast_path:
        serve_phases(run, "no_fast_path_", phases[:1] + phases[3:4], data_dir=data_dir, portraits=portraits,
                     env={"PORTRAITS_API_FAST_LOOKUPS": "false"})


def serve_phases(run: Run, label: str, phases: list[tuple], *, data_dir: Path, portraits: int, env: dict) -> None:
    """Start the API (with ``env``), run the load phases against it one after the other, stop it.
    A phase of several (kind, rate) runs one load generator per kind at the same time."""
    with contextlib.ExitStack() as stack:
        # topics that do not exist under this prefix: the API serves the store and follows nothing
        api = start_api(stack, kafka=run.kafka, prefix=f"{run.prefix}none-", data_dir=data_dir,
                        log=run.workdir / f"{label}api.log", env=env)
        run.record(f"{label}api_rss_bytes", api.process.rss_bytes())
        for name, loads, length in phases:
            before = CpuUse.now(api.process.pid)
            generators = [
                subprocess.Popen(python_module("benchkit.loadgen", "--url", api.url, "--token", TOKEN, "--kind", kind,
                                               "--rate", str(kind_rate), "--seconds", str(length), "--users",
                                               str(portraits)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for kind, kind_rate in loads
            ]
            outputs = [generator.communicate(timeout=length * 3 + 300) for generator in generators]
            cpu = CpuUse.now(api.process.pid).since(before)
            for (kind, _), generator, (out, err) in zip(loads, generators, outputs):
                if generator.returncode != 0:
                    raise RuntimeError(f"load generator failed: {err[-2000:]}")
                figures = {**json.loads(out.strip().splitlines()[-1]), "cpu_cores": cpu}
                run.record(label + (name if len(loads) == 1 else f"{name}_{kind}"), figures)
        run.record(f"{label}api_rss_bytes_after", api.process.rss_bytes())
