"""Review sentiment: the scorer, its accuracy, the fold against a batch computation, tags' inputs, churn reasons."""

from __future__ import annotations

import random
import re
from pathlib import Path

import orjson
import pytest

from online_models.admission import review_sentiment
from online_models.churn import churn_scores, negative_review_reason
from online_models.events import parse_event
from online_models.mbgnbd import MBGNBD
from online_models.portrait import PortraitConfig, PortraitState, update
from online_models.processor import EngineConfig, PartitionProcessor, Record
from online_models.replay import replay_history
from online_models.sentiment import (
    MAX_SCORED_CHARS,
    RatingScorer,
    ReviewScore,
    ShippedModelScorer,
    sentiment_label,
    text_language,
)
from online_models.sentiment_eval import evaluate, format_table, load_labelled
from online_models.simulation import REVIEW_TEXTS, WORDLESS_REVIEWS, ShopSimulator, review_truth
from tests.reference import batch_sentiment, parse_iso
from tests.unit.portrait_builder import DAY, T0, History, as_json, published

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def scorer() -> ShippedModelScorer:
    return ShippedModelScorer()


# -- the scorer ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, language",
    [
        ("质量很好", "zh"),
        ("Great value for money", "en"),
        ("iPhone 手机壳很好看", "zh"),  # 6 Latin letters, 5 ideographs: Chinese
        ("Works with my iPhone, 好", "en"),
        ("👍👍👍", None),
        ("1234 !!!", None),
        ("とても良いです", None),  # Japanese kana outweigh the one ideograph
        ("", None),
    ],
)
def test_language_from_the_share_of_cjk_characters(text, language):
    assert text_language(text) == language


def test_chinese_and_english_texts_get_the_sign_of_their_sentiment(scorer):
    for text in ("物流很快，包装完好，五星好评", "Love it, will buy again."):
        assert scorer.score(text, 1).score > 0.2  # the text wins over the rating
    for text in ("太差了，用了一天就坏了", "Terrible, broke after one day."):
        assert scorer.score(text, 5).score < -0.2
    assert scorer.score("物流很快，包装完好，五星好评", None).source == "text_zh"
    assert scorer.score("Love it, will buy again.", None).source == "text_en"


def test_unreadable_text_falls_back_to_the_rating(scorer):
    assert scorer.score("👍👍👍", 5) == ReviewScore(1.0, "rating")
    assert scorer.score(None, 2) == ReviewScore(-0.5, "rating")
    assert scorer.score("   ", 3) == ReviewScore(0.0, "rating")
    # English without a word of opinion: VADER reads nothing, the rating speaks
    assert scorer.score("Delivered on Tuesday to the pickup point.", 4) == ReviewScore(0.5, "rating")
    assert scorer.score("👍👍👍", None) is None and scorer.score(None, None) is None


def test_scores_are_deterministic_rounded_and_bounded(scorer):
    texts = [row["text"] for row in load_labelled()][::7]
    fresh = ShippedModelScorer(cached_texts=0)
    for text in texts:
        first, again = scorer.score(text, None), fresh.score(text, None)
        if first is None:
            continue
        assert first == again
        assert -1 <= first.score <= 1 and round(first.score, 4) == first.score


def test_only_the_leading_characters_are_scored(scorer):
    head = "太差了，用了一天就坏了，客服也不理人。" * 20
    assert len(head) > MAX_SCORED_CHARS
    assert scorer.score(head + "非常好" * 500, None) == scorer.score(head[:MAX_SCORED_CHARS], None)


def test_kept_scores_are_bounded():
    scorer = ShippedModelScorer(cached_texts=3)
    for i in range(10):
        scorer.score(f"Great product number {i}", None)
    assert len(scorer._scores) == 3


def test_labels():
    assert [sentiment_label(s) for s in (-1, -0.2, -0.19, 0.19, 0.2, 1)] == [
        "negative",
        "negative",
        "neutral",
        "neutral",
        "positive",
        "positive",
    ]


# -- accuracy on the labelled set ----------------------------------------------------------------


@pytest.fixture(scope="module")
def accuracy(scorer):
    return evaluate(load_labelled(), scorer)


def test_labelled_set_is_what_its_readme_says():
    rows = load_labelled()
    counts = {(lang, label): 0 for lang in ("zh", "en") for label in ("positive", "negative", "neutral")}
    for row in rows:
        counts[(row["lang"], row["label"])] += 1
        assert row["text"].strip() and 1 <= float(row["rating"]) <= 5
    assert counts == {(lang, label): 30 if label == "neutral" else 60 for lang, label in counts}
    assert len({row["text"] for row in rows}) == len(rows)


