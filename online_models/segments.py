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


def _kmeans_plus_plus(points: list[dict], weights: list[float], k: int, rng: random.Random, iterations: int) -> list[dict]:
    """Weighted k-means++ seeding followed by at most ``iterations`` rounds of Lloyd's algorithm."""
    keys = sorted({key for p in points for key in p})
    rows = [[p.get(key, 0.0) for key in keys] for p in points]

    def sq(a: list[float], b: list[float]) -> float:
        return sum((u - v) * (u - v) for u, v in zip(a, b))

    index = range(len(rows))
    centres = [rows[rng.choices(index, weights=weights)[0]]]
    nearest = [sq(r, centres[0]) for r in rows]
    while len(centres) < k:
        mass = [d * w for d, w in zip(nearest, weights)]
        pick = rng.choices(index, weights=mass)[0] if sum(mass) > 0 else rng.randrange(len(rows))
        centres.append(rows[pick])
        nearest = [min(d, sq(r, centres[-1])) for d, r in zip(nearest, rows)]
    for _ in range(iterations):
        sums = [[0.0] * len(keys) for _ in centres]
        totals = [0.0] * len(centres)
        for r, w in zip(rows, weights):
            c = min(range(len(centres)), key=lambda i: sq(r, centres[i]))
            totals[c] += w
            acc = sums[c]
            for j, v in enumerate(r):
                acc[j] += w * v
        moved = [[v / totals[c] for v in sums[c]] if totals[c] else centres[c] for c in range(len(centres))]
        if moved == centres:
            break
        centres = moved
    return [{key: v for key, v in zip(keys, c) if v} for c in centres]


#: ``(feature, direction) -> phrase``: what a centre far above (+1) or below (-1)
#: the population mean on that feature is called.
DESCRIPTORS: dict[tuple[str, int], str] = {
    ("recency", +1): "gone quiet",
    ("tenure", -1): "newcomers",
    ("spend_90d", +1): "high spend",
    ("spend_90d", -1): "low spend",
    ("purchases_90d", +1): "frequent buyers",
    ("aov", +1): "premium baskets",
    ("aov", -1): "small baskets",
    ("promo_share", +1): "promotion-driven",
    ("night", +1): "night active",
    ("weekend_share", +1): "weekend shoppers",
    ("morning", +1): "morning active",
    ("afternoon", +1): "daytime active",
    ("evening", +1): "evening active",
    ("refund_rate", +1): "refund-prone",
    ("mobile", -1): "desktop users",
    ("browse_to_buy", +1): "long browsing before buying",
    ("cart_to_purchase", +1): "decisive at checkout",
    ("events_30d", +1): "very active",
    ("events_30d", -1): "rarely active",
    ("diversity", +1): "wide interests",
}
# Phrases that say nothing new about a segment that never buys.
_BUYING = {"spend_90d", "purchases_90d", "aov", "promo_share", "refund_rate", "cart_to_purchase", "browse_to_buy"}


