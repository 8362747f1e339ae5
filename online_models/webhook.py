"""Optional webhook delivery of alerts, off the caller's thread.

:class:`WebhookSender` POSTs each submitted body (JSON bytes, e.g.
:meth:`online_models.alerts.Alert.to_json_bytes`) to one URL from a daemon
thread, retrying connection errors, timeouts, 5xx, 408 and 429 with
exponential backoff. :meth:`WebhookSender.submit` never blocks: when the bounded
queue is full the body is dropped and counted. Delivery is at least once per
submit (a lost response can still mean a duplicate), so receivers should
de-duplicate on the alert id. Neither bodies nor the URL (which often carries a
token) are logged. Only the standard library is used.

>>> backoff_delays(0.5, 5)
[0.5, 1.0, 2.0, 4.0, 8.0]
>>> WebhookSender("file:///etc/passwd")
Traceback (most recent call last):
...
ValueError: webhook url must be http(s)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

__all__ = ["WebhookSender", "backoff_delays"]

log = logging.getLogger(__name__)

_STOP = object()
_RETRY_STATUS = frozenset({408, 429})


def backoff_delays(backoff_s: float, max_retries: int, max_backoff_s: float = 30.0) -> list[float]:
    """Seconds waited before each retry: ``backoff_s * 2**k``, capped at ``max_backoff_s``."""
    return [min(backoff_s * 2**k, max_backoff_s) for k in range(max_retries)]


class _Permanent(Exception):
    """A response that retrying will not fix (4xx other than 408/429)."""


class WebhookSender:
    """POST bodies to ``url`` from a daemon thread with retries and exponential backoff.

    ``max_retries`` retries follow the first attempt, ``backoff_s * 2**k``
    seconds apart (capped at ``max_backoff_s``); ``timeout_s`` bounds each
    request. ``stats()`` counts bodies ``sent``, ``failed`` (retries exhausted
    or a permanent 4xx), ``dropped`` (queue full, sender closed, or abandoned
    at close) and ``retries``, plus ``pending`` in the queue.
    """

    def __init__(
        self,
        url: str,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5,
        queue_size: int = 10_000,
        *,
        max_backoff_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ):
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("webhook url must be http(s)")
        if max_retries < 0 or backoff_s < 0 or timeout_s <= 0 or queue_size <= 0:
            raise ValueError("max_retries and backoff_s must be >= 0, timeout_s and queue_size > 0")
        self._url = url
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "User-Agent": "customer-portraits-webhook"}
        self._headers.update(headers or {})
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._closed = False
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        host = urllib.parse.urlsplit(self._url).hostname
        return f"<WebhookSender host={host!r} pending={self._queue.qsize()}>"

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, alert_bytes: bytes) -> bool:
        """Queue one body for delivery without blocking; False (and counted) when dropped."""
        body = bytes(alert_bytes)
        with self._lock:
            if not self._closed:
                try:
                    self._queue.put_nowait(body)
                    return True
                except queue.Full:
                    pass
            self._counts["dropped"] += 1
        return False

    def stats(self) -> dict[str, int]:
        """Counters: sent, failed, dropped, retries, and pending (still queued)."""
        with self._lock:
            counts = dict(self._counts)
        counts["pending"] = self._queue.qsize()
        return counts

    def close(self, timeout: float = 5.0) -> bool:
        """Stop accepting, deliver what is queued for up to ``timeout`` seconds, then give up.

        Returns True when the queue was fully worked off in time. Bodies still
        queued after the timeout are counted as dropped; a request in flight may
        outlive the call by up to ``timeout_s`` (the thread is a daemon).
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:  # a submit either lands before the stop mark or is refused
            self._closed = True
        try:
            self._queue.put(_STOP, timeout=max(0.0, timeout))
        except queue.Full:
            self._abort.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            return False
        return not self._abort.is_set()

    # -- worker thread ---------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _run(self) -> None:
        while True:
            if self._abort.is_set():
                self._drain()
                return
            body = self._queue.get()
            if body is _STOP:
                return
            try:
                self._deliver(body)
            except Exception:  # never let one body kill the sender
                log.exception("webhook delivery crashed")
                self._count("failed")

    def _drain(self) -> None:
        while True:
            try:
                body = self._queue.get_nowait()
            except queue.Empty:
                return
            if body is not _STOP:
                self._count("dropped")

    def _deliver(self, body: bytes) -> None:
        delays = backoff_delays(self.backoff_s, self.max_retries, self.max_backoff_s)
        error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                if self._abort.wait(delays[attempt - 1]):
                    self._count("dropped")
                    return
                self._count("retries")
            try:
                self._post(body)
            except _Permanent as exc:
                log.warning("webhook rejected an alert permanently: %s", exc)
                self._count("failed")
                return
            except Exception as exc:  # connection errors, timeouts, 5xx: retry
                error = exc
                continue
            self._count("sent")
            return
        log.warning("webhook delivery failed after %d attempts: %s", self.max_retries + 1, _describe(error))
        self._count("failed")

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code in _RETRY_STATUS:
                raise
            raise _Permanent(f"HTTP {exc.code}") from None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return type(exc).__name__
