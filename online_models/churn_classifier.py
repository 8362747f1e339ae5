"""Churn propensity (流失预警) learned online from delayed labels, with progressive validation.

``y=True`` means "no purchase within the horizon after the snapshot" (see
:mod:`online_models.label_delay`, which produces the ``(features, label)``
pairs). Each :meth:`ChurnClassifier.learn_one` first scores ``x`` with the current
model and updates a :class:`river.metrics.ROCAUC` and the label counts, then
learns: the reported AUC is measured on labels the model had not seen yet.

The default model is ``StandardScaler | LogisticRegression`` (SGD, lr 0.05,
small L2): sparse dict features such as ``cat:<name>`` need no fixed schema.
Measured with ``python scripts/evaluate_churn.py`` (1000 simulated users x 60
days, horizon 14 days, a weekly snapshot of every user seen in the last 30 days
taken in a daily sweep, about 6,580 labels of which 25% churned, 2 seeds),
progressive ROC AUC: this default 0.914 [0.911, 0.917]; lr 0.01 0.912;
GaussianNB 0.840; HoeffdingTreeClassifier 0.842; HoeffdingAdaptiveTreeClassifier
0.830; ARFClassifier with 10 trees 0.915 at about 11 times the cost per label.

>>> import random
>>> rng = random.Random(0)
>>> model = ChurnClassifier()
>>> for _ in range(2000):
...     churned = rng.random() < 0.3
...     x = {"recency": rng.gauss(0.8 if churned else 0.2, 0.15), "spend_90d": rng.random()}
...     model.learn_one(x, churned)
>>> report = model.report()
>>> report["auc"] > 0.9, report["labels"], report["model"]
(True, 2000, 'StandardScaler | LogisticRegression')
>>> model.predict_proba_one({"recency": 0.9, "spend_90d": 0.5}) > 0.5 > model.predict_proba_one({"recency": 0.1, "spend_90d": 0.5})
True
>>> clone = ChurnClassifier.from_bytes(model.to_bytes())
>>> clone.predict_proba_one({"recency": 0.9}) == model.predict_proba_one({"recency": 0.9})
True
"""

from __future__ import annotations

import math
import pickle

from river import base, linear_model, metrics, optim, preprocessing

__all__ = ["ChurnClassifier", "default_model"]


def default_model() -> base.Classifier:
    """``StandardScaler | LogisticRegression``, the measured default."""
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4)


def _model_name(model) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return " | ".join(type(step).__name__ for step in steps.values())
    return type(model).__name__


class ChurnClassifier:
    """A River classifier of churn with progressive (predict-then-learn) validation.

    ``model`` is any River binary classifier (default :func:`default_model`);
    ``auc_thresholds`` the resolution of the streaming ROC AUC.
    """

    def __init__(self, model: base.Classifier | None = None, auc_thresholds: int = 50):
        self.model = default_model() if model is None else model
        self.auc = metrics.ROCAUC(n_thresholds=auc_thresholds)
        self.positives = 0
        self.negatives = 0
        self.rejected = 0

    def learn_one(self, x: dict, y: bool) -> None:
        """Score ``x``, count it in the progressive metrics, then learn ``(x, y)``.

        A vector with a non-finite value is ignored (``rejected`` counts them): one bad
        record must not poison the weights.
        """
        if not all(math.isfinite(v) for v in x.values()):
            self.rejected += 1
            return
        y = bool(y)
        self.auc.update(y, self.predict_proba_one(x))
        if y:
            self.positives += 1
        else:
            self.negatives += 1
        self.model.learn_one(x, y)

    def predict_proba_one(self, x: dict) -> float:
        """Probability that the user churns (no purchase within the horizon)."""
        proba = self.model.predict_proba_one(x)
        if True in proba:
            return float(proba[True])
        if False in proba:
            return 1.0 - float(proba[False])
        labels = self.positives + self.negatives
        return self.positives / labels if labels else 0.5  # nothing learned yet: the base rate

    def report(self) -> dict:
        """``auc`` (progressive; None until both labels were seen), ``labels``, ``positives``, ``negatives``, ``model``."""
        both = self.positives and self.negatives
        return {
            "auc": round(float(self.auc.get()), 4) if both else None,
            "labels": self.positives + self.negatives,
            "positives": self.positives,
            "negatives": self.negatives,
            "model": _model_name(self.model),
        }

    def to_bytes(self) -> bytes:
        """A snapshot for the scoring processes (pickle)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ChurnClassifier":
        """Inverse of :meth:`to_bytes`: same probabilities, same report."""
        model = pickle.loads(raw)
        if not isinstance(model, cls):
            raise TypeError(f"not a {cls.__name__} snapshot")
        return model
