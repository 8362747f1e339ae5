"""Repairs of Faust, fenced in one module: everything here reaches into Faust's internals.

Written against faust-streaming :data:`FAUST_VERSION`; :func:`check_faust_version`
warns when another version runs, and a Faust upgrade starts here (and with
``tests/unit/test_faust_repairs.py`` and ``tests/integration/test_skipped_records.py``).

* **Skipped records.** Faust 0.15.3 can skip records of a partition it keeps
  reading: a record whose hand-over to the stream is cut short by a rebalance is
  dropped while the read offset moves on, records fetched before a rebalance are
  skipped as of an old generation, a jump in offsets is acknowledged as a gap,
  and a worker taking over a partition starts at the committed offset, which can
  lie past the last progress record (or, with no progress yet, past the
  partition's start). The partition's progress knows the last offset applied, so
  a record past it reveals the hole; :class:`SkippedRecordReader` reads the
  records in between with a consumer of no group (sending Faust's own consumer
  back would upset its acknowledgements), and :func:`settle` tells Faust's
  commit bookkeeping they are handled, or its commits would stop at the first
  record it never acknowledged.
* **Stalled partitions.** Faust tracks a read offset per partition and silently
  drops fetched records below it; after restarts and rebalances it could leave a
  partition with unread records and an idle agent for good.
  :func:`read_stalled_again` seeks such a partition back to its progress.
* **Fetched records dropped.** Faust drops the records it fetched for a
  partition paused meanwhile (an assignment pauses every partition until the
  tables recover; the fetch was made just before), a batch fetched before its
  flow stopped, and at a rebalance the records already handed to the streams,
  and counts on its seek back to the committed offsets to fetch them again.
  That seek passed over a partition with no committed offset (its records were
  never delivered, so never acknowledged, and the partition was never committed
  although the progress held them all) and the changelogs (a new standby
  replica missed the first records of a partition and, once it took the
  partition over, users written only there had lost their state).
  :class:`RepairedConsumer` seeks a partition with no committed offset to its
  start along with Faust's seek, and any partition back to the first record it
  fetched and did not deliver.
* **Offsets counted twice.** Faust's commit folds the offsets of its gaps into
  the acknowledged ones; an offset in both (a record acknowledged and inside a
  gap Faust registered for a jump in read offsets, the record that ended the
  jump included) was then counted twice, and each commit passed only one such
  offset: a partition's commits crawled one offset per commit interval for a
  minute after holes. :func:`fold_gaps` folds them in once.
* **Table writes by partition.** A Faust table writes to the partition of the
  event in hand (a context variable); :class:`PartitionWriter` writes a given
  partition's RocksDB and changelog directly, so a flush or a graceful stop can
  write any partition it holds. Its changelog records travel in whole batches
  under Faust's producer (:func:`aiokafka_producer`), and it keeps the persisted
  offset Faust's recovery starts from.
* **A record's hand-over without four tasks.** Faust hands each fetched record to
  the streams with ``wait_first(callback(message), suspend_flow.wait())``: four
  tasks, a wait and three cancellations per record, about a tenth of a worker's
  time. :meth:`RepairedConsumer._drain_messages` runs the hand-over's first step at
  once and goes through ``wait_first`` only when it blocks (a full stream buffer,
  flow control) or the flow is suspended, resuming it there (:class:`Resumed`):
  the same steps in the same order, since ``wait_first``'s own task also runs the
  hand-over's first step before anything else can stop it.
* **Records cleared by a resume of a running flow.** Faust's flow control clears the
  changelog queue and the streams' queues at every resume, to drop what was fetched
  before a rebalance. Its recovery resumes the flow once more after the flow already
  runs (after seeking the standby partitions and setting them fetching, and at the end
  of ``on_recovery_completed``, after the seek to the committed offsets): the records
  fetched in between were cleared although the read offsets had passed them. A standby
  replica so missed a stretch of its changelog (its first records, often), applied
  what followed, and once it took the partition over the users written only there had
  lost their state while the progress said their records were applied; a stream
  partition lost records the engine had applied before the rebalance, so no hole
  showed and nothing acknowledged them, and its commits stopped there.
  :class:`ResumeKeepingFlowControl` clears the queues only on a resume that ends a
  suspension, when what they hold was fetched before the rebalance.
* **Statistics nobody reads, kept per record.** Faust's default monitor counts and times
  every record on its way in and out (for Faust's own web statistics, which this worker
  does not serve): about a tenth of a bare agent's time. :class:`LeanMonitor` keeps only
  what Faust itself reads per record: when each partition's stream last took one (its
  stall warnings). The worker's figures are its own metrics (:mod:`streams.metrics`).
* **A codec lookup per record for bytes the agents do not read.** Faust decodes each record's
  key and value through its codec registry, reading its settings on the way, before the agent
  sees it; the worker's agents read the raw message. :class:`RawSchema` hands the record's bytes
  over as they are.
* **A hook after the drain at a graceful stop.** :class:`RepairedApp` calls
  ``on_drained_for_stop`` once Faust has drained the agents before stopping
  (not in a rebalance's drain: a table write there left the next owner's
  changelog recovery stuck).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalStateError
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent
from rocksdict import WriteBatch

from streams.record_batches import RecordBatches, Shipped

log = logging.getLogger(__name__)

#: the faust-streaming release these repairs were written and tested against
FAUST_VERSION = "0.15.3"


def check_faust_version(running: str = faust.__version__) -> bool:
    """Whether the running Faust is the one these repairs know; a warning when it is not.

    >>> check_faust_version(FAUST_VERSION), check_faust_version("9.9.9")
    (True, False)
    """
    if running == FAUST_VERSION:
        return True
    log.warning("faust-streaming %s runs; streams/faust_repairs.py was written against %s", running, FAUST_VERSION)
    return False

#: most seconds the records of one hole may take to read (the broker may be restarting)
HOLE_READ_TIMEOUT_SECONDS = 120.0


class SkippedRecordReader:
    """Reads given offsets of a partition from the broker, outside any consumer group.

    The consumer is made on first use; offsets the broker no longer holds
    (retention) are not waited for. Records come one by one, so a long hole (a
    partition read from its start) is never held in memory.
    """

    def __init__(
        self,
        bootstrap_servers: str | list[str],
        client_id: str,
        timeout_s: float = HOLE_READ_TIMEOUT_SECONDS,
        client_options: dict | None = None,
    ):
        self.bootstrap_servers, self.client_id, self.timeout_s = bootstrap_servers, client_id, timeout_s
        #: the connection's security (:func:`streams.kafka_security.aiokafka_options`)
        self.client_options = dict(client_options or {})
        self._consumer: AIOKafkaConsumer | None = None

    async def _consumer_of(self, tp: TopicPartition) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=self.client_id,
                **self.client_options,
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

    async def log_end(self, topic: str, partition: int) -> int:
        """The offset the partition's next record will get."""
        tp = TopicPartition(topic, partition)
        consumer = await self._consumer_of(tp)
        return (await consumer.end_offsets([tp]))[tp]

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


