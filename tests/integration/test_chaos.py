"""Crash safety: a worker killed with SIGKILL at random points ends exactly where an uninterrupted one does.

Two deployments on the same broker get the same profiles and events and the same
frozen model snapshot (trained offline over the history, so scores, layers and
alerts do not depend on when training samples arrive). One worker runs
undisturbed; the other is killed with SIGKILL at random points of its replay and
restarted each time. Afterwards every user's state in the two changelogs is
equal, both equal an independent count over the raw events, the chaos run's API
serves each user's latest portrait, and the alerts are the same, each once.

``PORTRAITS_CHAOS_USERS``, ``PORTRAITS_CHAOS_DAYS`` and ``PORTRAITS_CHAOS_KILLS``
make it longer (``scripts/chaos``); ``PORTRAITS_CHAOS_SEED`` and ``PORTRAITS_CHAOS_START_MS``
pick another history.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal

import httpx
import orjson
import pytest

from online_models.portrait import PortraitState, render
from online_models.replay import replay_history
from streams.producer import make_producer, send_events, send_profiles
from online_models.processor import is_internal_key
from online_models.simulation import ShopSimulator
from streams.topics import state_changelog
from tests.integration.conftest import (
    Stack,
    latest_by_key,
    read_topic,
    send_models,
    wait_until,
    worker_applied_everything,
    worker_processed,
)
from tests.association_reference import baskets_closed_by_each_partition, batch_counts
from tests.reference import cents, events_by_user, parse_iso, unique_events

USERS = int(os.environ.get("PORTRAITS_CHAOS_USERS", "60"))
DAYS = int(os.environ.get("PORTRAITS_CHAOS_DAYS", "40"))
KILLS = int(os.environ.get("PORTRAITS_CHAOS_KILLS", "3"))
SEED = int(os.environ.get("PORTRAITS_CHAOS_SEED", "11"))
# a fixed start (2026-09-01 00:00 UTC): the simulated history, and so the alerts it fires, do not
# depend on the day the test runs (a start relative to now fired none on some days); the workers
# run on event time only, so an old history replays as it would have lived
START_MS = int(os.environ.get("PORTRAITS_CHAOS_START_MS", "1788307200000"))
SOURCE_TOPICS = ("events", "profiles")
# frozen models, and alert settings that make a small shop alert a few times
RUN_ENV = {
    "PORTRAITS_TRAIN_MODELS": "false",
    "PORTRAITS_ALERT_THRESHOLD": "0.5",
    "PORTRAITS_ALERT_REARM_BELOW": "0.35",
    "PORTRAITS_ALERT_COOLDOWN_DAYS": "7",
    "PORTRAITS_ALERT_LAYERS": "high_value,potential,ordinary,low_value",
    "PORTRAITS_SESSION_TIMEOUT_SECONDS": "6",
    "PORTRAITS_ASSOCIATION_SNAPSHOT_INTERVAL": "1",
}


def final_states(stack: Stack, bootstrap: str) -> dict[str, dict]:
    """Each user's last state on the worker's changelog, without the worker's change numbering."""
    changelog = state_changelog(stack.settings().app_id)
    states = {}
    for key, value in latest_by_key(read_topic(bootstrap, changelog)).items():
        if is_internal_key(key) or value is None:
            continue
        state = dataclasses.asdict(PortraitState.from_bytes(value))
        del state["seq"]  # numbering restarts differ; the content must not
        states[key.decode()] = state
    return states


def latest_summary(deployment: Stack, bootstrap: str) -> dict | None:
    """The last association summary the deployment's aggregator published."""
    raw = latest_by_key(read_topic(bootstrap, deployment.settings().topic("associations"))).get(b"summary")
    return None if raw is None else orjson.loads(raw)


