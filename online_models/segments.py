"""Behaviour segments (分群): online k-means with readable names, sizes and GMV shares.

:class:`SegmentModel` clusters the vectors of
:func:`online_models.features.behaviour_features`, one per user per period (not one
per event), and describes each segment from its centre against the population
mean, e.g. ``"night active, snacks and beauty"``, ``"browsers, never buy,
electronics and jewelry"`` or ``"promotion-driven, electronics and home"``. It is
trained centrally and shipped to the scoring processes with
:meth:`SegmentModel.to_bytes`; a snapshot predicts exactly like the original.

Why this clusterer
------------------
Measured with ``python scripts/evaluate_segments.py``: 2000 simulated users x 60
days (:class:`online_models.simulation.ShopSimulator`, 7 habit groups), every user's
portrait turned into a vector once a week (about 17,400 ``learn_one`` calls per
run), 6 simulation seeds. The score is the adjusted Rand index (ARI) of each
user's final assignment (portrait as of day 60) against the true habit group;
time per ``learn_one`` on a shared 2-core machine.

=================================================  ==========================  ==========
clusterer                                          ARI mean [min, max]         ms/learn
=================================================  ==========================  ==========
river KMeans k=7/10, 4 init and halflife settings  0.00 to 0.29 (1-4 used)     0.2
river STREAMKMeans k=7, chunk 100 / 1000           0.11 / 0.06                 0.2
river CluStream k=7, 100 micro-clusters            0.07                        11
river DBSTREAM radius 0.5 / 0.8 / 1.0              0.50 / 0.82 / 0.41          0.8 / 0.3 / 0.2
  (clusters found: 76 / 20 / 7)                    (0.8: [0.73, 0.88])
SegmentModel k=7, warm-up 2000, halflife 0.02      0.94 [0.87, 0.96]           0.2-0.4
**SegmentModel k=8, warm-up 2000, halflife 0.05**  **0.96 [0.91, 0.97]**       0.2-0.4
SegmentModel k=8, warm-up 500, halflife 0.05       0.92 [0.83, 0.97]           0.2
SegmentModel k=10, warm-up 2000, halflife 0.02     0.91 [0.84, 0.95]           0.3
default without centre restarts                    0.94 [0.78, 0.97]           0.2
default with the mobile share at weight 1 / 0.5    0.81 [0.75, 0.90] / 0.96        0.2
=================================================  ==========================  ==========

River's ``KMeans`` draws its first centres at random; in ~30 dimensions one to four
of them win every point and the others never move, and ``STREAMKMeans`` and
``CluStream`` (whose macro step is that ``KMeans``) inherit the collapse.
``DBSTREAM`` does find the groups (ARI 0.82 at radius 0.8), but as about 20
clusters whose labels are recomputed at every re-clustering, so its ids would not
be stable from one snapshot to the next. :class:`SegmentModel` keeps River's
``KMeans`` (its centres and nearest-centre assignment) and fixes the start: greedy
k-means++ plus Lloyd rounds on the first ``warmup`` vectors. A centre whose share
falls under ``min_share`` of a fair share is moved to a vector far from every
centre (the restarts row). River's update is applied to every feature of the
centre: a category outside a user's top is a 0 share, which River's sparse update
skips, letting the centres' category shares grow past 1 (ARI is about even, 0.94
[0.93, 0.96] with the sparse update, but the names read those shares). k = 8 gives the 7 habit groups plus one segment for
transients (brand-new visitors). At full weight the device mobile share splits
habit groups into phone and PC users; at weight 0.5 it ties with leaving it out
here but not at other settings (0.90 against 0.94 with warm-up 1000, halflife
0.02), so it is left out of the distance by default (:data:`DEFAULT_FEATURE_WEIGHTS`).
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
from river import cluster

from online_models.features import CATEGORY_PREFIX

__all__ = ["SegmentModel", "DEFAULT_FEATURE_WEIGHTS", "DESCRIPTORS"]


class _Centre(dict):
    """A cluster centre: a feature it has never seen reads as 0 and is not stored."""

    def __missing__(self, key):
        return 0.0


class _Decayed:
    """Exponentially forgotten sums: every ``tick`` ages all of them by ``decay``.

    Stored lazily (values scaled by a growing factor) so a ``tick`` costs O(1).
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

    def add_moments(self, x: dict, weight: float) -> None:
        """``add((key, 1), weight * value)`` and ``add((key, 2), weight * value * value)`` for each item of ``x``."""
        sums, scale = self._sums, self._scale
        for key, value in x.items():
            first, second = (key, 1), (key, 2)
            sums[first] = sums.get(first, 0.0) + weight * value * scale
            sums[second] = sums.get(second, 0.0) + weight * value * value * scale

    def reset(self, key) -> None:
        self._sums.pop(key, None)

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
    trials = 2 + int(math.log(k))  # greedy k-means++: keep the best of a few candidates

    def potential(nearest: list[float]) -> float:
        return sum(d * w for d, w in zip(nearest, weights))

    first = rows[rng.choices(index, weights=weights)[0]]
    centres = [first]
    nearest = [sq(r, first) for r in rows]
    while len(centres) < k:
        mass = [d * w for d, w in zip(nearest, weights)]
        if sum(mass) <= 0:
            picks = [rng.randrange(len(rows))]
        else:
            picks = rng.choices(index, weights=mass, k=trials)
        best = None
        for pick in picks:
            candidate = [min(d, sq(r, rows[pick])) for d, r in zip(nearest, rows)]
            if best is None or potential(candidate) < best[0]:
                best = (potential(candidate), pick, candidate)
        centres.append(rows[best[1]])
        nearest = best[2]
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
    return [dict(zip(keys, c)) for c in centres]


