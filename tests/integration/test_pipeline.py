"""End to end on the real broker: events in, portraits out of the API, equal to a batch computation."""

from __future__ import annotations

import random
import time

import httpx
import orjson

from streams.producer import make_producer, send_profiles
from online_models.simulation import ShopSimulator, bad_events
from streams.topics import state_changelog
from tests.integration.conftest import assert_matches_batch, read_dead_letters, read_topic, wait_until
from tests.portrait_contract import check_published
from tests.reference import events_by_user

USERS = 250
DAYS = 6

def test_portraits_from_the_api_equal_a_batch_computation(stack, kafka_bootstrap):
    settings = stack.settings()
    worker = stack.start("worker", "worker")
    api = stack.start("api", "api")
    stack.wait_api()

    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * 86_400_000, seed=7)
    events = list(simulator.history(DAYS))
    assert len(events) > 3000, len(events)
    # a buyer writes two negative reviews (Chinese, English) with 4 stars: the text speaks, not the stars
    buyer = next(e for e in events if e["type"] == "pay")
    for i, text in enumerate(("质量太差了，用了一天就坏了", "Terrible, broke after one day.")):
        events.append({"event_id": f"review-{i}", "user_id": buyer["user_id"], "type": "review", "ts": buyer["ts"] + (i + 1) * 3_600_000,
                       "item_id": buyer["item_id"], "category": buyer["category"], "rating": 4, "text": text})
    events.sort(key=lambda e: e["ts"])

    # Deliver out of order within the allowed lateness, with redeliveries and hostile records mixed in.
    rng = random.Random(11)
    records = [(e["user_id"].encode(), orjson.dumps(e), e["ts"] + rng.random() * 60_000) for e in events]
    records.sort(key=lambda r: r[2])
    redelivered = rng.sample(range(len(records)), 200)
    for i in sorted(redelivered, reverse=True):
        records.insert(i + rng.randrange(1, 50), records[i])
    bad = bad_events(rng, 40, base_ts_ms=now - 86_400_000)
    for key, value, _ in bad:
        records.insert(rng.randrange(len(records)), (key, value, 0))

    producer = make_producer(settings)
    send_profiles(producer, settings, simulator.profiles())
    topic = settings.topic("events")
    for key, value, _ in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()

    by_user = events_by_user(events)
    expected_counts = {user: len({e["event_id"] for e in evs}) for user, evs in by_user.items()}

    profiles = {p["user_id"]: p for p in simulator.profiles()}
    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())

    def all_users_complete():
        assert worker.alive(), worker.tail()
        for user, count in expected_counts.items():
            response = client.get(f"/v1/users/{user}/portrait")
            if response.status_code != 200 or response.json()["lifetime"]["events"] != count:
                return False
        return True

    wait_until(all_users_complete, timeout=240, interval=2, what="every portrait to hold all its events")

    served_portraits = {}
    for user, user_events in by_user.items():
        served = client.get(f"/v1/users/{user}/portrait")
        check_published(served.content)
        assert_matches_batch(served.json(), user_events, profiles[user])  # review sentiment included
        served_portraits[user] = served.json()

    # reviews were scored from their text at admission, and a recent negative one reads as a churn reason
    sentiments = [p["sentiment"] for p in served_portraits.values()]
    assert sum(s["from_text"] for s in sentiments) >= 2 and sum(s["reviews"] for s in sentiments) >= 10
    unhappy = [p for p in served_portraits.values() if p["sentiment"]["negative_recent"]]
    reviewer = served_portraits[buyer["user_id"]]
    assert reviewer in unhappy and reviewer["sentiment"]["negative_recent"] >= 2 and reviewer["sentiment"]["from_text"] >= 2
    assert "negative_reviewer" in reviewer["tags"]
    if reviewer["sentiment"]["negative_recent"] == 2:  # none of the simulated reviews of this buyer was negative too
        assert [r["item_id"] for r in reviewer["sentiment"]["recent_negative"]] == [buyer["item_id"]] * 2
    for portrait in unhappy:
        latest = portrait["sentiment"]["recent_negative"][0]
        assert any(r.startswith(f"{portrait['sentiment']['negative_recent']} negative review") and latest["at"][:10] in r
                   for r in portrait["churn"]["reasons"]), portrait["churn"]["reasons"]

    # every portrait the worker published is the documented portrait (schemas/portrait.schema.json)
    published = [record.value for record in read_topic(kafka_bootstrap, settings.topic("portraits")) if record.value is not None]
    assert len(published) >= len(by_user)
    for value in published:
        check_published(value)

    missing = client.get("/v1/users/nobody-like-this/portrait")
    assert missing.status_code == 404 and "nobody-like-this" in missing.json()["detail"]

    dead = read_dead_letters(kafka_bootstrap, settings.topic("events.dlq"), len(bad))
    assert len(dead) == len(bad)
    reasons_found = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons_found == sorted(reason for _, _, reason in bad)
    assert sorted(r.value for r in dead) == sorted(value for _, value, _ in bad)
    for record in dead:
        headers = dict(record.headers)
        assert headers["source.topic"].decode() == settings.topic("events")
        assert int(headers["source.offset"]) >= 0

    # A restarted API rebuilds from its store and the compacted topic.
    api.stop()
    stack.start("api-restarted", "api")
    stack.wait_api()
    wait_until(all_users_complete, timeout=60, interval=1, what="restarted API to serve every portrait")

    # The state's changelog is compacted and rolls its segments early, so a rebuild reads about
    # one record per user (streams.topics.CHANGELOG_CONFIGS), not every change since the start.
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    from streams.topics import CHANGELOG_CONFIGS

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        changelog = state_changelog(settings.app_id)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, changelog)])
    finally:
        admin.close()
    entries = {name: entry["value"] for name, entry in described["topic"][changelog].items()}
    assert entries.get("cleanup.policy") == "compact", entries
    for name, value in CHANGELOG_CONFIGS.items():
        assert entries.get(name) == value, (name, entries)


