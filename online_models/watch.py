"""Watching one user at an event-time instant: score, sample, label, alert, reschedule.

The worker calls :func:`watch_user` after folding a user's event and whenever
the user's scheduled check comes due under the watermark, so a silent user's
risk keeps rising while nothing arrives. It is pure: the caller sends the
samples to the trainer and the alert to the alerts topic, and stores the state.

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

from dataclasses import dataclass, field
from typing import Any

from online_models.alerts import Alert, AlertPolicy, AlertState, step
from online_models.clock import DAY_MS, ceil_minute
from online_models.features import behaviour_features
from online_models.label_delay import LabelDelay
from online_models.portrait import PortraitConfig, PortraitState, render
from online_models.rfm import value_layer
from online_models.schedule import next_check_ms


@dataclass
class WatchConfig:
    """Sampling period, churn-label horizon and alert policy."""

    portrait: PortraitConfig = field(default_factory=PortraitConfig)
    sample_period_ms: int = 7 * DAY_MS
    label_horizon_ms: int = 30 * DAY_MS
    alerts: AlertPolicy = field(default_factory=AlertPolicy)

    def label_delay(self) -> LabelDelay:
        """The delayed-label bookkeeping for this horizon."""
        return LabelDelay(horizon_ms=self.label_horizon_ms, sample_every_ms=self.sample_period_ms)


@dataclass
class WatchOutcome:
    """What one look at a user produced: the churn scores (None without models), samples, alert, next check."""

    churn: dict[str, Any] | None
    samples: list[dict[str, Any]]
    alert: Alert | None
    next_check: int | None


def layer_when_last_bought(state: PortraitState, models, config: WatchConfig) -> str | None:
    """The value layer the user had at their last purchase: the value an alert protects."""
    if state.last_purchase is None:
        return None
    at_purchase = render(state, as_of=ceil_minute(state.last_purchase), config=config.portrait)
    layers = models.config.layers if models is not None else None
    return value_layer(at_purchase, layers) if layers is not None else value_layer(at_purchase)


def watch_user(state: PortraitState, *, as_of: int, watermark: int, models, config: WatchConfig) -> WatchOutcome:
    """Score ``state`` as of ``as_of`` and move its sampling, labels, alert and schedule on.

    ``models`` is the latest :class:`online_models.population.PopulationModels`
    snapshot, or None before the first one: then there is no churn score and no alert.
    """
    portrait = render(state, as_of=as_of, config=config.portrait)
    period = as_of // config.sample_period_ms
    new_period = period != state.sample_period  # each user counts once per period, however busy
    # the label snapshot and a ready classifier read the same features: compute them once
    features = behaviour_features(portrait) if new_period else None
    # a check needs the churn risk only: segments, tags and RFM scores are the publication's
    churn = models.churn(portrait, features) if models is not None else None
    samples: list[dict[str, Any]] = []
    delay = config.label_delay()

    if new_period:
        state.sample_period = period
        samples.append({"kind": "user", "ts": as_of, "portrait": portrait})
        state.pending_labels = delay.maybe_snapshot(state.pending_labels, as_of, features)
    state.pending_labels, labelled = delay.release(state.pending_labels, watermark, state.purchase_times)
    samples += [{"kind": "label", "ts": as_of, "features": x, "label": y} for x, y in labelled]

    alert = None
    if churn is not None and churn.get("risk") is not None:
        alert_state = AlertState.from_json(state.alert)
        alert = step(
            alert_state,
            user_id=state.user_id,
            risk=churn["risk"],
            # only a firing step reads the layer: spare the extra render below the threshold
            layer=layer_when_last_bought(state, models, config) if churn["risk"] >= config.alerts.threshold else None,
            spend=state.spend_cents / 100,
            reasons=churn.get("reasons", []),
            ts_ms=as_of,
            policy=config.alerts,
        )
        state.alert = alert_state.to_json()

    gap = None
    if len(state.purchase_days) > 1 and state.first_purchase is not None and state.last_purchase is not None:
        gap = (state.last_purchase - state.first_purchase) // (len(state.purchase_days) - 1)
    next_check = next_check_ms(state.last_purchase, state.last_seen, as_of, gap)
    if state.pending_labels:
        label_due = state.pending_labels[0][0] + config.label_horizon_ms + 1
        next_check = label_due if next_check is None else min(next_check, label_due)
    state.next_check = next_check
    return WatchOutcome(churn=churn, samples=samples, alert=alert, next_check=next_check)
