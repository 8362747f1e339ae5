"""Behaviour segments (分群): online k-means over :func:`online_models.features.behaviour_features`.

PLACEHOLDER DOCSTRING (rewritten below once measured).
"""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

from river import cluster

from online_models.features import CATEGORY_PREFIX

__all__ = ["SegmentModel"]


class _Centre(dict):
    """A cluster centre: a feature it has never seen reads as 0 and is not stored."""

    def __missing__(self, key):
        return 0.0


class _Decayed:
    """Exponentially forgotten sums: every ``add`` ages the older ones by ``decay``.

    Stored lazily (values scaled by a growing factor) so an ``add`` costs O(1).
    """

    def __init__(self, decay: float):
        self.decay = decay
        self._scale = 1.0
        self._sums: dict[Any, float] = {}

    def tick(self) -> None:
        self._scale /= self.decay
        if self._scale > 1e100:
            for key in self._sums:
                self._sums[key] /= self._scale
            self._scale = 1.0

    def add(self, key, value: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value * self._scale

    def get(self, key) -> float:
        return self._sums.get(key, 0.0) / self._scale

    def keys(self):
        return self._sums.keys()


def _sq_distance(a: dict, b: dict) -> float:
    return sum((a.get(k, 0.0) - b.get(k, 0.0)) ** 2 for k in {*a, *b})


def _kmeans_plus_plus(points: list[dict], weights: list[float], k: int, rng: random.Random, iterations: int) -> list[dict]:
    """Weighted k-means++ seeding followed by ``iterations`` rounds of Lloyd's algorithm."""
    centres = [dict(points[rng.choices(range(len(points)), weights=weights)[0]])]
    nearest = [_sq_distance(p, centres[0]) for p in points]
    while len(centres) < k:
        mass = [d * w for d, w in zip(nearest, weights)]
        if sum(mass) <= 0:
            centres.append(dict(points[rng.randrange(len(points))]))
        else:
            centres.append(dict(points[rng.choices(range(len(points)), weights=mass)[0]]))
        nearest = [min(d, _sq_distance(p, centres[-1])) for d, p in zip(nearest, points)]
    for _ in range(iterations):
        sums: list[dict[str, float]] = [{} for _ in centres]
        totals = [0.0] * len(centres)
        for p, w in zip(points, weights):
            c = min(range(len(centres)), key=lambda i: _sq_distance(p, centres[i]))
            totals[c] += w
            for key, value in p.items():
                sums[c][key] = sums[c].get(key, 0.0) + w * value
        moved = [{key: v / totals[c] for key, v in sums[c].items()} if totals[c] else centres[c] for c in range(len(centres))]
        if moved == centres:
            break
        centres = moved
    return centres
