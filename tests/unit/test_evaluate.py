"""``scripts/evaluate`` on a small shop: what it reports is consistent, and the alerts catch the lapsed.

The evaluation's own seeds (1-3) and the seeds the alert rule was compared on (4-6) are left
out: seed 7 is a shop neither was looked at on.
"""

from __future__ import annotations

import importlib.util
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest


def _script(name: str):
    """A script of ``scripts/`` (no ``.py``) loaded as a module."""
    loader = SourceFileLoader(name, str(Path(__file__).resolve().parents[2] / "scripts" / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


EVALUATE = _script("evaluate")


@pytest.fixture(scope="module")
def small_shop() -> dict:
    return EVALUATE.run(100, 90, 7)


@pytest.mark.slow
def test_a_small_shop_alerts_its_lapsed_valuable_buyers_and_few_others(small_shop):
    r = small_shop
    assert r["targets"] >= 5, "the shop should hold lapsed valuable buyers, so the test covers them"
    assert r["recall"] >= 0.8 and r["precision"] >= 0.8, (r["recall"], r["precision"], r["false_alerts"], r["missed"])
    assert r["lead_median"] > 0  # before 30 days of silence made the lapse obvious


@pytest.mark.slow
def test_every_alert_off_a_lapse_and_every_lapser_missed_is_listed(small_shop):
    r = small_shop
    assert len(r["false_alerts"]) == r["alerts"] - r["true_alerts"]
    assert len(r["missed"]) == r["targets"] - r["caught"]
    for alert in r["false_alerts"]:
        assert alert["lapse_after_days"] is None or alert["lapse_after_days"] >= 0  # never a lapser after the lapse
