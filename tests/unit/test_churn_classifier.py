"""The online churn classifier with progressive validation."""

from __future__ import annotations

import random

import pytest
from river import tree

from online_models.churn_classifier import ChurnClassifier


def separable(rng: random.Random, n: int):
    """Churners have high recency and low spend; some noise features besides."""
    for _ in range(n):
        churned = rng.random() < 0.35
        x = {
            "recency": min(max(rng.gauss(0.75 if churned else 0.25, 0.12), 0.0), 1.0),
            "spend_90d": min(max(rng.gauss(0.2 if churned else 0.6, 0.15), 0.0), 1.0),
            "night": rng.random(),
            f"cat:{rng.choice(['snacks', 'beauty', 'books'])}": 1.0,
        }
        yield x, churned


def test_learns_a_separable_problem():
    model = ChurnClassifier()
    for x, y in separable(random.Random(1), 3_000):
        model.learn_one(x, y)
    report = model.report()
    assert report["auc"] > 0.9
    assert report["labels"] == 3_000 == report["positives"] + report["negatives"]
    assert 0.3 < report["positives"] / report["labels"] < 0.4
    assert report["model"] == "StandardScaler | LogisticRegression"
    held_out = list(separable(random.Random(2), 500))
    churned = [model.predict_proba_one(x) for x, y in held_out if y]
    stayed = [model.predict_proba_one(x) for x, y in held_out if not y]
    assert sum(churned) / len(churned) > 0.6 > 0.4 > sum(stayed) / len(stayed)
    assert all(0.0 <= p <= 1.0 for p in churned + stayed)


def test_auc_is_progressive():
    """Scored before learning: an unlearnable (random) label stays near 0.5."""
    rng = random.Random(3)
    model = ChurnClassifier()
    assert model.report() == {"auc": None, "labels": 0, "positives": 0, "negatives": 0, "model": "StandardScaler | LogisticRegression"}
    assert model.predict_proba_one({"recency": 0.5}) == 0.5
    model.learn_one({"recency": 0.1}, False)
    assert model.report()["auc"] is None  # one class only so far
    for _ in range(2_000):
        model.learn_one({"a": rng.random(), "b": rng.random()}, rng.random() < 0.5)
    assert 0.4 < model.report()["auc"] < 0.6


def test_round_trip_gives_identical_scores_and_report():
    model = ChurnClassifier()
    data = list(separable(random.Random(4), 800))
    for x, y in data[:600]:
        model.learn_one(x, y)
    clone = ChurnClassifier.from_bytes(model.to_bytes())
    assert clone.report() == model.report()
    assert [clone.predict_proba_one(x) for x, _ in data[600:]] == [model.predict_proba_one(x) for x, _ in data[600:]]
    for x, y in data[600:]:
        model.learn_one(x, y)
        clone.learn_one(x, y)
    assert clone.report() == model.report()


def test_other_river_classifiers_plug_in():
    model = ChurnClassifier(tree.HoeffdingTreeClassifier(grace_period=50))
    assert model.predict_proba_one({"recency": 0.5}) == 0.5  # nothing learned: no proba yet
    for x, y in separable(random.Random(5), 2_000):
        model.learn_one(x, y)
    assert model.report()["model"] == "HoeffdingTreeClassifier"
    assert model.report()["auc"] > 0.85


def test_from_bytes_rejects_other_objects():
    import pickle

    with pytest.raises(TypeError):
        ChurnClassifier.from_bytes(pickle.dumps({"not": "a model"}))


def test_non_finite_vectors_are_ignored():
    model = ChurnClassifier()
    for x, y in separable(random.Random(6), 200):
        model.learn_one(x, y)
    before = model.predict_proba_one({"recency": 0.5})
    model.learn_one({"recency": float("nan")}, True)
    model.learn_one({"recency": float("inf")}, False)
    assert model.rejected == 2 and model.report()["labels"] == 200
    assert model.predict_proba_one({"recency": 0.5}) == before
