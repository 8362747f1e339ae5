"""BG/NBD and MBG/NBD: published CDNOW estimates, predictions and numerics.

Reference numbers and where they come from:

* BG/NBD on CDNOW (2357 customers, weeks, 39-week calibration): r=0.243,
  alpha=4.414, a=0.793, b=2.426, LL=-9582.4, and the worked example
  E[Y(39) | x=2, t_x=30.43, T=38.86] = 1.226 -- Fader, Hardie & Lee (2005),
  "Counting your customers the easy way", Marketing Science 24(2).
* BG/NBD E[X(t)] for a new customer at t = 0.1429 ... 78 weeks: Hardie's BG/NBD
  spreadsheet, as quoted in the lifetimes test-suite
  (``test_expectation_returns_same_value_Hardie_excel_sheet``).
* BG/NBD E[Y(1)] of the five best CDNOW customers: lifetimes docs, Quickstart,
  "Ranking customers from best to worst" (printed to 6 decimals).
* MBG/NBD on CDNOW: r=0.525, alpha=6.183, a=0.891, b=1.614 -- BTYDplus
  ``mbgnbd.EstimateParameters``, as asserted to 3 decimals in the lifetimes
  test-suite (``test_params_out_is_close_to_BTYDplus``).
* p_alive / conditional expectations at the published parameters: computed with
  lifetimes 0.11.3 (``conditional_probability_alive``,
  ``conditional_expected_number_of_purchases_up_to_time``); not published, used
  as an independent implementation.
* Huge-input expectations: mpmath at 50 digits (not needed at test time).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.special import betaln, gammaln

from online_models.bgnbd import BGNBD
from online_models.mbgnbd import MBGNBD
from tests.reference import expected_purchases as reference_expected_purchases

DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary.csv"
FHL_2005 = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BTYDPLUS_MBGNBD = {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
PUBLISHED_ATOL = 5e-4  # published to 3 decimals: the fit must round to them


@pytest.fixture(scope="module")
def cdnow():
    data = np.genfromtxt(DATA, delimiter=",", names=True)
    assert len(data) == 2357
    return data["x"], data["t_x"], data["T"]


@pytest.fixture(scope="module")
def bg_fit(cdnow):
    return BGNBD().fit(*cdnow)


@pytest.fixture(scope="module")
def mbg_fit(cdnow):
    return MBGNBD().fit(*cdnow)


# -- published parameter tables --------------------------------------------------------


def test_bgnbd_cdnow_matches_fader_hardie_lee_2005(bg_fit):
    for name, value in FHL_2005.items():
        assert bg_fit.params_[name] == pytest.approx(value, abs=PUBLISHED_ATOL), name
    assert bg_fit.log_likelihood_ == pytest.approx(-9582.4, abs=0.05)
    assert bg_fit.n_users_ == 2357
    assert bg_fit.converged_


def test_mbgnbd_cdnow_matches_btydplus(mbg_fit):
    for name, value in BTYDPLUS_MBGNBD.items():
        assert mbg_fit.params_[name] == pytest.approx(value, abs=PUBLISHED_ATOL), name
    # MBG/NBD fits CDNOW about as well as BG/NBD (same number of parameters).
    assert mbg_fit.log_likelihood_ == pytest.approx(-9582.13, abs=0.05)
    assert mbg_fit.converged_


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_fit_is_a_local_maximum(cls, cdnow):
    model = cls().fit(*cdnow)
    assert model.log_likelihood_ == pytest.approx(model.log_likelihood(*cdnow).sum())
    for name in model.params_:
        for factor in (0.99, 1.01):
            moved = dict(model.params_, **{name: model.params_[name] * factor})
            assert cls.from_params(**moved).log_likelihood(*cdnow).sum() < model.log_likelihood_


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_weights_equal_repeated_rows(cls, cdnow):
    rows, counts = np.unique(np.stack(cdnow, axis=1), axis=0, return_counts=True)
    assert len(rows) < 2357
    full = cls().fit(*cdnow)
    compressed = cls().fit(rows[:, 0], rows[:, 1], rows[:, 2], weights=counts)
    assert compressed.n_users_ == 2357
    assert compressed.log_likelihood_ == pytest.approx(full.log_likelihood_, abs=1e-6)
    for name in full.params_:
        assert compressed.params_[name] == pytest.approx(full.params_[name], rel=1e-5)


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_time_unit_only_rescales_alpha(cls, cdnow):
    x, t_x, T = cdnow
    weeks = cls().fit(x, t_x, T)
    days = cls().fit(x, 7 * t_x, 7 * T)
    assert days.params_["alpha"] == pytest.approx(7 * weeks.params_["alpha"], rel=1e-5)
    for name in ("r", "a", "b"):
        assert days.params_[name] == pytest.approx(weeks.params_[name], rel=1e-5)
    # densities of purchase times pick up a 1/7 per repeat purchase
    assert days.log_likelihood_ == pytest.approx(weeks.log_likelihood_ - x.sum() * np.log(7), abs=1e-4)
    assert days.p_alive(2, 7 * 30.43, 7 * 38.86) == pytest.approx(weeks.p_alive(2, 30.43, 38.86), rel=1e-5)


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_penalizer_shrinks_parameters(cls, cdnow):
    plain = cls().fit(*cdnow).params_
    penalized = cls(penalizer=0.1).fit(*cdnow).params_
    assert sum(penalized.values()) < sum(plain.values())


# -- predictions against published / independent numbers -------------------------------


def test_bgnbd_expected_purchases_fhl_2005_example(bg_fit):
    published = BGNBD.from_params(**FHL_2005)
    assert published.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)
    assert bg_fit.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


def test_bgnbd_expected_purchases_new_matches_hardie_spreadsheet(bg_fit):
    t = np.array([0.1429, 1.0, 3.00, 31.8571, 32.00, 78.00])
    expected = np.array([0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576])
    np.testing.assert_allclose(bg_fit.expected_purchases_new(t), expected, atol=5e-4)


def test_bgnbd_ranking_matches_lifetimes_quickstart(bg_fit):
    x = np.array([18, 19, 17, 29, 26])
    t_x = np.array([35.14, 34.00, 28.43, 37.71, 30.86])
    T = np.array([35.86, 34.14, 28.86, 38.00, 31.00])
    documented = np.array([0.424877, 0.474738, 0.486526, 0.662396, 0.710623])
    np.testing.assert_allclose(bg_fit.expected_purchases(1, x, t_x, T), documented, atol=1e-5)


HISTORIES = (  # x, t_x, T of CDNOW customers 3, 2, 1, 509 and 1516
    np.array([0, 1, 2, 18, 26]),
    np.array([0, 1.71, 30.43, 35.14, 30.86]),
    np.array([38.86, 38.86, 38.86, 35.86, 31.0]),
)
LIFETIMES_REF = {  # lifetimes 0.11.3 at the published parameters
    BGNBD: (
        FHL_2005,
        [1.0, 0.2121009854, 0.7265785701, 0.9463156158, 0.9689156497],
        [0.195098052, 0.2031869871, 1.2260281748, 12.8205057742, 20.7497261409],
        [0.0532678912, 1.1967231933, 1.8605190579],
    ),
    MBGNBD: (
        BTYDPLUS_MBGNBD,
        [0.3897350809, 0.1708364843, 0.7062022651, 0.9411250283, 0.9655661441],
        [0.1540127467, 0.1888365414, 1.2629606233, 12.1353613894, 19.4507226522],
        [0.0530847953, 1.1829536656, 1.8047575776],
    ),
}


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_predictions_match_lifetimes(cls):
    params, p_alive, expected_39, expected_new = LIFETIMES_REF[cls]
    model = cls.from_params(**params)
    np.testing.assert_allclose(model.p_alive(*HISTORIES), p_alive, rtol=1e-8)
    np.testing.assert_allclose(model.expected_purchases(39, *HISTORIES), expected_39, rtol=1e-8)
    np.testing.assert_allclose(model.expected_purchases_new([1.0, 39.0, 78.0]), expected_new, rtol=1e-8)


# -- p_alive ----------------------------------------------------------------------------


def test_p_alive_for_customers_without_repeat_purchases():
    bg = BGNBD.from_params(**FHL_2005)
    mbg = MBGNBD.from_params(**BTYDPLUS_MBGNBD)
    assert bg.p_alive(0, 0, 38.86) == 1.0
    assert bg.p_alive(0, 0, 1e6) == 1.0
    assert 0 < mbg.p_alive(0, 0, 38.86) < 1
    assert mbg.p_alive(0, 0, 100) < mbg.p_alive(0, 0, 10)


@pytest.mark.parametrize("cls, params", [(BGNBD, FHL_2005), (MBGNBD, BTYDPLUS_MBGNBD)])
def test_p_alive_closed_form_and_bayes_ratio(cls, params):
    model = cls.from_params(**params)
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, t_x = np.meshgrid(np.arange(0, 15.0), np.linspace(0, 30, 7))
    t_x = np.where(x == 0, 0.0, t_x)
    T = 39.0
    if cls is BGNBD:  # Fader, Hardie & Lee (2008), note 021
        odds_dead = (x > 0) * a / np.maximum(b + x - 1, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    else:  # Batislam et al. (2007), appendix A eq. (5)
        odds_dead = a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    np.testing.assert_allclose(model.p_alive(x, t_x, T), 1 / (1 + odds_dead), rtol=1e-12)
    # Bayes: P(alive) = "alive at T" share of the likelihood (left bracket term).
    k = 1 if cls is MBGNBD else 0
    log_beta = betaln(a, b + x + k) - betaln(a, b)
    log_alive = log_beta + gammaln(r + x) - gammaln(r) + r * np.log(alpha) - (r + x) * np.log(alpha + T)
    bayes = np.exp(log_alive - model.log_likelihood(x, t_x, T))
    np.testing.assert_allclose(model.p_alive(x, t_x, T), bayes, rtol=1e-10)


@pytest.mark.parametrize("cls, params", [(BGNBD, FHL_2005), (MBGNBD, BTYDPLUS_MBGNBD)])
def test_p_alive_falls_with_age_and_stays_in_unit_interval(cls, params):
    model = cls.from_params(**params)
    T = np.linspace(10, 500, 50)
    for x in (1, 3, 20):
        p = model.p_alive(x, 10.0, T)
        assert np.all(np.diff(p) < 0)
        assert np.all((p >= 0) & (p <= 1))
    x, t_x, T = np.meshgrid(np.arange(0, 100, 10.0), np.arange(0, 100, 10.0), np.arange(90, 200, 10.0))
    p = model.p_alive(x, t_x, T)
    assert np.all((p >= 0) & (p <= 1))


def test_scalar_inputs_give_floats_and_arrays_broadcast():
    model = MBGNBD.from_params(**BTYDPLUS_MBGNBD)
    assert type(model.p_alive(2, 30.43, 38.86)) is float
    assert type(model.expected_purchases(39, 2, 30.43, 38.86)) is float
    assert type(model.expected_purchases_new(39)) is float
    assert type(model.log_likelihood(2, 30.43, 38.86)) is float
    assert model.p_alive([1, 2], 5, 39).shape == (2,)
    assert model.expected_purchases_new([1, 2, 3]).shape == (3,)


@pytest.mark.parametrize("cls, params", [(BGNBD, FHL_2005), (MBGNBD, BTYDPLUS_MBGNBD)])
def test_one_customer_p_alive_equals_the_array_path(cls, params):
    model = cls.from_params(**params)
    x, t_x, T = np.meshgrid([0, 1, 2, 7, 60, 5000], [0.0, 0.5, 12.0, 30.43], [30.43, 38.86, 400.0, 1e5], indexing="ij")
    x, t_x, T = x.ravel(), t_x.ravel(), T.ravel()
    batch = model.p_alive(x, t_x, T)
    one = [model.p_alive(int(a), float(b), float(c)) for a, b, c in zip(x, t_x, T)]
    assert np.allclose(one, batch, rtol=1e-12, atol=0)
    for bad in ((-1, 0.0, 1.0), (1, 2.0, 1.0), (1, float("nan"), 2.0), (1, 1.0, float("inf"))):
        with pytest.raises(ValueError):
            model.p_alive(*bad)


# -- numerical stability ------------------------------------------------------------------


@pytest.mark.parametrize("cls, params", [(BGNBD, FHL_2005), (MBGNBD, BTYDPLUS_MBGNBD)])
def test_no_overflow_for_large_x_and_T(cls, params):
    model = cls.from_params(**params)
    x = np.array([0, 1e3, 1e4, 1e5, 1e6, 5e4])
    t_x = np.array([0, 10, 9e4, 999, 1e5, 1e5])
    T = np.array([1e6, 100, 1e5, 1e3, 1e5, 1e5])
    # Underflow to 0 is the right answer for a vanishing term; anything else raises.
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        p = model.p_alive(x, t_x, T)
        e = model.expected_purchases(1e5, x, t_x, T)
        ll = model.log_likelihood(x, t_x, T)
        new = model.expected_purchases_new(np.array([0.0, 1e-9, 1e6, 1e9]))
        assert model.p_alive(1000, 10, 100) == 0.0  # lifetimes' high-frequency case
    for values in (p, e, ll, new):
        assert np.all(np.isfinite(values))
    assert np.all((p >= 0) & (p <= 1)) and np.all(e >= 0) and np.all(np.diff(new) > 0)


def test_large_inputs_match_high_precision():
    # Reference: mpmath, 50 digits, original (un-transformed) hypergeometric form.
    bg = BGNBD.from_params(**FHL_2005)
    assert bg.expected_purchases(1e5, 5e4, 1e5, 1e5) == pytest.approx(37265.65777294438, rel=1e-10)
    assert bg.expected_purchases(1e6, 1e6, 1e6, 1e6) == pytest.approx(745337.5561626065, rel=1e-10)
    mbg = MBGNBD.from_params(r=0.1, alpha=100.0, a=1.5, b=0.2)
    assert mbg.expected_purchases(1e5, 5e4, 1e5, 1e5) == pytest.approx(29271.206801761124, rel=1e-10)
    assert mbg.expected_purchases(1e4, 1e5, 999, 1e3) == pytest.approx(2.8936757994001317e-30, rel=1e-8)


def test_fit_on_huge_histories_stays_finite():
    x = np.array([0, 1, 5, 2e4, 3e5])
    t_x = np.array([0, 100.0, 4e4, 9e4, 1e5])
    T = np.full(5, 1e5)
    for cls in (BGNBD, MBGNBD):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = cls().fit(x, t_x, T, weights=[50, 20, 10, 3, 1])
        assert all(np.isfinite(v) and v > 0 for v in model.params_.values())
        assert np.isfinite(model.log_likelihood_)


# -- recovery from simulated data -----------------------------------------------------------


def simulate(n, r, alpha, a, b, drop_at_first, seed):
    """Customers of the (M)BG/NBD generative story, observed for 20-52 weeks."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20.0, 52.0, n)
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    active = rng.random(n) >= p if drop_at_first else np.ones(n, dtype=bool)
    while active.any():
        nxt = t_x + rng.exponential(1.0 / lam)
        active &= nxt <= T
        x[active] += 1
        t_x[active] = nxt[active]
        active &= rng.random(n) >= p  # dropout right after this purchase
    return x, t_x, T


