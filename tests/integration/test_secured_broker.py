"""The pipeline on a secured broker: SASL SCRAM-SHA-512 over TLS, a user per role, least-privilege ACLs.

The broker is this test's own (``KAFKA_SECURE=1 scripts/kafka up`` on ports 29492/29493 with a
data dir in the test's temp dir), not the shared plaintext one. Each
process runs as its role's user from the files the script writes: ``portraits topics`` as admin,
the worker as worker, the API as api, the shop's producer as producer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from online_models.simulation import ShopSimulator
from streams.producer import make_producer, send_events, send_profiles
from streams.settings import Settings
from tests.integration.conftest import ROOT, Stack, portrait_mismatches, portraits_hold, wait_until
from tests.reference import events_by_user

PORT, CONTROLLER_PORT = 29492, 29493
PREFIX = "sec-"
APP_ID = f"{PREFIX}portraits"
#: how long a client that cannot get in tries before giving up (the broker answers at once; the client retries)
REFUSED_WITHIN_MS = 8000


def role_env(secure_dir: Path, role: str) -> dict[str, str]:
    """The PORTRAITS_KAFKA_* settings scripts/kafka wrote for ``role`` (``KEY=VALUE`` lines)."""
    lines = (secure_dir / f"{role}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k[len("PORTRAITS_") :].lower(): v for k, v in env.items() if k.startswith("PORTRAITS_")})


@pytest.fixture
def secured(tmp_path):
    """A secured broker of this test's own, with ACLs for the deployment ``PREFIX``/``APP_ID``; its secure dir."""
    env = {
        **os.environ,
        "KAFKA_SECURE": "1",
        "KAFKA_PORT": str(PORT),
        "KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
        "PORTRAITS_KAFKA_DATA": str(tmp_path / "kafka"),
        "PORTRAITS_TOPIC_PREFIX": PREFIX,
        "PORTRAITS_APP_ID": APP_ID,
    }
    script = str(ROOT / "scripts/kafka")
    try:
        subprocess.run([script, "up"], env=env, check=True, timeout=900)
        yield tmp_path / "kafka"
    finally:
        subprocess.run([script, "down"], env=env, timeout=120)  # its data dir stays with the test's, for a look


