"""CLV in the portrait against an independent batch computation over the raw events (``tests/reference.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from online_models.bgnbd import BGNBD
from online_models.clv import clv_scores
from online_models.gamma_gamma import GammaGamma
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitConfig, render
from online_models.replay import replay_history
from online_models.simulation import ShopSimulator
from tests.reference import batch_clv, events_by_user, purchase_history
from tests.unit.portrait_builder import as_json

START_MS = 1_767_225_600_000  # 2026-01-01
PURCHASE = {"r": 0.8, "alpha": 9.0, "a": 0.6, "b": 2.5}  # days
#: a large ``a``: Euler's form of the series diverges as the horizon grows, the plain form does not
PURCHASE_LARGE_A = {"r": 3.2, "alpha": 0.45, "a": 151.0, "b": 18.4}
SPEND = {"p": 4.0, "q": 3.5, "v": 180.0}


@pytest.fixture(scope="module")
def shop():
    events = list(ShopSimulator(n_users=40, start_ms=START_MS, seed=5).history(45))
    return events, replay_history(events)


def snapshot(*, mbg: bool, horizon_days: int = 365, rate: float = 0.10, purchase: dict = PURCHASE) -> PopulationModels:
    models = PopulationModels(PopulationConfig(clv_horizon_days=horizon_days, clv_annual_discount_rate=rate))
    if mbg:
        models.mbgnbd = MBGNBD.from_params(**purchase)
    models.bgnbd = BGNBD.from_params(**purchase)
    models.gamma_gamma = GammaGamma.from_params(**SPEND)
    return models


@pytest.mark.parametrize(
    ("mbg", "horizon_days", "rate", "purchase"),
    [
        (True, 365, 0.10, PURCHASE),
        (False, 365, 0.10, PURCHASE),
        (True, 90, 0.0, PURCHASE),
        (True, 730, 0.25, PURCHASE),
        (True, 365, 0.10, PURCHASE_LARGE_A),
        (False, 365, 0.10, PURCHASE_LARGE_A),
    ],
)
def test_portrait_clv_equals_the_batch_computation(shop, mbg, horizon_days, rate, purchase):
    events, result = shop
    models = PopulationModels.from_bytes(snapshot(mbg=mbg, horizon_days=horizon_days, rate=rate, purchase=purchase).to_bytes())
    by_user = events_by_user(events)
    buyers = repeaters = 0
    for user, state in sorted(result.states.items()):
        portrait = as_json(models.enrich(render(state, as_of=result.as_of, config=PortraitConfig())))
        expected = batch_clv(
            by_user[user], result.as_of, purchase=purchase, mbg=mbg, spend=SPEND, horizon_days=horizon_days, annual_rate=rate
        )
        if expected is None:
            assert portrait["clv"] is None
            continue
        buyers += 1
        repeaters += purchase_history(by_user[user], result.as_of)[0] > 0
        got = portrait["clv"]
        assert got["horizon_days"] == horizon_days
        assert got["expected_purchases"] == pytest.approx(expected["expected_purchases"], abs=6e-5), user
        assert got["expected_order_value"] == pytest.approx(expected["expected_order_value"], abs=6e-3), user
        assert got["value"] == pytest.approx(expected["value"], rel=1e-4, abs=6e-3), user
    assert buyers >= 15 and repeaters >= 8 and buyers > repeaters  # one-time and repeat buyers


def test_the_trainer_keeps_each_buyers_repeat_spend_as_the_batch_computes_it(shop):
    events, result = shop
    by_user = events_by_user(events)
    kept = result.models.purchase_sample
    assert kept
    for user, entry in kept.items():
        assert entry[4] == pytest.approx(purchase_history(by_user[user], result.as_of)[3], abs=1e-9), user


def test_without_a_spend_fit_the_value_is_unknown(shop):
    _, result = shop
    models = snapshot(mbg=True)
    models.gamma_gamma = None
    buyer = next(s for s in result.states.values() if s.purchases)
    clv = models.enrich(render(buyer, as_of=result.as_of, config=PortraitConfig())).clv
    assert clv.expected_purchases > 0 and clv.expected_order_value is None and clv.value is None


def test_a_state_kept_before_repeat_spend_was_counted_gets_the_mean_order_value(shop):
    _, result = shop
    models = snapshot(mbg=True)
    buyer = next(s for s in result.states.values() if len(s.purchase_days) > 1)
    buyer.first_day_cents = None
    portrait = render(buyer, as_of=result.as_of, config=PortraitConfig())
    assert portrait.lifetime.repeat_spend is None
    assert models.clv(portrait).expected_order_value == round(models.gamma_gamma.mean_value(), 2)


def test_the_summary_reports_the_spend_fit_horizon_and_rate():
    models = snapshot(mbg=True, horizon_days=180, rate=0.05)
    clv = models.summary()["clv"]
    assert clv["horizon_days"] == 180 and clv["annual_discount_rate"] == 0.05 and clv["purchase_model"] == "mbgnbd"
    assert {k: clv["gamma_gamma"][k] for k in SPEND} == SPEND and clv["gamma_gamma"]["in_use"]
    assert PopulationModels().summary()["clv"]["gamma_gamma"] is None


def test_the_trainer_takes_the_clv_settings_whether_it_starts_afresh_or_from_a_snapshot():
    from types import SimpleNamespace

    from online_models.tags import TagRules
    from streams.settings import Settings
    from streams.trainer import Trainer

    settings = Settings(clv_horizon_days=180, clv_annual_discount_rate=0.05)
    latest: dict[bytes, bytes] = {}
    engines = SimpleNamespace(feed=SimpleNamespace(latest=latest), rules=TagRules.default())
    fresh = Trainer(engines, settings).resume()
    assert (fresh.config.clv_horizon_days, fresh.config.clv_annual_discount_rate) == (180, 0.05)
    latest[b"snapshot"] = snapshot(mbg=True).to_bytes()  # made under the defaults
    resumed = Trainer(engines, settings).resume()
    assert resumed.gamma_gamma is not None and resumed.summary()["clv"]["horizon_days"] == 180
    assert resumed.summary()["clv"]["annual_discount_rate"] == 0.05


class NoFiniteFigure:
    """A purchase model whose series give no finite figure for any history."""

    def expected_purchases_curve(self, t, x, t_x, T):
        return np.full(len(t), np.nan)


def test_a_history_the_purchase_model_cannot_value_has_no_clv_block(shop):
    _, result = shop
    state = next(state for state in result.states.values() if state.purchases)
    portrait = render(state, as_of=result.as_of, config=PortraitConfig())
    assert clv_scores(portrait, BGNBD.from_params(**PURCHASE), None, horizon_days=365, annual_rate=0.1) is not None
    assert clv_scores(portrait, NoFiniteFigure(), None, horizon_days=365, annual_rate=0.1) is None
