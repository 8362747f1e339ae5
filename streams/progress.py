"""What a partition's state already holds: the input offsets applied and the stream time.

The worker writes a :class:`PartitionProgress` into the portrait-state table
itself, under :data:`PROGRESS_KEY`, after the user states it covers. Both go to
the same changelog partition in order, so any prefix of that changelog that
holds a progress record also holds every state change made before it. After a
crash the worker skips the records the restored progress covers and re-applies
the rest (a change that made it to the changelog after the progress record is
recognised by its ``event_id``), so nothing is lost and nothing counted twice.

>>> p = PartitionProgress(offsets={"events": 41}, stream_time=1714536000000, seq=7)
>>> PartitionProgress.from_bytes(p.to_bytes()) == p
True
>>> p.covers("events", 41), p.covers("events", 42), p.covers("profiles", 0)
(True, False, False)
>>> p.next_seq(), p.seq
(8, 8)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

#: table key of the progress record; user ids cannot start with a NUL byte (the event contract)
PROGRESS_KEY = b"\x00progress"


def is_internal_key(key: bytes) -> bool:
    """Keys of the state table that are bookkeeping, not users."""
    return key.startswith(b"\x00") or key.startswith(b"__faust")


@dataclass
class PartitionProgress:
    """Input offsets applied (by topic), stream time and change sequence of one partition."""

    offsets: dict[str, int] = field(default_factory=dict)
    stream_time: int | None = None
    #: sequence number of the last state change in the partition (users carry theirs)
    seq: int = 0
    #: every change up to this sequence number is on the portraits topic
    published_seq: int = 0

    def covers(self, topic: str, offset: int) -> bool:
        """Whether the record at ``offset`` of ``topic`` is already in the state."""
        applied = self.offsets.get(topic)
        return applied is not None and offset <= applied

    def next_seq(self) -> int:
        """Number the next state change."""
        self.seq += 1
        return self.seq

    def to_bytes(self) -> bytes:
        """Compact JSON for the state table."""
        return orjson.dumps(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "PartitionProgress":
        """Inverse of :meth:`to_bytes`."""
        return cls(**orjson.loads(raw))
