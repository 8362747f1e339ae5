"""Review sentiment: one score per ``review`` event, in [-1, 1], given once at admission.

A :class:`ReviewScorer` turns a review's ``text`` and ``rating`` into a
:class:`ReviewScore`. The shipped :class:`ShippedModelScorer` reads the text's
language from its share of CJK ideographs (:func:`text_language`), scores Chinese
with the naive Bayes model that ships in ``pysenti`` (trained on shop reviews,
words cut by ``jieba``) and English with VADER (``vaderSentiment``); a review
without text, or with text in neither language (emoji only, say), falls back to
its ``rating`` (:func:`rating_score`); so does English text in which VADER finds no word
of opinion (a compound score of exactly 0). Every score is rounded to 4 decimals, so
the same review always gets the same score: the fold and any replay agree.

The scale: -1 (wholly negative) to +1 (wholly positive), 0 neutral. Chinese:
``2 P(positive) - 1`` under the Bayes model; English: VADER's compound score;
rating: ``(rating - 3) / 2`` clipped to [-1, 1] (1 star -1, 3 stars 0, 5 stars +1).
A score at or below :data:`NEGATIVE_AT` counts as negative, at or above
:data:`POSITIVE_AT` as positive. Accuracy on ``tests/data/labelled_reviews.csv``:
``python -m online_models.sentiment_eval`` (figures in the README).

>>> rating_score(1), rating_score(3), rating_score(4.5), rating_score(0)
(-1.0, 0.0, 0.75, -1.0)
>>> text_language("物流很快，包装完好"), text_language("Great value!"), text_language("iPhone 壳很好看"), text_language("👍👍")
('zh', 'en', 'zh', None)
>>> RatingScorer().score("whatever the text says", 2)
ReviewScore(score=-0.5, source='rating')
>>> RatingScorer().score(None, None) is None
True
>>> sentiment_label(-0.5), sentiment_label(0.1), sentiment_label(0.2)
('negative', 'neutral', 'positive')
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple, Protocol

#: a score at or below this is a negative review
NEGATIVE_AT = -0.2
#: a score at or above this is a positive review
POSITIVE_AT = 0.2
#: only this many leading characters of a review are scored: a bound on the cost of one review
MAX_SCORED_CHARS = 200
#: share of a text's letters that must be CJK ideographs for it to be read as Chinese
CHINESE_SHARE = 0.3
#: share of a text's letters that must be Latin (ASCII) letters for it to be read as English
ENGLISH_SHARE = 0.5
#: recent review texts whose score a scorer keeps (stock phrases such as 好评 or "Good" recur)
CACHED_TEXTS = 4096
#: where a score came from
SOURCES = ("text_zh", "text_en", "rating")


class ReviewScore(NamedTuple):
    """A review's sentiment in [-1, 1] (4 decimals) and where it came from (:data:`SOURCES`)."""

    score: float
    source: str


class ReviewScorer(Protocol):
    """Scores one review; None when neither its text nor its rating can be read.

    Implementations must be deterministic: the same text and rating always give the same score.
    """

    def score(self, text: str | None, rating: float | None) -> ReviewScore | None: ...


def sentiment_label(score: float) -> str:
    """``negative``, ``neutral`` or ``positive`` for a score (:data:`NEGATIVE_AT`, :data:`POSITIVE_AT`)."""
    if score <= NEGATIVE_AT:
        return "negative"
    return "positive" if score >= POSITIVE_AT else "neutral"


def rating_score(rating: float) -> float:
    """A star rating (0-5) on the sentiment scale: ``(rating - 3) / 2``, clipped to [-1, 1]."""
    return round(max(-1.0, min(1.0, (rating - 3.0) / 2.0)), 4)


def text_language(text: str) -> str | None:
    """``zh``, ``en`` or None (neither) for a review text, from the share of CJK ideographs among its letters.

    One pass over at most :data:`MAX_SCORED_CHARS` characters: Chinese when at least
    :data:`CHINESE_SHARE` of the letters are CJK ideographs, else English when at least
    :data:`ENGLISH_SHARE` are ASCII letters; None for text without letters or in other scripts.
    """
    cjk = latin = other = 0
    for char in text[:MAX_SCORED_CHARS]:
        if "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf":
            cjk += 1
        elif char.isalpha():
            if char.isascii():
                latin += 1
            else:
                other += 1
    letters = cjk + latin + other
    if not letters:
        return None
    if cjk >= CHINESE_SHARE * letters:
        return "zh"
    return "en" if latin >= ENGLISH_SHARE * letters else None


class RatingScorer:
    """Scores from the rating alone (:func:`rating_score`): the fallback, and a scorer without models."""

    def score(self, text: str | None, rating: float | None) -> ReviewScore | None:
        """The rating's score, None without a rating."""
        return None if rating is None else ReviewScore(rating_score(rating), "rating")


class ShippedModelScorer:
    """pysenti's Bayes model for Chinese, VADER for English, the rating otherwise.

    The models load on the first review of their language (or :meth:`warm_up`);
    the scores of the last :data:`CACHED_TEXTS` texts are kept.
    """

    def __init__(self, cached_texts: int = CACHED_TEXTS):
        self._chinese: Any = None
        self._english: Any = None
        self._cached_texts = cached_texts
        self._scores: OrderedDict[str, ReviewScore | None] = OrderedDict()

    def warm_up(self) -> "ShippedModelScorer":
        """Load both models now (a worker does this at start, not on its first review)."""
        self._chinese_model()
        self._english_model()
        return self

    def _chinese_model(self) -> Any:
        if self._chinese is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)  # not the dictionary's loading messages
            from pysenti import ModelClassifier

            self._chinese = ModelClassifier()
        return self._chinese

    def _english_model(self) -> Any:
        if self._english is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._english = SentimentIntensityAnalyzer()
        return self._english

    def text_score(self, text: str) -> ReviewScore | None:
        """The score of a text alone; None when it is in neither language."""
        text = text[:MAX_SCORED_CHARS].strip()
        scores = self._scores
        if text in scores:
            scores.move_to_end(text)
            return scores[text]
        language = text_language(text)
        if language == "zh":
            probability = self._chinese_model().classify(text)["positive_prob"]
            found: ReviewScore | None = ReviewScore(round(2.0 * probability - 1.0, 4), "text_zh")
        elif language == "en":
            compound = round(self._english_model().polarity_scores(text)["compound"], 4)
            # exactly 0: VADER found no word of opinion in the text (it reads nothing from it)
            found = ReviewScore(compound, "text_en") if compound != 0.0 else None
        else:
            found = None
        scores[text] = found
        if len(scores) > self._cached_texts:
            scores.popitem(last=False)
        return found

    def score(self, text: str | None, rating: float | None) -> ReviewScore | None:
        """The text's score when it can be read, else the rating's, else None."""
        found = self.text_score(text) if text else None
        if found is not None:
            return found
        return None if rating is None else ReviewScore(rating_score(rating), "rating")
