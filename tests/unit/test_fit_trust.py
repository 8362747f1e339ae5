"""Fits you can trust: degenerate BG/NBD-family fits are reported and never replace a sound one."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from online_models import population as population_module
from online_models._bgnbd_common import EDGE_LOG, SHRINK_LL_SLACK, fit_report, fit_trusted
from online_models.bgnbd import BGNBD
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationModels
from online_models.portrait_types import portrait_from_json

DAY_MS = 86_400_000


def no_dropout_yet(n: int = 200, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, T) in days of buyers 10-30 days old who never drop out: the data of a young shop."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(10, 30, n)
    x, t_x = [], []
    for rate, age in zip(rng.gamma(4, 1 / 12, n), T):
        days = np.unique(np.floor(np.sort(rng.uniform(0, age, rng.poisson(rate * age)))))
        x.append(float(len(days)))
        t_x.append(float(days[-1]) if len(days) else 0.0)
    return np.array(x), np.array(t_x), T


def mbg_p_alive(params: dict, x: float, t_x: float, T: float) -> float:
    """MBG/NBD P(alive), written out from Batislam et al. (2007) eq. 8."""
    r, alpha, a, b = params["r"], params["alpha"], params["a"], params["b"]
    return 1.0 / (1.0 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_a_young_shop_gives_an_edge_fit_that_is_refused_for_a_shrunk_one(cls):
    x, t_x, T = no_dropout_yet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = cls().fit(x, t_x, T)
    report = fit_report(plain)
    # no one had time to drop out: the plain fit sends a towards 0 and calls everyone alive
    assert not report["sound"] and "a" in report["at_edge"]
    assert plain.params_["a"] < 1e-3
    assert plain.p_alive(14, 36.4, 73.4) > 0.99

    model, trusted = fit_trusted(cls, x, t_x, T)
    assert model is not None and trusted["sound"] and trusted["estimator"] == "shrunk"
    assert trusted["plain_fit"]["at_edge"] == report["at_edge"]
    assert all(abs(math.log(v)) < EDGE_LOG + math.log(10) for v in model.params_.values())
    # no significant loss of fit: the log-likelihood is the model's own, summed over users
    assert trusted["log_likelihood"] == pytest.approx(float(model.log_likelihood(x, t_x, T).sum()))
    assert 0 <= report["log_likelihood"] - trusted["log_likelihood"] <= SHRINK_LL_SLACK
    # 37 days silent after 14 repeat purchases every 2.6 days: not alive under the trusted fit
    assert model.p_alive(14, 36.4, 73.4) < 0.1


def test_a_sound_plain_fit_is_kept_as_it_is(cdnow_rows):
    model, report = fit_trusted(BGNBD, *cdnow_rows)
    assert report == {**fit_report(model), "estimator": "ml"} and report["sound"] and report["converged"]
    assert report["n_users"] == 2357
    assert report["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)  # Fader, Hardie & Lee (2005)


@pytest.fixture
def cdnow_rows():
    from pathlib import Path

    data = np.loadtxt(Path(__file__).resolve().parents[1] / "data" / "cdnow_summary.csv", delimiter=",", skiprows=1)
    return data[:, 0], data[:, 1], data[:, 2]


def _models_with_sample(rows) -> PopulationModels:
    models = PopulationModels()
    models.purchase_sample = {f"u{i}": (int(x), float(t), float(T), None) for i, (x, t, T) in enumerate(zip(*rows))}
    return models


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_a_shrunk_fit_beyond_the_slack_still_replaces_a_fit_in_use_that_explains_the_sample_worse(cls, monkeypatch):
    # the slack is fixed while the loss of a shrunk fit grows with the sample: on a large shop every
    # refit was refused and the first fit (on 50 buyers of a few days) was served for good
    from online_models import _bgnbd_common

    x, t_x, T = no_dropout_yet()
    monkeypatch.setattr(_bgnbd_common, "SHRINK_LL_SLACK", -1e9)  # every shrunk fit loses more than the slack
    assert fit_trusted(cls, x, t_x, T)[0] is None
    stale = cls.from_params(r=4.0, alpha=19.0, a=0.33, b=4.1)  # a fit made early, when dropout looked common
    model, report = fit_trusted(cls, x, t_x, T, in_use=stale)
    assert model is not None and report["sound"] and report["estimator"] == "shrunk"
    assert report["replaced_log_likelihood"] == pytest.approx(float(stale.log_likelihood(x, t_x, T).sum()))
    assert report["log_likelihood"] > report["replaced_log_likelihood"]
    # a fit in use that explains the sample at least as well stays
    assert fit_trusted(cls, x, t_x, T, in_use=model)[0] is None


def test_a_refit_that_is_not_sound_keeps_the_last_sound_fit_and_says_so(monkeypatch):
    models = _models_with_sample(no_dropout_yet())
    models.refit_churn()
    kept = models.mbgnbd
    assert kept is not None and models.fit_reports["mbgnbd"]["in_use"]

    refused = {"sound": False, "converged": False, "log_likelihood": -1.0, "n_users": 200, "at_edge": ["a", "b"],
               "estimator": "ml", "params": {"r": 1.0, "alpha": 1.0, "a": 1.85e6, "b": 1.77e8}}
    monkeypatch.setattr(population_module, "fit_trusted", lambda cls, x, t_x, T, **_: (None, dict(refused)))
    models.refit_churn()
    assert models.mbgnbd is kept and models.bgnbd is not None
    summary = models.summary()["churn"]["mbgnbd"]
    assert summary["in_use"] and summary["sound"]
    assert summary["r"] == round(kept.params_["r"], 6)
    assert summary["last_refit"]["in_use"] is False and summary["last_refit"]["at_edge"] == ["a", "b"]
    assert summary["last_refit"]["params"]["b"] == 1.77e8


def test_no_sound_fit_at_all_serves_no_p_alive_and_says_why(monkeypatch):
    models = _models_with_sample(no_dropout_yet())
    monkeypatch.setattr(
        population_module, "fit_trusted", lambda cls, x, t_x, T, **_: (None, {"sound": False, "converged": False, "at_edge": []})
    )
    models.refit_churn()
    assert models.mbgnbd is None and models.bgnbd is None
    assert models.summary()["churn"]["mbgnbd"] == {"in_use": False, "last_refit": models.fit_reports["mbgnbd"]}


def test_models_summary_reports_convergence_log_likelihood_and_sample_size():
    rows = no_dropout_yet(seed=4)
    models = _models_with_sample(rows)
    models.refit_churn()
    for name, cls in (("bgnbd", BGNBD), ("mbgnbd", MBGNBD)):
        fit = models.summary()["churn"][name]
        assert fit["n_users"] == 200 and fit["converged"] is True and fit["sound"] is True
        recomputed = cls.from_params(**{k: fit[k] for k in ("r", "alpha", "a", "b")}).log_likelihood(*rows).sum()
        assert fit["log_likelihood"] == pytest.approx(float(recomputed), rel=1e-4)


def test_reasons_never_call_a_long_silence_alive():
    """The portrait of u0006 in issue 17: 37 days silent, usual gap 2.6 days, P(alive) 1.00 under an edge fit."""
    models = _models_with_sample(no_dropout_yet())
    models.refit_churn()
    # first purchase 09-01, last 36.4 days later, 37 days of silence since
    portrait = portrait_from_json({"as_of": "2026-11-13T09:36:00.000Z", "first_purchase": "2026-09-01T00:00:00.000Z",
                "last_purchase": "2026-10-07T09:36:00.000Z", "purchase_days": 15, "days_since_last_purchase": 37.0,
                "windows": {}})
    churn = models.churn(portrait)
    assert churn.reasons[0] == "37 days since last purchase; usual gap 2.6 days"
    assert churn.p_alive == pytest.approx(mbg_p_alive(models.mbgnbd.params_, 14, 36.4, 73.4), abs=1e-4)
    assert churn.p_alive < 0.05 and churn.risk > 0.95
    assert churn.reasons[-1].startswith("P(alive) 0.0")
