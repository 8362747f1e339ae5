"""The pure core without Kafka: replay rate and the cost of each step of a portrait, per checkout.

``measure`` replays the same synthetic events through :func:`online_models.replay.replay_history`
with a frozen model snapshot (admission, fold, watch, the watermark sweeps of silent users, and
where the checkout has them the item facts and their fold by the items' engine) and times the
steps of a publication over the final states (state decode, render, scoring, JSON; an item or
category portrait's render).
``compare`` runs ``measure`` in one subprocess per checkout, one after the other in the same
run, so two versions of the core are compared on the same events and the same machine.

Run as ``python -m benchkit.core <events> <users> <days> <seed>`` from a checkout's root (with
``scripts`` on the path), it prints the figures of that checkout's core as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

DAY_MS = 86_400_000
START_MS = 1_717_171_200_000
TRAIN_EVENTS = 20_000


def _per_item_us(function, items) -> float:
    started = time.perf_counter()
    for item in items:
        function(item)
    return round((time.perf_counter() - started) / max(len(items), 1) * 1e6, 1)


def measure(events: int, users: int, days: float, seed: int) -> dict:
    """Figures of the core importable from here (the current directory's checkout)."""
    from benchkit.events import synthetic_events
    from online_models.portrait import PortraitState, render
    from online_models.replay import replay_history
    from online_models.watch import WatchConfig

    history = [orjson.loads(value) for _, value in synthetic_events(events, users=users, start_ms=START_MS, span_ms=int(days * DAY_MS), seed=seed)]
    frozen = replay_history(history[:TRAIN_EVENTS]).snapshot()
    started = time.perf_counter()
    result = replay_history(history, frozen=frozen)
    seconds = time.perf_counter() - started
    states = list(result.states.values())
    item_states = list(getattr(result, "item_states", {}).values())  # checkouts before item portraits have none
    config = WatchConfig().portrait
    raws = [state.to_bytes() for state in states]
    portraits = [render(state, as_of=result.as_of, config=config) for state in states]
    enriched = [frozen.enrich(portrait) for portrait in portraits]
    return {
        "events": result.events,
        "users": len(states),
        "replay_seconds": round(seconds, 2),
        "replay_events_per_second": round(result.events / seconds, 1),
        "alerts": len(result.alerts),
        "per_portrait_us": {
            "state_from_bytes": _per_item_us(PortraitState.from_bytes, raws),
            "state_to_bytes": _per_item_us(lambda s: s.to_bytes(), states),
            "render": _per_item_us(lambda s: render(s, as_of=result.as_of, config=config), states),
            "enrich (rfm, lifecycle, segment, tags, churn)": _per_item_us(frozen.enrich, portraits),
            "json": _per_item_us(orjson.dumps, enriched),
        },
        "items": len(item_states),
        "per_item_portrait_us": _item_steps(item_states, result) if item_states else None,
    }


def _item_steps(states: list, result) -> dict:
    from online_models.item_portrait import ItemConfig, ItemState, render

    config = ItemConfig()
    raws = [state.to_bytes() for state in states]
    return {
        "state_from_bytes": _per_item_us(ItemState.from_bytes, raws),
        "render": _per_item_us(lambda s: render(s, as_of=result.item_as_of, config=config), states),
        "state_bytes": round(sum(map(len, raws)) / len(raws)),
    }


def compare(checkouts: list[Path], *, events: int, users: int, days: float, seed: int) -> dict[str, dict]:
    """``measure`` in each checkout (a directory with ``online_models``), one after the other."""
    return in_checkouts(checkouts, "benchkit.core", [str(events), str(users), str(days), str(seed)])


def in_checkouts(checkouts: list[Path], module: str, args: list[str], *, timeout_s: float = 3600.0) -> dict[str, dict]:
    """``python -m module args`` in each checkout, one after the other: the JSON on its last line, per checkout.

    The checkout comes first on the path (its ``online_models``), then this ``scripts/`` (``benchkit`` itself).
    """
    here = Path(__file__).resolve().parent.parent  # scripts/, for benchkit itself
    label = module.rpartition(".")[2]
    out = {}
    for checkout in checkouts:
        checkout = checkout.resolve()
        env = {**os.environ, "PYTHONPATH": f"{checkout}{os.pathsep}{here}"}
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout_s,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{label} of {checkout} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        out[str(checkout)] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{label} of {checkout}: {json.dumps(out[str(checkout)])}", flush=True)
    return out


if __name__ == "__main__":
    n_events, n_users, n_days, n_seed = sys.argv[1:5]
    print(json.dumps(measure(int(n_events), int(n_users), float(n_days), int(n_seed))))
