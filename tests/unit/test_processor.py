"""The partition engine over an in-memory store: caching, flush order, crashes between effects, erasure, ticks."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from online_models.alerts import AlertPolicy
from online_models.portrait import PortraitConfig, PortraitState
from online_models.processor import (
    DEAD_LETTERS,
    ERASURES,
    EVENTS,
    PROFILES,
    PROGRESS_KEY,
    TICKS,
    Delete,
    EngineConfig,
    PartitionProcessor,
    PartitionProgress,
    Put,
    Record,
    Send,
    apply_to,
)
from online_models.replay import replay_history
from online_models.watch import WatchConfig
from online_models.simulation import ShopSimulator
from tests.reference import events_by_user

START_MS = 1788307200000  # 2026-09-01 00:00 UTC
DAY = 86_400_000
#: a short retention and flushes every 25 records, so a short history exercises every path
#: alert settings that make a small shop alert a few times (as the chaos test's)
WATCH = WatchConfig(
    alerts=AlertPolicy(
        threshold=0.5, rearm_below=0.35, cooldown_ms=7 * DAY, layers=frozenset({"high_value", "potential", "ordinary", "low_value"})
    )
)
ENGINE = EngineConfig(watch=WATCH, progress_every=25, retention_ms=20 * DAY, sweep_batch=None)


def records_of(events: list[dict], erasures: dict[int, str] | None = None, profiles: dict[int, dict] | None = None) -> list[Record]:
    """The events as records of one partition; ``erasures`` puts an erasure request before the event at that
    index, ``profiles`` a profiles record."""
    out, erasure_offset, profile_offset = [], 0, 0
    for offset, event in enumerate(events):
        if erasures and offset in erasures:
            user = erasures[offset]
            body = orjson.dumps({"request_id": f"r{offset}", "user_id": user, "requested_at": event["ts"]})
            out.append(Record(ERASURES, ERASURES, erasure_offset, user.encode(), body))
            erasure_offset += 1
        if profiles and offset in profiles:
            profile = profiles[offset]
            out.append(Record(PROFILES, PROFILES, profile_offset, profile["user_id"].encode(), orjson.dumps(profile)))
            profile_offset += 1
        out.append(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)))
    return out


def profiles_among(events: list[dict], every: int = 7) -> dict[int, dict]:
    """A profile record before every ``every``-th event, of that event's user: each user's first sets the
    profile, and a later one of the same time adds to it (a record of equal time merges)."""
    out = {}
    for index in range(0, len(events), every):
        user = events[index]["user_id"]
        out[index] = {"user_id": user, "ts": START_MS, "city_tier": str(index % 4 + 1), f"tag_{index % 3}": "yes"}
    return out


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return list(ShopSimulator(n_users=60, start_ms=START_MS, seed=11).history(40))


@pytest.fixture(scope="module")
def models(history):
    return replay_history(history, config=ENGINE.watch).snapshot()


def run(records: list[Record], store: dict, models, *, config: EngineConfig = ENGINE) -> tuple[PartitionProcessor, list]:
    """Every record through a processor restored from ``store``, skipping what its progress covers; effects executed."""
    engine = PartitionProcessor(0, store, config)
    log = []
    for record in records:
        effects = engine.process(record, now_ms=START_MS + 400 * DAY, models=models)
        apply_to(store, effects)
        log.append(effects)
    return engine, log


def final_states(store: dict) -> dict[str, dict]:
    """The users the store holds, each without its change number (a restarted run numbers changes anew)."""
    out = {}
    for key, value in store.items():
        if key == PROGRESS_KEY:
            continue
        state = orjson.loads(value)
        state.pop("seq")
        out[key.decode()] = state
    return out


def test_a_state_changed_many_times_between_flushes_is_written_once_then_the_progress(history):
    store: dict = {}
    engine, log = run(records_of(history[:25]), store, None)
    flushes = [effects for effects in log if any(isinstance(e, Put) for e in effects)]
    assert len(flushes) == 1
    writes = [e for e in flushes[0] if not isinstance(e, Send)]
    users = {e["user_id"] for e in history[:25]}
    assert [w.key for w in writes[:-1]] == sorted([w.key for w in writes[:-1]], key=[w.key for w in writes[:-1]].index)
    assert {w.key.decode() for w in writes[:-1]} == users and len(writes) - 1 == len(users) < 25
    assert writes[-1].key == PROGRESS_KEY
    progress = PartitionProgress.from_bytes(writes[-1].value)
    assert progress.offsets == {EVENTS: 24} and progress.stream_time == max(e["ts"] for e in history[:25])


def test_the_engine_folds_each_user_as_the_batch_reference_does(history):
    store: dict = {}
    engine, _ = run(records_of(history), store, None, config=EngineConfig(progress_every=25, retention_ms=0))
    apply_to(store, engine.flush())
    by_user = events_by_user(history)
    states = final_states(store)
    assert set(states) == set(by_user)
    for user, events in by_user.items():
        assert states[user]["events"] == len({e["event_id"] for e in events})
        pays = {e["event_id"]: e for e in events if e["type"] == "pay"}
        assert states[user]["purchases"] == len(pays)
        assert states[user]["spend_cents"] == sum(round(e["amount"] * 100) for e in pays.values())


#: no flush but the erasure's and the end's, and each state keeping the ids of its last 5 events alone: a crash
#: reads again weeks of records and hundreds of events per user, recognised by their offsets
FEW_FLUSHES = EngineConfig(
    watch=replace(WATCH, portrait=PortraitConfig(max_seen_ids=5)), progress_every=100_000, retention_ms=20 * DAY, sweep_batch=None
)


@pytest.mark.slow
@pytest.mark.parametrize("config", [ENGINE, FEW_FLUSHES], ids=["every-25-records", "few-flushes"])
def test_a_crash_between_any_two_effects_ends_where_an_uninterrupted_run_does(history, models, config):
    records = records_of(
        history, erasures={len(history) // 2: history[len(history) // 2]["user_id"]}, profiles=profiles_among(history)
    )
    assert any(record.kind == PROFILES for record in records)
    straight_store: dict = {}
    straight, straight_log = run(records, straight_store, models, config=config)
    apply_to(straight_store, straight.flush())
    expected = final_states(straight_store)
    alerts = [e.payload.alert_id for effects in straight_log for e in effects if isinstance(e, Send) and e.kind == "alert"]
    assert alerts, "the history should fire alerts, so the test covers them"

    # the state changelog of the straight run: every write in order; a crash keeps a prefix of it
    changelog = [e for effects in straight_log for e in effects if isinstance(e, (Put, Delete))]
    erasure_flush_end = next(
        i for i, e in enumerate(changelog) if isinstance(e, Delete) and any(
            isinstance(x, Send) and x.kind == "erasure" for effects in straight_log for x in effects)
    )
    cuts = set(range(max(0, erasure_flush_end - 5), min(len(changelog), erasure_flush_end + 5)))
    cuts |= set(random.Random(7).sample(range(len(changelog)), 6)) | {0, len(changelog)}
    for cut in sorted(cuts):
        store: dict = {}
        apply_to(store, changelog[:cut])
        # the worker reads again from its progress: records it covers are skipped, the rest applied
        engine, log = run(records, store, models, config=config)
        apply_to(store, engine.flush())
        assert final_states(store) == expected, f"crash after changelog record {cut}"
        # every alert of the straight run was delivered once before the crash or is delivered again, same id
        again = [e.payload.alert_id for effects in log for e in effects if isinstance(e, Send) and e.kind == "alert"]
        assert set(again) <= set(alerts)


@pytest.mark.slow
def test_alerts_and_erasure_records_are_confirmed_before_any_later_write(history, models):
    records = records_of(history, erasures={100: history[100]["user_id"]})
    _, log = run(records, {}, models)
    kinds = {e.kind for effects in log for e in effects if isinstance(e, Send) and e.confirm}
    assert kinds == {"alert", "erasure", "item_fact"}
    erasure = next(effects for effects in log if any(isinstance(e, Send) and e.kind == "erasure" for e in effects))
    first_write = next(i for i, e in enumerate(erasure) if not isinstance(e, Send))
    assert [e.topic for e in erasure[:first_write] if e.kind == "erasure"] == ["portraits", "profiles", "churn-alerts", "model-training"]
    assert Delete(history[100]["user_id"].encode()) in erasure[first_write:]
    assert isinstance(erasure[-1], Put) and erasure[-1].key == PROGRESS_KEY


def test_an_erased_user_is_gone_and_a_later_event_starts_afresh():
    store: dict = {}
    view = {"event_id": "a", "user_id": "u1", "type": "view", "ts": START_MS}
    erase = orjson.dumps({"request_id": "r1", "user_id": "u1", "requested_at": START_MS})
    later = {**view, "event_id": "b", "ts": START_MS + 60_000}
    engine, _ = run(
        [Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(view)), Record(ERASURES, ERASURES, 0, b"u1", erase)], store, None
    )
    assert b"u1" not in store and "u1" not in engine.unpublished and engine.schedule.get("u1") is None
    engine.process(Record(EVENTS, EVENTS, 1, b"u1", orjson.dumps(later)), now_ms=START_MS, models=None)
    assert engine.state("u1").events == 1


def test_bad_records_are_dead_lettered_with_their_reason_and_the_flow_goes_on():
    engine = PartitionProcessor(0, {}, ENGINE)
    bad = Record(EVENTS, "shop.events", 3, b"u1", b"{not json")
    effects = engine.process(bad, now_ms=START_MS, models=None)
    (letter,) = effects
    assert letter.topic == DEAD_LETTERS and letter.value == b"{not json"
    headers = dict(letter.headers)
    assert headers["reason"] == b"malformed_json" and headers["source.topic"] == b"shop.events" and headers["source.offset"] == b"3"
    good = {"event_id": "a", "user_id": "u1", "type": "view", "ts": START_MS}
    engine.process(Record(EVENTS, "shop.events", 4, b"u1", orjson.dumps(good)), now_ms=START_MS, models=None)
    assert engine.applied_offset("shop.events") == 4 and engine.state("u1").events == 1
    assert engine.counts["rejected:malformed_json"] == 1 and engine.counts["events_processed"] == 1


def test_ticks_move_an_idle_partition_no_further_than_the_wall_clock_and_bad_ones_are_dead_lettered():
    engine = PartitionProcessor(0, {}, EngineConfig(live_idle_ms=60_000))
    view = {"event_id": "a", "user_id": "u1", "type": "view", "ts": START_MS}
    engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(view)), now_ms=START_MS, models=None)
    assert engine.process(Record(TICKS, TICKS, 0, None, b'{"wall_ms": 1}'), now_ms=START_MS + 1000, models=None) == []
    crafted = orjson.dumps({"wall_ms": START_MS + 365 * DAY})
    engine.process(Record(TICKS, TICKS, 1, None, crafted), now_ms=START_MS + 120_000, models=None)
    assert engine.stream_time == START_MS + 120_000
    (letter,) = engine.process(Record(TICKS, TICKS, 2, None, b"[]"), now_ms=START_MS + 240_000, models=None)
    assert dict(letter.headers)["reason"] == b"invalid_tick"


def test_a_malformed_tick_is_dead_lettered_outside_live_mode_and_a_sound_one_moves_nothing():
    engine = PartitionProcessor(0, {}, ENGINE)
    view = {"event_id": "a", "user_id": "u1", "type": "view", "ts": START_MS}
    engine.process(Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(view)), now_ms=START_MS, models=None)
    for offset, value in enumerate((b"{not json", b'{"wall_ms": "soon"}', None)):
        (letter,) = engine.process(Record(TICKS, TICKS, offset, None, value), now_ms=START_MS + DAY, models=None)
        assert letter.topic == DEAD_LETTERS and dict(letter.headers)["reason"] == b"invalid_tick"
    sound = orjson.dumps({"wall_ms": START_MS + DAY})
    assert engine.process(Record(TICKS, TICKS, 3, None, sound), now_ms=START_MS + DAY, models=None) == []
    assert engine.stream_time == START_MS


def test_users_idle_past_the_retention_are_forgotten_with_a_portrait_tombstone():
    store: dict = {}
    old = {"event_id": "a", "user_id": "u1", "type": "view", "ts": START_MS}
    new = {"event_id": "b", "user_id": "u2", "type": "view", "ts": START_MS + 30 * DAY}
    engine, log = run(
        [Record(EVENTS, EVENTS, 0, b"u1", orjson.dumps(old)), Record(EVENTS, EVENTS, 1, b"u2", orjson.dumps(new))], store, None
    )
    apply_to(store, engine.flush())
    assert Send("portraits", b"u1", None, kind="expiry") in log[1]
    assert b"u1" not in store and b"u2" in store and engine.counts["users_expired"] == 1


def test_publication_renders_each_changed_user_once_and_a_restart_publishes_what_was_not(history):
    store: dict = {}
    engine, _ = run(records_of(history[:60]), store, None)
    sends, covered = engine.publication(None)
    assert sorted(s.key for s in sends) == sorted({e["user_id"].encode() for e in history[:60]})
    assert engine.publication(None)[0] == []
    engine.published(covered)
    # changes after the last flush's published mark come back as unpublished on restart
    apply_to(store, engine.flush())
    later, _ = run(records_of(history[:80]), store, None)
    restarted = PartitionProcessor(0, store, ENGINE)
    changed_later = {e["user_id"] for e in history[60:80]}
    assert set(restarted.unpublished) <= changed_later | set(later.unpublished)


def test_the_cache_keeps_changed_and_unpublished_users_and_drops_the_rest_beyond_its_size(history):
    store: dict = {}
    engine, _ = run(records_of(history[:200]), store, None, config=EngineConfig(progress_every=25, cache_users=3))
    engine.publication(None)
    apply_to(store, engine.flush())
    assert len(engine.cache) <= 3
    user = history[0]["user_id"]
    assert engine.state(user) is not None  # read back from the store
    assert isinstance(engine.state(user), PortraitState)


def _event(user: str, ts: int, n: int) -> dict:
    return {"event_id": f"{user}-{n}", "user_id": user, "type": "view", "ts": ts, "category": "shoes"}


def test_events_of_an_erased_user_still_queued_behind_the_erasure_stay_out():
    # events and erasures are not ordered against each other: events the user made before asking to be
    # erased can arrive after the erasure; they must not bring the portrait back, a later visit does
    store: dict = {}
    engine = PartitionProcessor(0, store, ENGINE)
    now = START_MS + 10 * DAY
    before = [_event("u1", START_MS + i * 3_600_000, i) for i in range(3)] + [_event("u2", START_MS + 2 * 3_600_000, 0)]
    offset = 0
    for event in before[:2]:
        apply_to(store, engine.process(Record(EVENTS, EVENTS, offset, b"u1", orjson.dumps(event)), now_ms=now))
        offset += 1
    request = {"request_id": "r1", "user_id": "u1", "requested_at": START_MS + 5 * 3_600_000}
    apply_to(store, engine.process(Record(ERASURES, ERASURES, 0, b"u1", orjson.dumps(request)), now_ms=now))
    for event in before[2:]:  # u1's third event was queued before the request; u2 is someone else
        apply_to(store, engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=now))
        offset += 1
    apply_to(store, engine.flush())
    assert b"u1" not in store and b"u2" in store
    assert engine.counts["records_fenced"] == 1
    # the fence is in the progress record: a restarted engine keeps it
    restarted = PartitionProcessor(0, store, ENGINE)
    stale = _event("u1", START_MS + 4 * 3_600_000, 9)
    assert restarted.process(Record(EVENTS, EVENTS, offset, b"u1", orjson.dumps(stale)), now_ms=now) == []
    assert restarted.counts["records_fenced"] == 1
    comeback = _event("u1", START_MS + 6 * 3_600_000, 10)
    apply_to(store, restarted.process(Record(EVENTS, EVENTS, offset + 1, b"u1", orjson.dumps(comeback)), now_ms=now))
    apply_to(store, restarted.flush())
    assert PortraitState.from_bytes(store[b"u1"]).events == 1


def test_a_fence_goes_once_the_watermark_has_passed_it():
    store: dict = {}
    engine = PartitionProcessor(0, store, ENGINE)
    now = START_MS + 30 * DAY
    request = {"request_id": "r1", "user_id": "u1", "requested_at": START_MS}
    apply_to(store, engine.process(Record(ERASURES, ERASURES, 0, b"u1", orjson.dumps(request)), now_ms=now))
    assert len(PartitionProgress.from_bytes(store[PROGRESS_KEY]).fences) == 1
    late = START_MS + 2 * DAY  # far past the fence plus the allowed lateness
    apply_to(store, engine.process(Record(EVENTS, EVENTS, 0, b"u2", orjson.dumps(_event("u2", late, 0))), now_ms=now))
    apply_to(store, engine.flush())
    assert PartitionProgress.from_bytes(store[PROGRESS_KEY]).fences == {}


def test_every_count_the_engine_keeps_reaches_the_worker_metrics(history):
    # the worker adds the engine's counts to its Prometheus counters; an unknown name would stop it
    from streams import metrics

    engine = PartitionProcessor(0, {}, ENGINE)
    records = records_of(history[:400], erasures={100: history[100]["user_id"]})
    erased = history[100]["user_id"]
    at = next(i for i, r in enumerate(records) if r.kind == ERASURES) + 1
    stale = dict(history[100], event_id="queued-before-the-erasure")  # stamped at the request's time
    records.insert(at, Record(EVENTS, "events-redelivered", 0, erased.encode(), orjson.dumps(stale)))
    for record in records:
        engine.process(record, now_ms=START_MS + 400 * DAY)
    engine.flush()
    names = set(engine.counts)
    assert {"events_processed", "users_erased", "records_fenced", "checks"} <= names
    metrics.add_engine_counts(engine.counts)
    assert not engine.counts


# -- a new purchase model re-plans the alert crossings -----------------------------------

from online_models.clock import ceil_minute  # noqa: E402
from online_models.mbgnbd import MBGNBD  # noqa: E402
from online_models.population import PopulationConfig, PopulationModels  # noqa: E402
from online_models.portrait import render  # noqa: E402

#: alerts as shipped (valuable layers only); no retention, every due user looked at
REPLAN = EngineConfig(watch=WatchConfig(), retention_ms=0, sweep_batch=None)
#: under SLOW the valuable buyer's silence reaches the threshold after about four weeks, under FAST after under five days
SLOW = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.2, b=8.0)
FAST = MBGNBD.from_params(r=0.5, alpha=2.0, a=2.0, b=0.8)


def purchase_models(mbgnbd: MBGNBD) -> PopulationModels:
    models = PopulationModels(PopulationConfig())
    models.mbgnbd = mbgnbd
    return models


def silent_buyer_and_a_clock(days: int) -> list[dict]:
    """u1 buys every other day for 8 days (a potential-layer buyer), then falls silent; u2 visits every hour."""
    events = [_event("u1", START_MS + i * 60_000, i) for i in range(10)]
    events += [{**_event("u1", START_MS + 20 * 60_000 + i, 20 + i), "type": "add_to_cart"} for i in range(2)]
    events += [
        {"event_id": f"u1-pay{d}", "user_id": "u1", "type": "pay", "ts": START_MS + d * DAY + 3_600_000, "amount": 200.0}
        for d in (0, 2, 4, 6, 8)
    ]
    events += [_event("u2", START_MS + h * 3_600_000 + 1, h) for h in range(days * 24)]
    return sorted(events, key=lambda e: e["ts"])


def lapse_risk_by_render(state: PortraitState, at_ms: int, models) -> float:
    """The batch view: render the portrait at ``at_ms``, score it, 1 - P(alive)."""
    return 1 - models.churn(render(state, as_of=at_ms, config=REPLAN.watch.portrait)).p_alive


def first_minute_at_or_above(state: PortraitState, models, start_ms: int, threshold: float) -> int:
    """Brute force: every hour from ``start_ms``, then every minute of the hour before."""
    at = ceil_minute(start_ms)
    while lapse_risk_by_render(state, at, models) < threshold:
        at += 3_600_000
    minute = max(ceil_minute(start_ms), at - 3_600_000)
    while lapse_risk_by_render(state, minute, models) < threshold:
        minute += 60_000
    return minute


def replay_with_a_model_change(events: list[dict], change_at_ms: int, *, store: dict | None = None, restart: bool = False):
    """Feed ``events`` under SLOW until the first event past ``change_at_ms``, under FAST from it on.

    Returns the engine, the alerts and the watermark at which FAST arrived. With ``restart``,
    the engine stops at the change (its effects flushed to ``store``) and a new one restored from it goes on.
    """
    store = {} if store is None else store
    engine, alerts, arrived_at = PartitionProcessor(0, store, REPLAN), [], None
    slow, fast = purchase_models(SLOW), purchase_models(FAST)
    for offset, event in enumerate(events):
        models = slow
        if event["ts"] > change_at_ms:
            if arrived_at is None:
                if restart:
                    apply_to(store, engine.flush())
                    engine = PartitionProcessor(0, store, REPLAN)
                arrived_at = engine.watermark
            models = fast
        effects = engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=START_MS + 400 * DAY, models=models)
        apply_to(store, effects)
        alerts += [e.payload for e in effects if isinstance(e, Send) and e.kind == "alert"]
    return engine, alerts, arrived_at


@pytest.mark.parametrize("restart", [False, True])
@pytest.mark.parametrize("change_day", [10, 14])
def test_a_new_purchase_model_brings_the_alert_to_its_own_crossing_not_the_next_planned_check(change_day, restart):
    events = silent_buyer_and_a_clock(days=40)
    engine, alerts, arrived_at = replay_with_a_model_change(events, START_MS + change_day * DAY, restart=restart)
    u1 = [a for a in alerts if a.user_id == "u1"]
    assert len(u1) == 1 and engine.counts["checks_brought_forward"] == 1
    # independently: the first minute, from FAST's arrival on, at which the rendered portrait's 1 - P(alive) under FAST reaches 0.7
    silent = PortraitState("u1")
    from online_models.portrait import update  # noqa: PLC0415
    from online_models.events import parse_event  # noqa: PLC0415

    for event in (e for e in events if e["user_id"] == "u1"):
        update(silent, parse_event(orjson.dumps(event)), watermark=event["ts"], config=REPLAN.watch.portrait)
    expected = first_minute_at_or_above(silent, purchase_models(FAST), arrived_at, 0.7)
    assert u1[0].ts_ms == expected
    # under SLOW alone the alert would have come weeks later
    _, slow_alerts, _ = replay_with_a_model_change(events, START_MS + 400 * DAY)
    assert [a.ts_ms for a in slow_alerts if a.user_id == "u1"] == [first_minute_at_or_above(silent, purchase_models(SLOW), START_MS, 0.7)]
    assert u1[0].ts_ms < slow_alerts[0].ts_ms - 10 * DAY


def test_a_snapshot_with_the_same_purchase_model_re_plans_nobody():
    events = silent_buyer_and_a_clock(days=12)
    engine = PartitionProcessor(0, {}, REPLAN)
    snapshots = [purchase_models(MBGNBD.from_params(**SLOW.params_)) for _ in range(2)]
    for offset, event in enumerate(events):
        # another snapshot on every record (the classifier and the samples move), the same purchase model
        models = snapshots[offset % 2]
        engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=START_MS + 400 * DAY, models=models)
    assert engine.counts["replans"] == 1 and engine.counts["checks_brought_forward"] == 0
    assert set(engine.crossing_plans) == {"u1"}  # u2 never bought


def test_re_planning_touches_only_the_users_whose_crossing_it_moves():
    # 40 valuable buyers on different purchase rhythms, silent since; a refit brings some crossings before their planned checks
    events = []
    for u in range(40):
        gap = 1 + u % 5
        events += [
            {"event_id": f"p{u}-{k}", "user_id": f"b{u:02d}", "type": "pay", "ts": START_MS + (k * gap) * DAY + u * 60_000, "amount": 300.0}
            for k in range(4)
        ]
        events += [{"event_id": f"c{u}", "user_id": f"b{u:02d}", "type": "add_to_cart", "ts": START_MS + u * 60_000 - 1}]
    events += [_event("clock", START_MS + h * 3_600_000 + 7, h) for h in range(30 * 24)]
    events.sort(key=lambda e: e["ts"])
    engine = PartitionProcessor(0, {}, REPLAN)
    change = next(i for i, e in enumerate(events) if e["ts"] > START_MS + 22 * DAY)
    slow = purchase_models(SLOW)
    for offset, event in enumerate(events[:change]):
        engine.process(Record(EVENTS, EVENTS, offset, event["user_id"].encode(), orjson.dumps(event)), now_ms=START_MS + 400 * DAY, models=slow)
    planned = dict(engine.crossing_plans)
    assert len(planned) >= 20
    engine.flush()

    class Counting(MBGNBD):
        calls = 0

        def p_alive(self, *stats):
            self.calls += 1
            return super().p_alive(*stats)

    fast = Counting.from_params(**FAST.params_)
    now = engine.watermark
    moved = {u for u, plan in planned.items() if plan.next_check > now and lapse_risk_by_render(engine.state(u), plan.next_check - 1, purchase_models(FAST)) >= 0.7}
    assert moved and len(moved) < len(planned)
    models = purchase_models(fast)
    event = events[change]
    effects = engine.process(Record(EVENTS, EVENTS, change, event["user_id"].encode(), orjson.dumps(event)), now_ms=START_MS + 400 * DAY, models=models)
    assert engine.counts["checks_brought_forward"] == len(moved)
    written = {e.key.decode() for e in effects if isinstance(e, Put) and e.key != PROGRESS_KEY} | set(engine.changed)
    assert written - {"clock"} == moved  # only their states are written again
    # one P(alive) for each planned user, a few more for each moved one
    assert fast.calls <= len(planned) + len(moved) * 8


@pytest.mark.slow
def test_an_alerts_user_is_written_right_after_it_so_a_crash_after_that_write_does_not_fire_it_again(history, models):
    records = records_of(history)
    _, log = run(records, {}, models)
    changelog, written_after = [], {}
    for effects in log:
        alerts = {e.payload.user_id: e.payload for e in effects if isinstance(e, Send) and e.kind == "alert"}
        flushed = bool(effects) and isinstance(effects[-1], Put) and effects[-1].key == PROGRESS_KEY
        for effect in effects:
            if not isinstance(effect, (Put, Delete)):
                continue
            changelog.append(effect)
            user = effect.key.decode()
            if user in alerts and not flushed:  # the state that remembers the alert
                assert orjson.loads(effect.value)["alert"]["last_fired_ms"] == alerts[user].ts_ms
                written_after[alerts[user].alert_id] = len(changelog)
    assert len(written_after) >= 2, "alerts between flushes should be in the history, so the test covers them"
    for alert_id, cut in written_after.items():
        fired_again = []
        for kept in (cut - 1, cut):  # the crash came right before, then right after, the alerted user's state was written
            store: dict = {}
            apply_to(store, changelog[:kept])
            _, again = run(records, store, models)
            fired_again.append(alert_id in [e.payload.alert_id for effects in again for e in effects if isinstance(e, Send) and e.kind == "alert"])
        assert fired_again == [True, False], alert_id
