"""``scripts/bench``: throughput, freshness, api, footprint and scaling benchmarks (run by hand)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from benchkit.common import Run
from benchkit.procs import stop_on_sigterm

common = [
    click.option("--kafka", default="127.0.0.1:19092", show_default=True, help="Bootstrap server of the benchmark broker"),
    click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/portraits-bench"), show_default=True,
                 help="Where run directories (data, logs) go"),
    click.option("--prefix", default=None, help="Topic prefix to (re)use; default: a fresh one"),
    click.option("--partitions", default=8, show_default=True, help="Partitions of fresh topics"),
    click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here"),
    click.option("--keep", is_flag=True, help="Keep the RocksDB directories of the run"),
]


def benchmark(name: str):
    """A benchmark command: the common options, a fresh :class:`Run`, its report written and data dropped at the end."""

    def decorate(body):
        @functools.wraps(body)
        def command(kafka, workdir, prefix, partitions, json_out, keep, **options):
            stop_on_sigterm()
            run = Run.create(kafka, name, workdir, prefix, partitions)
            try:
                body(run, **options)
            finally:
                run.write(json_out)
                run.clean(keep or options.get("store_dir") is not None)

        for option in reversed(common):
            command = option(command)
        return command

    return decorate


@click.group()
def main() -> None:
    """Benchmarks of customer portraits. Start a broker first: KAFKA_PORT=19092 scripts/kafka up."""


@main.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
@click.option("--days", default=30.0, show_default=True, help="Event-time span of the produced events")
@click.option("--cap", default=120.0, show_default=True, help="Seconds the worker is measured after its first record")
@click.option("--warmup", default=10.0, show_default=True, help="Seconds after the first record left out of the rate")
@click.option("--profile", "profile_s", default=0.0, show_default=True, help="Then sample the worker with py-spy this long")
@benchmark("throughput")
def throughput(run: Run, events, users, days, cap, warmup, profile_s) -> None:
    """Floor (bare consumer + JSON decode) against one worker catching up on the same topic."""
    from benchkit.throughput import run_throughput

    run_throughput(run, events=events, users=users, days=days, cap_s=cap, warmup_s=warmup, profile_s=profile_s)


@main.command()
@click.option("--rate", default=5000.0, show_default=True, help="Events per second sent")
@click.option("--seconds", default=60.0, show_default=True, help="How long events are sent")
@click.option("--users", default=20_000, show_default=True)
@click.option("--drain", default=30.0, show_default=True, help="Seconds to wait for the last effects after sending")
@click.option("--fallback", default=0.5, show_default=True, help="If the worker falls behind: measure again at this share of its rate")
@benchmark("freshness")
def freshness(run: Run, rate, seconds, users, drain, fallback) -> None:
    """Time from an event's send to its effect on the portraits topic and in the API."""
    from benchkit.freshness import run_freshness

    run_freshness(run, rate=rate, seconds=seconds, users=users, drain_s=drain, fallback=fallback)


@main.command()
@click.option("--portraits", default=1_000_000, show_default=True, help="Portraits in the API's store")
@click.option("--store", "store_dir", type=click.Path(path_type=Path), default=None,
              help="Data directory of the store, filled once and reused (default: inside the run directory)")
@click.option("--rate", default=1000.0, show_default=True, help="Portrait lookups per second")
@click.option("--audience-rate", default=1000.0, show_default=True, help="Audience queries per second")
@click.option("--seconds", default=30.0, show_default=True, help="Length of each load phase")
@click.option("--mixed-audience-rate", default=0.0, show_default=True,
              help="Then lookups at --rate and audience queries at this rate at the same time (0: no such phase)")
@click.option("--compare-fast-path", is_flag=True, help="Then the portrait phases again with the lookup fast path off")
@benchmark("api")
def api(run: Run, portraits, store_dir, rate, audience_rate, seconds, mixed_audience_rate, compare_fast_path) -> None:
    """p50/p99 of portrait lookups and of an audience query at a fixed rate (open loop, second process)."""
    from benchkit.apibench import run_api

    run_api(run, portraits=portraits, store_dir=store_dir, rate=rate, audience_rate=audience_rate, seconds=seconds,
            mixed_audience_rate=mixed_audience_rate, compare_fast_path=compare_fast_path)


@main.command()
@click.option("--events", default=100_000, show_default=True)
@click.option("--users", default=10_000, show_default=True)
@click.option("--days", default=30.0, show_default=True, help="Event-time span of the produced events")
@click.option("--timeout", "timeout_s", default=1200.0, show_default=True, help="Most seconds the worker may take to fill")
@click.option("--rebuild-timeout", default=300.0, show_default=True, help="Most seconds the rebuild may take")
@benchmark("footprint")
def footprint(run: Run, events, users, days, timeout_s, rebuild_timeout) -> None:
    """Bytes per user (worker RocksDB, API store, RSS) and the rebuild time of a worker from its changelog."""
    from benchkit.footprint import run_footprint

    run_footprint(run, events=events, users=users, days=days, timeout_s=timeout_s, rebuild_timeout_s=rebuild_timeout)


@main.command()
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
@click.option("--days", default=30.0, show_default=True)
@click.option("--workers", "counts", default="1,2,3", show_default=True, help="Worker counts, comma separated")
@click.option("--cap", default=90.0, show_default=True, help="Seconds each group is measured once every worker is busy")
@click.option("--warmup", default=15.0, show_default=True, help="Seconds at the start of the window left out")
@click.option("--target-users", default=100_000_000, show_default=True)
@click.option("--target-rate", default=50_000.0, show_default=True, help="Events per second of the estimate")
@click.option("--headroom", default=1.5, show_default=True, help="Capacity over the target rate (catch-up, peaks)")
@click.option("--footprint-json", "footprint", type=click.Path(exists=True, path_type=Path), default=None,
              help="JSON of a footprint run, for state size and rebuild time in the estimate")
@benchmark("scaling")
def scaling(run: Run, events, users, days, counts, cap, warmup, target_users, target_rate, headroom, footprint) -> None:
    """Throughput of 1, 2, 3 workers in one group on this machine, and workers/partitions for a target."""
    from benchkit.scaling import run_scaling

    run_scaling(run, events=events, users=users, days=days, counts=[int(c) for c in counts.split(",")], cap_s=cap,
                warmup_s=warmup, target_users=target_users, target_rate=target_rate, headroom=headroom,
                footprint=footprint)


if __name__ == "__main__":
    main()
