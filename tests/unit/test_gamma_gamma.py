"""Gamma-Gamma: the published CDNOW fit, the conditional expectation and the numerics.

* Gamma-Gamma on CDNOW (946 repeat buyers of the 39-week calibration, one transaction per
  customer-day): p=6.25, q=3.74, v=15.44 -- Fader, Hardie & Lee (2005), "RFM and CLV: using
  iso-value curves for customer base analysis", JMR 42(4).
* E[Z | x, m] of CDNOW's first customers at that package's own fit: lifetimes docs, Quickstart
  ("Estimating customer lifetime value using the Gamma-Gamma model": 24.658619, 18.911489, 35.170981).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammaln

from online_models.gamma_gamma import GammaGamma, gamma_gamma_report

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary_spend.csv"
FHL_2005 = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow():
    data = np.genfromtxt(DATA, delimiter=",", names=True)
    assert len(data) == 2357
    repeat = data["x"] > 0
    return data["x"][repeat], data["m"][repeat]


@pytest.fixture(scope="module")
def fit(cdnow):
    return GammaGamma().fit(*cdnow)


def test_cdnow_fit_matches_fader_hardie_lee_2005(fit, cdnow):
    assert len(cdnow[0]) == 946
    for name, value in FHL_2005.items():
        assert fit.params_[name] == pytest.approx(value, rel=0.03), name
        assert round(fit.params_[name], 2) == pytest.approx(value, abs=0.011), name  # the table's two decimals
    assert fit.n_users_ == 946 and fit.converged_
    assert gamma_gamma_report(fit)["sound"]


def test_conditional_expectation_matches_lifetimes_quickstart(fit, cdnow):
    first = GammaGamma.from_params(**fit.params_)
    data = np.genfromtxt(DATA, delimiter=",", names=True)
    got = first.expected_order_value(data["x"][:3], data["m"][:3])
    assert got == pytest.approx([24.658619, 18.911489, 35.170981], abs=2e-3)


def test_fit_is_a_local_maximum(fit, cdnow):
    best = fit.log_likelihood_
    for name in fit.params_:
        for factor in (0.99, 1.01):
            moved = GammaGamma.from_params(**{**fit.params_, name: fit.params_[name] * factor})
            assert moved.log_likelihood(*cdnow).sum() < best


def test_likelihood_is_the_gamma_gamma_density():
    """Against the formula written out independently: the density of the mean of x Gamma(p, nu)
    draws, integrated over nu ~ Gamma(q, v)."""
    p, q, v, x, m = 2.5, 3.0, 12.0, 3.0, 17.0
    expected = (
        gammaln(p * x + q) - gammaln(p * x) - gammaln(q)
        + q * np.log(v) + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(v + m * x)
    )
    assert GammaGamma.from_params(p=p, q=q, v=v).log_likelihood(x, m) == pytest.approx(expected)


def test_expected_value_weights_mean_and_own_spend():
    model = GammaGamma.from_params(p=6.0, q=4.0, v=15.0)
    assert model.expected_order_value(0, 0.0) == pytest.approx(30.0)
    # many repeat purchases: the customer's own mean dominates
    assert model.expected_order_value(1000, 50.0) == pytest.approx(50.0, rel=0.01)
    assert model.expected_order_value(np.array([0, 1]), np.array([0.0, 30.0])).tolist() == pytest.approx([30.0, 30.0])
    assert GammaGamma.from_params(p=1.0, q=0.5, v=1.0).mean_value() == float("inf")


def test_fit_scales_with_the_currency(cdnow):
    x, m = cdnow
    dollars = GammaGamma().fit(x, m)
    cents = GammaGamma().fit(x, m * 100)
    assert cents.params_["p"] == pytest.approx(dollars.params_["p"], rel=1e-4)
    assert cents.params_["q"] == pytest.approx(dollars.params_["q"], rel=1e-4)
    assert cents.params_["v"] == pytest.approx(dollars.params_["v"] * 100, rel=1e-4)


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        GammaGamma().fit([], [])
    with pytest.raises(ValueError):
        GammaGamma().fit([0, 1], [10.0, 10.0])  # a non-repeat buyer
    with pytest.raises(ValueError):
        GammaGamma().fit([1, 1], [10.0, -1.0])
    with pytest.raises(ValueError):
        GammaGamma.from_params(p=1.0, q=-1.0, v=1.0)
    with pytest.raises(RuntimeError):
        GammaGamma().expected_order_value(1, 1.0)


def test_no_heterogeneity_runs_to_the_edge_and_is_not_sound():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model = GammaGamma().fit([1, 2, 3, 1, 2, 3], [10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    assert not gamma_gamma_report(model)["sound"]
