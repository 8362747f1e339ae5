"""Bad input at volume on the real broker: the worker never stops, every hostile record is
dead-lettered once, with the reason the offline admission gives it, every good event is counted.

Besides malformed events of every kind (tests/hostile.py) the soak sends, mixed into a simulated
shop's history: one user's events each with a device and a long id of its own (state that must
stay bounded), a 1997-98 history of users of their own (admitted: the worker runs with
``PORTRAITS_EARLIEST_EVENT_TIME`` 1997; older ones are refused), events stamped up to 20 hours ahead
(folded in, but no partition's stream time passes the wall clock), and records so large that their
dead letter must be cut to fit. Then it erases a user and sends events of theirs stamped before
the request (they are fenced off), and last, with the worker restarted in live mode, malformed
ticks (dead-lettered as ``invalid_tick``) and crafted ones that try to move the clocks ahead.

``PORTRAITS_HOSTILE_SCALE`` multiplies the volume (``scripts/hostile-input`` runs it at 10x).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections import Counter, defaultdict
from itertools import islice

import httpx
import orjson
from kafka import KafkaProducer

from online_models.admission import admit_event
from online_models.clock import ceil_minute, instant_ms
from online_models.events import InvalidEvent, to_epoch_ms
from online_models.processor import MAX_STATE_BYTES
from online_models.simulation import ShopSimulator
from streams.topics import MAX_RECORD_BYTES, state_changelog
from tests.hostile import (
    BAD_TICKS,
    KNOWN_REASONS,
    crafted_ticks,
    future_events,
    heavy_user_events,
    hostile_record,
    old_history,
    oversized_record,
)
from tests.integration.conftest import read_dead_letters, read_topic, wait_until, worker_metrics

SCALE = max(1, int(os.environ.get("PORTRAITS_HOSTILE_SCALE", "1")))
N_GOOD = 2000 * SCALE
N_HOSTILE = 300 * SCALE
USERS = 100 * SCALE
DAYS = 2
#: the events topic takes records up to the broker's default of about 1 MB
HUGE_BYTES = 300_000
#: events of one user, each with a device and a 120-character id of its own
N_HEAVY = 300 * SCALE
HEAVY_USER = "heavy-user"
#: events stamped up to 20 hours ahead of the wall clock (PORTRAITS_MAX_FUTURE_SECONDS allows a day)
N_FUTURE = 20 * SCALE
#: 1997-98 events of users of their own
N_OLD = 100 * SCALE
OLD_USERS = 10
EARLIEST = "1997-01-01T00:00:00Z"
#: records whose dead letter does not fit the dead-letter topic whole
N_OVERSIZED = 2 * SCALE
OVERSIZED_BYTES = MAX_RECORD_BYTES - 120
#: events of the erased user stamped before the request, sent after it
N_FENCED = 20 * SCALE
WORKER_ENV = {
    "PORTRAITS_EARLIEST_EVENT_TIME": EARLIEST,
    "PORTRAITS_RETENTION_DAYS": "0",  # the 1997 users stay: their portraits are checked too
}


def good_history(now_ms: int) -> list[dict]:
    """The first ``N_GOOD`` events of the simulated shop, ending a day before ``now_ms``: over ``DAYS`` days,
    or as many more as the hours and weekdays it starts on need (100 users make 1,650-3,050 events in two days)."""
    for days in range(DAYS, DAYS + 7):
        simulator = ShopSimulator(n_users=USERS, start_ms=now_ms - (days + 1) * 86_400_000, seed=31)
        history = list(islice(simulator.history(days), N_GOOD))
        if len(history) == N_GOOD:
            break
    return history


def offline_reason(key: bytes | None, value: bytes, now_ms: int) -> str | None:
    """The dead-letter reason admit_event gives the record, None if it would be admitted."""
    try:
        admit_event(key, value, now_ms=now_ms, earliest_ms=to_epoch_ms(EARLIEST))
    except InvalidEvent as error:
        return error.reason
    return None


def metric_total(text: str, name: str) -> float:
    """The sum of a metric's samples over its labels."""
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def sent(producer: KafkaProducer, topic: str, records: list[tuple[bytes | None, bytes]], **kwargs) -> list[tuple[int, int]]:
    """Send every record and wait for each; (partition, offset) of each, in order."""
    futures = [producer.send(topic, key=key, value=value, **kwargs) for key, value in records]
    producer.flush()
    return [(meta.partition, meta.offset) for meta in (future.get(timeout=60) for future in futures)]


