"""The product's Kafka topics, their partitions and cleanup policies (short names: :mod:`online_models.topic_names`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from online_models.topic_names import (  # noqa: F401  (re-exported: the worker's modules read them here)
    ASSOCIATIONS,
    BASKETS,
    CHURN_ALERTS,
    DEAD_LETTERS,
    ENGINE_OUTPUTS,
    ERASURES,
    EVENTS,
    ITEM_ENGINE_OUTPUTS,
    ITEM_FACTS,
    ITEM_PORTRAITS,
    MODEL_TRAINING,
    MODELS,
    PORTRAITS,
    PROFILES,
    TICKS,
)
from streams import kafka_security
from streams.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its short name, partition count (None: the keyed default) and configs."""

    name: str
    partitions: int | None = None
    configs: dict[str, str] = field(default_factory=dict)


MAX_MODEL_BYTES = 32 * 1024 * 1024
#: the largest record (batch) the product's topics take, set on each so it does not hang on the
#: broker's default; the engine keeps a user's state (online_models.processor.MAX_STATE_BYTES) and
#: a dead letter (MAX_DEAD_LETTER_BYTES, plus headers) below it, and the models topic has its own
MAX_RECORD_BYTES = 1024 * 1024
RECORD_LIMIT = {"max.message.bytes": str(MAX_RECORD_BYTES)}
#: segments closed every 10 minutes and compacted early: a compacted topic then holds about one
#: record per key; the state table's changelog gets these too (Faust makes it compacted itself),
#: with the record limit
CHANGELOG_CONFIGS = {"min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000", **RECORD_LIMIT}
COMPACTED = {"cleanup.policy": "compact", **CHANGELOG_CONFIGS}

#: the workers' state table; Faust names its changelog topic ``{app_id}-{table}-changelog``
STATE_TABLE = "portrait-state"
#: the workers' table of item and category states (online_models.item_portrait)
ITEM_STATE_TABLE = "item-state"


def state_changelog(app_id: str, table: str = STATE_TABLE) -> str:
    """The full name of a state table's changelog topic of the deployment ``app_id`` (default: the users' table)."""
    return f"{app_id}-{table}-changelog"


TOPICS = (
    TopicSpec(EVENTS, configs=RECORD_LIMIT),
    TopicSpec(PROFILES, configs=COMPACTED),
    TopicSpec(DEAD_LETTERS, partitions=1, configs={"retention.ms": str(30 * 86_400_000), **RECORD_LIMIT}),
    TopicSpec(PORTRAITS, configs=COMPACTED),
    TopicSpec(CHURN_ALERTS, configs={"retention.ms": str(90 * 86_400_000), **RECORD_LIMIT}),
    # one partition: a single trainer sees every sample, in order
    TopicSpec(MODEL_TRAINING, partitions=1, configs={"retention.ms": str(7 * 86_400_000), **RECORD_LIMIT}),
    TopicSpec(MODELS, partitions=1, configs={**COMPACTED, "max.message.bytes": str(MAX_MODEL_BYTES)}),
    # wall-clock ticks, co-partitioned with events, that move idle partitions' time in live mode
    TopicSpec(TICKS, configs={"retention.ms": str(3_600_000), **RECORD_LIMIT}),
    # erasure requests, keyed and partitioned like events so each reaches the worker holding the user;
    # kept a week (they name the user), long enough for a stopped worker to come back and act on them
    TopicSpec(ERASURES, configs={"retention.ms": str(7 * 86_400_000), **RECORD_LIMIT}),
    # events re-keyed by item and category for the item engines (a repartition topic: as many
    # partitions as events, so item partition N goes with user partition N); no user id in them
    TopicSpec(ITEM_FACTS, configs={"retention.ms": str(7 * 86_400_000), **RECORD_LIMIT}),
    # item and category portraits, the API follows them as it follows portraits
    TopicSpec(ITEM_PORTRAITS, configs=COMPACTED),
    # closed baskets; one partition: a single aggregator counts every basket (their ids name no user)
    TopicSpec(BASKETS, partitions=1, configs={"retention.ms": str(7 * 86_400_000), **RECORD_LIMIT}),
    # the aggregator's snapshots of the co-purchase counts: its state, and the summary the API serves
    TopicSpec(ASSOCIATIONS, partitions=1, configs={**COMPACTED, "max.message.bytes": str(MAX_MODEL_BYTES)}),
)


def create_topics(
    settings: Settings,
    *,
    timeout_s: float = 60.0,
    with_state_changelog: bool = True,
    changelog_segment_ms: int | None = None,
) -> list[str]:
    """Create the missing topics; return the names created. Waits for the broker up to ``timeout_s``.

    The state changelogs of ``settings.app_id`` (the users' and the items' tables) are made here
    too, as Faust would make them: a worker whose consumer read the cluster's metadata just before
    Faust made one sees it with no partitions until that metadata is refreshed (5 minutes), and
    every table write fails meanwhile. ``changelog_segment_ms`` rolls its segments faster than the product's
    10 minutes (the footprint benchmark has the broker compact it within a run).
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.bootstrap_servers,
                client_id="portraits-topics",
                **kafka_security.kafka_python_options(settings),
            )
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
    try:
        existing = set(admin.list_topics())
        specs = {settings.topic(spec.name): spec for spec in TOPICS}
        if with_state_changelog:
            configs = COMPACTED if changelog_segment_ms is None else {**COMPACTED, "segment.ms": str(changelog_segment_ms)}
            for table in (STATE_TABLE, ITEM_STATE_TABLE):
                specs[state_changelog(settings.app_id, table)] = TopicSpec(table, configs=configs)
        wanted = [
            NewTopic(
                name=name,
                num_partitions=spec.partitions or settings.partitions,
                replication_factor=1,
                topic_configs=spec.configs,
            )
            for name, spec in specs.items()
            if name not in existing
        ]
        created = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        _wait_until_served(admin, list(specs), deadline)
        return created
    finally:
        admin.close()


def _wait_until_served(admin, names: list[str], deadline: float) -> None:
    """Wait until the broker's metadata has every topic with a leader for each partition.

    A consumer that subscribes earlier (on a broker that has just started, metadata lags the
    creation) is told the topic is missing, and Faust then ignores it for good.
    """
    from kafka.errors import KafkaError

    while True:
        try:
            described = admin.describe_topics(names)
            ready = {
                topic.get("name", topic.get("topic"))
                for topic in described
                if not topic.get("error_code") and topic.get("partitions")
                and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in topic["partitions"])
            }
        except KafkaError:
            ready = set()
        if ready >= set(names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not served by the broker in time: {sorted(set(names) - ready)}")
        time.sleep(0.5)
