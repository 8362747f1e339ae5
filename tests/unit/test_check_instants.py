"""Checks of silent users at the instants something can change, against brute-force renders."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from online_models.alerts import AlertPolicy, AlertState
from online_models.lifecycle import LifecycleConfig, lifecycle_stage
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationConfig, PopulationModels
from online_models.portrait import PortraitConfig, PortraitState, render
from online_models.rfm import LayerConfig, value_layer
from online_models.schedule import (
    first_minute_where,
    layer_at,
    layer_change_ms,
    lifecycle_at,
    lifecycle_change_ms,
)
from online_models.watch import WatchConfig, check_instants, layer_when_last_bought, watch_user
from tests.unit.portrait_builder import DAY, HOUR, MINUTE, T0, History

PORTRAIT = PortraitConfig()


def stage(state: PortraitState, at_ms: int, config: LifecycleConfig = LifecycleConfig()) -> str:
    """The stage as the published portrait says it: render, then the lifecycle rules."""
    return lifecycle_stage(render(state, as_of=at_ms, config=PORTRAIT), config)


def layer(state: PortraitState, at_ms: int, config: LayerConfig = LayerConfig()) -> str:
    return value_layer(render(state, as_of=at_ms, config=PORTRAIT), config)


def assert_changes_exactly_at(what, state: PortraitState, after: int, instant: int) -> None:
    """Same as at ``after`` up to the millisecond before ``instant``, different at it."""
    assert instant > after
    assert what(state, instant - 1) == what(state, after) != what(state, instant), (after, instant)


# -- lifecycle --------------------------------------------------------------------


def buyer(*pay_days: float, views: int = 10, carts: int = 2, amount: float = 200.0) -> PortraitState:
    history = History().views(day=0, n=views).carts(day=0, n=carts)
    for day in pay_days:
        history.pay(day=day, amount=amount)
    return history.state()


def test_tenure_passing_new_days_is_the_first_change():
    state = buyer(0)
    instant = lifecycle_change_ms(state, state.last_seen)
    assert stage(state, instant - 1) == "new" and stage(state, instant) == "active"
    assert instant == state.first_seen + 14 * DAY + 1  # tenure must exceed 14 days
    assert_changes_exactly_at(stage, state, state.last_seen, instant)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, DAY), st.floats(0.5, 60, allow_nan=False), st.floats(61, 200, allow_nan=False))
def test_any_thresholds_are_solved_to_the_millisecond(offset_ms, at_risk_days, churn_days):
    config = LifecycleConfig(new_days=at_risk_days / 3, at_risk_days=at_risk_days, churn_days=churn_days)
    history = History().views(day=0)
    history.add("pay", 1 + offset_ms / DAY, hour=0, amount=50.0)
    state = history.state()
    at, seen = state.last_seen, []
    while (instant := lifecycle_change_ms(state, at, config)) is not None:
        assert_changes_exactly_at(lambda s, t: stage(s, t, config), state, at, instant)
        seen.append(stage(state, instant, config))
        at = instant
    assert seen[-2:] == ["at_risk", "churned"]


def test_silence_passing_at_risk_and_churn_days_once_rounded():
    state = buyer(0)
    after_new = lifecycle_change_ms(state, state.last_seen)
    at_risk = lifecycle_change_ms(state, after_new)
    churned = lifecycle_change_ms(state, at_risk)
    assert (stage(state, at_risk), stage(state, churned)) == ("at_risk", "churned")
    assert_changes_exactly_at(stage, state, after_new, at_risk)
    assert_changes_exactly_at(stage, state, at_risk, churned)
    # days_since_last_purchase is rounded to 3 decimals: "above 30" starts at 30.0005 days
    assert 30 * DAY + 43_000 < at_risk - state.last_purchase < 30 * DAY + 44_000
    assert lifecycle_change_ms(state, churned) is None


def test_never_buyer_is_silent_since_the_last_visit():
    state = History().views(day=0).views(day=20).state()
    instant = lifecycle_change_ms(state, state.last_seen)
    assert stage(state, instant) == "at_risk"
    assert_changes_exactly_at(stage, state, state.last_seen, instant)


def test_returning_ends_returning_days_after_the_comeback():
    state = buyer(0, 120)
    assert stage(state, state.last_seen + MINUTE) == "returning"
    instant = lifecycle_change_ms(state, state.last_seen)
    assert_changes_exactly_at(stage, state, state.last_seen, instant)
    # 30 days: returning ends and silence passes at_risk at the same instant
    assert stage(state, instant) == "at_risk"


def test_returning_ends_into_active_with_a_longer_at_risk_threshold():
    config = LifecycleConfig(at_risk_days=45, churn_days=90, returning_days=20)
    state = buyer(0, 120)
    instant = lifecycle_change_ms(state, state.last_seen, config)
    assert (stage(state, instant - 1, config), stage(state, instant, config)) == ("returning", "active")


def test_a_threshold_that_changes_nothing_is_skipped():
    config = LifecycleConfig(new_days=40)  # silence passes 30 days while the user is still new
    state = buyer(0)
    instant = lifecycle_change_ms(state, state.last_seen, config)
    assert instant == state.first_seen + 40 * DAY + 1
    assert (stage(state, instant - 1, config), stage(state, instant, config)) == ("new", "at_risk")


def test_a_user_with_no_event_never_changes_stage():
    state = PortraitState("u1", profile_ts=T0, profile={"age": 30})
    assert lifecycle_change_ms(state, T0) is None and layer_change_ms(state, T0) is None


# -- value layer ------------------------------------------------------------------


def test_layer_drops_when_the_purchase_leaves_the_30_day_window():
    state = buyer(1)  # 200 >= the benchmark, 20% add-to-cart rate: potential
    after = state.last_seen + MINUTE
    assert layer(state, after) == "potential"
    instant = layer_change_ms(state, after)
    assert layer(state, instant) == "low_value"
    assert_changes_exactly_at(layer, state, after, instant)
    assert instant % MINUTE == 0 and instant - state.last_purchase <= 30 * DAY + MINUTE


def test_high_value_steps_down_as_each_purchase_leaves():
    state = buyer(1, 2, 3, amount=300.0)
    after = state.last_seen + MINUTE
    assert layer(state, after) == "high_value"
    first = layer_change_ms(state, after)
    # the first purchase leaving leaves two in 30 days, still high value: the second one's leaving counts
    assert_changes_exactly_at(layer, state, after, first)
    assert first == T0 + 32 * DAY + 12 * HOUR + 30 * MINUTE and layer(state, first) == "potential"
    second = layer_change_ms(state, first)
    assert_changes_exactly_at(layer, state, first, second)
    assert second == first + DAY and layer_change_ms(state, second) is None


def test_purchase_ahead_of_the_check_enters_the_window():
    state = buyer(5)
    before = state.last_purchase - 2 * HOUR  # a check valued before a purchase already folded in
    instant = layer_change_ms(state, before)
    assert_changes_exactly_at(layer, state, before, instant)
    assert instant == -(-state.last_purchase // MINUTE) * MINUTE


# -- the light views agree with render ----------------------------------------------

_event_days = st.lists(st.floats(0, 200, allow_nan=False), min_size=1, max_size=6)


@st.composite
def histories(draw) -> PortraitState:
    history = History()
    for day in draw(_event_days):
        kind = draw(st.sampled_from(["view", "view", "add_to_cart", "pay"]))
        if kind == "pay":
            history.pay(day=day, amount=draw(st.sampled_from([20.0, 160.0, 400.0])), minute=draw(st.integers(0, 59)))
        else:
            history.add(kind, day, hour=draw(st.integers(0, 23)), minute=draw(st.integers(0, 59)))
    return history.state()


@settings(max_examples=60, deadline=None)
@given(histories(), st.integers(-2 * DAY, 400 * DAY))
def test_lifecycle_and_layer_views_match_render(state, offset):
    at = state.last_seen + offset
    assert lifecycle_at(state, at) == stage(state, at)
    minute = at // MINUTE * MINUTE
    assert layer_at(state, minute) == layer(state, minute)


def test_layer_when_last_bought_matches_render_at_the_purchase():
    state = buyer(1, 3)
    at = -(-state.last_purchase // MINUTE) * MINUTE
    assert layer_when_last_bought(state, None, WatchConfig()) == layer(state, at)


# -- no stage or layer change between two scheduled checks ----------------------------


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.integers(0, 3 * DAY))
def test_neither_stage_nor_layer_changes_between_two_checks(state, delay):
    """Follow a silent user check after check and render every hour in between."""
    # only the solved instants (and label releases) schedule checks: no sampling periods, no cap
    config = WatchConfig(silent_sample_periods=0, max_check_gap_ms=0, max_check_gap_without_classifier_ms=0)
    state = copy.deepcopy(state)
    at = state.last_seen + delay
    checks = 0
    while at is not None and at < state.last_seen + 150 * DAY:
        before = (stage(state, at), layer(state, at // MINUTE * MINUTE))
        outcome = watch_user(state, as_of=at, watermark=at, models=None, config=config)
        following = outcome.next_check
        assert following is None or following > at
        end = following if following is not None else state.last_seen + 150 * DAY
        probe = at + HOUR
        while probe < end:
            assert (stage(state, probe), layer(state, probe // MINUTE * MINUTE)) == before, (at, probe, following)
            probe += HOUR
        at, checks = following, checks + 1
    assert checks <= 12  # a handful: stage and layer boundaries, label releases


# -- the risk crossing ----------------------------------------------------------------

MBG = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)


def mbgnbd_models() -> PopulationModels:
    models = PopulationModels(PopulationConfig())
    models.mbgnbd = MBG
    return models


class BumpRisk:
    """A ready 'classifier' whose risk rises, dips and rises again with the days since the last purchase."""

    def __init__(self, shape):
        self.config = PopulationConfig()
        self.shape = shape

    def classifier_ready(self) -> bool:
        return True

    def risk_uses_classifier(self) -> bool:
        return True

    def churn(self, portrait, features=None):
        return {"risk": self.shape(portrait["days_since_last_purchase"]), "reasons": [], "model": "classifier"}


def risk_at(state, models, at_ms) -> float | None:
    return models.churn(render(state, as_of=at_ms, config=PORTRAIT))["risk"]


def brute_force_crossing(state, models, start_ms, end_ms, threshold) -> int | None:
    """The first minute with risk >= threshold: every hour, then every minute of the hour before."""
    at = start_ms
    while at <= end_ms and risk_at(state, models, at) < threshold:
        at += HOUR
    if at > end_ms:
        return None
    for minute in range(max(start_ms, at - HOUR), at + 1, MINUTE):
        if risk_at(state, models, minute) >= threshold:
            return minute
    return at


def eligible_buyer() -> PortraitState:
    state = History().views(day=0, n=10).carts(day=0, n=2)
    for day in (0, 2, 4, 6, 8):
        state.pay(day=day, amount=200.0)
    return state.state()


def test_mbgnbd_crossing_is_within_a_minute_of_brute_force():
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig(max_check_gap_without_classifier_ms=0)  # no cap: search to the end of following
    assert layer_when_last_bought(state, models, config) == "potential"
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    watch_user(state, as_of=as_of, watermark=as_of, models=models, config=config)
    instants = check_instants(state, as_of=as_of, models=models, config=config)
    crossing = instants["crossing"]
    truth = brute_force_crossing(state, models, as_of + MINUTE, as_of + 60 * DAY, config.alerts.threshold)
    assert truth is not None and abs(crossing - truth) <= MINUTE
    assert risk_at(state, models, crossing) >= config.alerts.threshold > risk_at(state, models, crossing - MINUTE)
    assert "cap" not in instants


def test_alert_fires_at_the_crossing_check():
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig(max_check_gap_without_classifier_ms=0)
    at = -(-state.last_seen // MINUTE) * MINUTE
    fired = []
    while at is not None and not fired:
        outcome = watch_user(state, as_of=at, watermark=at, models=models, config=config)
        fired += [outcome.alert] if outcome.alert else []
        at = outcome.next_check
    assert fired and fired[0].ts_ms % MINUTE == 0
    assert risk_at(state, models, fired[0].ts_ms - MINUTE) < config.alerts.threshold


def test_non_monotone_risk_crossing_found_after_a_dip():
    # above the threshold between 3 and 4.5 days of silence, then below, then above from 6.2 days
    def shape(days):
        return 0.8 if 3 <= days < 4.5 or days >= 6.2 else 0.3

    state, models = eligible_buyer(), BumpRisk(shape)
    config = WatchConfig()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    crossing = check_instants(state, as_of=as_of, models=models, config=config)["crossing"]
    truth = brute_force_crossing(state, models, as_of + MINUTE, as_of + 7 * DAY, config.alerts.threshold)
    assert abs(crossing - truth) <= MINUTE
    # from within the dip, the next crossing is the second rise
    inside_dip = state.last_purchase + 5 * DAY
    crossing = check_instants(state, as_of=inside_dip, models=models, config=config)["crossing"]
    assert abs(crossing - (state.last_purchase + int(6.2 * DAY))) <= MINUTE


def test_search_costs_a_bounded_number_of_renders():
    calls = []

    def holds(at):
        calls.append(at)
        return at >= 5 * DAY + 17 * MINUTE

    for monotone in (True, False):
        calls.clear()
        found = first_minute_where(holds, 0, 7 * DAY, monotone=monotone, grid_points=4)
        assert found == 5 * DAY + 17 * MINUTE and len(calls) <= 20


def test_ineligible_or_disarmed_users_need_no_crossing():
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig(max_check_gap_without_classifier_ms=0)
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    assert "crossing" in check_instants(state, as_of=as_of, models=models, config=config)
    assert "cap" in check_instants(state, as_of=as_of, models=models, config=WatchConfig())
    # the spend floor rules the user out: no crossing and no cap
    strict = WatchConfig(alerts=AlertPolicy(min_spend=10_000.0))
    assert not {"crossing", "cap", "rearm"} & set(check_instants(state, as_of=as_of, models=models, config=strict))
    # disarmed under MBG/NBD: the risk of a silent user only rises, nothing to wait for
    state.alert = AlertState(armed=False, last_fired_ms=as_of - DAY).to_json()
    assert not {"crossing", "cap", "rearm"} & set(check_instants(state, as_of=as_of, models=models, config=config))


def test_cooldown_end_and_rearm_are_instants():
    config = WatchConfig()
    state = eligible_buyer()
    as_of = state.last_purchase + 5 * DAY
    # armed, risk already high, but inside the cooldown: due when it ends
    high = BumpRisk(lambda days: 0.9)
    state.alert = AlertState(armed=True, last_fired_ms=as_of - DAY).to_json()
    instants = check_instants(state, as_of=as_of, models=high, config=config)
    assert instants["cap"] == as_of + 7 * DAY and "crossing" not in instants  # the cooldown ends after the cap
    state.alert = AlertState(armed=True, last_fired_ms=as_of - 10 * DAY).to_json()
    instants = check_instants(state, as_of=as_of, models=high, config=config)
    assert instants["crossing"] == -(-(as_of + 4 * DAY) // MINUTE) * MINUTE
    # disarmed by an alert in this silence: whatever the risk does, no re-arm before the user comes back
    falling = BumpRisk(lambda days: 0.9 if days < 9 else 0.2)
    state.alert = AlertState(armed=False, last_fired_ms=as_of - DAY).to_json()
    instants = check_instants(state, as_of=as_of, models=falling, config=config)
    assert "rearm" not in instants and "crossing" not in instants
    # disarmed by an alert before the user's last event, under a classifier whose risk falls below
    # the re-arm level after 9 days of silence: a re-arm instant
    state.alert = AlertState(armed=False, last_fired_ms=state.last_seen - DAY).to_json()
    instants = check_instants(state, as_of=as_of, models=falling, config=config)
    assert risk_at(state, falling, instants["rearm"]) < config.alerts.rearm_below
    assert instants["rearm"] - (state.last_purchase + 9 * DAY) <= 7 * DAY // config.risk_grid_points


def test_cap_is_short_until_the_classifier_is_ready():
    state = eligible_buyer()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    config = WatchConfig()
    assert check_instants(state, as_of=as_of, models=None, config=config)["cap"] == as_of + DAY
    assert check_instants(state, as_of=as_of, models=mbgnbd_models(), config=config)["cap"] == as_of + DAY
    classifier = BumpRisk(lambda days: 0.1)
    assert check_instants(state, as_of=as_of, models=classifier, config=config)["cap"] == as_of + 7 * DAY


# -- labels, samples and the end of following ------------------------------------------


def test_label_release_and_sample_instants():
    config = WatchConfig()
    state = buyer(0)
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    outcome = watch_user(state, as_of=as_of, watermark=as_of, models=None, config=config)
    assert [s["kind"] for s in outcome.samples] == ["user"] and len(state.pending_labels) == 1
    instants = check_instants(state, as_of=as_of, models=None, config=config)
    assert instants["label"] == state.pending_labels[0][0] + config.label_horizon_ms + 1
    period = config.sample_period_ms
    assert instants["sample"] // period == as_of // period + 1
    assert (instants["sample"] - state.last_purchase) % DAY == 0  # at the hour of the last purchase


def test_a_silent_user_is_sampled_for_a_few_periods_then_costs_nothing():
    config = WatchConfig()
    state = buyer(0, amount=50.0)  # an ordinary buyer: no alert could fire, so no cap
    assert layer_when_last_bought(state, None, config) == "ordinary"
    at = -(-state.last_seen // MINUTE) * MINUTE
    checks, samples = [], []
    while at is not None:
        outcome = watch_user(state, as_of=at, watermark=at, models=None, config=config)
        checks.append(at)
        samples += [s for s in outcome.samples if s["kind"] == "user"]
        at = outcome.next_check
    periods = {s["ts"] // config.sample_period_ms for s in samples}
    assert len(samples) == len(periods) <= config.silent_sample_periods + 1
    assert [s.get("last_until_event", False) for s in samples] == [False] * (len(samples) - 1) + [True]
    assert len(checks) <= 2 * config.silent_sample_periods + 8
    assert checks[-1] - state.last_seen <= 200 * DAY and not state.pending_labels


def test_follow_horizon_stops_the_cap():
    state = eligible_buyer()
    config = WatchConfig()
    late = state.last_seen + 181 * DAY
    assert not {"cap", "crossing", "sample"} & set(check_instants(state, as_of=late, models=None, config=config))


@pytest.mark.parametrize("bad", [{"silent_sample_periods": -1}, {"max_check_gap_ms": -1}, {"risk_grid_points": 0}])
def test_bad_watch_config_rejected(bad):
    with pytest.raises(ValueError):
        WatchConfig(**bad)


# -- the trainer carries silent users' age forward -------------------------------------


def silent_sample(user: str, ts: int, last: bool) -> dict:
    state = buyer(0, 3)
    state.user_id = user
    sample = {"kind": "user", "ts": ts, "portrait": render(state, as_of=ts, config=PORTRAIT)}
    if last:
        sample["last_until_event"] = True
    return sample


def test_every_kept_age_is_carried_to_the_newest_sample():
    # every purchase reaches the trainer, so only T moves between a user's samples, sampled or silent
    models = PopulationModels(PopulationConfig(churn_min_buyers=10**6))
    models.learn(silent_sample("quiet", T0 + 40 * DAY, last=True))
    models.learn(silent_sample("busy", T0 + 40 * DAY, last=False))
    (_, _, quiet_age), (_, _, busy_age) = models.current_purchase_stats()
    models.learn(silent_sample("other", T0 + 100 * DAY, last=False))
    (_, _, quiet_later), (_, _, busy_later), _ = models.current_purchase_stats()
    assert quiet_later == pytest.approx(quiet_age + 60) and busy_later == pytest.approx(busy_age + 60)


def test_a_purchase_stats_sample_replaces_the_users_statistics():
    models = PopulationModels(PopulationConfig(churn_min_buyers=10**6))
    models.learn(silent_sample("busy", T0 + 40 * DAY, last=False))
    models.learn({"kind": "purchase_stats", "ts": T0 + 42 * DAY, "user_id": "busy", "stats": [5, 41.0, 42.0]})
    models.learn(silent_sample("other", T0 + 50 * DAY, last=False))
    by_user = dict(zip(models.purchase_sample, models.current_purchase_stats()))
    assert by_user["busy"] == pytest.approx((5, 41.0, 50.0))
    assert models.user_samples == 2  # the segments and RFM sketches count each user once a period


def test_snapshots_with_three_field_entries_still_refit():
    models = PopulationModels(PopulationConfig(churn_min_buyers=5))
    models.purchase_sample = {f"u{i}": (i % 4, float(i), 30.0 + i) for i in range(30)}
    restored = PopulationModels.from_bytes(pickle.dumps(models))
    restored.learn(silent_sample("new", T0 + 50 * DAY, last=True))
    restored.refit_churn()
    assert len(restored.current_purchase_stats()) == 31 and restored.mbgnbd is not None
