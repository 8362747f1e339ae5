"""The worker's two engine groups: the users' and the items'.

:class:`Engines` runs the users' engines
(:class:`~online_models.processor.PartitionProcessor` over ``events``, ``profiles``,
``erasures`` and ``ticks``), scoring with the models the feed follows. Their item
facts are held back until their partition's next write and leave then, confirmed, in
packs: one record per item partition for all the facts made since the last write, so
the item engines read a record per pack. Their training samples wait for the same
write and leave as packs too, so the trainer reads a record per partition write
instead of one per sample. :class:`ItemEngines` runs the items' engines
(:class:`~online_models.item_processor.ItemPartitionProcessor` over ``item-facts``).
What a group does with records and effects is :class:`streams.engine_group.EngineGroup`'s;
the Faust app that feeds them is :mod:`streams.app`.
"""

from __future__ import annotations

import gc
import logging
import time

from online_models.item_facts import MAX_PACKED_FACTS, pack_facts
from online_models.item_processor import ItemPartitionProcessor
from online_models.partition_engine import Send
from online_models.population import PopulationConfig, PopulationModels
from online_models.processor import PartitionProcessor
from online_models.sentiment import ShippedModelScorer
from online_models.tags import TagRules
from online_models.training_samples import MAX_PACKED_SAMPLES, pack_samples
from streams import kafka_security, metrics, topics
from streams.collector import CollectorPolicy
from streams.engine_group import EngineGroup
from streams.faust_repairs import PartitionWriter
from streams.model_feed import ModelFeed
from streams.settings import Settings

log = logging.getLogger(__name__)

#: how often a worker waiting for the models topic says so
MODEL_WAIT_WARNING_SECONDS = 30.0


