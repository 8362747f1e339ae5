"""Sending events and profiles to Kafka with kafka-python, keyed by user id."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

import orjson

from streams import kafka_security, topics
from streams.settings import Settings


def make_producer(settings: Settings, *, timeout_s: float = 60.0):
    """A kafka-python producer for the product's topics; waits for the broker up to ``timeout_s``."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers,
                acks="all",
                linger_ms=20,
                batch_size=256 * 1024,
                max_request_size=4 * 1024 * 1024,
                # retried until delivery_timeout_ms (2 minutes): a broker restart loses nothing
                client_id="portraits-producer",
                **kafka_security.kafka_python_options(settings),
            )
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def send_records(producer, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send raw (key, value) records to ``topic`` and wait until Kafka has them all; return how many.

    A record Kafka never acknowledged (after the producer's retries) raises its error
    here rather than being lost without a word.
    """
    failures: list[Exception] = []
    sent = 0
    for key, value in records:
        producer.send(topic, key=key, value=value).add_errback(failures.append)
        sent += 1
    producer.flush()
    if failures:
        raise failures[0]
    return sent


def encode_events(events: Iterable[dict]) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) records for event or profile dicts, keyed by their user id."""
    for event in events:
        yield event["user_id"].encode(), orjson.dumps(event)


def send_events(producer, settings: Settings, events: Iterable[dict]) -> int:
    """Send event dicts to the events topic."""
    return send_records(producer, settings.topic(topics.EVENTS), encode_events(events))


def send_profiles(producer, settings: Settings, profiles: Iterable[dict]) -> int:
    """Send profile dicts to the profiles topic."""
    return send_records(producer, settings.topic(topics.PROFILES), encode_events(profiles))
