"""Served churn scores, CLV and next categories are the newest snapshot's: the API re-scores stored portraits when one arrives.

The worker scores a portrait when it renders it, with the snapshot it holds then. The
API follows the ``models`` topic too, and keeps every stored portrait's ``churn`` and
``clv`` blocks as the newest snapshot scores them at the portrait's own ``as_of``, with the
scoring functions of the core (:meth:`online_models.population.PopulationModels.scores`):

* a portrait arriving with an older ``churn.model_version`` than the API's snapshot is
  scored again before it is stored (:meth:`ModelSpace.score`), so its index postings
  and aggregates are written right the first time;
* a new snapshot starts a pass over the stored portraits (:class:`Rescorer`) that
  rewrites, through the portrait handler (postings, aggregates), those whose score it
  changes. Risk and P(alive) are rounded to 4 places, so a small drift of the
  parameters rewrites few portraits; an unchanged score keeps the version that made it.

The same pass, with :class:`Rescorer` on another scorer, keeps the portraits' ``next_categories`` the newest
association summary's (:mod:`api.associations`).

The API keeps of a snapshot only what that scoring reads (:func:`serving_copy`): the churn fits,
the Gamma-Gamma fit, the classifier, the configuration and the version. The trainer's purchase sample (statistics
by user id), the RFM sketches and the segment centres are dropped before anything is stored.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from api import portrait_paths as paths
from api.store import Headers, LocalStore, SpaceHandler, Txn
from online_models.population import PopulationModels
from online_models.portrait_types import portrait_from_json
from online_models.rfm import RFMScorer
from online_models.segments import SegmentModel

log = logging.getLogger(__name__)

#: The key space of the models topic in the API's store.
MODELS_SPACE = b"m:"

SNAPSHOT_KEY = b"snapshot"


def _same_score(portrait: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the portrait's blocks say what ``new`` (``{"churn", "clv"}``, or ``{"next_categories"}``) says,
    whichever snapshot version made them."""
    for key, value in new.items():
        old = portrait.get(key)  # a top-level block: "churn", "clv" or "next_categories"
        if key == "churn":
            if not isinstance(old, dict) or {k: v for k, v in old.items() if k != "model_version"} != {
                k: v for k, v in value.items() if k != "model_version"
            }:
                return False
        elif old != value:
            return False
    return True


def serving_copy(models: PopulationModels) -> PopulationModels:
    """The snapshot as the API keeps it: what :meth:`PopulationModels.churn` reads, and no user id."""
    models.purchase_sample = {}
    models.rfm = RFMScorer()
    models.segments = SegmentModel(n_segments=models.config.n_segments, warmup=models.config.segment_warmup)
    return models


class ModelSpace(SpaceHandler):
    """The ``models`` topic's key space: also loads each new snapshot for scoring and says how far re-scoring got."""

    def __init__(self, space: bytes):
        super().__init__(space)
        self.models: PopulationModels | None = None
        self.snapshot_arrived = threading.Event()
        #: version of the last snapshot every stored portrait was checked against (None: no pass yet)
        self.rescored_version: int | None = None
        self.rescored_portraits = 0
        self._staged: PopulationModels | None = None

    def open(self, store: LocalStore) -> None:
        super().open(store)
        raw = store.db.get(self.space + SNAPSHOT_KEY)
        if raw is not None:
            self.models = self._slim(raw)
            if self.models is not None:
                store.db[self.space + SNAPSHOT_KEY] = self.models.to_bytes()  # a store of before held a whole one
                self.snapshot_arrived.set()

    @staticmethod
    def _slim(raw: bytes) -> PopulationModels | None:
        try:
            return serving_copy(PopulationModels.from_bytes(raw))
        except Exception as error:  # a snapshot this API cannot read: keep scoring with the last one
            log.warning("model snapshot not loaded: %s: %s", type(error).__name__, error)
            return None

    def write(self, txn: Txn, key: bytes, value: bytes | None, headers: Headers = ()) -> None:
        if key == SNAPSHOT_KEY and value is not None:
            models = self._slim(value)
            if models is None:
                return
            value, self._staged = models.to_bytes(), models
        super().write(txn, key, value, headers)

    def committed(self) -> None:
        super().committed()
        staged, self._staged = self._staged, None
        if staged is not None:
            self.models = staged
            self.snapshot_arrived.set()

    def rolled_back(self) -> None:
        super().rolled_back()
        self._staged = None

    def score(self, portrait: dict[str, Any]) -> dict[str, Any] | None:
        """The ``churn`` and ``clv`` blocks the current snapshot gives ``portrait``; None when the stored churn
        block is as new or newer."""
        models = self.models
        if models is None or not paths.AS_OF.read(portrait):
            return None
        version = paths.CHURN_MODEL_VERSION.read(portrait)
        if isinstance(version, int) and version >= models.version:
            return None
        try:  # the scoring reads the typed portrait: parsed once, its new blocks back to JSON values
            return orjson.loads(orjson.dumps(models.scores(portrait_from_json(portrait))))
        except Exception as error:  # one odd portrait must not stop the follower
            log.warning("portrait not re-scored: %s: %s", type(error).__name__, error)
            return None

    @property
    def version(self) -> int | None:
        """The version of the snapshot scored with (None before the first)."""
        return None if self.models is None else self.models.version

    def status(self) -> dict[str, Any]:
        """What ``GET /v1/models`` says about the scores served."""
        version = self.models.version if self.models is not None else None
        return {
            "model_version": version,
            "rescored_version": self.rescored_version,
            "rescore_pending": version is not None and version != self.rescored_version,
            "portraits_rescored": self.rescored_portraits,
        }


