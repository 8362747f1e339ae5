"""The churn-alert state machine: hysteresis, cooldown, qualification, stable ids."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from online_models.alerts import Alert, AlertPolicy, AlertState, alert_id, step

DAY = 86_400_000
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
POLICY = AlertPolicy()  # threshold 0.7, re-arm below 0.5, 14-day cooldown


def run(risks, *, state=None, layer="high_value", spend=500.0, policy=POLICY, start=T0, every=DAY):
    """Feed one risk per step; return (state, [index of each step that fired])."""
    state = AlertState() if state is None else state
    fired = []
    for i, risk in enumerate(risks):
        alert = step(state, user_id="u1", risk=risk, layer=layer, spend=spend,
                     reasons=["quiet"], ts_ms=start + i * every, policy=policy)
        if alert is not None:
            fired.append(i)
    return state, fired


def test_fires_once_on_upward_crossing():
    state, fired = run([0.1, 0.4, 0.69, 0.71, 0.8])
    assert fired == [3]
    assert state.armed is False and state.last_fired_ms == T0 + 3 * DAY and state.last_risk == 0.8


def test_alert_fields():
    alert = step(AlertState(), user_id="u7", risk=0.9, layer="potential", spend=120.0,
                 reasons=["no purchase for 45 days", "usual gap 12 days"], ts_ms=T0, policy=POLICY)
    assert isinstance(alert, Alert)
    assert (alert.user_id, alert.risk, alert.threshold, alert.layer, alert.kind) == (
        "u7", 0.9, 0.7, "potential", "churn_risk")
    assert alert.ts == "2024-05-01T00:00:00.000Z" and alert.ts_ms == T0
    assert alert.reasons == ["no purchase for 45 days", "usual gap 12 days"]
    decoded = orjson.loads(alert.to_json_bytes())
    assert decoded == alert.to_dict()
    assert decoded["alert_id"] == alert.alert_id == alert_id("u7", T0)


def test_threshold_is_inclusive():
    assert run([0.7])[1] == [0]


def test_no_refire_while_above_or_between_thresholds():
    # above, then hovering between rearm_below and threshold, then above again: one alert
    _, fired = run([0.8, 0.9, 0.75, 0.6, 0.5, 0.55, 0.95, 0.99] + [0.8] * 30)
    assert fired == [0]


def test_rearms_below_rearm_below_and_fires_again_after_cooldown():
    # fire on day 0, drop below 0.5 on day 20 (cooldown over), rise again on day 21
    _, fired = run([0.8] + [0.6] * 19 + [0.49, 0.72])
    assert fired == [0, 21]


def test_cooldown_suppresses_then_defers():
    # fire day 0, re-arm day 2, cross again day 3 (in cooldown) ... day 14 is the first allowed day
    state, fired = run([0.8, 0.6, 0.3, 0.9] + [0.9] * 16)
    assert fired == [0, 14]
    assert state.last_fired_ms == T0 + 14 * DAY


def test_cooldown_crossing_that_recovers_never_fires():
    _, fired = run([0.8, 0.3, 0.9, 0.3] + [0.4] * 20)
    assert fired == [0]


def test_zero_cooldown_allows_refire_after_rearm():
    policy = AlertPolicy(cooldown_ms=0)
    _, fired = run([0.8, 0.4, 0.8, 0.4, 0.8], policy=policy, every=1)
    assert fired == [0, 2, 4]


@pytest.mark.parametrize("layer", ["ordinary", "low_value", None, "unknown"])
def test_non_qualifying_layers_never_fire(layer):
    _, fired = run([0.2, 0.9, 0.3, 0.95, 0.1, 1.0] * 10, layer=layer)
    assert fired == []


def test_min_spend_floor_and_any_layer_pass():
    floor = AlertPolicy(min_spend=100.0)
    assert run([0.9], spend=99.99, policy=floor)[1] == []
    assert run([0.9], spend=None, policy=floor)[1] == []
    assert run([0.9], spend=100.0, policy=floor)[1] == [0]
    big = AlertPolicy(min_spend_any_layer=1000.0)
    assert run([0.9], layer="low_value", spend=999.0, policy=big)[1] == []
    assert run([0.9], layer="low_value", spend=1000.0, policy=big)[1] == [0]


def test_held_back_user_stays_armed_and_fires_when_qualifying():
    state = AlertState()
    assert step(state, user_id="u1", risk=0.9, layer="low_value", spend=10.0, reasons=[], ts_ms=T0) is None
    assert state.armed
    alert = step(state, user_id="u1", risk=0.9, layer="high_value", spend=10.0, reasons=[], ts_ms=T0 + DAY)
    assert alert is not None and alert.ts_ms == T0 + DAY


def test_same_inputs_same_alert_id():
    first, second = (step(AlertState(), user_id="u1", risk=0.8, layer="potential", spend=1.0,
                          reasons=["r"], ts_ms=T0, policy=POLICY) for _ in range(2))
    assert first == second and first.alert_id == second.alert_id
    assert len(first.alert_id) == 40
    others = {alert_id("u1", T0 + 1), alert_id("u2", T0), alert_id("u1", T0, "other")}
    assert first.alert_id not in others and len(others) == 3


def test_recomputation_after_restart_gives_same_alert():
    state, _ = run([0.2, 0.5])
    saved = orjson.dumps(state.to_json())  # persisted with the portrait

    def recompute(s):
        return step(s, user_id="u1", risk=0.9, layer="potential", spend=1.0, reasons=["r"], ts_ms=T0 + 2 * DAY)

    emitted = recompute(AlertState.from_json(orjson.loads(saved)))  # then the worker died before committing
    restored = AlertState.from_json(orjson.loads(saved))
    again = recompute(restored)
    assert emitted is not None and again == emitted
    # a redelivery of the same step on the advanced state fires nothing more
    assert recompute(restored) is None


def test_older_step_is_ignored():
    state, _ = run([0.3, 0.8])
    snapshot = state.to_json()
    assert step(state, user_id="u1", risk=0.1, layer="high_value", spend=1.0, reasons=[], ts_ms=T0) is None
    assert state.to_json() == snapshot


@pytest.mark.parametrize("risk", [None, float("nan"), float("inf"), True, "0.9"])
def test_bad_risk_changes_nothing(risk):
    state = AlertState()
    assert step(state, user_id="u1", risk=risk, layer="high_value", spend=1.0, reasons=[], ts_ms=T0) is None
    assert state == AlertState()


def test_state_json_round_trip():
    state, _ = run([0.1, 0.9, 0.6])
    data = orjson.loads(orjson.dumps(state.to_json()))
    assert data == {"armed": False, "last_fired_ms": T0 + DAY, "last_risk": 0.6, "last_ms": T0 + 2 * DAY}
    assert AlertState.from_json(data) == state
    assert AlertState.from_json({}) == AlertState() == AlertState.from_json(None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"rearm_below": 0.8},
        {"rearm_below": -0.1},
        {"cooldown_ms": -1},
        {"min_spend": -1.0},
        {"min_spend_any_layer": -1.0},
    ],
)
def test_policy_validation(kwargs):
    with pytest.raises(ValueError):
        AlertPolicy(**kwargs)


def test_policy_layers():
    with pytest.raises(TypeError):
        AlertPolicy(layers="high_value")
    policy = AlertPolicy(layers=["ordinary"])
    assert policy.layers == frozenset({"ordinary"}) and hash(policy)


@given(st.lists(st.floats(0.0, 1.0), max_size=60), st.integers(0, 30))
def test_alerts_need_a_rearm_and_a_cooldown_between_them(risks, cooldown_days):
    policy = AlertPolicy(cooldown_ms=cooldown_days * DAY)
    _, fired = run(risks, policy=policy)
    for a, b in zip(fired, fired[1:]):
        assert b - a >= max(cooldown_days, 1)
        assert min(risks[a + 1:b]) < policy.rearm_below
    for i in fired:
        assert risks[i] >= policy.threshold


def test_a_silent_user_is_not_re_armed_by_a_model_that_changed_its_mind():
    # a new snapshot can lower a silent user's risk below rearm_below and raise it again later:
    # that is still one silence, alerted once; an event of the user's re-arms
    policy = AlertPolicy(threshold=0.7, rearm_below=0.5, cooldown_ms=14 * DAY)
    state = AlertState()
    last_event = 0

    def observe(risk, day):
        return step(state, user_id="u1", risk=risk, layer="high_value", spend=900.0, reasons=[], ts_ms=day * DAY,
                    policy=policy, last_event_ms=last_event)

    assert observe(0.8, 3) is not None
    assert [observe(risk, day) for day, risk in [(10, 0.3), (21, 0.9), (40, 0.95)]] == [None, None, None]
    assert not state.armed
    last_event = 41 * DAY  # the user comes back, then falls silent again
    assert observe(0.2, 42) is None and state.armed
    assert observe(0.8, 60) is not None


def test_a_reasons_whole_days_come_from_the_instants_not_the_rounded_figure():
    from online_models.churn import reasons
    from online_models.portrait import iso
    from online_models.portrait_types import portrait_from_json

    last = 1_714_536_000_000
    as_of = last + int(4.5004 * 86_400_000)  # published as 4.5 days, which alone would read as 4
    portrait = portrait_from_json({
        "as_of": iso(as_of), "last_purchase": iso(last), "first_purchase": iso(last), "purchase_days": 1,
        "days_since_last_purchase": round((as_of - last) / 86_400_000, 3),
    })
    assert portrait.days_since_last_purchase == 4.5
    assert reasons(portrait, None, "mbgnbd")[0] == "5 days since last purchase; bought only once"
