"""Gamma-Gamma model of spend per purchase.

Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer
base analysis", Journal of Marketing Research 42(4), 415-430.

The value of each of a customer's transactions is ``z ~ Gamma(p, nu)``; the
scale ``nu ~ Gamma(q, v)`` varies across customers and is independent of how
often they buy. A customer with ``x`` repeat transactions of mean value ``m``
is expected to spend ``p (v + x m) / (p x + q - 1)`` per future transaction: a
weighted mean of the population mean ``p v / (q - 1)`` and their own ``m``.
Only repeat transactions count (``x > 0``); the first one is left out, as in
the paper, because it is often unlike the rest.

>>> from online_models.gamma_gamma import GammaGamma

The paper's estimates on CDNOW (946 repeat buyers of the 39-week calibration):

>>> model = GammaGamma.from_params(p=6.25, q=3.74, v=15.44)
>>> round(model.mean_value(), 2)
35.22
>>> [round(float(v), 2) for v in model.expected_order_value(x=[0, 1, 2, 10], m=[0, 11.77, 22.35, 22.35])]
[35.22, 18.92, 24.66, 22.89]

CDNOW's first customer (two repeat purchases averaging $22.35) is expected to spend $24.66 per
future purchase: pulled towards the mean, as in lifetimes' quickstart (24.658616 at its own fit).

Fitting recovers the parameters of simulated buyers (p=6, q=4, v=15):

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> x = rng.integers(1, 6, size=2000)
>>> nu = rng.gamma(4.0, 1 / 15.0, size=2000)
>>> m = np.array([rng.gamma(6.0, 1 / n, size=k).mean() for n, k in zip(nu, x)])
>>> model = GammaGamma().fit(x, m)
>>> model, model.n_users_, gamma_gamma_report(model)["sound"]
(GammaGamma(p=5.618, q=3.887, v=15.56), 2000.0, True)
>>> GammaGamma.from_dict(model.to_dict()).params_ == model.params_
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from online_models._fitted import FittedModel, checked_weights

__all__ = ["GammaGamma", "gamma_gamma_report", "PARAM_NAMES"]

PARAM_NAMES = ("p", "q", "v")
#: a parameter (spend rescaled to mean 1) beyond ``exp(+-EDGE_LOG)`` is at the edge of the space
EDGE_LOG = math.log(1e4)


def _check(x: np.ndarray, m: np.ndarray) -> None:
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(m))):
        raise ValueError("x and m must be finite")
    if np.any(x <= 0) or np.any(m <= 0):
        raise ValueError("x and m must be positive: the fit is on repeat buyers with spend")


class GammaGamma(FittedModel):
    """Gamma-Gamma spend model: fit by maximum likelihood on repeat buyers' ``(x, m)``."""

    PARAMS = PARAM_NAMES

    @classmethod
    def from_params(cls, p: float, q: float, v: float) -> "GammaGamma":
        """A model with known parameters (no fitting)."""
        return cls._with_params({"p": p, "q": q, "v": v})

    @staticmethod
    def _loglik_and_grad(params, x, m):
        p, q, v = params
        px = p * x
        log_xmv = np.log(x * m + v)
        ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * log_xmv
        shared = digamma(px + q)
        d_p = x * (shared - digamma(px) + np.log(m) + np.log(x) - log_xmv)
        d_q = shared - digamma(q) + np.log(v) - log_xmv
        d_v = q / v - (px + q) / (x * m + v)
        return ll, np.stack([d_p, d_q, d_v])

    def log_likelihood(self, x, m):
        """Log-likelihood of each customer's ``(x, m)`` under the current parameters."""
        scalar = np.ndim(x) == 0 and np.ndim(m) == 0
        x, m = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(x, m))
        _check(x, m)
        ll, _ = self._loglik_and_grad(self._params(), x, m)
        return float(ll) if scalar else ll

    def fit(self, x, m, weights=None) -> "GammaGamma":
        """Maximum-likelihood fit on repeat transactions ``x`` (> 0) and their mean value ``m`` (> 0).

        ``v`` comes out in the currency of ``m``; spend is rescaled to mean 1 for the optimiser.
        """
        x, m = (np.asarray(a, dtype=float).ravel() for a in np.broadcast_arrays(x, m))
        if x.size == 0:
            raise ValueError("cannot fit on no data")
        _check(x, m)
        w = checked_weights(weights, x.shape)
        scale = 1.0 / float(np.average(m, weights=w))
        ms, total = m * scale, w.sum()

        def objective(log_params):
            params = np.exp(log_params)
            ll, grad = self._loglik_and_grad(params, x, ms)
            return -(w @ ll) / total, -(grad @ w) / total * params

        p, q, v_scaled = self._maximise(objective, 3)
        self.params_ = {"p": float(p), "q": float(q), "v": float(v_scaled / scale)}
        self.n_users_ = float(total)
        self.log_likelihood_ = float(w @ self.log_likelihood(x, m))
        return self

    def mean_value(self) -> float:
        """The population's mean value per transaction, ``p v / (q - 1)`` (infinite when ``q <= 1``)."""
        p, q, v = self._params()
        return p * v / (q - 1) if q > 1 else math.inf

    def expected_order_value(self, x, m):
        """Expected value of a future transaction given ``x`` repeat transactions of mean value ``m``.

        ``p (v + x m) / (p x + q - 1)``; with ``x == 0`` (``m`` ignored) the population mean.
        """
        p, q, v = self._params()
        if type(x) in (int, float) and type(m) in (int, float):
            if x < 0 or (x > 0 and not m >= 0):
                raise ValueError("x and m must be non-negative")
            return p * (v + x * m) / (p * x + q - 1) if x > 0 else self.mean_value()
        scalar = np.ndim(x) == 0 and np.ndim(m) == 0
        x, m = (np.asarray(a, dtype=float) for a in np.broadcast_arrays(x, m))
        if np.any(x < 0) or np.any((x > 0) & ~(m >= 0)):
            raise ValueError("x and m must be non-negative")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(x > 0, p * (v + x * np.where(x > 0, m, 0.0)) / (p * x + q - 1), self.mean_value())
        return float(out) if scalar else out


def gamma_gamma_report(model: GammaGamma) -> dict[str, Any]:
    """How far a fit can be trusted: ``converged``, ``log_likelihood``, ``n_users``, ``at_edge``
    (parameters beyond ``exp(+-EDGE_LOG)`` with spend rescaled to mean 1), ``finite_mean``
    (``q > 1``) and ``sound`` (all of them fine).

    >>> gamma_gamma_report(GammaGamma.from_params(p=6.25, q=3.74, v=15.44))["finite_mean"]
    True
    """
    logs = getattr(model, "log_params_scaled_", None)
    edge = [name for name, value in zip(PARAM_NAMES, logs or ()) if not math.isfinite(value) or abs(value) > EDGE_LOG]
    converged = bool(getattr(model, "converged_", False))
    finite_mean = hasattr(model, "params_") and model.params_["q"] > 1
    return {
        "converged": converged,
        "log_likelihood": getattr(model, "log_likelihood_", None),
        "n_users": int(getattr(model, "n_users_", 0)),
        "at_edge": edge,
        "finite_mean": finite_mean,
        "sound": converged and logs is not None and not edge and finite_mean,
    }
