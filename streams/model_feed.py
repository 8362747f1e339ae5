"""The latest model snapshot, followed from the compacted ``models`` topic by every worker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from online_models.topic_follower import Follower


class ModelFeed(Follower):
    """Keeps the newest value of each key of a small compacted topic in memory (daemon thread), read
    from its beginning at every (re)connection. ``client_options`` are the connection's security
    (:func:`streams.kafka_security.kafka_python_options`)."""

    POLL_MS = 500

    def __init__(self, topic: str, bootstrap_servers: list[str], client_options: Mapping[str, Any] | None = None):
        super().__init__(
            [topic],
            bootstrap_servers,
            name="model-feed",
            consumer_options={
                "client_id": "portraits-model-feed",
                "max_partition_fetch_bytes": 64 * 1024 * 1024,
                "fetch_max_bytes": 64 * 1024 * 1024,
                "allow_auto_create_topics": False,
                **(client_options or {}),
            },
        )
        self.topic = topic
        self.latest: dict[bytes, bytes] = {}

    def apply(self, topic: str, records: list) -> None:
        """Keep each key's newest value; a tombstone forgets the key."""
        for record in records:
            if record.value is None:
                self.latest.pop(record.key, None)
            else:
                self.latest[record.key] = record.value