class SegmentModel:
    """Online k-means segments with readable names, sizes and GMV shares.

    A :class:`river.cluster.KMeans` whose centres are seeded by weighted k-means++
    (plus a few Lloyd rounds) on the first ``warmup`` vectors, then moved online
    by River's update with step ``halflife`` (scaled by ``weight``). A feature a
    centre has never seen reads as 0, so unseen categories do not draw random
    positions. Segment ids are the centre indices ``0 .. n_segments - 1``: they
    never change once seeded, so snapshots taken at different times name the same
    segments. ``predict_one`` returns 0 until the warm-up is complete.

    ``size`` in :meth:`describe` is an exponentially forgotten count of
    ``learn_one`` assignments (weighted): each assignment ages the others by
    ``exp(-1 / size_window)``, so sizes sum to about ``size_window`` once that many
    were seen. Learn each user once per period and set ``size_window`` to the
    number of users per period: sizes then read as "users in the segment lately".
    ``gmv_share`` forgets the ``gmv`` passed to ``learn_one`` the same way.

    >>> model = SegmentModel(n_segments=2, warmup=4, seed=1)
    >>> night = {"night": 0.9, "spend_90d": 0.6, "buyer": 1.0, "cat:snacks": 1.0}
    >>> browse = {"night": 0.1, "spend_90d": 0.0, "buyer": 0.0, "cat:electronics": 1.0}
    >>> for _ in range(10):
    ...     model.learn_one(night, gmv=120.0)
    ...     model.learn_one(browse)
    >>> model.predict_one(night) != model.predict_one(browse)
    True
    >>> for seg in model.describe():
    ...     print(seg["name"], "|", round(seg["size"], 1), seg["gmv_share"])
    high spend, night active, snacks | 10.0 1.0
    browsers, never buy, electronics | 10.0 0.0
    >>> clone = SegmentModel.from_bytes(model.to_bytes())
    >>> clone.predict_one(night) == model.predict_one(night)
    True
    """

    def __init__(
        self,
        n_segments: int = 7,
        halflife: float = 0.02,
        warmup: int = 500,
        lloyd_iterations: int = 20,
        size_window: float = 10_000,
        seed: int = 42,
    ):
        if n_segments < 1:
            raise ValueError("n_segments must be at least 1")
        if not 0 < halflife <= 1:
            raise ValueError("halflife must be in (0, 1]")
        if warmup < n_segments:
            raise ValueError("warmup must be at least n_segments")
        self.n_segments = n_segments
        self.halflife = halflife
        self.warmup = warmup
        self.lloyd_iterations = lloyd_iterations
        self.size_window = size_window
        self.seed = seed
        self.kmeans = cluster.KMeans(n_clusters=n_segments, halflife=halflife, seed=seed)
        self.seeded = False
        self.n_learned = 0
        self._buffer: list[tuple[dict, float, float]] = []
        decay = math.exp(-1.0 / size_window)
        self._sizes = _Decayed(decay)  # segment -> weight; "gmv", segment -> gmv
        self._stats = _Decayed(decay)  # ("w",), (feature, 1), (feature, 2): population moments

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: dict, weight: float = 1.0, gmv: float = 0.0) -> None:
        """Assign ``x`` to its nearest segment and move that centre towards it."""
        if weight <= 0:
            return
        self.n_learned += 1
        self._sizes.tick()
        self._stats.tick()
        self._stats.add("w", weight)
        for key, value in x.items():
            self._stats.add((key, 1), weight * value)
            self._stats.add((key, 2), weight * value * value)
        if not self.seeded:
            self._buffer.append((dict(x), weight, gmv))
            if len(self._buffer) >= self.warmup:
                self._seed()
            return
        step = 1.0 - (1.0 - self.halflife) ** weight
        self.kmeans.halflife = step
        try:
            segment = self.kmeans.learn_predict_one(x)
        finally:
            self.kmeans.halflife = self.halflife
        self._count(segment, weight, gmv)

    def _seed(self) -> None:
        points = [p for p, _, _ in self._buffer]
        weights = [w for _, w, _ in self._buffer]
        centres = _kmeans_plus_plus(points, weights, self.n_segments, random.Random(self.seed), self.lloyd_iterations)
        self.kmeans.centers = {i: _Centre(c) for i, c in enumerate(centres)}
        self.seeded = True
        # The buffered vectors are counted as if assigned when they came (their ages kept).
        n = len(self._buffer)
        for age, (x, weight, gmv) in enumerate(self._buffer):
            factor = self._sizes.decay ** (n - 1 - age)
            self._count(self.kmeans.predict_one(x), weight * factor, gmv * factor)
        self._buffer = []

    def _count(self, segment: int, weight: float, gmv: float) -> None:
        self._sizes.add(segment, weight)
        self._sizes.add(("gmv", segment), gmv)

    # ------------------------------------------------------------------ scoring

    def predict_one(self, x: dict) -> int:
        """The id of the nearest segment (0 before the warm-up is complete)."""
        if not self.seeded:
            return 0
        return self.kmeans.predict_one(x)

    def population_mean(self) -> dict[str, float]:
        """The forgotten mean of every feature seen (missing features count as 0)."""
        total = self._stats.get("w")
        if not total:
            return {}
        return {key[0]: self._stats.get(key) / total for key in self._stats.keys() if isinstance(key, tuple) and key[1] == 1}

    def _population_std(self, mean: dict[str, float]) -> dict[str, float]:
        total = self._stats.get("w")
        return {k: math.sqrt(max(self._stats.get((k, 2)) / total - m * m, 0.0)) for k, m in mean.items()}

    def name(self, centre: dict, mean: dict[str, float], std: dict[str, float], *, min_z: float = 0.75) -> list[str]:
        """Phrases describing ``centre`` against the population, most telling first."""
        never_buys = "buyer" in centre and centre["buyer"] < 0.2
        scored = []
        for (feature, direction), phrase in DESCRIPTORS.items():
            if feature not in mean or (never_buys and feature in _BUYING):
                continue
            z = direction * (centre.get(feature, 0.0) - mean[feature]) / max(std[feature], 0.05)
            if z >= min_z:
                scored.append((z, phrase))
        phrases = ["browsers, never buy"] if never_buys else []
        phrases += [phrase for _, phrase in sorted(scored, key=lambda zp: (-zp[0], zp[1]))]
        cats = sorted(
            (
                (share, key[len(CATEGORY_PREFIX) :])
                for key, share in centre.items()
                if key.startswith(CATEGORY_PREFIX) and share >= 0.1 and share >= 1.3 * mean.get(key, 0.0)
            ),
            reverse=True,
        )
        if cats:
            phrases.append(" and ".join(name for _, name in cats[:2]))
        return phrases

    def describe(self) -> list[dict]:
        """Every segment: ``id``, ``name``, ``size``, ``share``, ``gmv_share``, ``centre``."""
        if not self.seeded:
            return []
        mean = self.population_mean()
        std = self._population_std(mean)
        sizes = {i: self._sizes.get(i) for i in self.kmeans.centers}
        gmv = {i: self._sizes.get(("gmv", i)) for i in self.kmeans.centers}
        total_size, total_gmv = sum(sizes.values()), sum(gmv.values())
        phrases = {i: self.name(c, mean, std) for i, c in self.kmeans.centers.items()}
        names: dict[int, str] = {}
        for i in sorted(phrases, key=lambda i: -sizes[i]):  # the biggest segment gets the shortest name
            words = phrases[i]
            n = min(3, len(words))
            name = ", ".join(words[:n]) or "typical shoppers"
            while name in names.values() and n < len(words):
                n += 1
                name = ", ".join(words[:n])
            if name in names.values():
                name = f"{name} ({i})"
            names[i] = name
        return [
            {
                "id": i,
                "name": names[i],
                "size": sizes[i],
                "share": sizes[i] / total_size if total_size else 0.0,
                "gmv_share": round(gmv[i] / total_gmv, 4) if total_gmv else 0.0,
                "centre": {k: round(v, 4) for k, v in sorted(c.items()) if abs(v) >= 1e-4},
            }
            for i, c in sorted(self.kmeans.centers.items())
        ]

    # ------------------------------------------------------------------ snapshots

    def to_bytes(self) -> bytes:
        """A snapshot for the scoring processes (pickle)."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SegmentModel":
        """Inverse of :meth:`to_bytes`: same predictions, same descriptions."""
        model = pickle.loads(raw)
        if not isinstance(model, cls):
            raise TypeError(f"not a {cls.__name__} snapshot")
        return model
