"""GET /v1/aarrr over a store of real portraits equals the batch computation over the raw events (tests/reference.py);
its running counters follow every change of the store; bad windows get a 4xx that says why."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from api import aarrr
from api.indexes import PORTRAITS_SPACE
from api.routers import aarrr as aarrr_router
from tests.reference import batch_aarrr, shop_monday
from tests.unit.shop_history import ZONE, replayed_shop
from tests.unit.test_api_routers import mounted
from tests.unit.test_api_synthetic import auth, make_client, make_store, records


@pytest.fixture(scope="module")
def shop():
    """The raw events, the portraits the worker would publish from them, their as_of."""
    return replayed_shop()[:3]


@pytest.fixture
def client(shop, tmp_path: Path):
    store = make_store(tmp_path, shop[1])
    with mounted(aarrr_router.router, get_store=store) as client:
        yield client
    store.close()


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def assert_equal(answer: dict, expected: dict) -> None:
    assert answer["acquisition"]["new_users"] == expected["new_users"]
    assert [w["users"] for w in answer["acquisition"]["by_week"]] == expected["new_by_week"]
    assert answer["activation"]["new_users"] == expected["new_users"]
    assert answer["activation"]["activated"] == expected["activated"]
    assert answer["activation"]["rate"] == (round(expected["activated"] / expected["new_users"], 4) if expected["new_users"] else None)
    cohorts = [
        {"week": c["week"], "users": c["users"], "cells": [(x["weeks_after"], x["users"], x["share"]) for x in c["cells"]]}
        for c in answer["retention"]["cohorts"]
    ]
    assert cohorts == expected["cohorts"]
    revenue = answer["revenue"]
    assert round(revenue["gmv"], 2) == round(expected["gmv"], 2)
    for key in ("purchases", "active_users", "paying_users", "arpu", "arppu"):
        assert revenue[key] == expected[key], key
    assert answer["referral"]["shares"] == expected["shares"]
    assert answer["referral"]["sharing_users"] == expected["sharing_users"]
    assert answer["referral"]["share_rate"] == (
        round(expected["sharing_users"] / expected["active_users"], 4) if expected["active_users"] else None
    )


def test_the_figures_of_any_window_equal_the_batch_computation(shop, client):
    events, _, as_of = shop
    newest = shop_monday(as_of, ZONE)
    oldest = newest - timedelta(weeks=51)
    windows = [
        (None, None, 7),  # the default: the four weeks up to the newest
        (oldest, newest, 7),  # every week the figures can answer, the long histories' earliest kept ones too
        (date(2026, 1, 1), date(2026, 2, 11), 1),  # the simulated shop's first six weeks, dates inside their weeks
        (date(2026, 1, 7), date(2026, 1, 7), 30),  # one week
        (oldest + timedelta(days=3), oldest + timedelta(weeks=20), 14),
    ]
    for start, end, days in windows:
        params = {"activation_days": days, **({"from": start.isoformat()} if start else {}), **({"to": end.isoformat()} if end else {})}
        response = client.get("/v1/aarrr", params=params, headers=auth())
        assert response.status_code == 200, response.text
        answer = response.json()
        first = monday(start) if start else newest - timedelta(weeks=3)
        last = monday(end) if end else newest
        assert answer["window"] == {
            "start": first.isoformat(), "end": (last + timedelta(days=6)).isoformat(),
            "weeks": (last - first).days // 7 + 1, "newest_week": newest.isoformat(),
        }
        assert_equal(answer, batch_aarrr(events, zone=ZONE, first=first, last=last, newest=newest, activation_days=days))
    # the window of every week holds everyone active in it, the long histories' oldest kept weeks included
    whole = client.get("/v1/aarrr", params={"from": oldest.isoformat()}, headers=auth()).json()
    assert whole["revenue"]["active_users"] == len({e["user_id"] for e in events if shop_monday(e["ts"], ZONE) >= oldest})
    assert whole["acquisition"]["new_users"] > 30 and whole["referral"]["shares"] > 0 and whole["activation"]["activated"] > 0


def test_bad_windows_are_refused_with_the_reason(shop, client):
    newest = shop_monday(shop[2], ZONE)
    too_old = newest - timedelta(weeks=52)

    def refused(params: dict) -> str:
        """The answer's errors as ``parameter: message``: a 422 shaped like every invalid parameter's."""
        response = client.get("/v1/aarrr", params=params, headers=auth())
        assert response.status_code == 422, response.text
        return " ".join(f"{error['loc'][-1]}: {error['msg']}" for error in response.json()["detail"])

    assert "from: from (2026-02-10) is after to" in refused({"from": "2026-02-10", "to": "2026-01-20"})
    assert "from: the window must start" in refused({"from": too_old.isoformat()})
    assert f"from {(newest - timedelta(weeks=51)).isoformat()} on" in refused({"from": too_old.isoformat()})
    assert "activation_days: " in refused({"activation_days": 0})
    assert "activation_days: " in refused({"activation_days": aarrr.MAX_ACTIVATION_DAYS + 1})
    assert "from: Input should be a valid date" in refused({"from": "2026-02-30"})
    assert "from: from (0001-01-01) must lie between 1970-01-01" in refused({"from": "0001-01-01"})
    assert "to: to (9999-12-31) must lie between 1970-01-01" in refused({"to": "9999-12-31"})
    assert "to: a window spans at most 52 weeks" in refused({"from": newest.isoformat(), "to": (newest + timedelta(weeks=52)).isoformat()})
    assert client.get("/v1/aarrr").status_code == 401


def test_an_empty_store_answers_an_empty_window(tmp_path: Path):
    store = make_store(tmp_path)
    with mounted(aarrr_router.router, get_store=store) as client:
        body = client.get("/v1/aarrr", headers=auth()).json()
        assert body["window"] == {"start": None, "end": None, "weeks": 0, "newest_week": None}
        assert body["revenue"]["gmv"] == 0 and body["retention"]["cohorts"] == [] and body["warnings"]
        given = client.get("/v1/aarrr", params={"from": "2026-01-05", "to": "2026-01-18"}, headers=auth()).json()
        assert given["window"]["weeks"] == 2 and given["acquisition"]["new_users"] == 0
    store.close()


def test_the_running_counters_follow_every_change_and_equal_a_rebuild(shop, tmp_path: Path):
    _, portraits, _ = shop
    rng = random.Random(8)
    store = make_store(tmp_path, portraits[: len(portraits) // 2])
    handler = store.handler(PORTRAITS_SPACE)
    current = {p["user_id"]: p for p in portraits[: len(portraits) // 2]}
    # the other half arrives, some users' portraits are replaced by others', some are deleted (an erasure, an expiry)
    store.apply("portraits", PORTRAITS_SPACE, records(portraits[len(portraits) // 2 :], start_offset=100))
    current.update({p["user_id"]: p for p in portraits[len(portraits) // 2 :]})
    replaced = [dict(rng.choice(portraits), user_id=user) for user in rng.sample(sorted(current), 10)]
    store.apply("portraits", PORTRAITS_SPACE, records(replaced, start_offset=200))
    current.update({p["user_id"]: p for p in replaced})
    gone = rng.sample(sorted(current), 7)
    store.apply("portraits", PORTRAITS_SPACE, [(0, 300 + i, user.encode(), None) for i, user in enumerate(gone)])
    for user in gone:
        del current[user]
    expected: dict[str, int] = {}
    for portrait in current.values():
        for key, n in aarrr.contribution(portrait).items():
            expected[key] = expected.get(key, 0) + n
    assert handler.aarrr_counters() == {k: n for k, n in expected.items() if n}
    running = handler.aarrr_counters()
    handler.rebuild(store)
    handler.reload(store)
    assert handler.aarrr_counters() == running
    store.close()


def test_a_portrait_without_the_fields_counts_for_nothing():
    assert aarrr.contribution({"user_id": "u", "weeks": "many", "first_seen": 5}) == {}
    assert aarrr.contribution({"timezone": "Mars/Olympus", "first_seen": "2026-01-01T00:00:00.000Z"}) == {}


def test_users_who_shared_are_an_audience(shop, tmp_path: Path):
    events, portraits, _ = shop
    shares = Counter(e["user_id"] for e in events if e["type"] == "share")
    with make_client(make_store(tmp_path, portraits)) as client:
        body = {"filter": {"behaviour": [{"kind": "performed", "event": "share", "at_least": 2}]}, "limit": 1000}
        answer = client.post("/v1/audiences/query", json=body, headers=auth()).json()
    assert [m["user_id"] for m in answer["users"]] == sorted(user for user, n in shares.items() if n >= 2)
    assert 0 < answer["count"] < len(portraits)
