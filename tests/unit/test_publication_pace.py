"""The publication's pace: live every interval, seldom while catching up, never more than its share of the time."""

from __future__ import annotations

import pytest

from online_models.publication_pace import PublicationPace


def ticks(pace: PublicationPace, backlog_at, *, until: float, step: float = 0.1, rate: float = 1000.0,
          rendering_s: float = 0.0) -> list[float]:
    """The instants a timer ticking every ``step`` seconds publishes at, the worker applying ``rate`` records a
    second with ``backlog_at(now)`` unread records behind them."""
    published, now = [], 0.0
    while now < until:
        if pace.due(now=now, backlog=backlog_at(now), applied=int(now * rate)):
            published.append(round(now, 3))
            pace.published(now=now + rendering_s, rendering_s=rendering_s)
        now = round(now + step, 3)
    return published


def test_live_it_publishes_at_every_tick():
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
    assert len(ticks(pace, lambda now: 300, until=2.0)) == 20


def test_a_backlog_of_a_few_seconds_of_work_is_still_live():
    # 8,000 unread records at 1,000 a second: 8 s of work, under the 10 s that make a worker one catching up
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
    assert len(ticks(pace, lambda now: 8_000, until=3.0)) == 30


def test_catching_up_it_publishes_every_behind_interval_and_at_once_when_caught_up():
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
    published = ticks(pace, lambda now: 11_000 if now < 12.0 else 0, until=13.0)
    # the first tick publishes (nothing was yet), then every 11 s (the backlog's seconds of work) while behind,
    # then every tick once caught up
    assert published == [0.0, 11.0] + [round(12.0 + i / 10, 3) for i in range(10)]


def test_the_further_behind_the_longer_the_interval_up_to_its_cap():
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0, behind_max_interval_s=30.0)
    # 500,000 unread records at 1,000 a second: 500 s of work, so the cap
    assert ticks(pace, lambda now: 500_000, until=70.0) == [0.0, 30.0, 60.0]
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0, behind_max_interval_s=30.0)
    # the backlog shrinks as the worker catches up: 40 s of work (a 30 s interval), then 15 s from the 20th
    # second (due at once, 20 s after the last), then none from the 40th (every tick)
    backlog = lambda now: 40_000 if now < 20.0 else 15_000 if now < 40.0 else 0  # noqa: E731
    assert ticks(pace, backlog, until=40.2) == [0.0, 20.0, 35.0, 40.0, 40.1]


def test_a_short_behind_interval_is_the_floor():
    # just past the 10 s that make a worker one catching up, it still waits behind_interval_s at least
    pace = PublicationPace(interval_s=0.1, behind_interval_s=15.0, behind_s=10.0, behind_max_interval_s=30.0)
    assert ticks(pace, lambda now: 11_000, until=31.0) == [0.0, 15.0, 30.0]


def test_a_cap_below_the_behind_interval_is_refused():
    with pytest.raises(ValueError, match="behind_max_interval_s"):
        PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_max_interval_s=2.0)


def test_zero_behind_interval_keeps_the_live_pace():
    pace = PublicationPace(interval_s=0.1, behind_interval_s=0.0, behind_s=10.0)
    assert len(ticks(pace, lambda now: 500_000, until=2.0)) == 20
    assert not pace.catching_up(500_000)


def test_with_records_waiting_it_rests_to_keep_to_its_share_of_the_time():
    # rendering takes 0.1 s at each publication: a fifth of the time means resting 0.4 s after each
    # (500 unread records: half a second of work, more than one interval's, under the 10 s of catching up)
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
    published = ticks(pace, lambda now: 500, until=5.0, rendering_s=0.1)
    assert published == [round(i * 0.5, 3) for i in range(10)]


def test_a_worker_keeping_up_publishes_at_every_interval_however_long_it_renders():
    # fewer unread records than one interval's work: the rest would only delay the portraits
    pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
    published = ticks(pace, lambda now: 50, until=2.0, rendering_s=0.05)
    assert len(published) == 20


def test_a_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="share"):
        PublicationPace(interval_s=0.1, share=0.0)


def test_a_publication_cap_below_its_floor_is_refused_by_name():
    from pydantic import ValidationError

    from streams.settings import Settings

    with pytest.raises(ValidationError, match="PORTRAITS_PUBLISH_INTERVAL_BEHIND_MAX \\(2\\) is below PORTRAITS_PUBLISH_INTERVAL_BEHIND \\(5\\)"):
        Settings(publish_interval_behind=5.0, publish_interval_behind_max=2.0)
    assert Settings(publish_interval_behind=0.0, publish_interval_behind_max=0.0).publish_interval_behind_max == 0.0