def test_scorer_accuracy_floors(accuracy):
    assert accuracy["zh"]["text"]["polarity"] >= 0.85
    assert accuracy["en"]["text"]["polarity"] >= 0.68
    assert accuracy["en"]["text_then_rating"]["polarity"] >= 0.85
    for language in ("zh", "en"):
        assert accuracy[language]["text"]["three_class"] >= 0.6


def test_readme_reports_the_accuracy_the_labelled_set_gives(accuracy):
    """The README's table is what ``python -m online_models.sentiment_eval`` prints (timings aside)."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- sentiment-accuracy -->\n(.*?)\n<!-- /sentiment-accuracy -->", text, re.S)
    assert block is not None, "README lacks the sentiment accuracy table"

    def without_timing(table: str) -> list[str]:
        return [line.rsplit("|", 2)[0] for line in table.strip().splitlines()]

    assert without_timing(block.group(1)) == without_timing(format_table(accuracy))


# -- the fold, against the batch computation ------------------------------------------------------


def assert_sentiment_matches(view: dict, events: list[dict], as_of: int) -> None:
    expected = batch_sentiment(events, as_of)
    got = view["sentiment"]
    assert got["reviews"] == expected["reviews"]
    assert got["positive"] == expected["positive"] and got["negative"] == expected["negative"]
    assert got["negative_recent"] == expected["negative_recent"]
    if expected["mean"] is None:
        assert got["mean"] is None
    else:
        assert got["mean"] == pytest.approx(expected["mean"], abs=1.5e-4)
    shown = [(parse_iso(r["at"]), r["item_id"], r["score"]) for r in got["recent_negative"]]
    assert shown == expected["recent_negative"]


@pytest.fixture(scope="module")
def simulated():
    simulator = ShopSimulator(n_users=40, start_ms=1_717_171_200_000, seed=5)
    events = list(simulator.history(45))
    return simulator, events


def test_replayed_states_match_the_batch_computation(simulated):
    _, events = simulated
    result = replay_history(events)
    by_user: dict[str, list[dict]] = {}
    for event in events:
        by_user.setdefault(event["user_id"], []).append(event)
    reviewed = 0
    config = PortraitConfig()
    for user_id, state in result.states.items():
        for as_of in (result.as_of, result.as_of - 20 * DAY):  # now, and as a check 20 days back would see it
            if as_of < (state.last_seen or 0):
                continue
            assert_sentiment_matches(published(state, as_of=as_of, config=config), by_user[user_id], as_of)
        reviewed += state.reviews_scored > 0
    assert reviewed >= 10  # the history exercises the figures
    assert sum(s.reviews_from_text for s in result.states.values()) > sum(s.reviews_scored for s in result.states.values()) / 2


def test_out_of_order_and_redelivered_reviews_leave_the_same_figures():
    h = History(scorer=ShippedModelScorer())
    texts = ["太差了，已申请退款", "Great quality, fast delivery.", None, "假货，差评", "Not as described.", "👎"]
    for i, text in enumerate(texts * 3):
        h.review(day=i * 2.5, rating=1 + (i * 3) % 5, text=text, item_id=f"item-{i}")
    in_order = as_json(h.portrait(as_of_day=50))
    rng = random.Random(3)
    shuffled = History(scorer=ShippedModelScorer())
    shuffled.events = [dict(e) for e in h.events] + [dict(e) for e in rng.sample(h.events, 5)]  # redeliveries
    rng.shuffle(shuffled.events)
    state = PortraitState("u1")
    for event in shuffled.events:
        admitted = parse_event(orjson.dumps(event))
        sentiment = None if state.has_seen(admitted.event_id) else review_sentiment(admitted, shuffled.scorer)
        update(state, admitted, watermark=0, config=shuffled.config, sentiment=sentiment)
    assert published(state, as_of=in_order_as_of(in_order), config=shuffled.config)["sentiment"] == in_order["sentiment"]
    assert_sentiment_matches(in_order, h.events, in_order_as_of(in_order))


def in_order_as_of(view: dict) -> int:
    return parse_iso(view["as_of"])


def test_recent_negative_reviews_leave_the_state_with_the_window_and_stay_bounded():
    config = PortraitConfig(max_recent_negative_reviews=5)
    h = History(config=config)
    for i in range(12):
        h.review(day=i, rating=1, item_id=f"item-{i}")
    state = h.state()
    assert len(state.recent_negative_reviews) == 5  # the newest five
    assert [entry[1] for entry in state.recent_negative_reviews] == [f"item-{i}" for i in range(7, 12)]
    assert state.negative_reviews == 12
    # the watermark passes the window: the kept reviews are dropped, the lifetime counts stay
    later = parse_event(orjson.dumps({"event_id": "v", "user_id": "u1", "type": "view", "ts": T0 + 60 * DAY}))
    update(state, later, watermark=T0 + 60 * DAY, config=config)
    assert state.recent_negative_reviews == [] and state.negative_reviews == 12
    view = published(state, as_of=T0 + 60 * DAY, config=config)["sentiment"]
    assert view["negative_recent"] == 0 and view["recent_negative"] == [] and view["mean"] == -1.0


def test_only_review_events_pay_for_scoring():
    class CountingScorer(RatingScorer):
        def __init__(self):
            self.calls = 0

        def score(self, text, rating):
            self.calls += 1
            return super().score(text, rating)

    counting = CountingScorer()
    engine = PartitionProcessor(0, {}, EngineConfig(scorer=counting))
    kinds = ["view", "review", "add_to_cart", "review", "search", "review"]
    for offset, kind in enumerate(kinds + kinds[1:2]):
        body = {"event_id": f"e{offset % len(kinds)}", "user_id": "u1", "type": kind, "ts": T0 + offset * 60_000, "rating": 4, "text": "ok"}
        engine.process(Record("events", "events", offset, b"u1", orjson.dumps(body)), now_ms=T0 + DAY)
    assert counting.calls == 3  # three reviews; the redelivered one is not scored again
    assert engine.state("u1").reviews_scored == 3


# -- churn reasons ---------------------------------------------------------------------------------


def test_a_recent_negative_review_is_a_churn_reason():
    h = History().pay(day=1, amount=80.0).pay(day=9, amount=60.0)
    h.review(day=20, rating=1, item_id="snacks-004").review(day=25, rating=2, text="Poor quality, very disappointed.", item_id="books-002")
    h.scorer = ShippedModelScorer()
    portrait = h.portrait(as_of_day=40)
    model = MBGNBD.from_params(r=0.5, alpha=6.0, a=0.9, b=1.6)
    reasons = churn_scores(portrait, mbgnbd=model).reasons
    expected = negative_review_reason(portrait)
    assert expected in reasons
    score = portrait.sentiment.recent_negative[0].score
    assert expected == f"2 negative reviews in the last 30 days; latest 2024-05-26 on item books-002 (sentiment {score:+.2f})"
    # 31 days after the last negative review, it is no longer recent
    later = h.portrait(as_of_day=56)
    assert negative_review_reason(later) is None
    assert not any("negative review" in r for r in churn_scores(later, mbgnbd=model).reasons)


# -- the simulator -----------------------------------------------------------------------------------


def test_simulated_reviews_carry_their_truth(simulated):
    simulator, events = simulated
    truth = simulator.ground_truth()
    reviews = [e for e in events if e["type"] == "review"]
    assert reviews and any("text" not in e for e in reviews) and sum("text" in e for e in reviews) > len(reviews) / 2
    for e in reviews:
        label = review_truth(e["rating"])
        if "text" in e:
            language = truth[e["user_id"]]["review_language"]
            assert e["text"] in REVIEW_TEXTS[language][label] or e["text"] in WORDLESS_REVIEWS[label]


def test_the_scorer_recovers_the_simulated_truth(simulated, scorer):
    _, events = simulated
    reviews = [e for e in events if e["type"] == "review" and e.get("text")]
    right = sum(sentiment_label(scorer.score(e["text"], e["rating"]).score) == review_truth(e["rating"]) for e in reviews)
    assert right / len(reviews) >= 0.8


def test_critics_review_worse():
    simulator = ShopSimulator(n_users=300, start_ms=1_717_171_200_000, seed=1)
    truth = simulator.ground_truth()
    stars: dict[bool, list[float]] = {True: [], False: []}
    for e in simulator.history(30):
        if e["type"] == "review":
            stars[truth[e["user_id"]]["critic"]].append(e["rating"])
    assert stars[True] and stars[False]
    assert sum(stars[True]) / len(stars[True]) < 3 < sum(stars[False]) / len(stars[False])
