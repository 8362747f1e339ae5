"""Customer lifetime value of one portrait: purchases expected over a horizon, times the expected order value.

The purchase model (MBG/NBD or BG/NBD, in days) gives the purchases expected in each
month of the horizon; each month's are discounted to today at the annual rate, at the
month's end (as lifetimes' ``customer_lifetime_value`` does). Gamma-Gamma gives the
expected value of one purchase day from the repeat days' mean spend. A purchase day is
a calendar day of the shop's time zone with at least one payment, as in the purchase model's ``x``.

>>> from online_models.gamma_gamma import GammaGamma
>>> from online_models.mbgnbd import MBGNBD
>>> from online_models.portrait_types import portrait_from_json
>>> portrait = portrait_from_json({"as_of": "2024-03-01T00:00:00.000Z", "first_purchase": "2024-01-01T00:00:00.000Z",
...             "last_purchase": "2024-02-20T00:00:00.000Z", "purchase_days": 4,
...             "lifetime": {"spend": 400.0, "repeat_spend": 300.0}})
>>> spend_stats(portrait)
(3, 100.0)
>>> purchases = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)
>>> spend = GammaGamma.from_params(p=6.0, q=4.0, v=15.0)
>>> clv_scores(portrait, purchases, spend, horizon_days=365, annual_rate=0.1)
Clv(expected_purchases=6.2531, expected_order_value=90.0, value=562.78, horizon_days=365)
>>> clv_scores(portrait, purchases, None, horizon_days=365, annual_rate=0.0).expected_purchases
6.514
>>> round(purchases.expected_purchases(365, x=3, t_x=50, T=60), 4)
6.514
>>> clv_scores(portrait_from_json({"as_of": "2024-03-01T00:00:00.000Z"}), purchases, spend, horizon_days=365, annual_rate=0.1) is None
True
"""

from __future__ import annotations

import math

import numpy as np

from online_models.churn import purchase_stats
from online_models.portrait_types import Clv, RenderedPortrait

DAYS_PER_YEAR = 365.0


def spend_stats(portrait: RenderedPortrait) -> tuple[int, float | None] | None:
    """Gamma-Gamma's statistics: (repeat purchase days x, their mean spend m); None for non-buyers.

    ``m`` is None when ``x`` is 0 or the repeat-day spend is unknown.
    """
    stats = purchase_stats(portrait)
    if stats is None:
        return None
    x = stats[0]
    repeat = portrait.lifetime.repeat_spend
    return x, (float(repeat) / x if x > 0 and repeat is not None else None)


def discount_steps(horizon_days: float) -> np.ndarray:
    """The ends of the horizon's months (at most ``365/12`` days each), in days.

    >>> discount_steps(365).round(2).tolist()[:3], len(discount_steps(365)), discount_steps(10).tolist()
    ([30.42, 60.83, 91.25], 12, [10.0])
    """
    months = max(1, math.ceil(horizon_days * 12 / DAYS_PER_YEAR - 1e-9))
    return horizon_days * np.arange(1, months + 1) / months


def discounted_purchases(model, x: float, t_x: float, T: float, *, horizon_days: float, annual_rate: float) -> float:
    """Purchases ``model`` expects within ``horizon_days``, each month's discounted to today at its end."""
    ends = discount_steps(horizon_days)
    cumulative = model.expected_purchases_curve(ends, x, t_x, T)
    per_month = np.diff(np.concatenate([[0.0], cumulative]))
    return float(per_month @ (1.0 + annual_rate) ** (-ends / DAYS_PER_YEAR))


def clv_scores(portrait: RenderedPortrait, purchase_model, spend_model, *, horizon_days: float, annual_rate: float) -> Clv | None:
    """The ``clv`` block of a buyer; None for a non-buyer, without a purchase model, or where the
    purchase model gives no finite figure for the buyer's history (parameters at the far edge of
    the hypergeometric series' reach). Without a spend model the order value and the value are None."""
    stats = purchase_stats(portrait)
    if stats is None or purchase_model is None:
        return None
    purchases = discounted_purchases(purchase_model, *stats, horizon_days=horizon_days, annual_rate=annual_rate)
    if not math.isfinite(purchases):
        return None
    order_value = None
    if spend_model is not None:
        x, m = spend_stats(portrait)
        if x == 0 or m is not None:
            order_value = float(spend_model.expected_order_value(float(x), float(m or 0.0)))
        else:  # repeat-day spend unknown: the population's mean
            order_value = float(spend_model.mean_value())
        if not math.isfinite(order_value):
            order_value = None
    return Clv(
        expected_purchases=round(purchases, 4),
        expected_order_value=None if order_value is None else round(order_value, 2),
        value=None if order_value is None else round(purchases * order_value, 2),
        horizon_days=horizon_days,
    )
