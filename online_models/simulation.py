"""Simulated shop traffic with ground truth, for demos, tests and model evaluation.

A pure, deterministic generator (standard library only): users belong to habit
groups (:data:`ARCHETYPES`) with their own active hours, weekdays, categories,
price band, funnel and promotion behaviour; some lapse at a recorded instant.
Events are plain dicts following the contract in :mod:`online_models.events`,
profiles follow :class:`online_models.events.Profile`.

>>> sim = ShopSimulator(n_users=14, start_ms=1_717_171_200_000, seed=7)  # 2024-06-01 00:00 +08:00
>>> events = list(sim.history(days=3))
>>> all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
True
>>> events == list(ShopSimulator(14, 1_717_171_200_000, seed=7).history(3))
True
>>> sorted({u.archetype for u in sim.users}) == sorted(ARCHETYPES)
True
>>> sim.profiles()[0]["user_id"], sim.users[0].user_id
('u0000', 'u0000')

Volume (events per user per day, measured by :func:`events_per_user_per_day`
over 28 days; lapsers are averaged over time they are silent too)::

    night_owl 10.7   weekend_shopper 9.8   promo_hunter 9.7   loyal_repeat 11.7
    browser 18.7     lapser 7.7            newcomer 4.8       default mix ~10.6

so 300 users x 30 days is about 96k events (1M events stream in ~8-14 s on one core, ~80 MB).
Scale with ``n_users`` and ``days``.

Calendar: promotion days are every Wednesday (member day) plus 3-8, 5-20,
6-18, 11-11 and 12-12 in shop-local time; see :meth:`ShopSimulator.is_promo_day`.

Orders and payments name a payment method (each user has a usual one) and users
share items now and then (``share`` events: after a purchase, or while browsing).
Both come from a random stream of their own, so the other events are the same with
``payments_and_shares=False``, which leaves them out:

>>> plain = list(ShopSimulator(14, 1_717_171_200_000, seed=7, payments_and_shares=False).history(3))
>>> [{k: v for k, v in e.items() if k != "payment_method"} for e in events if e["type"] != "share"] == plain
True

Orders: the lines a session checks out share one ``order_id`` (one order, one payment per
line). With ``companions=True`` a paid line of some categories brings a complementary item
into the same order (:data:`COMPANIONS`: baby care with health products, a phone with digital
accessories, ...), so the shop has co-purchase pairs to find; these extra events come from a
random stream of their own, so every other event of a seed is the same with or without them.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from bisect import bisect
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from typing import Iterator

from online_models import events as contract

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

CATEGORIES = (
    "snacks", "beauty", "apparel", "electronics", "home", "books", "baby", "sports",
    "pets", "fresh_food", "digital", "jewelry", "toys", "health", "outdoor",
)
# Median item price (CNY) per category; item prices spread log-normally around it.
_MEDIAN_PRICE = {
    "snacks": 25, "beauty": 180, "apparel": 220, "electronics": 1500, "home": 150,
    "books": 45, "baby": 120, "sports": 260, "pets": 90, "fresh_food": 60,
    "digital": 35, "jewelry": 800, "toys": 130, "health": 110, "outdoor": 350,
}
ITEMS_PER_CATEGORY = 40


def _build_catalogue() -> dict[str, tuple[tuple[str, float], ...]]:
    rng = random.Random("catalogue-v1")  # fixed: the shop is the same whatever the seed
    catalogue = {}
    for cat in CATEGORIES:
        prices = sorted(
            max(1.9, round(_MEDIAN_PRICE[cat] * math.exp(rng.gauss(0, 0.55))) - 0.1)
            for _ in range(ITEMS_PER_CATEGORY)
        )
        catalogue[cat] = tuple((f"{cat}-{i:03d}", p) for i, p in enumerate(prices))
    return catalogue


#: Items per category as ``(item_id, list price)``, cheapest first.
CATALOGUE = _build_catalogue()

#: category -> (the complementary category, the chance a paid line of it brings one into its order)
COMPANIONS = {
    "baby": ("health", 0.40),
    "electronics": ("digital", 0.45),
    "outdoor": ("sports", 0.40),
    "pets": ("home", 0.30),
    "apparel": ("beauty", 0.25),
    "snacks": ("fresh_food", 0.20),
}

DEVICES = ("ios", "android", "pc", "mini_program")
CHANNELS = ("organic", "search", "recommend", "live_stream", "social", "push", "ad")
#: How the shop's users usually pay (shares of users); a user pays the usual way 85% of the time.
PAYMENT_MIX = {"alipay": .52, "wechat_pay": .3, "installment": .07, "unionpay": .04, "credit_card": .04, "cash_on_delivery": .03}
MEMBER_LEVELS = ("regular", "silver", "gold", "platinum")

# (province or municipality, weight, ((city, tier), ...))
REGIONS = (
    ("Guangdong", 0.20, (("Guangzhou", 1), ("Shenzhen", 1), ("Dongguan", 2), ("Foshan", 2), ("Shantou", 3), ("Zhanjiang", 4))),
    ("Zhejiang", 0.16, (("Hangzhou", 1), ("Ningbo", 2), ("Wenzhou", 2), ("Jinhua", 3), ("Lishui", 4))),
    ("Jiangsu", 0.13, (("Nanjing", 1), ("Suzhou", 1), ("Wuxi", 2), ("Xuzhou", 3), ("Suqian", 4))),
    ("Shanghai", 0.10, (("Shanghai", 1),)),
    ("Beijing", 0.09, (("Beijing", 1),)),
    ("Shandong", 0.06, (("Jinan", 2), ("Qingdao", 2), ("Linyi", 3), ("Heze", 4))),
    ("Sichuan", 0.05, (("Chengdu", 1), ("Mianyang", 3), ("Nanchong", 4), ("Ganzi", 5))),
    ("Fujian", 0.04, (("Xiamen", 2), ("Fuzhou", 2), ("Quanzhou", 2), ("Nanping", 4))),
    ("Hubei", 0.04, (("Wuhan", 1), ("Yichang", 3), ("Enshi", 5))),
    ("Henan", 0.03, (("Zhengzhou", 2), ("Luoyang", 3), ("Zhoukou", 4))),
    ("Hunan", 0.03, (("Changsha", 2), ("Yueyang", 3), ("Xiangxi", 5))),
    ("Chongqing", 0.02, (("Chongqing", 1),)),
    ("Shaanxi", 0.02, (("Xi'an", 2), ("Baoji", 3))),
    ("Anhui", 0.02, (("Hefei", 2), ("Fuyang", 4))),
    ("Yunnan", 0.01, (("Kunming", 2), ("Dali", 4), ("Nujiang", 5))),
)

_FESTIVALS = {(3, 8), (5, 20), (6, 18), (11, 11), (12, 12)}

#: Review texts by language and the sentiment they were written with (the review's truth).
REVIEW_TEXTS = {
    "zh": {
        "positive": (
            "很好用，会回购！", "物流很快，包装完好，五星好评", "不错，性价比高", "质量很好，和图片一样",
            "家里人都很喜欢，推荐购买", "味道很好，已经第二次买了", "做工精细，超出预期", "客服很耐心，发货也快",
        ),
        "neutral": ("一般般，还行吧", "中规中矩", "还没用，先收货", "和描述差不多，没什么特别的", "凑单买的，还可以"),
        "negative": (
            "质量一般，有点失望", "做工粗糙", "太差了，已申请退款", "假货，差评", "物流太慢，包装也破了",
            "用了两天就坏了，不推荐", "味道很怪，不会再买了", "客服不理人，很失望",
        ),
    },
    "en": {
        "positive": (
            "Great quality, fast delivery.", "Love it, will buy again.", "Good value for money.",
            "Excellent product, exactly as described.", "Very happy with this purchase.", "Works great, highly recommend.",
        ),
        "neutral": ("Okay, nothing special.", "It is what it is.", "Average, as expected.", "Haven't tried it yet."),
        "negative": (
            "Not as described.", "Terrible, broke after one day.", "Poor quality, very disappointed.",
            "Awful packaging, it arrived damaged.", "Waste of money, would not recommend.", "Fake product, asked for a refund.",
        ),
    },
}
#: Texts that carry no words (the scorer reads them through the rating).
WORDLESS_REVIEWS = {"positive": ("👍👍👍", "5星！"), "neutral": ("……", "~"), "negative": ("👎", "!!!")}
#: Share of reviews with text, and of those texts without words.
REVIEW_TEXT_SHARE = 0.8
WORDLESS_SHARE = 0.05
#: Share of users who review in Chinese (the rest in English), and of critics.
CHINESE_REVIEWER_SHARE = 0.75
CRITIC_SHARE = 0.08
#: Weights of the stars 1-5 of a review without a refund: most users, and critics.
RATING_WEIGHTS = (1, 1, 3, 10, 20)
CRITIC_RATING_WEIGHTS = (9, 6, 3, 1, 1)
#: How many texts each star rating once drew from: a review still makes that draw, so the rest
#: of a history is the same as before reviews had voices.
_DRAWN_TEXTS = {5: 4, 4: 3, 3: 3, 2: 3, 1: 3}


def review_truth(rating: float) -> str:
    """The sentiment a simulated review was written with, from its stars: 1-2 negative, 3 neutral, 4-5 positive."""
    return "negative" if rating <= 2 else "neutral" if rating < 4 else "positive"


def _stars(weights: tuple[int, ...], draw: float) -> int:
    """The stars ``random.choices((1, 2, 3, 4, 5), weights)`` gives for the uniform ``draw``."""
    cumulative, total = _cum(weights)
    return bisect(cumulative, draw * total, 0, len(weights) - 1) + 1

# Shop-wide hourly traffic (shop-local hour 0..23): evening peak 20:00-22:00.
_SHOP_HOURS = (3, 1.5, .8, .5, .4, .5, 1, 2, 3.5, 4.5, 5, 5.5, 6, 5.5, 5, 5, 5, 5.5, 6.5, 8, 10, 11, 9.5, 6)


@dataclass(frozen=True)
class Archetype:
    """The habits of one user group. Rates are per session unless said otherwise."""

    name: str
    description: str
    sessions_per_day: float
    hours: tuple[float, ...]  # weight per shop-local hour 0..23
    weekdays: tuple[float, ...]  # weight per weekday, Monday first
    categories: dict[str, float]
    price_band: tuple[float, float]  # quantile range of a category's items it picks from
    views_per_session: float
    click_prob: float  # view -> click
    cart_prob: float  # click -> add_to_cart
    favorite_prob: float  # click -> favorite
    checkout_prob: float  # cart line -> order, item not on promotion
    promo_checkout_prob: float  # cart line -> order, item on promotion
    promo_day_factor: float  # session rate multiplier on promotion days
    off_day_factor: float  # session rate multiplier on other days
    devices: dict[str, float]
    channels: dict[str, float]
    age_range: tuple[int, int]
    female_share: float
    member_levels: tuple[float, float, float, float]
    search_prob: float = 0.5
    pay_prob: float = 0.93  # order -> pay
    refund_prob: float = 0.05  # per paid order
    review_prob: float = 0.15  # per paid order
    fav_buy_prob: float = 0.25  # favourite -> bought within 7 days
    staple_every_days: float | None = None  # regular repurchase of a few staples
    max_quantity: int = 2
    multi_quantity_prob: float = 0.25  # chance a cart line holds more than one piece
    promo_click_boost: float = 1.0  # click_prob multiplier for discounted items
    share_prob: float = 0.08  # paid order -> the item shared
    view_share_prob: float = 0.01  # view -> the item shared
    lapse_prob: float = 0.0
    joins_late: bool = False


def _hours(peaks: dict[int, float], floor: float = 0.3) -> tuple[float, ...]:
    return tuple(peaks.get(h, floor) for h in range(24))


ARCHETYPES: dict[str, Archetype] = {
    a.name: a
    for a in (
        Archetype(
            name="night_owl",
            description="active 22:00-02:00, snacks, skincare and late food, small baskets",
            sessions_per_day=1.1,
            hours=_hours({22: 16, 23: 22, 0: 20, 1: 14, 2: 3, 21: 3, 20: 1.5, 12: 1, 13: .8}, .25),
            weekdays=(1, 1, 1, 1, 1.1, 1.1, 1),
            categories={"snacks": .32, "beauty": .22, "fresh_food": .14, "digital": .14, "apparel": .07, "toys": .04, "health": .04, "books": .03},
            price_band=(0.0, 0.6), views_per_session=5, click_prob=.45, cart_prob=.3, favorite_prob=.08,
            checkout_prob=.4, promo_checkout_prob=.5, promo_day_factor=1.2, off_day_factor=1.0,
            devices={"ios": .5, "android": .35, "mini_program": .13, "pc": .02},
            channels={"live_stream": .3, "recommend": .3, "organic": .2, "social": .2},
            age_range=(18, 30), female_share=.6, member_levels=(.45, .35, .15, .05), max_quantity=3,
        ),
        Archetype(
            name="weekend_shopper",
            description="shops on Saturday and Sunday daytime: home, apparel, outdoor",
            sessions_per_day=0.9,
            hours=_hours({9: 3, 10: 6, 11: 7, 12: 5, 13: 5, 14: 7, 15: 7, 16: 6, 17: 4, 18: 3, 19: 3, 20: 4, 21: 3, 22: 1}, .2),
            weekdays=(.25, .25, .25, .25, .4, 2.8, 2.8),
            categories={"home": .22, "apparel": .2, "outdoor": .15, "sports": .13, "toys": .12, "fresh_food": .1, "books": .08},
            price_band=(0.2, 0.75), views_per_session=6, click_prob=.45, cart_prob=.3, favorite_prob=.1,
            checkout_prob=.35, promo_checkout_prob=.45, promo_day_factor=1.1, off_day_factor=1.0,
            devices={"ios": .35, "android": .35, "pc": .15, "mini_program": .15},
            channels={"organic": .3, "search": .3, "recommend": .2, "ad": .2},
            age_range=(26, 45), female_share=.55, member_levels=(.35, .35, .22, .08),
        ),
        Archetype(
            name="promo_hunter",
            description="buys almost only discounted items, bursts on promotion days",
            sessions_per_day=0.5,
            hours=_SHOP_HOURS,
            weekdays=(1, 1, 1, 1, 1, 1.1, 1.1),
            categories={"electronics": .18, "beauty": .16, "apparel": .15, "home": .12, "baby": .1, "health": .08, "snacks": .08, "digital": .07, "pets": .06},
            price_band=(0.1, 0.7), views_per_session=6, click_prob=.5, cart_prob=.35, favorite_prob=.2,
            checkout_prob=.03, promo_checkout_prob=.75, promo_day_factor=5.0, off_day_factor=0.6,
            devices={"android": .45, "mini_program": .3, "ios": .2, "pc": .05},
            channels={"push": .35, "ad": .2, "search": .2, "social": .15, "organic": .1},
            age_range=(24, 55), female_share=.65, member_levels=(.4, .35, .2, .05),
            search_prob=.7, fav_buy_prob=.1, refund_prob=.1, promo_click_boost=1.8, share_prob=.25,
        ),
        Archetype(
            name="loyal_repeat",
            description="frequent regular purchases of staples, premium items, high order value",
            sessions_per_day=1.3,
            hours=_SHOP_HOURS,
            weekdays=(1, 1, 1, 1, 1, 1, 1),
            categories={"baby": .18, "beauty": .16, "pets": .15, "fresh_food": .15, "health": .1, "home": .1, "apparel": .09, "electronics": .07},
            price_band=(0.55, 1.0), views_per_session=4, click_prob=.55, cart_prob=.4, favorite_prob=.1,
            checkout_prob=.5, promo_checkout_prob=.6, promo_day_factor=1.1, off_day_factor=1.0,
            devices={"ios": .5, "android": .3, "mini_program": .1, "pc": .1},
            channels={"organic": .5, "search": .25, "push": .15, "recommend": .1},
            age_range=(28, 48), female_share=.6, member_levels=(.05, .2, .45, .3),
            search_prob=.3, review_prob=.3, refund_prob=.03, fav_buy_prob=.5, staple_every_days=3.0,
            max_quantity=3, multi_quantity_prob=.5, lapse_prob=0.1,
        ),
        Archetype(
            name="browser",
            description="views and searches a lot, carts and favourites, never pays",
            sessions_per_day=1.3,
            hours=_SHOP_HOURS,
            weekdays=(1, 1, 1, 1, 1, 1.1, 1.1),
            categories={"electronics": .25, "jewelry": .2, "apparel": .15, "digital": .1, "outdoor": .1, "beauty": .1, "sports": .1},
            price_band=(0.3, 1.0), views_per_session=9, click_prob=.35, cart_prob=.12, favorite_prob=.12,
            checkout_prob=0.0, promo_checkout_prob=0.0, promo_day_factor=1.2, off_day_factor=1.0,
            devices={"android": .4, "ios": .3, "pc": .2, "mini_program": .1},
            channels={"recommend": .35, "search": .3, "ad": .2, "social": .15},
            age_range=(16, 28), female_share=.45, member_levels=(.8, .15, .05, 0),
            search_prob=.8, fav_buy_prob=0.0, view_share_prob=.03,
        ),
        Archetype(
            name="lapser",
            description="regular buyer who stops for good at lapse_at_ms",
            sessions_per_day=1.4,
            hours=_SHOP_HOURS,
            weekdays=(1, 1, 1, 1, 1, 1.1, 1.1),
            categories={"books": .2, "apparel": .2, "beauty": .15, "sports": .15, "snacks": .1, "home": .1, "health": .1},
            price_band=(0.2, 0.8), views_per_session=5, click_prob=.5, cart_prob=.35, favorite_prob=.1,
            checkout_prob=.55, promo_checkout_prob=.6, promo_day_factor=1.2, off_day_factor=1.0,
            devices={"android": .4, "ios": .35, "mini_program": .15, "pc": .1},
            channels={"organic": .4, "search": .3, "recommend": .2, "push": .1},
            age_range=(20, 45), female_share=.55, member_levels=(.3, .4, .25, .05),
            staple_every_days=4.0, lapse_prob=1.0,
        ),
        Archetype(
            name="newcomer",
            description="first seen part-way through the history, cheap items, low conversion",
            sessions_per_day=0.8,
            hours=_SHOP_HOURS,
            weekdays=(1, 1, 1, 1, 1, 1.1, 1.1),
            categories={c: 1.0 for c in CATEGORIES},
            price_band=(0.0, 0.5), views_per_session=5, click_prob=.4, cart_prob=.25, favorite_prob=.1,
            checkout_prob=.3, promo_checkout_prob=.45, promo_day_factor=1.3, off_day_factor=1.0,
            devices={"mini_program": .4, "android": .35, "ios": .2, "pc": .05},
            channels={"ad": .4, "social": .3, "live_stream": .2, "search": .1},
            age_range=(18, 40), female_share=.5, member_levels=(1, 0, 0, 0),
            joins_late=True,
        ),
    )
}

#: Default share of each archetype among users.
DEFAULT_MIX = {
    "night_owl": .15, "weekend_shopper": .18, "promo_hunter": .17, "loyal_repeat": .12,
    "browser": .15, "lapser": .12, "newcomer": .11,
}


@dataclass
class SimulatedUser:
    """One simulated user and the truth about them."""

    user_id: str
    archetype: str
    lapse_at_ms: int | None  # no event after this instant; None if the user never lapses
    profile: dict
    joined_at_ms: int | None = None  # newcomers: no event before this instant
    _lapse_frac: float | None = field(default=None, repr=False)
    _join_frac: float | None = field(default=None, repr=False)
    review_language: str = "zh"  # the language of the user's review texts
    critic: bool = False  # gives low stars and writes negative reviews


def _cum(weights) -> tuple[list[float], float]:
    acc, out = 0.0, []
    for w in weights:
        acc += w
        out.append(acc)
    return out, acc


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class ShopSimulator:
    """A deterministic population of shop users.

    ``start_ms`` is the first instant of the history, ``tz_offset_hours`` the shop's
    UTC offset (habits are in shop-local time). ``mix`` optionally overrides
    :data:`DEFAULT_MIX`. ``payments_and_shares`` adds payment methods and share events
    (drawn apart from everything else). Lapse and join instants are placed at fractions of the
    horizon (lapsers between 30% and 70%); the horizon is ``horizon_days`` and
    each :meth:`history` call resets it to its ``days`` so ground truth always
    matches the last history generated. ``companions`` adds the complementary
    purchases of :data:`COMPANIONS` to orders.
    """

    def __init__(
        self,
        n_users: int,
        start_ms: int,
        seed: int = 0,
        tz_offset_hours: int = 8,
        user_prefix: str = "u",
        *,
        mix: dict[str, float] | None = None,
        horizon_days: float = 30.0,
        payments_and_shares: bool = True,
        companions: bool = False,
    ):
        if n_users < 0:
            raise ValueError("n_users must not be negative")
        self.n_users = n_users
        self.start_ms = int(start_ms)
        self.seed = seed
        self.tz_offset_ms = int(tz_offset_hours * HOUR_MS)
        self.user_prefix = user_prefix
        self.payments_and_shares = payments_and_shares
        self.companions = companions
        self.mix = dict(mix or DEFAULT_MIX)
        unknown = set(self.mix) - set(ARCHETYPES)
        if unknown:
            raise ValueError(f"unknown archetypes: {sorted(unknown)}")
        self._promo_cache: dict[int, bool] = {}
        rng = random.Random(f"population:{seed}")
        width = max(4, len(str(max(n_users - 1, 0))))
        self.users: list[SimulatedUser] = []
        for i, name in enumerate(self._assign_archetypes(rng)):
            uid = f"{user_prefix}{i:0{width}d}"
            arch = ARCHETYPES[name]
            urng = random.Random(f"profile:{seed}:{uid}")
            lapse_frac = urng.uniform(0.3, 0.7) if urng.random() < arch.lapse_prob else None
            join_frac = urng.uniform(0.1, 0.6) if arch.joins_late else None
            user = SimulatedUser(uid, name, None, self._profile(urng, uid, arch), None, lapse_frac, join_frac)
            vrng = random.Random(f"voice:{seed}:{uid}")  # apart from the draws above: they stay as they were
            user.review_language = "zh" if vrng.random() < CHINESE_REVIEWER_SHARE else "en"
            user.critic = vrng.random() < CRITIC_SHARE
            self.users.append(user)
        self._set_horizon(horizon_days)

    def _assign_archetypes(self, rng: random.Random) -> list[str]:
        # Largest-remainder quotas, so even small populations hold every archetype in the mix.
        total = sum(self.mix.values())
        exact = {k: self.n_users * v / total for k, v in self.mix.items()}
        counts = {k: int(v) for k, v in exact.items()}
        for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[: self.n_users - sum(counts.values())]:
            counts[k] += 1
        names = [k for k in self.mix for _ in range(counts[k])]
        rng.shuffle(names)
        return names

    def _profile(self, rng: random.Random, uid: str, arch: Archetype) -> dict:
        lo, hi = arch.age_range
        region, _, cities = rng.choices(REGIONS, weights=[r[1] for r in REGIONS])[0]
        city, tier = rng.choice(cities)
        profile = {
            "user_id": uid,
            "ts": self.start_ms,
            "age": int(rng.triangular(lo, hi + 1, (lo + hi) / 2)),
            "gender": "female" if rng.random() < arch.female_share else "male",
            "region": region,
            "city": city,
            "city_tier": tier,
            "member_level": rng.choices(MEMBER_LEVELS, weights=arch.member_levels)[0],
        }
        if rng.random() < 0.03:  # CRM gaps happen
            del profile["gender"]
        return profile

    def _set_horizon(self, days: float) -> None:
        span = days * DAY_MS
        for u in self.users:
            u.lapse_at_ms = None if u._lapse_frac is None else self.start_ms + int(u._lapse_frac * span)
            u.joined_at_ms = None if u._join_frac is None else self.start_ms + int(u._join_frac * span)

    def is_promo_day(self, ts_ms: int) -> bool:
        """Whether the shop-local day holding ``ts_ms`` is a promotion day."""
        return self._promo_day((ts_ms + self.tz_offset_ms) // DAY_MS)

    def _promo_day(self, day: int) -> bool:
        hit = self._promo_cache.get(day)
        if hit is None:
            d = datetime.fromtimestamp(day * 86_400, tz=timezone.utc)
            hit = self._promo_cache[day] = d.weekday() == 2 or (d.month, d.day) in _FESTIVALS
        return hit

    def profiles(self) -> list[dict]:
        """One profile record per user (``ts`` = ``start_ms``), for the ``profiles`` topic."""
        return [dict(u.profile) for u in self.users]

    def ground_truth(self) -> dict[str, dict]:
        """Per user id: ``archetype``, ``lapse_at_ms`` and ``joined_at_ms`` (None unless set), the
        ``review_language`` and whether the user is a ``critic``. A review's own truth is :func:`review_truth`."""
        return {
            u.user_id: {
                "archetype": u.archetype,
                "lapse_at_ms": u.lapse_at_ms,
                "joined_at_ms": u.joined_at_ms,
                "review_language": u.review_language,
                "critic": u.critic,
            }
            for u in self.users
        }

    def history(self, days: float) -> Iterator[dict]:
        """All events in ``[start_ms, start_ms + days)`` in non-decreasing ``ts`` order.

        Streams a heap merge of per-user generators: memory grows with users, not events.
        """
        self._set_horizon(days)
        end_ms = self.start_ms + int(days * DAY_MS)
        gens = [self._user_events(u, end_ms) for u in self.users]
        return heapq.merge(*gens, key=itemgetter("ts"))

    # ------------------------------------------------------------------ one user

    def _user_events(self, user: SimulatedUser, end_ms: int) -> Iterator[dict]:
        arch = ARCHETYPES[user.archetype]
        uid = user.user_id
        rng = random.Random(f"events:{self.seed}:{uid}")
        # the companions draw from a stream of their own, so the other events stay as they are without them
        companion_rng = random.Random(f"companions:{self.seed}:{uid}") if self.companions else None
        tag = f"{self.seed}-{uid}"
        counter = 0
        active_from = max(self.start_ms, user.joined_at_ms or self.start_ms)
        active_until = min(end_ms - 1, user.lapse_at_ms if user.lapse_at_ms is not None else end_ms)
        if active_from > active_until:
            return

        # Personal variation around the archetype.
        activity = math.exp(rng.gauss(0, 0.3))
        cats = list(arch.categories)
        cat_cum, cat_total = _cum(arch.categories[c] * rng.gammavariate(2.0, 1.0) for c in cats)
        hour_cum, hour_total = _cum(arch.hours)
        wd_mean = sum(arch.weekdays) / 7
        main_device = rng.choices(list(arch.devices), weights=list(arch.devices.values()))[0]
        dev_names, dev_w = list(arch.devices), list(arch.devices.values())
        ch_names, ch_cum = list(arch.channels), _cum(arch.channels.values())[0]
        band_lo, band_hi = arch.price_band
        staples = []
        next_staple = None
        if arch.staple_every_days:
            for _ in range(rng.randint(2, 4)):
                c = cats[bisect(cat_cum, rng.random() * cat_total)]
                pool = CATALOGUE[c]
                staples.append((c, *pool[int((band_lo + rng.random() * (band_hi - band_lo)) * (len(pool) - 1))]))
            next_staple = active_from + int(rng.random() * arch.staple_every_days * DAY_MS)
        extras = random.Random(f"extras:{self.seed}:{uid}") if self.payments_and_shares else None
        usual_method = extras.choices(list(PAYMENT_MIX), weights=list(PAYMENT_MIX.values()))[0] if extras else None
        shares_made = 0
        wishes: list[tuple[int, int, str, str, float]] = []  # (due_ms, expires_ms, cat, item, price)
        pending: list[tuple[int, int, dict]] = []  # deferred refunds and reviews

        def pick_item():
            c = cats[bisect(cat_cum, rng.random() * cat_total)]
            pool = CATALOGUE[c]
            return (c, *pool[int((band_lo + rng.random() * (band_hi - band_lo)) * (len(pool) - 1))])

        cursor = active_from
        first_day = (active_from + self.tz_offset_ms) // DAY_MS
        last_day = (active_until + self.tz_offset_ms) // DAY_MS
        for day in range(first_day, last_day + 1):
            day_start = day * DAY_MS - self.tz_offset_ms
            promo_day = self._promo_day(day)
            lam = arch.sessions_per_day * activity * arch.weekdays[(day + 3) % 7] / wd_mean
            lam *= arch.promo_day_factor if promo_day else arch.off_day_factor
            starts = sorted(
                day_start + bisect(hour_cum, rng.random() * hour_total) * HOUR_MS + int(rng.random() * HOUR_MS)
                for _ in range(_poisson(rng, lam))
            )
            sale_prob = 0.6 if promo_day else 0.08
            for start in starts:
                if start < cursor:
                    start = cursor + int(rng.expovariate(1 / 600_000)) + 60_000
                if start < active_from:
                    continue
                if start > active_until:
                    break
                counter += 1
                common = {
                    "user_id": uid,
                    "session_id": f"s{tag}-{counter}",
                    "device": main_device if rng.random() < 0.85 else rng.choices(dev_names, weights=dev_w)[0],
                    "channel": ch_names[bisect(ch_cum, rng.random() * ch_cum[-1])],
                }
                out: list[dict] = []
                t = start

                def emit(kind: str, **fields) -> dict:
                    nonlocal counter, t
                    counter += 1
                    ev = {"event_id": f"e{tag}-{counter}", "type": kind, "ts": t, **common, **fields}
                    out.append(ev)
                    t += 2_000 + int(rng.expovariate(1 / 25_000))
                    return ev

                def maybe_share(after: dict, prob: float) -> None:
                    """Now and then the user shares the item of ``after`` within two seconds of it (before the next event)."""
                    nonlocal shares_made
                    if extras is None or extras.random() >= prob:
                        return
                    shares_made += 1
                    out.append({"event_id": f"x{tag}-{shares_made}", "type": "share", "ts": after["ts"] + 1_000 + extras.randrange(1_000),
                                **common, "item_id": after["item_id"], "category": after["category"]})

                def paid_with() -> dict:
                    if extras is None:
                        return {}
                    method = usual_method if extras.random() < 0.85 else extras.choice(list(PAYMENT_MIX))
                    return {"payment_method": method}

                cart: list[tuple[str, str, float, int, bool, bool]] = []  # cat, item, price, qty, promo, directed

                if rng.random() < arch.search_prob:
                    emit("search", category=cats[bisect(cat_cum, rng.random() * cat_total)])
                # Directed purchases: a due favourite, a staple repurchase.
                directed = []
                while wishes and wishes[0][0] <= start:
                    _, expires, c, item, price = heapq.heappop(wishes)
                    if start <= expires:
                        directed.append((c, item, price))
                if next_staple is not None and start >= next_staple:
                    directed.append(rng.choice(staples))
                    next_staple = start + int(arch.staple_every_days * rng.uniform(0.7, 1.3) * DAY_MS)
                for c, item, price in directed:
                    promo = rng.random() < sale_prob
                    p = round(price * rng.uniform(0.6, 0.9), 2) if promo else price
                    emit("view", item_id=item, category=c, price=p, promo=promo)
                    qty = rng.randint(2, arch.max_quantity) if rng.random() < arch.multi_quantity_prob else 1
                    emit("add_to_cart", item_id=item, category=c, price=p, quantity=qty, promo=promo)
                    cart.append((c, item, p, qty, promo, True))
                # Browsing funnel.
                for _ in range(1 + int(rng.expovariate(1 / max(arch.views_per_session - 1, 0.1)))):
                    c, item, price = pick_item()
                    promo = rng.random() < sale_prob
                    p = round(price * rng.uniform(0.6, 0.9), 2) if promo else price
                    maybe_share(emit("view", item_id=item, category=c, price=p, promo=promo), arch.view_share_prob)
                    if rng.random() >= (arch.click_prob * arch.promo_click_boost if promo else arch.click_prob):
                        continue
                    emit("click", item_id=item, category=c, price=p, promo=promo)
                    if rng.random() < arch.favorite_prob:
                        emit("favorite", item_id=item, category=c, price=p, promo=promo)
                        if rng.random() < arch.fav_buy_prob:
                            heapq.heappush(wishes, (t + int(rng.uniform(0.2, 6.5) * DAY_MS), t + 7 * DAY_MS, c, item, price))
                    if rng.random() < arch.cart_prob:
                        qty = rng.randint(2, arch.max_quantity) if rng.random() < arch.multi_quantity_prob else 1
                        emit("add_to_cart", item_id=item, category=c, price=p, quantity=qty, promo=promo)
                        cart.append((c, item, p, qty, promo, False))
                # Checkout: the bought lines make one order, each line ordered and paid; the rest is abandoned.
                order_id = None
                for c, item, p, qty, promo, forced in cart:
                    buy = forced or rng.random() < (arch.promo_checkout_prob if promo else arch.checkout_prob)
                    if not buy:
                        if rng.random() < 0.3:
                            emit("remove_from_cart", item_id=item, category=c, price=p, quantity=qty, promo=promo)
                        continue
                    counter += 1
                    order_id = order_id or f"o{tag}-{counter}"
                    amount = round(p * qty, 2)
                    line = {"item_id": item, "category": c, "price": p, "quantity": qty, "order_id": order_id, "promo": promo, **paid_with()}
                    emit("order", amount=amount, **line)
                    if rng.random() >= arch.pay_prob:
                        continue
                    paid = emit("pay", amount=amount, **line)
                    if companion_rng is not None and c in COMPANIONS:
                        out += self._companion(companion_rng, paid, common, arch, f"e{tag}-{counter}")
                    maybe_share(paid, arch.share_prob)
                    refunded = rng.random() < arch.refund_prob
                    deferred_common = {"user_id": uid, "device": common["device"], "item_id": item, "category": c, "order_id": order_id}
                    if refunded:
                        counter += 1
                        back = amount if rng.random() < 0.8 else round(amount * rng.uniform(0.2, 0.8), 2)
                        ts = paid["ts"] + int(rng.uniform(1, 7) * DAY_MS)
                        heapq.heappush(pending, (ts, counter, {"event_id": f"e{tag}-{counter}", "type": "refund", "ts": ts, **deferred_common, "amount": back}))
                    if rng.random() < arch.review_prob:
                        counter += 1
                        if refunded:
                            rating = drawn = rng.randint(1, 2)
                        else:
                            draw = rng.random()
                            drawn = _stars(RATING_WEIGHTS, draw)
                            rating = _stars(CRITIC_RATING_WEIGHTS, draw) if user.critic else drawn
                        ts = paid["ts"] + int(rng.uniform(1, 10) * DAY_MS)
                        rng.randrange(_DRAWN_TEXTS[drawn])
                        review = {"event_id": f"e{tag}-{counter}", "type": "review", "ts": ts, **deferred_common, "rating": rating}
                        text = self._review_text(user, review["event_id"], review_truth(rating))
                        if text is not None:
                            review["text"] = text
                        heapq.heappush(pending, (ts, counter, review))

                for ev in out:
                    while pending and pending[0][0] <= ev["ts"]:
                        deferred = heapq.heappop(pending)[2]
                        if deferred["ts"] <= active_until:
                            yield deferred
                    if ev["ts"] > active_until:
                        return
                    yield ev
                cursor = t
        while pending:
            deferred = heapq.heappop(pending)[2]
            if deferred["ts"] > active_until:
                return
            yield deferred


    @staticmethod
    def _companion(rng: random.Random, paid: dict, common: dict, arch: Archetype, id_stem: str) -> list[dict]:
        """The complementary line a paid line brings into its order (:data:`COMPANIONS`), maybe none: its view,
        cart, order and payment, a millisecond apart right after the payment (the next event is 2 s later)."""
        other, chance = COMPANIONS[paid["category"]]
        if rng.random() >= chance:
            return []
        pool = CATALOGUE[other]
        lo, hi = arch.price_band
        item, price = pool[int((lo + rng.random() * (hi - lo)) * (len(pool) - 1))]
        line = {"item_id": item, "category": other, "price": price, "promo": False}
        bought = {**line, "quantity": 1, "order_id": paid["order_id"]}
        # the companion is paid the way the line that brought it was
        method = {"payment_method": paid["payment_method"]} if "payment_method" in paid else {}
        kinds = (
            ("view", line),
            ("add_to_cart", {**line, "quantity": 1}),
            ("order", {**bought, "amount": price}),
            ("pay", {**bought, "amount": price, **method}),
        )
        return [
            {"event_id": f"{id_stem}c{k}", "type": kind, "ts": paid["ts"] + 1 + k, **common, **fields}
            for k, (kind, fields) in enumerate(kinds)
        ]

    def _review_text(self, user: SimulatedUser, event_id: str, truth: str) -> str | None:
        """The text of a review written with sentiment ``truth``, or None (stars only); its own draws."""
        rng = random.Random(f"review:{self.seed}:{event_id}")
        if rng.random() >= REVIEW_TEXT_SHARE:
            return None
        if rng.random() < WORDLESS_SHARE:
            return rng.choice(WORDLESS_REVIEWS[truth])
        return rng.choice(REVIEW_TEXTS[user.review_language][truth])


