"""The population models, trained centrally and scored everywhere.

One trainer learns from samples every worker sends (one per user per period,
plus churn labels as they mature) and publishes snapshots; every worker scores
portraits with the latest snapshot. Here live the models and the rules that
turn a portrait into decisions: RFM scores and value layer, lifecycle stage,
tags, segment, churn risk and price band.

>>> from online_models.portrait import PortraitConfig, PortraitState, render, update
>>> from online_models.events import parse_event
>>> models = PopulationModels(PopulationConfig(segment_warmup=1, n_segments=1))
>>> state = PortraitState("u1")
>>> _ = update(state, parse_event(b'{"event_id":"1","user_id":"u1","type":"pay","ts":1714536000000,"amount":80}'),
...            watermark=0, config=PortraitConfig())
>>> portrait = render(state, as_of=1714536060000, config=PortraitConfig())
>>> models.learn({"kind": "user", "ts": 1714536060000, "portrait": portrait})
>>> enriched = models.enrich(portrait)
>>> enriched.rfm.layer, enriched.lifecycle, enriched.segment.id, enriched.price_band
('ordinary', 'new', 0, PriceBand(band='mid', rank=0.5))
>>> PopulationModels.from_bytes(models.to_bytes()).enrich(portrait) == enriched
True
"""

from __future__ import annotations

import pickle
import random
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from online_models._bgnbd_common import fit_report, fit_trusted
from online_models.bgnbd import BGNBD
from online_models.churn import churn_scores
from online_models.churn_classifier import ChurnClassifier
from online_models.clv import clv_scores
from online_models.clock import DAY_MS
from online_models.features import behaviour_features
from online_models.gamma_gamma import GammaGamma, gamma_gamma_report
from online_models.lifecycle import LifecycleConfig, lifecycle_stage
from online_models.mbgnbd import MBGNBD
from online_models.portrait_types import (
    Churn,
    Clv,
    Portrait,
    PriceBand,
    RenderedPortrait,
    Rfm,
    Segment,
    enriched,
)
from online_models.quantiles import PopulationQuantiles
from online_models.risk_selection import USES_CLASSIFIER, RiskSelection, no_purchase_within
from online_models.rfm import LayerConfig, RFMScorer, value_layer
from online_models.segments import SegmentModel
from online_models.tags import TagRules
from online_models.training_samples import UserFigures
from online_models.vocabulary import price_band


