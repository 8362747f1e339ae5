"""The trainer: one partition of ``model-training``, so one worker of the group learns the population models.

It learns every worker's samples in order (each record a pack of one partition's samples,
:mod:`online_models.training_samples`) and publishes a snapshot to the
compacted ``models`` topic when it has learned something new; every worker
scores with the latest snapshot. A worker taking the partition over resumes
from the last snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import orjson

from online_models.population import PopulationConfig, PopulationModels
from online_models.training_samples import unpack_samples
from streams import metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


class Trainer:
    """The live models of the worker that owns the training partition (None elsewhere)."""

    def __init__(self, engines, settings: Settings) -> None:
        self.engines, self.settings = engines, settings
        self.models: PopulationModels | None = None
        self.published = -1

    def learn(self, raw: bytes) -> None:
        """Learn one record of the training topic: a pack of samples, or one sample; a malformed one is skipped, said."""
        try:
            samples = unpack_samples(raw)
        except (KeyError, TypeError, ValueError) as error:
            log.warning("skipping a malformed training record: %s", error)
            return
        for sample in samples:
            try:
                self.models.learn(sample)
            except (KeyError, TypeError, ValueError) as error:
                log.warning("skipping a malformed training sample: %s", error)
        metrics.TRAINING_SAMPLES.inc(len(samples))

    def resume(self) -> PopulationModels:
        """The models of the last snapshot on the models topic, or fresh ones; CLV's horizon and rate
        are this worker's settings either way (the snapshots carry them to every scorer). Their refits
        are left to the agent, which runs them off the event loop."""
        models = self._last_or_fresh()
        models.defer_refits = True
        return models

    def _last_or_fresh(self) -> PopulationModels:
        raw = self.engines.feed.latest.get(b"snapshot")
        if raw is not None:
            try:
                models = PopulationModels.from_bytes(raw, self.engines.rules)
                models.config = replace(models.config, **self.settings.clv_config())
                return models
            except Exception as error:
                log.warning("starting the models afresh; the last snapshot does not load: %s", error)
        config = PopulationConfig(layers=self.settings.layer_config(), **self.settings.clv_config())
        return PopulationModels(config, self.engines.rules)


def install_trainer(app, settings: Settings, training_topic, models_topic) -> Trainer:
    """Register the trainer's agent and snapshot timer on ``app``; its :class:`Trainer`."""
    trainer = Trainer(app.engines, settings)

    @app.agent(training_topic)
    async def train(stream):
        """Learn the population models from every worker's samples.

        One record at a time: with ``stream.take`` (Faust 0.15.3) a backlog on this topic after
        a restart could leave the take buffer waiting forever, and since one fetcher feeds every
        agent, all partitions stopped with it (found by tests/integration/test_chaos.py).
        """
        async for raw in stream:
            if not settings.train_models:
                continue  # frozen: score with the snapshot on the models topic as it is
            if trainer.models is None:
                await app.engines.wait_for_models()
                trainer.models = await app.loop.run_in_executor(None, trainer.resume)
                trainer.published = trainer.models.version
            trainer.learn(raw)
            if trainer.models.refit_pending:  # a refit of thousands of buyers takes a second: off the event loop
                refit = trainer.models.refit_inputs()
                trainer.models.apply_refit(await app.loop.run_in_executor(None, refit.fit))

    @app.timer(interval=settings.snapshot_interval)
    async def publish_models() -> None:
        """Publish a snapshot of the trainer's models when they learned something new."""
        models = trainer.models
        if models is None or models.version == trainer.published:
            return
        trainer.published = models.version
        await models_topic.send(key=b"snapshot", value=models.to_bytes())
        await models_topic.send(key=b"summary", value=orjson.dumps(models.summary()))

    return trainer
