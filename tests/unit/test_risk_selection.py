"""The served churn risk: its online figures against a batch computation, the floor, the choice, the samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from online_models.alerts import AlertState
from online_models.bgnbd import BGNBD
from online_models.churn import purchase_stats
from online_models.churn_classifier import ChurnClassifier
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.risk_selection import CANDIDATES, RiskSelection, ScoreTrack, no_purchase_within
from online_models.watch import WatchConfig, watch_user
from tests.unit.portrait_builder import DAY, MINUTE, History

MBG = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)
PORTRAIT = PortraitConfig()


def random_labels(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    p = np.clip(rng.normal(np.where(y, 0.6, 0.35), 0.2), 0, 1).round(3)  # on the track's 1/1000 grid
    return p, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_track_matches_a_batch_computation(seed):
    p, y = random_labels(seed)
    track = ScoreTrack()
    for pi, yi in zip(p, y):
        track.update(pi, yi)
    assert track.brier() == pytest.approx(np.mean((p - y) ** 2), rel=1e-12)
    u = stats.mannwhitneyu(p[y], p[~y]).statistic  # counts ties half
    assert track.auc() == pytest.approx(u / (y.sum() * (~y).sum()), rel=1e-12)
    bins = np.minimum((p * 10).astype(int), 9)
    curve = track.reliability()
    assert [b["labels"] for b in curve] == [int((bins == k).sum()) for k in range(10) if (bins == k).any()]
    for point in curve:
        k = round(point["bin"][0] * 10)
        assert point["predicted"] == pytest.approx(p[bins == k].mean(), abs=5.1e-5)
        assert point["observed"] == pytest.approx(y[bins == k].mean(), abs=5.1e-5)
    ece = sum(abs(p[bins == k].sum() - y[bins == k].sum()) for k in range(10)) / len(p)
    assert track.calibration_error() == pytest.approx(ece, rel=1e-9)


def test_track_survives_a_snapshot_and_is_empty_at_first():
    track = ScoreTrack()
    assert track.brier() is None and track.auc() is None and track.report()["reliability"] == []
    track.update(0.2, False)
    assert track.auc() is None  # one class only


@pytest.mark.parametrize("model", [MBG, BGNBD.from_params(r=0.24, alpha=4.4, a=0.79, b=2.4)])
@pytest.mark.parametrize("history", [(0, 0.0, 10.0), (3, 12.0, 40.0), (14, 25.0, 70.0)])
def test_no_purchase_within_matches_the_posterior_integral(model, history):
    x, t_x, T = history
    r, alpha = model.params_["r"], model.params_["alpha"]
    p_alive = model.p_alive(x, t_x, T)
    for horizon in (1.0, 30.0, 365.0):
        # alive: the Poisson rate's posterior is Gamma(r + x, rate alpha + T); no purchase in H is exp(-rate H)
        quiet, _ = integrate.quad(
            lambda lam: np.exp(-lam * horizon) * stats.gamma.pdf(lam, r + x, scale=1 / (alpha + T)), 0, np.inf
        )
        expected = 1 - p_alive + p_alive * quiet
        assert no_purchase_within(model, x, t_x, T, horizon) == pytest.approx(expected, rel=1e-6)
    assert no_purchase_within(model, x, t_x, T, 1e-9) == pytest.approx(1.0, abs=1e-6)
    assert no_purchase_within(model, x, t_x, T, 1e60) == pytest.approx(1 - p_alive, abs=1e-6)


def lapser():
    history = History().views(day=0, n=10).carts(day=0, n=2)
    for day in range(0, 30, 2):
        history.pay(day=day, amount=200.0)
    return history.state()


class Sure(ChurnClassifier):
    """A proven classifier sure nobody churns."""

    def predict_proba_one(self, x):
        return 0.05

    def report(self):
        return {**super().report(), "labels": 10_000, "auc": 0.95}


@pytest.mark.parametrize("chosen", CANDIDATES)
def test_a_lapser_the_purchase_model_is_sure_about_never_reads_as_low_risk(chosen, monkeypatch):
    models = PopulationModels(PopulationConfig())
    models.mbgnbd, models.classifier = MBG, Sure()
    monkeypatch.setattr(models.risk, "chosen", lambda: chosen)
    state = lapser()
    portrait = render(state, as_of=state.last_purchase + 40 * DAY, config=PORTRAIT)
    churn = models.churn(portrait)
    p_alive = MBG.p_alive(*purchase_stats(portrait))
    assert p_alive < 0.01 and churn.model == chosen
    assert churn.risk >= round(1 - p_alive, 4) > 0.99


def test_the_candidate_with_the_lowest_brier_score_is_chosen_once_it_qualifies():
    rng = np.random.default_rng(5)
    selection = RiskSelection(min_labels=300, min_auc=0.7)
    for i in range(600):
        churned = bool(rng.random() < 0.3)
        sharp = 0.9 if churned else 0.1  # the classifier knows
        vague = float(np.clip(rng.normal(0.5 if churned else 0.4, 0.2), 0.01, 0.99))  # the purchase model hardly does
        selection.learn(p_alive=1 - vague, horizon_p=vague, classifier_p=sharp, churned=churned)
        if i < 299:
            assert selection.chosen() == "mbgnbd"  # not enough labels yet
    report = selection.report()
    briers = {name: c["brier"] for name, c in report["candidates"].items()}
    assert report["chosen"] in ("classifier", "stacked") and briers[report["chosen"]] == min(briers.values())
    assert "mbgnbd" not in selection.qualified()  # AUC of the vague score below 0.7


def test_labels_carry_the_buyers_statistics_and_train_the_selection():
    config = WatchConfig(label_horizon_ms=14 * DAY, sample_period_ms=7 * DAY)
    models = PopulationModels(PopulationConfig())
    models.mbgnbd = MBG
    state = lapser()
    at = -(-state.last_seen // MINUTE) * MINUTE
    labels = []
    while at is not None and at < state.last_seen + 60 * DAY:
        outcome = watch_user(state, as_of=at, watermark=at, models=models, config=config)
        labels += [s for s in outcome.samples if s["kind"] == "label"]
        at = outcome.next_check
    assert labels and all(s["label"] for s in labels)  # silent after the last purchase: churned
    for sample in labels:
        assert sample["horizon_ms"] == 14 * DAY and len(sample["purchase_stats"]) == 3
        models.learn(sample)
    assert models.risk.horizon_days == 14
    assert {c["labels"] for c in models.risk.report()["candidates"].values()} == {len(labels)}
    assert models.classifier.report()["labels"] == len(labels)


def test_a_purchase_after_the_periods_sample_sends_the_buyers_statistics():
    config = WatchConfig()
    history = History().views(day=0, n=3)
    history.pay(day=1.0, amount=50.0)  # T0 is 6 days into a sample period: days 1 and 1.5 share the next
    state = history.state()
    at = -(-state.last_seen // MINUTE) * MINUTE
    first = watch_user(state, as_of=at, watermark=at - 5 * MINUTE, models=None, config=config)
    assert [s["kind"] for s in first.samples] == ["user"]
    history.pay(day=1.5, amount=50.0)
    later = history.state()
    assert later.last_purchase // config.sample_period_ms == state.last_purchase // config.sample_period_ms
    later.sample_period, later.pending_labels = state.sample_period, state.pending_labels
    at = -(-later.last_seen // MINUTE) * MINUTE
    outcome = watch_user(later, as_of=at, watermark=at - 5 * MINUTE, models=None, config=config)
    (sample,) = outcome.samples
    assert sample["kind"] == "purchase_stats" and sample["user_id"] == later.user_id
    assert sample["stats"] == list(purchase_stats(render(later, as_of=at, config=PORTRAIT)))
    # a check long after that purchase sends nothing more
    quiet = watch_user(later, as_of=at + DAY, watermark=at + DAY - 5 * MINUTE, models=None, config=config)
    assert quiet.samples == []


def test_a_refit_that_lowers_a_silent_users_purchase_risk_does_not_rearm_them():
    state = lapser()
    state.alert = AlertState(armed=False, last_fired_ms=state.last_seen + 20 * DAY).to_json()
    confident = PopulationModels(PopulationConfig())
    confident.mbgnbd = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.001, b=100.0)  # hardly anyone drops out
    at = state.last_seen + 25 * DAY
    outcome = watch_user(state, as_of=at, watermark=at, models=confident, config=WatchConfig(), with_churn=True)
    assert outcome.churn.risk < 0.5 and not AlertState.from_json(state.alert).armed
    # an event after the alert lets a low risk re-arm them, as before
    state.last_seen = at - DAY
    watch_user(state, as_of=at, watermark=at, models=confident, config=WatchConfig())
    assert AlertState.from_json(state.alert).armed


def test_models_report_the_risk_figures_and_old_snapshots_gain_a_selection():
    models = PopulationModels(PopulationConfig())
    summary = models.summary()["churn"]["risk"]
    assert summary["chosen"] == "mbgnbd" and set(summary["candidates"]) == set(CANDIDATES)
    state = dict(models.__dict__)
    del state["risk"]
    old = PopulationModels.__new__(PopulationModels)
    old.__setstate__(state)
    assert old.risk.chosen() == "mbgnbd"
