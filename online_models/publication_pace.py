"""When a worker's engines publish what changed: often while live, seldom while catching up.

A publication renders every state changed since the last one, once. Live, it runs
every ``interval_s`` so a change reaches the portraits topic within a fraction of a
second. While the worker works through a backlog, a state published now is
superseded by the records still queued behind it, so each publication in between
is work nobody reads: then it runs only every ``behind_interval_s``, and the states
changed meanwhile are rendered once instead of once per interval (Kafka Streams'
record cache flushed on its commit interval does the same). Either way it never
takes more than ``share`` of the worker's time.

>>> pace = PublicationPace(interval_s=0.1, behind_interval_s=5.0, behind_records=1000)
>>> pace.due(now=10.0, backlog=0)
True
>>> pace.published(now=10.0, rendering_s=0.01)  # rests four times the rendering: a fifth of the time
>>> pace.due(now=10.02, backlog=0), pace.due(now=10.05, backlog=0)
(False, True)
>>> pace.due(now=11.0, backlog=5000), pace.due(now=15.0, backlog=5000)  # catching up: every 5 s
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PublicationPace:
    """The publication's pace for one group of engines (see the module's docstring).

    ``behind_records``: unread input records (over the group's partitions) above which
    the worker counts as catching up; ``behind_interval_s`` 0 keeps the live pace throughout.
    """

    interval_s: float
    behind_interval_s: float = 5.0
    behind_records: int = 1000
    #: the most of the worker's time the publication takes (it rests in proportion to what it took)
    share: float = 0.2
    #: monotonic seconds: the end of the last publication's rest
    not_before: float = field(default=0.0)
    #: monotonic seconds: when the last publication ended (None: none yet)
    last_at: float | None = field(default=None)

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")

    def catching_up(self, backlog: int) -> bool:
        """Whether ``backlog`` unread records make the worker one catching up."""
        return self.behind_interval_s > self.interval_s and backlog > self.behind_records

    def due(self, *, now: float, backlog: int) -> bool:
        """Whether a publication runs at ``now``, with ``backlog`` unread records behind the engines."""
        if now < self.not_before:
            return False
        if self.last_at is not None and self.catching_up(backlog):
            return now - self.last_at >= self.behind_interval_s
        return True

    def published(self, *, now: float, rendering_s: float) -> None:
        """A publication ended at ``now`` after ``rendering_s`` seconds of rendering (waiting for Kafka is not work)."""
        self.last_at = now
        self.not_before = now + rendering_s * (1 / self.share - 1)
