"""``scripts/bench sparse``'s helpers: the sparse purchase log, the shop traffic cap, and counting the checks (no timing)."""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit.events import shop_events  # noqa: E402
from benchkit.sparse import counted_calls, sparse_events  # noqa: E402
from online_models.events import parse_event  # noqa: E402

DAY_MS = 86_400_000


def test_the_sparse_log_is_seeded_ordered_and_contract_valid():
    history = sparse_events(200, 540, seed=5)
    assert history == sparse_events(200, 540, seed=5)
    assert history != sparse_events(200, 540, seed=6)
    assert all(a["ts"] <= b["ts"] for a, b in zip(history, history[1:]))
    assert len({e["event_id"] for e in history}) == len(history)
    for event in history:
        parsed = parse_event(orjson.dumps(event))
        assert parsed.category is not None
        if parsed.type == "pay":
            assert parsed.amount is not None and parsed.amount > 0


def test_the_sparse_log_buys_rarely_with_long_silences():
    history = sparse_events(300, 540, seed=1)
    pays = collections.defaultdict(list)
    for event in history:
        if event["type"] == "pay":
            pays[event["user_id"]].append(event["ts"])
    assert len(pays) == 300  # every customer bought at least once
    assert all(1 <= len(times) <= 6 for times in pays.values())
    assert 2.5 <= sum(len(t) for t in pays.values()) / 300 <= 3.5
    gaps = [b - a for times in pays.values() for a, b in zip(times, times[1:])]
    assert min(gaps) >= 18 * DAY_MS  # at most 6 purchases in 540 days, each in the middle 80% of its share
    assert len(history) / 300 < 30  # a few visits around each purchase, nothing more
    assert max(e["ts"] for e in history) < 1_717_171_200_000 + 540 * DAY_MS


def test_the_default_size_is_a_real_purchase_logs():
    history = sparse_events(2357, 540, seed=3)
    purchases = sum(e["type"] == "pay" for e in history)
    assert 6_000 <= purchases <= 8_000
    assert len({e["user_id"] for e in history}) == 2357


def holders(function) -> set[str]:
    """The imported ``online_models`` modules with an attribute that is ``function``."""
    return {name for name, module in list(sys.modules.items())
            if name.startswith("online_models") and module is not None
            and any(value is function for value in vars(module).values())}


def test_counted_calls_wraps_every_module_holding_the_function_and_restores_it():
    import online_models.replay
    from online_models.watch import watch_user

    before = holders(watch_user)
    assert "online_models.watch" in before and len(before) >= 2  # and where the replay looks it up
    history = sparse_events(20, 60, seed=2)
    with counted_calls(watch_user, "online_models") as calls:
        assert holders(watch_user) == set()
        online_models.replay.replay_history(history)
    assert holders(watch_user) == before
    assert sum(calls.values()) >= sum(e["type"] == "pay" for e in history)  # a check at least after each purchase
    assert set(calls) <= before


def test_shop_traffic_is_capped_and_ordered():
    profiles, events = shop_events(300, users=30, start_ms=1_717_171_200_000, days=5, seed=4)
    events = list(events)
    assert len(profiles) == 30 and len(events) == 300
    assert all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
    assert {e["user_id"] for e in events} <= {p["user_id"] for p in profiles}
    _, few = shop_events(10**9, users=3, start_ms=1_717_171_200_000, days=1, seed=4)
    assert 0 < len(list(few)) < 200  # the simulator's volume when the cap is above it
