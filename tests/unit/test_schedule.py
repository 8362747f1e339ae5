"""The check schedule against a naive dict, and how long silent users are followed."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from online_models.schedule import DAY_MS, CheckSchedule, follow_until_ms

DAY = DAY_MS


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


# -- follow_until_ms ---------------------------------------------------------------


def test_nothing_known_means_no_following():
    assert follow_until_ms(None, None, None) is None


def test_followed_for_the_horizon_after_the_last_event():
    seen = 3 * DAY + 1234
    assert follow_until_ms(None, seen, None) == seen + 180 * DAY
    assert follow_until_ms(None, seen, None, horizon_ms=10 * DAY) == seen + 10 * DAY


def test_recent_visit_extends_the_following_of_a_buyer():
    # bought on day 0, still browsing on day 100: followed until day 280
    assert follow_until_ms(0, 100 * DAY, None) == 280 * DAY


def test_long_gap_buyer_followed_to_twice_the_gap():
    assert follow_until_ms(0, 0, 150 * DAY) == 300 * DAY
    assert follow_until_ms(0, 0, 20 * DAY) == 180 * DAY
    assert follow_until_ms(0, 0, -DAY) == 180 * DAY  # a nonsense gap changes nothing


_TIMES = st.none() | st.integers(0, 400 * DAY)


@settings(max_examples=300, deadline=None)
@given(_TIMES, _TIMES, st.none() | st.integers(-DAY, 300 * DAY))
def test_following_ends_after_the_last_event(last_purchase, last_seen, gap):
    end = follow_until_ms(last_purchase, last_seen, gap)
    known = [t for t in (last_purchase, last_seen) if t is not None]
    if not known:
        assert end is None
    else:
        assert end >= max(known) + 180 * DAY
