"""Real-time churn alerts: one alert when a valuable user's churn risk crosses a threshold.

:func:`step` is the whole machine. Fed the user's latest churn risk at an
event-time instant, it fires an :class:`Alert` when the risk crosses
``policy.threshold`` upward, then stays quiet until the risk has fallen below
``policy.rearm_below`` (hysteresis) and, after that, until ``policy.cooldown_ms``
has passed since the last alert::

                    risk >= threshold and qualifies and cooldown over
                    => emit Alert, last_fired_ms = ts_ms
          +-------+ ----------------------------------------> +----------+
    start | ARMED |                                           | DISARMED |
    ----> +-------+ <---------------------------------------- +----------+
            |   ^           risk < rearm_below                   |    ^
            +---+                                                +----+
     anything else: stay armed                        risk >= rearm_below: stay
     (below threshold, not qualifying, in cooldown)

A user who is above the threshold but held back (not qualifying, or inside the
cooldown) stays armed, so the alert fires at the first later step where every
condition holds, if the risk is still high by then.

The per-user :class:`AlertState` is a few plain fields meant to live inside the
user's portrait state; it round-trips through JSON-ready dicts. Times are event
times (epoch ms given by the caller), never the wall clock, and the alert id is
a hash of the user id and the event time of the firing step, so recomputing
after a restart or a redelivery yields the same id and consumers can de-duplicate.

>>> from online_models.alerts import AlertPolicy, AlertState, step
>>> policy = AlertPolicy(threshold=0.7, rearm_below=0.5, cooldown_ms=14 * 86_400_000)
>>> state = AlertState()
>>> DAY = 86_400_000
>>> def observe(risk, day):
...     alert = step(state, user_id="u1", risk=risk, layer="high_value", spend=820.0,
...                  reasons=["no purchase for 40 days"], ts_ms=day * DAY, policy=policy)
...     return None if alert is None else alert.ts
>>> [observe(risk, day) for day, risk in enumerate([0.3, 0.75, 0.9, 0.6, 0.8])]
[None, '1970-01-02T00:00:00.000Z', None, None, None]
>>> observe(0.4, 5), observe(0.8, 6), state.armed        # re-armed, but inside the cooldown
(None, None, True)
>>> observe(0.8, 15)                                     # cooldown over, still high: fires
'1970-01-16T00:00:00.000Z'
>>> AlertState.from_json(state.to_json()) == state
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from online_models.clock import iso

__all__ = ["DEFAULT_LAYERS", "DEFAULT_POLICY", "KIND", "Alert", "AlertPolicy", "AlertState", "alert_id", "came_back", "step"]

DAY_MS = 86_400_000
#: The ``kind`` of every alert this module emits.
KIND = "churn_risk"
#: Value layers worth an alert by default (see :mod:`online_models.rfm`).
DEFAULT_LAYERS = frozenset({"high_value", "potential"})


@dataclass(frozen=True)
class AlertPolicy:
    """When a churn risk is worth an alert.

    A user *qualifies* when ``spend >= min_spend`` and either their value layer
    is in ``layers`` or ``spend >= min_spend_any_layer``. ``min_spend`` is a floor
    for everyone; ``min_spend_any_layer`` (off when None) lets big lifetime
    spenders through whatever their current layer. Value layers look at the last
    30 days, so a lapsing customer drifts to ``low_value`` exactly as their risk
    rises: pass the layer the user held at their last purchase, or set
    ``min_spend_any_layer``. Spend is in whatever unit the caller passes.

    >>> policy = AlertPolicy(min_spend=50.0, min_spend_any_layer=1000.0)
    >>> policy.qualifies("high_value", 80.0), policy.qualifies("high_value", 10.0)
    (True, False)
    >>> policy.qualifies("low_value", 80.0), policy.qualifies("low_value", 1500.0)
    (False, True)
    """

    threshold: float = 0.7
    rearm_below: float = 0.5
    cooldown_ms: int = 14 * DAY_MS
    layers: frozenset[str] = DEFAULT_LAYERS
    min_spend: float = 0.0
    min_spend_any_layer: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, str):
            raise TypeError("layers is a set of layer names, not one string")
        object.__setattr__(self, "layers", frozenset(self.layers))
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if not 0.0 <= self.rearm_below <= self.threshold:
            raise ValueError("rearm_below must be in [0, threshold]")
        if not self.cooldown_ms >= 0:
            raise ValueError("cooldown_ms must not be negative")
        if not self.min_spend >= 0:
            raise ValueError("min_spend must not be negative")
        if self.min_spend_any_layer is not None and not self.min_spend_any_layer >= 0:
            raise ValueError("min_spend_any_layer must not be negative")

    def qualifies(self, layer: str | None, spend: float | None) -> bool:
        """Whether a user in ``layer`` with lifetime ``spend`` is worth an alert."""
        spend = 0.0 if spend is None else spend
        if not spend >= self.min_spend:
            return False
        if layer in self.layers:
            return True
        return self.min_spend_any_layer is not None and spend >= self.min_spend_any_layer

    def in_cooldown(self, last_fired_ms: int | None, ts_ms: int) -> bool:
        """Whether ``ts_ms`` is less than ``cooldown_ms`` after the last alert."""
        return last_fired_ms is not None and ts_ms - last_fired_ms < self.cooldown_ms


@dataclass(slots=True)
class AlertState:
    """Per-user alert state: armed flag, last alert time, last risk seen and when.

    ``last_ms`` is the event time of the last accepted step; an older step is
    ignored, so a late recomputation cannot rewind the machine.

    >>> AlertState().to_json()
    {'armed': True, 'last_fired_ms': None, 'last_risk': None, 'last_ms': None}
    """

    armed: bool = True
    last_fired_ms: int | None = None
    last_risk: float | None = None
    last_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict of JSON values, to store inside the portrait state."""
        return {"armed": self.armed, "last_fired_ms": self.last_fired_ms,
                "last_risk": self.last_risk, "last_ms": self.last_ms}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AlertState:
        """Inverse of :meth:`to_json`; missing keys (or None) give the initial state."""
        data = data or {}
        return cls(
            armed=bool(data.get("armed", True)),
            last_fired_ms=data.get("last_fired_ms"),
            last_risk=data.get("last_risk"),
            last_ms=data.get("last_ms"),
        )


