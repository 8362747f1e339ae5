"""On the real broker: a benchmark run leaves none of its topics behind, and touches no other topic."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit import kafka_io  # noqa: E402
from benchkit.common import Run  # noqa: E402


def topic_names(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_run_deletes_the_topics_of_its_prefix_and_no_other(kafka_bootstrap, tmp_path):
    tag = uuid.uuid4().hex[:8]
    run = Run.create(kafka_bootstrap, "cleanup", tmp_path, f"bench-{tag}-", 2)
    neighbour = f"bench-{tag}x-events"  # shares the prefix's text but for its last character
    kafka_io.ensure_topics(kafka_bootstrap, run.prefix, 2)
    kafka_io.ensure_topics(kafka_bootstrap, f"bench-{tag}x-", 2)
    made = {name for name in topic_names(kafka_bootstrap) if name.startswith(run.prefix)}
    assert run.topic("events") in made and neighbour in topic_names(kafka_bootstrap)

    run.drop_topics()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(name.startswith(run.prefix) for name in topic_names(kafka_bootstrap)):
        time.sleep(0.5)
    left = topic_names(kafka_bootstrap)
    assert not {name for name in left if name.startswith(run.prefix)}
    assert neighbour in left
    kafka_io.delete_topics(kafka_bootstrap, f"bench-{tag}x-")
