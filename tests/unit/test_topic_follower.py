"""The one follower of compacted topics, as the model feed and the API's store use it, over a fake consumer."""

from __future__ import annotations

import threading
import time
from collections import namedtuple

from kafka import TopicPartition

from api.resync import Guarantee
from api.store import LocalStore, TopicFollower
from online_models.topic_follower import Follower
from streams.model_feed import ModelFeed

Record = namedtuple("Record", "topic partition offset key value headers")


class FakeConsumer:
    """kafka-python's consumer surface over in-memory partitions ``{topic: [records of partition 0]}``."""

    def __init__(self, topics: dict[str, list[Record]]):
        self.topics = topics
        self.at: dict[TopicPartition, int] = {}

    def partitions_for_topic(self, topic):
        return {0} if topic in self.topics else None

    def assign(self, tps):
        self.at = {tp: self.at.get(tp, 0) for tp in tps}

    def seek(self, tp, offset):
        self.at[tp] = offset

    def position(self, tp):
        return self.at[tp]

    def assignment(self):
        return set(self.at)

    def beginning_offsets(self, tps):
        return {tp: self.topics[tp.topic][0].offset if self.topics[tp.topic] else 0 for tp in tps}

    def end_offsets(self, tps):
        return {tp: self.topics[tp.topic][-1].offset + 1 if self.topics[tp.topic] else 0 for tp in tps}

    def poll(self, timeout_ms):
        polled = {}
        for tp, offset in self.at.items():
            batch = [r for r in self.topics[tp.topic] if r.offset >= offset]
            if batch:
                polled[tp] = batch
                self.at[tp] = batch[-1].offset + 1
        if not polled:
            threading.Event().wait(0.005)  # as a broker would, without waiting the whole timeout
        return polled

    def close(self):
        pass


def record(topic: str, offset: int, key: bytes, value: bytes | None) -> Record:
    return Record(topic, 0, offset, key, value, [])


def run_until(follower: Follower, done, consumer: FakeConsumer) -> None:
    follower.consumer = lambda: consumer
    follower.RECHECK_SECONDS = 0.05
    follower.ensure_started()
    follower.ensure_started()  # a second call is harmless
    try:
        assert wait_for(done)
    finally:
        follower.stop()
        follower.join(timeout=5)


def compacted(names: list[str]) -> dict[str, Guarantee]:
    """Every topic compacted, keeping tombstones a day (as the broker's configs would say)."""
    return {name: Guarantee(compacted=True) for name in names}


def wait_for(done, timeout: float = 5.0) -> bool:
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if done():
            return True
        pause.wait(0.01)
    return False


def test_the_model_feed_keeps_each_keys_newest_value():
    feed = ModelFeed("models", ["127.0.0.1:1"])
    log = [record("models", 0, b"snapshot", b"v1"), record("models", 1, b"old", b"x"), record("models", 2, b"old", None),
           record("models", 3, b"snapshot", b"v2")]
    run_until(feed, feed.caught_up.is_set, FakeConsumer({"models": log}))
    assert feed.latest == {b"snapshot": b"v2"} and feed.lag == 0


def test_the_store_follower_resumes_where_the_store_stands_and_waits_for_missing_topics(tmp_path):
    store = LocalStore(tmp_path)
    try:
        store.apply("shop-portraits", b"p:", [(0, 0, b"u0", b'{"user_id":"u0"}')])
        store.record_synced("shop-portraits", {0: int(time.time() * 1000)})  # read to its end a moment ago
        topics = {"shop-portraits": [record("shop-portraits", n, f"u{n}".encode(), b'{"user_id":"u%d"}' % n) for n in range(3)]}
        consumer = FakeConsumer(topics)
        follower = TopicFollower(
            store, {"shop-portraits": b"p:", "shop-models": b"m:"}, ["127.0.0.1:1"], guarantees=compacted
        )
        seen: list[tuple[str, int]] = []
        apply = follower.apply
        follower.apply = lambda topic, records: (seen.extend((topic, r.offset) for r in records), apply(topic, records))

        def models_appear():
            if follower.caught_up.is_set() and "shop-models" not in topics:
                assert follower.missing_topics == ["shop-models"]
                topics["shop-models"] = [record("shop-models", 0, b"summary", b"{}")]
            return ("shop-models", 0) in seen and follower.missing_topics == []

        run_until(follower, models_appear, consumer)
        assert seen == [("shop-portraits", 1), ("shop-portraits", 2), ("shop-models", 0)]
        assert store.offsets("shop-portraits") == {0: 3} and store.count(b"p:") == 3
        assert store.get(b"m:", "summary") == b"{}"
        assert follower.resyncs == 0
    finally:
        store.close()


def test_a_store_back_later_than_the_tombstones_reads_the_topic_again_and_drops_what_it_lost(tmp_path):
    store = LocalStore(tmp_path)
    try:
        store.apply("shop-portraits", b"p:", [(0, n, f"u{n}".encode(), b"{}") for n in range(5)])
        store.record_synced("shop-portraits", {0: int(time.time() * 1000) - 2 * 86_400_000})  # two days ago
        # meanwhile u0, u2 and u4 were erased and the cleaner removed their tombstones; u5 came
        log = [record("shop-portraits", 1, b"u1", b"{}"), record("shop-portraits", 3, b"u3", b"{}"),
               record("shop-portraits", 5, b"u5", b"{}")]
        follower = TopicFollower(store, {"shop-portraits": b"p:"}, ["127.0.0.1:1"], guarantees=compacted)
        run_until(follower, follower.caught_up.is_set, FakeConsumer({"shop-portraits": log}))
        assert sorted(k for k, _ in store.scan(b"p:")) == [b"u1", b"u3", b"u5"] and store.count(b"p:") == 3
        assert follower.resyncs == 1 and follower.resync_removed == 3 and not follower.resyncing
        assert store.offsets("shop-portraits") == {0: 6} and not store.resync_interrupted("shop-portraits")
        assert store.synced("shop-portraits")[0] > int(time.time() * 1000) - 60_000
    finally:
        store.close()


def test_fetched_batches_are_checked_by_the_compiled_crc32c():
    # kafka-python checks every fetched batch's CRC-32C, in pure Python unless the crc32c package is there
    import crc32c
    from kafka.record import util

    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # the CRC-32C check value
    assert util.calc_crc32c.__defaults__[0] is crc32c.crc32c
