"""The check schedule against a naive dict, and when silent users are checked again."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from online_models.schedule import DAY_MS, HOUR_MS, CheckSchedule, next_check_ms

DAY = DAY_MS
HOUR = HOUR_MS


def test_pop_due_in_time_order_each_once():
    schedule = CheckSchedule()
    for user, at in [("a", 30), ("b", 10), ("c", 20), ("d", 40), ("e", 20)]:
        schedule.set(user, at)
    assert schedule.pop_due(5) == []
    assert schedule.pop_due(20) == ["b", "c", "e"]  # ties in user-id order
    assert schedule.pop_due(20) == []
    assert schedule.pop_due(100) == ["a", "d"]
    assert schedule.pop_due(100) == [] and len(schedule) == 0 and schedule.peek() is None


def test_pop_due_limit_leaves_the_rest_due():
    schedule = CheckSchedule()
    for i in range(10):
        schedule.set(f"u{i}", i)
    assert schedule.pop_due(100, limit=3) == ["u0", "u1", "u2"]
    assert schedule.pop_due(100, limit=0) == []
    assert schedule.pop_due(5) == ["u3", "u4", "u5"]
    assert schedule.pop_due(100) == ["u6", "u7", "u8", "u9"]


def test_set_replaces_earlier_entry():
    schedule = CheckSchedule()
    schedule.set("u1", 100)
    schedule.set("u1", 50)
    schedule.set("u1", 300)
    assert len(schedule) == 1 and schedule.get("u1") == 300 and schedule.peek() == 300
    assert schedule.pop_due(299) == []
    assert schedule.pop_due(300) == ["u1"]
    # back to an earlier time after replacements: still comes out once
    schedule.set("u2", 5)
    schedule.set("u2", 9)
    schedule.set("u2", 5)
    assert schedule.pop_due(10) == ["u2"] and schedule.pop_due(10) == []


def test_remove_and_contains():
    schedule = CheckSchedule()
    schedule.set("u1", 10)
    schedule.set("u2", 20)
    assert "u1" in schedule and "nobody" not in schedule
    schedule.remove("u1")
    schedule.remove("nobody")
    assert "u1" not in schedule and len(schedule) == 1 and schedule.get("u1") is None
    assert schedule.peek() == 20
    schedule.set("u2", None)
    assert len(schedule) == 0 and schedule.pop_due(100) == []


def test_user_due_again_after_pop():
    schedule = CheckSchedule()
    schedule.set("u1", 10)
    assert schedule.pop_due(10) == ["u1"]
    schedule.set("u1", 10)
    assert schedule.pop_due(10) == ["u1"]


def test_compaction_keeps_heap_bounded():
    schedule = CheckSchedule(min_compact=64)
    rng = random.Random(7)
    users = [f"u{i}" for i in range(1000)]
    peak = 0
    for _ in range(100_000):
        schedule.set(rng.choice(users), rng.randrange(10**9))
        peak = max(peak, len(schedule._heap))
    assert len(schedule) == 1000
    assert peak <= 2 * 1000
    for user in users[:990]:
        schedule.remove(user)
    assert len(schedule._heap) <= 64
    due = schedule.pop_due(10**9)
    assert sorted(due) == sorted(users[990:])


def test_compaction_preserves_order():
    schedule = CheckSchedule(min_compact=0)
    for i in range(100):
        schedule.set(f"u{i:03d}", 1000 - i)
        schedule.set(f"u{i:03d}", i)
    assert schedule.pop_due(10**6) == [f"u{i:03d}" for i in range(100)]


class ScheduleVsDict(RuleBasedStateMachine):
    """The heap against the obvious dict: every operation agrees."""

    def __init__(self):
        super().__init__()
        self.schedule = CheckSchedule(min_compact=4)
        self.model: dict[str, int] = {}

    users = st.sampled_from([f"u{i}" for i in range(8)])
    times = st.integers(0, 50)

    @rule(user=users, at=times)
    def set(self, user, at):
        self.schedule.set(user, at)
        self.model[user] = at

    @rule(user=users)
    def remove(self, user):
        self.schedule.remove(user)
        self.model.pop(user, None)

    @rule(now=times, limit=st.none() | st.integers(0, 4))
    def pop_due(self, now, limit):
        expected = sorted((at, user) for user, at in self.model.items() if at <= now)
        if limit is not None:
            expected = expected[:limit]
        for _, user in expected:
            del self.model[user]
        assert self.schedule.pop_due(now, limit) == [user for _, user in expected]

    @rule()
    def peek(self):
        assert self.schedule.peek() == min(self.model.values(), default=None)

    @invariant()
    def agrees(self):
        assert len(self.schedule) == len(self.model)
        for user, at in self.model.items():
            assert user in self.schedule and self.schedule.get(user) == at
        assert len(self.schedule._heap) <= max(4, 2 * len(self.model))


TestScheduleVsDict = ScheduleVsDict.TestCase
TestScheduleVsDict.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


# -- next_check_ms ---------------------------------------------------------------


def test_nothing_known_means_no_check():
    assert next_check_ms(None, None, 10 * DAY, None) is None


def test_daily_checks_on_whole_days_since_last_purchase():
    last = 5 * DAY + 1234
    times, now = [], last
    while (nxt := next_check_ms(last, last, now, None)) is not None:
        assert nxt > now
        times.append(nxt)
        now = nxt
    assert times[:3] == [last + DAY, last + 2 * DAY, last + 3 * DAY]
    assert times[-1] == last + 180 * DAY and len(times) == 180


def test_never_buyer_anchors_on_last_visit_and_stops_after_horizon():
    seen = 3 * DAY
    assert next_check_ms(None, seen, seen + 10 * DAY + 1, None) == seen + 11 * DAY
    assert next_check_ms(None, seen, seen + 180 * DAY, None) is None
    assert next_check_ms(None, seen, seen + 400 * DAY, None) is None


def test_finer_steps_around_the_usual_gap():
    gap = 20 * DAY
    assert next_check_ms(0, 0, 5 * DAY, gap) == 6 * DAY           # well before the gap: daily
    assert next_check_ms(0, 0, 10 * DAY, gap) == 10 * DAY + 6 * HOUR  # from half the gap
    assert next_check_ms(0, 0, 29 * DAY, gap) == 29 * DAY + 6 * HOUR
    assert next_check_ms(0, 0, 30 * DAY, gap) == 31 * DAY         # past 1.5 gaps: daily again


def test_recent_visit_extends_the_horizon_of_a_buyer():
    # bought on day 0, still browsing on day 100: followed until day 280
    assert next_check_ms(0, 100 * DAY, 200 * DAY, None) == 201 * DAY
    assert next_check_ms(0, 100 * DAY, 280 * DAY, None) is None


def test_long_gap_buyer_followed_to_twice_the_gap():
    gap = 150 * DAY
    assert next_check_ms(0, 0, 250 * DAY, gap) == 251 * DAY
    assert next_check_ms(0, 0, 300 * DAY - 1, gap) == 300 * DAY
    assert next_check_ms(0, 0, 300 * DAY, gap) is None


def test_now_before_last_event():
    # the watermark trails the latest event: the first check is the event instant itself
    assert next_check_ms(10 * DAY, 10 * DAY, 10 * DAY - 1000, None) == 10 * DAY


def test_bad_steps_rejected():
    with pytest.raises(ValueError):
        next_check_ms(0, 0, 0, None, step_ms=0)


_TIMES = st.none() | st.integers(0, 400 * DAY)


@settings(max_examples=300, deadline=None)
@given(_TIMES, _TIMES, st.integers(0, 800 * DAY), st.none() | st.integers(-DAY, 300 * DAY))
def test_next_check_is_soon_after_now(last_purchase, last_seen, now, gap):
    nxt = next_check_ms(last_purchase, last_seen, now, gap)
    if nxt is not None:
        assert now < nxt <= now + DAY
