"""RFM scores against the population, and value layers on hand-built portraits."""

from __future__ import annotations

import random

import pytest

from online_models.portrait_types import RenderedPortrait, portrait_from_json
from online_models.quantiles import DAY_MS
from online_models.rfm import (
    LAYERS,
    LayerConfig,
    RFMScorer,
    add_to_cart_rate,
    order_value_30d,
    repurchase_rate,
    value_layer,
)
from tests.unit.portrait_builder import History

NOW = 100  # as-of day of the hand-built portraits


def buyer(days_ago: float, purchase_days: int, spend_90d: float, purchases_90d: int | None = None) -> RenderedPortrait:
    return portrait_from_json({
        "days_since_last_purchase": days_ago,
        "purchase_days": purchase_days,
        "windows": {"90d": {"purchases": purchase_days if purchases_90d is None else purchases_90d, "spend": spend_90d}},
    })


@pytest.fixture(scope="module")
def scorer() -> RFMScorer:
    rng = random.Random(1)
    s = RFMScorer()
    for _ in range(3000):
        s.learn_one(buyer(rng.expovariate(1 / 30), 1 + int(rng.expovariate(1 / 2)), rng.lognormvariate(5, 1)), ts_ms=0)
    return s


# -- RFM scores -------------------------------------------------------------------


def test_scores_are_monotone(scorer):
    base = dict(days_ago=20.0, purchase_days=2, spend_90d=150.0)
    r = [scorer.score(buyer(**{**base, "days_ago": d}))["r"] for d in (0, 1, 5, 10, 20, 40, 80, 200)]
    f = [scorer.score(buyer(**{**base, "purchase_days": n}))["f"] for n in (1, 2, 3, 4, 6, 10, 30)]
    m = [scorer.score(buyer(**{**base, "spend_90d": x}))["m"] for x in (0, 20, 80, 150, 300, 1000, 5000)]
    assert r == sorted(r, reverse=True) and r[0] == 5 and r[-1] == 1
    assert f == sorted(f) and f[-1] == 5
    assert m == sorted(m) and m[0] == 1 and m[-1] == 5


def test_scores_spread_over_quintiles(scorer):
    rng = random.Random(2)
    counts = {k: 0 for k in range(1, 6)}
    for _ in range(2000):
        counts[scorer.score(buyer(0, 1, rng.lognormvariate(5, 1)))["m"]] += 1
    assert all(300 <= c <= 500 for c in counts.values())  # a fifth each, give or take


def test_never_buyers_are_not_scored_nor_sampled():
    s = RFMScorer()
    never = History().views(day=0, n=5).portrait(as_of_day=1)
    assert never.days_since_last_purchase is None
    assert s.learn_one(never, ts_ms=0) is False
    assert s.recency.n == s.frequency.n == s.monetary.n == 0
    assert s.score(never) == {"r": None, "f": None, "m": None}


def test_empty_scorer_is_neutral():
    assert RFMScorer().score(buyer(3, 2, 100.0)) == {"r": 3, "f": 3, "m": 3}


def test_real_portraits(scorer):
    loyal = History()
    for day in (NOW - 80, NOW - 60, NOW - 40, NOW - 20, NOW - 1):  # five purchase days
        loyal.pay(day=day, amount=300)
    lapsed = History().pay(day=NOW - 95, amount=30)
    assert scorer.score(loyal.portrait(as_of_day=NOW)) == {"r": 5, "f": 5, "m": 5}
    score = scorer.score(lapsed.portrait(as_of_day=NOW))
    assert score["r"] == 1 and score["m"] == 1


def test_frequency_measure():
    s = RFMScorer(frequency_measure="purchases_90d")
    for n in range(1, 101):
        s.learn_one(buyer(1, purchase_days=1, spend_90d=10, purchases_90d=n), ts_ms=0)
    assert s.score(buyer(1, purchase_days=50, spend_90d=10, purchases_90d=95))["f"] == 5
    assert s.score(buyer(1, purchase_days=50, spend_90d=10, purchases_90d=2))["f"] == 1
    with pytest.raises(ValueError):
        RFMScorer(frequency_measure="visits")


def test_population_rotates_in_event_time():
    s = RFMScorer(period_days=7)
    for i in range(100):
        s.learn_one(buyer(1, 1, 10.0 * i), ts_ms=0)
    assert s.score(buyer(1, 1, 500.0))["m"] == 3
    for i in range(100):  # two periods later spending has tripled
        s.learn_one(buyer(1, 1, 30.0 * i), ts_ms=14 * DAY_MS)
    assert s.monetary.n == 100
    assert s.score(buyer(1, 1, 500.0))["m"] == 1


def test_serialization_and_merge(scorer):
    back = RFMScorer.from_bytes(scorer.to_bytes())
    assert back.to_bytes() == scorer.to_bytes()
    probe = buyer(12.0, 3, 222.0)
    assert back.score(probe) == scorer.score(probe)
    assert (back.bins, back.frequency_measure) == (5, "purchase_days")

    a, b = RFMScorer(), RFMScorer()
    for i in range(200):
        (a if i % 2 else b).learn_one(buyer(i, 1 + i % 7, float(i)), ts_ms=0)
    assert a.merge(b).recency.n == 200
    with pytest.raises(ValueError):
        a.merge(RFMScorer(bins=3))
    with pytest.raises(ValueError):
        RFMScorer.from_bytes(b"RFM1\x00")


# -- value layers -----------------------------------------------------------------


