"""The ``portraits`` command line: worker, api, topics, simulate, replay."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import orjson

from streams.settings import get_settings


@click.group()
def main() -> None:
    """Real-time customer portraits on Kafka. Configure with PORTRAITS_* variables."""


@main.command()
@click.option("--loglevel", default="warn", show_default=True, type=click.Choice(["crit", "error", "warn", "info", "debug"]))
@click.option("--web-port", type=int, default=None, help="Worker web port (default PORTRAITS_WORKER_WEB_PORT)")
def worker(loglevel: str, web_port: int | None) -> None:
    """Run a Faust stream worker (join the consumer group)."""
    from streams.local_state import close_local_state, open_local_state

    settings = get_settings()
    # before Faust makes its loop (Faust's own ``--loop`` option does the same)
    import mode.loop

    mode.loop.use(settings.worker_loop)
    from streams.topics import create_topics

    # its state changelog before Faust starts (see create_topics); the broker may still be starting
    create_topics(settings, timeout_s=120.0)
    local = settings.data_dir / "worker"
    if open_local_state(local):
        click.echo("the last run did not stop cleanly: rebuilding the tables from their changelogs", err=True)
    from streams.app import app

    port = settings.worker_web_port if web_port is None else web_port
    sys.argv = [sys.argv[0], "worker", "--loglevel", loglevel, "--web-port", str(port), "--web-host", "127.0.0.1"]
    try:
        app.main()
    except SystemExit as stop:
        if stop.code in (0, None):
            close_local_state(local)
        raise
    close_local_state(local)


@main.command()
def api() -> None:
    """Run the HTTP query API."""
    import gc

    import uvicorn

    from api.app import create_app

    settings = get_settings()
    app = create_app(settings)
    # what start-up made (modules, routes, models; 80,000 objects) lives as long as the process:
    # out of the collector's full passes, which take 50 ms over it and stall every request meanwhile
    gc.freeze()
    # audience queries and exports run on worker threads, in Python, for tens of milliseconds:
    # they hand the interpreter to the event loop's lookups every half millisecond, not every 5 ms
    sys.setswitchinterval(0.0005)
    # httptools and uvloop when installed (the default dependencies bring them); no access log
    # line and no Server header per request: at a thousand requests a second they show
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
        server_header=False,
        http="auto",
        loop="auto",
    )


@main.command()
def topics() -> None:
    """Create the product's topics (idempotent)."""
    from streams.topics import create_topics

    created = create_topics(get_settings())
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.command()
@click.option("--users", default=1000, show_default=True, help="Simulated users")
@click.option("--days", default=14.0, show_default=True, help="Days of history sent first, as fast as allowed")
@click.option("--duration", default=0.0, show_default=True, help="Seconds of live traffic after the history")
@click.option("--speed", default=60.0, show_default=True, help="Simulated seconds per wall second while live")
@click.option("--rate", default=0.0, show_default=True, help="Cap in events per second (0: no cap)")
@click.option("--seed", type=int, default=None, help="Seed of the simulated shop (default: a new one each run)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the events as JSON lines")
@click.option("--truth", type=click.Path(path_type=Path), default=None, help="Write each user's true habit group")
@click.option(
    "--companions/--no-companions", default=True, show_default=True,
    help="Orders also hold complementary items (baby care with health products, ...): co-purchase pairs to find",
)
def simulate(
    users: int, days: float, duration: float, speed: float, rate: float, seed: int | None, out, truth, companions: bool
) -> None:
    """Produce realistic shop traffic: a history, then live events.

    The simulated clock ends at "now" when the live phase ends, so no event is
    ever ahead of the wall clock.
    """
    from tqdm import tqdm

    from streams.producer import encode_events, make_producer, send_profiles
    from online_models.simulation import ShopSimulator

    settings = get_settings()
    if seed is None:  # a fresh shop each run: event ids never repeat an earlier run's
        seed = int(time.time())
    live_sim_ms = int(duration * speed * 1000)
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - int(days * 86_400_000) - live_sim_ms
    simulator = ShopSimulator(n_users=users, start_ms=start_ms, seed=seed, companions=companions)
    if truth:
        truth.write_bytes(orjson.dumps(simulator.ground_truth(), option=orjson.OPT_INDENT_2))
    producer = make_producer(settings)
    send_profiles(producer, settings, simulator.profiles())
    topic = settings.topic("events")
    live_from_ms = start_ms + int(days * 86_400_000)
    wall_start = None
    sent = 0
    sink = out.open("wb") if out else None
    try:
        with tqdm(unit="ev", desc="simulate") as bar:
            for key, value in encode_events(simulator.history(days + live_sim_ms / 86_400_000)):
                ts = orjson.loads(value)["ts"]
                if ts > live_from_ms:
                    if wall_start is None:
                        wall_start = time.monotonic()
                        bar.set_description("live")
                    delay = (ts - live_from_ms) / 1000 / speed - (time.monotonic() - wall_start)
                    if delay > 0:
                        producer.flush()
                        time.sleep(delay)
                if rate > 0 and sent and sent % max(1, int(rate // 10)) == 0:
                    time.sleep(max(1, int(rate // 10)) / rate)
                producer.send(topic, key=key, value=value)
                if sink:
                    sink.write(value + b"\n")
                sent += 1
                bar.update()
    finally:
        producer.flush()
        producer.close()
        if sink:
            sink.close()
    click.echo(f"sent {sent} events for {users} users")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--speed", default=0.0, show_default=True, help="Event-time speed-up factor; 0 sends as fast as possible")
@click.option("--topic", default="events", show_default=True, help="Topic short name (events or profiles)")
def replay(file: Path, speed: float, topic: str) -> None:
    """Send recorded events (JSON lines) in event-time order."""
    from streams.producer import make_producer
    from streams.replay import replay as run_replay

    settings = get_settings()
    producer = make_producer(settings)
    name = settings.topic(topic)
    try:
        count = run_replay(file, lambda key, value: producer.send(name, key=key, value=value), speed=speed)
    finally:
        producer.flush()
        producer.close()
    click.echo(f"replayed {count} records")


if __name__ == "__main__":  # pragma: no cover
    main()