class QuietPartitions:
    """When each source partition last delivered a record, to find the ones Faust stopped feeding.

    A partition whose last records Faust dropped shows no hole until its next record, which on a
    quiet topic (profiles, erasures) may come much later, and a busy group is never idle as a whole:
    so stalls are looked for partition by partition. A partition counts as quiet once nothing of it
    came for the given time; it then counts as fresh again, so it is looked at once per that time.
    A wait of the whole group (for the models, before the first record) is no silence of its own.

    >>> quiet = QuietPartitions()
    >>> quiet.delivered("events", 0, now=100.0)
    >>> quiet.quiet([TP("events", 0), TP("events", 1)], now=110.0, after=20.0)  # events-1 is first seen now
    []
    >>> [tp.partition for tp in quiet.quiet([TP("events", 0), TP("events", 1)], now=130.0, after=20.0)]
    [0, 1]
    >>> quiet.quiet([TP("events", 0)], now=140.0, after=20.0)  # just looked at
    []
    """

    def __init__(self) -> None:
        #: (topic, partition) -> monotonic time of its last record (or of the last look at it)
        self._last: dict[tuple[str, int], float] = {}
        #: monotonic time of the group's last wait that held every partition back
        self._waited = 0.0

    def delivered(self, topic: str, partition: int, *, now: float) -> None:
        """A record of the partition came."""
        self._last[(topic, partition)] = now

    def waited(self, *, now: float) -> None:
        """The group held every partition back until ``now``."""
        self._waited = now

    def forget(self, partition: int) -> None:
        """The partition number left this worker (on every topic)."""
        for key in [key for key in self._last if key[1] == partition]:
            del self._last[key]

    def quiet(self, partitions: Iterable, *, now: float, after: float) -> list:
        """The partitions of ``partitions`` with no record for ``after`` seconds (they count as fresh from now)."""
        found = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            last = max(self._last.setdefault(key, now), self._waited)
            if now - last >= after:
                found.append(tp)
                self._last[key] = now
        return found


