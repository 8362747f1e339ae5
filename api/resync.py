"""When the API's store may have missed deletions of a compacted topic, and the re-read that mends it.

A compacted topic keeps a tombstone for its ``delete.retention.ms`` (Kafka's default: one
day) and then drops it with every older record of the key. A follower that resumes from
its stored offsets after that window may find neither the tombstone nor the value it
deleted: the key stays in the store for good (an erased user's portrait, its index
postings and its share of the totals). A tombstone appended at wall time ``t`` is kept at
least until ``t + delete.retention.ms`` (the cleaner counts from when it first cleaned the
segment, later still), so a store that had read every record of a partition up to wall time
``s`` (its *sync time*, kept per partition) misses nothing when it resumes before
``s + delete.retention.ms``; a share of the window (:data:`RESUME_SHARE`) is kept back for the
catch-up read itself.

A partition whose stored offset is still its end offset has had no record appended, so it
has missed nothing however long the API was down. Otherwise the store is *stale* when the
sync time is older than the window, unknown (a store written before sync times were
kept), when the stored offset lies before the partition's log start offset (records were
deleted unread) or past its end (the topic was made anew), or when an earlier re-read was
cut short.

A stale compacted topic is read again from its first offsets (:class:`Resync`): records
below the stored offsets only mark their key as present in the topic (the store already
holds their effect), later records are applied as always and marked too; once every
partition has reached the end offsets taken when the re-read began, every key of the space
the topic no longer holds is removed through the space's handler (so a portrait goes with
its postings and its share of the aggregates).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Kafka's default ``delete.retention.ms``, used when the topic's own cannot be read
DEFAULT_DELETE_RETENTION_MS = 86_400_000
#: the share of ``delete.retention.ms`` a store may lag (by its sync time) and still resume as it is
RESUME_SHARE = 0.9


@dataclass(frozen=True)
class Guarantee:
    """What a topic's configuration promises a reader that comes back later."""

    compacted: bool
    delete_retention_ms: int = DEFAULT_DELETE_RETENTION_MS


def read_guarantees(bootstrap_servers: list[str], client_options: dict, topics: list[str]) -> dict[str, Guarantee]:
    """The cleanup policy and ``delete.retention.ms`` of each topic, from the broker (DescribeConfigs).

    A topic whose configuration cannot be read is taken as compacted with Kafka's default
    window (a warning says so): a needless re-read costs time, a missed deletion serves an
    erased user.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    fallback = {topic: Guarantee(compacted=True) for topic in topics}
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="portraits-api-configs", **client_options)
    except Exception as error:
        log.warning("cannot read the followed topics' configs (%s: %s); taking each as compacted with "
                    "delete.retention.ms %d", type(error).__name__, error, DEFAULT_DELETE_RETENTION_MS)
        return fallback
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in topics], config_filter="all"
        )
    except Exception as error:
        log.warning("cannot read the followed topics' configs (%s: %s; the API's Kafka user needs DescribeConfigs "
                    "on them); taking each as compacted with delete.retention.ms %d",
                    type(error).__name__, error, DEFAULT_DELETE_RETENTION_MS)
        return fallback
    finally:
        admin.close()
    result = dict(fallback)
    for topic, entries in (described.get("topic") or {}).items():
        values = {name: (entry or {}).get("value") for name, entry in (entries or {}).items()}
        policy = values.get("cleanup.policy")
        retention = values.get("delete.retention.ms")
        if policy is None:
            continue
        result[topic] = Guarantee(
            compacted="compact" in str(policy).split(","),
            delete_retention_ms=int(retention) if retention is not None else DEFAULT_DELETE_RETENTION_MS,
        )
    return result


def stale_reason(
    guarantee: Guarantee,
    stored: dict[int, int],
    synced: dict[int, int],
    beginning: dict[int, int],
    end: dict[int, int],
    now_ms: int,
    *,
    interrupted: bool = False,
) -> str | None:
    """Why the store may have missed deletions of this topic, or None when resuming is safe.

    ``stored`` the next offset the store would read per partition, ``synced`` each partition's
    sync time, ``beginning``/``end`` the partitions' log start and end offsets now.

    >>> g = Guarantee(compacted=True, delete_retention_ms=1000)
    >>> stale_reason(g, {0: 5}, {0: 10_000}, {0: 0}, {0: 9}, now_ms=10_500) is None
    True
    >>> stale_reason(g, {0: 5}, {0: 10_000}, {0: 0}, {0: 9}, now_ms=12_000)
    'partition 0 was last read to its end 2.0 s ago, past 90% of delete.retention.ms (1.0 s)'
    >>> stale_reason(g, {0: 9}, {0: 10_000}, {0: 0}, {0: 9}, now_ms=99_000) is None  # nothing appended since
    True
    >>> stale_reason(g, {}, {}, {0: 0}, {0: 9}, now_ms=0) is None  # a new store reads from the start anyway
    True
    >>> stale_reason(Guarantee(compacted=False), {0: 5}, {}, {0: 0}, {0: 9}, now_ms=0) is None
    True
    """
    if not guarantee.compacted:
        return None
    if interrupted:
        return "a re-read from the start was cut short"
    window_ms = guarantee.delete_retention_ms * RESUME_SHARE
    for partition in sorted(end):
        offset = stored.get(partition, 0)
        if offset == 0 or offset == end[partition]:
            continue  # nothing read yet (read from the start now), or nothing appended since
        if offset > end[partition]:
            return f"partition {partition}'s stored offset {offset} is past its end {end[partition]}: the topic was made anew"
        if offset < beginning.get(partition, 0):
            return f"partition {partition}'s stored offset {offset} is before its log start {beginning[partition]}"
        since = synced.get(partition)
        if since is None:
            return f"partition {partition} has no record of when it was last read to its end"
        if now_ms - since > window_ms:
            return (
                f"partition {partition} was last read to its end {(now_ms - since) / 1000:.1f} s ago, past "
                f"{RESUME_SHARE:.0%} of delete.retention.ms ({guarantee.delete_retention_ms / 1000:.1f} s)"
            )
    return None


@dataclass
class Resync:
    """One topic's re-read from its first offsets (see the module's docstring)."""

    topic: str
    space: bytes
    #: per partition: records below this offset only mark their key; from it on they are applied
    resume: dict[int, int]
    #: per partition: the end offset when the re-read began; the sweep runs once every position reaches it
    targets: dict[int, int]
    started_ms: int
    reason: str
    marked: int = field(default=0)

    def split(self, partition: int, records: list[tuple]) -> tuple[list[tuple], list[tuple]]:
        """(records that only mark, records to apply) of one partition's batch, in offset order.

        >>> r = Resync("t", b"p:", resume={0: 2}, targets={0: 4}, started_ms=0, reason="")
        >>> [[rec[1] for rec in part] for part in r.split(0, [(0, 0), (0, 1), (0, 2), (0, 3)])]
        [[0, 1], [2, 3]]
        """
        start = self.resume.get(partition, 0)
        cut = next((i for i, record in enumerate(records) if record[1] >= start), len(records))
        return records[:cut], records[cut:]

    def reached(self, positions: dict[int, int]) -> bool:
        """Whether every partition has been read up to its target."""
        return all(positions.get(partition, 0) >= target for partition, target in self.targets.items())
