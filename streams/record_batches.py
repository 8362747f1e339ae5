"""Records handed to Kafka in whole batches, one per topic partition, below Faust's per-record sends.

Faust's ``send_soon`` costs about a hundred microseconds of Python per record (its
buffer, its callbacks, aiokafka's ``send``); a flush writes hundreds of states and a
publication hundreds of portraits. :class:`RecordBatches` appends records straight
into aiokafka's batch builders, one open batch per topic partition, and hands each
whole batch to the producer with ``send_batch``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

#: keys whose partition is remembered per producer (the memory is emptied when full)
MAX_PLACED_KEYS = 100_000


@dataclass
class Shipped:
    """One batch handed to the producer: where it goes, how many records, and its delivery."""

    topic: str
    partition: int
    count: int
    delivery: asyncio.Future

    def last_offset(self) -> int:
        """Offset of the batch's last record (once delivered)."""
        return self.delivery.result().offset + self.count - 1


class RecordBatches:
    """Records gathered per topic partition, shipped to an aiokafka producer as whole batches.

    :meth:`add` appends a record (to the partition its key hashes to, as the producer's
    default partitioner would, unless a partition is given); :meth:`ship` hands every
    batch gathered so far to the producer. Records of one partition keep their order:
    the batches of a partition are shipped in order, and the producer has one request
    in flight per partition. One instance serves one writer at a time.
    """

    def __init__(self, producer: AIOKafkaProducer):
        self.producer = producer
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}
        #: (topic, key) -> partition, as the partitioner placed it (murmur2 in Python costs microseconds a key)
        self._placed: dict[tuple[str, bytes], int] = {}
        self._open: dict[tuple[str, int], object] = {}
        self._counts: dict[tuple[str, int], int] = {}
        #: batches closed or full, in the order they must be shipped
        self._closed: list[tuple[str, int, object, int]] = []

    async def know(self, topics: Iterable[str]) -> None:
        """Load the partitions of ``topics``, so keys can be placed without waiting."""
        for topic in topics:
            if topic not in self._partitions:
                self._partitions[topic] = sorted(await self.producer.partitions_for(topic))

    def partition_for(self, topic: str, key: bytes | None) -> int:
        """The partition the producer's default partitioner gives ``key`` (any, for None; ``know`` the topic first)."""
        if key is None:
            partitions = self._partitions[topic]
            return self._partitioner(key, partitions, partitions)
        placed = self._placed.get((topic, key))
        if placed is None:
            if len(self._placed) >= MAX_PLACED_KEYS:
                self._placed.clear()
            partitions = self._partitions[topic]
            placed = self._placed[(topic, key)] = self._partitioner(key, partitions, partitions)
        return placed

    def add(self, topic: str, key: bytes | None, value: bytes | None, *, partition: int | None = None,
            headers: Iterable[tuple[str, bytes]] = ()) -> None:
        """Append a record to its partition's open batch (a full batch is set aside to ship)."""
        if partition is None:
            partition = self.partition_for(topic, key)
        tp = (topic, partition)
        headers = list(headers)
        builder = self._open.get(tp)
        if builder is not None and builder.append(timestamp=None, key=key, value=value, headers=headers) is not None:
            self._counts[tp] += 1
            return
        if builder is not None:
            self._closed.append((topic, partition, builder, self._counts[tp]))
        builder = self._open[tp] = self.producer.create_batch()
        builder.append(timestamp=None, key=key, value=value, headers=headers)  # a batch's first record always fits
        self._counts[tp] = 1

    @property
    def full(self) -> bool:
        """Whether a batch is full and waits to be shipped."""
        return bool(self._closed)

    @property
    def pending(self) -> bool:
        """Whether records wait to be shipped."""
        return bool(self._open or self._closed)

    async def ship(self) -> list[Shipped]:
        """Hand every gathered batch to the producer, in order; their deliveries resolve once Kafka has them."""
        batches = self._closed + [(topic, partition, builder, self._counts[(topic, partition)])
                                  for (topic, partition), builder in self._open.items()]
        self._closed, self._open, self._counts = [], {}, {}
        shipped = []
        for topic, partition, builder, count in batches:
            builder.close()
            delivery = await self.producer.send_batch(builder, topic, partition=partition)
            shipped.append(Shipped(topic, partition, count, delivery))
        return shipped


class Outbox:
    """Records on their way to Kafka: gathered in :class:`RecordBatches`, shipped, their deliveries watched.

    ``on_delivered`` is called with each batch Kafka has taken. A batch that failed
    is raised by the next :meth:`ship` or :meth:`deliver`: its records may be lost,
    so nothing that depends on them may follow.
    """

    def __init__(self, producer: AIOKafkaProducer, on_delivered: Callable[[Shipped], None] | None = None):
        self.batches = RecordBatches(producer)
        self.on_delivered = on_delivered
        #: batches shipped whose delivery was not seen yet
        self.in_flight: list[Shipped] = []

    async def ship(self) -> None:
        """Hand the gathered records to the producer without waiting for their delivery."""
        self.check()
        for shipped in await self.batches.ship():
            self.in_flight.append(shipped)
            if self.on_delivered is not None:
                shipped.delivery.add_done_callback(lambda done, shipped=shipped: self._delivered(shipped))

    async def deliver(self) -> None:
        """Ship what is gathered and wait until Kafka has every record shipped so far."""
        await self.ship()
        await asyncio.gather(*(shipped.delivery for shipped in self.in_flight), return_exceptions=True)
        self.check()

    def check(self) -> None:
        """Forget delivered batches; raise the error of one that failed."""
        waiting = []
        for shipped in self.in_flight:
            if not shipped.delivery.done():
                waiting.append(shipped)
            elif shipped.delivery.exception() is not None:
                raise RuntimeError(f"records to {shipped.topic}[{shipped.partition}] were not delivered") from shipped.delivery.exception()
        self.in_flight = waiting

    def _delivered(self, shipped: Shipped) -> None:
        if not shipped.delivery.cancelled() and shipped.delivery.exception() is None:
            self.on_delivered(shipped)
