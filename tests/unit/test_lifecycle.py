"""Lifecycle stages from event-time fields of real portraits."""

from __future__ import annotations

import pytest

from online_models.lifecycle import STAGES, LifecycleConfig, last_return_gap_days, lifecycle_stage, tenure_days
from online_models.portrait_types import portrait_from_json
from tests.unit.portrait_builder import History, as_json

CONFIG = LifecycleConfig()
MINUTE = 1 / 1440
NOW = 200.0


def stage(history: History, as_of_day: float = NOW, **config) -> str:
    return lifecycle_stage(history.portrait(as_of_day=as_of_day), LifecycleConfig(**config) if config else CONFIG)


def old_user() -> History:
    """First seen on day 0, long before ``NOW``."""
    return History().views(day=0, n=3)


def test_new():
    assert stage(History().views(day=NOW - 3, n=5)) == "new"
    assert stage(History().views(day=NOW - 3).pay(day=NOW - 1)) == "new"  # bought: still new
    # first seen exactly 14 days ago (12:00 then, as_of 12:00 now) is new; a minute later it is not
    h = History().views(day=NOW - 14, hour=12)
    assert tenure_days(h.portrait(as_of_day=NOW + 0.5)) == 14.0
    assert stage(h, as_of_day=NOW + 0.5) == "new"
    assert stage(h, as_of_day=NOW + 0.5 + MINUTE) == "active"


def test_no_events_at_all_is_new():
    assert lifecycle_stage(portrait_from_json({"days_since_last_seen": None, "days_since_last_purchase": None}), CONFIG) == "new"
    assert lifecycle_stage(portrait_from_json({}), CONFIG) == "new"


def test_buyers_go_by_last_purchase():
    assert stage(old_user().pay(day=NOW - 10)) == "active"
    assert stage(old_user().pay(day=NOW - 45)) == "at_risk"
    assert stage(old_user().pay(day=NOW - 45).views(day=NOW - 1, n=20)) == "at_risk"  # browsing does not save it
    assert stage(old_user().pay(day=NOW - 100)) == "churned"


def test_boundaries():
    h = old_user().pay(day=100, hour=12, minute=0)
    as_of = 100.5  # the payment's instant
    assert stage(h, as_of + 30) == "active"  # exactly 30 days silent
    assert stage(h, as_of + 30 + MINUTE) == "at_risk"
    assert stage(h, as_of + 90) == "at_risk"  # exactly 90 days
    assert stage(h, as_of + 90 + MINUTE) == "churned"


def test_never_buyers_go_by_last_visit():
    assert stage(old_user().views(day=NOW - 5)) == "active"
    assert stage(old_user().views(day=NOW - 40)) == "at_risk"
    assert stage(old_user().views(day=NOW - 120)) == "churned"


def test_returning():
    h = old_user().pay(day=10).pay(day=NOW - 5)  # silent 185 days, came back 5 days ago
    p = h.portrait(as_of_day=NOW)
    assert p.last_return_gap_days == NOW - 15
    assert lifecycle_stage(p, CONFIG) == "returning"
    assert stage(h, as_of_day=NOW + 25) == "returning"  # 30 days after the comeback
    assert stage(h, as_of_day=NOW + 26) == "at_risk"  # too long ago: an ordinary silence again
    assert stage(h.pay(day=NOW - 2)) == "active"  # bought again: active


def test_returning_needs_a_churn_length_gap():
    assert stage(old_user().pay(day=NOW - 95).pay(day=NOW - 5)) == "returning"  # gap 90 days
    assert stage(old_user().pay(day=NOW - 94).pay(day=NOW - 5)) == "active"  # gap 89 days
    assert stage(old_user().pay(day=NOW - 95).pay(day=NOW - 5), churn_days=120) == "active"


def test_returning_needs_the_field():
    p = as_json(old_user().pay(day=10).pay(day=NOW - 5).portrait(as_of_day=NOW))
    assert lifecycle_stage(portrait_from_json(p), CONFIG) == "returning"
    del p["last_return_gap_days"]  # a portrait of a worker before the field
    assert lifecycle_stage(portrait_from_json(p), CONFIG) == "active"
    p["last_return_gap_days"] = None
    assert lifecycle_stage(portrait_from_json(p), CONFIG) == "active"


def test_never_buyer_cannot_be_returning():
    p = old_user().views(day=NOW - 2).portrait(as_of_day=NOW)
    p.last_return_gap_days = 150  # ignored without purchases
    assert lifecycle_stage(p, CONFIG) == "active"


def test_event_time_only():
    h = old_user().pay(day=50)
    assert [stage(h, as_of_day=d) for d in (60, 100, 160)] == ["active", "at_risk", "churned"]


def test_every_portrait_gets_a_stage():
    stages = set()
    for first in (0, 150, 195):
        for pay in (None, 20, 120, 170, 199):
            h = History().views(day=first)
            if pay is not None and pay >= first:
                h.pay(day=pay)
            if pay == 199:
                h.pay(day=first)
            stages.add(stage(h))
    assert stages <= set(STAGES)
    assert {"new", "active", "at_risk", "churned", "returning"} == stages


def test_last_return_gap_days():
    assert last_return_gap_days([]) is None
    assert last_return_gap_days([19000]) is None
    assert last_return_gap_days([19000, 19010, 19130]) == 120


@pytest.mark.parametrize(
    "kwargs",
    [{"new_days": -1}, {"at_risk_days": 90, "churn_days": 90}, {"returning_days": -5}, {"churn_days": float("nan")}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        LifecycleConfig(**kwargs)
