"""Fixtures that run the real product: Kafka from scripts/kafka, worker and API as processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
KAFKA_PORT = int(os.environ.get("PORTRAITS_TEST_KAFKA_PORT", "29092"))


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    explain: Callable[[], str] | None = None,
):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    ``explain`` says, when it fails, what was still wrong.
    """
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except AssertionError:
            raise
        except Exception as error:  # the service may not be up yet
            last_error = error
        time.sleep(interval)
    detail = f"; {explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}{detail}")


def read_dead_letters(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list:
    """The dead-letter topic from its start: at least ``expected`` records (within ``timeout``), plus any extra."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    tp = TopicPartition(topic, 0)  # the dead-letter topic has one partition
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # anything beyond the expected count is a record dead-lettered by mistake
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records


def read_topic(bootstrap: str, topic: str, *, stuck_after: float = 60.0) -> list:
    """Every record of ``topic`` from its start up to its end offsets when called, partition by partition.

    Read to the end offsets, not until the topic stays quiet: on a loaded machine a consumer
    can take longer than any quiet spell to fetch its first record, and would return nothing
    (an empty alerts topic, once). Fails when no record has come for ``stuck_after`` seconds.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
        max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        partitions = wait_until(lambda: consumer.partitions_for_topic(topic), timeout=stuck_after, what=f"{topic}'s partitions")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        by_partition: dict[int, list] = {tp.partition: [] for tp in tps}
        last_progress = time.monotonic()
        # the position passes the end offset too when the last offsets hold transaction markers
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() - last_progress > stuck_after:
                raise AssertionError(f"no record of {topic} for {stuck_after}s before its end offsets {ends}")
            for tp, batch in consumer.poll(timeout_ms=500, max_records=5000).items():
                by_partition[tp.partition].extend(r for r in batch if r.offset < ends[tp])
                last_progress = time.monotonic()
    finally:
        consumer.close()
    return [record for tp in tps for record in by_partition[tp.partition]]


def send_history(settings, *, profiles=(), events=()) -> None:
    """Send ``profiles``, then ``events``, with a producer of their own; Kafka has them all on return."""
    from streams.producer import make_producer, send_events, send_profiles

    producer = make_producer(settings)
    try:
        send_profiles(producer, settings, profiles)
        send_events(producer, settings, events)
    finally:
        producer.close()


def send_models(producer, settings, models) -> None:
    """Put a model snapshot and its summary on the models topic, as the trainer publishes them."""
    import orjson

    producer.send(settings.topic("models"), key=b"snapshot", value=models.to_bytes())
    producer.send(settings.topic("models"), key=b"summary", value=orjson.dumps(models.summary()))


def latest_by_key(records: list) -> dict:
    """What a compacted topic holds: the last value of each key (None for a tombstone)."""
    return {record.key: record.value for record in records}


def end_offsets(settings, topic_names: tuple[str, ...]) -> dict:
    """The end offset of every partition of ``topic_names`` (by ``TopicPartition``), as the broker has it now."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = []
        for name in topic_names:
            topic = settings.topic(name)
            partitions += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def committed_offsets(stack) -> dict:
    """The worker group's committed offset of every partition it has committed (by ``TopicPartition``)."""
    from kafka import KafkaAdminClient

    settings = stack.settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        committed = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
        return {tp: meta.offset for tp, meta in committed.items()}
    finally:
        admin.close()


def worker_lag_is_zero(stack, topic_names: tuple[str, ...] = ("events",)) -> bool:
    """Whether the worker group has consumed (and committed) every record sent so far to ``topic_names``."""
    committed = committed_offsets(stack)
    ends = end_offsets(stack.settings(), topic_names)
    return all(committed.get(tp, -1) >= end for tp, end in ends.items() if end > 0)


def lag_report(stack, workers: "list[Service]", topic_names: tuple[str, ...] = ("events",)) -> str:
    """Where each partition stands: committed offset / end offset, and what each live worker applied."""
    committed = committed_offsets(stack)
    ends = end_offsets(stack.settings(), topic_names)
    stands = {f"{tp.topic.rsplit('-', 1)[-1]}[{tp.partition}]": f"{committed.get(tp)}/{end}" for tp, end in sorted(ends.items())}
    applied = {w.name: applied_offsets(w) for w in workers if w.alive()}
    return f"committed/end {stands}; applied by worker {applied}"


#: the profile fields a served portrait must repeat as sent
PROFILE_FIELDS = ("gender", "region", "city_tier", "member_level", "age")


def assert_matches_batch(portrait: dict, user_events: list[dict], profile: dict | None = None) -> None:
    """A served portrait equals the independent batch computation over the user's raw events at its ``as_of``."""
    from tests.reference import batch_portrait, batch_sentiment, parse_iso

    user = portrait["user_id"]
    expected = batch_portrait(user_events, parse_iso(portrait["as_of"]))
    for key in ("first_seen", "last_seen", "last_purchase"):
        assert parse_iso(portrait[key]) == expected[key], (user, key)
    for key, value in expected["lifetime"].items():
        assert portrait["lifetime"][key] == value, (user, key)
    assert portrait["windows"] == expected["windows"], user
    assert portrait["active_hours"] == expected["active_hours"], user
    assert portrait["weekdays"] == expected["weekdays"], user
    for key, value in expected["funnel"].items():
        assert portrait["funnel"][key] == value, (user, key)
    for key in PROFILE_FIELDS if profile else ():
        assert portrait["profile"].get(key) == profile.get(key), (user, key)
    sentiment = batch_sentiment(user_events, parse_iso(portrait["as_of"]))
    for key in ("reviews", "positive", "negative", "negative_recent"):
        assert portrait["sentiment"][key] == sentiment[key], (user, key)
    assert (portrait["sentiment"]["mean"] is None) == (sentiment["mean"] is None), user
    if sentiment["mean"] is not None:
        assert abs(portrait["sentiment"]["mean"] - sentiment["mean"]) <= 1.5e-4, user
    shown = [(parse_iso(r["at"]), r["item_id"], r["score"]) for r in portrait["sentiment"]["recent_negative"]]
    assert shown == sentiment["recent_negative"], user


def worker_metrics(worker: "Service") -> str:
    """The Prometheus page of a worker process."""
    return httpx.get(f"http://127.0.0.1:{worker.env['PORTRAITS_WORKER_WEB_PORT']}/metrics", timeout=5).text


def worker_processed(worker: "Service") -> float:
    """Events folded by this worker process (not counting the ones before it), from its Prometheus page."""
    text = worker_metrics(worker)
    line = next(line for line in text.splitlines() if line.startswith("portraits_events_processed_total "))
    return float(line.split()[1])


def portrait_mismatches(client: httpx.Client, event_counts: dict[str, int]) -> dict[str, str]:
    """The users whose served portrait does not hold the expected number of events ("served/expected")."""
    wrong = {}
    for user, count in event_counts.items():
        response = client.get(f"/v1/users/{user}/portrait")
        served = response.json()["lifetime"]["events"] if response.status_code == 200 else response.status_code
        if served != count:
            wrong[user] = f"{served}/{count}"
    return wrong


def profile_mismatches(client: httpx.Client, profiles: dict[str, dict]) -> dict[str, str]:
    """The users whose served portrait does not repeat every field of the profile sent ("field: served/sent")."""
    wrong = {}
    for user, profile in profiles.items():
        response = client.get(f"/v1/users/{user}/portrait")
        served = response.json().get("profile", {}) if response.status_code == 200 else {}
        for key in PROFILE_FIELDS:
            if served.get(key) != profile.get(key):
                wrong[user] = f"{key}: {served.get(key)}/{profile.get(key)}"
                break
    return wrong


def served_product(client: httpx.Client, key: str) -> dict | None:
    """The item or category portrait the API serves under its topic key (item:<id>, category:<name>); None on a 404."""
    kind, name = key.split(":", 1)
    response = client.get(f"/v1/{'items' if kind == 'item' else 'categories'}/{name}/portrait")
    return response.json() if response.status_code == 200 else None


def portraits_hold(client: httpx.Client, event_counts: dict[str, int]) -> bool:
    """Whether the API serves every user's portrait with exactly the expected number of events."""
    return not portrait_mismatches(client, event_counts)


def applied_offsets(worker: "Service") -> dict[tuple[str, int], float]:
    """(topic, partition) -> the last input offset ``worker`` has applied, from its /metrics."""
    import re

    applied = {}
    for labels, value in re.findall(r"portraits_applied_offset\{([^}]*)\} (\S+)", worker_metrics(worker)):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        applied[(label["topic"], int(label["partition"]))] = float(value)
    return applied


def worker_applied_everything(stack: "Stack", worker: "Service", topic_names: tuple[str, ...] = ("events",)) -> bool:
    """Whether ``worker`` has applied every record sent so far to ``topic_names`` (from its /metrics)."""
    applied = applied_offsets(worker)
    ends = end_offsets(stack.settings(), topic_names)
    return all(applied.get((tp.topic, tp.partition), -1) + 1 >= end for tp, end in ends.items() if end > 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _locked(path: Path, mode: int = fcntl.LOCK_EX):
    """``path`` held under an flock (exclusive, or shared with ``fcntl.LOCK_SH``) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_dir(tmp_path_factory) -> Path:
    """A directory all test processes of this run share: with pytest-xdist each worker process has
    a base temp dir of its own (``.../pytest-N/popen-gwK``), whose parent is the run's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """A real single-node KRaft broker, started (and afterwards stopped) by scripts/kafka.

    A broker already running on the test port is used as it is. Otherwise the session's
    broker gets a data directory of its own, so no test run inherits the topics of earlier
    ones (thousands of leftover partitions once made a broker restart outlast its timeout).

    The test processes of one run (pytest-xdist) share one broker: the first to need it starts
    it, the last to finish stops it; a count in the run's shared directory, under a lock, says
    how many processes use it.
    """
    env = {**os.environ, "KAFKA_PORT": str(KAFKA_PORT)}
    shared = _run_dir(tmp_path_factory)
    state_path = shared / "kafka-users.json"
    with _locked(shared / "kafka-users.lock"):
        state = json.loads(state_path.read_text()) if state_path.exists() else {"users": 0}
        if state["users"] == 0:
            was_running = subprocess.run([str(ROOT / "scripts/kafka"), "status"], env=env, capture_output=True).returncode == 0
            state["data"] = None if was_running else str(shared / "kafka-data")
        if state["data"]:
            # also seen by the tests that stop and start the broker themselves (os.environ)
            os.environ["PORTRAITS_KAFKA_DATA"] = env["PORTRAITS_KAFKA_DATA"] = state["data"]
        if state["users"] == 0:
            subprocess.run([str(ROOT / "scripts/kafka"), "up"], env=env, check=True, timeout=900)
        state["users"] += 1
        state_path.write_text(json.dumps(state))
    yield f"127.0.0.1:{KAFKA_PORT}"
    with _locked(shared / "kafka-users.lock"):
        state = json.loads(state_path.read_text())
        state["users"] -= 1
        state_path.write_text(json.dumps(state))
        if state["users"] == 0 and state["data"]:
            subprocess.run([str(ROOT / "scripts/kafka"), "reset"], env=env, timeout=120)  # stops it, then deletes its data


@pytest.fixture(autouse=True)
def _broker_turn(request, tmp_path_factory):
    """Tests on the shared broker run side by side; a test marked ``broker_restart`` (it stops and
    starts the broker) runs alone: it holds the run's broker lock exclusively, every other
    integration test holds it shared, from before its fixtures start processes until after they stop."""
    shared = _run_dir(tmp_path_factory)
    gate, turn = shared / "broker-gate.lock", shared / "broker-turn.lock"
    if request.node.get_closest_marker("broker_restart"):
        # the gate keeps new tests out while this one waits for the running ones to end
        with _locked(gate), _locked(turn, fcntl.LOCK_EX):
            yield
    else:
        with contextlib.ExitStack() as held:
            with _locked(gate):
                held.enter_context(_locked(turn, fcntl.LOCK_SH))
            yield


class Service:
    """A product process (``portraits <command>``) with its output in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Service":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.send(sig):
            self.wait_stopped(timeout)

    def send(self, sig: int = signal.SIGTERM) -> bool:
        """Send ``sig`` to the process group; whether the process was still running."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            return True
        return False

    def wait_stopped(self, timeout: float = 30) -> None:
        """Wait for the process to end; SIGKILL after ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Stack:
    """One isolated deployment (own topic prefix, group and data dir) on the shared broker."""

    def __init__(self, bootstrap: str, tmp: Path):
        self.prefix = f"t{uuid.uuid4().hex[:8]}-"
        self.api_port = free_port()
        self.tmp = tmp
        self.env = {
            **os.environ,
            "PORTRAITS_KAFKA": bootstrap,
            "PORTRAITS_TOPIC_PREFIX": self.prefix,
            "PORTRAITS_APP_ID": f"{self.prefix}portraits",
            "PORTRAITS_DATA_DIR": str(tmp / "data"),
            "PORTRAITS_API_PORT": str(self.api_port),
            "PORTRAITS_PARTITIONS": "4",
            "PORTRAITS_PUBLISH_INTERVAL": "0.2",
            "PYTHONUNBUFFERED": "1",
            "PORTRAITS_API_TOKENS": "test-admin:admin,test-operator:operator,test-reader:reader",
        }
        self.services: list[Service] = []

    def settings(self):
        from streams.settings import Settings

        keys = {k[len("PORTRAITS_") :].lower(): v for k, v in self.env.items() if k.startswith("PORTRAITS_")}
        return Settings(**keys)

    def run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self, name: str, *args: str, **extra_env: str) -> Service:
        env = {**self.env, "PORTRAITS_WORKER_WEB_PORT": str(free_port()), **extra_env}
        service = Service(name, list(args), env, self.tmp).start()
        self.services.append(service)
        return service

    def start_product(self) -> Service:
        """A worker and the API, once the API answers; the worker."""
        worker = self.start("worker", "worker", "--web-port", str(free_port()))
        self.start("api", "api")
        self.wait_api()
        return worker

    def auth_headers(self, token: str = "test-admin") -> dict[str, str]:
        """Authorization header for one of the stack's configured API tokens."""
        return {"Authorization": f"Bearer {token}"}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_api(self, timeout: float = 60) -> None:
        wait_until(lambda: httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200, timeout=timeout, what="API up")

    def close(self) -> None:
        """Stop every process: all are sent SIGTERM first, so their graceful stops overlap."""
        stopping = [service for service in reversed(self.services) if service.send(signal.SIGTERM)]
        for service in stopping:
            service.wait_stopped()

    def logs(self) -> str:
        return "\n".join(f"----- {s.name} -----\n{s.tail()}" for s in self.services)


@pytest.fixture
def stack(kafka_bootstrap, tmp_path, request):
    deployment = Stack(kafka_bootstrap, tmp_path)
    deployment.run("topics")
    yield deployment
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(deployment.logs())
    deployment.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    # With N test processes (pytest-xdist), each starts on its own contiguous Nth of the collection
    # and idle ones then take tests from the end of the others' queues. The integration tests
    # (minutes of worker processes each) are dealt out over those Nths, at their starts, so that
    # the long ones do not all queue in the first process while the others only run unit tests.
    processes = config.getoption("numprocesses", default=None)
    if isinstance(processes, int) and processes > 1:
        integration = [item for item in items if item.get_closest_marker("integration")]
        rest = [item for item in items if not item.get_closest_marker("integration")]
        size = -(-len(rest) // processes)
        items[:] = [
            item
            for n in range(processes)
            for item in (*integration[n::processes], *rest[n * size : (n + 1) * size])
        ]
