"""Behaviour features of rendered portraits."""

from __future__ import annotations

import math

import pytest

from online_models.clock import DAY_MS
from online_models.events import Event
from online_models.features import BEHAVIOUR_FEATURES, CATEGORY_PREFIX, behaviour_features, state_features
from online_models.portrait import PortraitConfig, PortraitState, render, update
from online_models.portrait_types import RenderedPortrait, portrait_from_json
from online_models.simulation import ShopSimulator

START = 1_717_171_200_000  # 2024-06-01 00:00 +08:00
CONFIG = PortraitConfig(timezone="Asia/Shanghai")


def portraits(mix: dict[str, float], users: int = 12, days: int = 21, seed: int = 3) -> list[RenderedPortrait]:
    sim = ShopSimulator(users, START, seed=seed, mix=mix)
    states: dict[str, PortraitState] = {}
    for raw in sim.history(days):
        event = Event.model_validate(raw)
        state = states.setdefault(event.user_id, PortraitState(event.user_id))
        update(state, event, watermark=event.ts, config=CONFIG)
    return [render(s, as_of=START + days * DAY_MS, config=CONFIG) for s in states.values()]


@pytest.fixture(scope="module")
def mixed() -> list[RenderedPortrait]:
    return portraits({"night_owl": 1, "weekend_shopper": 1, "browser": 1, "loyal_repeat": 1}, users=20)


def test_values_are_scaled_finite_and_anonymous(mixed):
    for portrait in mixed:
        x = behaviour_features(portrait)
        assert set(BEHAVIOUR_FEATURES) <= set(x)
        assert all(isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in x.values())
        assert not any(portrait.user_id in key for key in x)
        extra = set(x) - set(BEHAVIOUR_FEATURES)
        assert all(key.startswith(CATEGORY_PREFIX) for key in extra)
        if extra:
            assert sum(x[k] for k in extra) == pytest.approx(1.0)


def test_deterministic_and_independent_of_the_input(mixed):
    portrait = mixed[0]
    before = repr(portrait)
    assert behaviour_features(portrait) == behaviour_features(portrait)
    assert repr(portrait) == before


def test_habits_show_in_the_features():
    night = [behaviour_features(p) for p in portraits({"night_owl": 1.0})]
    weekend = [behaviour_features(p) for p in portraits({"weekend_shopper": 1.0})]
    browsers = [behaviour_features(p) for p in portraits({"browser": 1.0})]
    mean = lambda rows, key: sum(r.get(key, 0.0) for r in rows) / len(rows)  # noqa: E731
    assert mean(night, "night") > 0.5 > mean(weekend, "night")
    assert mean(weekend, "weekend_share") > 0.6 > mean(night, "weekend_share")
    assert mean(browsers, "buyer") == 0.0 and mean(browsers, "purchase_recency") == 1.0
    assert mean(browsers, "browse_to_buy") > mean(night, "browse_to_buy")
    assert mean(night, "cat:snacks") > mean(weekend, "cat:snacks")


def test_missing_and_null_fields():
    x = behaviour_features(portrait_from_json({}))
    assert x["recency"] == 1.0 and x["purchase_recency"] == 1.0
    assert all(x[k] == 0.0 for k in BEHAVIOUR_FEATURES if k not in ("recency", "purchase_recency"))
    nulls = {
        "aov": None, "weekend_share": None, "promo_share": None, "refund_rate": None,
        "days_since_last_seen": None, "days_since_last_purchase": None, "first_seen": None,
        "funnel": {"views": 3, "cart_to_purchase": None}, "devices": {}, "top_categories": [],
        "active_hours": [0] * 24, "windows": {"90d": {"spend": 0.0, "purchases": 0}},
    }
    assert behaviour_features(portrait_from_json(nulls))["browse_to_buy"] > 0
    assert not any(k.startswith(CATEGORY_PREFIX) for k in behaviour_features(portrait_from_json(nulls)))


def test_desktop_share_and_log_caps():
    x = behaviour_features(portrait_from_json({"devices": {"PC": 0.5, "android": 0.5}, "windows": {"90d": {"spend": 1e9}}, "aov": 1e9}))
    assert x["mobile"] == 0.5
    assert x["spend_90d"] == 1.0 and x["aov"] == 1.0


def test_state_round_trip_keeps_the_vector():
    sim = ShopSimulator(3, START, seed=5)
    state = PortraitState("u0000")
    for raw in sim.history(10):
        if raw["user_id"] == "u0000":
            update(state, Event.model_validate(raw), watermark=raw["ts"], config=CONFIG)
    as_of = START + 10 * DAY_MS
    clone = PortraitState.from_bytes(state.to_bytes())
    assert behaviour_features(render(clone, as_of=as_of, config=CONFIG)) == behaviour_features(render(state, as_of=as_of, config=CONFIG))


@pytest.mark.parametrize("timezone", ["Asia/Shanghai", "UTC"])
def test_a_states_features_are_those_of_its_rendered_portrait(timezone):
    """Read off the state or off the rendered portrait, the vector is the same, bit for bit, at any instant."""
    config = PortraitConfig(timezone=timezone)
    sim = ShopSimulator(30, START, seed=5, mix={"night_owl": 1, "weekend_shopper": 1, "browser": 1, "loyal_repeat": 1})
    states: dict[str, PortraitState] = {}
    for raw in sim.history(40):
        event = Event.model_validate(raw)
        update(states.setdefault(event.user_id, PortraitState(event.user_id)), event, watermark=event.ts, config=config)
    compared = 0
    for days in (-3, 7, 20, 40, 41.5, 95, 400):
        as_of = START + int(days * DAY_MS)
        for state in states.values():
            assert state_features(state, as_of=as_of, config=config) == behaviour_features(render(state, as_of=as_of, config=config))
            compared += 1
    assert compared == 7 * len(states) > 100
