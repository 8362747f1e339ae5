"""The one place that turns PORTRAITS_KAFKA_* settings into the options of every Kafka client."""

from __future__ import annotations

import inspect
import ssl

import certifi
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from pydantic import ValidationError

from online_models import kafka_security
from online_models.settings import Settings
from streams.kafka_security import faust_credentials


def secured(**extra) -> Settings:
    return Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="producer",
        kafka_sasl_password="pw-0123456789",
        kafka_ca_file=certifi.where(),
        **extra,
    )


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol():
    settings = Settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_security.aiokafka_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert kafka_security.kafka_python_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None
    assert kafka_security.ssl_context(settings) is None


def test_the_options_are_built_without_importing_a_kafka_client_and_the_workers_read_the_same():
    import subprocess
    import sys

    import streams.kafka_security

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, online_models.kafka_security; print(sorted(m for m in sys.modules "
         "if m.split('.')[0] in ('kafka', 'aiokafka', 'faust', 'streams')))"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()
    assert loaded == "[]"
    for name in ("aiokafka_options", "kafka_python_options", "ssl_context"):
        assert getattr(streams.kafka_security, name) is getattr(kafka_security, name)


def test_sasl_ssl_options_for_aiokafka_and_kafka_python():
    settings = secured()
    for options in (kafka_security.aiokafka_options(settings), kafka_security.kafka_python_options(settings)):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "producer"
        assert options["sasl_plain_password"] == "pw-0123456789"
        context = options["ssl_context"]
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.get_ca_certs(), "the CA file's certificates are loaded"
    assert kafka_security.kafka_python_options(settings)["ssl_check_hostname"] is True
    # a context of its own per client
    assert kafka_security.aiokafka_options(settings)["ssl_context"] is not kafka_security.aiokafka_options(settings)["ssl_context"]


def test_the_mechanism_is_a_setting():
    assert kafka_security.aiokafka_options(secured(kafka_sasl_mechanism="SCRAM-SHA-256"))["sasl_mechanism"] == "SCRAM-SHA-256"
    with pytest.raises(ValidationError):
        secured(kafka_sasl_mechanism="PLAIN")


def test_every_option_is_one_the_client_libraries_take():
    """A misspelt option would be refused (kafka-python) or dropped; each client's own list has every key."""
    settings = secured()
    python_keys = set(kafka_security.kafka_python_options(settings))
    for client in (KafkaProducer, KafkaConsumer, KafkaAdminClient):
        assert python_keys <= set(client.DEFAULT_CONFIG), (client.__name__, python_keys - set(client.DEFAULT_CONFIG))
    aio_keys = set(kafka_security.aiokafka_options(settings))
    for client in (AIOKafkaConsumer, AIOKafkaProducer):
        params = set(inspect.signature(client).parameters)
        assert aio_keys <= params, (client.__name__, aio_keys - params)


def test_faust_gets_the_same_connection_as_the_other_clients():
    settings = secured()
    credentials = faust_credentials(settings)
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust hands its consumer, producer and admin calls
    expected = kafka_security.aiokafka_options(settings)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {k: v for k, v in expected.items() if k != "ssl_context"}
    assert auth["ssl_context"].check_hostname and auth["ssl_context"].get_ca_certs()


def test_the_password_stays_out_of_reprs():
    settings = secured()
    assert "pw-0123456789" not in repr(settings)
    assert "pw-0123456789" not in repr(faust_credentials(settings))


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "PORTRAITS_KAFKA_SASL_USERNAME and PORTRAITS_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "w"}, "PORTRAITS_KAFKA_SASL_PASSWORD is not set"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "w", "kafka_sasl_password": " "}, "PASSWORD"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "w", "kafka_sasl_password": "p",
             "kafka_ca_file": "/nonexistent/ca.pem"},
            "is not a file",
        ),
        ({"kafka_sasl_username": "w", "kafka_sasl_password": "p"}, "PLAINTEXT"),
        ({"kafka_security_protocol": "SSL"}, "kafka_security_protocol"),
    ],
)
def test_an_incomplete_or_contradictory_configuration_stops_at_start(fields, says):
    with pytest.raises(ValidationError) as raised:
        Settings(**fields)
    assert says in str(raised.value)


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORTRAITS_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PORTRAITS_KAFKA_SASL_USERNAME", "api")
    monkeypatch.setenv("PORTRAITS_KAFKA_SASL_PASSWORD", "from-env")
    monkeypatch.setenv("PORTRAITS_KAFKA_CA_FILE", certifi.where())
    options = kafka_security.kafka_python_options(Settings())
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("api", "from-env")


