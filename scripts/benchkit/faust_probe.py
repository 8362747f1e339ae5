"""A bare Faust app for :mod:`benchkit.ceiling`: reads a topic and does one fixed thing per record.

Run as ``python -m benchkit.faust_probe worker`` with ``PROBE_*`` variables: ``PROBE_MODE`` is
``read`` (nothing), ``take`` (nothing, the records taken in batches of up to 500 with
``Stream.take_events``), ``send`` (one record sent per record read with ``Topic.send``), ``rawsend``
(the same through the app's producer itself, ``app.producer.send``) or ``table`` (one RocksDB
table write, with its changelog record, per record read). It writes ``<count> <seconds> <cpu seconds>`` to
``PROBE_OUT`` after ``PROBE_RECORDS`` records, counted from the first, and exits. Same
settings as the product's worker where they matter (raw serialisers, acks=-1, no spinner).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import faust

from streams.quiet_worker import QuietWorker

MODE = os.environ.get("PROBE_MODE", "read")
RECORDS = int(os.environ.get("PROBE_RECORDS", "50000"))
OUT = Path(os.environ.get("PROBE_OUT", "probe.out"))


app = faust.App(
    os.environ["PROBE_APP_ID"],
    Worker=QuietWorker,
    broker=f"kafka://{os.environ['PROBE_KAFKA']}",
    store="rocksdb://",
    datadir=os.environ["PROBE_DATA"],
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    producer_linger=0.005,
    topic_partitions=int(os.environ.get("PROBE_PARTITIONS", "8")),
    web_port=int(os.environ["PROBE_WEB_PORT"]),
    web_host="127.0.0.1",
)
source = app.topic(os.environ["PROBE_TOPIC"])
SINK_NAME = os.environ["PROBE_SINK"]
sink = app.topic(SINK_NAME)
table = app.Table("probe", partitions=int(os.environ.get("PROBE_PARTITIONS", "8")), key_type=bytes, value_type=bytes)
_seen = {"count": 0, "first": 0.0, "first_cpu": 0.0}


def _count(n: int = 1) -> None:
    if not _seen["count"]:
        _seen["first"], _seen["first_cpu"] = time.monotonic(), time.process_time()
    _seen["count"] += n
    if _seen["count"] >= RECORDS:
        OUT.write_text(f"{_seen['count']} {time.monotonic() - _seen['first']} {time.process_time() - _seen['first_cpu']}")
        os._exit(0)


@app.agent(source)
async def probe(stream):
    if MODE == "take":
        async for events in stream.take_events(500, within=0.05):
            _count(len(events))
        return
    async for event in stream.events():
        message = event.message
        if MODE == "send":
            await sink.send(key=message.key, value=message.value)
        elif MODE == "rawsend":
            await app.producer.send(SINK_NAME, message.key, message.value, None, None, None)
        elif MODE == "table":
            table[message.key] = message.value
        _count()


if __name__ == "__main__":
    app.main()
