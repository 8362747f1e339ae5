"""Resilience on the real broker: a broker restart mid-stream, and users expired after the retention."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest

from streams.simulation import ShopSimulator
from streams.topics import state_changelog
from tests.integration.conftest import (
    ROOT,
    assert_matches_batch,
    latest_by_key,
    portraits_hold,
    read_topic,
    send_history,
    wait_until,
    worker_applied_everything,
    worker_lag_is_zero,
)
from tests.reference import events_by_user

DAY = 86_400_000


def kafka(command: str, bootstrap: str) -> None:
    """Run ``scripts/kafka <command>`` for the test broker."""
    env = {**os.environ, "KAFKA_PORT": bootstrap.rsplit(":", 1)[1]}
    subprocess.run([str(ROOT / "scripts/kafka"), command], env=env, check=True, timeout=300)


@pytest.mark.broker_restart  # stops the shared broker: runs while no other test uses it
def test_worker_carries_on_after_a_broker_restart(stack, kafka_bootstrap):
    settings = stack.settings()
    simulator = ShopSimulator(n_users=60, start_ms=int(time.time() * 1000) - 5 * DAY, seed=31)
    events = list(simulator.history(4))
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    worker = stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()

    send_history(settings, profiles=profiles.values(), events=events[: len(events) // 2])

    def applied() -> bool:
        # a worker that died does not come back: fail now, with its log, not when the wait ends
        assert worker.alive(), worker.tail()
        # the worker's own applied offsets, not the group's committed ones: once, the group
        # coordinator answered NotCoordinator to the test's offset queries for the whole wait
        return worker_applied_everything(stack, worker, ("events", "profiles"))

    wait_until(applied, timeout=300, interval=2, what="the first half applied")

    kafka("down", kafka_bootstrap)
    time.sleep(3)  # the worker and the API see the broker gone
    kafka("up", kafka_bootstrap)

    send_history(settings, events=events[len(events) // 2 :])
    wait_until(applied, timeout=300, interval=2, what="the second half applied after the restart")
    assert worker.alive(), worker.tail()

    by_user = events_by_user(events)
    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())

    wait_until(lambda: portraits_hold(client, {u: len(e) for u, e in by_user.items()}), timeout=120, interval=2, what="every portrait after the broker restart")
    for user, user_events in by_user.items():
        assert_matches_batch(client.get(f"/v1/users/{user}/portrait").json(), user_events, profiles[user])


def test_users_idle_past_the_retention_are_forgotten(stack, kafka_bootstrap):
    stack.env["PORTRAITS_RETENTION_DAYS"] = "2"
    # no model snapshot ever: the rule-based parts of every portrait are there all the same
    stack.env["PORTRAITS_TRAIN_MODELS"] = "false"
    settings = stack.settings()
    start = int(time.time() * 1000) - 8 * DAY
    # "gone" users are active on the first day only; "staying" users every day until the end
    events = []
    for day in range(7):
        for n in range(10):
            for kind in ("gone", "staying"):
                if kind == "gone" and day > 0:
                    continue
                user = f"{kind}-{n}"
                ts = start + day * DAY + n * 60_000
                events.append({"event_id": f"{user}-{day}", "user_id": user, "type": "view", "ts": ts, "category": "tea"})
    events.sort(key=lambda e: e["ts"])
    stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()
    send_history(settings, events=events)
    wait_until(lambda: worker_lag_is_zero(stack), timeout=300, interval=2, what="events consumed")

    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())
    gone, staying = [f"gone-{n}" for n in range(10)], [f"staying-{n}" for n in range(10)]
    wait_until(
        lambda: all(client.get(f"/v1/users/{u}/portrait").status_code == 404 for u in gone),
        timeout=120,
        what="idle users to disappear from the API",
    )
    for user in staying:
        portrait = client.get(f"/v1/users/{user}/portrait")
        assert portrait.status_code == 200 and portrait.json()["lifetime"]["events"] == 7
        body = portrait.json()
        assert body["rfm"]["layer"] == "low_value" and body["lifecycle"] == "new", body  # six days of views, no payment
        assert body["segment"] is None and body["churn"]["risk"] is None and isinstance(body["tags"], list), body

    changelog = latest_by_key(read_topic(kafka_bootstrap, state_changelog(settings.app_id)))
    portraits = latest_by_key(read_topic(kafka_bootstrap, settings.topic("portraits")))
    for user in gone:
        assert changelog[user.encode()] is None, f"{user} still in the worker's state"
        assert portraits[user.encode()] is None, f"{user} still on the portraits topic"
    for user in staying:
        assert changelog[user.encode()] is not None and portraits[user.encode()] is not None

    # a returning user starts afresh
    back = {"event_id": "gone-0-back", "user_id": "gone-0", "type": "view", "ts": start + 7 * DAY, "category": "tea"}
    send_history(settings, events=[back])
    returned = wait_until(
        lambda: (r := client.get("/v1/users/gone-0/portrait")).status_code == 200 and r.json(), timeout=60, what="a fresh portrait"
    )
    assert returned["lifetime"]["events"] == 1