@dataclass(frozen=True)
class Alert:
    """One churn alert, ready to publish; ``ts`` is the event time as ISO-8601 UTC."""

    alert_id: str
    user_id: str
    risk: float
    threshold: float
    layer: str | None
    reasons: list[str]
    ts: str
    ts_ms: int
    kind: str = KIND

    def to_dict(self) -> dict[str, Any]:
        """The alert as a plain dict."""
        return asdict(self)

    def to_json_bytes(self) -> bytes:
        """The alert as compact JSON (orjson).

        >>> alert = Alert("id", "u1", 0.8, 0.7, "potential", ["quiet"], "1970-01-01T00:00:00.000Z", 0)
        >>> alert.to_json_bytes()[:44]
        b'{"alert_id":"id","user_id":"u1","risk":0.8,"'
        """
        return orjson.dumps(self)


#: The policy with every default.
DEFAULT_POLICY = AlertPolicy()


def alert_id(user_id: str, ts_ms: int, kind: str = "churn") -> str:
    """Deterministic id of the alert fired for ``user_id`` at event time ``ts_ms``.

    >>> alert_id("u1", 0) == alert_id("u1", 0) != alert_id("u1", 1)
    True
    """
    key = orjson.dumps([user_id, int(ts_ms), kind])
    return hashlib.sha1(key, usedforsecurity=False).hexdigest()


def came_back(state: AlertState, last_event_ms: int | None) -> bool:
    """Whether the user has had an event since the last alert (True when either is unknown)."""
    return last_event_ms is None or state.last_fired_ms is None or last_event_ms > state.last_fired_ms


def step(
    state: AlertState,
    *,
    user_id: str,
    risk: float | None,
    layer: str | None,
    spend: float | None,
    reasons: Iterable[str],
    ts_ms: int,
    policy: AlertPolicy = DEFAULT_POLICY,
    last_event_ms: int | None = None,
) -> Alert | None:
    """Advance ``state`` (in place) with the risk seen at event time ``ts_ms``.

    Returns the :class:`Alert` when this step fires: the user qualifies, is
    armed, is outside the cooldown and ``risk >= policy.threshold``; the state is
    then disarmed. A disarmed user re-arms when ``risk < policy.rearm_below``;
    given ``last_event_ms`` (the user's last event), only once the user has come
    back since the alert: a silence, or a model that changed its mind about it,
    is alerted once.
    A missing or non-finite risk, or a step older than the last one, changes
    nothing. No I/O, no clock: the same inputs give the same result.
    """
    if isinstance(risk, bool) or not isinstance(risk, (int, float)) or not math.isfinite(risk):
        return None
    if state.last_ms is not None and ts_ms < state.last_ms:
        return None
    risk = float(risk)
    state.last_ms = ts_ms
    state.last_risk = risk
    if not state.armed:
        if risk < policy.rearm_below and came_back(state, last_event_ms):
            state.armed = True
        return None
    if (
        risk >= policy.threshold
        and policy.qualifies(layer, spend)
        and not policy.in_cooldown(state.last_fired_ms, ts_ms)
    ):
        state.armed = False
        state.last_fired_ms = ts_ms
        return Alert(
            alert_id=alert_id(user_id, ts_ms),
            user_id=user_id,
            risk=risk,
            threshold=policy.threshold,
            layer=layer,
            reasons=list(reasons),
            ts=iso(ts_ms),
            ts_ms=ts_ms,
        )
    return None