@lru_cache(maxsize=None)
def events_per_user_per_day(archetype: str, days: int = 28, users: int = 60) -> float:
    """Average events per user per day for one archetype, measured on a fixed simulation.

    >>> 3 < events_per_user_per_day("night_owl", days=7, users=20) < 30
    True
    """
    sim = ShopSimulator(users, 1_717_171_200_000, seed=12345, mix={archetype: 1.0})
    return sum(1 for _ in sim.history(days)) / (users * days)


# ---------------------------------------------------------------------- hostile input

_BAD_KINDS = (
    "malformed_json", "not_an_object", "missing_event_id", "ts_dict", "price_string",
    "unknown_type", "negative_amount", "future_timestamp", "invalid_utf8", "missing_amount",
)


def bad_events(rng: random.Random, n: int, base_ts_ms: int = 1_717_171_200_000) -> list[tuple[bytes | None, bytes, str]]:
    """``n`` hostile records as ``(key, raw value, expected dead-letter reason)``.

    Cycles through malformed JSON, a JSON array, a missing ``event_id``, a ``ts``
    that is an object, a ``price`` of ``"abc"``, an unknown type, a negative
    amount, a year-2200 timestamp, invalid UTF-8 and a ``pay`` without amount.
    Timestamps of otherwise valid fields are near ``base_ts_ms``.

    >>> [reason for _, _, reason in bad_events(random.Random(0), 3)]
    ['malformed_json', 'not_an_object', 'missing_field']
    """
    out: list[tuple[bytes | None, bytes, str]] = []
    for i in range(n):
        kind = _BAD_KINDS[i % len(_BAD_KINDS)]
        uid = f"u{rng.randrange(10_000):04d}"
        key = uid.encode() if rng.random() < 0.8 else None
        good = {
            "event_id": f"bad-{i}-{rng.randrange(1 << 30):08x}",
            "user_id": uid,
            "type": rng.choice(("view", "click", "add_to_cart")),
            "ts": base_ts_ms + rng.randrange(60_000),
        }
        if kind == "malformed_json":
            text = json.dumps(good)
            raw, reason = text[: rng.randrange(1, len(text) - 1)].encode(), contract.MALFORMED_JSON
        elif kind == "not_an_object":
            raw, reason = json.dumps([good]).encode(), contract.NOT_AN_OBJECT
        elif kind == "missing_event_id":
            del good["event_id"]
            raw, reason = json.dumps(good).encode(), contract.MISSING_FIELD
        elif kind == "ts_dict":
            good["ts"] = {"seconds": good["ts"] // 1000}
            raw, reason = json.dumps(good).encode(), contract.INVALID_FIELD
        elif kind == "price_string":
            raw, reason = json.dumps({**good, "price": "abc"}).encode(), contract.INVALID_FIELD
        elif kind == "unknown_type":
            raw, reason = json.dumps({**good, "type": rng.choice(("teleport", "purchase", "VIEW"))}).encode(), contract.UNKNOWN_TYPE
        elif kind == "negative_amount":
            raw, reason = json.dumps({**good, "type": rng.choice(("pay", "refund")), "amount": -round(rng.uniform(1, 500), 2)}).encode(), contract.NEGATIVE_AMOUNT
        elif kind == "future_timestamp":
            raw, reason = json.dumps({**good, "ts": 7_258_118_400_000 + rng.randrange(DAY_MS)}).encode(), contract.FUTURE_TIMESTAMP  # year 2200
        elif kind == "invalid_utf8":
            raw = json.dumps(good).encode().replace(b'"user_id"', b'"user_id\xff\xfe"', 1)
            reason = contract.MALFORMED_JSON
        else:  # missing_amount
            raw, reason = json.dumps({**good, "type": "pay", "order_id": f"o-{i}"}).encode(), contract.MISSING_AMOUNT
        out.append((key, raw, reason))
    return out
