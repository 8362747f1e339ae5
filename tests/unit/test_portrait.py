"""The pure portrait update against the independent batch computation."""

from __future__ import annotations

import random

import orjson
import pytest

from online_models.admission import admit_event, fold_event
from online_models.clock import EventClock, ceil_minute
from online_models.events import LATE_EVENT, InvalidEvent
from online_models.portrait import PortraitConfig, PortraitState, update
from tests.reference import DAY, batch_portrait, parse_iso
from tests.unit.portrait_builder import published

CONFIG = PortraitConfig()
T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
CATEGORIES = ["snacks", "beauty", "books", "toys", "home"]


def random_events(rng: random.Random, users: int, n: int, span_days: float = 120) -> list[dict]:
    events = []
    for i in range(n):
        kind = rng.choices(
            ["view", "search", "click", "add_to_cart", "favorite", "order", "pay", "refund", "review"],
            weights=[40, 8, 15, 10, 5, 5, 8, 2, 2],
        )[0]
        event = {
            "event_id": f"e{i}",
            "user_id": f"u{rng.randrange(users)}",
            "type": kind,
            "ts": T0 + int(rng.random() * span_days * DAY),
            "category": rng.choice(CATEGORIES),
            "device": rng.choice(["ios", "android", "pc"]),
        }
        if kind in ("pay", "refund"):
            event["amount"] = round(rng.uniform(1, 500), 2)
            event["promo"] = rng.random() < 0.3
        events.append(event)
    return events


def run_stream(events: list[dict], lateness_ms: int) -> tuple[dict[str, PortraitState], EventClock, list[str]]:
    """Feed events as the worker does (one partition); return states, clock and rejections."""
    clock = EventClock(lateness_ms)
    states: dict[str, PortraitState] = {}
    rejected = []
    for event in events:
        try:
            admitted = admit_event(event["user_id"].encode(), orjson.dumps(event), now_ms=T0 + 1000 * DAY)
            state = states.get(admitted.user_id) or PortraitState(admitted.user_id)
            fold_event(state, admitted, clock=clock, partition=0, config=CONFIG)
            states[admitted.user_id] = state
        except InvalidEvent as error:
            rejected.append(error.reason)
    return states, clock, rejected


