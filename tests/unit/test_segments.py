"""Online behaviour segments: recovery of habit groups, readable names, stable snapshots."""

from __future__ import annotations

import pickle
import random
import re
from collections import Counter

import pytest
from river import metrics

from online_models.clock import DAY_MS
from online_models.events import Event
from online_models.features import behaviour_features
from online_models.portrait import PortraitConfig, PortraitState, render, update
from online_models.segments import SegmentModel
from online_models.simulation import ShopSimulator

START = 1_717_171_200_000  # 2024-06-01 00:00 +08:00
CONFIG = PortraitConfig(timezone="Asia/Shanghai")


def simulate(users: int, days: int, every_days: int = 7, seed: int = 0):
    """Weekly snapshots of every user seen so far: ``(samples, latest vectors, archetypes)``."""
    sim = ShopSimulator(users, START, seed=seed)
    rng = random.Random(seed)
    times = [START + d * DAY_MS for d in range(every_days, days, every_days)] + [START + days * DAY_MS]
    states: dict[str, PortraitState] = {}
    samples: list[tuple[dict, float]] = []
    latest: dict[str, dict] = {}
    spent: dict[str, int] = {}

    def snapshot(as_of: int) -> None:
        for uid in rng.sample(sorted(states), len(states)):
            latest[uid] = behaviour_features(render(states[uid], as_of=as_of, config=CONFIG))
            samples.append((latest[uid], (states[uid].spend_cents - spent.get(uid, 0)) / 100))
            spent[uid] = states[uid].spend_cents

    for raw in sim.history(days):
        event = Event.model_validate(raw)
        while times and event.ts >= times[0]:
            snapshot(times.pop(0))
        state = states.setdefault(event.user_id, PortraitState(event.user_id))
        update(state, event, watermark=event.ts, config=CONFIG)
    while times:
        snapshot(times.pop(0))
    truth = {u.user_id: u.archetype for u in sim.users if u.user_id in latest}
    return samples, latest, truth


@pytest.fixture(scope="module")
def population():
    return simulate(users=280, days=28)


@pytest.fixture(scope="module")
def trained(population):
    samples, latest, truth = population
    model = SegmentModel(n_segments=8, warmup=250, size_window=len(latest))
    for x, gmv in samples:
        model.learn_one(x, gmv=gmv)
    return model


def ari(truth: list, predicted: list) -> float:
    metric = metrics.AdjustedRand()
    for t, p in zip(truth, predicted):
        metric.update(t, p)
    return metric.get()


def test_recovers_the_habit_groups_far_better_than_chance(population, trained):
    _, latest, truth = population
    users = sorted(latest)
    labels = [truth[u] for u in users]
    found = ari(labels, [trained.predict_one(latest[u]) for u in users])
    rng = random.Random(0)
    chance = max(ari(labels, [rng.randrange(8) for _ in users]) for _ in range(5))
    assert chance < 0.05
    assert found > 0.5, found


def test_descriptions_are_readable_and_distinct(trained):
    described = trained.describe()
    assert [d["id"] for d in described] == list(range(8))
    names = [d["name"] for d in described]
    assert len({frozenset(name.split(", ")) for name in names}) == len(names)  # not just reordered
    for name in names:
        assert re.fullmatch(r"[a-z_ ,()0-9-]+", name) and 3 < len(name) < 120, name
    assert any(name.startswith("browsers, never buy") for name in names)
    assert any("night active" in name for name in names)
    assert any("weekend shoppers" in name for name in names)
    assert sum(d["share"] for d in described) == pytest.approx(1.0)
    assert sum(d["gmv_share"] for d in described) == pytest.approx(1.0, abs=1e-3)
    for d in described:
        assert d["size"] >= 0 and all(isinstance(v, float) for v in d["centre"].values())
        if d["name"].startswith("browsers, never buy"):
            assert d["gmv_share"] < 0.02


def test_names_match_the_members(population, trained):
    """Most night owls land in a segment whose name says so, most browsers in "never buy"."""
    _, latest, truth = population
    names = {d["id"]: d["name"] for d in trained.describe()}
    where = {a: Counter() for a in set(truth.values())}
    for uid, x in latest.items():
        where[truth[uid]][names[trained.predict_one(x)]] += 1
    owl_name, owls = where["night_owl"].most_common(1)[0]
    assert "night active" in owl_name and owls > 0.7 * sum(where["night_owl"].values())
    browser_name, browsers = where["browser"].most_common(1)[0]
    assert browser_name.startswith("browsers, never buy") and browsers > 0.7 * sum(where["browser"].values())


def test_snapshot_round_trip_gives_identical_predictions(population, trained):
    samples, latest, _ = population
    clone = SegmentModel.from_bytes(trained.to_bytes())
    vectors = list(latest.values())
    unseen = [{**x, "cat:never_seen_before": 0.7} for x in vectors[:50]]
    assert [clone.predict_one(x) for x in vectors + unseen] == [trained.predict_one(x) for x in vectors + unseen]
    assert clone.describe() == trained.describe()
    # scoring does not change the model: a snapshot taken now is still the same
    assert SegmentModel.from_bytes(clone.to_bytes()).describe() == trained.describe()
    # both keep learning identically
    for x, gmv in samples[:200]:
        clone.learn_one(x, gmv=gmv)
    again = SegmentModel.from_bytes(trained.to_bytes())
    for x, gmv in samples[:200]:
        again.learn_one(x, gmv=gmv)
    assert [clone.predict_one(x) for x in vectors] == [again.predict_one(x) for x in vectors]


