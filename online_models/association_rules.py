"""Support, confidence and lift of co-purchase pairs, and a user's next categories, from an association summary.

The summary is :meth:`online_models.associations.AssociationCounts.summary`: ``N`` baskets
in the window (those naming a category; for items, those naming an item), ``n(A)`` baskets
holding A, ``n(AB)`` baskets holding both. For a pair:

* support = n(AB) / N, the share of baskets holding both;
* confidence(A -> B) = n(AB) / n(A), the share of A's baskets that also hold B (and B -> A);
* lift = n(AB) N / (n(A) n(B)): how many times more often the two are bought together than
  if they were bought independently (1: no association; above 1, bought together).

All are rounded to 4 places (:func:`online_models.vocabulary.ratio`). Item counts come from
bounded sketches: the summary says how far they can be off (``max_error``, 0 while exact).

A user's **next categories** are their top categories crossed with lift: for each category
the user does not already hold among their top categories, the highest lift with any of them,
over the pairs bought together in at least ``min_pair_baskets`` baskets; the ones with lift
above 1, highest first (then more baskets, then by name), at most ``limit`` of them.

>>> summary = {"categories": {"baskets": 100, "counts": {"baby": 20, "health": 25, "toys": 30, "snacks": 50},
...            "pairs": [["baby", "health", 10], ["baby", "toys", 8], ["snacks", "toys", 12]]},
...            "next_categories": {"limit": 3, "min_pair_baskets": 3}}
>>> rule = pair_rules(summary, category="health")[0]
>>> rule["a"], rule["b"], rule["support"], rule["confidence_ab"], rule["confidence_ba"], rule["lift"]
('health', 'baby', 0.1, 0.4, 0.5, 2.0)
>>> next_categories(["baby", "snacks"], summary)
[{'category': 'health', 'lift': 2.0, 'because': 'baby'}, {'category': 'toys', 'lift': 1.3333, 'because': 'baby'}]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from online_models.baskets import ITEM_SEPARATOR
from online_models.vocabulary import ratio

Kind = Literal["category", "item"]
SortKey = Literal["support", "confidence", "lift"]


def _pair_counts(summary: dict[str, Any], kind: Kind) -> tuple[int, dict[str, int], list[tuple[str, str, int, int, int]]]:
    """N, n(A) by name, and (A, B, n(AB), lower, upper) of the summary's pairs of ``kind``."""
    if kind == "category":
        block = summary.get("categories") or {}
        singles = {name: int(n) for name, n in (block.get("counts") or {}).items()}
        pairs = [(a, b, int(n), int(n), int(n)) for a, b, n in block.get("pairs") or ()]
    else:
        block = summary.get("items") or {}
        singles = {name: int(bounds[0]) for name, bounds in (block.get("counts") or {}).items()}
        pairs = [(a, b, int(n), int(low), int(high)) for a, b, n, low, high in block.get("pairs") or ()]
    return int(block.get("baskets") or 0), singles, pairs


def category_of(name: str, kind: Kind) -> str:
    """The category of a counted name: the name itself for a category, the part before the separator for an item.

    >>> category_of("baby", "category"), category_of("baby\\x1fb-001", "item")
    ('baby', 'baby')
    """
    return name if kind == "category" else name.partition(ITEM_SEPARATOR)[0]


def pair_rules(
    summary: dict[str, Any],
    *,
    kind: Kind = "category",
    category: str | None = None,
    min_baskets: int = 1,
    sort: SortKey = "support",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """The pairs of ``kind`` bought together in at least ``min_baskets`` baskets, with their support, confidence
    both ways and lift, best first by ``sort`` (confidence: the higher of the two ways).

    With ``category``, only the pairs that hold that category (an item of it), that one first (``a``).
    Each pair: ``a``, ``b``, ``baskets`` n(AB) (``baskets_low``/``baskets_high``: its bounds), ``a_baskets``,
    ``b_baskets``, ``support``, ``confidence_ab``, ``confidence_ba``, ``lift``.
    """
    total, singles, pairs = _pair_counts(summary, kind)
    rules = []
    for a, b, n, low, high in pairs:
        if n < min_baskets:
            continue
        if category is not None:
            if category_of(a, kind) != category:
                if category_of(b, kind) != category:
                    continue
                a, b = b, a
        n_a, n_b = singles.get(a, 0), singles.get(b, 0)
        rules.append(
            {
                "a": a,
                "b": b,
                "baskets": n,
                "baskets_low": low,
                "baskets_high": high,
                "a_baskets": n_a,
                "b_baskets": n_b,
                "support": ratio(n, total),
                "confidence_ab": ratio(n, n_a),
                "confidence_ba": ratio(n, n_b),
                "lift": ratio(n * total, n_a * n_b),
            }
        )

    def rank(rule: dict[str, Any]) -> tuple:
        if sort == "lift":
            value = rule["lift"] or 0.0
        elif sort == "confidence":
            value = max(rule["confidence_ab"] or 0.0, rule["confidence_ba"] or 0.0)
        else:
            value = rule["support"] or 0.0
        return (-value, -rule["baskets"], rule["a"], rule["b"])

    rules.sort(key=rank)
    return rules[:limit]


class CategoryLifts:
    """The lift of every category pair bought together in at least ``min_pair_baskets`` baskets, made once per
    summary, and the next categories of any user from it (:meth:`next_for`).

    ``limit`` and ``min_pair_baskets`` default to the summary's (the aggregator's settings).
    """

    def __init__(self, summary: dict[str, Any], *, limit: int | None = None, min_pair_baskets: int | None = None):
        settings = summary.get("next_categories") or {}
        self.limit = int(settings.get("limit", 3)) if limit is None else limit
        self.min_pair_baskets = int(settings.get("min_pair_baskets", 3)) if min_pair_baskets is None else min_pair_baskets
        total, singles, pairs = _pair_counts(summary, "category")
        #: category -> {other category: (lift, baskets holding both)}
        self.table: dict[str, dict[str, tuple[float, int]]] = {}
        for a, b, n, _, _ in pairs:
            n_a, n_b = singles.get(a, 0), singles.get(b, 0)
            if n < self.min_pair_baskets or not n_a or not n_b:
                continue
            lift = ratio(n * total, n_a * n_b)
            self.table.setdefault(a, {})[b] = (lift, n)
            self.table.setdefault(b, {})[a] = (lift, n)

    def next_for(self, top_categories: Iterable[str]) -> list[dict[str, Any]]:
        """The next categories of a user with these top categories (best first): ``{"category", "lift", "because"}`` each."""
        held = list(dict.fromkeys(top_categories))
        best: dict[str, tuple[float, int, str]] = {}
        for mine in held:
            for other, (lift, baskets) in self.table.get(mine, {}).items():
                if other in held or lift <= 1:
                    continue
                current = best.get(other)
                if current is None or (lift, baskets) > (current[0], current[1]):
                    best[other] = (lift, baskets, mine)
        ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[: self.limit]
        return [{"category": name, "lift": lift, "because": because} for name, (lift, _, because) in ranked]


def next_categories(top_categories: Iterable[str], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The next categories of a user with these top categories under ``summary`` (:class:`CategoryLifts`)."""
    return CategoryLifts(summary).next_for(top_categories)
