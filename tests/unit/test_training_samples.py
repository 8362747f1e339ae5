"""A user sample carries the figures the trainer learns; both sample forms, and packs of them, teach the same models."""

from __future__ import annotations

import copy

import orjson
import pytest

from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator
from online_models.training_samples import (
    MAX_PACKED_SAMPLES,
    UserFigures,
    pack_samples,
    state_figures,
    unpack_samples,
    user_figures,
    user_sample,
)
from online_models.watch import WatchConfig, watch_user

DAY = 86_400_000
CONFIG = PopulationConfig(segment_warmup=20, n_segments=3, churn_min_buyers=5, churn_refit_every=10)


@pytest.fixture(scope="module")
def history():
    return replay_history(ShopSimulator(n_users=40, start_ms=1_767_225_600_000, seed=4).history(40))


def portraits(history):
    """Each user's portrait at three instants, oldest first (never-buyers and silent users among them)."""
    return [
        (as_of, render(state, as_of=as_of, config=PortraitConfig()))
        for as_of in (history.as_of - 30 * DAY, history.as_of - 10 * DAY, history.as_of)
        for _, state in sorted(history.states.items())
    ]


def fingerprint(models: PopulationModels, probe) -> tuple:
    return (
        orjson.dumps(models.summary()),
        dict(models.purchase_sample),
        orjson.dumps(models.enrich(probe)),
        models.user_samples,
    )


def test_the_figures_teach_what_the_whole_portrait_teaches(history):
    whole, slim, slim_from_topic = PopulationModels(CONFIG), PopulationModels(CONFIG), PopulationModels(CONFIG)
    for as_of, portrait in portraits(history):
        whole.learn({"kind": "user", "ts": as_of, "portrait": portrait})
        sample = user_sample(user_figures(portrait), ts=as_of)
        slim.learn(sample)
        slim_from_topic.learn(orjson.loads(orjson.dumps(sample)))
    assert whole.mbgnbd is not None and whole.segments.seeded and whole.order_values.n > 0
    probe = portraits(history)[-1][1]
    assert fingerprint(slim, probe) == fingerprint(whole, probe)
    assert fingerprint(slim_from_topic, probe) == fingerprint(whole, probe)


def test_a_sample_is_far_smaller_than_the_portrait(history):
    as_of, portrait = portraits(history)[-1]
    slim = orjson.dumps(user_sample(user_figures(portrait), ts=as_of))
    whole = orjson.dumps({"kind": "user", "ts": as_of, "portrait": portrait})
    assert len(slim) < len(whole) / 2


@pytest.mark.parametrize("days_after", [-45, -30, -10, -1, 0, 1, 3, 40, 200])
def test_the_states_figures_are_its_rendered_portraits(history, days_after):
    """Read off the state or off its rendered portrait, a user's figures are equal, bit for bit, at any instant
    (before the user's first event too)."""
    config = PortraitConfig()
    as_of = history.as_of + days_after * DAY
    for _, state in sorted(history.states.items()):
        assert state_figures(state, as_of=as_of, config=config) == user_figures(render(state, as_of=as_of, config=config))


def test_figures_read_back_from_json_equal_the_portraits(history):
    for _, portrait in portraits(history):
        figures = user_figures(portrait)
        assert UserFigures.from_json(orjson.loads(orjson.dumps(figures.to_json()))) == figures


def test_a_never_buyer_has_no_purchase_figures(history):
    never = [p for _, p in portraits(history) if not p.lifetime.purchases]
    assert never, "the simulation should hold browsers who never paid"
    figures = user_figures(never[0])
    assert figures.days_since_last_purchase is None and figures.stats is None and figures.aov is None


def test_a_malformed_figures_block_is_refused():
    with pytest.raises((KeyError, TypeError, ValueError)):
        PopulationModels(CONFIG).learn({"kind": "user", "ts": 0, "figures": {"user_id": "u1"}})


def test_packs_keep_their_samples_and_their_order(history):
    samples = [user_sample(user_figures(p), ts=as_of) for as_of, p in portraits(history)][:MAX_PACKED_SAMPLES]
    samples.insert(3, {"kind": "forget", "user_id": "u9"})
    raw = pack_samples([orjson.dumps(s) if i % 2 else s for i, s in enumerate(samples)])
    assert unpack_samples(raw) == orjson.loads(orjson.dumps(samples))
    assert unpack_samples(orjson.dumps(samples[0])) == [orjson.loads(orjson.dumps(samples[0]))]  # one sample alone


def test_the_trainer_learns_a_packs_samples_and_skips_what_is_malformed(history, caplog):
    from streams import metrics
    from streams.trainer import Trainer

    trainer = Trainer(engines=None, settings=None)
    trainer.models = PopulationModels(CONFIG)
    as_of, portrait = portraits(history)[-1]
    before = metrics.TRAINING_SAMPLES._value.get()
    trainer.learn(pack_samples([user_sample(user_figures(portrait), ts=as_of), {"kind": "user", "ts": as_of, "figures": {}}]))
    trainer.learn(b"not json")
    trainer.learn(orjson.dumps({"kind": "teleport", "ts": as_of}))
    trainer.learn(orjson.dumps({"kind": "label", "ts": as_of, "features": {"recency": 0.5}, "label": True}))
    # the good sample and the label learned (each a new version), the malformed sample left no trace
    assert trainer.models.user_samples == 1 and trainer.models.version == 2
    assert metrics.TRAINING_SAMPLES._value.get() - before == 4
    assert "skipping a malformed training sample" in caplog.text and "skipping a malformed training record" in caplog.text


def test_a_deferred_refit_run_in_three_steps_makes_the_models_an_inline_refit_makes(history):
    inline, deferred = PopulationModels(CONFIG), PopulationModels(CONFIG)
    deferred.defer_refits = True
    refits = 0
    for as_of, portrait in portraits(history):
        sample = user_sample(user_figures(portrait), ts=as_of)
        inline.learn(sample)
        deferred.learn(sample)
        if deferred.refit_pending:  # what the trainer's agent does, the fit in an executor
            refit = deferred.refit_inputs()
            deferred.apply_refit(refit.fit())
            refits += 1
    assert refits >= 3 and not deferred.refit_pending
    probe = portraits(history)[-1][1]
    assert fingerprint(deferred, probe) == fingerprint(inline, probe)
    assert deferred.fit_reports == inline.fit_reports
    restored = PopulationModels.from_bytes(deferred.to_bytes())
    assert not restored.defer_refits and not restored.refit_pending  # how refits run is the loading process's choice


def test_a_watched_users_sample_holds_the_figures_of_their_portrait(history):
    """The look hands the sample the purchase statistics it computed from the state: the portrait's own."""
    config, buyers = WatchConfig(), 0
    for as_of in (history.as_of - 10 * DAY, history.as_of + 3 * DAY):
        for _, kept in sorted(history.states.items()):
            state = copy.deepcopy(kept)
            state.sample_period = -1  # due for a sample at this look
            samples = watch_user(state, as_of=as_of, watermark=as_of, models=None, config=config).samples
            sample = next(s for s in samples if s["kind"] == "user")
            portrait = render(kept, as_of=as_of, config=config.portrait)
            assert sample["figures"] == user_figures(portrait).to_json()
            buyers += sample["figures"]["stats"] is not None
    assert 0 < buyers < 2 * len(history.states)  # buyers and non-buyers alike
