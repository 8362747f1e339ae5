"""The product's API (``portraits api``) as a process under measurement."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from benchkit.procs import Managed, free_port, histograms, managed, python_module, scrape, wait_http

TOKEN = "bench-reader"


@dataclass
class RunningApi:
    process: Managed
    url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def stored_portraits(self) -> float | None:
        return scrape(f"{self.url}/metrics", "portraits_api_portraits_stored")

    def histograms(self, wanted: dict[str, tuple[str, dict[str, str]]]) -> dict[str, dict[float, float]]:
        """The API's histograms ``wanted`` (:func:`benchkit.procs.histograms`), from one read of its page."""
        return histograms(f"{self.url}/metrics", wanted)


def start_api(stack: contextlib.ExitStack, *, kafka: str, prefix: str, data_dir: Path, log: Path,
              env: dict[str, str] | None = None) -> RunningApi:
    """Start the API over ``data_dir/api/store`` following the topics under ``prefix``; wait for /healthz.
    ``env`` adds to (or overrides) its environment."""
    port = free_port()
    env = {
        "PORTRAITS_KAFKA": kafka,
        "PORTRAITS_TOPIC_PREFIX": prefix,
        "PORTRAITS_DATA_DIR": str(data_dir),
        "PORTRAITS_API_PORT": str(port),
        "PORTRAITS_API_TOKENS": f"{TOKEN}:reader",
        **(env or {}),
    }
    process = stack.enter_context(managed("api", python_module("streams.cli", "api"), env, log))
    api = RunningApi(process, f"http://127.0.0.1:{port}")
    wait_http(f"{api.url}/healthz", process, timeout_s=300)
    return api
