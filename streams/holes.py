"""Records Faust skipped: read them from the broker, then let Faust's commits pass them.

Faust 0.15.3 can skip records of a partition it keeps reading: a record whose
hand-over to the stream is cut short by a rebalance is dropped while the read
offset moves on, records fetched before a rebalance are skipped as of an old
generation, a jump in offsets is acknowledged as a gap, and a worker taking over
a partition starts at the committed offset, which can lie past the last progress
record (or, with no progress yet, past the partition's start). The partition's
progress knows the last offset applied, so a record past it reveals the hole;
:class:`SkippedRecordReader` reads the records in between with a consumer of no
group (sending Faust's own consumer back would upset its acknowledgements), and
:func:`settle` tells Faust's commit bookkeeping they are handled, or its commits
would stop at the first record it never acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

#: most seconds the records of one hole may take to read (the broker may be restarting)
HOLE_READ_TIMEOUT_SECONDS = 120.0


class SkippedRecordReader:
    """Reads given offsets of a partition from the broker, outside any consumer group.

    The consumer is made on first use; offsets the broker no longer holds
    (retention) are not waited for. Records come one by one, so a long hole (a
    partition read from its start) is never held in memory.
    """

    def __init__(self, bootstrap_servers: str | list[str], client_id: str, timeout_s: float = HOLE_READ_TIMEOUT_SECONDS):
        self.bootstrap_servers, self.client_id, self.timeout_s = bootstrap_servers, client_id, timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def _consumer_of(self, tp: TopicPartition) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=self.client_id,
            )
            await consumer.start()
            self._consumer = consumer
        self._consumer.assign([tp])
        return self._consumer

    async def log_start(self, topic: str, partition: int) -> int:
        """The first offset of the partition the broker still holds."""
        tp = TopicPartition(topic, partition)
        consumer = await self._consumer_of(tp)
        return (await consumer.beginning_offsets([tp]))[tp]

    async def read(self, topic: str, partition: int, first: int, last: int) -> AsyncIterator:
        """The records at offsets ``first`` to ``last`` (inclusive) that the broker still holds, in order.

        Fails when no record comes for ``timeout_s`` while some are still to read.
        """
        tp = TopicPartition(topic, partition)
        start = await self.log_start(topic, partition)
        consumer = self._consumer
        if start > first:
            log.warning("%s: offsets %s to %s are gone from the broker (retention)", tp, first, start - 1)
            first = start
        consumer.seek(tp, first)
        deadline = time.monotonic() + self.timeout_s
        # the position, not the last record, tells the end: offsets may hold no record (transaction markers)
        while first <= last and await consumer.position(tp) <= last:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tp}: no record of offsets {first} to {last} came within {self.timeout_s} s")
            batch = await consumer.getmany(tp, timeout_ms=1000)
            for record in batch.get(tp, []):
                if record.offset > last:
                    return
                deadline = time.monotonic() + self.timeout_s
                yield record

    async def stop(self) -> None:
        """Close the consumer, if one was made."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()


async def settle(consumer, tp, first: int, last: int) -> None:
    """Register offsets ``first`` to ``last`` of ``tp`` as handled in Faust ``consumer``'s commit bookkeeping.

    Faust commits a partition up to the first offset it never acknowledged; records
    applied from :class:`SkippedRecordReader` were never acknowledged by it. They are
    registered as a gap, as Faust itself does when offsets jump. Offsets Faust did
    acknowledge (a record it skipped as fetched before a rebalance) are left out: an
    offset both acknowledged and in a gap would be counted twice, and Faust's commit
    would then pass such offsets one per commit.

    >>> import asyncio, faust
    >>> from faust.types import TP
    >>> consumer = faust.App("holes-doctest", broker="kafka://127.0.0.1:1").consumer
    >>> tp = TP("events", 0)
    >>> consumer._committed_offset[tp] = 520
    >>> for offset in [525, *range(535, 540)]:  # acknowledged around a hole of 520 to 534
    ...     consumer._acked[tp].append(offset)
    ...     consumer._acked_index[tp].add(offset)
    >>> consumer._new_offset(tp) is None  # Faust alone would commit nothing more
    True
    >>> asyncio.run(settle(consumer, tp, 520, 534))
    >>> sorted((gap.begin, gap.end) for gap in consumer._gap[tp])  # 520 is the committed offset itself
    [(521, 525), (526, 535)]
    >>> consumer._new_offset(tp)
    540
    """
    acknowledged = consumer._acked_index[tp]
    start = None
    for offset in range(first, last + 2):
        if offset <= last and offset not in acknowledged:
            start = offset if start is None else start
        elif start is not None:
            await consumer._add_gap(tp, start, offset - 1)
            start = None
