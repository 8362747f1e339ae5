"""Scale-out on the real broker: workers join and leave the group while the API keeps answering.

Two workers split the partitions, a third joins mid-replay and one leaves; the
partitions move with their tables (restored from the changelogs, with a standby
replica), and at the end every user's portrait equals the batch computation over
the raw events, whichever worker held the user when.
"""

from __future__ import annotations


import threading
import time
from collections import Counter

import httpx

from streams.producer import make_producer, send_events, send_profiles
from online_models.simulation import ShopSimulator
from tests.integration.conftest import (
    Stack,
    applied_offsets,
    assert_matches_batch,
    end_offsets,
    lag_report,
    portrait_mismatches,
    portraits_hold,
    profile_mismatches,
    served_product,
    wait_until,
    worker_lag_is_zero,
    worker_processed,
)
from tests.association_reference import baskets_closed_by_each_partition, batch_counts
from tests.item_reference import COUNTED, item_portraits, keys_of
from tests.reference import events_by_user, parse_iso

USERS = 120
DAYS = 8


class Prober(threading.Thread):
    """Asks the API for one portrait every 0.2 s and keeps every answer that is not a 200."""

    def __init__(self, client: httpx.Client, user: str):
        super().__init__(daemon=True)
        self.client, self.user = client, user
        self.failures: list[str] = []
        self.answers = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                response = self.client.get(f"/v1/users/{self.user}/portrait")
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:100]}")
                self.answers += 1
            except httpx.HTTPError as error:
                self.failures.append(repr(error))


def group_members(stack) -> int:
    """Members of the worker group once it is stable (0 while it rebalances)."""
    from kafka import KafkaAdminClient

    settings = stack.settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        group = admin.describe_groups([settings.app_id])[settings.app_id]
    finally:
        admin.close()
    return len(group["members"]) if group["group_state"] == "Stable" else 0


def test_workers_join_and_leave_without_losing_anything(kafka_bootstrap, tmp_path):
    # six partitions, so that Faust's sticky assignor has one to give each of three workers
    stack = Stack(kafka_bootstrap, tmp_path)
    stack.env.update(
        {
            "PORTRAITS_PARTITIONS": "6",
            "PORTRAITS_SESSION_TIMEOUT_SECONDS": "6",
            "PORTRAITS_STANDBY_REPLICAS": "1",
            "PORTRAITS_ASSOCIATION_SNAPSHOT_INTERVAL": "1",
        }
    )
    stack.run("topics")
    try:
        _join_and_leave(stack, kafka_bootstrap, tmp_path)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.close()


def check_item_portraits(client: httpx.Client, events: list[dict], profiles: dict[str, dict]) -> None:
    """Every item and category portrait served holds each of its events once, and equals the batch's counts."""
    counted = Counter(key for e in events if e["type"] in COUNTED for key in keys_of(e))

    def short_of() -> dict[str, str]:
        versions = {key: (served_product(client, key) or {}).get("version") for key in counted}
        return {key: f"{versions[key]}/{n}" for key, n in counted.items() if versions[key] != n}

    wait_until(lambda: not short_of(), timeout=120, interval=2, what="every item and category portrait complete",
               explain=lambda: f"folded/expected: {dict(list(short_of().items())[:10])}")
    portraits = {key: served_product(client, key) for key in counted}
    expected = item_portraits(events, profiles, {key: parse_iso(p["as_of"]) for key, p in portraits.items()})
    for key, portrait in portraits.items():
        want = expected[key]
        for name in ("key", "kind", "id", "category", "lifetime"):
            assert portrait[name] == want[name], (key, name)
        for window, figures in portrait["windows"].items():
            expected_figures = want["windows"][window]
            assert {k: v for k, v in figures.items() if k != "buyers_by"} == {
                k: v for k, v in expected_figures.items() if k != "buyers_by"
            }, (key, window)
            assert sum(figures["buyers_by"]["layers"].values()) == figures["buyers"], (key, window)


def wait_consumed(stack: Stack, what: str, workers: list) -> None:
    """Wait until the group has committed every event sent; say where each partition stands if not."""
    wait_until(
        lambda: worker_lag_is_zero(stack), timeout=300, interval=2, what=what, explain=lambda: lag_report(stack, workers)
    )