class Engines(EngineGroup):
    """This worker's user partition engines, and the models they score with."""

    def __init__(self, app, settings: Settings, writer: PartitionWriter):
        super().__init__(
            app,
            settings,
            writer,
            kinds=(topics.EVENTS, topics.PROFILES, topics.ERASURES, topics.TICKS),
            outputs=topics.ENGINE_OUTPUTS,
            publish_topic=topics.PORTRAITS,
            client_id=f"{settings.app_id}-holes",
            publish_interval=settings.publish_interval,
        )
        self.config = settings.engine_config()
        self.rules = TagRules.load(settings.tag_rules) if settings.tag_rules else TagRules.default()
        self.unfitted = PopulationModels(PopulationConfig(layers=settings.layer_config()), self.rules)
        self.feed = ModelFeed(
            settings.topic(topics.MODELS), settings.bootstrap_servers, kafka_security.kafka_python_options(settings)
        )
        #: partitions assigned whose profiles are read up to the end of the topic before their next record
        self.profiles_unread: set[int] = set()
        #: user partition -> item-facts partition -> the item facts (key, value) made since the user partition's last write
        self.held_facts: dict[int, dict[int, list[tuple[bytes, bytes]]]] = {}
        self.item_facts_topic = settings.topic(topics.ITEM_FACTS)
        #: user partition -> the training samples (key, value) made since its last write
        self.held_samples: dict[int, list[tuple[bytes, bytes]]] = {}
        self.training_topic = settings.topic(topics.MODEL_TRAINING)
        self._scoring: tuple[bytes | None, PopulationModels | None] = (None, None)
        #: freezes the survivors of full garbage collections once the worker has warmed up (streams.collector)
        self.collector = CollectorPolicy(thaw_interval_s=settings.gc_thaw_interval)
        self.webhook = None
        if settings.alert_webhook:
            from online_models.webhook import WebhookSender

            self.webhook = WebhookSender(settings.alert_webhook)

    def make_engine(self, partition: int) -> PartitionProcessor:
        return PartitionProcessor(partition, self.writer.reader(partition), self.config)

    # -------------------------------------------------------------- models
    def models(self) -> PopulationModels:
        """The latest snapshot from the feed; before the first, unfitted models (layers, lifecycle, tags need no fit)."""
        raw = self.feed.latest.get(b"snapshot")
        if raw is not None and raw is not self._scoring[0]:
            try:
                self._scoring = (raw, PopulationModels.from_bytes(raw, self.rules))
            except Exception as error:  # a bad snapshot must not stop scoring with the last good one
                log.warning("ignoring a model snapshot that does not load: %s", error)
                self._scoring = (raw, self._scoring[1])
        return self._scoring[1] or self.unfitted

    async def wait_for_models(self) -> None:
        """Load the review scorer's models, then wait, without a deadline, until the models topic is read to its end,
        so the first records score as a replay would.

        The feed starts here, not in an app task: Faust starts those only after the
        tables are recovered, which after a crash can take longer than the agents wait.
        """
        self.feed.ensure_started()
        if isinstance(self.config.scorer, ShippedModelScorer):
            # the review models load before the first record, off the event loop (a few seconds); they live
            # as long as the process (jieba's dictionary, the Bayes counts): out of the collector's full passes,
            # which otherwise walk them again and again (about 10% of the core's time per event)
            await self.app.loop.run_in_executor(None, self.config.scorer.warm_up)
            gc.freeze()
        self.collector.install()
        waited = 0.0
        while not await self.app.loop.run_in_executor(None, self.feed.caught_up.wait, 1.0):
            waited += 1.0
            self.last_record_at = time.monotonic()  # waiting is not a stall
            self.quiet.waited(now=self.last_record_at)
            if waited % MODEL_WAIT_WARNING_SECONDS == 0:
                log.warning("waiting %.0f s for the models topic to be read before applying any record", waited)

    def _gapless(self, kind: str, partition: int) -> bool:
        """Always for events and erasures; never for the compacted profiles (gaps there are compaction's,
        and what Faust skips around a rebalance is read by :meth:`read_profiles`)."""
        return kind != topics.PROFILES

    async def handle(self, message) -> None:
        """One record from Faust; the first of a partition after its assignment waits for :meth:`read_profiles`."""
        if message.partition in self.profiles_unread:
            self.profiles_unread.discard(message.partition)
            await self.read_profiles(message.partition)
        await super().handle(message)

    async def read_profiles(self, partition: int) -> None:
        """Apply the partition's profiles records past its progress, up to the end of the topic, from the broker.

        Faust resumes the profiles at its committed offset: after a crash the progress can be behind
        it, and the events read again past the progress would otherwise be folded without the
        profiles they were first folded with (no new profiles record need ever come). Records Faust
        delivers afterwards are covered by the progress and skipped; a profile applied twice changes nothing.
        """
        topic = self.settings.topic(topics.PROFILES)
        engine = self.engine(partition)
        first = await self._next_to_apply(engine, topic)
        last = await self.skipped.log_end(topic, partition) - 1
        if last >= first:
            await self._apply_from_broker(engine, topic, first, last)

    def _sent(self, effect: Send) -> None:
        if effect.kind == "alert" and self.webhook is not None:
            self.webhook.submit(effect.value)

    # -------------------------------------------------------------- item facts and samples, packed
    def _held(self, partition: int, effect: Send, batches) -> bool:
        """An item fact waits for the partition's next write, packed with the others for its item partition;
        a training sample too, packed with the partition's others."""
        if effect.kind == "sample":
            self.held_samples.setdefault(partition, []).append((effect.key, effect.value))
            return True
        if effect.topic == topics.MODEL_TRAINING:  # an erasure's marker: the samples made before it go first
            self._release_samples(partition, batches)
            return False
        if effect.kind != "item_fact":
            return False
        target = batches.partition_for(self.item_facts_topic, effect.key)
        self.held_facts.setdefault(partition, {}).setdefault(target, []).append((effect.key, effect.value))
        return True

    def _release(self, partition: int, batches) -> bool:
        """The partition's held item facts as packs (:func:`online_models.item_facts.pack_facts`), each keyed
        by its first fact, on the item partition of all its facts; its held samples as packs
        (:func:`online_models.training_samples.pack_samples`), unconfirmed as before. Whether facts left."""
        self._release_samples(partition, batches)
        held = self.held_facts.pop(partition, None)
        if not held:
            return False
        for target, facts in held.items():
            for start in range(0, len(facts), MAX_PACKED_FACTS):
                pack = facts[start : start + MAX_PACKED_FACTS]
                batches.add(self.item_facts_topic, pack[0][0], pack_facts(value for _, value in pack), partition=target)
        return True

    def _release_samples(self, partition: int, batches) -> None:
        samples = self.held_samples.pop(partition, None)
        for start in range(0, len(samples or ()), MAX_PACKED_SAMPLES):
            pack = samples[start : start + MAX_PACKED_SAMPLES]
            batches.add(self.training_topic, pack[0][0], pack_samples(value for _, value in pack))

    def drop(self, partition: int) -> None:
        """What is held back goes too: the next owner reads the records it came from again."""
        super().drop(partition)
        self.held_facts.pop(partition, None)
        self.held_samples.pop(partition, None)


class ItemEngines(EngineGroup):
    """This worker's item partition engines: item facts in, item and category portraits out."""

    published_metric = metrics.ITEM_PORTRAITS_PUBLISHED

    def __init__(self, app, settings: Settings, writer: PartitionWriter):
        super().__init__(
            app,
            settings,
            writer,
            kinds=(topics.ITEM_FACTS,),
            outputs=topics.ITEM_ENGINE_OUTPUTS,
            publish_topic=topics.ITEM_PORTRAITS,
            client_id=f"{settings.app_id}-item-holes",
            publish_interval=settings.item_publish_interval,
        )
        self.config = settings.item_engine_config()

    def make_engine(self, partition: int) -> ItemPartitionProcessor:
        return ItemPartitionProcessor(partition, self.writer.reader(partition), self.config)
