"""Churn scores of one portrait: P(alive) from the BG/NBD family, the classifier's risk, and why.

>>> from online_models.mbgnbd import MBGNBD
>>> from online_models.portrait_types import portrait_from_json
>>> portrait = portrait_from_json({"as_of": "2024-03-01T00:00:00.000Z", "first_purchase": "2024-01-01T00:00:00.000Z",
...             "last_purchase": "2024-01-20T00:00:00.000Z", "purchase_days": 4,
...             "days_since_last_purchase": 41.0, "windows": {"7d": {"events": 0}, "30d": {"events": 2}}})
>>> purchase_stats(portrait)
(3, 19.0, 60.0)
>>> usual_gap_days(portrait)
6.3
>>> view = churn_scores(portrait, mbgnbd=MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6))
>>> view.model, view.risk == round(1 - view.p_alive, 4)
('mbgnbd', True)
>>> view.reasons[0]
'41 days since last purchase; usual gap 6.3 days'
"""

from __future__ import annotations

from online_models.clock import instant_ms
from online_models.portrait_types import Churn, RenderedPortrait
from online_models.risk_selection import USES_CLASSIFIER, no_purchase_within

DAY_MS = 86_400_000


_ms = instant_ms


def purchase_stats(portrait: RenderedPortrait) -> tuple[int, float, float] | None:
    """BG/NBD sufficient statistics in days: (repeat purchase days x, t_x, age T); None for non-buyers."""
    first, last, as_of = _ms(portrait.first_purchase), _ms(portrait.last_purchase), _ms(portrait.as_of)
    if first is None or last is None or as_of is None:
        return None
    return stats_at(first, last, int(portrait.purchase_days or 1), as_of)


def stats_at(first_ms: int, last_ms: int, purchase_days: int, as_of_ms: int) -> tuple[int, float, float]:
    """:func:`purchase_stats` from the figures themselves: first and last purchase, purchase days, instant (ms).

    >>> stats_at(0, 19 * DAY_MS, 4, 60 * DAY_MS)
    (3, 19.0, 60.0)
    """
    return max(0, purchase_days - 1), (last_ms - first_ms) / DAY_MS, max(as_of_ms - first_ms, last_ms - first_ms) / DAY_MS


def lapse_risk(p_alive: float | None) -> float | None:
    """What an alert reads: the purchase model's probability that the customer has dropped out, ``1 - p_alive``.

    ``p_alive`` as the churn block publishes it (rounded to 4 places); None without one.
    The served ``risk`` answers "no purchase within the label horizon", whose
    positives include buyers on a long natural gap; an alert is for a customer who
    is gone, the question P(alive) answers (``risk`` is never below it).

    >>> lapse_risk(0.25), lapse_risk(None)
    (0.75, None)
    """
    return None if p_alive is None else round(1.0 - p_alive, 4)


def usual_gap_days(portrait: RenderedPortrait) -> float | None:
    """Mean days between purchase days (None before a repeat purchase)."""
    stats = purchase_stats(portrait)
    if stats is None or stats[0] == 0:
        return None
    x, t_x, _ = stats
    return round(t_x / x, 1)


def reasons(portrait: RenderedPortrait, p_alive: float | None, model: str) -> list[str]:
    """Human-readable grounds for the score."""
    out = []
    since = portrait.days_since_last_purchase
    if since is not None:
        # whole days from the instants themselves: the published figure, rounded to 3 places, rounded again
        # could say 4 days for 4.5004
        last, as_of = _ms(portrait.last_purchase), _ms(portrait.as_of)
        if last is not None and as_of is not None:
            since = (as_of - last) / DAY_MS
        gap = usual_gap_days(portrait)
        text = f"{since:.0f} days since last purchase"
        out.append(text + (f"; usual gap {gap} days" if gap is not None else "; bought only once"))
    elif portrait.days_since_last_seen is not None:
        out.append(f"never bought; {portrait.days_since_last_seen:.0f} days since last visit")
    windows = portrait.windows
    recent = windows.d7.events
    month = windows.d30.events
    if recent is not None and month:
        weekly = month / 30 * 7
        if recent < 0.5 * weekly:
            out.append(f"activity down: {recent} events in 7 days vs {weekly:.1f} a week over 30 days")
    negative = negative_review_reason(portrait)
    if negative is not None:
        out.append(negative)
    if p_alive is not None:
        out.append(f"P(alive) {p_alive:.2f} under {'MBG/NBD' if model != 'bgnbd' else 'BG/NBD'}")
    return out


