"""CDNOW through the stream: the (x, t_x, T) and repeat spend the worker gives the fitter reproduce the published
BG/NBD and Gamma-Gamma fits.

Only the CDNOW *summary* is in the repository (``tests/data/cdnow_summary.csv``: per customer
``x``, ``t_x`` and ``T`` in weeks over the 39-week calibration ending 1997-09-30), not the
transaction log. The history streamed here is rebuilt from it: one purchase per customer-day, the
first ``T`` days before the calibration end, the last ``t_x`` days after the first, the other
``x - 1`` spread evenly between (BG/NBD depends on nothing else), each repeat day paying the
customer's mean repeat value ``m`` (``cdnow_summary_spend.csv``; the first day pays 10, which
Gamma-Gamma leaves out). The weeks are given to two decimals, so days are ``round(weeks * 7)``. The events pass the contract, the partition engine
and the trainer's sampling as the worker's would, and the fit is made on what the trainer keeps.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from online_models.bgnbd import BGNBD
from online_models.population import PopulationConfig, PopulationModels
from online_models.processor import EngineConfig
from online_models.replay import replay_history
from online_models.watch import WatchConfig

DAY = 86_400_000
CALIBRATION_END = int(datetime(1997, 9, 30, 12, tzinfo=timezone.utc).timestamp() * 1000)
DATA = Path(__file__).resolve().parents[1] / "data" / "cdnow_summary_spend.csv"
#: Fader, Hardie & Lee (2005), table 1; alpha per week
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
#: Fader, Hardie & Lee (2005), "RFM and CLV", JMR 42(4): Gamma-Gamma on the 946 repeat buyers
PUBLISHED_SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}


def cdnow_history() -> tuple[list[dict], np.ndarray]:
    """Purchase events rebuilt from the summary, and the summary in days (x, t_x, T, m)."""
    rows = np.loadtxt(DATA, delimiter=",", skiprows=1)
    days = np.column_stack([rows[:, 0], np.round(rows[:, 1] * 7), np.round(rows[:, 2] * 7), rows[:, 3]])
    events = []
    for i, (x, t_x, T, m) in enumerate(days):
        first = CALIBRATION_END - int(T) * DAY
        purchase_days = sorted({0, int(t_x), *np.linspace(0, t_x, int(x) + 1).round().astype(int).tolist()})
        assert len(purchase_days) == int(x) + 1, (i, x, t_x)  # one purchase per customer-day
        for d in purchase_days:
            amount = 10.0 if d == 0 else float(m)
            events.append({"event_id": f"c{i}-{d}", "user_id": f"c{i:04d}", "type": "pay", "ts": first + d * DAY, "amount": amount})
    # a visit at the calibration end brings the partition's stream time there, as the next day's traffic would
    events.append({"event_id": "end", "user_id": "visitor", "type": "view", "ts": CALIBRATION_END})
    events.sort(key=lambda e: e["ts"])
    return events, days


@pytest.fixture(scope="module")
def streamed():
    events, days = cdnow_history()
    engine = EngineConfig(watch=WatchConfig(), retention_ms=0, sweep_batch=None, earliest_event_ms=CALIBRATION_END - 400 * DAY)
    # no refits while streaming (they cost time and change nothing of what is kept); one at the end
    models = PopulationModels(PopulationConfig(churn_refit_every=10**9, churn_min_buyers=10**9, churn_fit_sample=10**6))
    result = replay_history(events, engine=engine, models=models)
    return result, days


def test_every_cdnow_buyer_reaches_the_fitter_once_with_their_repeat_purchases(streamed):
    result, days = streamed
    days = days[:, :3]
    assert result.rejected == 0 and result.events == int(days[:, 0].sum()) + len(days) + 1
    kept = result.models.current_purchase_stats()
    assert len(kept) == len(days) == 2357
    by_user = dict(zip(result.models.purchase_sample, kept))
    got = np.array([by_user[f"c{i:04d}"] for i in range(len(days))])
    # Every user once and current: every purchase reaches the trainer (a purchase after the period's
    # sample sends the buyer's statistics again), and every kept age T is carried to the trainer's
    # newest sample, the visit at the calibration end (within the minute the engine rounds to)
    behind = days - got
    assert np.array_equal(got[:, 0], days[:, 0])
    assert np.abs(behind[:, 1]).max() < 1e-6
    assert np.abs(behind[:, 2]).max() <= 1 / 1440 + 1e-9
    assert (got[:, 1] <= got[:, 2] + 1e-9).all()  # each a consistent history at its own instant

def test_the_stream_fit_reproduces_the_published_cdnow_parameters(streamed):
    result, _ = streamed
    models = result.models
    models.config.churn_min_buyers = 50
    models.refit_churn()
    report = models.fit_reports["bgnbd"]
    assert report["in_use"] and report["sound"] and report["estimator"] == "ml" and report["n_users"] == 2357
    fitted = dict(models.bgnbd.params_)
    fitted["alpha"] /= 7  # alpha is a time scale: days -> weeks
    for name, published in PUBLISHED.items():
        assert fitted[name] == pytest.approx(published, rel=0.03), (name, fitted)


def test_the_stream_gives_gamma_gamma_each_repeat_buyers_spend_and_reproduces_the_published_fit(streamed):
    result, days = streamed
    models = result.models
    kept = {user: entry[4] for user, entry in models.purchase_sample.items()}
    expected = {f"c{i:04d}": round(x * m, 2) for i, (x, _, _, m) in enumerate(days)}
    assert kept == pytest.approx(expected, abs=1e-6)  # every repeat day's spend, as the stream saw it
    models.config.churn_min_buyers = 50
    models.refit_churn()
    report = models.fit_reports["gamma_gamma"]
    assert report["in_use"] and report["sound"] and report["n_users"] == 946
    for name, published in PUBLISHED_SPEND.items():
        assert models.gamma_gamma.params_[name] == pytest.approx(published, rel=0.03), (name, models.gamma_gamma)
