"""Open-loop HTTP load at a fixed rate (run as its own process): request i starts at t0 + i / rate.

Latency counts from the instant a request was due, so a server that falls behind shows its
queueing (no coordinated omission); ``service`` latency counts from the actual send. Prints
one JSON object.

    python -m benchkit.loadgen --url http://127.0.0.1:8000 --token T --kind portrait --rate 1000 --seconds 30 --users 1000000
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from urllib.parse import urlsplit

import click

from benchkit.stats import summary

#: high-value and potential users at churn risk 0.7 or more: the audience ops act on, first page
AUDIENCE_QUERY = {
    "filter": {"layers": ["high_value", "potential"], "churn_risk": {"min": 0.7}},
    "fields": ["rfm.layer", "churn.risk", "profile.region"],
    "limit": 100,
}


def synthetic_user(index: int, users: int) -> str:
    """The id ``synthetic_portraits`` gives portrait ``index`` of ``users``."""
    return f"u{index:0{len(str(users))}d}"


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a request and reads its answer (with
    Content-Length, as every answer of the API has) at a time. A bare protocol, not an HTTP
    client library: the generator's own cost per request adds to every latency it measures
    and competes with the server for the cores (aiohttp cost about as much as the server)."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.waiter.set_exception(ValueError("an answer without Content-Length"))
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        self.waiter.set_result(int(head[9:12]))

    async def request(self, raw: bytes) -> int:
        """Send one request; its status once the whole answer is in."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


class Pool:
    """Keep-alive connections to one server, opened as needed."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.idle: list[Connection] = []
        self.opened: list[Connection] = []

    async def request(self, raw: bytes, timeout_s: float) -> int:
        connection = None
        while self.idle and connection is None:
            connection = self.idle.pop()  # the most recently used: the server closes idle ones after 5 s
            connection = None if connection.closed else connection
        if connection is None:
            _, connection = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
            self.opened.append(connection)
        try:
            status = await asyncio.wait_for(connection.request(raw), timeout_s)
        except BaseException:
            connection.transport.close()  # a connection in an unknown state is not reused
            raise
        if not connection.closed:
            self.idle.append(connection)
        return status

    def close(self) -> None:
        for connection in self.opened:
            connection.transport.close()


def http_request(method: str, host: str, path: str, token: str, body: bytes | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + (body or b"")


async def load(url: str, token: str, kind: str, rate: float, seconds: float, users: int, max_in_flight: int,
               timeout_s: float) -> dict:
    rng = random.Random(3)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    skipped = 0
    in_flight = 0
    pool = Pool(url)
    host = urlsplit(url).netloc
    # the plain query as a client sends it (and as the API before exact_count took it), or with exact_count
    audience_body = json.dumps(AUDIENCE_QUERY if kind == "audience" else {**AUDIENCE_QUERY, "exact_count": True}).encode()
    try:

        async def one(due: float) -> None:
            nonlocal in_flight
            sent = time.monotonic()
            if kind == "portrait":
                raw = http_request("GET", host, f"/v1/users/{synthetic_user(rng.randrange(users), users)}/portrait", token)
            else:
                raw = http_request("POST", host, "/v1/audiences/query", token, audience_body)
            try:
                status = str(await pool.request(raw, timeout_s))
            except (OSError, ValueError, asyncio.TimeoutError) as error:
                status = type(error).__name__
            done = time.monotonic()
            in_flight -= 1
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                latencies.append(done - due)
                service.append(done - sent)

        tasks: set[asyncio.Task] = set()
        start = time.monotonic()
        total = int(rate * seconds)
        if rate == 0:  # closed loop, one request at a time: the unloaded latency
            total = int(seconds)
            for _ in range(total):
                in_flight += 1
                await one(time.monotonic())
        for i in range(total if rate else 0):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                skipped += 1  # the server is this far behind: the request counts as failed
                continue
            in_flight += 1
            task = asyncio.create_task(one(due))
            tasks.add(task)  # finished requests leave the set: the heap stays small
            task.add_done_callback(tasks.discard)
        sent_seconds = time.monotonic() - start
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    ok = statuses.get("200", 0)
    return {
        "kind": kind,
        "target_rate": rate,
        "seconds": seconds,
        "requests": total,
        "achieved_rate": round(ok / max(sent_seconds, seconds if rate else 0.001), 1),
        "statuses": statuses,
        "skipped_over_in_flight_limit": skipped,
        "latency_ms": summary(latencies, 1000),
        "service_ms": summary(service, 1000),
    }


@click.command()
@click.option("--url", required=True)
@click.option("--token", required=True)
@click.option("--kind", type=click.Choice(["portrait", "audience", "audience_count"]), required=True,
              help="audience_count: the audience query with exact_count (counts the whole audience)")
@click.option("--rate", default=1000.0, show_default=True, help="Requests per second; 0: one at a time")
@click.option("--seconds", default=30.0, show_default=True, help="Length of the phase; with --rate 0 the number of requests")
@click.option("--users", default=1_000_000, show_default=True)
@click.option("--max-in-flight", default=500, show_default=True)
@click.option("--timeout", "timeout_s", default=10.0, show_default=True)
def main(url, token, kind, rate, seconds, users, max_in_flight, timeout_s) -> None:
    """Run one load phase and print its figures as JSON."""
    try:  # the faster event loop when installed: the generator's own lag counts in the latency
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    # no collector pauses in the generator while it measures (a phase allocates a few MB at most)
    gc.freeze()
    gc.disable()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        figures = runner.run(load(url, token, kind, rate, seconds, users, max_in_flight, timeout_s))
    gc.enable()
    figures["event_loop"] = "uvloop" if loop_factory else "asyncio"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