def shopper(views: int = 20, carts: int = 2) -> History:
    """First seen long ago, with ``views`` views and ``carts`` carts in the past."""
    return History().views(day=NOW - 80, n=views).carts(day=NOW - 80, n=carts)


def layer(history: History, **config) -> str:
    return value_layer(history.portrait(as_of_day=NOW), LayerConfig(**config))


def test_high_value():
    h = shopper().pay(day=NOW - 20, amount=250).pay(day=NOW - 2, amount=250)
    assert layer(h) == "high_value"
    # order value exactly 1.5 x benchmark is enough
    assert layer(shopper().pay(day=NOW - 20, amount=225).pay(day=NOW - 2, amount=225)) == "high_value"
    # repurchase counts the lifetime's purchase days: an old purchase plus two today
    h = shopper().pay(day=NOW - 60, amount=50).pay(day=NOW - 1, amount=300).pay(day=NOW - 1, amount=300, minute=45)
    assert layer(h) == "high_value"


def test_high_value_misses_fall_to_potential_or_ordinary():
    # two payments on one day (one checkout split by shop): repurchase 0
    same_day = shopper().pay(day=NOW - 2, amount=250).pay(day=NOW - 2, amount=250, minute=40)
    assert repurchase_rate(same_day.portrait(as_of_day=NOW)) == 0.0
    assert layer(same_day) == "potential"
    assert layer(shopper(carts=1).pay(day=NOW - 2, amount=250).pay(day=NOW - 2, amount=250, minute=40)) == "ordinary"
    # frequent, but orders below 1.5 x benchmark: buying more never demotes below potential
    assert layer(shopper().pay(day=NOW - 20, amount=200).pay(day=NOW - 2, amount=200)) == "potential"
    # only one purchase in 30 days (the other is older)
    assert layer(shopper().pay(day=NOW - 40, amount=400).pay(day=NOW - 2, amount=400)) == "potential"


def test_potential():
    assert layer(shopper(views=20, carts=2).pay(day=NOW - 3, amount=160)) == "potential"
    assert layer(shopper(views=20, carts=2).pay(day=NOW - 3, amount=150)) == "potential"  # = benchmark
    assert layer(shopper(views=20, carts=1).pay(day=NOW - 3, amount=160)) == "ordinary"  # 5 % carts
    assert layer(shopper(views=20, carts=2).pay(day=NOW - 3, amount=149.99)) == "ordinary"


def test_ordinary_and_missing_views():
    assert layer(shopper().pay(day=NOW - 3, amount=100)) == "ordinary"
    no_views = History().carts(day=NOW - 5, n=3).pay(day=NOW - 3, amount=500)
    portrait = no_views.portrait(as_of_day=NOW)
    assert add_to_cart_rate(portrait) is None
    assert value_layer(portrait, LayerConfig()) == "ordinary"  # unknown cart rate fails potential
    free = shopper().pay(day=NOW - 3, amount=0)
    assert layer(free) == "ordinary"


def test_low_value():
    assert layer(shopper().pay(day=NOW - 31, amount=1000).pay(day=NOW - 40, amount=1000)) == "low_value"
    assert layer(shopper(views=100, carts=50)) == "low_value"  # never bought
    assert value_layer(portrait_from_json({}), LayerConfig()) == "low_value"
    assert value_layer(portrait_from_json({"windows": None, "funnel": None}), LayerConfig()) == "low_value"


def test_benchmark_is_configurable():
    h = shopper().pay(day=NOW - 20, amount=250).pay(day=NOW - 2, amount=250)
    assert layer(h, benchmark_aov=200) == "potential"  # 250 < 300, >= 200
    assert layer(h, benchmark_aov=300) == "ordinary"
    assert layer(h, benchmark_aov=100, high_value_min_purchases_30d=3) == "potential"


def test_every_portrait_gets_exactly_one_layer():
    rng = random.Random(3)
    maybe = lambda x: rng.choice([x, None, 0])  # noqa: E731
    seen = set()
    for _ in range(3000):
        p = {
            "windows": {"30d": {"purchases": maybe(rng.randint(0, 4)), "spend": maybe(rng.uniform(0, 1500))}},
            "purchase_days": maybe(rng.randint(0, 6)),
            "funnel": {"views": maybe(rng.randint(0, 50)), "add_to_cart": maybe(rng.randint(0, 10))},
        }
        result = value_layer(portrait_from_json(p), LayerConfig())
        assert result in LAYERS
        seen.add(result)
    assert seen == set(LAYERS)


def test_helpers_are_none_safe():
    assert add_to_cart_rate(portrait_from_json({})) is None
    assert add_to_cart_rate(portrait_from_json({"funnel": {"views": 0, "add_to_cart": 3}})) is None
    assert add_to_cart_rate(portrait_from_json({"funnel": {"views": 4, "add_to_cart": None}})) == 0.0
    assert repurchase_rate(portrait_from_json({})) is None and repurchase_rate(portrait_from_json({"purchase_days": 1})) == 0.0
    assert order_value_30d(portrait_from_json({})) is None
    assert order_value_30d(portrait_from_json({"windows": {"30d": {"purchases": 0, "spend": 0}}})) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"benchmark_aov": 0},
        {"high_value_min_purchases_30d": 0},
        {"potential_min_purchases_30d": 0},
        {"high_value_aov_ratio": -1},
        {"potential_min_add_to_cart_rate": -0.1},
        {"high_value_min_repurchase": 1.5},
    ],
)
def test_layer_config_validation(kwargs):
    with pytest.raises(ValueError):
        LayerConfig(**kwargs)
