"""The weekly ledger, visits, same-day decisions, payment methods and shares folded in the stream, against the batch
computation over the raw events (tests/reference.py), in order, out of order and at their bounds."""

from __future__ import annotations

import random

import orjson
import pytest

from online_models.admission import admit_event, fold_event
from online_models.clock import EventClock
from online_models.events import PAYMENT_METHODS, InvalidEvent, parse_event
from online_models.portrait import PortraitConfig, PortraitState, update
from online_models.vocabulary import local_day, week_of_day
from tests.reference import DAY, batch_habits
from tests.unit.portrait_builder import published

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
MINUTE = 60_000
HABIT_FIELDS = ("visits", "visit_views", "browse_depth", "item_purchases", "same_day_purchases", "same_day_share", "shares")


def shop_events(rng: random.Random, users: int, n: int, *, span_days: float, items: int) -> list[dict]:
    """Session-shaped traffic: bursts of events a few minutes apart, items from a catalogue of ``items``."""
    events = []
    clock = {f"u{i}": T0 + rng.randrange(DAY) for i in range(users)}
    last_item: dict[str, str] = {}
    for i in range(n):
        user = f"u{rng.randrange(users)}"
        # mostly within a session, sometimes a long pause (a new visit, another day or week)
        clock[user] += rng.choice((rng.randrange(10_000, 20 * MINUTE), rng.randrange(29 * MINUTE, 31 * MINUTE),
                                   rng.randrange(DAY, int(span_days * DAY / 40))))
        kind = rng.choices(["view", "click", "add_to_cart", "pay", "share", "search", "refund"], weights=[50, 15, 10, 10, 4, 8, 3])[0]
        event = {"event_id": f"e{i}", "user_id": user, "type": kind, "ts": clock[user], "category": "books"}
        if kind in ("view", "click", "add_to_cart", "pay", "share") and rng.random() < 0.9:
            # the item just viewed, mostly, or any item of the catalogue
            recent = kind != "view" and user in last_item and rng.random() < 0.7
            event["item_id"] = last_item[user] if recent else f"i{rng.randrange(items)}"
            if kind == "view":
                last_item[user] = event["item_id"]
        if kind in ("pay", "refund"):
            event["amount"] = round(rng.uniform(1, 300), 2)
        if kind == "pay" and rng.random() < 0.8:
            event["payment_method"] = rng.choice(PAYMENT_METHODS[:5])
        events.append(event)
    return sorted(events, key=lambda e: e["ts"])


def run(events: list[dict], lateness_ms: int, config: PortraitConfig) -> tuple[dict[str, PortraitState], int]:
    """Fold events as the worker does (one partition); the states and the partition's as_of."""
    clock = EventClock(lateness_ms)
    states: dict[str, PortraitState] = {}
    for event in events:
        admitted = admit_event(event["user_id"].encode(), orjson.dumps(event), now_ms=T0 + 10_000 * DAY)
        state = states.setdefault(admitted.user_id, PortraitState(admitted.user_id))
        fold_event(state, admitted, clock=clock, partition=0, config=config)
    return states, clock.as_of(0)


def habits(view: dict) -> dict:
    return {
        **{key: view["funnel"][key] for key in HABIT_FIELDS},
        "weeks": view["weeks"],
        "payment_methods": view["payment_methods"],
        "aov": view["aov"],
    }


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai", "America/New_York"])
def test_in_order_stream_equals_batch(zone):
    config = PortraitConfig(timezone=zone)
    events = shop_events(random.Random(11), users=12, n=4000, span_days=500, items=150)
    states, as_of = run(events, lateness_ms=0, config=config)
    forgetting = 0
    for user, state in states.items():
        mine = [e for e in events if e["user_id"] == user]
        expected = batch_habits(mine, zone)
        streamed = habits(published(state, as_of=as_of, config=config))
        assert streamed == {key: expected[key] for key in streamed}, user
        forgetting += len({e["item_id"] for e in mine if e["type"] == "view" and "item_id" in e}) > config.max_viewed_items
    # the history is long enough for the ledger to drop weeks and the first views to forget items
    dropped = [s for s in states.values() if s.week_numbers[0] > week_of_day(local_day(s.first_seen, zone))]
    assert forgetting and dropped and all(s.week_numbers[-1] - s.week_numbers[0] < config.activity_weeks for s in dropped)
    assert sum(s.same_day_purchases for s in states.values()) > 20


def test_out_of_order_within_lateness_equals_in_order():
    config = PortraitConfig(timezone="Asia/Shanghai")
    rng = random.Random(12)
    # few items per user, so no first view is forgotten: then the order of arrival cannot matter
    events = shop_events(rng, users=10, n=3000, span_days=200, items=40)
    lateness = 3 * 3_600_000
    shuffled = sorted(events, key=lambda e: e["ts"] + rng.random() * lateness)
    assert shuffled != events
    ordered, as_of = run(events, lateness, config)
    late, late_as_of = run(shuffled, lateness, config)
    assert late_as_of == as_of
    for user, state in ordered.items():
        straight = habits(published(state, as_of=as_of, config=config))
        assert habits(published(late[user], as_of=as_of, config=config)) == straight, user
        expected = batch_habits([e for e in events if e["user_id"] == user], "Asia/Shanghai")
        assert straight == {key: expected[key] for key in straight}, user


def fold(state: PortraitState, i: int, ts: int, kind: str = "view", *, watermark: int | None = None, **fields) -> None:
    body = {"event_id": f"e{i}", "user_id": "u1", "type": kind, "ts": ts, **fields}
    if kind == "pay":
        body.setdefault("amount", 10.0)
    update(state, parse_event(orjson.dumps(body)), watermark=ts - 300_000 if watermark is None else watermark, config=PortraitConfig())


