"""Checks of silent users at the instants something can change, against brute-force renders."""

from __future__ import annotations

import copy
import pickle

import orjson

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
from online_models.churn import lapse_risk, purchase_stats
from online_models.portrait_types import Churn
from online_models import watch as watch_module
from online_models.watch import (
    WatchConfig,
    check_instants,
    crossing_plan,
    lapse_risk_at,
    layer_when_last_bought,
    replanned_crossing,
    watch_user,
)
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
    # only the solved instants (and label releases) schedule checks: no sampling periods
    config = WatchConfig(silent_sample_periods=0)
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


# -- the alert crossing ----------------------------------------------------------------

MBG = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)


def mbgnbd_models(mbgnbd: MBGNBD = MBG) -> PopulationModels:
    models = PopulationModels(PopulationConfig())
    models.mbgnbd = mbgnbd
    return models


class ServedHigh:
    """Models whose served risk is high from the start (a classifier's, say), P(alive) from MBG/NBD."""

    def __init__(self, mbgnbd: MBGNBD = MBG, served: float = 0.95):
        self.config = PopulationConfig()
        self.mbgnbd = mbgnbd
        self.served = served

    def churn(self, portrait, features=None):
        p_alive = round(float(self.mbgnbd.p_alive(*purchase_stats(portrait))), 4)
        return Churn(risk=max(self.served, 1 - p_alive), p_alive=p_alive, p_alive_bgnbd=None, model="classifier", reasons=[], model_version=0)


def risk_at(state, models, at_ms) -> float | None:
    """The lapse risk as the published churn block gives it: 1 - p_alive of the rendered portrait."""
    p_alive = models.churn(render(state, as_of=at_ms, config=PORTRAIT)).p_alive
    return None if p_alive is None else 1 - p_alive


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
    config = WatchConfig()
    assert layer_when_last_bought(state, models, config) == "potential"
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    watch_user(state, as_of=as_of, watermark=as_of, models=models, config=config)
    instants = check_instants(state, as_of=as_of, models=models, config=config)
    crossing = instants["crossing"]
    truth = brute_force_crossing(state, models, as_of + MINUTE, as_of + 60 * DAY, config.alerts.threshold)
    assert truth is not None and abs(crossing - truth) <= MINUTE
    assert risk_at(state, models, crossing) >= config.alerts.threshold > risk_at(state, models, crossing - MINUTE)
    # solved instants only: no periodic re-check of a silent user
    assert set(instants) <= {"lifecycle", "layer", "label", "sample", "crossing"}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 200 * DAY), st.sampled_from([MBG, MBGNBD.from_params(r=0.3, alpha=2.0, a=0.2, b=3.0)]))
def test_the_plan_reads_the_lapse_risk_a_check_publishes(offset, mbgnbd):
    state, models = eligible_buyer(), mbgnbd_models(mbgnbd)
    plan = crossing_plan(state, as_of=state.last_seen, models=models, config=WatchConfig())
    at = state.last_seen + offset
    assert lapse_risk_at(plan, at, mbgnbd) == lapse_risk(models.churn(render(state, as_of=at, config=PORTRAIT)).p_alive)


def test_alert_fires_at_the_crossing_check():
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig()
    at = -(-state.last_seen // MINUTE) * MINUTE
    fired = []
    while at is not None and not fired:
        outcome = watch_user(state, as_of=at, watermark=at, models=models, config=config)
        fired += [outcome.alert] if outcome.alert else []
        at = outcome.next_check
    assert fired and fired[0].ts_ms % MINUTE == 0
    assert risk_at(state, models, fired[0].ts_ms - MINUTE) < config.alerts.threshold <= fired[0].risk


def test_alerts_read_p_alive_not_the_served_risk():
    # the served risk is 0.95 from the first look; the alert waits for 1 - P(alive) to reach the threshold
    state, models = eligible_buyer(), ServedHigh()
    config = WatchConfig()
    at = -(-state.last_seen // MINUTE) * MINUTE
    looks = []
    while at is not None:
        outcome = watch_user(state, as_of=at, watermark=at, models=models, config=config, with_churn=True)
        looks.append((at, outcome))
        if outcome.alert:
            break
        at = outcome.next_check
    assert looks[0][1].churn.risk >= 0.95 and looks[0][1].alert is None
    alert = looks[-1][1].alert
    truth = brute_force_crossing(state, mbgnbd_models(), looks[0][0] + MINUTE, looks[0][0] + 60 * DAY, config.alerts.threshold)
    assert alert is not None and abs(alert.ts_ms - truth) <= MINUTE
    assert alert.risk == round(1 - looks[-1][1].churn.p_alive, 4)


def test_search_costs_a_bounded_number_of_evaluations():
    calls = []

    def holds(at):
        calls.append(at)
        return at >= 5 * DAY + 17 * MINUTE

    assert first_minute_where(holds, 0, 7 * DAY) == 5 * DAY + 17 * MINUTE and len(calls) <= 1 + 14
    calls.clear()
    assert first_minute_where(holds, 0, 5 * DAY) is None and len(calls) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20_000), st.integers(0, 20_000), st.one_of(st.none(), st.floats(-1e4, 3e4)))
