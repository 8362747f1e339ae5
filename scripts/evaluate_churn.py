#!/usr/bin/env python
"""Measure churn classifiers on simulated shoppers with delayed labels, progressively.

Simulates ``--users`` users for ``--days`` days, folds the events into portraits
and once a simulated day runs the sweep a worker would run: release the labels the
watermark has passed (:meth:`online_models.label_delay.LabelDelay.release`), feed
them to every candidate :class:`online_models.churn_classifier.ChurnClassifier`
(which scores each before learning it), then snapshot every user seen in the last
``--active-days`` days with the portrait rendered as of the sweep. Prints each
candidate's progressive ROC AUC, label counts and time per ``learn_one``.

    python scripts/evaluate_churn.py                 # 1000 users x 60 days, H = 14 d
    python scripts/evaluate_churn.py --horizon 7 --every 7 --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from river import forest, linear_model, naive_bayes, optim, preprocessing, tree  # noqa: E402

from online_models.churn_classifier import ChurnClassifier, default_model  # noqa: E402
from online_models.clock import DAY_MS  # noqa: E402
from online_models.events import Event  # noqa: E402
from online_models.features import behaviour_features  # noqa: E402
from online_models.label_delay import LabelDelay  # noqa: E402
from online_models.portrait import PortraitConfig, PortraitState, render, update  # noqa: E402
from online_models.simulation import ShopSimulator  # noqa: E402

START_MS = 1_717_171_200_000
CONFIG = PortraitConfig(timezone="Asia/Shanghai")

CANDIDATES = {
    "StandardScaler | LogisticRegression (default)": default_model,
    "StandardScaler | LogisticRegression lr=0.01": lambda: preprocessing.StandardScaler()
    | linear_model.LogisticRegression(optimizer=optim.SGD(0.01)),
    "GaussianNB": naive_bayes.GaussianNB,
    "HoeffdingTreeClassifier": lambda: tree.HoeffdingTreeClassifier(grace_period=50),
    "HoeffdingAdaptiveTreeClassifier": lambda: tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=0),
    "ARFClassifier (10 trees)": lambda: forest.ARFClassifier(n_models=10, seed=0),
}


def run(users: int, days: int, horizon_days: float, every_days: float, active_days: float, seed: int) -> dict[str, tuple[dict, float]]:
    sim = ShopSimulator(users, START_MS, seed=seed)
    delay = LabelDelay(horizon_ms=int(horizon_days * DAY_MS), sample_every_ms=int(every_days * DAY_MS))
    models = {name: ChurnClassifier(make()) for name, make in CANDIDATES.items()}
    spent = dict.fromkeys(models, 0.0)
    states: dict[str, PortraitState] = {}
    pending: dict[str, list] = {}
    purchases: dict[str, list[int]] = {}
    next_sweep = START_MS + DAY_MS

    def sweep(now: int) -> None:
        for uid, state in states.items():
            pending[uid], labelled = delay.release(pending[uid], now, purchases[uid])
            for features, churned in labelled:
                for name, model in models.items():
                    started = time.perf_counter()
                    model.learn_one(features, churned)
                    spent[name] += time.perf_counter() - started
            if state.last_seen >= now - active_days * DAY_MS and delay.due(pending[uid], now):
                x = behaviour_features(render(state, as_of=now, config=CONFIG))
                pending[uid] = delay.maybe_snapshot(pending[uid], now, x)
            purchases[uid] = delay.prune_purchases(purchases[uid], pending[uid], now)

    for raw in sim.history(days):
        event = Event.model_validate(raw)
        while event.ts >= next_sweep:
            sweep(next_sweep)
            next_sweep += DAY_MS
        uid = event.user_id
        if uid not in states:
            states[uid], pending[uid], purchases[uid] = PortraitState(uid), [], []
        update(states[uid], event, watermark=event.ts, config=CONFIG)
        if event.type == "pay":
            purchases[uid] = delay.add_purchase(purchases[uid], event.ts)
    sweep(next_sweep)
    return {name: (m.report(), spent[name] / max(m.report()["labels"], 1)) for name, m in models.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--horizon", type=float, default=14.0, help="churn horizon H in days")
    parser.add_argument("--every", type=float, default=7.0, help="days between two snapshots of one user")
    parser.add_argument("--active-days", type=float, default=30.0, help="snapshot only users seen this recently")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    results: dict[str, list] = {name: [] for name in CANDIDATES}
    for seed in args.seeds:
        started = time.perf_counter()
        for name, outcome in run(args.users, args.days, args.horizon, args.every, args.active_days, seed).items():
            results[name].append(outcome)
        report = results[next(iter(CANDIDATES))][-1][0]
        print(
            f"seed {seed}: {report['labels']} labels, {report['positives']} churned ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    print(f"{'model':48s} {'AUC mean':>8s} {'min':>6s} {'max':>6s} {'us/learn':>9s}")
    for name, outcomes in results.items():
        aucs = [r["auc"] or 0.0 for r, _ in outcomes]
        print(f"{name:48s} {statistics.mean(aucs):8.3f} {min(aucs):6.3f} {max(aucs):6.3f} {statistics.mean(t for _, t in outcomes) * 1e6:9.1f}")


if __name__ == "__main__":
    main()
