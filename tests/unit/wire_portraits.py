"""The published portraits of a simulated shop, as bytes: what ``tests/unit/test_portrait_wire.py`` pins.

A :class:`~online_models.simulation.ShopSimulator` history (with profiles for two users in
three) is replayed through :func:`online_models.replay.replay_history`; every final state is
rendered at the replay's end, alone and enriched by the replay's trained models, and
serialised with ``orjson`` exactly as the worker publishes it. Run as a script it writes the
lines to stdout (``python -m tests.unit.wire_portraits | gzip -9n > tests/unit/fixtures/portraits-wire.jsonl.gz``
regenerates the fixture; run it on two checkouts and diff to compare them).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import orjson

from online_models.events import parse_profile
from online_models.portrait import render, update_profile
from online_models.replay import replay_history
from online_models.settings import Settings
from online_models.simulation import ShopSimulator

START_MS = 1_788_307_200_000  # 2026-09-01T00:00:00Z
USERS = 150
DAYS = 35


def wire_lines() -> Iterator[bytes]:
    """For each user (sorted by id): ``render`` alone and then enriched, one JSON document a line."""
    simulator = ShopSimulator(n_users=USERS, start_ms=START_MS, seed=5, companions=True)
    config = Settings(timezone="Asia/Shanghai").watch_config()
    result = replay_history(simulator.history(DAYS), config=config, snapshot_every=2000)
    models = result.snapshot()
    profiles = {p["user_id"]: p for p in simulator.profiles()}
    for n, user_id in enumerate(sorted(result.states)):
        state = result.states[user_id]
        if n % 3 and user_id in profiles:
            update_profile(state, parse_profile(orjson.dumps(profiles[user_id])))
        for as_of in (result.as_of, None):
            portrait = render(state, as_of=as_of, config=config.portrait)
            yield orjson.dumps(portrait)
            yield orjson.dumps(models.enrich(portrait))


if __name__ == "__main__":
    for line in wire_lines():
        sys.stdout.buffer.write(line + b"\n")