async def read_stalled_again(consumer, partitions: Iterable, applied: dict) -> list:
    """Seek each partition of ``partitions`` with unread records back to the first one its progress lacks.

    ``applied`` maps a partition to the last offset applied (None: nothing yet);
    partitions missing from it, or no longer assigned to ``consumer``, are left alone. What is
    delivered twice is skipped or recognised as usual. Returns the partitions sought.
    """
    # only what the consumer holds right now: after a broker restart the assignment can change under a seek
    held = consumer.assignment()
    partitions = [tp for tp in partitions if tp in held]
    # end offsets asked of the broker: a partition that is not fetched has no highwater of its own
    ends = await consumer.highwaters(*partitions) if partitions else {}
    sought = []
    for tp in partitions:
        if tp not in applied:
            continue
        last = applied[tp]
        resume_at = 0 if last is None else last + 1
        end = ends.get(tp)
        if end is not None and end > resume_at:
            log.warning("partition %s stalled at %s of %s: reading again from there", tp, resume_at, end)
            await consumer.seek(tp, resume_at)
            consumer.resume_partitions({tp})
            sought.append(tp)
    return sought


async def seek_uncommitted_to_start(consumer, committed: dict) -> list:
    """Seek each stream partition of ``committed`` with no committed offset to its first offset.

    ``committed`` maps the partitions assigned to Faust's ``consumer`` to their committed offsets
    (None or 0: none), as its seek to the committed offsets returns them. Changelogs are left to
    Faust's recovery, and nothing is sought unless the consumer starts such a partition at its
    start anyway (``consumer_auto_offset_reset`` earliest). Faust's own note of the committed
    offset of a partition sought is cleared: the broker has none. Returns the partitions sought
    (none if the assignment changed meanwhile: the next assignment seeks again).
    """
    if consumer.app.conf.consumer_auto_offset_reset != "earliest":
        return []
    uncommitted = [tp for tp, offset in committed.items() if not offset and not consumer._is_changelog_tp(tp)]
    if not uncommitted:
        return []
    for tp in uncommitted:
        consumer._committed_offset.pop(tp, None)
    try:
        await consumer._thread.seek_to_beginning(*(faust_aiokafka.ensure_aiokafka_TP(tp) for tp in uncommitted))
    except IllegalStateError as error:
        log.info("partitions with no committed offset not sought to their start: %s", error)
        return []
    return uncommitted


def known_highwater(consumer, tp) -> int | None:
    """The partition's end offset as the consumer last heard it from a fetch; None while unknown.

    aiokafka asserts that the partition is assigned (and has no assignment at all
    during a rebalance): a partition on its way in or out has no known end here.
    """
    try:
        return consumer.highwater(tp)
    except (AssertionError, AttributeError):
        return None


