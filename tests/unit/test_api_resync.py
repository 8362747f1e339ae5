"""A re-read of a compacted topic drops from the API's store what the topic no longer holds.

tests/integration/test_api_resync.py has the broker's cleaner remove a tombstone while the API is down.
"""

from __future__ import annotations

import orjson

from api import indexes as ix
from api.resync import Guarantee, Resync, stale_reason
from tests.unit.test_api_indexes import expected_postings, running, stored_postings
from tests.unit.test_api_synthetic import make_store, records, synthetic_portraits

TOPIC = "portraits"


def test_keys_the_topic_lost_go_with_their_postings_and_their_share_of_the_totals(tmp_path):
    portraits = list(synthetic_portraits(20, seed=5))
    store = make_store(tmp_path)
    store.apply(TOPIC, ix.PORTRAITS_SPACE, records(portraits))
    assert store.offsets(TOPIC) == {0: 20}

    # meanwhile users 15-19 were erased and their tombstones cleaned away with every portrait before them;
    # the topic still holds users 0-14 below offset 20, then an update of user 3 and a tombstone of user 4
    updated = {**portraits[3], "tags": ["brand_new_tag"]}
    topic = records(portraits[:15]) + [(0, 20, b"u03", orjson.dumps(updated)), (0, 21, b"u04", None)]
    resync = Resync(TOPIC, ix.PORTRAITS_SPACE, resume={0: 20}, targets={0: 22}, started_ms=1_000, reason="test")
    store.begin_resync(TOPIC, ix.PORTRAITS_SPACE, 1_000)
    assert store.resync_interrupted(TOPIC)
    known, new = resync.split(0, topic)
    assert [r[1] for r in new] == [20, 21]
    store.mark_seen(ix.PORTRAITS_SPACE, known)
    store.apply(TOPIC, ix.PORTRAITS_SPACE, new, mark=True)
    assert store.count(ix.PORTRAITS_SPACE) == 19  # nothing dropped before the re-read reached its targets

    assert store.finish_resync(TOPIC, ix.PORTRAITS_SPACE, 1_000, [0]) == 5
    expected = {p["user_id"]: p for p in portraits[:15] if p["user_id"] != "u04"}
    expected["u03"] = updated
    assert sorted(k.decode() for k, _ in store.scan(ix.PORTRAITS_SPACE)) == sorted(expected)
    assert stored_postings(store) == expected_postings(expected)
    assert running(store) == ix.aggregate(expected.values())
    assert store.count(ix.PORTRAITS_SPACE) == len(expected)
    assert not store.resync_interrupted(TOPIC) and store.synced(TOPIC) == {0: 1_000}
    assert store.offsets(TOPIC) == {0: 22}
    assert not list(store.keys_between(b"\x00seen:", b"\x00seen;"))
    store.close()


def test_a_re_read_cut_short_is_made_again_after_a_restart(tmp_path):
    store = make_store(tmp_path)
    store.apply(TOPIC, ix.PORTRAITS_SPACE, records(list(synthetic_portraits(3))))
    store.record_synced(TOPIC, {0: 5_000})
    store.begin_resync(TOPIC, ix.PORTRAITS_SPACE, 5_000)
    store.close()
    store = make_store(tmp_path)
    interrupted = store.resync_interrupted(TOPIC)
    compacted = Guarantee(compacted=True, delete_retention_ms=86_400_000)
    args = (store.offsets(TOPIC), store.synced(TOPIC), {0: 0}, {0: 9})
    assert stale_reason(compacted, *args, now_ms=6_000) is None  # the sync time alone says it is fresh
    assert stale_reason(compacted, *args, now_ms=6_000, interrupted=interrupted) == "a re-read from the start was cut short"
    store.close()