def check_associations(calm: Stack, chaos: Stack, bootstrap: str, events: list[dict]) -> None:
    """Both runs' co-purchase counts equal the batch counts of the baskets each partition's last watermark closed."""
    settings = calm.settings()
    lateness = int(settings.lateness_seconds * 1000)
    baskets = baskets_closed_by_each_partition(events, partitions=settings.partitions, lateness_ms=lateness)
    truth = batch_counts(baskets, window_days=settings.association_window_days)["category"]
    assert truth["baskets"] > 100

    def figures(summary: dict | None) -> tuple | None:
        if summary is None:
            return None
        block = summary["categories"]
        return block["baskets"], block["counts"], {(a, b): n for a, b, n in block["pairs"]}

    expected = (truth["baskets"], dict(truth["counts"]), dict(truth["pairs"]))
    summaries = {}
    for name, deployment in (("calm", calm), ("chaos", chaos)):
        try:
            summaries[name] = wait_until(
                lambda: (s := latest_summary(deployment, bootstrap)) is not None and figures(s) == expected and s,
                timeout=180, interval=2, what=f"every basket counted once ({name})",
            )
        except AssertionError:
            summary = latest_summary(deployment, bootstrap)
            assert figures(summary) == expected, (name, summary and summary["baskets"])
            summaries[name] = summary
    calm_summary, chaos_summary = summaries["calm"], summaries["chaos"]
    print(f"co-purchases: {truth['baskets']} baskets in the window; the chaos run's aggregator saw {chaos_summary['baskets']}")
    assert chaos_summary["items"] == calm_summary["items"]


