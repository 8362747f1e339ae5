"""``scripts/bench``: throughput, freshness, api, footprint and scaling benchmarks (run by hand)."""

from __future__ import annotations

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


def with_common(f):
    for option in reversed(common):
        f = option(f)
    return f


def run_for(name: str, kafka: str, workdir: Path, prefix: str | None, partitions: int) -> Run:
    stop_on_sigterm()
    return Run.create(kafka, name, workdir, prefix, partitions)


@click.group()
def main() -> None:
    """Benchmarks of customer portraits. Start a broker first: KAFKA_PORT=19092 scripts/kafka up."""


@main.command()
@with_common
@click.option("--events", default=1_000_000, show_default=True)
@click.option("--users", default=100_000, show_default=True)
@click.option("--days", default=30.0, show_default=True, help="Event-time span of the produced events")
@click.option("--cap", default=120.0, show_default=True, help="Seconds the worker is measured after its first record")
@click.option("--warmup", default=10.0, show_default=True, help="Seconds after the first record left out of the rate")
@click.option("--profile", "profile_s", default=0.0, show_default=True, help="Then sample the worker with py-spy this long")
def throughput(kafka, workdir, prefix, partitions, json_out, keep, events, users, days, cap, warmup, profile_s) -> None:
    """Floor (bare consumer + JSON decode) against one worker catching up on the same topic."""
    from benchkit.throughput import run_throughput

    run = run_for("throughput", kafka, workdir, prefix, partitions)
    try:
        run_throughput(run, events=events, users=users, days=days, cap_s=cap, warmup_s=warmup, profile_s=profile_s)
    finally:
        run.write(json_out)
        run.clean(keep)


@main.command()
@with_common
@click.option("--rate", default=5000.0, show_default=True, help="Events per second sent")
@click.option("--seconds", default=60.0, show_default=True, help="How long events are sent")
@click.option("--users", default=20_000, show_default=True)
@click.option("--drain", default=30.0, show_default=True, help="Seconds to wait for the last effects after sending")
@click.option("--fallback", default=0.5, show_default=True, help="If the worker falls behind: measure again at this share of its rate")
def freshness(kafka, workdir, prefix, partitions, json_out, keep, rate, seconds, users, drain, fallback) -> None:
    """Time from an event's send to its effect on the portraits topic and in the API."""
    from benchkit.freshness import run_freshness

    run = run_for("freshness", kafka, workdir, prefix, partitions)
    try:
        run_freshness(run, rate=rate, seconds=seconds, users=users, drain_s=drain, fallback=fallback)
    finally:
        run.write(json_out)
        run.clean(keep)


if __name__ == "__main__":
    main()
