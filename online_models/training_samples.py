"""What a user sample tells the trainer: the figures its models learn, not the whole portrait.

A worker samples each user once per period (:mod:`online_models.watch`). The
trainer (:class:`online_models.population.PopulationModels`) learns from the
sample the RFM inputs, the average order value, the 30-day spend, the behaviour
features and the purchase statistics; :func:`state_figures` reads exactly those
off a user's state (:func:`user_figures` off a rendered portrait: the same
figures), and a sample carries them as ``figures``. A sample that
carries the whole ``portrait`` (the older form) is read through the same
function, so both forms teach the models the same thing.

Samples travel to the trainer in packs (:func:`pack_samples`): one record of the
training topic per partition write, instead of one per sample.

>>> from online_models.portrait import PortraitConfig, PortraitState, render, update
>>> from online_models.events import parse_event
>>> state = PortraitState("u1")
>>> _ = update(state, parse_event(b'{"event_id":"1","user_id":"u1","type":"pay","ts":1714536000000,"amount":80}'),
...            watermark=0, config=PortraitConfig())
>>> as_of = 1714536000000 + 86_400_000
>>> sample = user_sample(state_figures(state, as_of=as_of, config=PortraitConfig()), ts=as_of)
>>> figures, portrait = UserFigures.of(sample), render(state, as_of=as_of, config=PortraitConfig())
>>> figures == user_figures(portrait), figures.days_since_last_purchase, figures.aov, figures.stats
(True, 1.0, 80.0, (0, 0.0, 1.0))
>>> unpack_samples(pack_samples([sample, {"kind": "forget", "user_id": "u1"}]))[1]
{'kind': 'forget', 'user_id': 'u1'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from online_models.churn import purchase_stats, stats_at
from online_models.features import behaviour_features, state_features
from online_models.portrait import PortraitConfig, PortraitState, average_order_value, days_since, repeat_spend_cents, window_totals
from online_models.portrait_types import RenderedPortrait, portrait_from_json

#: most samples in one record of the training topic (a slim sample is well under 2 KB)
MAX_PACKED_SAMPLES = 200

#: a buyer's ``(x, t_x, T)`` in days
Stats = tuple[int, float, float]


@dataclass(frozen=True, slots=True)
class UserFigures:
    """The figures of one user sample the population models learn.

    ``days_since_last_purchase`` is None for a user who never paid; ``stats`` are the
    purchase model's ``(x, t_x, T)`` in days (None: never paid); money in currency units.
    """

    user_id: str
    days_since_last_purchase: float | None
    purchase_days: int
    purchases_90d: int
    spend_90d: float
    spend_30d: float
    aov: float | None
    repeat_spend: float | None
    stats: Stats | None
    features: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """The ``figures`` of a sample (JSON-ready)."""
        return {
            "user_id": self.user_id,
            "days_since_last_purchase": self.days_since_last_purchase,
            "purchase_days": self.purchase_days,
            "purchases_90d": self.purchases_90d,
            "spend_90d": self.spend_90d,
            "spend_30d": self.spend_30d,
            "aov": self.aov,
            "repeat_spend": self.repeat_spend,
            "stats": None if self.stats is None else list(self.stats),
            "features": self.features,
        }

    @classmethod
    def from_json(cls, figures: Mapping[str, Any]) -> "UserFigures":
        """Inverse of :meth:`to_json` (a sample read from the training topic); KeyError or TypeError when malformed."""
        stats = figures["stats"]
        optional = {name: figures[name] for name in ("days_since_last_purchase", "aov", "repeat_spend")}
        return cls(
            str(figures["user_id"]),
            **{name: None if value is None else float(value) for name, value in optional.items()},
            purchase_days=int(figures["purchase_days"]),
            purchases_90d=int(figures["purchases_90d"]),
            spend_90d=float(figures["spend_90d"]),
            spend_30d=float(figures["spend_30d"]),
            stats=None if stats is None else (int(stats[0]), float(stats[1]), float(stats[2])),
            features={str(name): float(value) for name, value in dict(figures["features"]).items()},
        )

    @classmethod
    def of(cls, sample: Mapping[str, Any]) -> "UserFigures":
        """The figures of a ``user`` sample, in either form (``figures``, or the whole ``portrait``)."""
        figures = sample.get("figures")
        if figures is not None:
            return cls.from_json(figures)
        portrait = sample["portrait"]
        if isinstance(portrait, Mapping):  # a sample of the older form read from the training topic
            portrait = portrait_from_json(portrait)
        return user_figures(portrait)


def state_figures(state: PortraitState, *, as_of: int, config: PortraitConfig) -> UserFigures:
    """:func:`user_figures` of the portrait ``render(state, as_of=as_of, config=config)``, read off the state
    without rendering it (a sample needs a tenth of the portrait)."""
    w90, w30 = window_totals(state, as_of, 90), window_totals(state, as_of, 30)
    repeat = repeat_spend_cents(state)
    return UserFigures(
        state.user_id,
        days_since(state.last_purchase, as_of),
        len(state.purchase_days),
        w90.purchases,
        float(w90.spend),
        float(w30.spend),
        average_order_value(state),
        None if repeat is None else repeat / 100,
        state_purchase_stats(state, as_of),
        state_features(state, as_of=as_of, config=config, windows=(w90, w30)),
    )


def state_purchase_stats(state: PortraitState, as_of: int) -> Stats | None:
    """The buyer's ``(x, t_x, T)`` at ``as_of`` (:func:`online_models.churn.purchase_stats` of the portrait), None for a non-buyer."""
    if state.first_purchase is None or state.last_purchase is None:
        return None
    return stats_at(state.first_purchase, state.last_purchase, len(state.purchase_days) or 1, as_of)


def user_figures(portrait: RenderedPortrait) -> UserFigures:
    """What the models learn of ``portrait`` (:func:`state_figures` reads the same off a state)."""
    w90 = portrait.windows.d90
    return UserFigures(
        str(portrait.user_id),
        None if portrait.days_since_last_purchase is None else float(portrait.days_since_last_purchase),
        int(portrait.purchase_days or 0),
        int(w90.purchases or 0),
        float(w90.spend or 0.0),
        float(portrait.windows.d30.spend or 0.0),
        None if portrait.aov is None else float(portrait.aov),
        None if portrait.lifetime.repeat_spend is None else float(portrait.lifetime.repeat_spend),
        purchase_stats(portrait),
        behaviour_features(portrait),
    )


def user_sample(figures: UserFigures, *, ts: int) -> dict[str, Any]:
    """The ``user`` sample of a user's ``figures`` (:func:`state_figures`, :func:`user_figures`) taken at event time ``ts``."""
    return {"kind": "user", "ts": ts, "figures": figures.to_json()}


def pack_samples(samples: Iterable[Mapping[str, Any] | bytes]) -> bytes:
    """One record of the training topic holding ``samples`` (dicts, or each already as JSON bytes), in order."""
    parts = [sample if isinstance(sample, bytes) else orjson.dumps(sample) for sample in samples]
    return b'{"kind":"pack","samples":[' + b",".join(parts) + b"]}"


def unpack_samples(raw: bytes) -> list[dict[str, Any]]:
    """The samples of one record of the training topic: a pack's, or the record itself (one sample)."""
    record = orjson.loads(raw)
    if isinstance(record, dict) and record.get("kind") == "pack":
        return list(record["samples"])
    return [record]

