"""Price bands: a buyer's average order value ranked among the buyers' order values the population models keep,
against the exact ranks of the same values (tests/reference.py)."""

from __future__ import annotations

import math
import pickle
import random

import orjson

from online_models.events import parse_event
from online_models.population import PopulationModels
from online_models.portrait import PortraitConfig, PortraitState, render, update
from online_models.portrait_types import PriceBand
from tests.reference import DAY, band_of, mid_rank

T0 = 1_767_225_600_000  # 2026-01-01: a Thursday, the first day of a sketch period (periods start on epoch Thursdays)


def buyer(user: str, amounts: list[float]) -> dict:
    """The rendered portrait of a user who paid ``amounts``."""
    state = PortraitState(user)
    for i, amount in enumerate(amounts):
        body = {"event_id": f"{user}-{i}", "user_id": user, "type": "pay", "ts": T0 + i * 60_000, "amount": amount}
        update(state, parse_event(orjson.dumps(body)), watermark=0, config=PortraitConfig())
    return render(state, as_of=T0 + DAY, config=PortraitConfig())


def test_the_band_is_the_exact_rank_among_the_sampled_order_values():
    rng = random.Random(4)
    models = PopulationModels()
    sampled = []
    # two weeks of samples (the sketch keeps the current and the previous week), ties included
    for week in range(2):
        for i in range(150):
            portrait = buyer(f"u{week}-{i}", [round(rng.lognormvariate(4, 0.8), 2) for _ in range(rng.randint(1, 4))])
            if i % 10 == 0:
                portrait = buyer(f"u{week}-{i}", [88.0])
            models.learn({"kind": "user", "ts": T0 + week * 7 * DAY + i, "portrait": portrait})
            sampled.append(portrait.aov)
    assert models.order_values.n == len(sampled) == 300
    bands = set()
    for aov in (*rng.sample(sampled, 60), 88.0, min(sampled), max(sampled), 1.0, 5000.0):
        got = models.enrich(buyer("probe", [aov])).price_band
        exact = mid_rank(aov, sampled)
        assert math.isclose(got.rank, exact, abs_tol=5e-5), aov
        assert got.band == band_of(exact), aov
        bands.add(got.band)
    assert bands == {"low", "mid", "high"}
    # the summary names the band edges: the smallest sampled value whose share at or below reaches the quantile
    ordered = sorted(sampled)
    summary = models.summary()["order_values"]
    for key, q in (("p25", 0.25), ("median", 0.5), ("p75", 0.75)):
        assert summary[key] == ordered[math.ceil(q * len(ordered)) - 1], key
    assert summary["samples"] == 300


def test_old_samples_leave_the_population_after_two_weeks():
    models = PopulationModels()
    models.learn({"kind": "user", "ts": T0, "portrait": buyer("cheap", [5.0])})
    models.learn({"kind": "user", "ts": T0 + 14 * DAY, "portrait": buyer("dear", [500.0])})
    assert models.order_values.n == 1
    assert models.enrich(buyer("probe", [50.0])).price_band == PriceBand("low", 0.0)


def test_no_band_for_a_non_buyer_or_before_any_buyer_is_sampled():
    models = PopulationModels()
    assert models.enrich(buyer("probe", [50.0])).price_band is None
    models.learn({"kind": "user", "ts": T0, "portrait": buyer("b", [20.0])})
    browser = render(PortraitState("browser"), as_of=T0, config=PortraitConfig())
    models.learn({"kind": "user", "ts": T0, "portrait": browser})
    assert models.order_values.n == 1 and models.enrich(browser).price_band is None


def test_a_snapshot_made_before_price_bands_scores_none_until_it_learns():
    models = PopulationModels()
    del models.__dict__["order_values"]
    old = pickle.loads(pickle.dumps(models))
    assert old.enrich(buyer("probe", [50.0])).price_band is None
    old.learn({"kind": "user", "ts": T0, "portrait": buyer("b", [20.0])})
    assert old.enrich(buyer("probe", [50.0])).price_band == PriceBand("high", 1.0)