class _CentreRows:
    """The centres as the rows of one array, for the distances of learning; moved in step with the centre dicts.

    A column per feature any centre or learnt vector has had; a feature a centre lacks is a 0 in its row,
    as it reads in the dict.
    """

    def __init__(self, centres: dict[int, dict], extra: Iterable[str] = ()):
        self.ids = list(centres)
        self.at = {segment: row for row, segment in enumerate(self.ids)}
        self.columns = {key: at for at, key in enumerate(sorted({*extra, *(k for c in centres.values() for k in c)}))}
        self.rows = np.zeros((len(self.ids), len(self.columns)))
        for segment, centre in centres.items():
            self.rows[self.at[segment]] = self.point(centre)

    def point(self, x: dict) -> np.ndarray | None:
        """``x`` as a row; None when it has a feature without a column."""
        row = np.zeros(len(self.columns))
        columns = self.columns
        for key, value in x.items():
            at = columns.get(key)
            if at is None:
                return None
            row[at] = value
        return row

    def nearest(self, point: np.ndarray) -> tuple[int, float]:
        """The nearest centre's id (the first of equals, as River's ``KMeans.predict_one``) and its squared distance."""
        gaps = self.rows - point
        distances = np.einsum("ij,ij->i", gaps, gaps)
        row = int(distances.argmin())
        return self.ids[row], float(distances[row])


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
#: Feature weights in the clustering space (1 when not listed; ``"cat:"`` sets every
#: category). The mobile share is left out: measured, it splits habit groups into
#: phone and PC users instead of separating habits (see "Why this clusterer").
DEFAULT_FEATURE_WEIGHTS: dict[str, float] = {"mobile": 0.0}
# Phrases that say nothing new about a segment that never buys.
_BUYING = {"spend_90d", "purchases_90d", "aov", "promo_share", "refund_rate", "cart_to_purchase", "browse_to_buy"}


