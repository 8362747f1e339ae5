"""The event contract: every kind of bad record gets its own reason."""

import pytest

from online_models import events as ev

NOW = 1_714_536_000_000
GOOD = '"event_id":"e","user_id":"u","type":"pay","ts":1714536000000'


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", ev.MALFORMED_JSON),
        (b"\xff\xfe\x00", ev.MALFORMED_JSON),
        (b"[1, 2]", ev.NOT_AN_OBJECT),
        (b'"just a string"', ev.NOT_AN_OBJECT),
        (b'{"user_id":"u","type":"view","ts":1714536000000}', ev.MISSING_FIELD),
        (b'{"event_id":"e","user_id":"u","type":"teleport","ts":1714536000000}', ev.UNKNOWN_TYPE),
        (("{" + GOOD + ',"amount":-3}').encode(), ev.NEGATIVE_AMOUNT),
        (("{" + GOOD + "}").encode(), ev.MISSING_AMOUNT),
        (("{" + GOOD + ',"amount":"lots"}').encode(), ev.INVALID_FIELD),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":{"nested":1}}', ev.INVALID_FIELD),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"2200-01-01T00:00:00Z"}', ev.FUTURE_TIMESTAMP),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"1970-01-02T00:00:00Z"}', ev.INVALID_FIELD),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":"2024-05-01T10:00:00"}', ev.INVALID_FIELD),
        (b'{"event_id":"e","user_id":"u","type":"view","ts":1714536000000,"price":1e999}', ev.INVALID_FIELD),
        (b'{"event_id":"","user_id":"u","type":"view","ts":1714536000000}', ev.INVALID_FIELD),
    ],
)
def test_bad_records_get_their_reason(raw, reason):
    with pytest.raises(ev.InvalidEvent) as caught:
        ev.parse_event(raw, now_ms=NOW)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_timestamps_in_both_forms_agree():
    iso = ev.parse_event(b'{"event_id":"e","user_id":"u","type":"view","ts":"2024-05-01T12:00:00+08:00"}')
    epoch = ev.parse_event(b'{"event_id":"e","user_id":"u","type":"view","ts":1714536000000}')
    assert iso.ts == epoch.ts == NOW


def test_unknown_fields_are_ignored_and_money_is_in_cents():
    event = ev.parse_event(("{" + GOOD + ',"amount":19.99,"colour":"red"}').encode())
    assert event.amount_cents == 1999
    assert ev.parse_event(("{" + GOOD + ',"price":2.5,"quantity":3}').encode()).amount_cents == 750


def test_profile_derives_age_band():
    profile = ev.parse_profile(b'{"user_id":"u","ts":1714536000000,"age":27,"gender":"f","city_tier":2}')
    assert profile.attributes() == {"age": 27, "gender": "f", "city_tier": 2, "age_band": "25-29"}


def test_non_string_type_is_an_invalid_field_and_zero_quantity_costs_nothing():
    with pytest.raises(ev.InvalidEvent) as caught:
        ev.parse_event(b'{"event_id":"e","user_id":"u","type":5,"ts":1714536000000}')
    assert caught.value.reason == ev.INVALID_FIELD
    assert ev.parse_event(("{" + GOOD + ',"price":2.5,"quantity":0}').encode()).amount_cents == 0
    with pytest.raises(ev.InvalidEvent) as caught:
        ev.parse_event(b'{"event_id":"e","user_id":"u","type":"view","ts":100000000000000000000000}', now_ms=None)
    assert caught.value.reason == ev.FUTURE_TIMESTAMP


def test_committed_json_schemas_match_the_models():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "schemas"
    for name, generated in (("event", ev.event_json_schema()), ("profile", ev.profile_json_schema())):
        committed = json.loads((root / f"{name}.schema.json").read_text())
        assert committed == generated  # field for field, the forbidden characters' patterns too
    committed = json.loads((root / "event.schema.json").read_text())
    assert committed["properties"]["type"]["enum"] == list(ev.EVENT_TYPES)
