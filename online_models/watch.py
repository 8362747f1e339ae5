"""Watching one user at an event-time instant: score, sample, label, alert, reschedule.

The worker calls :func:`watch_user` after folding a user's event and whenever
the user's scheduled check comes due under the watermark, so a silent user's
risk keeps rising while nothing arrives. It is pure: the caller sends the
samples to the trainer and the alert to the alerts topic, and stores the state.

A silent user is not polled: the next check is the first instant at which
something can change (:func:`check_instants`): a lifecycle or value-layer
boundary, a pending label maturing, a sample due in the next period while the
user is still sampled (a few periods after their last event), and, for a user
an alert could fire for, the instant the lapse risk reaches the threshold under
the current purchase model. A new purchase model can bring that instant
forward: :class:`CrossingPlan` keeps what solving it again takes, without the
state, and :func:`replanned_crossing` solves it under the new model (the
partition engine does so for its planned users when a snapshot brings a new
fit). Past the end of following (:func:`online_models.schedule.follow_until_ms`)
a silent user costs nothing more.

>>> from online_models.events import parse_event
>>> from online_models.portrait import PortraitConfig, PortraitState, update
>>> state, config = PortraitState("u1"), WatchConfig()
>>> _ = update(state, parse_event(b'{"event_id":"1","user_id":"u1","type":"pay","ts":1714536000000,"amount":80}'),
...            watermark=0, config=config.portrait)
>>> out = watch_user(state, as_of=1714536060000, watermark=1714536000000, models=None, config=config)
>>> [s["kind"] for s in out.samples], out.alert, out.next_check > 1714536060000
(['user'], None, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from online_models.alerts import Alert, AlertPolicy, AlertState, step
from online_models.churn import lapse_risk, stats_at
from online_models.clock import DAY_MS, ceil_minute
from online_models.features import compact_features, expand_features
from online_models.label_delay import LabelDelay
from online_models.lifecycle import LifecycleConfig
from online_models.portrait import PortraitConfig, PortraitState, render, repeat_spend_cents
from online_models.portrait_types import Churn
from online_models.rfm import LayerConfig
from online_models.schedule import (
    first_minute_where,
    follow_until_ms,
    layer_at,
    layer_change_ms,
    lifecycle_change_ms,
    typical_gap_ms,
)
from online_models.training_samples import state_figures, state_purchase_stats, user_sample


@dataclass
class WatchConfig:
    """Sampling period, churn-label horizon, alert policy, and how long and how closely silent users are followed.

    * ``follow_ms``: a silent user's churn risk is followed this long after their
      last event (or twice their usual gap after the last purchase, if later).
    * ``silent_sample_periods``: a silent user still sends a sample (and a label
      snapshot) in each of this many sample periods after the period of their
      last event.
    """

    portrait: PortraitConfig = field(default_factory=PortraitConfig)
    sample_period_ms: int = 7 * DAY_MS
    label_horizon_ms: int = 30 * DAY_MS
    alerts: AlertPolicy = field(default_factory=AlertPolicy)
    follow_ms: int = 180 * DAY_MS
    silent_sample_periods: int = 6

    def __post_init__(self) -> None:
        for name in ("follow_ms", "silent_sample_periods"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def label_delay(self) -> LabelDelay:
        """The delayed-label bookkeeping for this horizon."""
        return LabelDelay(horizon_ms=self.label_horizon_ms, sample_every_ms=self.sample_period_ms)


@dataclass(frozen=True, slots=True)
class CrossingPlan:
    """What solving a silent user's alert crossing again takes, without their state.

    Kept by the partition engine for each user an alert could fire for, so a new
    purchase model re-plans them from these figures alone (:func:`replanned_crossing`).

    * ``first_purchase``, ``last_purchase``, ``purchase_days``: the purchase
      history the lapse risk reads (until the user's next event);
    * ``earliest``: the first instant an alert may fire (after the last check,
      outside the cooldown);
    * ``until``: the end of following (no crossing is looked for past it);
    * ``next_check``: the check planned under the model of the last look.
    """

    first_purchase: int
    last_purchase: int
    purchase_days: int
    earliest: int
    until: int
    next_check: int | None


@dataclass
class WatchOutcome:
    """What one look at a user produced: the churn scores (None without models or unless asked), samples, alert, next check.

    ``crossing_plan`` is set when an alert could fire for the user before their next
    event (armed, worth an alert, still followed): see :class:`CrossingPlan`.
    """

    churn: Churn | None
    samples: list[dict[str, Any]]
    alert: Alert | None
    next_check: int | None
    crossing_plan: CrossingPlan | None = None


def layer_when_last_bought(state: PortraitState, models, config: WatchConfig) -> str | None:
    """The value layer the user had at their last purchase: the value an alert protects."""
    if state.last_purchase is None:
        return None
    return layer_at(state, ceil_minute(state.last_purchase), _layer_config(models))


def _layer_config(models) -> LayerConfig:
    return models.config.layers if models is not None else LayerConfig()


def _lifecycle_config(models) -> LifecycleConfig:
    return models.config.lifecycle if models is not None else LifecycleConfig()


def sampled_until_period(state: PortraitState, config: WatchConfig) -> int | None:
    """The last sample period (``ts // sample_period_ms``) in which the user is still sampled; None before any event."""
    if state.last_seen is None:
        return None
    return state.last_seen // config.sample_period_ms + config.silent_sample_periods


def sample_instant(state: PortraitState, period: int, config: WatchConfig) -> int:
    """When a silent user is sampled in ``period``: early in it, at the time of day of their last purchase (else visit).

    Spread over the day by each user's own habit, the samples of a period do not
    all fall due at its first instant, and a silent user is sampled at the hour
    a daily check anchored on their last purchase would have sampled them.

    >>> state = PortraitState("u1", last_seen=3 * DAY_MS + 5 * 3_600_000)
    >>> (sample_instant(state, 2, WatchConfig()) - 14 * DAY_MS) // 3_600_000
    5
    """
    start = period * config.sample_period_ms
    anchor = state.last_purchase if state.last_purchase is not None else state.last_seen
    if anchor is None:
        return start
    return start + (anchor - start) % min(DAY_MS, config.sample_period_ms)


def watch_user(
    state: PortraitState, *, as_of: int, watermark: int, models, config: WatchConfig, with_churn: bool = False
) -> WatchOutcome:
    """Score ``state`` as of ``as_of`` and move its sampling, labels, alert and schedule on.

    ``models`` is the latest :class:`online_models.population.PopulationModels`
    snapshot, or None before the first one: then there is no churn score and no alert.
    The user is sampled (a ``user`` sample and a label snapshot) at the first look
    in each sample period up to :func:`sampled_until_period`; the sample of that
    last period says ``"last_until_event": True``. A look right after a purchase
    (one the watermark has not passed) in a period already sampled sends the
    buyer's current ``(x, t_x, T)`` and repeat-day spend instead (a ``purchase_stats`` sample), so the
    trainer's purchase statistics miss no purchase. A label snapshot keeps the
    buyer's ``(x, t_x, T)`` too, and the released label carries it
    (``purchase_stats``) with the horizon (``horizon_ms``): the trainer measures
    the purchase model's risk on it. ``next_check`` is the earliest of :func:`check_instants`.

    The alert reads the lapse risk alone (P(alive) from the state's purchase figures) and a
    sample its figures off the state, so the portrait is rendered only for the reasons of an alert that fires;
    ``with_churn`` also scores the whole churn block (:attr:`WatchOutcome.churn`).
    """
    portrait = None
    period = as_of // config.sample_period_ms
    last_sampled_period = sampled_until_period(state, config)
    # each user counts once per period, however busy, and not long after their last event
    sampled_now = period != state.sample_period and last_sampled_period is not None and period <= last_sampled_period
    stats = state_purchase_stats(state, as_of)
    samples: list[dict[str, Any]] = []
    delay = config.label_delay()
    features = None

    if sampled_now:
        figures = state_figures(state, as_of=as_of, config=config.portrait)
        # the label snapshot and a ready classifier read the same features: computed once
        features = figures.features
        state.sample_period = period
        sample = user_sample(figures, ts=as_of)
        if period == last_sampled_period:  # the trainer carries this one's age forward (PopulationModels)
            sample["last_until_event"] = True
        samples.append(sample)
        state.pending_labels = delay.maybe_snapshot(
            state.pending_labels, as_of, compact_features(features), None if stats is None else list(stats)
        )
    elif state.last_purchase is not None and state.last_purchase >= watermark and period == state.sample_period:
        if stats is not None:
            repeat = repeat_spend_cents(state)
            samples.append(
                {
                    "kind": "purchase_stats",
                    "ts": as_of,
                    "user_id": state.user_id,
                    "stats": list(stats),
                    "repeat_spend": None if repeat is None else repeat / 100,
                }
            )
    state.pending_labels, labelled = delay.release(state.pending_labels, watermark, state.purchase_times, with_context=True)
    samples += [
        {"kind": "label", "ts": as_of, "features": expand_features(x), "label": y, "purchase_stats": stats, "horizon_ms": config.label_horizon_ms}
        for x, y, stats in labelled
    ]

    churn = None
    if models is not None and with_churn:
        portrait = portrait or render(state, as_of=as_of, config=config.portrait)
        churn = models.churn(portrait, features)
    alert = None
    mbgnbd = getattr(models, "mbgnbd", None)
    risk = None if stats is None or mbgnbd is None else lapse_risk(round(float(mbgnbd.p_alive(*stats)), 4))
    if risk is not None:
        alert_state = AlertState.from_json(state.alert)

        def reasons():  # read by a firing step alone: the portrait is rendered for an alert that fires
            yield from (churn or models.churn(portrait or render(state, as_of=as_of, config=config.portrait), features)).reasons

        alert = step(
            alert_state,
            user_id=state.user_id,
            risk=risk,
            layer=layer_when_last_bought(state, models, config) if risk >= config.alerts.threshold else None,
            spend=state.spend_cents / 100,
            reasons=reasons(),
            ts_ms=as_of,
            policy=config.alerts,
            last_event_ms=state.last_seen,
        )
        state.alert = alert_state.to_json()

    instants, plan = _instants_and_plan(state, as_of, models, config)
    next_check = min(instants.values()) if instants else None
    state.next_check = next_check
    if plan is not None:
        plan = replace(plan, next_check=next_check)
    return WatchOutcome(churn=churn, samples=samples, alert=alert, next_check=next_check, crossing_plan=plan)


def check_instants(state: PortraitState, *, as_of: int, models, config: WatchConfig) -> dict[str, int]:
    """The next instant after ``as_of`` of each kind at which a check of the silent user is worth making.

    Keys (a kind is left out when it has no instant):

    * ``lifecycle``: the stage changes (:func:`online_models.schedule.lifecycle_change_ms`);
    * ``layer``: the value layer changes (:func:`online_models.schedule.layer_change_ms`);
    * ``label``: the oldest pending label snapshot can be released (the watermark
      must pass its time plus the horizon);
    * ``sample``: the user is due for a sample in the next sample period while
      still sampled (:func:`sample_instant`);
    * ``crossing``: for an armed user an alert could fire for, the first whole
      minute at which the lapse risk (:func:`online_models.churn.lapse_risk`) reaches
      the threshold, outside the cooldown, under ``models``' purchase model. A silent
      user's lapse risk only rises, so a disarmed user has nothing to wait for
      before their next event (a purchase, which brings its own check).

    ``crossing`` and ``sample`` stop at the end of following
    (:func:`online_models.schedule.follow_until_ms`); the others come to an end by
    themselves. Reads the state (its alert state as left by this look), changes nothing.
    """
    return _instants_and_plan(state, as_of, models, config)[0]


def _instants_and_plan(state: PortraitState, as_of: int, models, config: WatchConfig) -> tuple[dict[str, int], CrossingPlan | None]:
    """:func:`check_instants` and :func:`crossing_plan` in one pass."""
    plan = None
    instants: dict[str, int | None] = {
        "lifecycle": lifecycle_change_ms(state, as_of, _lifecycle_config(models)),
        "layer": layer_change_ms(state, as_of, _layer_config(models)),
    }
    if state.pending_labels:
        instants["label"] = max(state.pending_labels[0][0] + config.label_horizon_ms + 1, as_of + 1)
    follow_until = follow_until_ms(state.last_purchase, state.last_seen, typical_gap_ms(state), horizon_ms=config.follow_ms)
    if follow_until is not None and as_of < follow_until:
        last_sampled_period = sampled_until_period(state, config)
        next_period = as_of // config.sample_period_ms + 1
        if last_sampled_period is not None and next_period <= last_sampled_period:
            instants["sample"] = sample_instant(state, next_period, config)
        plan = crossing_plan(state, as_of=as_of, models=models, config=config)
        if plan is not None and models is not None:
            instants["crossing"] = _first_crossing(plan, plan.earliest, plan.until, models.mbgnbd, config.alerts.threshold)
    return {kind: at for kind, at in instants.items() if at is not None}, plan


def crossing_plan(state: PortraitState, *, as_of: int, models, config: WatchConfig, worth: bool = True) -> CrossingPlan | None:
    """The user's :class:`CrossingPlan` as of the look at ``as_of`` (the alert state as it left it).

    None when no alert can fire before the user's next event: never bought, not
    worth an alert (layer at the last purchase, spend; not asked with ``worth=False``),
    disarmed (the lapse risk of a silent user only rises, and re-arming needs the
    user back), or no longer followed. ``next_check`` is the state's.
    """
    if state.last_purchase is None or state.first_purchase is None:
        return None
    follow_until = follow_until_ms(state.last_purchase, state.last_seen, typical_gap_ms(state), horizon_ms=config.follow_ms)
    if follow_until is None or as_of >= follow_until:
        return None
    alert_state = AlertState.from_json(state.alert)
    if not alert_state.armed:
        return None
    policy = config.alerts
    if worth and not policy.qualifies(layer_when_last_bought(state, models, config), state.spend_cents / 100):
        return None  # the layer at the last purchase and the spend stay as they are until an event
    earliest = as_of + 1
    if alert_state.last_fired_ms is not None:
        earliest = max(earliest, alert_state.last_fired_ms + policy.cooldown_ms)
    return CrossingPlan(
        first_purchase=state.first_purchase,
        last_purchase=state.last_purchase,
        purchase_days=len(state.purchase_days) or 1,
        earliest=earliest,
        until=follow_until,
        next_check=state.next_check,
    )


def lapse_risk_at(plan: CrossingPlan, at_ms: int, mbgnbd) -> float | None:
    """The lapse risk a check at ``at_ms`` would read (``1 - p_alive`` of the churn block), from the plan alone."""
    if mbgnbd is None:
        return None
    stats = stats_at(plan.first_purchase, plan.last_purchase, plan.purchase_days, at_ms)
    return lapse_risk(round(float(mbgnbd.p_alive(*stats)), 4))


def _first_crossing(plan: CrossingPlan, start_ms: int, end_ms: int, mbgnbd, threshold: float) -> int | None:
    """The first whole minute in ``[start_ms, end_ms]`` at which the lapse risk reaches ``threshold``.

    The risk of a silent user under MBG/NBD only rises (T grows, x and t_x stay), so
    one evaluation at the end says whether there is a crossing at all; the age at which
    P(alive) falls to ``1 - threshold`` (:meth:`age_at_p_alive`, closed form) says where,
    up to the rounding of the published figure, and a few evaluations around it find
    the minute (each a P(alive) in plain floats).
    """
    if mbgnbd is None:
        return None
    x, t_x, _ = stats_at(plan.first_purchase, plan.last_purchase, plan.purchase_days, plan.last_purchase)
    age = mbgnbd.age_at_p_alive(x, t_x, 1.0 - threshold) if 0.0 < threshold < 1.0 else None

    def reached(at_ms: int) -> bool:
        risk = lapse_risk_at(plan, at_ms, mbgnbd)
        return risk is not None and risk >= threshold

    guess = None if age is None else plan.first_purchase + age * DAY_MS
    return first_minute_where(reached, start_ms, end_ms, guess_ms=guess)


def replanned_crossing(plan: CrossingPlan, *, now_ms: int, mbgnbd, threshold: float) -> int | None:
    """The check a new purchase model ``mbgnbd`` brings forward, None when the planned one stands.

    The first minute from ``now_ms`` (the new model could not have fired earlier)
    and the plan's ``earliest`` at which the lapse risk under ``mbgnbd`` reaches
    ``threshold``, if it comes before the planned check (and the end of following).
    A user the new model leaves alone costs one P(alive): the risk at the planned check.
    """
    end = plan.until if plan.next_check is None else min(plan.until, plan.next_check - 1)
    start = max(now_ms, plan.earliest)
    if start > end:
        return None
    return _first_crossing(plan, start, end, mbgnbd, threshold)
