"""Replay of recorded events (JSON lines) in event-time order."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from online_models.events import InvalidEvent, to_epoch_ms
import orjson


def index_by_event_time(path: Path) -> list[tuple[int, int]]:
    """(event time, byte offset) of every line, sorted by event time (stable).

    Lines whose JSON or ``ts`` can't be read sort first (time -1): they are sent
    as they are so the worker dead-letters them with the reason.
    """
    index = []
    with path.open("rb") as handle:
        offset = 0
        for line in handle:
            if line.strip():
                try:
                    ts = to_epoch_ms(orjson.loads(line)["ts"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, InvalidEvent):
                    ts = -1
                index.append((ts, offset))
            offset += len(line)
    index.sort(key=lambda pair: pair[0])
    return index


def replay(path: Path, send, *, speed: float = 0.0, progress: bool = True) -> int:
    """Call ``send(key, value)`` for every line in event-time order; return the count.

    ``speed`` 0 sends as fast as possible; otherwise event-time gaps are slept
    through, divided by ``speed``.
    """
    index = index_by_event_time(path)
    first_ts = next((ts for ts, _ in index if ts >= 0), 0)
    started = time.monotonic()
    with path.open("rb") as handle, tqdm(total=len(index), unit="ev", disable=not progress) as bar:
        for ts, offset in index:
            handle.seek(offset)
            line = handle.readline().rstrip(b"\r\n")
            if speed > 0 and ts >= 0:
                delay = (ts - first_ts) / 1000 / speed - (time.monotonic() - started)
                if delay > 0:
                    time.sleep(delay)
            try:
                key = str(orjson.loads(line)["user_id"]).encode()
            except (orjson.JSONDecodeError, KeyError, TypeError):
                key = None
            send(key, line)
            bar.update()
    return len(index)
