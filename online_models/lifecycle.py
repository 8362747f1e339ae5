"""Lifecycle stage of a user, from the event-time fields of the portrait.

The stages are ``new``, ``active``, ``at_risk``, ``churned`` and ``returning``
(see :func:`lifecycle_stage`). Every figure is relative to the portrait's
``as_of`` instant (event time), never to the wall clock.

>>> from online_models.lifecycle import LifecycleConfig, lifecycle_stage
>>> from online_models.portrait_types import portrait_from_json
>>> config = LifecycleConfig()
>>> base = {"as_of": "2024-06-30T00:00:00.000Z", "first_seen": "2024-01-01T00:00:00.000Z",
...         "days_since_last_seen": 0.5}
>>> def stage(**fields):
...     return lifecycle_stage(portrait_from_json({**base, **fields}), config)
>>> stage(first_seen="2024-06-25T08:00:00.000Z", days_since_last_purchase=None)
'new'
>>> [stage(days_since_last_purchase=days) for days in (5.0, 45.0, 120.0)]
['active', 'at_risk', 'churned']
>>> stage(days_since_last_purchase=2.0, last_return_gap_days=110)
'returning'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from online_models.clock import days_between, instant_ms
from online_models.portrait_types import RenderedPortrait

__all__ = ["STAGES", "LifecycleConfig", "last_return_gap_days", "lifecycle_stage", "tenure_days"]

#: Every lifecycle stage.
STAGES = ("new", "active", "at_risk", "churned", "returning")


@dataclass(frozen=True)
class LifecycleConfig:
    """Day thresholds of the lifecycle stages (event-time days)."""

    new_days: float = 14.0
    at_risk_days: float = 30.0
    churn_days: float = 90.0
    returning_days: float = 30.0

    def __post_init__(self) -> None:
        for name in ("new_days", "at_risk_days", "churn_days", "returning_days"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must not be negative")
        if not self.at_risk_days < self.churn_days:
            raise ValueError("at_risk_days must be less than churn_days")


def tenure_days(portrait: RenderedPortrait) -> float | None:
    """Days from ``first_seen`` to ``as_of``; None when either is missing.

    >>> from online_models.portrait_types import portrait_from_json
    >>> tenure_days(portrait_from_json({"first_seen": "2024-05-01T00:00:00.000Z", "as_of": "2024-05-03T12:00:00.000Z"}))
    2.5
    """
    first, as_of = instant_ms(portrait.first_seen), instant_ms(portrait.as_of)
    if first is None or as_of is None:
        return None
    return max(0.0, days_between(first, as_of))


def last_return_gap_days(purchase_days: Sequence[int]) -> int | None:
    """Whole days between the last two distinct purchase days; None with fewer than two.

    This is the figure :func:`lifecycle_stage` reads as ``last_return_gap_days``;
    ``render`` can give it from ``PortraitState.purchase_days`` (sorted shop-day
    numbers) with no new state.

    >>> last_return_gap_days([19700, 19705, 19810]), last_return_gap_days([19700])
    (105, None)
    """
    if len(purchase_days) < 2:
        return None
    return int(purchase_days[-1] - purchase_days[-2])


def lifecycle_stage(portrait: RenderedPortrait, config: LifecycleConfig = LifecycleConfig()) -> str:
    """The user's lifecycle stage; the first rule that holds wins.

    Silence is ``days_since_last_purchase`` for a user who has bought and
    ``days_since_last_seen`` for one who never has.

    1. ``new``: first seen at most ``new_days`` (14) before ``as_of``; also a user
       with no event at all (only a profile record).
    2. ``returning``: the last purchase ended a silence of at least ``churn_days``
       (``last_return_gap_days >= churn_days``: the user had churned) and happened
       at most ``returning_days`` (30) ago. A further purchase makes the user
       ``active``. Needs the field ``last_return_gap_days`` (see
       :func:`last_return_gap_days`); without it no user is ``returning``.
    3. ``active``: silence of at most ``at_risk_days`` (30).
    4. ``at_risk``: silence above ``at_risk_days`` and at most ``churn_days`` (90).
    5. ``churned``: silence above ``churn_days``.

    A user who never bought cannot be ``returning``: that would need the gaps between
    visits, which the portrait does not keep. A visitor who keeps browsing without
    buying stays ``active``; a buyer who keeps browsing but stops buying goes
    ``at_risk`` and then ``churned``.
    """
    return stage_of(
        tenure_days(portrait),
        portrait.days_since_last_purchase,
        portrait.days_since_last_seen,
        portrait.last_return_gap_days,
        config,
    )


def stage_of(
    tenure: float | None,
    since_purchase: float | None,
    since_seen: float | None,
    gap: float | None,
    config: LifecycleConfig = LifecycleConfig(),
) -> str:
    """:func:`lifecycle_stage` from its four figures (days of tenure, of silence since the last
    purchase and since the last event, and the last return gap).

    >>> stage_of(3.0, 3.0, 3.0, None), stage_of(60.0, 45.0, 1.0, None), stage_of(200.0, 10.0, 10.0, 120)
    ('new', 'at_risk', 'returning')
    """
    silence = since_purchase if since_purchase is not None else since_seen
    if silence is None or (tenure is not None and tenure <= config.new_days):
        return "new"
    if (
        since_purchase is not None
        and gap is not None
        and gap >= config.churn_days
        and since_purchase <= config.returning_days
    ):
        return "returning"
    if silence <= config.at_risk_days:
        return "active"
    if silence <= config.churn_days:
        return "at_risk"
    return "churned"
