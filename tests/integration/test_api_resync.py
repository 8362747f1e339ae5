"""An API down longer than the portraits topic keeps its tombstones: on its return it drops the users the topic lost.

The portraits topic is given a delete.retention.ms of one second and fast segments, so the
broker's cleaner removes an erasure's tombstone (with the portrait it deleted) while the API is
stopped; the restarted API must notice that its stored position is older than that window, read
the topic again and drop the erased user from lookups, audiences and the overview's totals.
"""

from __future__ import annotations

import re
import time

import httpx
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from online_models.erasure import ErasureRequest
from streams.producer import make_producer, send_events, send_profiles
from tests.integration.conftest import read_topic, wait_until
from tests.integration.test_erasure import ERASED, USERS, history, profiles

#: the portraits topic keeps a tombstone one second and rolls a segment every half second
FAST_CLEANING = {
    "delete.retention.ms": "1000",
    "segment.ms": "500",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}


def alter_topic(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def held() -> bool:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        values = {key: entry["value"] for key, entry in described["topic"][name].items()}
        return all(values.get(key) == value for key, value in configs.items())

    try:
        assert admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]) == {"topic": {name: "OK"}}
        wait_until(held, timeout=30, interval=0.5, what=f"the configs of {name}")
    finally:
        admin.close()


def metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def test_an_api_back_after_the_tombstones_were_cleaned_drops_the_erased_user(stack, kafka_bootstrap):
    settings = stack.settings()
    portraits_topic = settings.topic("portraits")
    alter_topic(kafka_bootstrap, portraits_topic, FAST_CLEANING)
    worker = stack.start("worker", "worker")
    api = stack.start("api", "api")
    stack.wait_api()

    now = int(time.time() * 1000)
    events = history(now)
    producer = make_producer(settings)
    send_profiles(producer, settings, profiles(now))
    send_events(producer, settings, events)
    counts = {user: sum(e["user_id"] == user for e in events) for user in USERS}
    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))

    def served() -> bool:
        assert worker.alive(), worker.tail()
        for user, n in counts.items():
            response = reader.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200 or response.json()["lifetime"]["events"] != n or not response.json()["profile"]:
                return False
        return reader.get("/v1/overview").json()["users"] == len(USERS)

    wait_until(served, timeout=180, interval=1, what="every portrait served")
    api.stop()
    reader.close()

    # the user is erased while the API is down (it would have written this request itself)
    request = ErasureRequest(request_id="r-while-down", user_id=ERASED, requested_at=int(time.time() * 1000))
    producer.send(settings.topic("erasures"), key=ERASED.encode(), value=request.to_bytes())
    producer.flush()

    def latest_of_erased():
        return [r for r in read_topic(kafka_bootstrap, portraits_topic) if r.key == ERASED.encode()]

    tombstoned = wait_until(lambda: (records := latest_of_erased()) and records[-1].value is None and records,
                            timeout=120, interval=1, what="the worker's tombstone for the erased user")
    partition = tombstoned[-1].partition

    # tombstones of a key no one has, appended to the user's partition now and then, roll its segments
    # and keep it dirty until the cleaner has removed the tombstone with every portrait of the user before it
    def cleaned() -> bool:
        assert worker.alive(), worker.tail()
        for _ in range(50):
            producer.send(portraits_topic, key=b"-filler-", value=None, partition=partition)
        producer.flush()
        return not latest_of_erased()

    wait_until(cleaned, timeout=180, interval=2, what="the cleaner to remove the erased user's tombstone")

    stack.start("api", "api")
    stack.wait_api()
    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers("test-reader"))
    wait_until(lambda: reader.get("/healthz").json()["caught_up"], timeout=120, interval=0.5, what="the API caught up")

    assert reader.get(f"/v1/users/{ERASED}/portrait").status_code == 404
    kept = sorted(set(USERS) - {ERASED})
    for user in kept:
        response = reader.get(f"/v1/users/{user}/portrait")
        assert response.status_code == 200 and response.json()["lifetime"]["events"] == counts[user], response.text
    everyone = reader.post("/v1/audiences/query", json={"limit": 100, "exact_count": True}).json()
    assert sorted(m["user_id"] for m in everyone["users"]) == kept and everyone["count"] == len(kept)
    by_gender = reader.post("/v1/audiences/query", json={"filter": {"attributes": {"gender": ["female"]}}, "limit": 100}).json()
    assert ERASED not in {m["user_id"] for m in by_gender["users"]} and by_gender["count"] == len(kept)
    overview = reader.get("/v1/overview").json()
    assert overview["users"] == len(kept)
    assert sum(s["users"] for s in overview["genders"]) == len(kept)
    text = httpx.get(f"{stack.api}/metrics", timeout=10).text
    assert metric(text, "portraits_api_follower_resyncs_total") == 1, text
    assert metric(text, "portraits_api_follower_resync_removed_total") == 1, text
    assert metric(text, "portraits_api_portraits_stored") == len(kept)
    producer.close()
