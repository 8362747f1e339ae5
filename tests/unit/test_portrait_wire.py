"""The published portraits stay byte for byte what they were: a simulated shop's replay against a fixture.

``tests/unit/fixtures/portraits-wire.jsonl.gz`` holds the ``orjson`` bytes of every portrait of
:func:`tests.unit.wire_portraits.wire_lines` (rendered alone and enriched), made by the plain-dict
renderer the typed portrait replaced; regenerate it only for an intended change of the wire format.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.unit.wire_portraits import wire_lines

FIXTURE = Path(__file__).parent / "fixtures" / "portraits-wire.jsonl.gz"


def test_rendered_and_enriched_portraits_serialise_to_the_same_bytes_as_before():
    expected = gzip.decompress(FIXTURE.read_bytes()).splitlines()
    actual = list(wire_lines())
    assert len(actual) == len(expected) == 600
    for n, (line, before) in enumerate(zip(actual, expected)):
        assert line == before, f"portrait line {n} differs:\n{line[:400]!r}\n{before[:400]!r}"
