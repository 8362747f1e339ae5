"""``scripts/bench``: throughput, freshness, api, footprint, scaling, core, sparse, reviews, items and ceiling benchmarks (run by hand)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from benchkit.common import Run
from benchkit.procs import stop_on_sigterm


def options(*decorators):
    """One decorator applying ``decorators`` in order, the first outermost (listed first in --help)."""

    def decorate(command):
        for option in reversed(decorators):
            command = option(command)
        return command

    return decorate


common = options(
    click.option("--kafka", default="127.0.0.1:19092", show_default=True, help="Bootstrap server of the benchmark broker"),
    click.option("--workdir", type=click.Path(path_type=Path), default=Path("/tmp/portraits-bench"), show_default=True,
                 help="Where run directories (data, logs) go"),
    click.option("--prefix", default=None, help="Topic prefix to (re)use; default: a fresh one"),
    click.option("--partitions", default=8, show_default=True, help="Partitions of fresh topics"),
    click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here"),
    click.option("--keep", is_flag=True,
                 help="Keep the RocksDB directories of the run, and its topics (deleted at the end of a run with a fresh prefix)"),
)


def workload(events: int, users: int):
    """The --events, --users and --days options of a benchmark that produces its own events."""
    return options(
        click.option("--events", default=events, show_default=True),
        click.option("--users", default=users, show_default=True),
        click.option("--days", default=30.0, show_default=True, help="Event-time span of the produced events"),
    )


traffic_option = click.option(
    "--traffic", type=click.Choice(["uniform", "shop"]), default="uniform", show_default=True,
    help="Events produced: uniform (a fixed mix over uniformly chosen users) or shop (the simulator's "
         "session-shaped users and their profiles; --events caps how many are taken)")


def benchmark(name: str):
    """A benchmark command: the common options, a fresh :class:`Run`, its report written and data dropped at the end
    (its RocksDB directories, and its topics when it made its own prefix, unless ``--keep``)."""

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
                if prefix is None and not keep:
                    run.drop_topics()

        return common(command)

    return decorate


@click.group()
def main() -> None:
    """Benchmarks of customer portraits. Start a broker first: KAFKA_PORT=19092 scripts/kafka up."""


@main.command()
@workload(events=1_000_000, users=100_000)
@traffic_option
@click.option("--cap", default=120.0, show_default=True, help="Seconds the worker is measured after its first record")
@click.option("--warmup", default=10.0, show_default=True, help="Seconds after the first record left out of the rate")
@click.option("--profile", "profile_s", default=0.0, show_default=True, help="Then sample the worker with py-spy this long")
@click.option("--variant", "variants", multiple=True, metavar="NAME:KEY=VALUE[,KEY=VALUE]",
              help="Then a worker with these settings on the same topic (repeatable), e.g. aio:PORTRAITS_WORKER_LOOP=aio")
@click.option("--whole", is_flag=True,
              help="No cap: every event, then until the worker has read the item facts and training samples they caused")
@click.option("--read-probe", default=0, show_default=True, metavar="RECORDS",
              help="Then the bare Faust agent that only reads this many records of the same topic; each worker's share of its rate")
@benchmark("throughput")
def throughput(run: Run, events, users, days, traffic, cap, warmup, profile_s, variants, whole, read_probe) -> None:
    """Floor (bare consumer + JSON decode) against one worker catching up on the same topic."""
    from benchkit.throughput import parse_variant, run_throughput

    run_throughput(run, events=events, users=users, days=days, cap_s=cap, warmup_s=warmup, profile_s=profile_s,
                   variants=[parse_variant(v) for v in variants], traffic=traffic, whole=whole, read_probe=read_probe)


@main.command()
@click.option("--rate", default=5000.0, show_default=True, help="Events per second sent")
@click.option("--seconds", default=60.0, show_default=True, help="How long events are sent")
@click.option("--users", default=20_000, show_default=True)
@click.option("--drain", default=30.0, show_default=True, help="Seconds to wait for the last effects after sending")
@click.option("--fallback", default=0.5, show_default=True, help="If the worker falls behind: measure again at this share of its rate")
@click.option("--api-poll", type=float, default=None,
              help="Seconds between two lookups of a followed event's user through the API [default: benchkit.freshness.POLL_S]")
@benchmark("freshness")
def freshness(run: Run, rate, seconds, users, drain, fallback, api_poll) -> None:
    """Time from an event's send to its effect on the portraits topic and in the API."""
    from benchkit.freshness import POLL_S, run_freshness

    run_freshness(run, rate=rate, seconds=seconds, users=users, drain_s=drain, fallback=fallback,
                  api_poll_s=POLL_S if api_poll is None else api_poll)


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
@workload(events=100_000, users=10_000)
@click.option("--timeout", "timeout_s", default=1200.0, show_default=True, help="Most seconds the worker may take to fill")
@click.option("--rebuild-timeout", default=300.0, show_default=True, help="Most seconds the rebuild may take")
@click.option("--segment-seconds", default=5.0, show_default=True,
              help="Segment span of the state changelog (the product's: 600), so the fill gets compacted")
