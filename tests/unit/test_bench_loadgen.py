"""The load generator's bare HTTP client: whole answers, split or not, over reused or closed connections."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from benchkit.loadgen import load  # noqa: E402


async def serve_and_load(rate: float, seconds: float) -> tuple[dict, list[str]]:
    """A server that answers in two pieces and closes every third connection after its answer."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            request_line = head.split(b"\r\n", 1)[0].decode()
            if b"Content-Length:" in head:
                length = int(head.split(b"Content-Length: ", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
            seen.append(request_line)
            status = b"200 OK" if "portrait" in request_line or "audiences" in request_line else b"404 Not Found"
            body = b'{"user_id": "u1", "padding": "' + b"x" * 3000 + b'"}'
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body[:100])
            await writer.drain()
            await asyncio.sleep(0.001)
            writer.write(body[100:])
            await writer.drain()
            served += 1
            if served == 3:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        figures = await load(f"http://127.0.0.1:{port}", "t", "portrait", rate, seconds, 1000, 50, 5.0)
    return figures, seen


def test_every_request_gets_its_whole_answer():
    figures, seen = asyncio.run(serve_and_load(rate=200, seconds=0.5))
    assert figures["statuses"] == {"200": 100} and len(seen) == 100
    assert all(line.startswith("GET /v1/users/u") and line.endswith("/portrait HTTP/1.1") for line in seen)
    assert figures["latency_ms"]["n"] == 100 and figures["latency_ms"]["p50"] >= 1.0  # the answer's second piece


def test_one_at_a_time():
    figures, seen = asyncio.run(serve_and_load(rate=0, seconds=7))
    assert figures["statuses"] == {"200": 7} and len(seen) == 7