def rescored_value(raw: bytes | None, score: Callable[[dict], dict | None], *, only_changed: bool) -> bytes | None:
    """The portrait bytes with the blocks ``score`` gives, or None when they stay as they are.

    ``only_changed``: leave a portrait whose score would not change (a re-scoring pass).
    """
    if raw is None:
        return None
    try:
        portrait = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(portrait, dict):
        return None
    fresh = score(portrait)
    if fresh is None or (only_changed and _same_score(portrait, fresh)):
        return None
    portrait.update(fresh)
    return orjson.dumps(portrait)


class Scorer(Protocol):
    """A key space whose snapshots re-score the stored portraits (:class:`ModelSpace`, :class:`api.associations.AssociationSpace`)."""

    snapshot_arrived: threading.Event
    rescored_version: int | None
    rescored_portraits: int

    @property
    def version(self) -> int | None: ...

    def score(self, portrait: dict[str, Any]) -> dict[str, Any] | None: ...


def rescore_stored(
    store: LocalStore, portraits: bytes, scorer: Scorer, *, batch: int = 100, rest: Callable[[float], object] | None = None
) -> int:
    """Re-score every stored portrait with ``scorer``'s current snapshot; how many were rewritten.

    Each batch is scored before the store's write lock is taken, so the follower's writes wait only
    for the rewrites (and the rescoring of a portrait it wrote meanwhile), not for the scoring.
    ``rest`` is called after each batch with the seconds it took.
    """
    rewritten = 0
    after = b""

    def change(raw: bytes | None) -> bytes | None:
        return rescored_value(raw, scorer.score, only_changed=True)

    while True:
        rows = list(itertools.islice(store.scan(portraits, after), batch))
        if not rows:
            return rewritten
        started = time.monotonic()
        computed = {key: (raw, value) for key, raw in rows if (value := change(raw)) is not None}
        if computed:
            rewritten += store.rewrite(portraits, computed, change)
        after = rows[-1][0]
        if rest is not None:
            rest(time.monotonic() - started)


class Rescorer(threading.Thread):
    """Runs :func:`rescore_stored` after each new snapshot of one scorer, from a daemon thread.

    A pass works at most ``share`` of its time: it rests after each batch in proportion to the batch's
    work, so the topic follower and the requests get the interpreter in between.
    """

    def __init__(self, store: LocalStore, portraits: bytes, scorer: Scorer, *, name: str = "rescorer", share: float = 0.5):
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        super().__init__(name=name, daemon=True)
        self.store, self.portraits, self.scorer = store, portraits, scorer
        self.share = share
        self._stopping = threading.Event()

    def _rest(self, worked_s: float) -> None:
        if self.share < 1:
            self._stopping.wait(worked_s * (1 / self.share - 1))

    def stop(self) -> None:
        self._stopping.set()
        self.scorer.snapshot_arrived.set()

    def run(self) -> None:
        arrived = self.scorer.snapshot_arrived
        while not self._stopping.is_set():
            arrived.wait()
            arrived.clear()
            version = self.scorer.version
            if self._stopping.is_set() or version is None:
                continue
            try:
                self.scorer.rescored_portraits += rescore_stored(self.store, self.portraits, self.scorer, rest=self._rest)
            except Exception as error:  # keep serving; the next snapshot tries again
                log.warning("%s: re-scoring pass failed: %s: %s", self.name, type(error).__name__, error)
                continue
            self.scorer.rescored_version = version