def refused(**options) -> str:
    """The error a kafka-python producer with ``options`` meets on the secured port."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    producer = None
    try:
        producer = KafkaProducer(
            bootstrap_servers=f"127.0.0.1:{PORT}", bootstrap_timeout_ms=REFUSED_WITHIN_MS,
            max_block_ms=REFUSED_WITHIN_MS, request_timeout_ms=REFUSED_WITHIN_MS, **options,
        )
        producer.send(f"{PREFIX}events", key=b"mallory", value=b"{}").get(REFUSED_WITHIN_MS / 1000)
    except KafkaError as error:
        return type(error).__name__
    finally:
        if producer is not None:
            producer.close(timeout=5)
    raise AssertionError(f"a client with {sorted(options)} wrote to the secured broker")


def test_the_pipeline_runs_secured_and_each_role_writes_only_its_topics(secured, tmp_path):
    from kafka.errors import TopicAuthorizationFailedError

    secure_dir = secured / "secure"
    assert oct((secure_dir).stat().st_mode & 0o777) == "0o700"
    for role in ("admin", "worker", "producer", "api"):
        assert oct((secure_dir / f"{role}.env").stat().st_mode & 0o777) == "0o600", role
    admin, worker_env, producer_env, api_env = (role_env(secure_dir, r) for r in ("admin", "worker", "producer", "api"))

    stack = Stack(f"127.0.0.1:{PORT}", tmp_path)
    stack.prefix = PREFIX
    stack.env.update({"PORTRAITS_TOPIC_PREFIX": PREFIX, "PORTRAITS_APP_ID": APP_ID})
    for name in [k for k in stack.env if k.startswith("PORTRAITS_KAFKA_") and k != "PORTRAITS_KAFKA_DATA"]:
        del stack.env[name]  # no process runs with credentials it was not given below
    try:
        made = subprocess.run(
            [sys.executable, "-m", "streams.cli", "topics"], cwd=ROOT, env={**stack.env, **admin},
            capture_output=True, text=True, timeout=180,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        worker = stack.start("worker", "worker", **worker_env)
        stack.start("api", "api", **api_env)
        stack.wait_api(timeout=120)

        # the shop's producer, as the producer user: events in, portraits out
        now = int(time.time() * 1000)
        simulator = ShopSimulator(n_users=25, start_ms=now - 4 * 86_400_000, seed=5)
        events = list(simulator.history(3))
        producer_settings = settings_of({**stack.env, **producer_env})
        producer = make_producer(producer_settings, timeout_s=60)
        try:
            send_profiles(producer, producer_settings, simulator.profiles())
            send_events(producer, producer_settings, events)

            expected = {user: len({e["event_id"] for e in evs}) for user, evs in events_by_user(events).items()}
            client = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers())

            wait_until(
                lambda: worker.alive() and portraits_hold(client, expected), timeout=300, interval=2,
                what="every portrait on the secured broker",
                explain=lambda: f"{portrait_mismatches(client, expected)}\n{stack.logs()}",
            )

            # the producer's credentials cannot forge an erasure, a portrait, an alert, a model or a tick
            for topic in ("erasures", "portraits", "churn-alerts", "models", "ticks", "events.dlq"):
                with pytest.raises(TopicAuthorizationFailedError):
                    producer.send(f"{PREFIX}{topic}", key=b"u1", value=b"{}").get(30)
        finally:
            producer.close(timeout=10)

        # the API's credentials: erasures and events yes (an erasure goes through), portraits no
        victim = sorted(expected)[0]
        accepted = client.delete(f"/v1/users/{victim}")
        assert accepted.status_code == 202, accepted.text
        wait_until(lambda: client.get(accepted.json()["status_url"]).json()["status"] == "completed", timeout=120,
                   what="the erasure on the secured broker", explain=stack.logs)
        assert client.get(f"/v1/users/{victim}/portrait").status_code == 404
        api_producer = make_producer(settings_of({**stack.env, **api_env}), timeout_s=60)
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                api_producer.send(f"{PREFIX}portraits", key=victim.encode(), value=b'{"forged": true}').get(30)
        finally:
            api_producer.close(timeout=10)

        # no forged record got in: the one erasure request (the API's) is all the erasures topic holds
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{PORT}", **_python_options(stack.env, admin))

        def records_in(name: str) -> int:
            tps = [TopicPartition(f"{PREFIX}{name}", p) for p in consumer.partitions_for_topic(f"{PREFIX}{name}")]
            return sum(consumer.end_offsets(tps).values())

        try:
            assert records_in("erasures") == 1
            # the trainer (Faust's consumer and producer as the worker user) publishes its snapshots
            wait_until(lambda: records_in("models") > 0, timeout=60, what="a model snapshot on the secured broker")
        finally:
            consumer.close()

        # clients without (valid) credentials are refused at the door
        ca = api_env["PORTRAITS_KAFKA_CA_FILE"]
        password = producer_env["PORTRAITS_KAFKA_SASL_PASSWORD"]
        scram = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "ssl_cafile": ca}
        assert refused()  # plaintext
        assert refused(security_protocol="SSL", ssl_cafile=ca)  # TLS, no SASL
        assert refused(**scram, sasl_plain_username="producer", sasl_plain_password=password + "x")  # a wrong password
        assert refused(**scram, sasl_plain_username="mallory", sasl_plain_password=password)  # an unknown user
        log = (secured / "broker.log").read_text(errors="replace")
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in log
        assert "SSL handshake failed" in log or "during SASL handshake" in log
        # the refusals above are the broker's (its authorizer logs each denial), and the worker and the
        # API were denied nothing they needed
        assert f"User:producer is Denied operation = DESCRIBE from host = 127.0.0.1 on resource = Topic:LITERAL:{PREFIX}erasures" in log
        assert "User:worker is Denied" not in log
        assert [line for line in log.splitlines() if "User:api is Denied" in line and f"{PREFIX}portraits " not in line] == []
        assert worker.alive(), worker.tail()
    finally:
        stack.close()


def _python_options(base: dict[str, str], role: dict[str, str]) -> dict:
    from streams.kafka_security import kafka_python_options

    return kafka_python_options(settings_of({**base, **role}))
