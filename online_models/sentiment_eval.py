"""Accuracy of a review scorer on a labelled set of reviews; ``python -m online_models.sentiment_eval``.

The labelled set is a CSV with columns ``lang`` (zh or en), ``label`` (positive,
negative or neutral), ``rating`` (the stars given with the review) and ``text``;
the project's is ``tests/data/labelled_reviews.csv`` (its provenance is in
``tests/data/README.md``). For each language it reports:

* polarity accuracy: on the positive and negative reviews, the share whose score
  has the label's sign (a score of exactly 0 counts as wrong);
* 3-class accuracy: on every review, the share whose :func:`~online_models.sentiment.sentiment_label`
  is the label;
* the same two for the text with the rating as fallback (what the worker scores), and for
  the rating alone;
* the mean time to score one review with the text scorer, the models loaded.

>>> rows = [{"lang": "en", "label": "negative", "rating": "1", "text": "x"},
...         {"lang": "en", "label": "neutral", "rating": "3", "text": "y"}]
>>> from online_models.sentiment import RatingScorer
>>> figures = evaluate(rows, RatingScorer())
>>> figures["en"]["reviews"], figures["en"]["unread"], figures["en"]["text"], figures["en"]["text_then_rating"]
(2, 2, {'polarity': 0.0, 'three_class': 0.5}, {'polarity': 1.0, 'three_class': 1.0})
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

from online_models.sentiment import RatingScorer, ReviewScorer, ShippedModelScorer, rating_score, sentiment_label

#: the project's labelled set, beside the tests
LABELLED_REVIEWS = Path(__file__).resolve().parents[1] / "tests" / "data" / "labelled_reviews.csv"


def load_labelled(path: str | Path = LABELLED_REVIEWS) -> list[dict[str, str]]:
    """The rows of a labelled set."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _accuracy(scores: list[float], labels: list[str]) -> dict[str, float | None]:
    polar = [(s, label) for s, label in zip(scores, labels) if label != "neutral"]
    right = sum((s > 0) if label == "positive" else (s < 0) for s, label in polar)
    return {
        "polarity": round(right / len(polar), 4) if polar else None,
        "three_class": round(sum(sentiment_label(s) == label for s, label in zip(scores, labels)) / len(labels), 4),
    }


def evaluate(rows: list[dict[str, str]], scorer: ReviewScorer) -> dict[str, dict[str, Any]]:
    """Per language: review count, the scorer's accuracy on the text, the rating fallback's, and µs per review.

    ``text``: the scorer given the text alone (a text it cannot read scores 0, neutral);
    ``text_then_rating``: given text and rating, as at admission; ``rating``: the rating alone.
    ``unread``: texts the scorer could not read.
    """
    out: dict[str, dict[str, Any]] = {}
    for language in sorted({row["lang"] for row in rows}):
        subset = [row for row in rows if row["lang"] == language]
        labels = [row["label"] for row in subset]
        scorer.score(subset[0]["text"], None)  # the models loaded before timing
        started = time.perf_counter()
        found = [scorer.score(row["text"], None) for row in subset]
        elapsed = time.perf_counter() - started
        scores = [0.0 if f is None else f.score for f in found]
        both = [scorer.score(row["text"], float(row["rating"])) for row in subset]
        out[language] = {
            "reviews": len(subset),
            "text": _accuracy(scores, labels),
            "text_then_rating": _accuracy([0.0 if f is None else f.score for f in both], labels),
            "rating": _accuracy([rating_score(float(row["rating"])) for row in subset], labels),
            "unread": sum(f is None for f in found),
            "us_per_review": round(elapsed / len(subset) * 1e6, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(LABELLED_REVIEWS), help="labelled set (CSV: lang, label, rating, text)")
    parser.add_argument("--rating-only", action="store_true", help="score with the rating scorer alone")
    args = parser.parse_args()
    rows = load_labelled(args.path)
    # a fresh scorer with no kept scores, so the timing is of the models themselves
    scorer: ReviewScorer = RatingScorer() if args.rating_only else ShippedModelScorer(cached_texts=0)
    print(format_table(evaluate(rows, scorer)))


def format_table(figures: dict[str, dict[str, Any]]) -> str:
    """The figures of :func:`evaluate` as the README's markdown table (polarity / 3-class accuracy)."""
    lines = [
        "| language | reviews | text unread | text alone | text, else rating | rating alone | µs per review |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for language, f in figures.items():
        pairs = [f"{f[k]['polarity']:.3f} / {f[k]['three_class']:.3f}" for k in ("text", "text_then_rating", "rating")]
        lines.append(f"| {language} | {f['reviews']} | {f['unread']} | {' | '.join(pairs)} | {f['us_per_review']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