def test_a_session_ends_after_thirty_minutes_without_an_event():
    state = PortraitState("u1")
    fold(state, 1, T0)
    fold(state, 2, T0 + 30 * MINUTE - 1)  # just within the gap: the same visit
    fold(state, 3, T0 + 60 * MINUTE - 1)  # exactly a gap later: the next visit
    fold(state, 4, T0 + 61 * MINUTE, "click")
    view = published(state, as_of=T0 + 62 * MINUTE, config=PortraitConfig())["funnel"]
    assert (view["visits"], view["visit_views"], view["browse_depth"]) == (2, 3, 1.5)
    # a late event between two sessions joins them, while they are open
    fold(state, 5, T0 + 45 * MINUTE, "search", watermark=T0 + 40 * MINUTE)
    assert published(state, as_of=T0 + 62 * MINUTE, config=PortraitConfig())["funnel"]["visits"] == 1
    # settled once the watermark is a gap past their end; a session without a view is not a visit
    fold(state, 6, T0 + 200 * MINUTE, "search", watermark=T0 + 200 * MINUTE)
    assert state.session_starts == [T0 + 200 * MINUTE] and (state.visits, state.visit_views) == (1, 3)
    assert published(state, as_of=T0 + 200 * MINUTE, config=PortraitConfig())["funnel"]["visits"] == 1


def test_a_view_that_arrives_after_the_payment_it_preceded_makes_it_a_same_day_decision():
    state = PortraitState("u1")
    fold(state, 1, T0 + 10 * MINUTE, "pay", item_id="a")
    assert state.same_day_purchases == 0
    fold(state, 2, T0 + 5 * MINUTE, "view", item_id="a", watermark=T0)  # late, but before the payment
    assert state.same_day_purchases == 1
    fold(state, 3, T0 - 2 * DAY, "view", item_id="a", watermark=T0 - 2 * DAY)  # earlier still, another day
    assert state.same_day_purchases == 0
    # once the watermark is past the payment, its answer is final
    fold(state, 4, T0 + DAY, "view", item_id="b", watermark=T0 + DAY)
    assert state.pending_decisions == []
    fold(state, 5, T0 + DAY + MINUTE, "pay", item_id="b")
    fold(state, 6, T0 + DAY + 2 * MINUTE, "view", item_id="c")  # a view after the payment does not count
    fold(state, 7, T0 + DAY + 3 * MINUTE, "pay", item_id="c")
    fold(state, 8, T0 + DAY + 4 * MINUTE, "pay", item_id="d")  # never viewed
    funnel = published(state, as_of=T0 + DAY + 5 * MINUTE, config=PortraitConfig())["funnel"]
    assert (funnel["item_purchases"], funnel["same_day_purchases"], funnel["same_day_share"]) == (4, 2, 0.5)


def test_first_views_are_kept_for_the_items_viewed_last():
    config = PortraitConfig(max_viewed_items=3)
    state = PortraitState("u1")
    for i, item in enumerate("abcab"):
        update(state, parse_event(orjson.dumps({"event_id": f"v{i}", "user_id": "u1", "type": "view", "ts": T0 + i * MINUTE, "item_id": item})),
               watermark=0, config=config)
    assert list(state.first_views) == ["c", "a", "b"] and state.first_views["a"] == T0
    update(state, parse_event(orjson.dumps({"event_id": "v9", "user_id": "u1", "type": "view", "ts": T0 + 9 * MINUTE, "item_id": "d"})),
           watermark=0, config=config)
    assert list(state.first_views) == ["a", "b", "d"]


def test_the_ledger_keeps_the_newest_weeks_and_counts_payments_and_shares():
    config = PortraitConfig(activity_weeks=3)
    state = PortraitState("u1")
    for i, (days, kind) in enumerate([(0, "view"), (7, "pay"), (7, "share"), (14, "share"), (28, "pay"), (8, "pay")]):
        body = {"event_id": f"e{i}", "user_id": "u1", "type": kind, "ts": T0 + days * DAY, "amount": 5.0}
        update(state, parse_event(orjson.dumps(body)), watermark=0, config=config)
    weeks = published(state, as_of=T0 + 29 * DAY, config=config)["weeks"]
    # 2024-05-01 is a Wednesday: its week starts on Monday 2024-04-29; the week of day 28 drops the first two
    assert weeks == {"start": ["2024-05-13", "2024-05-27"], "purchases": [0, 1], "spend": [0.0, 5.0], "shares": [1, 0]}
    assert state.purchases == 3  # the payment of a dropped week still counts everywhere else


def test_payment_methods_are_the_contracts_and_counted_from_payments():
    state = PortraitState("u1")
    for i, (kind, method) in enumerate([("order", "alipay"), ("pay", "alipay"), ("pay", "wechat_pay"), ("pay", "alipay"), ("pay", None)]):
        fold(state, i, T0 + i * MINUTE, kind, **({"payment_method": method} if method else {}), amount=3.0)
    assert published(state, as_of=T0 + DAY, config=PortraitConfig())["payment_methods"] == {"alipay": 0.6667, "wechat_pay": 0.3333}
    with pytest.raises(InvalidEvent) as refused:
        parse_event(orjson.dumps({"event_id": "x", "user_id": "u1", "type": "pay", "ts": T0, "amount": 1, "payment_method": "Alipay"}))
    assert refused.value.reason == "invalid_field" and refused.value.detail.startswith("payment_method:")
