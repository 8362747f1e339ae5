"""The publication's timer: its interval runs from one start to the next."""

import asyncio

from streams.cadence import run_every


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def run(interval_s: float, durations: list[float]) -> tuple[list[float], FakeTime]:
    time, starts, left = FakeTime(), [], list(durations)

    async def work():
        starts.append(round(time.now, 6))
        time.now += left.pop(0)

    asyncio.run(run_every(interval_s, work, should_stop=lambda: not left, sleep=time.sleep, clock=time.clock))
    return starts, time


def test_runs_shorter_than_the_interval_start_an_interval_apart():
    starts, time = run(0.1, [0.045, 0.03, 0.0, 0.099])
    assert starts == [0.0, 0.1, 0.2, 0.3]
    assert time.slept == [0.055, 0.07, 0.1, 0.001]


def test_a_run_longer_than_the_interval_is_followed_at_once_without_catching_up_on_missed_starts():
    starts, time = run(0.1, [0.25, 0.02, 0.02])
    assert starts == [0.0, 0.25, 0.35]
    assert time.slept[0] == 0.0  # still a turn for the loop


def test_nothing_runs_once_told_to_stop():
    calls = []

    async def work():
        calls.append(1)

    asyncio.run(run_every(0.1, work, should_stop=lambda: True))
    assert calls == []