@pytest.mark.chaos
@pytest.mark.timeout(1800)  # two replays of the same history on two shared cores
def test_sigkilled_worker_ends_like_an_uninterrupted_one(stack, kafka_bootstrap, tmp_path):
    simulator = ShopSimulator(n_users=USERS, start_ms=START_MS, seed=SEED)
    events = list(simulator.history(DAYS))
    profiles = list(simulator.profiles())

    (tmp_path / "chaos").mkdir()
    calm, chaos = stack, Stack(kafka_bootstrap, tmp_path / "chaos")
    chaos.run("topics")
    for deployment in (calm, chaos):
        deployment.env.update(RUN_ENV)
    frozen = replay_history(events, config=calm.settings().watch_config()).snapshot()
    for deployment in (calm, chaos):
        settings = deployment.settings()
        producer = make_producer(settings)
        send_models(producer, settings, frozen)
        send_profiles(producer, settings, profiles)
        send_events(producer, settings, events)
        producer.flush()
        producer.close()

    try:
        calm.start("worker", "worker")
        chaos_api = chaos.start("api", "api")
        worker = chaos.start("worker", "worker")
        rng = random.Random(SEED)
        kill_points = sorted(rng.sample(range(len(events) // 10, len(events) * 8 // 10), KILLS))
        print(f"chaos seed {SEED}: {len(events)} events, SIGKILL after about {kill_points} folded")
        done_before = 0.0  # events folded by the killed incarnations
        for n, point in enumerate(kill_points, 1):
            seen = wait_until(
                lambda: (done := worker_processed(worker)) and done_before + done >= point and done,
                timeout=600,
                interval=0.2,
                what=f"about {point} events folded",
            )
            done_before += seen
            worker.stop(signal.SIGKILL)
            worker = chaos.start(f"worker-{n}", "worker")
        # the workers' own applied offsets: after restarts Faust's committed offsets can stay behind
        # (records it re-delivers are skipped by the progress record, so that costs nothing)
        for deployment, last in ((calm, calm.services[0]), (chaos, worker)):
            wait_until(
                lambda: worker_applied_everything(deployment, last, SOURCE_TOPICS), timeout=900, interval=2, what="replay applied"
            )
        assert all(s.alive() for s in (*calm.services, chaos_api, worker)), "a worker or the API died"

        # The two runs hold the same state for every user, and it is the batch count of the raw events.
        # The applied-offset gauge moves when a record is applied; the table's changelog records
        # leave through the producer's buffer after that, so the changelogs are read until they agree
        # (or the wait ends and the difference below is the failure).
        def both_states() -> tuple[dict, dict] | None:
            calm_now, chaos_now = final_states(calm, kafka_bootstrap), final_states(chaos, kafka_bootstrap)
            return (calm_now, chaos_now) if len(calm_now) == len(chaos_now) == USERS and calm_now == chaos_now else None

        try:
            calm_states, chaos_states = wait_until(both_states, timeout=180, interval=5, what="equal states on both changelogs")
        except AssertionError:
            calm_states, chaos_states = final_states(calm, kafka_bootstrap), final_states(chaos, kafka_bootstrap)
        assert len(calm_states) == USERS
        assert chaos_states.keys() == calm_states.keys()
        differing = [u for u in calm_states if calm_states[u] != chaos_states[u]]
        # (calm, chaos) of each differing field of the first few users
        differences = {
            u: {k: (v, chaos_states[u][k]) for k, v in calm_states[u].items() if v != chaos_states[u][k]}
            for u in differing[:3]
        }
        if differing:  # in full: the assertion message is cut short
            print("differing states (calm, chaos):", differences)
        assert not differing, (f"{len(differing)} of {USERS} users differ", differences)
        by_user = events_by_user(unique_events(events))
        for user, user_events in by_user.items():
            state = chaos_states[user]
            assert state["events"] == len(user_events)
            assert state["spend_cents"] == sum(cents(e) for e in user_events if e["type"] == "pay")

        # Co-purchases: the aggregator, killed with the worker, counted every basket once, as the batch does.
        check_associations(calm, chaos, kafka_bootstrap, events)

        # Alerts: the same ones, and the API serves each once.
        calm_alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, calm.settings().topic("churn-alerts"))]
        chaos_alerts = [orjson.loads(r.value) for r in read_topic(kafka_bootstrap, chaos.settings().topic("churn-alerts"))]
        assert calm_alerts, "no alert fired: the test would prove nothing about alerts"
        assert len({a["alert_id"] for a in calm_alerts}) == len(calm_alerts)
        assert {a["alert_id"]: a for a in chaos_alerts} == {a["alert_id"]: a for a in calm_alerts}
        print(f"{len(calm_alerts)} alerts; the chaos run delivered {len(chaos_alerts) - len(calm_alerts)} again under the same id")
        client = httpx.Client(base_url=chaos.api, timeout=10, headers=chaos.auth_headers())
        served = wait_until(
            lambda: (body := client.get("/v1/alerts", params={"limit": 1000}).json())["count"] == len(calm_alerts) and body,
            timeout=180,
            what="every alert in the API",
        )
        assert sorted(a["alert_id"] for a in served["alerts"]) == sorted(a["alert_id"] for a in calm_alerts)

        # The chaos run's API serves every user's latest state, scored by the frozen models.
        def all_fresh() -> bool:
            for user, state in chaos_states.items():
                portrait = client.get(f"/v1/users/{user}/portrait").json()
                assert portrait.get("segment", "missing") != "missing", portrait
                if portrait.get("version") != state["version"]:
                    return False
            return True

        wait_until(all_fresh, timeout=180, interval=2, what="latest portraits in the API")
        # ...and each served portrait (layer, lifecycle, tags, segment, churn) is the uninterrupted run's
        portrait_config = calm.settings().portrait_config()
        for user, state in calm_states.items():
            served_portrait = client.get(f"/v1/users/{user}/portrait").json()
            expected = frozen.enrich(render(PortraitState(**state), as_of=parse_iso(served_portrait["as_of"]), config=portrait_config))
            expected = orjson.loads(orjson.dumps(expected))
            for field in ("lifetime", "windows", "rfm", "lifecycle", "tags", "segment", "churn", "version"):
                assert served_portrait[field] == expected[field], (user, field)
    finally:
        chaos.close()
