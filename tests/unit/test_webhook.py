"""Webhook delivery against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from online_models.webhook import WebhookSender, backoff_delays


class Server:
    """A local HTTP server answering each POST with ``respond(n)`` (n counts from 1)."""

    def __init__(self, respond: Callable[[int], int]):
        self.respond = respond
        self.requests: list[bytes] = []
        self.accepted: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    n = len(server.requests)
                status = server.respond(n)
                if status == 0:  # hang until released
                    server.release.wait(30)
                    status = 200
                if 200 <= status < 300:
                    with server.lock:
                        server.accepted.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook?token=secret"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], int]], Server]]:
    servers: list[Server] = []

    def start(respond):
        servers.append(Server(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_retries_until_accepted_and_delivers_once(serve):
    server = serve(lambda n: 500 if n <= 2 else 200)
    sender = WebhookSender(server.url, max_retries=5, backoff_s=0.01)
    assert sender.submit(b'{"alert_id":"a1"}')
    assert wait_for(lambda: sender.stats()["sent"] == 1)
    assert sender.close(timeout=5)
    assert server.accepted == [b'{"alert_id":"a1"}']
    assert len(server.requests) == 3
    assert server.headers[0]["Content-Type"] == "application/json"
    assert sender.stats() == {"sent": 1, "failed": 0, "dropped": 0, "retries": 2, "pending": 0}


def test_gives_up_after_max_retries(serve):
    server = serve(lambda n: 503)
    sender = WebhookSender(server.url, max_retries=3, backoff_s=0.01)
    sender.submit(b"{}")
    assert wait_for(lambda: sender.stats()["failed"] == 1)
    sender.close(timeout=5)
    assert len(server.requests) == 4
    assert sender.stats() == {"sent": 0, "failed": 1, "dropped": 0, "retries": 3, "pending": 0}


def test_client_error_is_not_retried(serve):
    server = serve(lambda n: 400 if n == 1 else 200)
    sender = WebhookSender(server.url, max_retries=3, backoff_s=0.01)
    sender.submit(b'{"n":1}')
    sender.submit(b'{"n":2}')
    assert sender.close(timeout=5)
    assert server.accepted == [b'{"n":2}']
    assert sender.stats() == {"sent": 1, "failed": 1, "dropped": 0, "retries": 0, "pending": 0}


def test_connection_refused_is_retried_then_failed():
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = WebhookSender(f"http://127.0.0.1:{port}/", max_retries=2, backoff_s=0.01, timeout_s=2)
    sender.submit(b"{}")
    assert wait_for(lambda: sender.stats()["failed"] == 1)
    sender.close(timeout=5)
    assert sender.stats()["retries"] == 2


def test_submit_never_blocks_on_a_hanging_server(serve):
    server = serve(lambda n: 0)  # every request hangs until released
    sender = WebhookSender(server.url, max_retries=0, timeout_s=30, queue_size=3)
    started = time.monotonic()
    results = [sender.submit(b'{"i":%d}' % i) for i in range(50)]
    elapsed = time.monotonic() - started
    # a blocking submit would wait for the 30 s request timeout; generous bound
    assert elapsed < 5
    accepted = sum(results)
    assert 3 <= accepted <= 4  # the queue, plus the one the worker may have taken
    assert sender.stats()["dropped"] == 50 - accepted
    assert wait_for(lambda: len(server.requests) == 1)
    server.release.set()
    assert sender.close(timeout=10)
    assert sender.stats()["sent"] == accepted == len(server.accepted)


def test_close_gives_up_on_a_hanging_server(serve):
    server = serve(lambda n: 0)
    sender = WebhookSender(server.url, max_retries=0, timeout_s=30)
    for i in range(5):
        sender.submit(b"{}")
    assert wait_for(lambda: len(server.requests) == 1)
    started = time.monotonic()
    assert sender.close(timeout=0.2) is False
    assert time.monotonic() - started < 5
    server.release.set()  # the request in flight completes, the rest is abandoned
    assert wait_for(lambda: not sender._thread.is_alive())
    stats = sender.stats()
    assert stats["sent"] == 1 and stats["dropped"] == 4 and stats["pending"] == 0


def test_submit_after_close_is_dropped(serve):
    server = serve(lambda n: 200)
    with WebhookSender(server.url) as sender:
        assert sender.submit(b"{}")
    assert sender.submit(b"{}") is False
    assert sender.stats()["dropped"] == 1 and sender.stats()["sent"] == 1


def test_repr_hides_the_url_token(serve):
    server = serve(lambda n: 200)
    sender = WebhookSender(server.url)
    assert "secret" not in repr(sender) and "127.0.0.1" in repr(sender)
    sender.close()


def test_validation_and_backoff():
    for url in ("ftp://example.com/", "file:///tmp/x", "example.com/hook"):
        with pytest.raises(ValueError):
            WebhookSender(url)
    with pytest.raises(ValueError):
        WebhookSender("http://127.0.0.1/", queue_size=0)
    assert backoff_delays(0.5, 8, max_backoff_s=10) == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert backoff_delays(1, 0) == []