class SegmentModel:
    """Online k-means segments with readable names, sizes and GMV shares.

    A :class:`river.cluster.KMeans` whose centres are seeded by greedy weighted
    k-means++ and ``lloyd_iterations`` Lloyd rounds on the first ``warmup`` vectors,
    then moved online by River's update with step ``halflife`` (``1 - (1 -
    halflife) ** weight`` for a weighted vector). A feature a centre has never seen
    reads as 0, so unseen categories neither draw random positions nor change the
    model when scored. ``predict_one`` returns 0 until the warm-up is complete.

    Segment ids are the centre indices ``0 .. n_segments - 1``; a centre keeps its
    id while it moves, so a snapshot and the trainer name the same segments. The
    one exception: when a segment's share falls under ``min_share / n_segments``
    (it is starving) and a vector comes more than ``restart_distance`` times the
    mean squared distance from its nearest centre, the starving centre is moved to
    that vector and its id names a new group (counted in ``restarts``; its size and
    GMV restart at 0). Read names from :meth:`describe` of the same snapshot.

    Features are multiplied by ``feature_weights`` (default
    :data:`DEFAULT_FEATURE_WEIGHTS`; 1 when not listed, ``"cat:"`` sets every
    category) before any distance; weight 0 leaves a feature out.

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
    night active, high spend, snacks | 10.0 1.0
    browsers, never buy, electronics | 10.0 0.0
    >>> sorted(model.describe()[0])
    ['centre', 'gmv_share', 'id', 'name', 'share', 'size']
    >>> clone = SegmentModel.from_bytes(model.to_bytes())
    >>> clone.predict_one(night) == model.predict_one(night)
    True
    """

    def __init__(
        self,
        n_segments: int = 8,
        halflife: float = 0.05,
        warmup: int = 2000,
        lloyd_iterations: int = 20,
        size_window: float = 10_000,
        min_share: float = 0.2,
        restart_distance: float = 3.0,
        feature_weights: dict[str, float] | None = None,
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
        self.min_share = min_share
        self.restart_distance = restart_distance
        self.feature_weights = dict(DEFAULT_FEATURE_WEIGHTS if feature_weights is None else feature_weights)
        if any(w < 0 for w in self.feature_weights.values()):
            raise ValueError("feature weights must not be negative")
        self.seed = seed
        self.kmeans = cluster.KMeans(n_clusters=n_segments, halflife=halflife, seed=seed)
        self.seeded = False
        self.n_learned = 0
        self._buffer: list[tuple[dict, float, float]] = []
        decay = math.exp(-1.0 / size_window)
        self._sizes = _Decayed(decay)  # segment -> weight; "gmv", segment -> gmv
        self._stats = _Decayed(decay)  # "w", "sq" and (feature, 1), (feature, 2): population moments
        self._restarted_at: dict[int, int] = {}
        self.restarts = 0
        self.rejected = 0

    # ------------------------------------------------------------------ learning

    def learn_one(self, x: dict, weight: float = 1.0, gmv: float = 0.0) -> None:
        """Assign ``x`` to its nearest segment and move that centre towards it.

        A vector with a non-finite value, or a weight that is not positive, is ignored
        (``rejected`` counts the former): one bad record must not poison the centres.
        """
        if not weight > 0:
            return
        if not all(math.isfinite(v) for v in x.values()) or not math.isfinite(weight) or not math.isfinite(gmv):
            self.rejected += 1
            return
        self.n_learned += 1
        self._sizes.tick()
        self._stats.tick()
        self._stats.add("w", weight)
        self._stats.add_moments(x, weight)
        x = self._weigh(x)
        if not self.seeded:
            self._buffer.append((dict(x), weight, gmv))
            if len(self._buffer) >= self.warmup:
                self._seed()
            return
        centres = self.kmeans.centers
        rows = self.__dict__.get("_rows")
        point = None if rows is None else rows.point(x)
        if point is None:  # after seeding, a restart of the snapshot, or a feature never seen
            rows = self._rows = _CentreRows(centres, x)
            point = rows.point(x)
        segment, distance = rows.nearest(point)
        self._stats.add("sq", weight * distance)
        # a vector no segment serves well is rare: only then is the emptiest segment looked for
        far = distance > self.restart_distance * self._stats.get("sq") / self._stats.get("w")
        starving = self._starving() if far else None
        if starving is not None:
            # A segment nobody joins any more is moved to a vector no segment serves well.
            segment = starving
            centres[segment] = _Centre(x)
            rows.rows[rows.at[segment]] = point
            self._sizes.reset(segment)
            self._sizes.reset(("gmv", segment))
            self._restarted_at[segment] = self.n_learned
            self.restarts += 1
        else:
            # River's update, over every feature of the centre too: a feature missing
            # from ``x`` is a 0 (e.g. a category outside the user's top), not unknown.
            centre = centres[segment]
            step = 1.0 - (1.0 - self.halflife) ** weight
            for key in {*centre, *x}:
                centre[key] += step * (x.get(key, 0.0) - centre[key])
            row = rows.rows[rows.at[segment]]
            row += step * (point - row)  # the same update, element by element: the row stays equal to the dict
        self._count(segment, weight, gmv)

    def _weight(self, feature: str) -> float:
        weight = self.feature_weights.get(feature)
        if weight is None and feature.startswith(CATEGORY_PREFIX):
            weight = self.feature_weights.get(CATEGORY_PREFIX)
        return 1.0 if weight is None else weight

    def _weigh(self, x: dict) -> dict:
        """``x`` in the clustering space: each feature times its weight, weight-0 ones dropped."""
        weights = self.__dict__.get("_weights")
        if weights is None:
            weights = self._weights = {}
        out = {}
        for key, value in x.items():
            weight = weights.get(key)
            if weight is None:
                weight = weights[key] = self._weight(key)
            if weight:
                out[key] = value * weight
        return out

    def _starving(self) -> int | None:
        """The emptiest segment if its share is below ``min_share / n_segments`` (and not just restarted)."""
        if self.min_share <= 0 or self.n_segments < 2:
            return None
        sizes = {i: self._sizes.get(i) for i in self.kmeans.centers}
        total = sum(sizes.values())
        segment = min(sizes, key=lambda i: (sizes[i], i))
        if total <= 0 or sizes[segment] >= self.min_share * total / self.n_segments:
            return None
        if self.n_learned - self._restarted_at.get(segment, 0) < self.warmup:
            return None
        return segment

    def _seed(self) -> None:
        points = [p for p, _, _ in self._buffer]
        weights = [w for _, w, _ in self._buffer]
        centres = _kmeans_plus_plus(points, weights, self.n_segments, random.Random(self.seed), self.lloyd_iterations)
        self.kmeans.centers = {i: _Centre(c) for i, c in enumerate(centres)}
        self.__dict__.pop("_rows", None)
        self.seeded = True
        self._restarted_at = dict.fromkeys(self.kmeans.centers, self.n_learned)
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
        """The id of the nearest segment (0 before the warm-up is complete).

        The same nearest centre as River's ``KMeans.predict_one``, computed over the
        centres as one array (rebuilt after any learning): a feature no centre has is
        the same distance from every centre, so it cannot change which is nearest.
        """
        if not self.seeded:
            return 0
        scorer = self.__dict__.get("_scorer")
        if scorer is None or scorer[0] != (self.n_learned, self.restarts):
            scorer = self._scorer = self._centre_array()
        _, ids, column, centres, weights = scorer
        point = [0.0] * len(column)
        for key, value in x.items():
            at = column.get(key)
            if at is not None:
                point[at] = value * weights[at]
        gaps = centres - np.array(point)
        distances = ((gaps * gaps) if self.kmeans.p == 2 else np.abs(gaps) ** self.kmeans.p).sum(axis=1)
        return ids[int(distances.argmin())]

    def _centre_array(self) -> tuple[tuple[int, int], list[int], dict[str, int], np.ndarray, list[float]]:
        """The centres as one array, their features' columns, and each column's weight (centres live in the weighed space)."""
        ids = list(self.kmeans.centers)
        features = sorted({key for centre in self.kmeans.centers.values() for key in centre})
        centres = np.array([[self.kmeans.centers[i][key] for key in features] for i in ids], dtype=float).reshape(len(ids), -1)
        weights = [self._weight(key) for key in features]
        return (self.n_learned, self.restarts), ids, {key: at for at, key in enumerate(features)}, centres, weights

    def population_mean(self) -> dict[str, float]:
        """The forgotten mean of every feature seen (missing features count as 0)."""
        total = self._stats.get("w")
        if not total:
            return {}
        return {key[0]: self._stats.get(key) / total for key in self._stats.keys() if isinstance(key, tuple) and key[1] == 1}

    def _population_std(self, mean: dict[str, float]) -> dict[str, float]:
        total = self._stats.get("w")
        return {k: math.sqrt(max(self._stats.get((k, 2)) / total - m * m, 0.0)) for k, m in mean.items()}

    def centres(self) -> dict[int, dict[str, float]]:
        """Every segment's centre in feature units (the weights undone; weight-0 features absent)."""
        return {i: {k: v / self._weight(k) for k, v in c.items()} for i, c in self.kmeans.centers.items()}

    def _phrases(self, centre: dict, mean: dict[str, float], std: dict[str, float], min_z: float = 0.75) -> list[str]:
        """Phrases describing ``centre`` against the population, most telling first."""
        used = lambda feature: feature in mean and self._weight(feature) > 0  # noqa: E731
        never_buys = used("buyer") and centre.get("buyer", 0.0) < 0.2
        scored = []
        for (feature, direction), phrase in DESCRIPTORS.items():
            if not used(feature) or (never_buys and feature in _BUYING):
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
        """Every segment: ``id``, ``name``, ``size``, ``share``, ``gmv_share``, ``centre``.

        Names come from the centre against the population mean: a feature at least
        0.75 standard deviations away (see :data:`DESCRIPTORS`) gives a phrase, the
        three most telling are kept, then the categories the segment over-indexes on.
        """
        if not self.seeded:
            return []
        mean = self.population_mean()
        std = self._population_std(mean)
        centres = self.centres()
        sizes = {i: self._sizes.get(i) for i in centres}
        gmv = {i: self._sizes.get(("gmv", i)) for i in centres}
        total_size, total_gmv = sum(sizes.values()), sum(gmv.values())
        phrases = {i: self._phrases(c, mean, std) for i, c in centres.items()}
        names: dict[int, str] = {}
        taken: set[frozenset] = set()  # names that differ only in order are not distinct
        for i in sorted(phrases, key=lambda i: (-sizes[i], i)):  # the biggest segments get the shortest names
            words = phrases[i]
            n = min(3, len(words))
            while frozenset(words[:n]) in taken and n < len(words):
                n += 1
            name = ", ".join(words[:n]) or "typical shoppers"
            if frozenset(words[:n]) in taken:
                name = f"{name} ({i})"
            taken.add(frozenset(words[:n]))
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
            for i, c in sorted(centres.items())
        ]

    # ------------------------------------------------------------------ snapshots

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_scorer", "_rows", "_weights")}  # rebuilt on demand

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
