"""AARRR, the decision habits and price bands through the real broker, worker and API, equal to the batch
computation over the raw events (tests/reference.py, which shares no code with the product).

The shop keeps its calendar in Asia/Shanghai, so its days and weeks are not UTC's. The models are frozen
(``PORTRAITS_TRAIN_MODELS=false``) at a snapshot whose order values are the buyers' average order values
as the batch computation finds them, so every price band has an exact expectation.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from online_models.population import PopulationModels
from online_models.simulation import ShopSimulator
from streams.producer import make_producer
from tests.integration.conftest import send_history, send_models
from tests.integration.test_group_figures import ratio, settle
from tests.reference import DAY, band_of, batch_aarrr, batch_habits, events_by_user, mid_rank, shop_monday

ZONE = "Asia/Shanghai"
USERS = 45
DAYS = 42  # six weeks: several cohorts (newcomers join part-way), a retention triangle of six rows


@pytest.mark.timeout(900)
def test_aarrr_habits_and_price_bands_equal_a_batch_computation(stack):
    stack.env["PORTRAITS_TRAIN_MODELS"] = "false"
    stack.env["PORTRAITS_TIMEZONE"] = ZONE
    settings = stack.settings()
    now = int(time.time() * 1000)
    simulator = ShopSimulator(n_users=USERS, start_ms=now - (DAYS + 1) * DAY, seed=47)
    events = sorted(simulator.history(DAYS), key=lambda e: e["ts"])
    by_user = events_by_user(events)
    habits = {user: batch_habits(mine, ZONE) for user, mine in by_user.items()}
    population = [h["aov"] for h in habits.values() if h["aov"] is not None]
    snapshot = PopulationModels()
    for aov in population:
        snapshot.order_values.update(aov, now)
    producer = make_producer(settings)
    send_models(producer, settings, snapshot)
    producer.flush()
    producer.close()
    worker = stack.start_product()
    send_history(settings, profiles=simulator.profiles(), events=events)

    client = httpx.Client(base_url=stack.api, timeout=30, headers=stack.auth_headers("test-reader"))
    users = sorted(by_user)
    as_of = settle(client, users, {u: len({e["event_id"] for e in evs}) for u, evs in by_user.items()})
    assert worker.alive(), worker.tail()

    # -- each portrait --------------------------------------------------------------------------------
    for user in users:
        portrait = client.get(f"/v1/users/{user}/portrait").json()
        expected = habits[user]
        assert portrait["timezone"] == ZONE
        assert portrait["weeks"] == expected["weeks"], user
        for key in ("shares", "visits", "visit_views", "browse_depth", "item_purchases", "same_day_purchases", "same_day_share"):
            assert portrait["funnel"][key] == expected[key], (user, key)
        assert portrait["payment_methods"] == expected["payment_methods"], user
        if expected["aov"] is None:
            assert portrait["price_band"] is None, user
        else:
            rank = mid_rank(expected["aov"], population)
            assert portrait["price_band"] == {"band": band_of(rank), "rank": round(rank, 4)}, user
    assert sum(h["same_day_purchases"] for h in habits.values()) > 0 and sum(h["shares"] for h in habits.values()) > 0

    # -- AARRR ----------------------------------------------------------------------------------------
    newest = shop_monday(max(as_of.values()), ZONE)
    first = shop_monday(events[0]["ts"], ZONE)
    for params, (start, last, days) in {
        "": (newest - timedelta(weeks=3), newest, 7),
        f"from={first.isoformat()}&to={(newest - timedelta(days=1)).isoformat()}&activation_days=3": (first, newest - timedelta(weeks=1), 3),
        f"from={(first + timedelta(days=9)).isoformat()}&activation_days=30": (first + timedelta(weeks=1), newest, 30),
    }.items():
        response = client.get(f"/v1/aarrr?{params}")
        assert response.status_code == 200, response.text
        answer = response.json()
        expected = batch_aarrr(events, zone=ZONE, first=start, last=last, newest=newest, activation_days=days)
        assert answer["window"]["start"] == start.isoformat() and answer["window"]["newest_week"] == newest.isoformat()
        assert answer["acquisition"]["new_users"] == expected["new_users"], params
        assert [w["users"] for w in answer["acquisition"]["by_week"]] == expected["new_by_week"], params
        assert answer["activation"]["activated"] == expected["activated"], params
        cohorts = [
            {"week": c["week"], "users": c["users"], "cells": [(x["weeks_after"], x["users"], x["share"]) for x in c["cells"]]}
            for c in answer["retention"]["cohorts"]
        ]
        assert cohorts == expected["cohorts"], params
        revenue = answer["revenue"]
        assert round(revenue["gmv"], 2) == round(expected["gmv"], 2), params
        for key in ("purchases", "active_users", "paying_users", "arpu", "arppu"):
            assert revenue[key] == expected[key], (params, key)
        assert (answer["referral"]["shares"], answer["referral"]["sharing_users"]) == (expected["shares"], expected["sharing_users"])
    whole = client.get(f"/v1/aarrr?from={first.isoformat()}").json()
    assert whole["acquisition"]["new_users"] == USERS and len(whole["retention"]["cohorts"]) >= 6
    assert sum(c["users"] > 0 for c in whole["retention"]["cohorts"]) >= 3  # newcomers make later cohorts
    refused = client.get("/v1/aarrr?from=2026-03-10&to=2026-03-01")
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "from"]
    assert "after to" in refused.json()["detail"][0]["msg"]

    # -- the group's decision habits in the overview ---------------------------------------------------
    got = client.get("/v1/overview").json()["habits"]
    assert got["browse_depth"] == ratio(sum(h["visit_views"] for h in habits.values()), sum(h["visits"] for h in habits.values()))
    assert got["same_day_share"] == ratio(
        sum(h["same_day_purchases"] for h in habits.values()), sum(h["item_purchases"] for h in habits.values())
    )
    assert {row["value"]: row["users"] for row in got["price_bands"]} == dict(
        Counter(band_of(mid_rank(aov, population)) for aov in population)
    )
    assert {row["method"] for row in got["payment_methods"]} == {m for h in habits.values() for m in h["payment_methods"]}