def test_a_guess_anywhere_finds_the_same_first_minute(turns_at, span, guess_minutes):
    # the condition turns true at minute ``turns_at`` (possibly past the end); any guess, good or bad, finds it
    def holds(at):
        return at >= turns_at * MINUTE

    end = span * MINUTE
    expected = turns_at * MINUTE if turns_at <= span else None
    guess = None if guess_minutes is None else guess_minutes * MINUTE
    assert first_minute_where(holds, 0, end, guess_ms=guess) == expected


def test_a_close_guess_costs_a_few_evaluations():
    calls = []

    def holds(at):
        calls.append(at)
        return at >= 5 * DAY + 17 * MINUTE

    for off_minutes, most in ((0, 3), (0.5, 3), (-3, 6), (40, 15)):
        calls.clear()
        assert first_minute_where(holds, 0, 60 * DAY, guess_ms=5 * DAY + (17 - 0.5 + off_minutes) * MINUTE) == 5 * DAY + 17 * MINUTE
        assert len(calls) <= most, (off_minutes, len(calls))


def test_ineligible_or_disarmed_users_need_no_crossing():
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    assert "crossing" in check_instants(state, as_of=as_of, models=models, config=config)
    assert crossing_plan(state, as_of=as_of, models=models, config=config) is not None
    # the spend floor rules the user out: no crossing, nothing to re-plan
    strict = WatchConfig(alerts=AlertPolicy(min_spend=10_000.0))
    assert "crossing" not in check_instants(state, as_of=as_of, models=models, config=strict)
    assert crossing_plan(state, as_of=as_of, models=models, config=strict) is None
    # disarmed: the lapse risk of a silent user only rises, nothing to wait for before the next event
    state.alert = AlertState(armed=False, last_fired_ms=as_of - DAY).to_json()
    assert "crossing" not in check_instants(state, as_of=as_of, models=models, config=config)
    assert crossing_plan(state, as_of=as_of, models=models, config=config) is None


def test_the_cooldown_end_is_the_crossing_when_the_risk_is_already_high():
    config = WatchConfig()
    state = eligible_buyer()
    as_of = state.last_purchase + 60 * DAY
    models = mbgnbd_models()
    assert risk_at(state, models, as_of) >= config.alerts.threshold
    state.alert = AlertState(armed=True, last_fired_ms=as_of - DAY).to_json()
    instants = check_instants(state, as_of=as_of, models=models, config=config)
    assert instants["crossing"] == -(-(as_of - DAY + config.alerts.cooldown_ms) // MINUTE) * MINUTE


def test_without_a_purchase_model_a_plan_is_kept_but_no_crossing_solved():
    state = eligible_buyer()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    config = WatchConfig()
    outcome = watch_user(state, as_of=as_of, watermark=as_of, models=None, config=config)
    assert "crossing" not in check_instants(state, as_of=as_of, models=None, config=config)
    assert outcome.crossing_plan is not None and outcome.crossing_plan.next_check == outcome.next_check


# -- re-planning under a new purchase model ---------------------------------------------

#: a purchase model under which the eligible buyer's silence alerts late, and one under which it alerts early
SLOW = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.2, b=8.0)
FAST = MBGNBD.from_params(r=0.5, alpha=2.0, a=2.0, b=0.8)


