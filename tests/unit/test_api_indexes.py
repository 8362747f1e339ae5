"""Secondary indexes and running aggregates kept with the portraits, on a real temporary RocksDB."""

from __future__ import annotations

import copy
import random

import orjson

from api import indexes as ix
from api.indexes import PORTRAITS_SPACE, PortraitSpace
from api.store import LocalStore
from tests.unit.test_api_synthetic import make_store, records, synthetic_portraits


def stored_postings(store: LocalStore) -> set[bytes]:
    lower, upper = ix.INDEX_SPACE, b"i;"
    return {k for k in store.keys_between(lower, upper) if not k.startswith(b"i:alert_")}


def expected_postings(portraits: dict[str, dict]) -> set[bytes]:
    return {
        ix.posting_key(index, value, user.encode())
        for user, portrait in portraits.items()
        for index, value in ix.postings(portrait)
    }


def running(store: LocalStore) -> dict[str, int]:
    handler = store.handler(PORTRAITS_SPACE)
    assert isinstance(handler, PortraitSpace)
    return handler.aggregates()


def test_a_portrait_is_listed_under_each_indexed_value(tmp_path):
    portrait = {
        "user_id": "u1",
        "rfm": {"layer": "potential"},
        "lifecycle": "active",
        "segment": {"id": 3, "name": "young trend seekers"},
        "tags": ["night_owl", "loyal", "night_owl"],
        "top_categories": [{"category": "snacks", "score": 9.0}, {"category": "toys", "score": 2.0}],
        "profile": {"gender": "female", "city_tier": 2, "region": "Zhe:jiang\x1f%"},
        "windows": {"7d": {"purchases": 0}, "30d": {"purchases": 2}, "90d": {"purchases": 5}},
        "churn": {"risk": 0.25},
    }
    store = make_store(tmp_path, [portrait])
    keys = {k.replace(b"u1", b"") for k in stored_postings(store)}
    sep = b"\x1f"
    expected = {
        b"i:all" + sep + sep,
        b"i:layer" + sep + b"potential" + sep,
        b"i:life" + sep + b"active" + sep,
        b"i:seg" + sep + b"3" + sep,
        b"i:tag" + sep + b"night_owl" + sep,
        b"i:tag" + sep + b"loyal" + sep,
        b"i:topcat" + sep + b"snacks" + sep,
        b"i:cat" + sep + b"snacks" + sep,
        b"i:cat" + sep + b"toys" + sep,
        b"i:attr.gender" + sep + b"female" + sep,
        b"i:attr.city_tier" + sep + b"2" + sep,
        b"i:attr.region" + sep + b"Zhe:jiang%1F%25" + sep,
        b"i:pay7" + sep + b"0000000000" + sep,
        b"i:pay30" + sep + b"0000000002" + sep,
        b"i:pay90" + sep + b"0000000005" + sep,
        b"i:risk" + sep + ix.encode_float(0.25) + sep,
    }
    assert keys == expected
    assert {ix.posting_user(k) for k in stored_postings(store)} == {b"u1"}
    store.close()


def test_an_update_moves_the_postings_and_a_tombstone_removes_them(tmp_path):
    old = {"user_id": "u1", "rfm": {"layer": "potential"}, "tags": ["a", "b"], "profile": {"gender": "male"}}
    store = make_store(tmp_path, [old])
    new = {"user_id": "u1", "rfm": {"layer": "high_value"}, "tags": ["b", "c"], "profile": {"gender": "male"}}
    store.apply("portraits", PORTRAITS_SPACE, records([new], start_offset=1))
    assert stored_postings(store) == expected_postings({"u1": new})
    assert running(store) == ix.aggregate([new])
    assert running(store)[ix.agg("n", "layer", "high_value")] == 1
    assert ix.agg("n", "layer", "potential") not in running(store)

    store.apply("portraits", PORTRAITS_SPACE, [(0, 2, b"u1", None)])
    assert stored_postings(store) == set()
    assert running(store) == {}
    assert store.count(PORTRAITS_SPACE) == 0
    store.close()


def test_several_versions_of_a_user_in_one_batch_chain(tmp_path):
    store = make_store(tmp_path)
    versions = [
        {"user_id": "u1", "lifecycle": "new"},
        {"user_id": "u1", "lifecycle": "active"},
        None,
        {"user_id": "u1", "lifecycle": "at_risk", "tags": ["x"]},
    ]
    batch = [(0, i, b"u1", None if v is None else orjson.dumps(v)) for i, v in enumerate(versions)]
    store.apply("portraits", PORTRAITS_SPACE, batch)
    assert stored_postings(store) == expected_postings({"u1": versions[-1]})
    assert running(store) == ix.aggregate([versions[-1]])
    store.close()


def test_random_updates_and_deletes_keep_indexes_and_aggregates_exact(tmp_path):
    rng = random.Random(5)
    pool = list(synthetic_portraits(400, seed=9))
    current: dict[str, dict] = {}
    store = make_store(tmp_path)
    offset = 0
    for _ in range(30):
        batch = []
        for _ in range(rng.randrange(1, 60)):
            user = f"u{rng.randrange(120):03d}"
            if rng.random() < 0.2:
                batch.append((0, offset, user.encode(), None))
                current.pop(user, None)
            else:
                portrait = copy.deepcopy(rng.choice(pool))
                portrait["user_id"] = user
                batch.append((0, offset, user.encode(), orjson.dumps(portrait)))
                current[user] = portrait
            offset += 1
        store.apply("portraits", PORTRAITS_SPACE, batch)
    assert stored_postings(store) == expected_postings(current)
    assert running(store) == ix.aggregate(current.values())
    assert store.count(PORTRAITS_SPACE) == len(current)
    assert store.offsets("portraits") == {0: offset}
    store.close()

    # persisted: a reopened store has the same aggregates without a rebuild
    reopened = make_store(tmp_path)
    assert running(reopened) == ix.aggregate(current.values())
    reopened.close()


def test_a_store_without_indexes_rebuilds_them_at_open(tmp_path):
    portraits = list(synthetic_portraits(200, seed=2))
    store = make_store(tmp_path, portraits)
    before = stored_postings(store)
    # simulate a store written before the indexes existed (or by an older index version)
    store.db.delete_range(b"i:", b"i;")
    store.db.delete(b"\x00version:portrait-indexes")
    store.db.delete(b"\x00aggregates:portraits")
    store.close()
    reopened = make_store(tmp_path)
    assert stored_postings(reopened) == before == expected_postings({p["user_id"]: p for p in portraits})
    assert running(reopened) == ix.aggregate(portraits)
    reopened.close()


def test_a_value_that_is_not_a_portrait_is_stored_and_only_listed(tmp_path):
    store = make_store(tmp_path)
    store.apply("portraits", PORTRAITS_SPACE, [(0, 0, b"u1", b"not json"), (0, 1, b"u2", b"[1, 2]")])
    assert store.get(PORTRAITS_SPACE, "u1") == b"not json"
    assert stored_postings(store) == {b"i:all\x1f\x1fu1", b"i:all\x1f\x1fu2"}  # listed, nothing else
    assert running(store) == {"users": 2}
    store.close()


def test_float_encoding_orders_like_the_numbers():
    rng = random.Random(1)
    values = [rng.uniform(-5, 5) for _ in range(500)] + [0.0, -0.0, 1.0, 0.7, 0.70000001]
    assert sorted(values) == sorted(values, key=ix.encode_float)
    assert ix.encode_float(-0.0) == ix.encode_float(0.0)
