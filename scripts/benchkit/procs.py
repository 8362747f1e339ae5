"""Processes the benchmarks start (workers, the API, load generators), always stopped on exit."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Managed:
    """A child process in its own session, its output in ``log``; :meth:`stop` ends its whole group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path):
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._out = log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory of the process (0 once it has exited)."""
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) * 1024 if match else 0

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far (0 once it has exited)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout_s``."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()


@contextlib.contextmanager
def managed(name: str, args: list[str], env: dict[str, str], log: Path) -> Iterator[Managed]:
    """Run a child for the duration of the ``with`` block."""
    child = Managed(name, args, env, log)
    try:
        yield child
    finally:
        child.stop()


def python_module(module: str, *args: str) -> list[str]:
    """The command line running ``module`` with this interpreter (the repository's code first)."""
    return [sys.executable, "-m", module, *args]


def stop_on_sigterm() -> None:
    """Turn SIGTERM, SIGHUP and SIGINT (even when inherited as ignored) into KeyboardInterrupt,
    so ``finally`` blocks stop the children."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, handler)


def http_get(url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET; (0, b"") when nothing answers."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_http(url: str, child: Managed, timeout_s: float) -> float:
    """Seconds until ``url`` answers 200; raises if the child dies or time runs out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}); see {child.log}")
        if http_get(url)[0] == 200:
            return time.monotonic() - start
        time.sleep(0.2)
    raise TimeoutError(f"{child.name}: {url} did not answer within {timeout_s:.0f} s; see {child.log}")


def metric(text: str, name: str) -> float:
    """Sum of the samples of metric ``name`` in a Prometheus text page (0 if absent).

    >>> metric('a_total 3.0\\nb{x="1"} 2\\nb{x="2"} 5\\n', "b")
    7.0
    """
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def scrape(url: str, name: str) -> float | None:
    """The value of metric ``name`` at ``url``; None when the page does not answer."""
    status, body = http_get(url)
    return metric(body.decode(), name) if status == 200 else None


def histograms(url: str, wanted: dict[str, tuple[str, dict[str, str]]]) -> dict[str, dict[float, float]]:
    """For each ``name: (histogram, labels)`` of ``wanted``, the cumulative bucket counts (by bound ``le``) of that
    histogram's series with those labels, from one read of the metrics page at ``url`` ({} each when it does not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())} if status == 200 else {}

    found: dict[str, dict[float, float]] = {}
    for name, (histogram, labels) in wanted.items():
        family = families.get(histogram)
        found[name] = {
            float(sample.labels["le"]): sample.value
            for sample in (family.samples if family is not None else ())
            if sample.name == f"{histogram}_bucket" and all(sample.labels.get(k) == v for k, v in labels.items())
        }
    return found


def dir_bytes(path: Path) -> int:
    """Bytes of every file below ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
