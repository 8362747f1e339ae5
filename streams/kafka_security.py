"""The workers' Kafka security: the client options of :mod:`online_models.kafka_security` (re-exported
here), and :func:`faust_credentials`, the same connection for the Faust app.

>>> from streams.settings import Settings
>>> faust_credentials(Settings()) is None
True
>>> secured = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="worker", kafka_sasl_password="s3cret")
>>> credentials = faust_credentials(secured)
>>> credentials.username, credentials.mechanism.value, credentials.ssl_context.check_hostname
('worker', 'SCRAM-SHA-512', True)
"""

from __future__ import annotations

from online_models.kafka_security import aiokafka_options, kafka_python_options, ssl_context
from streams.settings import Settings

__all__ = ["aiokafka_options", "faust_credentials", "kafka_python_options", "ssl_context"]


def faust_credentials(settings: Settings):
    """Faust's ``broker_credentials``: ``SASLCredentials`` with a TLS context, or None for plaintext."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    from faust.auth import SASLCredentials

    return SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=ssl_context(settings),
        mechanism=settings.kafka_sasl_mechanism,
    )
