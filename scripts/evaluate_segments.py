#!/usr/bin/env python
"""Measure online clusterers on simulated shoppers: which one recovers the habit groups?

Simulates ``--users`` users for ``--days`` days (:class:`online_models.simulation.ShopSimulator`),
folds every event through :func:`online_models.portrait.update` and every ``--every``
days (and at the end) takes a snapshot: every user seen so far, in a shuffled order,
is rendered as of that instant and turned into
:func:`online_models.features.behaviour_features`, so each user counts once per
period, not once per event. The samples are fed in that order to every candidate
clusterer; then each user's latest vector (the one as of the end of the history) is
assigned, and the adjusted Rand index (ARI) of that assignment against the true
archetype is printed with the mean time per ``learn_one``.

    python scripts/evaluate_segments.py                  # 2000 users x 60 days x 6 seeds, ~40 min
    python scripts/evaluate_segments.py --users 500 --days 30 --seeds 0 1 2

The samples are cached in the temporary directory (``--no-cache`` to rebuild).
"""

from __future__ import annotations

import argparse
import pickle
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from river import cluster  # noqa: E402

from online_models.clock import DAY_MS  # noqa: E402
from online_models.events import Event  # noqa: E402
from online_models.features import behaviour_features  # noqa: E402
from online_models.portrait import PortraitConfig, PortraitState, render, update  # noqa: E402
from online_models.segments import DEFAULT_FEATURE_WEIGHTS, SegmentModel  # noqa: E402
from online_models.simulation import ShopSimulator  # noqa: E402

START_MS = 1_717_171_200_000  # 2024-06-01 00:00 +08:00
CONFIG = PortraitConfig(timezone="Asia/Shanghai")  # the simulator's shop-local time


def adjusted_rand_index(truth: list, predicted: list) -> float:
    """Hubert and Arabie's adjusted Rand index of two labelings of the same items.

    >>> adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]), round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 6)
    (1.0, -0.5)
    """
    pairs = lambda n: n * (n - 1) / 2  # noqa: E731
    n = len(truth)
    index = sum(pairs(c) for c in Counter(zip(truth, predicted)).values())
    rows = sum(pairs(c) for c in Counter(truth).values())
    cols = sum(pairs(c) for c in Counter(predicted).values())
    expected = rows * cols / pairs(n) if n > 1 else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def build_samples(users: int, days: int, every_days: float, seed: int) -> tuple[list[tuple[str, dict, float]], dict[str, dict], dict[str, str]]:
    """``(samples, final vectors, true archetypes)``; a sample is ``(user_id, x, gmv since the last snapshot)``.

    Snapshots are taken every ``every_days`` and at the end of the history; each one
    renders every user seen so far as of that instant, in a shuffled order.
    """
    sim = ShopSimulator(users, START_MS, seed=seed)
    end = START_MS + days * DAY_MS
    every = int(every_days * DAY_MS)
    times = list(range(START_MS + every, end, every)) + [end]
    rng = random.Random(f"snapshots:{seed}")
    states: dict[str, PortraitState] = {}
    spend_before: dict[str, int] = {}
    samples: list[tuple[str, dict, float]] = []
    final: dict[str, dict] = {}

    def snapshot(as_of: int) -> None:
        nonlocal final
        final = {}
        for uid in rng.sample(sorted(states), len(states)):
            state = states[uid]
            x = behaviour_features(render(state, as_of=as_of, config=CONFIG))
            samples.append((uid, x, (state.spend_cents - spend_before.get(uid, 0)) / 100))
            spend_before[uid] = state.spend_cents
            final[uid] = x

    for raw in sim.history(days):
        event = Event.model_validate(raw)
        while times and event.ts >= times[0]:
            snapshot(times.pop(0))
        state = states.get(event.user_id)
        if state is None:
            state = states[event.user_id] = PortraitState(event.user_id)
        update(state, event, watermark=event.ts, config=CONFIG)
    while times:
        snapshot(times.pop(0))
    truth = {uid: t["archetype"] for uid, t in sim.ground_truth().items() if uid in final}
    return samples, final, truth


def load_samples(users: int, days: int, every_days: float, seed: int, cache: bool):
    path = Path(tempfile.gettempdir()) / f"segments-samples-v2-{users}-{days}-{every_days}-{seed}.pkl"
    if cache and path.exists():
        return pickle.loads(path.read_bytes())
    data = build_samples(users, days, every_days, seed)
    if cache:
        path.write_bytes(pickle.dumps(data))
    return data


class Dense:
    """A River clusterer fed dense copies: every feature of ``keys``, 0 when missing.

    CluStream fails on a feature its micro-clusters have not seen, and KMeans draws a
    random coordinate for it, so the plain River candidates get the fixed universe of
    features of the whole run (which a live system would not know in advance).
    """

    def __init__(self, model, keys):
        self.model = model
        self.keys = keys

    def learn_one(self, x, weight=1.0, gmv=0.0):
        self.model.learn_one({k: x.get(k, 0.0) for k in self.keys})

    def predict_one(self, x):
        return self.model.predict_one({k: x.get(k, 0.0) for k in self.keys})