def assert_matches_batch(view: dict, events: list[dict]) -> None:
    as_of = parse_iso(view["as_of"])
    expected = batch_portrait(events, as_of)
    assert parse_iso(view["first_seen"]) == expected["first_seen"]
    assert parse_iso(view["last_seen"]) == expected["last_seen"]
    assert parse_iso(view["last_purchase"]) == expected["last_purchase"]
    for key, value in expected["lifetime"].items():
        assert view["lifetime"][key] == value, key
    assert view["windows"] == expected["windows"]
    assert view["active_hours"] == expected["active_hours"]
    assert view["weekdays"] == expected["weekdays"]
    for key, value in expected["funnel"].items():
        assert view["funnel"][key] == value, key
    top = sorted(expected["category_scores"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert [c["category"] for c in view["top_categories"]] == [name for name, _ in top]
    for got, (_, score) in zip(view["top_categories"], top):
        assert got["score"] == pytest.approx(score, abs=1e-4)


def test_in_order_stream_equals_batch():
    events = sorted(random_events(random.Random(1), users=20, n=3000), key=lambda e: e["ts"])
    states, clock, rejected = run_stream(events, lateness_ms=0)
    assert rejected == []
    for user_id, state in states.items():
        view = published(state, as_of=clock.as_of(0), config=CONFIG)
        assert_matches_batch(view, [e for e in events if e["user_id"] == user_id])


def test_out_of_order_within_lateness_equals_in_order():
    rng = random.Random(2)
    events = sorted(random_events(rng, users=15, n=2000), key=lambda e: e["ts"])
    lateness = 6 * 3_600_000
    # displace events by up to the lateness: still admissible, arrive out of order
    shuffled = sorted(events, key=lambda e: e["ts"] + rng.random() * lateness)
    assert shuffled != events
    ordered_states, ordered_clock, _ = run_stream(events, lateness)
    shuffled_states, shuffled_clock, rejected = run_stream(shuffled, lateness)
    assert rejected == []
    as_of = ordered_clock.as_of(0)
    assert shuffled_clock.as_of(0) == as_of
    for user_id, state in ordered_states.items():
        a = published(state, as_of=as_of, config=CONFIG)
        b = published(shuffled_states[user_id], as_of=as_of, config=CONFIG)
        for view in (a, b):
            view["top_categories"] = [(c["category"], round(c["score"], 3)) for c in view["top_categories"]]
        assert a == b
        assert_matches_batch(published(shuffled_states[user_id], as_of=as_of, config=CONFIG), [e for e in events if e["user_id"] == user_id])


def test_redelivered_events_are_not_counted_twice():
    events = sorted(random_events(random.Random(3), users=5, n=500), key=lambda e: e["ts"])
    redelivered = []
    for i, event in enumerate(events):
        redelivered.append(event)
        if i % 7 == 0:
            redelivered.append(dict(event))  # an at-least-once redelivery
    # redeliveries come long after the original: older than the watermark, yet recognised
    recent = [e for e in events if e["ts"] > events[-1]["ts"] - 20 * 3_600_000]
    assert len(recent) >= 2
    redelivered.extend(dict(e) for e in recent)
    states_once, clock, _ = run_stream(events, lateness_ms=3_600_000)
    states_twice, _, rejected = run_stream(redelivered, lateness_ms=3_600_000)
    assert rejected == []
    for user_id, state in states_once.items():
        assert published(states_twice[user_id], as_of=clock.as_of(0), config=CONFIG) == published(
            state, as_of=clock.as_of(0), config=CONFIG
        )
    assert update(states_once["u0"], _event(events, "u0"), watermark=0, config=CONFIG) is False


def _event(events, user_id):
    from online_models.events import parse_event

    return parse_event(orjson.dumps([e for e in events if e["user_id"] == user_id][-1]))


def test_event_older_than_watermark_is_rejected_as_late():
    base = {"user_id": "u1", "type": "view"}
    events = [
        {**base, "event_id": "a", "ts": T0 + DAY},
        {**base, "event_id": "b", "ts": T0 + DAY - 30_000},  # within 1 minute lateness
        {**base, "event_id": "c", "ts": T0 + DAY - 120_000},  # too late
    ]
    states, _, rejected = run_stream(events, lateness_ms=60_000)
    assert rejected == [LATE_EVENT]
    assert states["u1"].events == 2


def test_windows_slide_with_as_of():
    events = [
        {"event_id": "1", "user_id": "u", "type": "pay", "ts": T0, "amount": 10},
        {"event_id": "2", "user_id": "u", "type": "pay", "ts": T0 + 20 * DAY, "amount": 5.55},
    ]
    states, _, _ = run_stream(events, lateness_ms=0)
    later = ceil_minute(T0 + 35 * DAY)
    view = published(states["u"], as_of=later, config=CONFIG)
    assert view["windows"]["7d"] == {"events": 0, "purchases": 0, "spend": 0.0}
    assert view["windows"]["30d"] == {"events": 1, "purchases": 1, "spend": 5.55}
    assert view["windows"]["90d"] == {"events": 2, "purchases": 2, "spend": 15.55}
    assert view["aov"] == 7.78
    assert view["days_since_last_purchase"] == pytest.approx(15.0)


def test_abandoned_carts_settle_in_event_time():
    hour = 3_600_000
    events = [
        {"event_id": "1", "user_id": "u", "type": "add_to_cart", "ts": T0},
        {"event_id": "2", "user_id": "u", "type": "add_to_cart", "ts": T0 + 2 * hour},
        {"event_id": "3", "user_id": "u", "type": "pay", "ts": T0 + 25 * hour, "amount": 3},  # buys cart 2 only
        {"event_id": "4", "user_id": "u", "type": "view", "ts": T0 + 60 * hour},
    ]
    states, clock, _ = run_stream(events, lateness_ms=hour)
    view = published(states["u"], as_of=clock.as_of(0), config=CONFIG)
    assert view["funnel"]["abandoned_carts"] == 1
    assert view["funnel"]["cart_to_purchase"] == 0.5
    assert parse_iso(view["funnel"]["last_abandoned_cart"]) == T0


def test_the_newest_abandoned_cart_counts_before_the_watermark_settles_it():
    hour = 3_600_000
    events = [
        {"event_id": "1", "user_id": "u", "type": "add_to_cart", "ts": T0},
        {"event_id": "2", "user_id": "u", "type": "add_to_cart", "ts": T0 + 30 * hour},
        {"event_id": "3", "user_id": "u", "type": "view", "ts": T0 + 40 * hour},
    ]
    states, clock, _ = run_stream(events, lateness_ms=hour)
    state = states["u"]
    assert state.last_abandoned_cart == T0 and state.open_carts == [T0 + 30 * hour]  # settled: only the first

    def newest(as_of: int) -> int | None:
        return parse_iso(published(state, as_of=as_of, config=CONFIG)["funnel"]["last_abandoned_cart"])

    assert newest(T0 + 40 * hour) == T0  # the second cart is 10 hours old: not abandoned yet
    assert newest(T0 + 54 * hour) == T0 + 30 * hour  # a day without payment: abandoned, not yet settled


def test_state_round_trips_through_bytes():
    events = sorted(random_events(random.Random(4), users=3, n=300), key=lambda e: e["ts"])
    states, clock, _ = run_stream(events, lateness_ms=0)
    for state in states.values():
        again = PortraitState.from_bytes(state.to_bytes())
        assert published(again, as_of=clock.as_of(0), config=CONFIG) == published(state, as_of=clock.as_of(0), config=CONFIG)


def test_local_time_zone_shifts_active_hours():
    config = PortraitConfig(timezone="Asia/Shanghai")
    state = PortraitState("u")
    from online_models.events import parse_event

    update(state, parse_event(b'{"event_id":"1","user_id":"u","type":"view","ts":"2024-05-01T23:30:00+08:00"}'), watermark=0, config=config)
    view = published(state, as_of=None, config=config)
    assert view["peak_hour"] == 23
    assert view["weekdays"][2] == 1  # a Wednesday in Shanghai


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
def test_purchase_days_are_the_shops_calendar_days(zone):
    """Two payments an hour apart around local midnight are two purchase days; the first day's spend is the local day's."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from online_models.events import parse_event
    from online_models.portrait import repeat_spend_cents

    config = PortraitConfig(timezone=zone)
    state = PortraitState("u")
    stamps = ["2024-05-01T23:10:00", "2024-05-01T23:50:00", "2024-05-02T00:20:00", "2024-05-03T12:00:00"]
    instants = [int(datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000) for s in stamps]
    for i, ts in enumerate(instants):
        event = orjson.dumps({"event_id": str(i), "user_id": "u", "type": "pay", "ts": ts, "amount": 10.0 * (i + 1)})
        update(state, parse_event(event), watermark=0, config=config)
    local_days = sorted({datetime.fromtimestamp(ts / 1000, ZoneInfo(zone)).date() for ts in instants})
    view = published(state, as_of=None, config=config)
    assert view["purchase_days"] == len(local_days) == 3
    assert view["last_return_gap_days"] == (local_days[-1] - local_days[-2]).days == 1
    assert repeat_spend_cents(state) == (30 + 40) * 100  # the first local day held the payments of 10 and 20
