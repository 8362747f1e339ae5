"""Shared maths and fitting machinery of the BG/NBD family.

BG/NBD and MBG/NBD differ in one assumption only: in the MBG/NBD a customer may
also drop out right after the first purchase, not only after repeat purchases.
Writing ``k`` for the number of extra dropout chances (0 for BG/NBD, 1 for
MBG/NBD), every formula of the two models is the same up to a shift of ``x`` by
``k`` in the beta part; this module implements them once in that form.

With ``x`` repeat purchases, last one at ``t_x``, customer age ``T``, the
likelihood of one customer is

    B(a, b+x+k)/B(a, b) * Gamma(r+x) alpha^r / Gamma(r)
        * [(alpha+T)^-(r+x) + d * a/(b+x+k-1) * (alpha+t_x)^-(r+x)]

where ``d`` is 1 when a dropout could have happened (``x > 0`` or ``k == 1``)
and 0 otherwise. The first bracket term is "alive at T", the second "dropped
out right after the last purchase"; their ratio gives ``p_alive``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

from online_models._fitted import FittedModel, checked_weights

PARAM_NAMES = ("r", "alpha", "a", "b")
_NUMBERS = (int, float)


def _as_arrays(*values: Any) -> tuple[bool, list[np.ndarray]]:
    """Broadcast inputs to float arrays; also tell whether all were scalars."""
    scalar = all(np.ndim(v) == 0 for v in values)
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values))
    return scalar, [np.array(a) for a in arrays]


def _check_history(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> None:
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t_x)) and np.all(np.isfinite(T))):
        raise ValueError("x, t_x and T must be finite")
    if np.any(x < 0) or np.any(t_x < 0):
        raise ValueError("x and t_x must be non-negative")
    if np.any(t_x > T):
        raise ValueError("t_x (recency) cannot exceed T (age)")


class BetaGeoBase(FittedModel):
    """Base class of :class:`BGNBD` and :class:`MBGNBD`; see the module docstring."""

    PARAMS = PARAM_NAMES
    _k: int = 0  # dropout chances before the first repeat purchase

    def __init__(self, penalizer: float = 0.0) -> None:
        if penalizer < 0:
            raise ValueError("penalizer must be >= 0")
        self.penalizer = float(penalizer)

    # -- construction / snapshots -------------------------------------------------

    @classmethod
    def from_params(cls, r: float, alpha: float, a: float, b: float):
        """A model with known parameters (no fitting)."""
        return cls._with_params({"r": r, "alpha": alpha, "a": a, "b": b})

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the model."""
        return {**super().to_dict(), "penalizer": self.penalizer}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`."""
        model = super().from_dict(data)
        model.penalizer = float(data.get("penalizer", 0.0))
        return model

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(penalizer={self.penalizer})"
        return super().__repr__()

    # -- likelihood ----------------------------------------------------------------

    def _parts(self, params, x, t_x, T):
        """Log of the common factor, of the "alive" and of the "dropped out" term."""
        r, alpha, a, b = params
        k = self._k
        can_drop = (x > 0) | (k == 1)
        common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + k) - betaln(a, b)
        log_alive = -(r + x) * np.log(alpha + T)
        denom = np.where(can_drop, b + x + k - 1, 1.0)
        log_dead = np.where(can_drop, np.log(a) - np.log(denom) - (r + x) * np.log(alpha + t_x), -np.inf)
        return common, log_alive, log_dead, can_drop, denom

    def _loglik_and_grad(self, params, x, t_x, T):
        """Per-customer log-likelihood and its gradient in (r, alpha, a, b)."""
        r, alpha, a, b = params
        k = self._k
        common, log_alive, log_dead, can_drop, denom = self._parts(params, x, t_x, T)
        ll = common + np.logaddexp(log_alive, log_dead)
        p_dead = expit(log_dead - log_alive)  # posterior weight of the dropout term
        p_live = 1.0 - p_dead
        d_r = digamma(r + x) - digamma(r) + np.log(alpha)
        d_r -= p_live * np.log(alpha + T) + p_dead * np.log(alpha + t_x)
        d_alpha = r / alpha - (r + x) * (p_live / (alpha + T) + p_dead / (alpha + t_x))
        d_beta = digamma(a + b) - digamma(a + b + x + k)
        d_a = d_beta + p_dead / a
        d_b = d_beta + digamma(b + x + k) - digamma(b) - np.where(can_drop, p_dead / denom, 0.0)
        return ll, np.stack([d_r, d_alpha, d_a, d_b])

    def log_likelihood(self, x, t_x, T):
        """Log-likelihood of each customer history under the current parameters."""
        scalar, (x, t_x, T) = _as_arrays(x, t_x, T)
        _check_history(x, t_x, T)
        common, log_alive, log_dead, _, _ = self._parts(self._params(), x, t_x, T)
        out = common + np.logaddexp(log_alive, log_dead)
        return float(out) if scalar else out

    # -- fitting ---------------------------------------------------------------------

    def fit(self, x, t_x, T, weights=None, *, shrink: float = 0.0):
        """Maximum-likelihood fit on frequency ``x``, recency ``t_x`` and age ``T``.

        ``weights`` counts identical customers (compressed data). Times may be in
        any unit; ``alpha`` comes out in that unit. ``shrink`` > 0 adds
        ``shrink * sum(log(param)**2)`` (time rescaled so that ``max(T) == 10``) to the
        mean negative log-likelihood: a weak pull towards 1 that keeps a fit off the
        edges of the parameter space where the likelihood is flat (see :func:`fit_report`).
        """
        _, (x, t_x, T) = _as_arrays(x, t_x, T)
        x, t_x, T = x.ravel(), t_x.ravel(), T.ravel()
        _check_history(x, t_x, T)
        if x.size == 0:
            raise ValueError("cannot fit on no data")
        w = checked_weights(weights, x.shape)

        # Identical rows are collapsed into weights (CDNOW: 2357 rows -> 1016).
        rows, inverse = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_inverse=True)
        w_u = np.bincount(inverse.ravel(), weights=w)
        keep = w_u > 0
        rows, w_u = rows[keep], w_u[keep]
        # Times are rescaled so that max(T) == 10, which keeps alpha near 1 for the
        # optimiser whatever the time unit; alpha is scaled back afterwards.
        scale = 10.0 / rows[:, 2].max() if rows[:, 2].max() > 0 else 1.0
        xs, txs, Ts = rows[:, 0], rows[:, 1] * scale, rows[:, 2] * scale
        total = w_u.sum()

        def objective(log_params):
            params = np.exp(log_params)
            ll, grad = self._loglik_and_grad(params, xs, txs, Ts)
            value = -(w_u @ ll) / total + self.penalizer * np.sum(params**2) + shrink * np.sum(log_params**2)
            gradient = -(grad @ w_u) / total * params + 2 * self.penalizer * params**2 + 2 * shrink * log_params
            return value, gradient

        r, alpha_scaled, a, b = self._maximise(objective, 4)
        self.shrink_ = float(shrink)
        self.params_ = {"r": float(r), "alpha": float(alpha_scaled / scale), "a": float(a), "b": float(b)}
        self.n_users_ = float(w.sum())
        self.log_likelihood_ = float(w_u @ self.log_likelihood(rows[:, 0], rows[:, 1], rows[:, 2]))
        return self

    # -- predictions -----------------------------------------------------------------

    def _log_odds_alive(self, x, t_x, T):
        """log P(alive) - log P(dropped out) given the history (+inf if no dropout possible)."""
        _, log_alive, log_dead, _, _ = self._parts(self._params(), x, t_x, T)
        return log_alive - log_dead

    def p_alive(self, x, t_x, T):
        """Probability that a customer with history ``(x, t_x, T)`` is still alive at ``T``."""
        if type(x) in _NUMBERS and type(t_x) in _NUMBERS and type(T) in _NUMBERS:
            return self._p_alive_one(float(x), float(t_x), float(T))
        scalar, (x, t_x, T) = _as_arrays(x, t_x, T)
        _check_history(x, t_x, T)
        out = expit(self._log_odds_alive(x, t_x, T))
        return float(out) if scalar else out

    def _p_alive_one(self, x: float, t_x: float, T: float) -> float:
        """:meth:`p_alive` of one customer in plain floats: what scoring a portrait needs, without array overhead."""
        if not (math.isfinite(x) and math.isfinite(t_x) and math.isfinite(T)):
            raise ValueError("x, t_x and T must be finite")
        if x < 0 or t_x < 0:
            raise ValueError("x and t_x must be non-negative")
        if t_x > T:
            raise ValueError("t_x (recency) cannot exceed T (age)")
        r, alpha, a, b = self._params()
        if not (x > 0 or self._k == 1):
            return 1.0  # no dropout is possible before the first repeat purchase
        log_alive = -(r + x) * math.log(alpha + T)
        log_dead = math.log(a) - math.log(b + x + self._k - 1) - (r + x) * math.log(alpha + t_x)
        return float(expit(log_alive - log_dead))

    def age_at_p_alive(self, x: float, t_x: float, p: float) -> float | None:
        """The age ``T`` at which :meth:`p_alive` of a silent customer with ``(x, t_x)`` falls to ``p``.

        P(alive) falls with ``T`` alone, so ``log((1-p)/p) = log a - log(b+x+k-1) + (r+x) log((alpha+T)/(alpha+t_x))``
        solves for it; ``t_x`` when it is already at or below ``p``, None when no dropout is possible.

        >>> from online_models.mbgnbd import MBGNBD
        >>> model = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)
        >>> T = model.age_at_p_alive(4, 8.0, 0.3)
        >>> round(model.p_alive(4, 8.0, T), 6)
        0.3
        """
        if not 0.0 < p < 1.0:
            raise ValueError("p must be in (0, 1)")
        r, alpha, a, b = self._params()
        if not (x > 0 or self._k == 1):
            return None
        log_ratio = (math.log((1 - p) / p) - math.log(a) + math.log(b + x + self._k - 1)) / (r + x)
        return max(t_x, (alpha + t_x) * math.exp(log_ratio) - alpha)

    def expected_purchases(self, t, x, t_x, T):
        """Expected number of purchases in the next ``t`` periods given the history.

        Computed as ``c/(a-1) * (1 - G) * p_alive`` with ``c = a+b+x+k-1`` and
        ``G = ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+k; c; z)``,
        ``z = t/(alpha+T+t)``. Where ``r+x >= a-1``, ``G`` is evaluated through Euler's
        transformation, ``G = (1-z)^(a-1) 2F1(c-r-x, a-1; c; z)``, which has no large powers or
        divergent series even for very large ``x`` or ``T``; where ``a-1 > r+x`` (a large ``a``)
        that series diverges as ``z`` nears 1, while the plain one converges: it is used there.
        ``c`` at 0 (a pole of both series, BG/NBD's ``x = 0`` with ``a+b = 1``) is taken a hair above it.
        """
        scalar, (t, x, t_x, T) = _as_arrays(t, x, t_x, T)
        _check_history(x, t_x, T)
        if np.any(t < 0):
            raise ValueError("t must be non-negative")
        p_alive = expit(self._log_odds_alive(x, t_x, T))
        out = self._expected_if_alive(t, x, T) * p_alive
        return float(out) if scalar else out

    def _expected_if_alive(self, t, x, T):
        r, alpha, a, b = self._params()
        if abs(a - 1.0) < 1e-7:  # removable singularity at a == 1
            a = 1.0 + 1e-7
        k = self._k
        log_1mz = -np.log1p(t / (alpha + T))
        z = -np.expm1(log_1mz)

        def series(plain: bool, x, c, log_1mz, z):
            if plain:
                return np.exp((r + x) * log_1mz) * hyp2f1(r + x, b + x + k, c, z)
            return np.exp((a - 1) * log_1mz) * hyp2f1(c - r - x, a - 1, c, z)

        if np.ndim(x) == 0:  # one history (a CLV curve): one form for all its horizons
            c = a + b + x + k - 1
            c = 1e-7 if abs(c) < 1e-7 else c  # removable as well: c / (a-1) * (1 - G) has a limit there
            G = series(a - 1 > r + x, x, c, log_1mz, z)
        else:
            t, x, log_1mz, z = np.broadcast_arrays(t, x, log_1mz, z)
            c = a + b + x + k - 1
            c = np.where(np.abs(c) < 1e-7, 1e-7, c)
            G = np.empty(np.shape(c))
            for plain, where in ((True, a - 1 > r + x), (False, a - 1 <= r + x)):
                G[where] = series(plain, x[where], c[where], log_1mz[where], z[where])
        return np.maximum(c / (a - 1) * (1.0 - G), 0.0)

    def expected_purchases_curve(self, t, x: float, t_x: float, T: float) -> np.ndarray:
        """:meth:`expected_purchases` of one customer (plain numbers) at each horizon in ``t``: what CLV needs."""
        return self._expected_if_alive(np.asarray(t, dtype=float), float(x), float(T)) * self.p_alive(x, t_x, T)

    def expected_purchases_new(self, t):
        """Expected number of repeat purchases in ``(0, t]`` of a new customer."""
        return self.expected_purchases(t, 0.0, 0.0, 0.0)



#: a parameter (time rescaled so that ``max(T) == 10``) beyond ``exp(+-EDGE_LOG)`` is at the edge of the space
EDGE_LOG = math.log(1e4)
#: a shrunk fit may lose at most this much log-likelihood to the plain one: chi2(4 df, 0.95) / 2
SHRINK_LL_SLACK = 4.74
#: the pull towards 1 of a shrunk fit (see :meth:`BetaGeoBase.fit`)
SHRINK = 1e-3


def fit_report(model: BetaGeoBase) -> dict[str, Any]:
    """How far a fit can be trusted: ``converged``, ``log_likelihood``, ``n_users``, ``estimator``,
    ``at_edge`` (parameters beyond ``exp(+-EDGE_LOG)`` in rescaled time) and ``sound`` (converged, none at the edge)."""
    logs = getattr(model, "log_params_scaled_", None)
    edge = [name for name, v in zip(PARAM_NAMES, logs or ()) if not math.isfinite(v) or abs(v) > EDGE_LOG]
    converged = bool(getattr(model, "converged_", False))
    return {
        "converged": converged,
        "log_likelihood": getattr(model, "log_likelihood_", None),
        "n_users": int(getattr(model, "n_users_", 0)),
        "estimator": "shrunk" if getattr(model, "shrink_", 0.0) else "ml",
        "at_edge": edge,
        "sound": converged and logs is not None and not edge,
    }


def fit_trusted(cls: type[BetaGeoBase], x, t_x, T, *, in_use: BetaGeoBase | None = None) -> tuple[BetaGeoBase | None, dict[str, Any]]:
    """A sound fit of ``cls`` and its :func:`fit_report`; the model is None when no fit is sound.

    The plain maximum-likelihood fit when it is sound. When it runs to an edge (the
    likelihood flat along a ridge, e.g. ``a`` -> 0 while no one has had time to drop
    out, or ``a``, ``b`` -> infinity when everyone drops out alike), a fit shrunk
    towards 1 (:data:`SHRINK`) instead, if it is sound and its log-likelihood is within
    :data:`SHRINK_LL_SLACK` of the plain one (no significant loss of fit). The report
    of a refused fit names the plain fit's parameters.

    A sound shrunk fit that loses more than the slack is still taken over ``in_use``
    (the fit the caller serves) when it explains this sample better than ``in_use``
    does: the slack is a fixed amount of log-likelihood while the loss grows with the
    sample, so on a large sample every refit would be refused and the fit in use,
    made on the first few buyers, would be served for good.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = cls().fit(x, t_x, T)
        report = fit_report(plain)
        if report["sound"]:
            return plain, report
        shrunk = cls().fit(x, t_x, T, shrink=SHRINK)
    shrunk_report = fit_report(shrunk)
    if shrunk_report["sound"] and plain.log_likelihood_ - shrunk.log_likelihood_ <= SHRINK_LL_SLACK:
        return shrunk, {**shrunk_report, "plain_fit": {**report, "params": dict(plain.params_)}}
    if shrunk_report["sound"] and in_use is not None:
        with np.errstate(all="ignore"):
            in_use_ll = float(np.sum(in_use.log_likelihood(x, t_x, T)))
        if np.isfinite(in_use_ll) and shrunk.log_likelihood_ > in_use_ll:
            return shrunk, {
                **shrunk_report,
                "plain_fit": {**report, "params": dict(plain.params_)},
                "replaced_log_likelihood": in_use_ll,
            }
    return None, {**report, "params": dict(plain.params_), "shrunk_fit": {**shrunk_report, "params": dict(shrunk.params_)}}