@pytest.mark.parametrize("cls, drop_at_first", [(BGNBD, False), (MBGNBD, True)])
def test_fit_recovers_simulated_parameters(cls, drop_at_first):
    true = {"r": 0.8, "alpha": 6.0, "a": 0.9, "b": 3.0}
    x, t_x, T = simulate(8000, **true, drop_at_first=drop_at_first, seed=0)
    model = cls().fit(x, t_x, T)
    est = model.params_
    # Tolerances cover the spread over 20 seeds x both models (r, alpha within 21%,
    # mean dropout a/(a+b) within 14%, mean rate r/alpha within 4%).
    assert est["r"] == pytest.approx(true["r"], rel=0.3)
    assert est["alpha"] == pytest.approx(true["alpha"], rel=0.3)
    assert est["r"] / est["alpha"] == pytest.approx(true["r"] / true["alpha"], rel=0.08)
    assert est["a"] / (est["a"] + est["b"]) == pytest.approx(true["a"] / (true["a"] + true["b"]), rel=0.25)
    assert est["a"] == pytest.approx(true["a"], rel=0.6) and est["b"] == pytest.approx(true["b"], rel=0.7)


# -- API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BGNBD, MBGNBD])
def test_snapshot_round_trip(cls, cdnow):
    model = cls().fit(*cdnow)
    snapshot = json.loads(json.dumps(model.to_dict()))
    restored = cls.from_dict(snapshot)
    assert restored.params_ == model.params_
    assert restored.n_users_ == model.n_users_ and restored.log_likelihood_ == model.log_likelihood_
    assert restored.p_alive(2, 30.43, 38.86) == model.p_alive(2, 30.43, 38.86)
    other = MBGNBD if cls is BGNBD else BGNBD
    with pytest.raises(ValueError):
        other.from_dict(snapshot)