def test_a_new_model_brings_the_crossing_forward_to_its_own_first_minute():
    state, config = eligible_buyer(), WatchConfig()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    outcome = watch_user(state, as_of=as_of, watermark=as_of, models=mbgnbd_models(SLOW), config=config)
    plan = outcome.crossing_plan
    slow = brute_force_crossing(state, mbgnbd_models(SLOW), as_of + MINUTE, as_of + 120 * DAY, config.alerts.threshold)
    fast = brute_force_crossing(state, mbgnbd_models(FAST), as_of + MINUTE, as_of + 120 * DAY, config.alerts.threshold)
    assert fast + DAY < plan.next_check < slow  # the check planned first is another's (the stage's)
    # the new model arrives before its crossing: the check moves to that crossing
    assert abs(replanned_crossing(plan, now_ms=as_of + DAY, mbgnbd=FAST, threshold=0.7) - fast) <= MINUTE
    # it arrives after: the check is at once (the first whole minute), not back in time
    late = fast + DAY // 2 + 17
    assert replanned_crossing(plan, now_ms=late, mbgnbd=FAST, threshold=0.7) == -(-late // MINUTE) * MINUTE
    # a model that crosses later than the planned check changes nothing
    assert replanned_crossing(plan, now_ms=as_of + DAY, mbgnbd=SLOW, threshold=0.7) is None
    # past the end of following, nothing either
    assert replanned_crossing(plan, now_ms=plan.until + 1, mbgnbd=FAST, threshold=0.7) is None


class Counting(MBGNBD):
    """MBG/NBD counting its P(alive) evaluations."""

    calls = 0

    def p_alive(self, *stats):
        self.calls += 1
        return super().p_alive(*stats)


def test_replanning_an_unchanged_user_costs_one_p_alive_and_a_moved_one_a_few():
    state, config = eligible_buyer(), WatchConfig()
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    plan = watch_user(state, as_of=as_of, watermark=as_of, models=mbgnbd_models(SLOW), config=config).crossing_plan
    counting = Counting.from_params(**SLOW.params_)
    assert replanned_crossing(plan, now_ms=as_of + DAY, mbgnbd=counting, threshold=0.7) is None
    assert counting.calls == 1
    counting = Counting.from_params(**FAST.params_)
    assert replanned_crossing(plan, now_ms=as_of + DAY, mbgnbd=counting, threshold=0.7) is not None
    assert counting.calls <= 1 + 8  # the end, then around the closed-form age (off by the rounding only)


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


def test_a_label_snapshot_is_kept_compact_and_released_as_the_features_it_took():
    config = WatchConfig()
    state = buyer(0)
    as_of = -(-state.last_seen // MINUTE) * MINUTE
    taken = watch_user(state, as_of=as_of, watermark=as_of, models=None, config=config).samples[0]["figures"]["features"]
    kept = state.pending_labels[0][1]
    assert isinstance(kept, str) and len(kept) < len(orjson.dumps(taken)) * 0.7
    assert PortraitState.from_bytes(state.to_bytes()) == state  # read back, the state is the one kept live
    as_dict = copy.deepcopy(state)  # a state written before the compact form: the same snapshot as a dict
    as_dict.pending_labels[0][1] = dict(taken)
    as_list = copy.deepcopy(state)  # one written while the compact form was a list
    as_list.pending_labels[0][1] = orjson.loads(kept)
    later = as_of + config.label_horizon_ms + DAY
    released = [
        [s for s in watch_user(s, as_of=later, watermark=later, models=None, config=config).samples if s["kind"] == "label"]
        for s in (state, as_dict, as_list)
    ]
    assert len(released[0]) == 1 and released[0] == released[1] == released[2]
    assert list(released[0][0]["features"].items()) == list(taken.items())  # the same names, order and values


def test_a_silent_user_is_sampled_for_a_few_periods_then_costs_nothing():
    config = WatchConfig()
    state = buyer(0, amount=50.0)  # an ordinary buyer: no alert could fire, so no crossing
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


def test_follow_horizon_stops_the_crossing_and_the_samples():
    state = eligible_buyer()
    config = WatchConfig()
    late = state.last_seen + 181 * DAY
    assert not {"crossing", "sample"} & set(check_instants(state, as_of=late, models=mbgnbd_models(), config=config))
    assert crossing_plan(state, as_of=late, models=mbgnbd_models(), config=config) is None


@pytest.mark.parametrize("bad", [{"silent_sample_periods": -1}, {"follow_ms": -1}])
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


def _looks_until_risk_is_high(policy: AlertPolicy, monkeypatch) -> tuple[list, list]:
    """Look at a silent eligible buyer every ten days under ``policy``; the outcomes, and the instants ``render`` was called at."""
    rendered = []

    def counting_render(state, *, as_of, config):
        rendered.append(as_of)
        return render(state, as_of=as_of, config=config)

    monkeypatch.setattr(watch_module, "render", counting_render)
    state, models = eligible_buyer(), mbgnbd_models()
    config = WatchConfig(alerts=policy)
    start = -(-state.last_seen // MINUTE) * MINUTE
    outcomes = [watch_user(state, as_of=at, watermark=at, models=models, config=config) for at in range(start, start + 90 * DAY, 10 * DAY)]
    assert max(risk_at(state, models, at) for at in range(start, start + 90 * DAY, 10 * DAY)) >= policy.threshold
    return outcomes, rendered


def test_a_look_renders_the_portrait_only_for_an_alert_that_fires(monkeypatch):
    # the risk passes the threshold, but the user does not qualify: nothing fires, nothing is rendered
    outcomes, rendered = _looks_until_risk_is_high(AlertPolicy(min_spend=1e9), monkeypatch)
    assert not any(outcome.alert for outcome in outcomes) and rendered == []
    # the same user qualifying: one alert, with the reasons of the portrait rendered at its instant
    outcomes, rendered = _looks_until_risk_is_high(AlertPolicy(), monkeypatch)
    alerts = [outcome.alert for outcome in outcomes if outcome.alert]
    assert len(alerts) == 1 and rendered == [alerts[0].ts_ms]
    state = eligible_buyer()
    portrait = render(state, as_of=alerts[0].ts_ms, config=PORTRAIT)
    assert alerts[0].reasons == mbgnbd_models().churn(portrait).reasons != []
