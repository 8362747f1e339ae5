"""The paths the query side reads stored portraits by: declared against the schema, and found in real portraits."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from api import portrait_paths as paths
from api.audiences import SOURCE_PATHS, pick
from api.models import COUNTED_EVENTS
from api.portrait_paths import PortraitPath, declare

FIXTURE = Path(__file__).parent / "fixtures" / "portraits-wire.jsonl.gz"


def declared() -> dict[str, PortraitPath]:
    """Every path the module declares, by name (the mappings' paths under name[key])."""
    found = {}
    for name, value in vars(paths).items():
        if isinstance(value, PortraitPath):
            found[name] = value
        elif name.isupper() and hasattr(value, "items"):
            found.update({f"{name}[{key}]": path for key, path in value.items()})
        elif name.isupper() and isinstance(value, tuple) and all(isinstance(v, PortraitPath) for v in value):
            found.update({f"{name}[{path.dotted}]": path for path in value})
    return found


def test_every_declared_path_reads_a_value_from_real_published_portraits():
    portraits = [orjson.loads(line) for line in gzip.decompress(FIXTURE.read_bytes()).splitlines()]
    api_only = {"NEXT_CATEGORIES"}  # added by the API from the association summaries, never published
    profile = {f"PROFILE_ATTRIBUTES[{name}]" for name in paths.PROFILE_ATTRIBUTES}  # not every profile has all
    unfitted = {"CLV_VALUE"}  # null: the shop is too small for a spend model, so no portrait has a value
    for name, path in declared().items():
        if name in api_only:
            continue
        values = [path.read(p) for p in portraits]
        if name not in profile | unfitted:
            assert any(v is not None for v in values), name
        for portrait, value in zip(portraits, values):
            node = portrait
            for step in path:  # the same value, walked by hand
                node = None if node is None else node[step] if isinstance(node, list) else node.get(step)
            assert value == node, name
    assert len(declared()) >= 30


@pytest.mark.parametrize(
    "dotted, message",
    [
        ("windows.30d.orders", "WindowTotals has no field 'orders'"),
        ("windows.d30.spend", "Windows has no field 'd30'"),
        ("rfm.segment", "Rfm has no field 'segment'"),
        ("lifecycle.stage", "no step 'stage'"),
        ("top_categories.first", "no step 'first'"),
        ("profile.favourite_colour", "ProfileAttributes has no field 'favourite_colour'"),
    ],
)
def test_a_path_the_schema_does_not_have_is_refused_when_declared(dotted, message):
    with pytest.raises(ValueError, match=message):
        declare(dotted)


def test_reading_is_defensive():
    path = declare("top_categories.0.category")
    assert path.read({"top_categories": [{"category": "snacks"}]}) == "snacks"
    assert path.read({"top_categories": []}) is None and path.read({"top_categories": {"0": 1}}) is None
    assert path.read({"top_categories": "x"}) is None and path.read(None) is None and path.read([]) is None
    assert declare("devices.ios").read({"devices": {"ios": 0.5}}) == 0.5
    assert declare("segment.id").read({"segment": None}) is None
    assert pick({"a": [{"b": 1}]}, "a.-1.b") == 1 and pick({"a": {"0": 2}}, "a.0") == 2


def test_the_audiences_condition_sources_are_declared_paths():
    sources = {source for by_days in COUNTED_EVENTS.values() for source in by_days.values()}
    assert sources <= set(SOURCE_PATHS) and "lifetime.spend" in SOURCE_PATHS and "windows.7d.spend" in SOURCE_PATHS
    assert all(SOURCE_PATHS[s] == declare(s) for s in SOURCE_PATHS)