def test_the_topics_command_makes_the_state_changelog_before_any_worker_runs(stack):
    """A worker never meets its changelog half made (seen with no partitions, its table writes fail)."""
    from kafka import KafkaConsumer

    settings = stack.settings()  # the fixture ran ``portraits topics``; no worker has started
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        changelog = consumer.partitions_for_topic(state_changelog(settings.app_id))
        events = consumer.partitions_for_topic(settings.topic("events"))
    finally:
        consumer.close()
    assert changelog and changelog == events, (changelog, events)


def test_create_topics_makes_the_changelog_compacted_with_its_segment_override(stack):
    """The footprint benchmark rolls the changelog's segments fast; every other caller gets the product's."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from streams.topics import CHANGELOG_CONFIGS, create_topics

    settings = stack.settings()
    fast = settings.model_copy(update={"app_id": f"{settings.app_id}-fast"})
    created = create_topics(fast, changelog_segment_ms=5_000)
    assert created == [state_changelog(fast.app_id)]  # the product's topics were there already

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        described = admin.describe_configs([
            ConfigResource(ConfigResourceType.TOPIC, state_changelog(app_id), configs=None)
            for app_id in (settings.app_id, fast.app_id)
        ])
    finally:
        admin.close()
    configs = {name: {key: entry["value"] for key, entry in keys.items()} for name, keys in described["topic"].items()}
    product, bench = configs[state_changelog(settings.app_id)], configs[state_changelog(fast.app_id)]
    assert product["cleanup.policy"] == bench["cleanup.policy"] == "compact"
    assert product["segment.ms"] == CHANGELOG_CONFIGS["segment.ms"]
    assert bench["segment.ms"] == "5000"
    assert bench["min.cleanable.dirty.ratio"] == CHANGELOG_CONFIGS["min.cleanable.dirty.ratio"]
