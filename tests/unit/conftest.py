"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.engine_doubles import make_worker
from tests.unit.test_api_synthetic import make_store


@pytest.fixture
def store(tmp_path):
    """An empty API store in the test's own directory, closed afterwards."""
    store = make_store(tmp_path)
    yield store
    store.close()


@pytest.fixture
def worker(monkeypatch):
    """A worker's user engines over a recording producer and table writer, and the log of what they were handed."""
    return make_worker(monkeypatch)
