"""How every Kafka client of the product connects: the one place that turns settings into client options.

With ``PORTRAITS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT`` (the default) clients connect as they always
did. With ``SASL_SSL`` each process authenticates as one SASL user
(``PORTRAITS_KAFKA_SASL_USERNAME`` / ``_PASSWORD``, SCRAM-SHA-512 by default) over TLS, checking the
broker's certificate and host name against ``PORTRAITS_KAFKA_CA_FILE`` (the system's CAs when unset).

Three kinds of client, three shapes of the same options:

* :func:`aiokafka_options` for aiokafka's consumers and producers (the hole reader);
* :func:`kafka_python_options` for kafka-python's producers, consumers and admin clients (the
  producers, ``portraits topics``, the followers of compacted topics — the model feed and the
  API's store — and the API's event sink);
* :func:`streams.kafka_security.faust_credentials` for the Faust app's ``broker_credentials`` (its
  consumer, producer and topic creation, so the trainer and the engines' batches too), built from
  the same TLS context.

This module imports no Kafka client library, so the API and the pure core can use it without the
workers' modules.

>>> from online_models.settings import Settings
>>> aiokafka_options(Settings()), kafka_python_options(Settings())
({'security_protocol': 'PLAINTEXT'}, {'security_protocol': 'PLAINTEXT'})
>>> secured = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="worker", kafka_sasl_password="s3cret")
>>> options = aiokafka_options(secured)
>>> options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"]
('SASL_SSL', 'SCRAM-SHA-512', 'worker')
>>> options["ssl_context"].check_hostname
True
"""

from __future__ import annotations

import ssl
from typing import Any

from online_models.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context that checks the broker's certificate and host name; None without TLS.

    A fresh context per client: kafka-python and aiokafka each hold theirs in their own threads.
    """
    if settings.kafka_security_protocol != "SASL_SSL":
        return None
    cafile = str(settings.kafka_ca_file) if settings.kafka_ca_file is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _sasl(settings: Settings) -> dict[str, Any]:
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        "ssl_context": ssl_context(settings),
    }


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of security for ``AIOKafkaConsumer`` / ``AIOKafkaProducer``."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    return _sasl(settings)


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of security for kafka-python's ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    # the context carries the CA and the host-name check; kafka-python then ignores its ssl_* file options
    return {**_sasl(settings), "ssl_check_hostname": True}
