"""Erasure and pseudonymisation in the pure core: the request contract, its records, what it forgets."""

from __future__ import annotations

import hashlib
import hmac

import orjson
import pytest

from online_models.admission import admit_erasure, admit_event, admit_profile
from online_models.erasure import (
    ERASURE_HEADER,
    ErasureRequest,
    erasure_records,
    forget_local,
    marker_request,
    parse_erasure,
)
from online_models.events import InvalidEvent
from online_models.population import PopulationConfig, PopulationModels
from online_models.pseudonym import PSEUDONYM_LENGTH, pseudonym, user_key
from online_models.schedule import CheckSchedule
from streams import topics

T0 = 1_714_536_000_000


def request_bytes(**fields) -> bytes:
    return orjson.dumps({"request_id": "r1", "user_id": "u1", "requested_at": T0, **fields})


def test_the_pseudonym_is_hmac_sha256_truncated():
    # RFC 4231 test case 2: HMAC-SHA256(key "Jefe", "what do ya want for nothing?")
    rfc = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert pseudonym("what do ya want for nothing?", b"Jefe") == rfc[:PSEUDONYM_LENGTH]
    ours = pseudonym("用户-42", b"k")
    assert ours == hmac.new(b"k", "用户-42".encode(), hashlib.sha256).hexdigest()[:32]
    assert len({pseudonym(f"u{i}", b"k") for i in range(2000)}) == 2000
    assert user_key("u1", None) == "u1" and user_key("u1", b"k") == pseudonym("u1", b"k")
    with pytest.raises(ValueError):
        pseudonym("u1", b"")


def test_admission_checks_the_key_against_the_real_id_then_pseudonymises():
    raw = b'{"event_id":"e1","user_id":"u1","type":"view","ts":1714536000000}'
    event = admit_event(b"u1", raw, now_ms=T0, pseudonym_key=b"k")
    assert event.user_id == pseudonym("u1", b"k") and event.event_id == "e1"
    with pytest.raises(InvalidEvent) as error:
        admit_event(pseudonym("u1", b"k").encode(), raw, now_ms=T0, pseudonym_key=b"k")
    assert error.value.reason == "key_mismatch"
    profile = admit_profile(b"u1", b'{"user_id":"u1","ts":1714536000000,"gender":"female"}', pseudonym_key=b"k")
    assert profile.user_id == pseudonym("u1", b"k") and profile.attributes() == {"gender": "female"}
    assert admit_event(b"u1", raw, now_ms=T0).user_id == "u1"  # off without a key


def test_erasure_requests_are_validated_like_any_record():
    assert parse_erasure(request_bytes()) == ErasureRequest(request_id="r1", user_id="u1", requested_at=T0)
    cases = {
        b"{nope": "malformed_json",
        b"[1]": "not_an_object",
        orjson.dumps({"request_id": "r1", "requested_at": T0}): "missing_field",
        request_bytes(user_id=""): "invalid_field",
        request_bytes(requested_at="yesterday"): "invalid_field",
        request_bytes(request_id=7): "invalid_field",
        request_bytes(user_id="\x00progress"): "invalid_field",  # the worker's own table keys start with NUL
    }
    for raw, reason in cases.items():
        with pytest.raises(InvalidEvent) as error:
            parse_erasure(raw)
        assert error.value.reason == reason, raw
    with pytest.raises(InvalidEvent) as error:
        admit_erasure(b"u2", request_bytes())
    assert error.value.reason == "key_mismatch"
    request, stored = admit_erasure(b"u1", request_bytes(), pseudonym_key=b"k")
    assert request.user_id == "u1" and stored == pseudonym("u1", b"k")
    assert admit_erasure(b"u1", request_bytes())[1] == "u1"


def test_an_erasure_tombstones_the_compacted_topics_and_marks_the_alerts():
    request = parse_erasure(request_bytes(request_id="req-9"))
    stored = pseudonym("u1", b"k")
    sent = erasure_records(request, stored)
    by_topic = {record.topic: record for record in sent}
    assert len(by_topic) == len(sent) == 4
    assert set(by_topic) <= {spec.name for spec in topics.TOPICS}
    compacted = {spec.name for spec in topics.TOPICS if spec.configs.get("cleanup.policy") == "compact"}
    assert {"portraits", "profiles"} <= compacted
    for name in ("portraits", "profiles"):
        assert by_topic[name].value is None
        assert dict(by_topic[name].headers) == {ERASURE_HEADER: b"req-9"}
    assert by_topic["portraits"].key == stored.encode()
    assert by_topic["profiles"].key == b"u1"  # the profiles topic is keyed as the shop sends it
    marker = orjson.loads(by_topic["churn-alerts"].value)
    assert by_topic["churn-alerts"].key == stored.encode() and marker_request(marker) == "req-9"
    assert orjson.loads(by_topic["model-training"].value) == {"kind": "forget", "user_id": stored}
    assert marker_request({"alert_id": "a1", "user_id": "u1"}) is None
    assert marker_request({"erased": "yes", "request_id": "r"}) is None
    assert erasure_records(request, stored) == sent  # the same records every time: repeats are harmless


def test_forgetting_locally_drops_the_schedule_entry_and_the_pending_publication():
    schedule, pending = CheckSchedule(), {"u1": 0, "u2": 1}
    schedule.set("u1", 100)
    schedule.set("u2", 200)
    forget_local("u1", schedule=schedule, pending=pending)
    assert "u1" not in schedule and pending == {"u2": 1}
    assert schedule.pop_due(10_000) == ["u2"]
    forget_local("u1", schedule=schedule, pending=pending)  # absent: nothing to do, no error
    forget_local("u9", schedule=None, pending=pending)


def purchase_sample(user: str, x: int) -> dict:
    portrait = {
        "user_id": user,
        "as_of": "2024-05-01T04:00:00.000Z",
        "first_purchase": "2024-03-01T00:00:00.000Z",
        "last_purchase": "2024-04-20T00:00:00.000Z",
        "lifetime": {"purchases": x + 1, "spend": 100.0 * (x + 1)},
        "purchase_days": x + 1,
        "windows": {"30d": {"purchases": 1, "spend": 50.0}},
    }
    return {"kind": "user", "ts": T0, "portrait": portrait}


def test_the_trainer_forgets_a_user_and_its_next_snapshot_no_longer_names_them():
    models = PopulationModels(PopulationConfig(segment_warmup=10_000, churn_min_buyers=10_000))
    for i in range(5):
        models.learn(purchase_sample(f"buyer-{i}", i))
    assert "buyer-3" in models.purchase_sample, models.purchase_sample
    version = models.version
    models.learn({"kind": "forget", "user_id": "buyer-3"})
    assert "buyer-3" not in models.purchase_sample and len(models.purchase_sample) == 4
    assert models.version > version  # a new snapshot will replace the one that named the user
    assert b"buyer-3" not in models.to_bytes() and b"buyer-2" in models.to_bytes()
    assert models.forget("never-seen") is False