def _join_and_leave(stack: Stack, kafka_bootstrap: str, tmp_path) -> None:
    settings = stack.settings()
    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * 86_400_000, seed=21)
    events = list(simulator.history(DAYS))
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    thirds = [events[: len(events) // 3], events[len(events) // 3 : 2 * len(events) // 3], events[2 * len(events) // 3 :]]

    def start_worker(name: str):
        return stack.start(name, "worker", PORTRAITS_DATA_DIR=str(tmp_path / name))  # a data dir each, as in production

    first, second = start_worker("worker-a"), start_worker("worker-b")
    stack.start("api", "api")
    stack.wait_api()
    producer = make_producer(settings)
    send_profiles(producer, settings, profiles.values())
    send_events(producer, settings, thirds[0])
    producer.flush()
    wait_consumed(stack, "the first third consumed by two workers", [first, second])

    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())
    probe_user = thirds[0][0]["user_id"]
    wait_until(lambda: client.get(f"/v1/users/{probe_user}/portrait").status_code == 200, timeout=60, what="a first portrait")
    prober = Prober(client, probe_user)
    prober.start()

    third = start_worker("worker-c")  # joins: the group rebalances
    wait_until(lambda: group_members(stack) == 3, timeout=120, what="three workers in the group")
    send_events(producer, settings, thirds[1])
    producer.flush()
    wait_consumed(stack, "the second third consumed by three workers", [first, second, third])
    busy = {w.name: worker_processed(w) for w in (first, second, third)}
    first.stop()  # leaves: its partitions move to the other two
    send_events(producer, settings, thirds[2])
    producer.flush()
    producer.close()
    wait_consumed(stack, "the last third consumed by two workers", [second, third])

    by_user = events_by_user(events)

    counts = {u: len(e) for u, e in by_user.items()}

    def explain() -> str:
        ends = end_offsets(settings, ("events", "profiles"))
        applied = {w.name: applied_offsets(w) for w in (second, third) if w.alive()}
        wrong = portrait_mismatches(client, counts)
        shown = dict(list(wrong.items())[:20])
        return f"{len(wrong)} of {len(counts)} portraits differ (served/expected): {shown}; end offsets {ends}; applied {applied}"

    wait_until(lambda: portraits_hold(client, counts), timeout=120, interval=2, what="every portrait to hold all its events", explain=explain)
    # a profile Faust dropped at a rebalance, the last record of its partition, shows no hole: the worker
    # finds its partition quiet with a record unapplied and reads it again (STALL_SECONDS, 20 s)
    wait_until(
        lambda: not profile_mismatches(client, profiles),
        timeout=90,
        interval=2,
        what="every portrait to hold its profile",
        explain=lambda: f"{profile_mismatches(client, profiles)}; end offsets {end_offsets(settings, ('profiles',))}",
    )
    prober.stopping.set()
    prober.join(5)
    for user, user_events in by_user.items():
        assert_matches_batch(client.get(f"/v1/users/{user}/portrait").json(), user_events, profiles[user])

    # item and category portraits, whichever worker held their partitions when: each fact once. Who the
    # buyers are (layer, segment, age band) is left to test_item_portraits: here models are fitted and a
    # profile can come late, which the batch does not follow
    check_item_portraits(client, events, profiles)

    # the co-purchase counts, whichever worker held the baskets partition when: each basket once
    truth = batch_counts(
        baskets_closed_by_each_partition(events, partitions=settings.partitions, lateness_ms=int(settings.lateness_seconds * 1000)),
        window_days=settings.association_window_days,
    )["category"]

    def counted() -> dict | None:
        response = client.get("/v1/associations", params={"limit": 500})
        body = response.json() if response.status_code == 200 else None
        if body is None or body["baskets"] != truth["baskets"]:
            return None
        return {(p["a"], p["b"]): p["baskets"] for p in body["pairs"]}

    pairs = wait_until(counted, timeout=120, interval=2, what="every basket counted once")
    assert {tuple(sorted(pair)): n for pair, n in pairs.items()} == dict(truth["pairs"])

    assert all(count > 0 for count in busy.values()), f"a worker got no partition: {busy}"
    assert second.alive() and third.alive()
    assert prober.answers > 10 and not prober.failures, prober.failures[:5]
