"""When a worker's engines publish what changed: often while live, seldom while catching up.

A publication renders every state changed since the last one, once. Live, it runs
every ``interval_s`` so a change reaches the portraits topic within a fraction of a
second. While the worker works through a backlog, a state published now is
superseded by the records still queued behind it, so each publication in between
is work nobody reads: then it runs only every ``behind_interval_s`` or, the further
behind, every as many seconds as its unread records would take it (at most
``behind_max_interval_s``, Kafka Streams' default commit interval), and the states
changed meanwhile are rendered once instead of once per interval (Kafka Streams'
record cache flushed on its commit interval does the same). A portrait published
then is already that many seconds behind, so the pace at most doubles its delay;
once the worker is caught up, the next tick publishes. The worker counts as
catching up when its unread input records would take it more than ``behind_s``
seconds at the rate it has been applying records lately. While records wait
(more than one interval's worth at that rate) the publication takes no more
than ``share`` of the worker's time, resting in proportion to its rendering;
a worker keeping up has time to spare and publishes at every interval.

>>> pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
>>> pace.due(now=10.0, backlog=0, applied=0)
True
>>> pace.published(now=10.0, rendering_s=0.01)  # records waiting: rests four times the rendering, a fifth of the time
>>> pace.due(now=10.02, backlog=500, applied=20), pace.due(now=10.05, backlog=500, applied=50)
(False, True)
>>> pace.published(now=10.05, rendering_s=0.01)
>>> pace.due(now=10.06, backlog=0, applied=60)  # keeping up: no rest
True
>>> pace.published(now=10.06, rendering_s=0.0)
>>> pace.due(now=11.0, backlog=50_000, applied=1_000)  # 50,000 records at about 1,000 a second: catching up
False
>>> pace.due(now=15.05, backlog=46_000, applied=5_000)  # 46 s of work behind: the interval is the cap, 30 s
False
>>> pace.due(now=41.0, backlog=20_000, applied=31_000), pace.due(now=50.0, backlog=8_000, applied=40_000)
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: weight of the newest measurement in the smoothed rate of records applied
RATE_SMOOTHING = 0.3


@dataclass
class PublicationPace:
    """The publication's pace for one group of engines (see the module's docstring).

    ``behind_s``: seconds of unread input records (at the recent rate of records
    applied) above which the worker counts as catching up; ``behind_interval_s`` 0
    keeps the live pace throughout; catching up, the interval is those seconds of
    unread records, between ``behind_interval_s`` and ``behind_max_interval_s``.
    """

    interval_s: float
    behind_interval_s: float = 5.0
    behind_s: float = 10.0
    behind_max_interval_s: float = 30.0
    #: the most of the worker's time the publication takes (it rests in proportion to what it took)
    share: float = 0.2
    #: monotonic seconds: the end of the last publication's rest
    not_before: float = field(default=0.0)
    #: monotonic seconds: when the last publication ended (None: none yet)
    last_at: float | None = field(default=None)
    #: records applied per second, smoothed over the calls of :meth:`due`
    rate: float = field(default=0.0)
    _seen: tuple[float, int] | None = field(default=None, repr=False)
    _measured: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")
        if self.behind_max_interval_s < self.behind_interval_s:
            raise ValueError("behind_max_interval_s must be at least behind_interval_s")

    def catching_up(self, backlog: int) -> bool:
        """Whether ``backlog`` unread records, at the recent rate, make the worker one catching up."""
        if self.behind_interval_s <= self.interval_s or backlog <= 0:
            return False
        return backlog > self.rate * self.behind_s

    def due(self, *, now: float, backlog: int, applied: int) -> bool:
        """Whether a publication runs at ``now``, with ``backlog`` unread records and ``applied`` records applied so far."""
        self._measure(now, applied)
        if now < self.not_before and backlog > self.rate * self.interval_s:
            return False
        if self.last_at is not None and self.catching_up(backlog):
            return now - self.last_at >= self.behind_interval(backlog)
        return True

    def behind_interval(self, backlog: int) -> float:
        """Seconds between two publications while catching up with ``backlog`` unread records.

        >>> pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_s=10.0)
        >>> pace.rate = 1_000.0
        >>> pace.behind_interval(12_000), pace.behind_interval(20_000), pace.behind_interval(900_000)
        (12.0, 20.0, 30.0)
        """
        seconds_of_work = backlog / self.rate if self.rate > 0 else self.behind_max_interval_s
        return max(self.behind_interval_s, min(self.behind_max_interval_s, seconds_of_work))

    def published(self, *, now: float, rendering_s: float) -> None:
        """A publication ended at ``now`` after ``rendering_s`` seconds of rendering (waiting for Kafka is not work)."""
        self.last_at = now
        self.not_before = now + rendering_s * (1 / self.share - 1)

    def _measure(self, now: float, applied: int) -> None:
        if self._seen is not None and now > self._seen[0]:
            recent = max(0, applied - self._seen[1]) / (now - self._seen[0])
            # the first measurement is taken as it is; later ones move the rate a step towards them
            self.rate = recent if self._measured is False else self.rate + RATE_SMOOTHING * (recent - self.rate)
            self._measured = True
        self._seen = (now, applied)