@dataclass
class PopulationConfig:
    """How the population models learn; every knob has a default."""

    n_segments: int = 8  # chosen by measurement: see online_models/segments.py
    segment_warmup: int = 500
    churn_fit_sample: int = 20_000  # users whose BG/NBD statistics are kept for refits
    churn_refit_every: int = 500  # new user samples between refits, at least
    #: ... and at least this share of the purchase sample: a fit on many buyers moves little with a few more
    churn_refit_share: float = 0.1
    churn_min_buyers: int = 50
    classifier_min_labels: int = 300
    classifier_min_auc: float = 0.7
    clv_horizon_days: int = 365  # PORTRAITS_CLV_HORIZON_DAYS
    clv_annual_discount_rate: float = 0.10  # PORTRAITS_CLV_ANNUAL_DISCOUNT_RATE
    layers: LayerConfig = field(default_factory=LayerConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    seed: int = 0


class PopulationModels:
    """RFM sketches, segments, churn classifier, BG/NBD and Gamma-Gamma fits, with one snapshot format."""

    def __init__(self, config: PopulationConfig | None = None, rules: TagRules | None = None):
        self.config = config or PopulationConfig()
        self.rules = rules or TagRules.default()
        self.rfm = RFMScorer()
        #: the buyers' average order values (``aov``), one per user sample, the last one to two weeks: price bands
        self.order_values = PopulationQuantiles(7 * DAY_MS)
        self.segments = SegmentModel(n_segments=self.config.n_segments, warmup=self.config.segment_warmup)
        self.classifier = ChurnClassifier()
        #: the candidate churn risks' progressive figures on buyers' labels, and the one served
        self.risk = RiskSelection(min_labels=self.config.classifier_min_labels, min_auc=self.config.classifier_min_auc)
        self.bgnbd: BGNBD | None = None
        self.mbgnbd: MBGNBD | None = None
        #: Gamma-Gamma spend model, fitted on the repeat buyers of the purchase sample
        self.gamma_gamma: GammaGamma | None = None
        #: ``{"bgnbd": report, "mbgnbd": report}`` of the last refit (see :func:`online_models._bgnbd_common.fit_report`)
        self.fit_reports: dict[str, dict[str, Any]] = {}
        #: user id -> (x, t_x, T) in days, the event time (ms) of the sample they come from, from which
        #: T is carried forward (:meth:`current_purchase_stats`; None in entries of older snapshots), and
        #: the spend on the x repeat purchase days (None: unknown; absent in entries of older snapshots)
        self.purchase_sample: dict[str, tuple] = {}
        self.user_samples = 0
        self.since_refit = 0
        #: a refit falls due without being run (``refit_pending``): the caller runs it, e.g. off its event loop
        self.defer_refits = False
        self.refit_pending = False
        self.version = 0
        self.trained_until_ms = 0
        self._rng = random.Random(self.config.seed)

    # ---------------------------------------------------------------- learning
    def learn(self, sample: dict[str, Any]) -> None:
        """Learn one sample: ``{"kind": "user", "ts", "figures"}`` (:mod:`online_models.training_samples`; the older
        ``"portrait"`` in their place, typed or as JSON, teaches the same), ``{"kind": "label", "ts", "features",
        "label"}`` (optionally ``purchase_stats`` [x, t_x, T] at the snapshot and ``horizon_ms``), or
        ``{"kind": "purchase_stats", "ts", "user_id", "stats", "repeat_spend"}``: a buyer's (x, t_x, T) and
        repeat-day spend after a purchase that followed their sample of the period (see :mod:`online_models.watch`);
        ``{"kind": "forget", "user_id"}`` erases a user instead (:meth:`forget`)."""
        if sample["kind"] == "forget":
            self.forget(str(sample["user_id"]))
            return
        if sample["kind"] not in ("user", "label", "purchase_stats"):
            raise ValueError(f"unknown sample kind {sample['kind']!r}")
        figures = UserFigures.of(sample) if sample["kind"] == "user" else None  # a malformed one changes nothing
        ts = int(sample["ts"])
        self.trained_until_ms = max(self.trained_until_ms, ts)
        self.version += 1
        if sample["kind"] == "label":
            self._learn_label(sample)
            return
        if sample["kind"] == "purchase_stats":
            x, t_x, T = sample["stats"]
            spend = sample.get("repeat_spend")
            self._keep_purchase_stats(
                str(sample["user_id"]), (int(x), float(t_x), float(T)), ts, None if spend is None else float(spend)
            )
            return
        self._learn_user(figures, ts)

    def _learn_user(self, figures: UserFigures, ts: int) -> None:
        """One user's figures: RFM sketches, order values, segments, and the purchase sample the churn fits read."""
        self.user_samples += 1
        if figures.days_since_last_purchase is not None:
            self.rfm.learn_figures(
                figures.days_since_last_purchase, figures.purchase_days, figures.purchases_90d, figures.spend_90d, ts
            )
        if figures.aov is not None:
            self.order_values.update(figures.aov, ts)
        self.segments.learn_one(figures.features, gmv=figures.spend_30d)
        if figures.stats is not None:
            self._keep_purchase_stats(figures.user_id, figures.stats, ts, figures.repeat_spend)
            self.since_refit += 1
            if self.since_refit >= self._refit_due() and len(self.purchase_sample) >= self.config.churn_min_buyers:
                if self.defer_refits:
                    self.refit_pending = True  # the caller refits (refit_inputs, fit, apply_refit) when it likes
                else:
                    self.refit_churn()

    def _refit_due(self) -> int:
        """New buyer samples before the next refit: ``churn_refit_every``, or ``churn_refit_share`` of the purchase
        sample when more. With no sound fit yet, every buyer sample while the sample is small (a fit is cheap), and
        every ``churn_min_buyers`` once it is not (a fit of thousands of buyers is not, and may keep failing).

        >>> models = PopulationModels(PopulationConfig(churn_min_buyers=50))
        >>> models.purchase_sample = dict.fromkeys(range(200)); models._refit_due()
        1
        >>> models.purchase_sample = dict.fromkeys(range(20_000)); models._refit_due()
        50
        >>> models.mbgnbd = object(); models._refit_due()
        2000
        """
        config = self.config
        sample = len(self.purchase_sample)
        if self.mbgnbd is None:
            return 1 if sample < config.churn_refit_every else config.churn_min_buyers
        return max(config.churn_refit_every, int(config.churn_refit_share * sample))

    def _learn_label(self, sample: dict[str, Any]) -> None:
        """Score the buyer's candidate risks on the label (:class:`RiskSelection`), then train the classifier."""
        features, churned = sample["features"], bool(sample["label"])
        if sample.get("horizon_ms"):
            self.risk.horizon_days = sample["horizon_ms"] / DAY_MS
        stats = sample.get("purchase_stats")
        if stats is not None and self.mbgnbd is not None and all(map(np.isfinite, features.values())):
            x, t_x, T = int(stats[0]), float(stats[1]), float(stats[2])
            self.risk.learn(
                p_alive=float(self.mbgnbd.p_alive(x, t_x, T)),
                horizon_p=no_purchase_within(self.mbgnbd, x, t_x, T, self.risk.horizon_days),
                classifier_p=self.classifier.predict_proba_one(features),
                churned=churned,
            )
        self.classifier.learn_one(features, churned)

    def _keep_purchase_stats(
        self, user_id: str, stats: tuple[int, float, float], carried_from_ms: int | None, repeat_spend: float | None
    ) -> None:
        sample = self.purchase_sample
        if user_id not in sample and len(sample) >= self.config.churn_fit_sample:
            del sample[self._rng.choice(list(sample))]  # bounded: evict a random user
        sample[user_id] = (*stats, carried_from_ms, repeat_spend)

    def current_spend_stats(self) -> list[tuple[int, float]]:
        """Gamma-Gamma's ``(x, m)`` of the kept repeat buyers whose repeat-day spend is known and positive.

        >>> models = PopulationModels()
        >>> models.purchase_sample = {"u1": (2, 10.0, 30.0, 0, 90.0), "u2": (0, 0.0, 5.0, 0, 0.0), "u3": (1, 3.0, 5.0, None)}
        >>> models.current_spend_stats()
        [(2, 45.0)]
        """
        out = []
        for entry in self.purchase_sample.values():
            x, spend = entry[0], entry[4] if len(entry) > 4 else None
            if x > 0 and spend is not None and spend > 0:
                out.append((x, spend / x))
        return out

    def current_purchase_stats(self) -> list[tuple[int, float, float]]:
        """The kept ``(x, t_x, T)`` as of ``trained_until_ms``: each age ``T`` carried forward from its sample.

        Every purchase reaches the trainer (in the period's sample, or in a
        ``purchase_stats`` sample when it follows that), so ``x`` and ``t_x`` are
        current, and ``T`` (the age of the first purchase) grows with event time
        alone: by the time from the sample to ``trained_until_ms``. Entries of
        older snapshots without a sample time (None, or three fields) stay as they are.

        >>> models = PopulationModels()
        >>> models.purchase_sample = {"u1": (2, 10.0, 30.0, 0), "u2": (1, 3.0, 5.0, None), "u3": (0, 0.0, 5.0)}
        >>> models.trained_until_ms = 86_400_000 * 4
        >>> models.current_purchase_stats()
        [(2, 10.0, 34.0), (1, 3.0, 5.0), (0, 0.0, 5.0)]
        """
        now = self.trained_until_ms
        out = []
        for entry in self.purchase_sample.values():
            x, t_x, age = entry[:3]
            carried_from = entry[3] if len(entry) > 3 else None
            out.append((x, t_x, age + max(0, now - carried_from) / DAY_MS if carried_from is not None else age))
        return out

    def forget(self, user_id: str) -> bool:
        """Drop the user from the purchase sample the churn fits are made on; True if they were in it.

        Only the purchase sample names users. The RFM sketches, the segment
        centres and the classifier's weights are aggregates over many users and
        keep no trace of one id, so they stay. The version moves either way, so
        the next snapshot (which replaces the older ones on the compacted models
        topic) no longer holds the user.
        """
        self.version += 1
        return self.purchase_sample.pop(user_id, None) is not None

    def refit_churn(self) -> None:
        """Refit BG/NBD and MBG/NBD by maximum likelihood on the bounded sample (time unit: days).

        Silent users' ages ``T`` are carried forward to the newest sample (:meth:`current_purchase_stats`).
        Only a sound fit (:func:`online_models._bgnbd_common.fit_trusted`) replaces the one in use,
        a shrunk one beyond the slack only if it explains the current sample better than the one in use;
        :attr:`fit_reports` says how the last refit went and whether it was kept. Gamma-Gamma is refit
        with them on the repeat buyers. The same as :meth:`refit_inputs`, :meth:`ChurnRefit.fit` and
        :meth:`apply_refit` in turn, which a caller can spread over threads (the fit alone reads no state).
        """
        self.apply_refit(self.refit_inputs().fit())

    def refit_inputs(self) -> "ChurnRefit":
        """What a refit reads, copied: the purchase and spend statistics and the fits in use."""
        self.since_refit = 0
        self.refit_pending = False
        in_use, until, least = {"bgnbd": self.bgnbd, "mbgnbd": self.mbgnbd}, self.trained_until_ms, self.config.churn_min_buyers
        if len(self.purchase_sample) < least:
            return ChurnRefit(purchase_stats=None, spend_stats=None, in_use=in_use, trained_until_ms=until)
        spend = self.current_spend_stats()
        return ChurnRefit(
            purchase_stats=_columns(self.current_purchase_stats()),
            spend_stats=_columns(spend) if len(spend) >= least else None,
            in_use=in_use,
            trained_until_ms=until,
        )

    def apply_refit(self, refit: "ChurnRefitResult") -> None:
        """Take the fits a :class:`ChurnRefit` made (the sound ones replace those in use) and its reports."""
        if refit is None:
            return
        for name, model in refit.models.items():
            setattr(self, name, model)
        self.fit_reports = {**getattr(self, "fit_reports", {}), **refit.reports}  # snapshots made before reports existed

    # ----------------------------------------------------------------- scoring
    def _segment_names(self) -> dict[int, str]:
        names = self.__dict__.get("_names")
        if names is None or names[0] != self.version:
            names = (self.version, {seg["id"]: seg["name"] for seg in self.segments.describe()})
            self.__dict__["_names"] = names
        return names[1]

    def classifier_ready(self) -> bool:
        """Whether the classifier has earned the right to give the risk.

        Kept per :attr:`version` (every sample moves it): the progressive ROC AUC
        costs far more to read than a score, and a check reads it for each instant it tries.
        """
        ready = self.__dict__.get("_ready")
        if ready is None or ready[0] != self.version:
            report = self.classifier.report()
            ready = (
                self.version,
                report["labels"] >= self.config.classifier_min_labels
                and report["auc"] is not None
                and report["auc"] >= self.config.classifier_min_auc,
            )
            self.__dict__["_ready"] = ready
        return ready[1]

    def risk_uses_classifier(self) -> bool:
        """Whether a buyer's served risk reads the classifier (then it can fall while the user is silent).

        Kept per :attr:`version`, like :meth:`classifier_ready`."""
        return self.risk_model() in USES_CLASSIFIER

    def risk_model(self) -> str:
        """The candidate risk served to buyers (:meth:`RiskSelection.chosen`), kept per :attr:`version`:
        it reads four AUCs, far more than a score costs, and a check scores many instants."""
        cached = self.__dict__.get("_uses")
        if cached is None or cached[0] != self.version:
            cached = (self.version, self.risk.chosen())
            self.__dict__["_uses"] = cached
        return cached[1]

    def enrich(self, portrait: RenderedPortrait) -> Portrait:
        """The portrait with ``rfm``, ``lifecycle``, ``segment``, ``tags``, ``churn``, ``clv`` and ``price_band`` added."""
        features = behaviour_features(portrait)
        if self.segments.seeded:
            segment_id = self.segments.predict_one(features)
            segment = Segment(segment_id, self._segment_names().get(segment_id, f"segment {segment_id}"))
        else:
            segment = None
        return enriched(
            portrait,
            rfm=Rfm(**self.rfm.score(portrait), layer=value_layer(portrait, self.config.layers)),
            lifecycle=lifecycle_stage(portrait, self.config.lifecycle),
            segment=segment,
            tags=self.rules.evaluate(portrait),
            churn=self.churn(portrait, features),
            clv=self.clv(portrait),
            price_band=self.price_band(portrait),
        )

    def price_band(self, portrait: RenderedPortrait) -> PriceBand | None:
        """The portrait's ``price_band``: its ``aov`` ranked among the buyers' order values
        (:func:`online_models.vocabulary.price_band`); None for a non-buyer or an empty population."""
        aov = portrait.aov
        if aov is None or self.order_values.n == 0:
            return None
        rank = self.order_values.rank(aov)
        return PriceBand(price_band(rank), round(rank, 4))

    def purchase_model(self) -> tuple[str, BGNBD | MBGNBD | None]:
        """The purchase model CLV counts with: MBG/NBD, the one P(alive) is served from, else BG/NBD."""
        if self.mbgnbd is not None:
            return "mbgnbd", self.mbgnbd
        return ("bgnbd", self.bgnbd) if self.bgnbd is not None else ("none", None)

    def clv(self, portrait: RenderedPortrait) -> Clv | None:
        """The portrait's ``clv`` block (:func:`online_models.clv.clv_scores`) at its ``as_of``, under this snapshot."""
        return clv_scores(
            portrait,
            self.purchase_model()[1],
            self.gamma_gamma,
            horizon_days=self.config.clv_horizon_days,
            annual_rate=self.config.clv_annual_discount_rate,
        )

    def scores(self, portrait: RenderedPortrait) -> dict[str, Churn | Clv | None]:
        """What a newer snapshot changes in an enriched portrait: ``{"churn", "clv"}`` (see :mod:`api.rescore`)."""
        return {"churn": self.churn(portrait), "clv": self.clv(portrait)}

    def churn(self, portrait: RenderedPortrait, features: dict[str, float] | None = None) -> Churn:
        """The portrait's ``churn`` part alone (what a check of a silent user needs), as :meth:`enrich` gives it.

        Scored at the portrait's ``as_of``; ``model_version`` is this snapshot's :attr:`version`.
        The worker calls it when it renders a portrait, the API when a newer snapshot
        arrives (:mod:`api.rescore`): one scoring, two callers.
        """
        ready = self.classifier_ready()
        if (ready or self.risk_uses_classifier()) and features is None:
            features = behaviour_features(portrait)
        return churn_scores(
            portrait,
            bgnbd=self.bgnbd,
            mbgnbd=self.mbgnbd,
            classifier=self.classifier,
            features=features,
            classifier_ready=ready,
            selection=self.risk,
            risk_model=self.risk_model(),
            model_version=self.version,
        )

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows: fitted parameters, sample sizes, AUC, segments."""

        reports = getattr(self, "fit_reports", {})

        def fit(name: str, model) -> dict[str, Any] | None:
            last = reports.get(name)
            if model is None:
                return None if last is None else {"in_use": False, "last_refit": last}
            return {
                **{k: round(float(v), 6) for k, v in model.params_.items()},
                "time_unit": "days",
                "in_use": True,
                **fit_report(model),
                # the last refit, when it was refused: the fit above is the last sound one, kept
                "last_refit": None if last is None or last.get("in_use") else last,
            }

        return {
            "version": self.version,
            "trained_until_ms": self.trained_until_ms,
            "user_samples": self.user_samples,
            "churn": {
                "bgnbd": fit("bgnbd", self.bgnbd),
                "mbgnbd": fit("mbgnbd", self.mbgnbd),
                "classifier": {**self.classifier.report(), "ready": self.classifier_ready()},
                "risk": self.risk.report(),
                "sample_size": len(self.purchase_sample),
            },
            "segments": self.segments.describe() if self.segments.seeded else [],
            "clv": self.clv_summary(),
            "order_values": self.order_value_summary(),
        }

    def order_value_summary(self) -> dict[str, Any]:
        """The ``order_values`` part of :meth:`summary`: how many buyer samples the price bands rank against, and
        the order values at the band edges (the 25th and 75th percentiles) and the median, currency units."""
        values = self.order_values
        edge = lambda q: None if values.n == 0 else round(values.quantile(q), 2)  # noqa: E731
        return {"samples": values.n, "p25": edge(0.25), "median": edge(0.5), "p75": edge(0.75)}

    def clv_summary(self) -> dict[str, Any]:
        """The ``clv`` part of :meth:`summary`: the Gamma-Gamma fit (spend in the shop's currency), the
        purchase model CLV counts with, the horizon and the discount rate."""
        model = self.gamma_gamma
        last = getattr(self, "fit_reports", {}).get("gamma_gamma")
        if model is None:
            spend = None if last is None else {"in_use": False, "last_refit": last}
        else:
            spend = {
                **{k: round(float(v), 6) for k, v in model.params_.items()},
                "mean_order_value": round(model.mean_value(), 4),
                "in_use": True,
                **gamma_gamma_report(model),
                "last_refit": None if last is None or last.get("in_use") else last,
            }
        return {
            "gamma_gamma": spend,
            "purchase_model": self.purchase_model()[0],
            "horizon_days": self.config.clv_horizon_days,
            "annual_discount_rate": self.config.clv_annual_discount_rate,
        }

    # --------------------------------------------------------------- snapshots
    def __getstate__(self) -> dict[str, Any]:
        # tag rules are each process's own configuration, not learned state; so is how its refits run
        local = ("rules", "_names", "_ready", "_uses", "defer_refits", "refit_pending")
        return {k: v for k, v in self.__dict__.items() if k not in local}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.rules = TagRules.default()
        self.__dict__.setdefault("gamma_gamma", None)  # a snapshot made before CLV
        self.defer_refits = self.refit_pending = False  # the loading process says how its refits run
        self.__dict__.setdefault("order_values", PopulationQuantiles(7 * DAY_MS))  # made before price bands
        if "risk" not in state:  # a snapshot made before the risk was chosen by measurement
            self.risk = RiskSelection(min_labels=self.config.classifier_min_labels, min_auc=self.config.classifier_min_auc)

    def to_bytes(self) -> bytes:
        """The whole trained state (to resume training, and to score elsewhere); not the tag rules."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def from_bytes(cls, raw: bytes, rules: TagRules | None = None) -> "PopulationModels":
        """Inverse of :meth:`to_bytes`, scoring tags with ``rules`` (default: the shipped ones)."""
        models = pickle.loads(raw)
        if not isinstance(models, cls):
            raise TypeError("not a PopulationModels snapshot")
        if rules is not None:
            models.rules = rules
        return models


def _columns(rows: list[tuple]) -> list[np.ndarray]:
    """The columns of ``rows``, each a float array."""
    return [np.array(column, dtype=float) for column in zip(*rows)]


@dataclass
class ChurnRefitResult:
    """The fits a refit keeps (by attribute name) and its reports (by model)."""

    models: dict[str, Any]
    reports: dict[str, dict[str, Any]]


@dataclass
class ChurnRefit:
    """A refit's inputs, copied off the models (:meth:`PopulationModels.refit_inputs`); :meth:`fit` reads nothing else.

    ``purchase_stats`` are the ``x``, ``t_x``, ``T`` columns (None: too few buyers); ``spend_stats`` the
    repeat buyers' ``x`` and mean spend (None: too few); ``in_use`` the purchase models in use.
    """

    purchase_stats: list | None
    spend_stats: list | None
    in_use: dict[str, Any]
    trained_until_ms: int

    def fit(self) -> ChurnRefitResult | None:
        """Fit BG/NBD, MBG/NBD and Gamma-Gamma (None: too few buyers for any fit)."""
        if self.purchase_stats is None:
            return None
        x, t_x, T = self.purchase_stats
        models: dict[str, Any] = {}
        reports: dict[str, dict[str, Any]] = {}
        for name, cls in (("bgnbd", BGNBD), ("mbgnbd", MBGNBD)):
            try:
                model, report = fit_trusted(cls, x, t_x, T, in_use=self.in_use.get(name))
            except (ValueError, FloatingPointError, RuntimeError) as error:
                model, report = None, {"sound": False, "error": str(error)[:200]}
            if model is not None:
                models[name] = model
            reports[name] = {**report, "trained_until_ms": self.trained_until_ms, "in_use": model is not None}
        if self.spend_stats is not None:
            reports["gamma_gamma"] = self._fit_spend(models)
        return ChurnRefitResult(models, reports)

    def _fit_spend(self, models: dict[str, Any]) -> dict[str, Any]:
        """Gamma-Gamma on the repeat buyers; only a sound fit goes into ``models``."""
        x, m = self.spend_stats
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                model = GammaGamma().fit(x, m)
            report = gamma_gamma_report(model)
        except (ValueError, FloatingPointError, RuntimeError) as error:
            model, report = None, {"sound": False, "error": str(error)[:200]}
        in_use = model is not None and report["sound"]
        if in_use:
            models["gamma_gamma"] = model
        elif model is not None:
            report = {**report, "params": dict(model.params_)}
        return {**report, "trained_until_ms": self.trained_until_ms, "in_use": in_use}