# ------------------------------------------------- every client of the product takes them

class Captured(Exception):
    """Raised by a stand-in client constructor once it has recorded its keyword arguments."""


def capture(monkeypatch, owner, name: str) -> list[dict]:
    """Replace ``owner.name`` (a client class) by a stand-in recording each construction's kwargs."""
    calls: list[dict] = []

    def constructor(*args, **kwargs):
        calls.append(kwargs)
        raise Captured(name)

    monkeypatch.setattr(owner, name, constructor)
    return calls


def assert_secured(kwargs: dict, user: str = "producer") -> None:
    assert kwargs["security_protocol"] == "SASL_SSL", kwargs
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_username"] == user
    assert kwargs["sasl_plain_password"] == "pw-0123456789"
    assert kwargs["ssl_context"].get_ca_certs()


def test_the_producers_and_topic_creation_are_built_with_the_options(monkeypatch):
    import kafka
    import kafka.admin

    from streams.producer import make_producer
    from streams.topics import create_topics

    producers = capture(monkeypatch, kafka, "KafkaProducer")
    with pytest.raises(Captured):
        make_producer(secured(), timeout_s=0)
    admins = capture(monkeypatch, kafka.admin, "KafkaAdminClient")
    with pytest.raises(Captured):
        create_topics(secured(), timeout_s=0)
    assert_secured(producers[0])
    assert_secured(admins[0])


def test_the_model_feed_and_the_hole_reader_of_the_engines_are_built_with_the_options(monkeypatch):
    import asyncio

    import kafka

    from online_models.topic_follower import Follower
    from streams import faust_repairs
    from streams.engines import Engines, ItemEngines

    engines = Engines(app=None, settings=secured(), writer=None)
    assert isinstance(engines.feed, Follower)
    feed_consumers = capture(monkeypatch, kafka, "KafkaConsumer")
    with pytest.raises(Captured):
        engines.feed.consumer()  # what the feed's thread reads with, at every (re)connection
    assert_secured(feed_consumers[0])
    assert feed_consumers[0]["client_id"] == "portraits-model-feed"
    hole_consumers = capture(monkeypatch, faust_repairs, "AIOKafkaConsumer")
    with pytest.raises(Captured):
        asyncio.run(engines.skipped.log_start("events", 0))
    assert_secured(hole_consumers[0])
    items = ItemEngines(app=None, settings=secured(), writer=None)  # the item engines read their holes alike
    with pytest.raises(Captured):
        asyncio.run(items.skipped.log_start("item-facts", 0))
    assert_secured(hole_consumers[1])


def test_the_api_follower_and_event_sink_are_built_with_the_options(monkeypatch, tmp_path):
    import kafka
    from fastapi.testclient import TestClient

    from api.app import create_app, open_store
    from api.ingest import EventLogUnavailable, EventSink
    from api.store import TopicFollower

    consumers = capture(monkeypatch, kafka, "KafkaConsumer")  # before the follower's thread starts: no connection
    store = open_store(tmp_path / "store")
    try:
        with TestClient(create_app(secured(data_dir=tmp_path), tokens={"t": "admin"}, store=store, follow=True)) as client:
            follower = client.app.state.follower
            assert isinstance(follower, TopicFollower)
            with pytest.raises(Captured):
                follower.consumer()  # what the follower's thread reads with, at every (re)connection
    finally:
        store.close()
    assert_secured(consumers[0])
    assert consumers[0]["client_id"] == "portraits-api"

    producers = capture(monkeypatch, kafka, "KafkaProducer")
    with pytest.raises((Captured, EventLogUnavailable)):
        EventSink(secured()).write([(b"u1", b"{}")])
    assert_secured(producers[0])