def negative_review_reason(portrait: RenderedPortrait) -> str | None:
    """The portrait's recent negative reviews as a churn reason ops can read; None without any.

    >>> from online_models.portrait_types import portrait_from_json
    >>> negative_review_reason(portrait_from_json({"sentiment": {"negative_recent": 2, "window_days": 30.0, "recent_negative": [
    ...     {"at": "2024-05-03T10:00:00.000Z", "item_id": "snacks-004", "score": -0.82}]}}))
    '2 negative reviews in the last 30 days; latest 2024-05-03 on item snacks-004 (sentiment -0.82)'
    >>> negative_review_reason(portrait_from_json({"sentiment": {"negative_recent": 0, "window_days": 30.0, "recent_negative": []}})) is None
    True
    """
    sentiment = portrait.sentiment
    count = sentiment.negative_recent or 0
    shown = sentiment.recent_negative
    if not count or not shown:
        return None
    latest = shown[0]
    item = f" on item {latest.item_id}" if latest.item_id else ""
    noun = "negative review" if count == 1 else "negative reviews"
    return (
        f"{count} {noun} in the last {sentiment.window_days or 0:g} days; "
        f"latest {str(latest.at)[:10]}{item} (sentiment {latest.score:+.2f})"
    )


def churn_scores(
    portrait: RenderedPortrait,
    *,
    bgnbd=None,
    mbgnbd=None,
    classifier=None,
    features: dict[str, float] | None = None,
    classifier_ready: bool = False,
    selection=None,
    risk_model: str | None = None,
    model_version: int = 0,
) -> Churn:
    """The portrait's churn block (``model_version``: the snapshot's version).

    For a buyer with a fitted MBG/NBD, ``risk`` is the candidate that ``selection``
    (:class:`online_models.risk_selection.RiskSelection`) chose by its measured
    calibration and ranking, and ``model`` names it; without a selection, ``1 - P(alive)``
    under MBG/NBD (``risk_model``: the selection's choice, when the caller has it at hand). A non-buyer gets the classifier's probability once it has proven
    itself (``classifier_ready``), else None.
    """
    stats = purchase_stats(portrait)
    p_alive = p_alive_bg = None
    if stats is not None:
        if mbgnbd is not None:
            p_alive = round(float(mbgnbd.p_alive(*stats)), 4)
        if bgnbd is not None:
            p_alive_bg = round(float(bgnbd.p_alive(*stats)), 4)
    if p_alive is not None and selection is not None:
        model = risk_model or selection.chosen()
        classifier_p = None
        if model in USES_CLASSIFIER:
            if classifier is None or features is None:
                raise ValueError(f"risk model {model!r} needs the classifier and the features")
            classifier_p = classifier.predict_proba_one(features)
        exact_alive = float(mbgnbd.p_alive(*stats))
        risk = selection.score(
            model,
            p_alive=exact_alive,
            horizon_p=no_purchase_within(mbgnbd, *stats, selection.horizon_days),
            classifier_p=classifier_p,
        )
        risk = round(risk, 4)
    elif p_alive is not None:
        risk, model = round(1.0 - p_alive, 4), "mbgnbd"
    elif classifier is not None and classifier_ready and features is not None:
        risk, model = round(classifier.predict_proba_one(features), 4), "classifier"
    else:
        risk, model = None, "none"
    return Churn(risk, p_alive, p_alive_bg, model, reasons(portrait, p_alive, model), model_version)