def candidates(seed: int, keys: list[str]) -> dict[str, Callable[[], object]]:
    """Name -> factory of every clusterer compared."""
    out: dict[str, Callable[[], object]] = {}
    for k, h, mu, sigma in ((7, 0.05, 0.0, 1.0), (7, 0.05, 0.3, 0.1), (7, 0.5, 0.3, 0.1), (10, 0.5, 0.3, 0.1)):
        out[f"river KMeans k={k} h={h} init N({mu},{sigma})"] = lambda k=k, h=h, mu=mu, sigma=sigma: Dense(
            cluster.KMeans(n_clusters=k, halflife=h, mu=mu, sigma=sigma, seed=seed), keys
        )
    for chunk in (100, 1000):
        out[f"river STREAMKMeans k=7 chunk={chunk}"] = lambda c=chunk: Dense(
            cluster.STREAMKMeans(chunk_size=c, n_clusters=7, halflife=0.05, mu=0.3, sigma=0.1, seed=seed), keys
        )
    out["river CluStream k=7 micro=100"] = lambda: Dense(
        cluster.CluStream(n_macro_clusters=7, max_micro_clusters=100, time_gap=1000, seed=seed, halflife=0.05, mu=0.3, sigma=0.1), keys
    )
    for threshold in (0.5, 0.8, 1.0):
        out[f"river DBSTREAM r={threshold}"] = lambda t=threshold: Dense(
            cluster.DBSTREAM(clustering_threshold=t, fading_factor=0.001, cleanup_interval=100, minimum_weight=3), keys
        )
    for k in (7, 8, 10):
        for warmup in (500, 1000, 2000):
            for h in (0.02, 0.05):
                out[f"SegmentModel k={k} warmup={warmup} h={h}"] = lambda k=k, w=warmup, h=h: SegmentModel(
                    n_segments=k, warmup=w, halflife=h, seed=seed
                )
    out["SegmentModel default, no restarts"] = lambda: SegmentModel(min_share=0.0, seed=seed)
    out["SegmentModel default, mobile weight 1"] = lambda: SegmentModel(feature_weights={}, seed=seed)
    out["SegmentModel default, mobile weight 0.5"] = lambda: SegmentModel(feature_weights={"mobile": 0.5}, seed=seed)
    return out


def evaluate(make, samples, final, truth) -> tuple[float, float, object]:
    model = make()
    started = time.perf_counter()
    for _, x, gmv in samples:
        model.learn_one(x, gmv=gmv)
    per_learn = (time.perf_counter() - started) / max(len(samples), 1)
    users = sorted(final)
    predicted = [model.predict_one(final[u]) for u in users]
    return adjusted_rand_index([truth[u] for u in users], predicted), per_learn, model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--every", type=float, default=7.0, help="days between two snapshots")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="simulation seeds (one run each)")
    parser.add_argument("--only", default="", help="evaluate only candidates whose name contains this")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--describe", action="store_true", help="print the segments of the shipped default model")
    args = parser.parse_args(argv)

    runs = {}
    for seed in args.seeds:
        started = time.perf_counter()
        samples, final, truth = load_samples(args.users, args.days, args.every, seed, cache=not args.no_cache)
        print(f"seed {seed}: {len(samples)} samples of {len(final)} users ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        runs[seed] = (samples, final, truth)

    print(f"{'candidate':44s} {'ARI mean':>8s} {'min':>6s} {'max':>6s} {'us/learn':>9s} {'clusters':>8s}")
    # the River candidates get the same features as SegmentModel's default (mobile share left out)
    keys = sorted(
        {k for samples, final, _ in runs.values() for x in (*final.values(), *(x for _, x, _ in samples)) for k in x}
        - {k for k, w in DEFAULT_FEATURE_WEIGHTS.items() if not w}
    )
    for name in candidates(0, keys):
        if args.only not in name:
            continue
        scores, times, sizes = [], [], []
        for seed, (samples, final, truth) in runs.items():
            ari, per_learn, model = evaluate(candidates(seed, keys)[name], samples, final, truth)
            scores.append(ari)
            times.append(per_learn)
            sizes.append(len({model.predict_one(x) for x in final.values()}))
        print(
            f"{name:44s} {statistics.mean(scores):8.3f} {min(scores):6.3f} {max(scores):6.3f} "
            f"{statistics.mean(times) * 1e6:9.1f} {statistics.mean(sizes):8.1f}",
            flush=True,
        )

    if args.describe:
        samples, final, truth = runs[args.seeds[0]]
        model = SegmentModel(size_window=len(final))
        for _, x, gmv in samples:
            model.learn_one(x, gmv=gmv)
        members: dict[int, Counter] = {}
        for uid, x in final.items():
            members.setdefault(model.predict_one(x), Counter())[truth[uid]] += 1
        for seg in model.describe():
            top = ", ".join(f"{a} {n}" for a, n in members.get(seg["id"], Counter()).most_common(3))
            print(f"{seg['id']}: {seg['name']!r} size {seg['size']:.0f} gmv {seg['gmv_share']:.2f} | {top}")


if __name__ == "__main__":
    main()
