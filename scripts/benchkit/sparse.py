"""The pure core on a sparse history: checks per event and replay time, per checkout.

A sparse history is a purchase log's: long silences, one to six purchase sessions a user over
the span (most buy once or twice a year), a few visits around each. :func:`sparse_events` makes
one, seeded. ``measure`` trains a model snapshot on it, then replays it through
:func:`online_models.replay.replay_history` with the snapshot frozen, timed, counting the calls
to :func:`online_models.watch.watch_user` (the checks) made meanwhile. ``compare`` runs
``measure`` in one subprocess per checkout, like ``scripts/bench core``.

Run as ``python -m benchkit.sparse <users> <days> <seed>`` from a checkout's root (with
``scripts`` on the path), it prints the figures of that checkout's core as JSON.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import importlib.util
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from operator import itemgetter
from pathlib import Path

from benchkit.events import CATEGORIES, DEVICES

DAY_MS = 86_400_000
MINUTE_MS = 60_000
START_MS = 1_717_171_200_000  # 2024-06-01 00:00 +08:00
#: purchase sessions a user has over the span, and how often each count is drawn (mean 3)
PURCHASES = (1, 2, 3, 4, 5, 6)
PURCHASE_WEIGHTS = (20, 24, 20, 16, 12, 8)
#: median amount paid per category (log-normal spread around it)
MEDIAN_AMOUNT = {"snacks": 30, "beauty": 180, "apparel": 220, "electronics": 900, "home": 150, "books": 45,
                 "baby": 120, "sports": 260, "pets": 90, "fresh_food": 60}


def sparse_events(users: int, days: float, seed: int = 0, *, start_ms: int = START_MS) -> list[dict]:
    """A purchase log's history of ``users`` customers over ``days`` from ``start_ms``, in event-time order.

    Each customer has 1-6 purchase sessions, one in each equal share of the span (so purchases are
    weeks to months apart), each a few views, an add_to_cart and a pay (with ``amount``), and
    before it 0-2 short visits (views) in the preceding days. Every event passes
    :func:`online_models.events.parse_event`.

    >>> history = sparse_events(50, 540, seed=1)
    >>> history == sparse_events(50, 540, seed=1), all(a["ts"] <= b["ts"] for a, b in zip(history, history[1:]))
    (True, True)
    >>> 50 <= sum(e["type"] == "pay" for e in history) <= 300
    True
    """
    rng = random.Random(f"sparse:{seed}")
    span = int(days * DAY_MS)
    history: list[dict] = []
    for index in range(users):
        user = f"c{index:05d}"
        device = rng.choice(DEVICES)
        count = rng.choices(PURCHASES, PURCHASE_WEIGHTS)[0]
        share = span // count
        for purchase in range(count):
            at = start_ms + purchase * share + int(rng.uniform(0.1, 0.9) * share)
            category = rng.choice(CATEGORIES)
            for visit in range(rng.choice((0, 0, 1, 1, 2))):
                visit_at = max(start_ms, at - int(rng.uniform(1, 10) * DAY_MS))
                history += _session(rng, user, f"{user}-{purchase}-v{visit}", visit_at, category, device, buys=False)
            history += _session(rng, user, f"{user}-{purchase}", at, category, device, buys=True)
    history.sort(key=itemgetter("ts"))  # stable: a user's events of one session keep their order
    return history


def _session(rng: random.Random, user: str, session: str, at: int, category: str, device: str, *, buys: bool) -> list[dict]:
    """A visit of 1-4 views in ``category``; with ``buys``, then an add_to_cart and a pay of one of the items."""
    events = []
    item, price = None, None
    for view in range(rng.randint(1, 4)):
        item = f"{category}-{rng.randrange(40):03d}"
        price = round(MEDIAN_AMOUNT[category] * rng.lognormvariate(0, 0.5), 2)
        events.append({"event_id": f"{session}-{view}", "user_id": user, "type": "view", "ts": at, "item_id": item,
                       "category": category, "price": price, "device": device, "session_id": session})
        at += int(rng.uniform(0.5, 3) * MINUTE_MS)
    if buys:
        common = {"user_id": user, "item_id": item, "category": category, "price": price, "device": device,
                  "session_id": session}
        events.append({"event_id": f"{session}-cart", "type": "add_to_cart", "ts": at, **common})
        at += int(rng.uniform(0.5, 5) * MINUTE_MS)
        events.append({"event_id": f"{session}-pay", "type": "pay", "ts": at, "amount": price,
                       "order_id": f"o{session}", **common})
    return events


@contextlib.contextmanager
def counted_calls(function: Callable, package: str) -> Iterator[collections.Counter]:
    """Count the calls to ``function`` made through any imported module of ``package`` that holds it.

    Every module attribute that is ``function`` (whatever its name) is replaced by a counting
    wrapper until the block ends; the counter yielded is keyed by the module the call went through.
    """
    calls: collections.Counter = collections.Counter()
    patched = []
    for name, module in list(sys.modules.items()):
        if module is None or (name != package and not name.startswith(f"{package}.")):
            continue
        for attribute, value in list(vars(module).items()):
            if value is function:
                setattr(module, attribute, _counting(function, calls, name))
                patched.append((module, attribute))
    try:
        yield calls
    finally:
        for module, attribute in patched:
            setattr(module, attribute, function)


def _counting(function: Callable, calls: collections.Counter, key: str) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        calls[key] += 1
        return function(*args, **kwargs)

    return wrapper


def measure(users: int, days: float, seed: int) -> dict:
    """Figures of the core importable from here (the current directory's checkout)."""
    import online_models.replay
    from online_models.watch import watch_user

    if importlib.util.find_spec("online_models.processor") is not None:
        importlib.import_module("online_models.processor")
    replay_history = online_models.replay.replay_history
    history = sparse_events(users, days, seed)
    frozen = replay_history(history).snapshot()
    with counted_calls(watch_user, "online_models") as calls:
        started = time.perf_counter()
        result = replay_history(history, frozen=frozen)
        seconds = time.perf_counter() - started
    checks = sum(calls.values())
    return {
        "events": len(history),
        "events_folded": result.events,
        "users": len(result.states),
        "purchases": sum(event["type"] == "pay" for event in history),
        "replay_seconds": round(seconds, 3),
        "events_per_second": round(result.events / seconds, 1),
        "checks": checks,
        "checks_per_event": round(checks / max(result.events, 1), 3),
        "checks_by_module": dict(calls),
        "result_checks": getattr(result, "checks", None),
        "alerts": len(result.alerts),
        "core": str(Path(online_models.replay.__file__).resolve().parents[1]),
    }


def compare(checkouts: list[Path], *, users: int, days: float, seed: int) -> dict[str, dict]:
    """``measure`` in each checkout (a directory with ``online_models``), one after the other."""
    from benchkit.core import in_checkouts

    return in_checkouts(checkouts, "benchkit.sparse", [str(users), str(days), str(seed)])


if __name__ == "__main__":
    n_users, n_days, n_seed = sys.argv[1:4]
    print(json.dumps(measure(int(n_users), float(n_days), int(n_seed))))