def first_undelivered(records: dict, delivered: dict) -> dict:
    """Partition -> offset of the first record of ``records`` (partition -> records fetched, in
    order) past the last one delivered (``delivered``: partition -> offset; absent: none).

    >>> from collections import namedtuple
    >>> Record = namedtuple("Record", "offset")
    >>> fetched = {"a": [Record(5), Record(6), Record(7)], "b": [Record(0), Record(1)], "c": [Record(3)]}
    >>> first_undelivered(fetched, {"a": 5, "b": 1})
    {'a': 6, 'c': 3}
    """
    starts = {}
    for tp, batch in records.items():
        last = delivered.get(tp)
        first = next((record.offset for record in batch if last is None or record.offset > last), None)
        if first is not None:
            starts[tp] = first
    return starts


def fold_gaps(consumer, tp) -> None:
    """Fold the gaps of ``tp`` below its highest acknowledged offset into Faust ``consumer``'s acknowledged offsets, each offset once.

    Faust's own fold (in ``Consumer._new_offset``) adds an offset that is already acknowledged a
    second time, and its commit then stops at each such offset in turn. Gaps wholly above the
    highest acknowledged offset wait, as in Faust.

    >>> import asyncio, faust
    >>> from faust.types import TP
    >>> consumer = faust.App("fold-doctest", broker="kafka://127.0.0.1:1").consumer
    >>> tp = TP("events", 0)
    >>> consumer._committed_offset[tp] = 10
    >>> for offset in [10, 11, 12, 15, 16]:  # a jump from 12 to 15: Faust's gap holds 13 to 15
    ...     consumer._acked[tp].append(offset)
    ...     consumer._acked_index[tp].add(offset)
    >>> asyncio.run(consumer._add_gap(tp, 13, 15))
    >>> fold_gaps(consumer, tp)
    >>> sorted(consumer._acked[tp]), len(consumer._gap[tp])
    ([10, 11, 12, 13, 14, 15, 16], 0)
    """
    acked, gaps = consumer._acked[tp], consumer._gap.get(tp)
    if not acked or not gaps:
        return
    candidates = gaps.overlap(0, max(acked))
    if not candidates:
        return
    acknowledged = consumer._acked_index[tp]
    for gap in candidates:
        for offset in range(gap.begin, gap.end):
            if offset not in acknowledged:
                acknowledged.add(offset)
                acked.append(offset)
    gaps.chop(0, max(gap.end for gap in candidates))


class Resumed:
    """A coroutine that ran to its first suspension (``blocked_on``, what it yielded), awaitable from there on.

    Awaited (or wrapped in a task), it hands the task what the coroutine yielded and
    passes back what the task sends or throws, as if the task had run it from the start.

    >>> import asyncio
    >>> async def hand_over(box, ready):
    ...     box.append(await ready)
    ...     return "in"
    >>> async def main():
    ...     box, ready = [], asyncio.get_running_loop().create_future()
    ...     handing = hand_over(box, ready)
    ...     task = asyncio.ensure_future(Resumed(handing, handing.send(None)))
    ...     ready.set_result("record")
    ...     return await task, box
    >>> asyncio.run(main())
    ('in', ['record'])
    """

    __slots__ = ("coro", "blocked_on")

    def __init__(self, coro, blocked_on):
        self.coro, self.blocked_on = coro, blocked_on

    def __await__(self):
        coro, yielded = self.coro, self.blocked_on
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as error:  # a cancellation (or any error) thrown into the task goes on in
                try:
                    yielded = coro.throw(error)
                except StopIteration as done:
                    return done.value
                continue
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return done.value


class RepairedConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with four repairs: its seek to the committed offsets also seeks each
    partition with none to its start (:func:`seek_uncommitted_to_start`), the records it fetched and
    skipped are fetched again (:meth:`getmany`), its commit counts each offset of a gap once
    (:func:`fold_gaps`), and a record goes to the streams without four tasks when nothing holds it
    back (:meth:`_drain_messages`)."""

    async def _hand_over(self, handing) -> None:
        """Faust's ``wait_first(handing, suspend_flow.wait())``, without its tasks unless the hand-over blocks."""
        if not (self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()):
            try:
                blocked_on = handing.send(None)
            except StopIteration:
                return
            handing = Resumed(handing, blocked_on)
        await self.wait_first(handing, self.suspend_flow.wait())

    async def _drain_messages(self, fetcher) -> None:  # pragma: no cover (the integration tests run it)
        """Faust's ``Consumer._drain_messages`` (faust-streaming 0.15.3) with the hand-over of :meth:`_hand_over`."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        hand_over = self._hand_over
        yield_every, since_yield = 100, 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in records:
                        since_yield += 1
                        if since_yield > yield_every:
                            await asyncio.sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read_offset = get_read_offset(tp)
                        if read_offset is None or offset >= read_offset:
                            gap = offset - (read_offset or 0)
                            if gap > 1 and read_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, read_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            await hand_over(callback(message))
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def seek_to_committed(self):
        committed = await super().seek_to_committed()
        await seek_uncommitted_to_start(self, committed)
        return committed

    async def getmany(self, timeout: float):
        """Faust's ``Consumer.getmany`` (faust-streaming 0.15.3) but for the records it skips.

        Faust skips the records of a partition that is not active (paused) when their turn comes
        and goes on with the batch, and skips a whole batch fetched before its flow stopped,
        leaving the committed offsets to place the partitions again. Here a partition with a
        record skipped delivers nothing more of the batch, and each partition is sought back to
        its first record skipped, unless the group's generation changed meanwhile (the new
        assignment places its partitions itself); Faust's seek to the committed offsets follows
        as before when the flow stopped.
        """
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        delivered: dict = {}
        if self.flow_active:
            skipped: set = set()
            to_message = self._to_message
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break
                if tp in skipped:
                    continue
                if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    delivered[tp] = record.offset
                    yield tp, to_message(tp, record)
                else:
                    skipped.add(tp)
            await self._seek_back(first_undelivered(records, delivered), generation_id)
        else:
            await self._seek_back(first_undelivered(records, delivered), generation_id)
            try:
                await self.perform_seek()
            except Exception as error:
                self.log.warning(f"exception performing seek when flow not active {error}")

    async def _seek_back(self, offsets: dict, generation_id: int) -> None:
        """Seek each partition of ``offsets`` to its offset, while the generation is ``generation_id``."""
        for tp, offset in offsets.items():
            if self.app.consumer_generation_id != generation_id:
                return
            try:
                await self._seek(tp, offset)
            except IllegalStateError:  # no longer assigned
                continue

    def _new_offset(self, tp):
        fold_gaps(self, tp)
        return super()._new_offset(tp)


class PartitionWriter:
    """Writes and reads one table's partitions directly: local RocksDB and changelog, raw bytes.

    Faust's ``table[key] = value`` writes to the partition of the event in hand;
    this writes the partition it is given, in the same two places, in order. The
    changelog records go into a :class:`~streams.record_batches.RecordBatches`;
    once a batch of them is delivered, :meth:`delivered` keeps its last offset as
    the partition's persisted offset (where a recovery starts reading), as Faust's
    own changelog callback does record by record.
    """

    def __init__(self, table):
        self.table = table
        self.changelog = table.changelog_topic.get_topic_name()
        #: partition -> local writes not applied yet (see :meth:`apply_staged`)
        self._staged: dict[int, WriteBatch] = {}

    def db(self, partition: int):
        """The partition's RocksDB (opened on first use). Never keep it: Faust closes a revoked
        partition's database by dropping its last reference, and a kept one holds the lock that the
        next assignment of the partition needs."""
        return self.table.data._db_for_partition(partition)

    def reader(self, partition: int) -> "PartitionReader":
        """A reader of the partition that looks its database up on every call."""
        return PartitionReader(self, partition)

    def write(self, partition: int, key: bytes, value: bytes | None, batches: RecordBatches) -> None:
        """Put ``value`` under ``key`` (None: delete it) in the partition, and its record in ``batches``.

        The local write is staged: :meth:`apply_staged` applies the staged writes in one RocksDB
        write batch per partition, and must run before the caller next yields to the event loop
        (so before any changelog batch is delivered and persisted as the recovery's start).
        """
        staged = self._staged.get(partition)
        if staged is None:
            staged = self._staged[partition] = WriteBatch(raw_mode=True)
        if value is None:
            staged.delete(key)
            self.table.data._key_index.pop(key, None)
        else:
            staged.put(key, value)
            self.table.data._key_index[key] = partition
        batches.add(self.changelog, key, value, partition=partition)

    def apply_staged(self) -> None:
        """Apply the staged local writes, one RocksDB write batch per partition."""
        staged, self._staged = self._staged, {}
        for partition, batch in staged.items():
            self.db(partition).write(batch)

    def delivered(self, shipped: Shipped) -> None:
        """Keep a delivered changelog batch's last offset as its partition's persisted offset.

        Only while the partition's database is open here: a revoked partition's is not reopened.
        """
        if shipped.topic == self.changelog and shipped.partition in self.table.data._dbs:
            self.table.data.set_persisted_offset(TP(self.changelog, shipped.partition), shipped.last_offset())


def aiokafka_producer(app: faust.App) -> AIOKafkaProducer:
    """The aiokafka producer under Faust's (started with the app), for :class:`~streams.record_batches.RecordBatches`."""
    return app.producer._ensure_producer()


class PartitionReader:
    """``get`` and ``items`` of one partition of a :class:`PartitionWriter`'s table, holding no database handle."""

    def __init__(self, writer: PartitionWriter, partition: int):
        self.writer, self.partition = writer, partition

    def get(self, key: bytes) -> bytes | None:
        return self.writer.db(self.partition).get(key)

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return self.writer.db(self.partition).items()


class ResumeKeepingFlowControl(FlowControlEvent):
    """Faust's flow control (``app.flow_control``), but a resume of a running flow clears no queue.

    A resume that ends a suspension (a rebalance suspends the flow first) clears the queues, as in
    Faust: what they hold was fetched before the rebalance. A resume while the flow runs, as the
    recovery does again after the standbys start and after the seek to the committed offsets, keeps
    them: what they hold was fetched since, and the read offsets have passed it.
    """

    def resume(self) -> None:
        if self._suspend.is_set():
            super().resume()
        else:
            self._resume.set()


class RawSchema(faust.Schema):
    """A topic's schema whose keys and values are the record's bytes as they are, without Faust's codec registry."""

    def loads_key(self, app, message, *, loads=None, serializer=None) -> bytes | None:
        return message.key

    def loads_value(self, app, message, *, loads=None, serializer=None) -> bytes | None:
        return message.value


class LeanMonitor(Monitor):
    """Faust's monitor keeping, per record, only when each partition's stream last took one
    (``stream_inbound_time``, which the consumer's stall warnings read); the rest of its figures
    (commits, rebalances, end offsets) are kept as Faust's own monitor keeps them."""

    def on_message_in(self, tp: TP, offset: int, message) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream, event) -> None:
        self.stream_inbound_time[tp] = time.monotonic()
        return None

    def on_stream_event_out(self, tp: TP, offset: int, stream, event, state=None) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message) -> None:
        return None


class RepairedApp(faust.App):
    """A Faust app with the repairs that hook into the app: its consumer is a :class:`RepairedConsumer`,
    its flow control a :class:`ResumeKeepingFlowControl`, its monitor a :class:`LeanMonitor`, and it calls
    :meth:`on_drained_for_stop` once the agents are drained before a graceful stop."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("Monitor", LeanMonitor)
        super().__init__(*args, **kwargs)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return ResumeKeepingFlowControl(loop=self.loop)

    def _new_transport(self):
        transport = super()._new_transport()
        if issubclass(RepairedConsumer, transport.Consumer):  # the aiokafka transport (kafka:// brokers)
            transport.Consumer = RepairedConsumer
        return transport

    async def _consumer_wait_empty(self, consumer, logger) -> None:
        await super()._consumer_wait_empty(consumer, logger)
        if self.should_stop:  # stopping, not revoking partitions in a rebalance
            await self.on_drained_for_stop()

    async def on_drained_for_stop(self) -> None:
        """Override: the agents are idle, every record taken is processed, Faust commits next."""
