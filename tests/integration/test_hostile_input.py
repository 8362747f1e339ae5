"""Bad input at volume on the real broker: the worker never stops, every hostile record is
dead-lettered with the reason the offline admission gives it, every good event is counted.

``PORTRAITS_HOSTILE_SCALE`` multiplies the volume (``scripts/hostile-input`` runs it at 10x).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict

import httpx
from kafka import KafkaProducer

import orjson
from online_models.admission import admit_event
from online_models.events import InvalidEvent
from online_models.simulation import ShopSimulator
from tests.hostile import KNOWN_REASONS, hostile_record
from tests.integration.conftest import read_dead_letters, wait_until

SCALE = max(1, int(os.environ.get("PORTRAITS_HOSTILE_SCALE", "1")))
N_GOOD = 2000 * SCALE
N_HOSTILE = 300 * SCALE
USERS = 100 * SCALE
DAYS = 2
#: the events topic takes records up to the broker's default of about 1 MB
HUGE_BYTES = 300_000


def offline_reason(key: bytes | None, value: bytes, now_ms: int) -> str | None:
    """The dead-letter reason admit_event gives the record, None if it would be admitted."""
    try:
        admit_event(key, value, now_ms=now_ms)
    except InvalidEvent as error:
        return error.reason
    return None


def test_hostile_records_are_dead_lettered_and_good_events_all_counted(stack, kafka_bootstrap):
    settings = stack.settings()
    worker = stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * 86_400_000, seed=31)
    good = list(simulator.history(DAYS))[:N_GOOD]
    assert len(good) == N_GOOD, len(good)
    users = sorted({e["user_id"] for e in good})

    # Hostile records, keyed by real users most of the time (also None, empty, invalid UTF-8, other users).
    rng = random.Random(20261122)
    hostile: list[tuple[bytes | None, bytes, str]] = []
    kinds = Counter()
    while len(hostile) < N_HOSTILE:
        key, value, kind = hostile_record(rng, now_ms=now, user_ids=users, huge_bytes=HUGE_BYTES)
        reason = offline_reason(key, value, now)
        assert reason is None or reason in KNOWN_REASONS
        if reason is None:  # harmless after all (e.g. a short "huge" string): not hostile, not sent
            continue
        hostile.append((key, value, reason))
        kinds[kind] += 1
    assert len(kinds) >= 20, kinds  # the batch covers (nearly) every kind

    # Good events in event-time order (none late), hostile ones and a few redeliveries mixed in.
    records: list[tuple[bytes | None, bytes]] = [(e["user_id"].encode(), orjson.dumps(e)) for e in good]
    for i in sorted(rng.sample(range(len(records)), 50 * SCALE), reverse=True):
        records.insert(i + 1, records[i])
    for key, value, _ in hostile:
        records.insert(rng.randrange(len(records) + 1), (key, value))

    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=20,
        max_request_size=4 * 1024 * 1024,
        retries=10,
        max_in_flight_requests_per_connection=1,  # keep each partition in send order
    )
    topic = settings.topic("events")
    futures = [producer.send(topic, key=key, value=value) for key, value in records]
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # every record reached the broker
    producer.close()

    by_user: dict[str, set[str]] = defaultdict(set)
    for event in good:
        by_user[event["user_id"]].add(event["event_id"])
    expected_counts = {user: len(ids) for user, ids in by_user.items()}
    client = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers())

    def all_counted():
        assert worker.alive(), worker.tail()
        for user, count in expected_counts.items():
            response = client.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200:
                return False
            got = response.json()["lifetime"]["events"]
            assert got <= count, (user, got, count)  # never a hostile or duplicate one counted
            if got != count:
                return False
        return True

    wait_until(all_counted, timeout=180 + 60 * SCALE, interval=2, what="every good event to be counted")

    dead = read_dead_letters(kafka_bootstrap, settings.topic("events.dlq"), len(hostile), timeout=60 + 30 * SCALE)
    assert worker.alive(), worker.tail()
    got = Counter((r.key, r.value, dict(r.headers).get("reason", b"<none>").decode()) for r in dead)
    want = Counter(hostile)
    missing, unexpected = want - got, got - want
    assert not missing and not unexpected, (
        f"{sum(missing.values())} hostile records missing from the DLQ or with another reason, e.g. "
        f"{[(k, v[:120], r) for k, v, r in list(missing)[:5]]}; "
        f"{sum(unexpected.values())} unexpected dead letters, e.g. {[(k, v[:120], r) for k, v, r in list(unexpected)[:5]]}"
    )
    for record in dead:
        headers = dict(record.headers)
        assert headers["source.topic"].decode() == topic
        assert int(headers["source.offset"]) >= 0
        assert headers["detail"]

    # Still serving, still alive, and nothing was counted twice after the DLQ settled.
    assert all_counted()
    assert worker.alive(), worker.tail()
