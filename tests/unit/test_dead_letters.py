"""Dead letters too big for their topic are cut, with headers that say so and point at the whole record."""

from __future__ import annotations

from online_models.processor import (
    DEAD_LETTERS,
    EVENTS,
    MAX_DEAD_LETTER_BYTES,
    MAX_DEAD_LETTER_KEY_BYTES,
    EngineConfig,
    PartitionProcessor,
    Record,
)

NOW = 1_788_307_200_000


def letter_for(record: Record, config: EngineConfig | None = None):
    engine = PartitionProcessor(3, {}, config or EngineConfig())
    (letter,) = engine.process(record, now_ms=NOW)
    assert letter.topic == DEAD_LETTERS
    return letter, dict(letter.headers), engine


def test_an_oversized_dead_letter_is_cut_with_its_original_size_and_source():
    value = b'{"event_id": "e1", "blob": "' + b"x" * 2_000_000 + b'"'  # malformed: no closing brace
    letter, headers, engine = letter_for(Record(EVENTS, "shop.events", 41, b"u1", value))
    assert len(letter.key) + len(letter.value) == MAX_DEAD_LETTER_BYTES and value.startswith(letter.value)
    assert headers["truncated"] == b"value" and headers["original.value.bytes"] == str(len(value)).encode()
    assert headers["reason"] == b"malformed_json"
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (b"shop.events", b"3", b"41")
    assert engine.counts["dead_letters_truncated"] == 1 and engine.counts["rejected:malformed_json"] == 1


def test_the_limit_is_a_setting_of_the_engine_and_a_huge_key_is_cut_too():
    key = b"k" * 50_000
    letter, headers, _ = letter_for(Record(EVENTS, EVENTS, 0, key, b"[" * 10_000), EngineConfig(dead_letter_max_bytes=4096))
    assert letter.key == key[:MAX_DEAD_LETTER_KEY_BYTES] and len(letter.key) + len(letter.value) == 4096
    assert headers["truncated"] == b"key,value"
    assert headers["original.key.bytes"] == b"50000" and headers["original.value.bytes"] == b"10000"


def test_a_dead_letter_within_the_limit_is_the_record_as_it_came():
    value = b"{" + b" " * 900_000
    letter, headers, engine = letter_for(Record(EVENTS, EVENTS, 7, b"u1", value))
    assert letter.key == b"u1" and letter.value == value
    assert "truncated" not in headers and "original.value.bytes" not in headers
    assert engine.counts["dead_letters_truncated"] == 0


def test_a_long_detail_is_cut():
    engine = PartitionProcessor(0, {}, EngineConfig())
    letter = engine.dead_letter(Record(EVENTS, EVENTS, 0, b"u1", b"{}"), "apply_failed", "x" * 100_000)
    assert len(dict(letter.headers)["detail"]) <= 4000