def test_invalid_use_raises():
    with pytest.raises(RuntimeError):
        BGNBD().p_alive(1, 1, 2)
    with pytest.raises(ValueError):
        BGNBD.from_params(r=0.2, alpha=-1.0, a=0.8, b=2.4)
    with pytest.raises(ValueError):
        BGNBD().fit([1, 2], [5, 50], [10, 40])  # t_x > T
    with pytest.raises(ValueError):
        MBGNBD().fit([1, -2], [5, 5], [10, 40])
    with pytest.raises(ValueError):
        MBGNBD().fit([1, 2], [5, 5], [10, 40], weights=[1, 2, 3])
    with pytest.raises(ValueError):
        BGNBD(penalizer=-1)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([BGNBD, MBGNBD]),
    st.floats(-3, 3), st.floats(-3, 5), st.floats(-3, 6), st.floats(-3, 4),
    st.integers(0, 60), st.floats(0, 400), st.floats(0, 1), st.sampled_from([7.0, 30.4, 365.0]),
)
def test_expected_purchases_follow_the_papers_formula_for_any_a(cls, log_r, log_alpha, log_a, log_b, x, age, recency, t):
    # a up to about 400: the plain series where Euler's would diverge, Euler's where the plain one would
    params = {"r": math.exp(log_r), "alpha": math.exp(log_alpha), "a": math.exp(log_a), "b": math.exp(log_b)}
    assume(abs(params["a"] - 1) > 1e-3)
    T = x + age
    t_x = recency * T if x else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = reference_expected_purchases(t, x, t_x, T, **params, mbg=cls is MBGNBD)
    assume(math.isfinite(expected))
    with warnings.catch_warnings(), np.errstate(over="ignore", under="ignore"):
        warnings.simplefilter("error")
        got = cls.from_params(**params).expected_purchases(t, x, t_x, T)
    assert got == pytest.approx(max(expected, 0.0), rel=1e-6, abs=1e-12)


def test_a_large_a_no_longer_makes_the_expectation_not_a_number():
    # a fit with a large a: the term (1-z)^(a-1) of Euler's form underflowed while its series overflowed
    model = MBGNBD.from_params(r=3.24, alpha=0.454, a=151.1, b=18.4)
    curve = model.expected_purchases_curve(np.array([30.4, 365.0]), 0.0, 0.0, 1.0)
    assert np.all(np.isfinite(curve)) and curve[1] > curve[0] > 0
