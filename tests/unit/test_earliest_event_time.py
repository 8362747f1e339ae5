"""Old history: the earliest accepted event time is a setting, from the environment to admission."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from online_models.admission import admit_event
from online_models.events import INVALID_FIELD, MIN_TS_MS, InvalidEvent, to_epoch_ms
from online_models.processor import EVENTS, EngineConfig, PartitionProcessor, Record
from online_models.replay import replay_history
from streams.settings import Settings

PURCHASE_1997 = {"event_id": "o1", "user_id": "c0001", "type": "pay", "ts": "1997-03-14T10:00:00Z", "amount": 29.9}
SINCE_1997 = "1997-01-01T00:00:00Z"


def raw(event: dict) -> bytes:
    return orjson.dumps(event)


def test_by_default_an_event_before_2000_is_refused_as_before():
    with pytest.raises(InvalidEvent) as caught:
        admit_event(b"c0001", raw(PURCHASE_1997), now_ms=MIN_TS_MS + 10**12)
    assert caught.value.reason == INVALID_FIELD and "2000-01-01T00:00:00Z" in caught.value.detail
    assert Settings().engine_config().earliest_event_ms == MIN_TS_MS


def test_an_earlier_bound_admits_old_history():
    event = admit_event(b"c0001", raw(PURCHASE_1997), now_ms=MIN_TS_MS, earliest_ms=to_epoch_ms(SINCE_1997))
    assert event.ts == to_epoch_ms(PURCHASE_1997["ts"])
    with pytest.raises(InvalidEvent):  # the bound still holds below it
        admit_event(b"c0001", raw({**PURCHASE_1997, "ts": "1996-12-31T23:59:59Z"}), now_ms=MIN_TS_MS, earliest_ms=to_epoch_ms(SINCE_1997))


def test_the_setting_reaches_the_engine_from_the_environment(monkeypatch):
    monkeypatch.setenv("PORTRAITS_EARLIEST_EVENT_TIME", SINCE_1997)
    config = Settings().engine_config()
    assert config.earliest_event_ms == to_epoch_ms(SINCE_1997)
    engine = PartitionProcessor(0, {}, config)
    ts = to_epoch_ms(PURCHASE_1997["ts"])
    engine.process(Record(EVENTS, EVENTS, 0, b"c0001", raw(PURCHASE_1997)), now_ms=ts)
    assert engine.counts["events_processed"] == 1 and engine.state("c0001").purchases == 1
    monkeypatch.setenv("PORTRAITS_EARLIEST_EVENT_TIME", "852076800000")  # epoch milliseconds work too
    assert Settings().engine_config().earliest_event_ms == 852_076_800_000


@pytest.mark.parametrize("value", ["last year", "1997-01-01T00:00:00", "-5", "99999999999999"])
def test_a_setting_that_is_no_instant_stops_at_start(value):
    with pytest.raises(ValidationError):
        Settings(earliest_event_time=value)


@pytest.mark.slow
def test_a_1997_98_purchase_log_replays_whole():
    start = to_epoch_ms("1997-01-01T00:00:00Z")
    log = [
        {"event_id": f"o{i}", "user_id": f"c{i % 40:04}", "type": "pay", "ts": start + i * 7_200_000, "amount": 10.0 + i % 7}
        for i in range(6000)  # 6000 two-hourly orders: 1997 into 1998
    ]
    assert replay_history(log).rejected == len(log)  # what happened before: all of it refused
    result = replay_history(log, engine=EngineConfig(earliest_event_ms=start, retention_ms=0, sweep_batch=None))
    assert result.rejected == 0 and result.events == len(log)
    assert sum(state.purchases for state in result.states.values()) == len(log)
