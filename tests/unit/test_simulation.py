"""Unit tests for the pure traffic simulator (no Kafka, no network)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter, defaultdict

import pytest

from online_models import events as contract
from online_models.events import EVENT_TYPES, Event, InvalidEvent, parse_event, parse_profile
from online_models.simulation import (
    ARCHETYPES,
    CATALOGUE,
    COMPANIONS,
    CATEGORIES,
    DAY_MS,
    ShopSimulator,
    SimulatedUser,
    bad_events,
    events_per_user_per_day,
)

START = 1_717_171_200_000  # 2024-06-01 00:00 +08:00, a Saturday
DAYS = 10
NOW = START + 400 * DAY_MS  # a wall clock well after the history


def local_hour(ts: int, tz: int = 8) -> int:
    return (ts + tz * 3_600_000) // 3_600_000 % 24


def local_weekday(ts: int, tz: int = 8) -> int:  # Monday = 0
    return ((ts + tz * 3_600_000) // DAY_MS + 3) % 7


@pytest.fixture(scope="module")
def sim() -> ShopSimulator:
    s = ShopSimulator(n_users=200, start_ms=START, seed=42)
    s.events = list(s.history(DAYS))
    return s


@pytest.fixture(scope="module")
def by_user(sim) -> dict[str, list[dict]]:
    out = defaultdict(list)
    for e in sim.events:
        out[e["user_id"]].append(e)
    return out


@pytest.fixture(scope="module")
def by_archetype(sim) -> dict[str, list[dict]]:
    truth = sim.ground_truth()
    out = defaultdict(list)
    for e in sim.events:
        out[truth[e["user_id"]]["archetype"]].append(e)
    return out


def test_population_and_truth(sim):
    assert len(sim.users) == 200 and all(isinstance(u, SimulatedUser) for u in sim.users)
    assert len({u.user_id for u in sim.users}) == 200
    assert {u.archetype for u in sim.users} == set(ARCHETYPES)
    truth = sim.ground_truth()
    assert set(truth) == {u.user_id for u in sim.users}
    assert all({"archetype", "lapse_at_ms"} <= set(t) for t in truth.values())


def test_volume_and_window(sim):
    n = len(sim.events)
    assert 5 * 200 * DAYS <= n <= 20 * 200 * DAYS
    assert all(START <= e["ts"] < START + DAYS * DAY_MS for e in sim.events)


def test_global_order_is_non_decreasing(sim):
    ts = [e["ts"] for e in sim.events]
    assert ts == sorted(ts)


def test_deterministic_by_seed():
    a = list(ShopSimulator(30, START, seed=5).history(3))
    b = list(ShopSimulator(30, START, seed=5).history(3))
    c = list(ShopSimulator(30, START, seed=6).history(3))
    assert a == b
    assert a != c
    assert ShopSimulator(30, START, seed=5).profiles() == ShopSimulator(30, START, seed=5).profiles()


def test_history_is_lazy():
    stream = ShopSimulator(1_000, START, seed=1).history(365)  # ~4M events if built eagerly
    first = list(itertools.islice(stream, 20))
    assert len(first) == 20 and first[0]["ts"] >= START


def test_every_event_passes_the_contract(sim):
    fields = set(Event.model_fields)
    for e in sim.events:
        assert set(e) <= fields, set(e) - fields
        parsed = parse_event(json.dumps(e, ensure_ascii=False).encode(), now_ms=NOW)
        assert parsed.type in EVENT_TYPES
        assert isinstance(e["ts"], int)
    assert len({e["event_id"] for e in sim.events}) == len(sim.events)
    assert {e["type"] for e in sim.events} == set(EVENT_TYPES)


def test_items_come_from_the_catalogue(sim):
    items = {item for pool in CATALOGUE.values() for item, _ in pool}
    assert len(CATEGORIES) == 15
    for e in sim.events:
        if "item_id" in e:
            assert e["item_id"] in items and e["category"] in CATEGORIES
        if "category" in e:
            assert e["category"] in CATEGORIES


def test_funnel_consistency(by_user):
    for uid, events in by_user.items():
        assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
        orders, paid = {}, {}  # by order line: (order id, item)
        for e in events:
            line = (e.get("order_id"), e.get("item_id"))
            if e["type"] == "order":
                orders[line] = e
            elif e["type"] == "pay":
                order = orders[line]  # an order came first
                assert order["amount"] == e["amount"]
                assert e["amount"] == round(e["price"] * e["quantity"], 2) > 0
                paid[line] = e
            elif e["type"] in ("refund", "review"):
                assert line in paid and e["ts"] >= paid[line]["ts"] + DAY_MS
                if e["type"] == "refund":
                    assert 0 < e["amount"] <= paid[line]["amount"]
                else:
                    assert 1 <= e["rating"] <= 5 and e.get("text", "x")
            if "amount" in e:
                assert round(e["amount"], 2) == e["amount"]


def test_sessions_are_short(by_user):
    spans = defaultdict(list)
    for events in by_user.values():
        for e in events:
            if "session_id" in e:
                spans[e["session_id"]].append(e["ts"])
    assert len(spans) > 1000
    for ts in spans.values():
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        assert all(0 < g < 30 * 60_000 for g in gaps)
    assert sorted(max(t) - min(t) for t in spans.values())[len(spans) // 2] < 15 * 60_000


def test_lapsers_go_silent(sim, by_user):
    end = START + DAYS * DAY_MS
    lapsed = [u for u in sim.users if u.lapse_at_ms is not None]
    assert {u.archetype for u in lapsed} >= {"lapser"}
    for u in sim.users:
        if u.archetype == "lapser":
            assert START + 0.3 * DAYS * DAY_MS <= u.lapse_at_ms <= START + 0.7 * DAYS * DAY_MS
        if u.lapse_at_ms is not None:
            assert all(e["ts"] <= u.lapse_at_ms for e in by_user[u.user_id])
        else:
            assert u.archetype not in ("lapser",)
    # Before lapsing they were real customers.
    lapsers = [u for u in sim.users if u.archetype == "lapser"]
    buyers = sum(any(e["type"] == "pay" for e in by_user[u.user_id]) for u in lapsers)
    assert buyers >= 0.8 * len(lapsers)
    assert all(u.lapse_at_ms < end for u in lapsed)


def test_horizon_follows_last_history():
    s = ShopSimulator(40, START, seed=3, horizon_days=60)
    before = {u.user_id: u.lapse_at_ms for u in s.users if u.archetype == "lapser"}
    assert all(START + 18 * DAY_MS <= t <= START + 42 * DAY_MS for t in before.values())
    events = list(s.history(5))
    for u in s.users:
        if u.archetype == "lapser":
            assert START + 1.5 * DAY_MS <= u.lapse_at_ms <= START + 3.5 * DAY_MS
            assert all(e["ts"] <= u.lapse_at_ms for e in events if e["user_id"] == u.user_id)


def test_newcomers_start_late(sim, by_user):
    newcomers = [u for u in sim.users if u.archetype == "newcomer"]
    assert newcomers
    for u in newcomers:
        assert u.joined_at_ms is not None and u.joined_at_ms > START
        assert all(e["ts"] >= u.joined_at_ms for e in by_user[u.user_id])


def test_night_owls_are_active_at_night(by_archetype):
    def night_share(events):
        return sum(local_hour(e["ts"]) in (22, 23, 0, 1) for e in events) / len(events)

    assert night_share(by_archetype["night_owl"]) > 0.65
    for name in ("weekend_shopper", "loyal_repeat", "browser"):
        assert night_share(by_archetype[name]) < 0.3
    snacks = Counter(e["category"] for e in by_archetype["night_owl"] if e["type"] == "view")
    assert {c for c, _ in snacks.most_common(3)} & {"snacks", "beauty", "fresh_food"}


def test_weekend_shoppers_shop_on_weekends(by_archetype):
    def weekend_share(events):
        return sum(local_weekday(e["ts"]) >= 5 for e in events) / len(events)

    # 10 days from a Saturday hold 4 weekend days: uniform activity would give ~0.4.
    assert weekend_share(by_archetype["weekend_shopper"]) > 0.75
    assert weekend_share(by_archetype["loyal_repeat"]) < 0.55


def test_promo_hunters_buy_on_promotion(sim, by_archetype):
    def promo_pay_share(events):
        pays = [e for e in events if e["type"] == "pay"]
        return sum(e["promo"] for e in pays) / len(pays)

    assert promo_pay_share(by_archetype["promo_hunter"]) > 0.75
    for name in ("night_owl", "loyal_repeat", "weekend_shopper"):
        assert promo_pay_share(by_archetype[name]) < 0.45
    hunters = by_archetype["promo_hunter"]
    on_promo_days = sum(sim.is_promo_day(e["ts"]) for e in hunters) / len(hunters)
    promo_days = sum(sim.is_promo_day(START + d * DAY_MS) for d in range(DAYS))
    assert 0 < promo_days < DAYS and on_promo_days > 2 * promo_days / DAYS


def test_browsers_never_pay_and_loyal_spend_most(sim, by_archetype):
    counts = Counter(u.archetype for u in sim.users)
    browse = Counter(e["type"] for e in by_archetype["browser"])
    assert browse["pay"] == browse["order"] == 0
    assert browse["view"] / counts["browser"] > max(
        Counter(e["type"] for e in by_archetype[a])["view"] / counts[a] for a in ARCHETYPES if a != "browser"
    )

    def pays(*names):
        return [e["amount"] for name in names for e in by_archetype[name] if e["type"] == "pay"]

    others = ("night_owl", "weekend_shopper", "promo_hunter", "newcomer")
    loyal = pays("loyal_repeat")
    for name in others:  # more purchases and more money per user than any other group
        assert len(loyal) / counts["loyal_repeat"] > len(pays(name)) / counts[name]
        assert sum(loyal) / counts["loyal_repeat"] > sum(pays(name)) / counts[name]
    assert sum(loyal) / len(loyal) > 1.3 * sum(pays(*others)) / len(pays(*others))  # order value


def test_devices_and_channels(sim):
    devices = Counter(e.get("device") for e in sim.events)
    assert set(devices) <= {"ios", "android", "pc", "mini_program"}
    mobile = 1 - devices["pc"] / sum(devices.values())
    assert mobile > 0.8
    assert all(e.get("channel") for e in sim.events if "session_id" in e)


def test_profiles(sim):
    profiles = sim.profiles()
    assert [p["user_id"] for p in profiles] == [u.user_id for u in sim.users]
    for p in profiles:
        parsed = parse_profile(json.dumps(p, ensure_ascii=False))
        assert parsed.ts == START and 1 <= p["city_tier"] <= 5 and 10 <= p["age"] <= 70
        assert p["region"] and p["member_level"]
    regions = Counter(p["region"] for p in profiles)
    assert {"Guangdong", "Zhejiang"} <= set(regions)


def test_mix_override_and_validation():
    s = ShopSimulator(10, START, seed=1, mix={"browser": 1.0}, user_prefix="b")
    assert {u.archetype for u in s.users} == {"browser"}
    assert all(u.user_id.startswith("b") for u in s.users)
    with pytest.raises(ValueError):
        ShopSimulator(10, START, mix={"vampire": 1.0})


def test_shop_timezone_moves_habits():
    s = ShopSimulator(20, START, seed=2, tz_offset_hours=0, mix={"night_owl": 1.0})
    events = list(s.history(4))
    assert sum(local_hour(e["ts"], tz=0) in (22, 23, 0, 1) for e in events) / len(events) > 0.65


def test_events_per_user_per_day_is_in_range():
    for name in ARCHETYPES:
        assert 3 <= events_per_user_per_day(name, days=10, users=30) <= 25


def test_bad_events_get_the_expected_reason():
    records = bad_events(random.Random(9), 60, base_ts_ms=NOW)
    assert len(records) == 60
    reasons = Counter()
    for key, raw, expected in records:
        assert key is None or isinstance(key, bytes)
        assert isinstance(raw, bytes)
        with pytest.raises(InvalidEvent) as caught:
            parse_event(raw, now_ms=NOW)
        assert caught.value.reason == expected, (raw, caught.value)
        reasons[expected] += 1
    assert set(reasons) == {
        contract.MALFORMED_JSON, contract.NOT_AN_OBJECT, contract.MISSING_FIELD, contract.INVALID_FIELD,
        contract.UNKNOWN_TYPE, contract.NEGATIVE_AMOUNT, contract.FUTURE_TIMESTAMP, contract.MISSING_AMOUNT,
    }
    assert any(b"\xff" in raw for _, raw, _ in records)  # invalid UTF-8 is among them
    assert bad_events(random.Random(9), 60, base_ts_ms=NOW) == records


def test_a_sessions_bought_lines_make_one_order(by_user):
    """Every paid line of an order comes from one session, and some orders hold several lines."""
    sessions, lines = defaultdict(set), Counter()
    for events in by_user.values():
        for e in events:
            if e["type"] == "pay":
                sessions[e["order_id"]].add(e["session_id"])
                lines[e["order_id"]] += 1
    assert all(len(s) == 1 for s in sessions.values())
    assert max(lines.values()) >= 3 and sum(n > 1 for n in lines.values()) > 0.1 * len(lines)


def test_companions_add_complementary_lines_and_change_nothing_else():
    plain = list(ShopSimulator(60, START, seed=8).history(DAYS))
    with_companions = list(ShopSimulator(60, START, seed=8, companions=True).history(DAYS))
    added = [e for e in with_companions if e["event_id"] not in {p["event_id"] for p in plain}]
    assert [e for e in with_companions if e not in added] == plain
    assert added and all(e["event_id"].rsplit("c", 1)[1] in "0123" for e in added)
    paid = {(e["user_id"], e["order_id"], e["category"]) for e in with_companions if e["type"] == "pay"}
    triggers = {companion: cat for cat, (companion, _) in COMPANIONS.items()}
    for e in added:
        if e["type"] == "pay":  # in the order of a paid line of the category it complements
            assert e["category"] in triggers
            assert any((e["user_id"], e["order_id"], cat) in paid for cat, (comp, _) in COMPANIONS.items() if comp == e["category"])
    ts = [e["ts"] for e in with_companions]
    assert ts == sorted(ts)
    assert len({e["event_id"] for e in with_companions}) == len(with_companions)
    for e in added:
        parse_event(json.dumps(e).encode(), now_ms=NOW)
