"""What review sentiment costs the core: a shop history replayed with each review scorer, CPU time per event.

The simulator's shop traffic (:class:`online_models.simulation.ShopSimulator`: reviews are a
fraction of a percent of its events, 80% of them with text) is replayed through
:func:`online_models.replay.replay_history` three times with each scorer, the best CPU time
kept: the rating alone (:class:`~online_models.sentiment.RatingScorer`, no text models), the
shipped scorer with its models loaded, and the same with what start-up made frozen out of the
garbage collector's passes (``gc.freeze()``, as the worker does). It also times the scoring of the
history's reviews alone, with and without the scorer's kept scores.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from online_models.processor import EngineConfig
from online_models.replay import replay_history
from online_models.sentiment import RatingScorer, ReviewScorer, ShippedModelScorer
from online_models.simulation import ShopSimulator
from online_models.watch import WatchConfig

START_MS = 1_717_171_200_000


def _shipped_frozen() -> ShippedModelScorer:
    scorer = ShippedModelScorer().warm_up()
    gc.freeze()
    return scorer


def measure(users: int, days: float, seed: int, repeats: int = 3) -> dict:
    """CPU seconds of the replay and µs per review of the scoring alone, per scorer."""
    events = list(ShopSimulator(n_users=users, start_ms=START_MS, seed=seed).history(days))
    reviews = [(e.get("text"), e["rating"]) for e in events if e["type"] == "review"]
    makers: dict[str, Callable[[], ReviewScorer]] = {
        "rating only": RatingScorer,
        "shipped": lambda: ShippedModelScorer().warm_up(),
        "shipped, gc.freeze()": _shipped_frozen,
    }
    out = {"events": len(events), "reviews": len(reviews), "with_text": sum(t is not None for t, _ in reviews), "scorers": {}}
    for name, make in makers.items():
        best = None
        for _ in range(repeats):
            engine = EngineConfig(watch=WatchConfig(), retention_ms=0, sweep_batch=None, scorer=make())
            started = time.process_time()
            replay_history(events, engine=engine)
            took = time.process_time() - started
            best = took if best is None or took < best else best
        out["scorers"][name] = {"replay_cpu_seconds": round(best, 3), "us_per_event": round(best / len(events) * 1e6, 1)}
    gc.unfreeze()
    for name, scorer in (("kept scores", ShippedModelScorer().warm_up()), ("nothing kept", ShippedModelScorer(cached_texts=0).warm_up())):
        started = time.process_time()
        for text, rating in reviews:
            scorer.score(text, rating)
        out[f"us_per_review, {name}"] = round((time.process_time() - started) / max(1, len(reviews)) * 1e6, 1)
    return out
