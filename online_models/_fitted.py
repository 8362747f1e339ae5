"""What every fitted parametric model of the core shares: its parameters, snapshot and repr."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize

#: bounds of the log-parameters: keeps the optimiser finite
LOG_BOUNDS = (-20.0, 20.0)


def checked_weights(weights, shape: tuple[int, ...]) -> np.ndarray:
    """``weights`` (counts of identical customers; None: ones) as a float array, or ValueError."""
    w = np.ones(shape) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != shape or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, finite, one per row, not all zero")
    return w


class FittedModel:
    """A model whose fit leaves ``params_`` (positive, named by :attr:`PARAMS`), ``n_users_`` and ``log_likelihood_``."""

    PARAMS: tuple[str, ...] = ()

    @classmethod
    def _with_params(cls, params: dict[str, float]):
        if not all(math.isfinite(v) and v > 0 for v in params.values()):
            raise ValueError(f"parameters must be positive and finite: {params}")
        model = cls()
        model.params_ = {k: float(v) for k, v in params.items()}
        return model

    def to_dict(self) -> dict[str, Any]:
        """JSON-able snapshot of the model."""
        self._check_fitted()
        return {
            "model": type(self).__name__,
            "params": dict(self.params_),
            "n_users": getattr(self, "n_users_", None),
            "log_likelihood": getattr(self, "log_likelihood_", None),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`."""
        if data.get("model", cls.__name__) != cls.__name__:
            raise ValueError(f"snapshot of {data['model']}, not {cls.__name__}")
        model = cls._with_params(dict(data["params"]))
        for key in ("n_users", "log_likelihood"):
            if data.get(key) is not None:
                setattr(model, key + "_", float(data[key]))
        return model

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}()"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({shown})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() or from_params()")

    def _maximise(self, objective, n: int) -> np.ndarray:
        """Minimise ``objective`` (value and gradient in log-parameters) from 0 with L-BFGS-B; the parameters.

        Sets ``converged_`` and ``log_params_scaled_``. L-BFGS-B may stop "abnormally" in the line
        search once at the optimum to float precision; only a remaining gradient signals a failure.
        """
        result = minimize(
            objective,
            x0=np.zeros(n),
            jac=True,
            method="L-BFGS-B",
            bounds=[LOG_BOUNDS] * n,
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-10},
        )
        self.converged_ = bool(result.success or np.max(np.abs(result.jac)) < 1e-6)
        if not self.converged_:
            warnings.warn(f"{type(self).__name__} fit did not converge: {result.message}", RuntimeWarning, stacklevel=3)
        self.log_params_scaled_ = tuple(float(v) for v in result.x)
        return np.exp(result.x)

    def _params(self) -> tuple[float, ...]:
        self._check_fitted()
        return tuple(self.params_[name] for name in self.PARAMS)
