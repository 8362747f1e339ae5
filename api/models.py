"""Typed request and response models of the HTTP API (the documented contract)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class WindowTotals(BaseModel):
    """Counts over ``as_of - N days < ts <= as_of``."""

    events: int
    purchases: int
    spend: float


class Lifetime(BaseModel):
    events: int
    purchases: int
    spend: float
    refunds: int
    refund_amount: float
    net_spend: float


class CategoryScore(BaseModel):
    category: str
    score: float = Field(description="Decayed interest score at as_of")


class Funnel(BaseModel):
    views: int
    searches: int
    clicks: int
    add_to_cart: int
    favorites: int
    orders: int
    purchases: int
    cart_to_purchase: float | None
    favorite_to_purchase: float | None
    abandoned_carts: int


class Portrait(BaseModel):
    """One user's live portrait. Times are ISO-8601 UTC strings."""

    user_id: str
    as_of: str | None = Field(description="Event-time instant the figures refer to (partition watermark)")
    first_seen: str | None
    last_seen: str | None
    first_purchase: str | None
    last_purchase: str | None
    days_since_last_seen: float | None
    days_since_last_purchase: float | None
    lifetime: Lifetime
    windows: dict[str, WindowTotals] = Field(description="Keys 7d, 30d, 90d")
    aov: float | None = Field(description="Average order value")
    purchase_days: int
    refund_rate: float | None
    active_hours: list[int] = Field(min_length=24, max_length=24)
    weekdays: list[int] = Field(min_length=7, max_length=7, description="Monday first")
    peak_hour: int | None
    weekend_share: float | None
    timezone: str
    top_categories: list[CategoryScore]
    category_count: int
    funnel: Funnel
    devices: dict[str, float]
    promo_share: float | None
    profile: dict[str, Any]
    version: int


class Problem(BaseModel):
    """An error with a message for people."""

    detail: str


class Health(BaseModel):
    status: str
    topics: list[str]
    caught_up: bool
    lag: int | None
    follower_error: str | None
