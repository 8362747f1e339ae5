"""Bounds of the query side: request bodies, and the time and concurrency of heavy queries.

:class:`BodyGate` is a plain ASGI middleware in front of everything: a request to ``/v1/``
that carries a body and no valid bearer token is answered 401 before a byte of the body is
read, and a body larger than the cap is answered 413, from its ``Content-Length`` when it
gives one, else as soon as the streamed bytes pass the cap; nothing is buffered first.

:class:`QueryGate` runs audience and overview queries on worker threads, or in the query
processes of :mod:`api.isolation` when the app has them, at most ``concurrency`` at once (one more is answered 503 with ``Retry-After`` at once, never queued),
each under a :class:`Deadline` its loops check (504 when it passes).

>>> deadline = Deadline(60)
>>> list(deadline.watch(range(3)))
[0, 1, 2]
>>> Deadline(-1).check()
Traceback (most recent call last):
...
api.limits.QueryTimeout: the query ran past its deadline of -1 s
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import orjson
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import token_problem
from api.fastpath import bearer_token

T = TypeVar("T")


class QueryTimeout(Exception):
    """A query ran past its deadline."""


class Deadline:
    """A point in time a query's loops check against (:meth:`check`, or :meth:`watch` over an iterable)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def check(self) -> None:
        """Raise :class:`QueryTimeout` once the deadline has passed."""
        if time.monotonic() > self._at:
            raise QueryTimeout(f"the query ran past its deadline of {self.seconds:g} s")

    def watch(self, items: Iterable[T], every: int = 256) -> Iterator[T]:
        """``items``, checking the deadline every ``every`` of them."""
        for n, item in enumerate(items):
            if n % every == 0:
                self.check()
            yield item


#: The deadline of calls that have none (tests, internal callers).
NO_DEADLINE = Deadline(float("inf"))


class QueryGate:
    """At most ``concurrency`` heavy queries at once, each stopped after ``timeout_s`` seconds."""

    def __init__(self, *, concurrency: int, timeout_s: float, retry_after_s: int = 1):
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._slots = threading.BoundedSemaphore(concurrency)
        #: the query processes (:class:`api.isolation.QueryProcesses`) while the app runs, if it has them
        self.processes = None

    async def run(self, work: Callable[[Deadline], T], *, isolated: Callable[[Deadline], T] | None = None) -> T:
        """``work(deadline)`` on a worker thread: 503 when every slot is taken, 504 past the deadline.

        With query processes, ``isolated(deadline)`` (the same work, made by :func:`api.isolation.isolated`)
        runs in one of them instead. The slot is held until the work returns, even when the answer
        has gone out already, so the bound counts the work really running; the work's own checks
        stop it soon after the deadline.
        """
        if not self._slots.acquire(blocking=False):
            raise HTTPException(
                503,
                f"too many audience and overview queries at once ({self.concurrency} running); retry in {self.retry_after_s} s",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        deadline = Deadline(self.timeout_s)
        processes = self.processes if isolated is not None else None
        if processes is not None:
            task = asyncio.ensure_future(processes.run(isolated, deadline))

            def done(t: asyncio.Future) -> None:
                self._slots.release()
                t.cancelled() or t.exception()  # retrieved, also after a timeout

            task.add_done_callback(done)
        else:

            def guarded() -> T:
                try:
                    return work(deadline)
                finally:
                    self._slots.release()

            task = asyncio.ensure_future(run_in_threadpool(guarded))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, also after a timeout
        try:
            # a little grace, so a query that notices its deadline answers itself
            return await asyncio.wait_for(asyncio.shield(task), self.timeout_s + 0.5)
        except (QueryTimeout, asyncio.TimeoutError):
            raise HTTPException(
                504,
                f"the query took longer than {self.timeout_s:g} s (PORTRAITS_API_QUERY_TIMEOUT_SECONDS) and was stopped; "
                "narrow the filter, or ask for a page without exact_count",
            ) from None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A JSON problem answer, shaped like FastAPI's ``HTTPException`` ones."""
    body = orjson.dumps({"detail": detail})
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGate:
    """ASGI middleware: no body is read before the token is checked, and none beyond ``limit`` bytes.

    ``api`` is the FastAPI app (its ``state.tokens``). Requests without a body pass untouched.
    """

    def __init__(self, app: ASGIApp, *, api, limit: int):
        self.app = app
        self.state = api.state
        self.limit = limit

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body exceeds {self.limit} bytes (PORTRAITS_API_MAX_BODY_BYTES)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        if not chunked and (length is None or length.strip() in (b"", b"0")):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/v1/"):
            problem = token_problem(self.state.tokens, bearer_token(scope))
            if problem is not None:
                await _answer(send, problem.status_code, problem.detail, problem.headers)
                return
        if length is not None and length.strip().isdigit() and int(length) > self.limit:
            error = self._too_large()
            await _answer(send, error.status_code, error.detail)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._too_large()
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as error:  # raised by ``counted`` where no handler caught it
            if started or error.status_code != 413:
                raise
            await _answer(send, 413, error.detail)
