"""Audience queries, exports' selections and audiences' overviews in processes of their own.

A lookup is answered on the API's event loop in well under a millisecond; an audience query is
tens of milliseconds of Python. In one process the two take turns at the interpreter, so the
queries put their slices into the lookups' tail. With ``PORTRAITS_API_QUERY_PROCESSES`` above 0
the API's lifespan starts that many query processes (:class:`QueryProcesses`) and the
:class:`~api.limits.QueryGate` sends the heavy work there: each process opens the API's store as
a RocksDB secondary instance (:class:`~api.store.SecondaryStore`), catches up with the API's
writes before each query and answers from what it then sees, with the same code as in process
(:func:`audience_answer`, :func:`audience_selection`, :func:`audience_overview`). The gate's
bound and deadline hold as before: the slot is taken in the API process and the deadline
(a point on the machine's monotonic clock) travels with the query.

The processes are forked from a small server process started once (``forkserver``), not from
the API, which runs threads, at a lower CPU priority (:data:`NICENESS`); they ignore SIGINT (the API's lifespan stops them), leave when the
API process is gone, and :meth:`QueryProcesses.close` stops them, ending any that do not stop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.util
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from pathlib import Path
from typing import TypeVar

from starlette.exceptions import HTTPException

from api import audiences, overview
from api.indexes import PORTRAITS_SPACE, PortraitSpace, aggregate
from api.limits import Deadline
from api.models import AudienceFilter, AudienceQuery, AudienceResult, Overview
from api.store import LocalStore, SecondaryStore

T = TypeVar("T")


# -- the work, the same in process and in a query process ---------------------------------------


def audience_answer(store: LocalStore, query: AudienceQuery, after: bytes | None, deadline: Deadline) -> AudienceResult:
    """A page of an audience (:func:`api.audiences.answer`)."""
    return audiences.answer(store, query, after, deadline)


def audience_selection(store: LocalStore, flt: AudienceFilter, deadline: Deadline) -> audiences.Selection:
    """Every user of an audience (:func:`api.audiences.select`), without the snapshot it was read from."""
    selection = audiences.select(store, flt, deadline)
    return audiences.Selection(selection.users, selection.plan, None)


def audience_overview(store: LocalStore, flt: AudienceFilter, deadline: Deadline) -> Overview:
    """The group portrait of an audience, computed from its members' portraits."""
    selection = audiences.select(store, flt, deadline)
    totals = aggregate(selection.portrait(user) or {} for user in deadline.watch(selection.users))
    return overview.build(totals, plan=selection.plan)


# -- inside a query process ----------------------------------------------------------------------

_STORE: SecondaryStore | None = None
_STARTED = None  # the barrier of the pool's start

#: How much lower the query processes' CPU priority is than the API's: when the cores are short,
#: the lookups' process runs first (at 10 the kernel gives it about ten times their share).
NICENESS = 10


class _ReadOnlyPortraits(PortraitSpace):
    """The portraits' handler of a secondary: reloads the aggregates, never rebuilds."""

    def open(self, store: LocalStore) -> None:
        self.reload(store)


def _watch_parent(pid: int) -> None:
    while True:
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


def _start(primary: str, cache_mb: int, parent: int, scratch: str, started) -> None:
    """A query process's start: open the secondary, ignore SIGINT, leave with the API process."""
    global _STORE, _STARTED
    _STARTED = started
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICENESS)
    own = Path(tempfile.mkdtemp(dir=scratch))
    _STORE = SecondaryStore(Path(primary), own, [_ReadOnlyPortraits(PORTRAITS_SPACE)], cache_mb=cache_mb)
    multiprocessing.util.Finalize(None, _STORE.close, exitpriority=20)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _ready() -> int:
    """Wait until every process of the pool is here: a process takes no second such task, so each runs one."""
    _STARTED.wait(60)
    return os.getpid()


def _remote(work: Callable[..., T], *args) -> T:
    """``work(store, *args)`` on this process's secondary, caught up with the API's writes first."""
    assert _STORE is not None, "not a query process"
    _STORE.catch_up()
    return work(_STORE, *args)


def isolated(work: Callable[..., T], *args) -> Callable[[Deadline], T]:
    """``work(store, *args, deadline)`` as it is sent to a query process (picklable)."""
    return partial(_remote, work, *args)


# -- the API process's side ----------------------------------------------------------------------


class QueryProcesses:
    """``processes`` query processes over the store at ``store_path``; :meth:`run` hands one a query."""

    def __init__(self, store_path: Path, processes: int, *, cache_mb: int = 64):
        self.store_path = Path(store_path)
        self.processes = processes
        self.cache_mb = cache_mb
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        #: the secondaries' own directories (removed at close, also those of processes that were killed)
        self._scratch = ""

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["api.isolation"])
        return ProcessPoolExecutor(
            self.processes,
            mp_context=context,
            initializer=_start,
            initargs=(str(self.store_path), self.cache_mb, os.getpid(), self._scratch, context.Barrier(self.processes)),
        )

    async def start(self) -> None:
        """Start the processes and wait until each has opened the store."""
        self._scratch = tempfile.mkdtemp(prefix="portraits-query-")
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        # one task per process, each waiting for the others: every process has started when they return
        await asyncio.gather(*(loop.run_in_executor(self._pool, _ready) for _ in range(self.processes)))

    def pids(self) -> list[int]:
        """The query processes' ids."""
        pool = self._pool
        return sorted(pool._processes) if pool is not None and pool._processes else []

    async def run(self, work: Callable[[Deadline], T], deadline: Deadline) -> T:
        """``work(deadline)`` in a query process (``work`` made by :func:`isolated`); 503 if the processes broke."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the query processes are not started")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work, deadline)
        except BrokenProcessPool:
            with self._lock:  # a process died (killed, out of memory): start new ones for the next queries
                if self._pool is pool:
                    self._pool = self._new_pool()
                    self._stop(pool, 0)
            raise HTTPException(503, "a query process stopped; retry in 1 s", headers={"Retry-After": "1"}) from None

    @staticmethod
    def _stop(pool: ProcessPoolExecutor, timeout: float) -> None:
        processes = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        until = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, until - time.monotonic()))
        for process in processes:
            if process.is_alive():  # a query that never checks its deadline: end it
                process.kill()
                process.join(5)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the processes: idle ones leave at once, busy ones get ``timeout`` seconds, then are killed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._stop(pool, timeout)
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
