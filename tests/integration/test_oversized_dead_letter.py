"""On the real broker: a bad record near the events topic's size limit still reaches the dead-letter
topic, cut to fit, with headers that say how big it was and where the whole record is; the topics
carry the record limit they were made with."""

from __future__ import annotations

import random
import time

import httpx
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

import orjson
from streams import topics
from tests.integration.conftest import read_dead_letters, wait_until

#: the value fits the events topic (1 MiB with a record batch's overhead) but not with the dead letter's headers added
VALUE_BYTES = topics.MAX_RECORD_BYTES - 120


def topic_configs(bootstrap: str, name: str) -> dict[str, str]:
    """The configs set on topic ``name`` itself (not the broker's defaults)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        return {key: entry["value"] for key, entry in described["topic"][name].items()}
    finally:
        admin.close()


def test_a_dead_letter_too_big_for_its_topic_is_cut_not_lost(stack, kafka_bootstrap):
    settings = stack.settings()
    for name in (settings.topic(topics.EVENTS), settings.topic(topics.DEAD_LETTERS), topics.state_changelog(settings.app_id)):
        assert topic_configs(kafka_bootstrap, name)["max.message.bytes"] == str(topics.MAX_RECORD_BYTES), name

    worker = stack.start("worker", "worker")
    stack.start("api", "api")
    stack.wait_api()

    rng = random.Random(3)
    huge = b"\xff" + bytes(rng.getrandbits(8) for _ in range(VALUE_BYTES - 1))  # not JSON; random, so no compression helps
    now = int(time.time() * 1000)
    good = {"event_id": "after-the-big-one", "user_id": "u1", "type": "view", "ts": now - 60_000}
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", max_request_size=4 * 1024 * 1024)
    try:
        big = producer.send(settings.topic(topics.EVENTS), key=b"u1", value=huge).get(timeout=30)
        producer.send(settings.topic(topics.EVENTS), key=b"u1", value=orjson.dumps(good)).get(timeout=30)
    finally:
        producer.close()

    (letter,) = read_dead_letters(kafka_bootstrap, settings.topic(topics.DEAD_LETTERS), 1, timeout=120)
    headers = dict(letter.headers)
    assert headers["reason"] == b"malformed_json"
    assert headers["truncated"] == b"value" and headers["original.value.bytes"] == str(len(huge)).encode()
    assert headers["source.topic"].decode() == settings.topic(topics.EVENTS)
    assert int(headers["source.partition"]) == big.partition and int(headers["source.offset"]) == big.offset
    assert letter.key == b"u1" and huge.startswith(letter.value) and len(letter.value) < len(huge)

    # the flow went on: the event after it is counted
    client = httpx.Client(base_url=stack.api, timeout=5, headers=stack.auth_headers())

    def counted() -> bool:
        assert worker.alive(), worker.tail()
        response = client.get("/v1/users/u1/portrait")
        return response.status_code == 200 and response.json()["lifetime"]["events"] == 1

    wait_until(counted, timeout=120, interval=1, what="the event after the oversized one to be counted")
