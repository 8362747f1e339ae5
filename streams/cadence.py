"""A timer whose interval runs from one start to the next.

Faust's ``app.timer`` (mode's ``Timer``) sleeps its interval after each run, so a callback that
takes 45 ms on a 100 ms timer runs every 145 ms. The publication's interval is the most a changed
portrait waits for its turn, so :func:`run_every` sleeps only what is left of the interval after a
run, and starts the next run at once (after yielding to the loop) when a run took longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def run_every(
    interval_s: float,
    fun: Callable[[], Awaitable[None]],
    *,
    should_stop: Callable[[], bool],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Await ``fun()`` every ``interval_s`` seconds, start to start, until ``should_stop()``.

    >>> starts, now = [], [0.0]
    >>> async def work():  # 0.04 s of work on a fake clock
    ...     starts.append(round(now[0], 2)); now[0] += 0.04
    >>> async def sleep(seconds):
    ...     now[0] += seconds
    >>> asyncio.run(run_every(0.1, work, should_stop=lambda: len(starts) == 3, sleep=sleep, clock=lambda: now[0]))
    >>> starts
    [0.0, 0.1, 0.2]
    """
    while not should_stop():
        started = clock()
        await fun()
        await sleep(max(0.0, interval_s - (clock() - started)))