def test_unseen_features_do_not_move_predictions(trained):
    x = {"night": 0.8, "buyer": 1.0, "spend_90d": 0.4, "cat:snacks": 0.6, "cat:beauty": 0.4}
    before = trained.predict_one(x)
    centres = pickle.dumps(trained.kmeans.centers)
    for _ in range(3):
        assert trained.predict_one({**x, "cat:brand_new": 0.0}) == before
    assert pickle.dumps(trained.kmeans.centers) == centres


def test_warm_up_and_weights():
    model = SegmentModel(n_segments=2, warmup=6, seed=0)
    a, b = {"f": 0.0, "buyer": 1.0}, {"f": 1.0, "buyer": 1.0}
    assert model.predict_one(a) == 0 and model.describe() == []
    for _ in range(3):
        model.learn_one(a, gmv=10.0)
        model.learn_one(b, gmv=30.0)
    assert model.seeded and model.predict_one(a) != model.predict_one(b)
    shares = {model.predict_one(x): d for x in (a, b) for d in model.describe() if d["id"] == model.predict_one(x)}
    assert shares[model.predict_one(a)]["gmv_share"] == pytest.approx(0.25)
    assert shares[model.predict_one(b)]["gmv_share"] == pytest.approx(0.75)
    model.learn_one(a, weight=0.0)  # ignored
    assert model.n_learned == 6
    heavy, light = SegmentModel.from_bytes(model.to_bytes()), SegmentModel.from_bytes(model.to_bytes())
    heavy.learn_one({"f": 0.3, "buyer": 1.0}, weight=5.0)
    light.learn_one({"f": 0.3, "buyer": 1.0}, weight=1.0)
    cid = model.predict_one(a)
    assert heavy.kmeans.centers[cid]["f"] > light.kmeans.centers[cid]["f"] > 0.0


def test_sizes_forget_old_assignments():
    model = SegmentModel(n_segments=2, warmup=2, size_window=100, seed=0)
    a, b = {"f": 0.0}, {"f": 1.0}
    model.learn_one(a)
    model.learn_one(b)
    for _ in range(1_000):
        model.learn_one(a)
    sizes = {d["id"]: d["size"] for d in model.describe()}
    assert sizes[model.predict_one(a)] == pytest.approx(100, rel=0.02)  # ~ size_window
    assert sizes[model.predict_one(b)] < 1e-3


def test_predictions_are_river_kmeans_nearest_centre(population, trained):
    samples, latest, _ = population
    model = SegmentModel.from_bytes(trained.to_bytes())
    vectors = list(latest.values()) + [{**x, "cat:never_seen_before": 0.9} for x in list(latest.values())[:30]]

    def river(x: dict) -> int:
        return model.kmeans.predict_one(model._weigh(x))

    assert [model.predict_one(x) for x in vectors] == [river(x) for x in vectors]
    # the centre array follows the model as it keeps learning (and restarting starving segments)
    for n, (x, gmv) in enumerate(samples[:300]):
        model.learn_one(x, gmv=gmv)
        if n % 50 == 0:
            assert [model.predict_one(x) for x in vectors[:40]] == [river(x) for x in vectors[:40]]
    assert [model.predict_one(x) for x in vectors] == [river(x) for x in vectors]


def test_rejects_bad_settings_and_snapshots():
    with pytest.raises(ValueError):
        SegmentModel(n_segments=0)
    with pytest.raises(ValueError):
        SegmentModel(halflife=0)
    with pytest.raises(ValueError):
        SegmentModel(n_segments=5, warmup=4)
    with pytest.raises(TypeError):
        SegmentModel.from_bytes(pickle.dumps([1, 2, 3]))


def test_non_finite_vectors_are_ignored(trained):
    model = SegmentModel.from_bytes(trained.to_bytes())
    model.learn_one({"night": float("nan"), "buyer": 1.0})
    model.learn_one({"night": 0.5}, gmv=float("inf"))
    model.learn_one({"night": 0.5}, weight=float("nan"))
    assert model.rejected == 2
    assert model.describe() == trained.describe()


def test_the_nearest_centre_is_rivers_with_its_distance():
    from river import cluster, utils

    from online_models.segments import _Centre, _CentreRows

    rng = random.Random(7)
    names = [f"f{i}" for i in range(12)]
    for _ in range(300):
        kmeans = cluster.KMeans(n_clusters=5, seed=1)
        # centres and points over overlapping feature sets: a missing feature reads as 0 on either side
        kmeans.centers = {i: _Centre({n: rng.random() for n in rng.sample(names, 8)}) for i in range(5)}
        x = {n: rng.random() for n in rng.sample(names, 7)}
        rows = _CentreRows(kmeans.centers, x)
        segment, distance = rows.nearest(rows.point(x))
        assert segment == kmeans.predict_one(x)
        assert distance == pytest.approx(utils.math.minkowski_distance(kmeans.centers[segment], x, p=2) ** 2, rel=1e-12)


def test_the_centre_rows_move_with_the_centres_while_learning(population):
    samples, _, _ = population
    model = SegmentModel(n_segments=4, warmup=40, seed=3, min_share=0.6)
    for x, gmv in samples[:600]:
        model.learn_one(x, gmv=gmv)
    rows = model._rows
    assert model.restarts > 0  # a starving centre moved to a vector: its row too
    assert rows.rows.tolist() == [rows.point(model.kmeans.centers[i]).tolist() for i in rows.ids]  # equal, not just close