def test_hostile_records_are_dead_lettered_and_good_events_all_counted(stack, kafka_bootstrap):
    started = time.monotonic()
    settings = stack.settings()
    worker = stack.start("worker", "worker", **WORKER_ENV)
    stack.start("api", "api")
    stack.wait_api()

    now = int(time.time() * 1000)
    history = good_history(now)
    assert len(history) == N_GOOD, len(history)
    users = sorted({e["user_id"] for e in history})
    rng = random.Random(20261122)
    good = sorted(
        history
        + heavy_user_events(HEAVY_USER, N_HEAVY, history[0]["ts"], history[-1]["ts"])
        + old_history(OLD_USERS, N_OLD, to_epoch_ms("1997-01-02T00:00:00Z"), to_epoch_ms("1998-12-31T00:00:00Z"))
        + future_events(rng, users, N_FUTURE, now, 20 * 3_600_000),
        key=lambda e: e["ts"],
    )

    # Hostile records, keyed by real users most of the time (also None, empty, invalid UTF-8, other users).
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
    for _ in range(N_OVERSIZED):
        key, value = oversized_record(rng, rng.choice(users), now, OVERSIZED_BYTES)
        hostile.append((key, value, offline_reason(key, value, now)))

    # Good events in event-time order (none late), hostile ones and a few redeliveries mixed in.
    records: list[tuple[bytes | None, bytes, str | None]] = [(e["user_id"].encode(), orjson.dumps(e), None) for e in good]
    for i in sorted(rng.sample(range(len(records)), 50 * SCALE), reverse=True):
        records.insert(i + 1, records[i])
    for record in hostile:
        records.insert(rng.randrange(len(records) + 1), record)

    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=20,
        max_request_size=4 * 1024 * 1024,
        retries=10,
        max_in_flight_requests_per_connection=1,  # keep each partition in send order
    )
    topic = settings.topic("events")
    offsets = sent(producer, topic, [(key, value) for key, value, _ in records])
    #: (source topic, partition, offset) -> (key, value, reason) of every record that must be dead-lettered once
    bad = {(topic, *at): record for at, record in zip(offsets, records) if record[2] is not None}
    assert len(bad) == len(hostile)

    by_user: dict[str, set[str]] = defaultdict(set)
    for event in good:
        by_user[event["user_id"]].add(event["event_id"])
    expected_counts = {user: len(ids) for user, ids in by_user.items()}
    client = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers())
    running = [worker]  # the worker that must be alive: the first, then the one in live mode

    def all_counted():
        assert running[-1].alive(), running[-1].tail()
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
    metrics = worker_metrics(worker)
    assert metric_total(metrics, "portraits_clock_clamped_total") >= N_FUTURE, metrics
    heavy = client.get(f"/v1/users/{HEAVY_USER}/portrait").json()
    assert len(heavy["devices"]) <= 9 and "other" in heavy["devices"], heavy["devices"]  # 8 named, the rest as "other"

    # Erasure: events of the user stamped before the request and queued behind it are fenced off.
    erased = users[0]
    admin = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-admin"))
    accepted = admin.delete(f"/v1/users/{erased}")
    assert accepted.status_code == 202, accepted.text
    wait_until(lambda: admin.get(accepted.json()["status_url"]).json()["status"] == "completed", timeout=120,
               interval=0.5, what="the erasure to complete")
    requested_at = instant_ms(admin.get(accepted.json()["status_url"]).json()["requested_at"])
    queued = [
        {"event_id": f"queued-{i}", "user_id": erased, "type": "view", "ts": requested_at - 100 * (i + 1), "category": "snacks"}
        for i in range(N_FENCED)
    ]
    sent(producer, topic, [(erased.encode(), orjson.dumps(event)) for event in queued])
    fenced_before = metric_total(metrics, "portraits_records_fenced_total")
    wait_until(lambda: metric_total(worker_metrics(worker), "portraits_records_fenced_total") - fenced_before >= N_FENCED,
               timeout=60, interval=0.5, what="the erased user's queued events to be fenced off")
    assert client.get(f"/v1/users/{erased}/portrait").status_code == 404
    del expected_counts[erased]

    # Ticks: the worker again, in live mode, where ticks move idle partitions' clocks.
    assert worker.alive(), worker.tail()
    worker.stop()
    live = stack.start("worker-live", "worker", PORTRAITS_LIVE_IDLE_SECONDS="1", **WORKER_ENV)
    running.append(live)

    def following_the_wall_clock() -> bool:
        assert live.alive(), live.tail()
        delays = re.findall(r"^portraits_watermark_delay_seconds\{[^}]*\} (\S+)$", worker_metrics(live), re.MULTILINE)
        return len(delays) == settings.partitions and all(float(delay) < 5 for delay in delays)

    wait_until(following_the_wall_clock, timeout=120, interval=1, what="the live worker's partitions to follow the wall clock")
    ticks_topic = settings.topic("ticks")
    tick_records = [(None, value) for value in BAD_TICKS + tuple(crafted_ticks(int(time.time() * 1000)))]
    for partition in range(settings.partitions):
        offsets = sent(producer, ticks_topic, tick_records, partition=partition)
        for (key, value), at in zip(tick_records, offsets):
            if value in BAD_TICKS:
                bad[(ticks_topic, *at)] = (key, value, "invalid_tick")
    producer.close()

    # Every bad record in the DLQ once per source offset, with its reason; cut ones with their size.
    dead = read_dead_letters(kafka_bootstrap, settings.topic("events.dlq"), len(bad), timeout=60 + 30 * SCALE)
    assert live.alive(), live.tail()
    by_source: dict[tuple[str, int, int], list] = defaultdict(list)
    for record in dead:
        headers = dict(record.headers)
        assert headers["detail"], headers
        by_source[(headers["source.topic"].decode(), int(headers["source.partition"]), int(headers["source.offset"]))].append(record)
    twice = {source: len(found) for source, found in by_source.items() if len(found) > 1}
    missing, unexpected = set(bad) - set(by_source), set(by_source) - set(bad)
    assert not twice and not missing and not unexpected, (
        f"{len(twice)} source offsets dead-lettered more than once, e.g. {list(twice.items())[:5]}; "
        f"{len(missing)} bad records missing from the DLQ, e.g. {[(s, bad[s][1][:120], bad[s][2]) for s in list(missing)[:5]]}; "
        f"{len(unexpected)} unexpected dead letters, e.g. {[(s, by_source[s][0].value[:120]) for s in list(unexpected)[:5]]}"
    )
    truncated = 0
    for source, (key, value, reason) in bad.items():
        (record,) = by_source[source]
        headers = dict(record.headers)
        assert headers["reason"].decode() == reason, (source, headers, value[:120])
        if "truncated" in headers:  # cut to fit its topic, with a reference to the whole record
            truncated += 1
            assert headers["original.value.bytes"] == str(len(value)).encode() and value.startswith(record.value or b"")
        else:
            assert (record.key, record.value) == (key, value), (source, record.value[:120], value[:120])
    assert truncated >= N_OVERSIZED

    # Still serving, nothing counted twice, the erased user still gone, every clock behind the wall clock,
    # every portrait and state within its cap.
    assert all_counted()
    assert client.get(f"/v1/users/{erased}/portrait").status_code == 404
    wall = int(time.time() * 1000)
    portraits = read_topic(kafka_bootstrap, settings.topic("portraits"))
    ahead = [(r.key, p["as_of"]) for r in portraits if r.value and instant_ms((p := orjson.loads(r.value))["as_of"]) > ceil_minute(wall)]
    assert not ahead, f"{len(ahead)} portraits published with an as_of past the wall clock, e.g. {ahead[:5]}"
    assert max(len(r.value or b"") for r in portraits) < MAX_RECORD_BYTES
    states = read_topic(kafka_bootstrap, state_changelog(settings.app_id))
    assert max(len(r.value or b"") for r in states) <= MAX_STATE_BYTES
    assert live.alive(), live.tail()
    print(
        f"hostile soak at scale {SCALE}: {len(records)} event records ({len(good)} good, {len(hostile)} hostile, "
        f"{N_OVERSIZED} oversized), {N_FENCED} fenced, {len(tick_records) * settings.partitions} ticks; "
        f"{len(dead)} dead letters ({truncated} cut) for {len(bad)} bad records; "
        f"largest portrait {max(len(r.value or b'') for r in portraits)} B, state {max(len(r.value or b'') for r in states)} B; "
        f"{time.monotonic() - started:.0f} s"
    )
