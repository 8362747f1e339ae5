"""Python's garbage collector in a long-running worker: its pauses measured, what survives a full collection set aside.

A full collection (of CPython's oldest generation) walks every container object the
process tracks. A worker holds tens of thousands of live states, the trainer's models
and Faust's own objects, so its full collections pause the event loop for longer as
they grow (24 ms early in a live run, 150 ms forty seconds later on the benchmark
machine), every few seconds: a record waiting meanwhile waits that long.

:class:`CollectorPolicy` freezes (``gc.freeze``) what survives each full collection,
so the next one walks only the objects that came since. Every ``thaw_interval_s``
it thaws them instead (``gc.unfreeze``): the next full collection walks everything
once, so reference cycles among old objects that became garbage are collected all
the same, later. ``thaw_interval_s`` 0 thaws after every full collection, which is
Python's own behaviour. Each pause is timed, and :meth:`CollectorPolicy.report` observes the
pauses timed since its last call in ``portraits_gc_pause_seconds`` by generation: not the callback
itself, since a metric's lock taken there could be one the interrupted code holds.
"""

from __future__ import annotations

import atexit
import gc
import time
from collections.abc import Callable

from streams import metrics


class CollectorPolicy:
    """Freezes the survivors of full collections, thaws them every ``thaw_interval_s``, and times every pause.

    ``collector``, ``clock`` (monotonic seconds) and ``pause_clock`` are the ``gc`` module and the
    clocks unless a test passes its own.
    """

    def __init__(
        self,
        *,
        thaw_interval_s: float,
        collector=gc,
        clock: Callable[[], float] = time.monotonic,
        pause_clock: Callable[[], float] = time.perf_counter,
    ):
        if thaw_interval_s < 0:
            raise ValueError("thaw_interval_s must not be negative")
        self.thaw_interval_s = thaw_interval_s
        self.collector, self.clock, self.pause_clock = collector, clock, pause_clock
        self.thawed_at = clock()
        self.installed = False
        self._started = 0.0
        #: by generation, the pauses (seconds) timed since the last report
        self._pauses: list[list[float]] = [[], [], []]

    def install(self) -> None:
        """Start timing the collections and freezing the survivors of full ones (once; again changes nothing)."""
        if not self.installed:
            self.installed = True
            self.thawed_at = self.clock()
            self.collector.callbacks.append(self.on_collection)
            atexit.register(self.uninstall)

    def uninstall(self) -> None:
        """Stop, and thaw what is frozen, so the interpreter's last collection at exit frees it (extension
        objects left frozen are reported as leaked, e.g. by nanobind). Called at exit once installed."""
        if self.installed:
            self.installed = False
            self.collector.callbacks.remove(self.on_collection)
            self.collector.unfreeze()

    def on_collection(self, phase: str, info: dict) -> None:
        """The collector's callback: ``phase`` "start" or "stop", ``info["generation"]`` the generation collected."""
        if phase == "start":
            self._started = self.pause_clock()
            return
        generation = info["generation"]
        self._pauses[generation].append(self.pause_clock() - self._started)
        if generation < 2:
            return
        now = self.clock()
        if now - self.thawed_at >= self.thaw_interval_s:
            self.collector.unfreeze()  # the next full collection walks everything once
            self.thawed_at = now
        else:
            self.collector.freeze()

    def report(self) -> None:
        """Observe the pauses timed since the last report in ``portraits_gc_pause_seconds``."""
        for generation in range(len(self._pauses)):
            pauses, self._pauses[generation] = self._pauses[generation], []
            if pauses:
                histogram = metrics.GC_PAUSE.labels(str(generation))
                for pause in pauses:
                    histogram.observe(pause)
