"""Which churn risk is served, chosen by its measured calibration and ranking on the delayed labels.

The churn label of a snapshot at ``t`` is "no purchase in ``(t, t + H]``"
(:mod:`online_models.label_delay`). Four candidate risks for a buyer are
scored on each label *before* anything learns from it (progressive validation):

* ``mbgnbd``: ``1 - P(alive)`` under MBG/NBD (the purchase model's own question);
* ``mbgnbd_horizon``: P(no purchase within H) under MBG/NBD,
  ``1 - P(alive) * (1 - ((alpha + T) / (alpha + T + H)) ** (r + x))``
  (:func:`no_purchase_within`): the label's own question;
* ``classifier``: the River classifier's probability;
* ``stacked``: a logistic regression on the logits of ``classifier`` and
  ``mbgnbd_horizon``, learned online from the same labels (it calibrates the
  classifier with the purchase model as a feature).

The purchase model floors the last two: a user cannot be likelier to buy within
H than to be alive, so their risk is at least ``1 - P(alive)``. A lapser the
purchase model is sure about never reads as low risk whoever is chosen.

:class:`ScoreTrack` keeps, per candidate, the Brier score, the ROC AUC (exact for
scores on a 1/1000 grid: a histogram of positives and negatives), and the
reliability curve (ten bins of predicted risk: mean predicted, observed rate).
:meth:`RiskSelection.chosen` serves the candidate with the lowest Brier score
among those with ``min_labels`` labels and AUC >= ``min_auc``; before any
qualifies, ``mbgnbd``.

>>> track = ScoreTrack()
>>> for p, y in [(0.9, True), (0.8, True), (0.3, False), (0.85, False), (0.1, False)]:
...     track.update(p, y)
>>> track.report()["brier"], track.report()["auc"]   # (0.01 + 0.04 + 0.09 + 0.7225 + 0.01) / 5; 5 of 6 pairs ordered
(0.1745, 0.8333)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import linear_model, optim
from scipy.special import logit

__all__ = ["CANDIDATES", "RiskSelection", "ScoreTrack", "no_purchase_within"]

CANDIDATES = ("mbgnbd", "mbgnbd_horizon", "classifier", "stacked")
#: the candidates that read the classifier (their risk can fall while a user stays silent)
USES_CLASSIFIER = frozenset({"classifier", "stacked"})
_EDGE = 1e-4  # logits of probabilities clipped to [EDGE, 1 - EDGE]


def no_purchase_within(model, x: float, t_x: float, T: float, horizon_days: float) -> float:
    """P(no purchase in ``(T, T + horizon]``) under a fitted BG/NBD or MBG/NBD ``model`` (days).

    Dead, or alive and the Poisson rate (posterior Gamma(r + x, alpha + T)) gives no
    purchase: dropout happens only at a purchase, so an alive user who buys nothing stays alive.
    """
    p_alive = float(model.p_alive(x, t_x, T))
    r, alpha = model.params_["r"], model.params_["alpha"]
    quiet_if_alive = math.exp((r + x) * (math.log(alpha + T) - math.log(alpha + T + horizon_days)))
    return 1.0 - p_alive * (1.0 - quiet_if_alive)


class ScoreTrack:
    """Brier score, ROC AUC and reliability curve of one probability, updated one label at a time."""

    def __init__(self, resolution: int = 1000, reliability_bins: int = 10):
        self.resolution = int(resolution)
        self.positives = np.zeros(self.resolution + 1, dtype=np.int64)
        self.negatives = np.zeros(self.resolution + 1, dtype=np.int64)
        self.squared_error = 0.0
        self.labels = 0
        self.bin_count = np.zeros(reliability_bins, dtype=np.int64)
        self.bin_predicted = np.zeros(reliability_bins)
        self.bin_observed = np.zeros(reliability_bins, dtype=np.int64)

    def update(self, p: float, y: bool) -> None:
        """Count prediction ``p`` (clipped to [0, 1]) against outcome ``y``."""
        p = min(1.0, max(0.0, float(p)))
        y = bool(y)
        (self.positives if y else self.negatives)[round(p * self.resolution)] += 1
        self.squared_error += (p - y) ** 2
        self.labels += 1
        k = min(int(p * len(self.bin_count)), len(self.bin_count) - 1)
        self.bin_count[k] += 1
        self.bin_predicted[k] += p
        self.bin_observed[k] += y

    def brier(self) -> float | None:
        """Mean squared error of the probability; None before a label."""
        return self.squared_error / self.labels if self.labels else None

    def auc(self) -> float | None:
        """Probability that a positive outscores a negative (ties half); None until both were seen."""
        pos, neg = int(self.positives.sum()), int(self.negatives.sum())
        if not pos or not neg:
            return None
        below = np.cumsum(self.negatives) - self.negatives
        return float((self.positives * (below + 0.5 * self.negatives)).sum() / (pos * neg))

    def reliability(self) -> list[dict[str, Any]]:
        """Non-empty bins of predicted risk: ``{"bin": [lo, hi], "labels", "predicted", "observed"}``."""
        width = 1 / len(self.bin_count)
        return [
            {
                "bin": [round(k * width, 4), round((k + 1) * width, 4)],
                "labels": int(n),
                "predicted": round(float(self.bin_predicted[k] / n), 4),
                "observed": round(float(self.bin_observed[k] / n), 4),
            }
            for k, n in enumerate(self.bin_count)
            if n
        ]

    def calibration_error(self) -> float | None:
        """Expected calibration error: the label-weighted mean |predicted - observed| over the bins."""
        if not self.labels:
            return None
        n = self.bin_count
        return float(np.abs(self.bin_predicted - self.bin_observed).sum() / n.sum())

    def report(self) -> dict[str, Any]:
        """``labels``, ``positives``, ``brier``, ``auc``, ``calibration_error``, ``reliability``."""

        def rounded(v):
            return None if v is None else round(v, 4)

        return {
            "labels": self.labels,
            "positives": int(self.positives.sum()),
            "brier": rounded(self.brier()),
            "auc": rounded(self.auc()),
            "calibration_error": rounded(self.calibration_error()),
            "reliability": self.reliability(),
        }


def _logit(p: float) -> float:
    return float(logit(min(1 - _EDGE, max(_EDGE, p))))


class RiskSelection:
    """The candidate risks of a buyer, their progressive figures, and the one to serve."""

    def __init__(self, min_labels: int = 300, min_auc: float = 0.7, horizon_days: float = 30.0):
        self.min_labels = int(min_labels)
        self.min_auc = float(min_auc)
        #: the label horizon, as the labels last said (``horizon_ms`` of a label sample)
        self.horizon_days = float(horizon_days)
        self.tracks = {name: ScoreTrack() for name in CANDIDATES}
        self.stacker = linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4)

    def _stack_features(self, classifier_p: float, horizon_p: float) -> dict[str, float]:
        return {"classifier": _logit(classifier_p), "purchase": _logit(horizon_p)}

    def score(self, name: str, *, p_alive: float, horizon_p: float, classifier_p: float | None) -> float:
        """Candidate ``name``'s risk for a buyer (the classifier's candidates floored by ``1 - p_alive``)."""
        if name == "mbgnbd":
            return 1.0 - p_alive
        if name == "mbgnbd_horizon":
            return horizon_p
        if classifier_p is None:
            raise ValueError(f"{name} needs the classifier's probability")
        if name == "classifier":
            raw = classifier_p
        else:
            raw = self.stacker.predict_proba_one(self._stack_features(classifier_p, horizon_p)).get(True, 0.5)
        return max(float(raw), 1.0 - p_alive)

    def learn(self, *, p_alive: float, horizon_p: float, classifier_p: float, churned: bool) -> None:
        """Score every candidate on one matured label, then let the stacker learn it."""
        for name in CANDIDATES:
            self.tracks[name].update(self.score(name, p_alive=p_alive, horizon_p=horizon_p, classifier_p=classifier_p), churned)
        self.stacker.learn_one(self._stack_features(classifier_p, horizon_p), bool(churned))

    def qualified(self) -> list[str]:
        """Candidates with ``min_labels`` labels and AUC >= ``min_auc``."""
        out = []
        for name, track in self.tracks.items():
            auc = track.auc() if track.labels >= self.min_labels else None
            if auc is not None and auc >= self.min_auc:
                out.append(name)
        return out

    def chosen(self) -> str:
        """The qualified candidate with the lowest Brier score; ``mbgnbd`` while none qualifies."""
        qualified = self.qualified()
        if not qualified:
            return "mbgnbd"
        return min(qualified, key=lambda name: (self.tracks[name].brier(), CANDIDATES.index(name)))

    def report(self) -> dict[str, Any]:
        """What ``/v1/models`` shows: the chosen risk, the rule, and every candidate's figures."""
        return {
            "chosen": self.chosen(),
            "rule": f"lowest Brier score among candidates with >= {self.min_labels} labels and ROC AUC >= {self.min_auc}",
            "horizon_days": self.horizon_days,
            "measured_on": "buyers' delayed labels, each scored before any model learned it",
            "candidates": {name: track.report() for name, track in self.tracks.items()},
        }
