"""Ids, categories and profile values hold no control or bidirectional character; ids with ``/`` work
end to end (admitted, looked up, erased); an empty pseudonym key is an error, not pseudonyms off."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from online_models import events as ev
from online_models.admission import admit_erasure, admit_event, admit_profile
from streams.settings import Settings
from tests.unit.test_api_synthetic import auth, make_client, make_store, synthetic_portraits

NOW = 1_714_536_000_000
FORBIDDEN = ["\u202e", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u200f", "\u2066", "\u2028", "\u061c"]


def event(**fields) -> bytes:
    return orjson.dumps({"event_id": "e1", "user_id": "u1", "type": "view", "ts": NOW, **fields})


@pytest.mark.parametrize("char", FORBIDDEN)
@pytest.mark.parametrize("field", ["user_id", "event_id", "category", "item_id", "device", "channel", "text"])
def test_control_and_bidirectional_characters_are_dead_lettered_with_a_clear_reason(field, char):
    value = f"ab{char}cd"
    if field == "text" and char == "\u2028":  # a line separator is a line break in free text: kept
        assert admit_event(b"u1", event(text=value), now_ms=NOW).text == value
        return
    with pytest.raises(ev.InvalidEvent) as caught:
        admit_event(value.encode() if field == "user_id" else b"u1", event(**{field: value}), now_ms=NOW)
    assert caught.value.reason == ev.INVALID_FIELD
    assert caught.value.detail.startswith(f"{field}: holds the control or bidirectional character U+{ord(char):04X} at position 2")


@pytest.mark.parametrize("field", ["user_id", "region", "gender", "age_band", "member_level", "city_tier"])
def test_profile_values_hold_no_control_character(field):
    profile = {"user_id": "u1", "ts": NOW, field: "x\u202ey"}
    with pytest.raises(ev.InvalidEvent) as caught:
        admit_profile("x\u202ey".encode() if field == "user_id" else b"u1", orjson.dumps(profile))
    assert caught.value.reason == ev.INVALID_FIELD and "U+202E" in caught.value.detail


def test_an_erasure_of_an_id_with_a_control_character_is_refused():
    request = {"request_id": "r1", "user_id": "a\x00b", "requested_at": NOW}
    with pytest.raises(ev.InvalidEvent) as caught:
        admit_erasure(b"a\x00b", orjson.dumps(request))
    assert "U+0000" in caught.value.detail


@pytest.mark.parametrize("user_id", ["u0001", "shop/7/u1", "u\u00e9", "\u4e2d\u6587", "a b", "x" * 128, "\U0001f600", "a\u200db"])
def test_ids_that_were_valid_stay_valid_and_slashes_are_admitted(user_id):
    admitted = admit_event(user_id.encode(), event(user_id=user_id, text="two\nlines\tand a tab"), now_ms=NOW)
    assert admitted.user_id == user_id
    assert admit_profile(user_id.encode(), orjson.dumps({"user_id": user_id, "ts": NOW, "region": "Zhejiang"})).user_id == user_id


@pytest.mark.parametrize("fast", [True, False])
def test_an_id_with_a_slash_is_looked_up_and_erased(tmp_path, fast):
    from api.auth import ApiSettings

    portraits = list(synthetic_portraits(2))
    portraits[0]["user_id"] = "shop/7/u1"
    store = make_store(tmp_path, portraits)
    sent = []

    class Producer:
        def send(self, topic, key, value):
            sent.append((topic, key, value))
            return type("Done", (), {"get": lambda self, timeout: None})()

        def flush(self, timeout):
            pass

    try:
        with make_client(store, api_settings=ApiSettings(api_fast_lookups=fast), producer=Producer()) as client:
            for url in ("/v1/users/shop/7/u1/portrait", "/v1/users/shop%2F7%2Fu1/portrait"):
                response = client.get(url, headers=auth())
                assert response.status_code == 200 and response.json()["user_id"] == "shop/7/u1"
            erased = client.delete("/v1/users/shop/7/u1", headers=auth("admin"))
            assert erased.status_code == 202, erased.text
            assert sent[0][1] == b"shop/7/u1" and orjson.loads(sent[0][2])["user_id"] == "shop/7/u1"
            refused = client.get("/v1/users/a%E2%80%AEb/portrait", headers=auth())
            assert refused.status_code == 422 and "U+202E" in refused.text
            assert client.delete("/v1/users/a%00b", headers=auth("admin")).status_code == 422
            # a line break is refused like any other control character, wherever it is in the id
            for line_break in ("a%0Ab", "shop/7/u1%0A", "%0A", "a%0A%0Db"):
                for method, url in (("delete", f"/v1/users/{line_break}"), ("get", f"/v1/users/{line_break}/portrait")):
                    refused = getattr(client, method)(url, headers=auth("admin"))
                    assert refused.status_code == 422 and "U+000A" in refused.text, (method, url, refused.text)
            assert len(sent) == 1, "only the valid id was erased"
    finally:
        store.close()


def test_an_empty_pseudonym_key_stops_the_start_with_a_clear_message(monkeypatch):
    for empty in ("", "  "):
        monkeypatch.setenv("PORTRAITS_PSEUDONYM_KEY", empty)
        with pytest.raises(ValidationError, match="PORTRAITS_PSEUDONYM_KEY is set but empty"):
            Settings()
    monkeypatch.delenv("PORTRAITS_PSEUDONYM_KEY")
    assert Settings().pseudonym_secret() is None
    monkeypatch.setenv("PORTRAITS_PSEUDONYM_KEY", "k")
    assert Settings().pseudonym_secret() == b"k"
