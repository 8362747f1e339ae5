"""The co-purchase summary the API serves, and each portrait's ``next_categories`` from it.

The API follows the compacted ``associations`` topic (:mod:`streams.associations`) into key
space ``c:`` (co-purchases) and keeps its ``summary`` (the aggregator's ``state``, the sketches it resumes
from, is not stored). ``GET /v1/associations`` and the overview's co-purchase pairs read
it. A portrait's ``next_categories`` (:mod:`online_models.association_rules`) are computed
here, not by the worker: when a portrait arrives it is stored with the next categories the
newest summary gives it, and a new summary starts a pass over the stored portraits
(:class:`api.rescore.Rescorer`) that rewrites those whose next categories it changes,
through the portrait handler, so postings (the ``next`` index of audiences) and aggregates
stay right. The worker's per-event and per-publication work is untouched by it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from api import portrait_paths as paths
from api.store import Headers, LocalStore, SpaceHandler, Txn
from online_models.association_rules import CategoryLifts

log = logging.getLogger(__name__)

#: The key space of the associations topic in the API's store.
ASSOCIATIONS_SPACE = b"c:"
SUMMARY_KEY = b"summary"


def _top_category_names(portrait: dict[str, Any]) -> list[str]:
    entries = paths.TOP_CATEGORIES.read(portrait)
    if not isinstance(entries, list):
        return []
    return [e["category"] for e in entries if isinstance(e, dict) and isinstance(e.get("category"), str)]


class AssociationSpace(SpaceHandler):
    """The ``associations`` topic's key space: the newest summary, the lifts made from it, and how far
    re-scoring the stored portraits' next categories got."""

    def __init__(self, space: bytes = ASSOCIATIONS_SPACE):
        super().__init__(space)
        self.summary: dict[str, Any] | None = None
        self.lifts: CategoryLifts | None = None
        self.snapshot_arrived = threading.Event()
        #: version of the last summary every stored portrait was checked against (None: no pass yet)
        self.rescored_version: int | None = None
        self.rescored_portraits = 0
        self._staged: tuple[dict[str, Any], CategoryLifts] | None = None
        self._dropped = False

    @property
    def version(self) -> int | None:
        """The version of the summary served (None before the first)."""
        return None if self.summary is None else self.summary.get("version")

    def open(self, store: LocalStore) -> None:
        super().open(store)
        raw = store.db.get(self.space + SUMMARY_KEY)
        loaded = self._load(raw) if raw is not None else None
        if loaded is not None:
            self.summary, self.lifts = loaded
            self.snapshot_arrived.set()

    @staticmethod
    def _load(raw: bytes) -> tuple[dict[str, Any], CategoryLifts] | None:
        try:
            summary = orjson.loads(raw)
            return summary, CategoryLifts(summary)
        except Exception as error:  # a summary this API cannot read: keep serving the last one
            log.warning("association summary not loaded: %s: %s", type(error).__name__, error)
            return None

    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        if key != SUMMARY_KEY:
            return  # the aggregator's own state: nothing the API serves
        if value is None:
            self._staged, self._dropped = None, True
        else:
            loaded = self._load(value)
            if loaded is None:
                return
            self._staged, self._dropped = loaded, False
        super().write(txn, key, value, headers)

    def committed(self) -> None:
        super().committed()
        staged, dropped = self._staged, self._dropped
        self._staged, self._dropped = None, False
        if staged is not None:
            self.summary, self.lifts = staged
            self.snapshot_arrived.set()
        elif dropped:
            self.summary = self.lifts = None
            self.snapshot_arrived.set()

    def rolled_back(self) -> None:
        super().rolled_back()
        self._staged, self._dropped = None, False

    def score(self, portrait: dict[str, Any]) -> dict[str, Any] | None:
        """``{"next_categories": [...]}`` for ``portrait`` under the newest summary; None before the first."""
        lifts = self.lifts
        if lifts is None:
            return None
        return {"next_categories": lifts.next_for(_top_category_names(portrait))}

    def status(self) -> dict[str, Any]:
        """What ``GET /v1/associations`` says about the next categories served."""
        version = self.version
        return {
            "summary_version": version,
            "rescored_version": self.rescored_version,
            "rescore_pending": version is not None and version != self.rescored_version,
            "portraits_rescored": self.rescored_portraits,
        }