@click.option("--compact-timeout", default=300.0, show_default=True, help="Most seconds to wait for the compaction")
@benchmark("footprint")
def footprint(run: Run, events, users, days, timeout_s, rebuild_timeout, segment_seconds, compact_timeout) -> None:
    """Bytes per user (worker RocksDB, API store, RSS), the changelog compaction keeps, and the rebuild time from it."""
    from benchkit.footprint import run_footprint

    run_footprint(run, events=events, users=users, days=days, timeout_s=timeout_s, rebuild_timeout_s=rebuild_timeout,
                  segment_s=segment_seconds, compact_timeout_s=compact_timeout)


@main.command()
@workload(events=1_000_000, users=100_000)
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


@main.command()
@workload(events=100_000, users=10_000)
@click.option("--seed", default=3, show_default=True)
@click.option("--against", "checkouts", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another checkout to measure on the same events in the same run (repeatable), e.g. a git worktree of an older commit")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here")
def core(events, users, days, seed, checkouts, json_out) -> None:
    """The pure core without Kafka: replay rate with frozen models, and the cost of each step of a portrait."""
    import json

    from benchkit.core import compare

    this = Path(__file__).resolve().parents[2]
    figures = compare([*checkouts, this], events=events, users=users, days=days, seed=seed)
    rates = {path: f["replay_events_per_second"] for path, f in figures.items()}
    for path, rate in rates.items():
        print(f"{rate:>10,.1f} events/s  {rate / rates[str(this)]:.2f}x of this checkout  {path}")
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


@main.command()
@click.option("--users", default=2357, show_default=True, help="Customers of the purchase log")
@click.option("--days", default=540.0, show_default=True, help="Event-time span of the purchase log")
@click.option("--seed", default=3, show_default=True)
@click.option("--against", "checkouts", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another checkout to measure on the same history in the same run (repeatable), e.g. a git worktree of an older commit")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here")
def sparse(users, days, seed, checkouts, json_out) -> None:
    """The pure core without Kafka on a sparse purchase log: checks per event and replay time with frozen models."""
    import json

    from benchkit.sparse import compare

    this = Path(__file__).resolve().parents[2]
    figures = compare([*checkouts, this], users=users, days=days, seed=seed)
    mine = figures[str(this)]
    for path, f in figures.items():
        print(f"{f['replay_seconds']:>8.2f} s  {f['events_per_second']:>9,.1f} events/s  "
              f"{f['checks_per_event']:>6.3f} checks/event  {f['replay_seconds'] / mine['replay_seconds']:.2f}x "
              f"this checkout's time  {path}")
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


@main.command()
@click.option("--users", default=300, show_default=True, help="Simulated shop users")
@click.option("--days", default=30.0, show_default=True, help="Days of their history")
@click.option("--seed", default=1, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here")
def reviews(users, days, seed, json_out) -> None:
    """What review sentiment costs the core: shop traffic replayed with each review scorer, CPU per event."""
    import json

    from benchkit.reviews import measure

    figures = measure(users, days, seed)
    print(json.dumps(figures, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


@main.command()
@click.option("--traffic", type=click.Choice(["shop", "uniform"]), default="shop", show_default=True,
              help="The simulator's shop traffic, or the uniform synthetic workload")
@click.option("--users", default=300, show_default=True, help="Users (shop: simulated users)")
@click.option("--days", default=30.0, show_default=True, help="Days of history")
@click.option("--events", default=30_000, show_default=True, help="Events of the uniform workload")
@click.option("--seed", default=1, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the figures here")
def items(traffic, users, days, events, seed, json_out) -> None:
    """What item and category portraits cost the core: a replay with and without item facts, CPU per event."""
    import json

    from benchkit.items import measure

    figures = measure(traffic, users, days, seed, events)
    print(json.dumps(figures, indent=2))
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))


@main.command()
@workload(events=1_000_000, users=100_000)
@traffic_option
@click.option("--records", default=50_000, show_default=True, help="Records each probe reads")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True, help="Most seconds a probe may take")
@benchmark("ceiling")
def ceiling(run: Run, events, users, days, traffic, records, timeout_s) -> None:
    """Faust's per-record cost here: bare agents that read, send one record, or write one table entry per record."""
    from benchkit.ceiling import run_ceiling

    run_ceiling(run, events=events, users=users, days=days, records=records, timeout_s=timeout_s, traffic=traffic)


if __name__ == "__main__":
    main()
