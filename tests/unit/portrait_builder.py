"""Portraits for unit tests, made by folding real events through ``portrait.update`` + ``render``.

>>> p = History().views(day=0, n=3).pay(day=1, amount=80.0, hour=0, minute=0).portrait(as_of_day=2)
>>> p.lifetime.purchases, p.funnel.views, p.days_since_last_purchase
(1, 3, 1.0)
"""

from __future__ import annotations

import orjson

from online_models.admission import review_sentiment
from online_models.clock import ceil_minute
from online_models.events import parse_event
from online_models.portrait import PortraitConfig, PortraitState, render, update
from online_models.portrait_types import RenderedPortrait
from online_models.sentiment import RatingScorer, ReviewScorer

T0 = 1_714_521_600_000  # 2024-05-01T00:00:00Z, a Wednesday
DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000


class History:
    """The events of one user; ``day`` counts days from :data:`T0` (fractions allowed)."""

    def __init__(self, user_id: str = "u1", config: PortraitConfig | None = None, scorer: ReviewScorer | None = None):
        self.user_id = user_id
        self.config = config or PortraitConfig()
        #: scores the reviews (by default from their rating alone)
        self.scorer = scorer or RatingScorer()
        self.events: list[dict] = []

    def add(self, kind: str, day: float, hour: int = 12, minute: int = 0, **fields) -> "History":
        """One event of type ``kind`` at ``T0 + day`` days ``+ hour:minute``."""
        ts = T0 + int(day * DAY) + hour * HOUR + minute * MINUTE
        event = {"event_id": f"e{len(self.events)}", "user_id": self.user_id, "type": kind, "ts": ts}
        event.update({k: v for k, v in fields.items() if v is not None})
        self.events.append(event)
        return self

    def _many(self, kind: str, day: float, n: int, hour: int, **fields) -> "History":
        for i in range(n):
            self.add(kind, day, hour, minute=i % 60, **fields)
        return self

    def views(self, day: float, n: int = 1, hour: int = 12, category: str = "snacks", device: str = "ios") -> "History":
        return self._many("view", day, n, hour, category=category, device=device)

    def carts(self, day: float, n: int = 1, hour: int = 12, category: str = "snacks", device: str = "ios") -> "History":
        return self._many("add_to_cart", day, n, hour, category=category, device=device)

    def favorites(self, day: float, n: int = 1, hour: int = 12, category: str = "snacks", device: str = "ios") -> "History":
        return self._many("favorite", day, n, hour, category=category, device=device)

    def pay(
        self,
        day: float,
        amount: float = 100.0,
        hour: int = 12,
        minute: int = 30,
        promo: bool = False,
        category: str = "snacks",
        device: str = "ios",
    ) -> "History":
        return self.add("pay", day, hour, minute, amount=amount, promo=promo, category=category, device=device)

    def refund(self, day: float, amount: float = 100.0, hour: int = 13, device: str = "ios") -> "History":
        return self.add("refund", day, hour, amount=amount, device=device)

    def review(
        self, day: float, rating: float | None = None, text: str | None = None, item_id: str | None = "snacks-001", hour: int = 14
    ) -> "History":
        return self.add("review", day, hour, rating=rating, text=text, item_id=item_id, category="snacks")

    def state(self) -> PortraitState:
        state = PortraitState(self.user_id)
        for event in sorted(self.events, key=lambda e: e["ts"]):
            admitted = parse_event(orjson.dumps(event))
            sentiment = review_sentiment(admitted, self.scorer)
            update(state, admitted, watermark=event["ts"], config=self.config, sentiment=sentiment)
        return state

    def portrait(self, as_of_day: float | None = None) -> RenderedPortrait:
        """``render`` output at ``T0 + as_of_day`` (default: the last event)."""
        as_of = None if as_of_day is None else ceil_minute(T0 + int(as_of_day * DAY))
        return render(self.state(), as_of=as_of, config=self.config)


def as_json(portrait) -> dict:
    """A typed portrait as the JSON value it publishes (what the API stores and serves)."""
    return orjson.loads(orjson.dumps(portrait))


def published(state: PortraitState, *, as_of: int | None, config: PortraitConfig) -> dict:
    """``render`` of ``state`` as the JSON value it publishes, for comparing with the batch references."""
    return as_json(render(state, as_of=as_of, config=config))
