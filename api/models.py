"""Typed request and response models of the HTTP API (the documented contract)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from online_models.events import EVENT_TYPES
from online_models.portrait_schema import Portrait


class Problem(BaseModel):
    """An error with a message for people."""

    detail: str


class Health(BaseModel):
    status: str
    topics: list[str]
    caught_up: bool
    lag: int | None
    follower_error: str | None
    waiting_for_topics: list[str] = Field(default_factory=list, description="Followed topics that do not exist yet")


# ---------------------------------------------------------------------------------------------
# Audiences: a typed filter over the portraits
# ---------------------------------------------------------------------------------------------

Layer = Literal["high_value", "potential", "ordinary", "low_value"]
Stage = Literal["new", "active", "at_risk", "churned", "returning"]
WindowDays = Literal[7, 30, 90]
Label = Annotated[str, StringConstraints(min_length=1, max_length=128)]

#: Events the portrait counts, and where (``days`` None: the lifetime).
COUNTED_EVENTS: dict[str, dict[int | None, str]] = {
    "pay": {None: "lifetime.purchases", **{d: f"windows.{d}d.purchases" for d in (7, 30, 90)}},
    "any": {None: "lifetime.events", **{d: f"windows.{d}d.events" for d in (7, 30, 90)}},
    "view": {None: "funnel.views"},
    "search": {None: "funnel.searches"},
    "click": {None: "funnel.clicks"},
    "add_to_cart": {None: "funnel.add_to_cart"},
    "favorite": {None: "funnel.favorites"},
    "order": {None: "funnel.orders"},
    "refund": {None: "lifetime.refunds"},
    "share": {None: "funnel.shares"},
}

#: Top-level portrait fields a projection may start with.
PORTRAIT_FIELDS = frozenset(Portrait.model_fields)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagFilter(_Strict):
    """Conditions on the rule-defined tags (``tags``)."""

    all: list[Label] | None = Field(None, min_length=1, max_length=50, description="Has every one of these tags")
    any: list[Label] | None = Field(None, min_length=1, max_length=50, description="Has at least one of these tags")
    none: list[Label] | None = Field(None, min_length=1, max_length=50, description="Has none of these tags")

    @model_validator(mode="after")
    def _something(self) -> "TagFilter":
        if self.all is None and self.any is None and self.none is None:
            raise ValueError("give at least one of all, any, none")
        return self


class RiskRange(_Strict):
    """``min <= churn.risk <= max``; a user without a churn risk never matches."""

    min: float | None = Field(None, ge=0, le=1)
    max: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "RiskRange":
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class ClvFilter(_Strict):
    """``min <= clv.value <= max``, and/or among the ``top_share`` most valuable users (``clv.value`` at least
    that of the user ranked ``ceil(top_share x users with a value)``-th; ties at that value are all in).
    A user without a value never matches."""

    min: float | None = Field(None, ge=0)
    max: float | None = Field(None, ge=0)
    top_share: float | None = Field(None, gt=0, le=1, description="e.g. 0.1: the top 10% by value")

    @model_validator(mode="after")
    def _ordered(self) -> "ClvFilter":
        if self.min is None and self.max is None and self.top_share is None:
            raise ValueError("give min, max, top_share or some of them")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class CategoryScoreAtLeast(_Strict):
    """The category is among ``top_categories`` with a decayed score of at least ``at_least``.

    The portrait lists only the user's top categories (5 by default), so a category
    outside them counts as not meeting the threshold.
    """

    category: Label
    at_least: float = Field(ge=0)


class CategoryFilter(_Strict):
    """Category affinity, from ``top_categories``; and what the user is likely to buy next, from ``next_categories``."""

    top_in: list[Label] | None = Field(
        None, min_length=1, max_length=100, description="The user's first top category is one of these"
    )
    score_at_least: CategoryScoreAtLeast | None = None
    next_in: list[Label] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="One of these is among the user's next_categories (a cross-selling audience)",
    )

    @model_validator(mode="after")
    def _something(self) -> "CategoryFilter":
        if self.top_in is None and self.score_at_least is None and self.next_in is None:
            raise ValueError("give top_in, score_at_least, next_in or several")
        return self


class AttributeFilter(_Strict):
    """Static attributes (``profile.*``); each list is a choice (any of its values)."""

    age_band: list[Label] | None = Field(None, min_length=1, max_length=50, examples=[["25-29", "30-34"]])
    gender: list[Label] | None = Field(None, min_length=1, max_length=10)
    region: list[Label] | None = Field(None, min_length=1, max_length=200)
    city_tier: list[int | Label] | None = Field(None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def _something(self) -> "AttributeFilter":
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError("give at least one attribute")
        return self


class Performed(_Strict):
    """Did ``event`` between ``at_least`` and ``at_most`` times (in the last ``days`` days, or ever).

    Counted from the portrait: ``pay`` -> ``windows.<D>d.purchases`` (ever: ``lifetime.purchases``),
    ``any`` -> ``windows.<D>d.events`` (ever: ``lifetime.events``). Other events are counted
    over the lifetime only: ``view``/``search``/``click``/``add_to_cart``/``favorite``/``order``/``share``
    -> ``funnel.*``, ``refund`` -> ``lifetime.refunds``.
    """

    kind: Literal["performed"]
    event: str = Field(description="pay, any (every event), view, search, click, add_to_cart, favorite, order, refund, share")
    days: WindowDays | None = Field(None, description="Look-back window in days (7, 30 or 90); omit for the lifetime")
    at_least: int = Field(1, ge=0)
    at_most: int | None = Field(None, ge=0)

    @field_validator("event")
    @classmethod
    def _counted(cls, event: str) -> str:
        if event not in COUNTED_EVENTS:
            if event in EVENT_TYPES:
                raise ValueError(f"the portrait does not count {event!r} events")
            raise ValueError(f"{event[:40]!r} is not an event type; use one of {', '.join(COUNTED_EVENTS)}")
        return event

    @model_validator(mode="after")
    def _answerable(self) -> "Performed":
        if self.days is not None and self.days not in COUNTED_EVENTS[self.event]:
            raise ValueError(
                f"the portrait counts {self.event!r} over the lifetime only ({COUNTED_EVENTS[self.event][None]}); "
                "windowed counts exist for pay and any: drop days, or use kind carted_not_paid"
            )
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most ({self.at_most}) is below at_least ({self.at_least})")
        return self

    @property
    def source(self) -> str:
        """The portrait field that answers the condition."""
        return COUNTED_EVENTS[self.event][self.days]


class Spend(_Strict):
    """Spent between ``at_least`` and ``at_most`` (``windows.<D>d.spend``, or ``lifetime.spend``)."""

    kind: Literal["spend"]
    days: WindowDays | None = None
    at_least: float | None = Field(None, ge=0)
    at_most: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> "Spend":
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least, at_most or both")
        if self.at_least is not None and self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most ({self.at_most}) is below at_least ({self.at_least})")
        return self

    @property
    def source(self) -> str:
        return "lifetime.spend" if self.days is None else f"windows.{self.days}d.spend"


class CartedNotPaid(_Strict):
    """Abandoned a cart in the last ``days`` days and paid nothing in them.

    Answered exactly from the portrait: ``funnel.last_abandoned_cart`` (a cart no payment
    followed within the cart timeout) is after ``as_of - days`` and
    ``windows.<D>d.purchases == 0``. A cart younger than the timeout is not abandoned yet.
    """

    kind: Literal["carted_not_paid"]
    days: WindowDays


Behaviour = Annotated[Performed | Spend | CartedNotPaid, Field(discriminator="kind")]


class AudienceFilter(_Strict):
    """Who is in the audience: every given condition must hold (an empty filter is everyone)."""

    segments: list[int | Label] | None = Field(None, min_length=1, max_length=100, description="segment.id is one of these")
    layers: list[Layer] | None = Field(None, min_length=1, description="rfm.layer is one of these")
    lifecycle: list[Stage] | None = Field(None, min_length=1, description="lifecycle is one of these")
    tags: TagFilter | None = None
    churn_risk: RiskRange | None = None
    clv: ClvFilter | None = None
    categories: CategoryFilter | None = None
    bought_items: list[Label] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="The buyers of these items: one of them is in bought_items (paid for on one of the last 90 shop "
        "days, among the 50 items each user bought last)",
    )
    attributes: AttributeFilter | None = None
    behaviour: list[Behaviour] | None = Field(None, min_length=1, max_length=20, description="Every condition holds")


FieldPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_\-]+)*$", max_length=200),
    Field(description="Dotted path into the portrait; list items by position, e.g. top_categories.0.category"),
]


def _known_fields(fields: list[str]) -> list[str]:
    for path in fields:
        head = path.split(".", 1)[0]
        if head not in PORTRAIT_FIELDS:
            raise ValueError(f"{path!r}: the portrait has no field {head!r}")
    return list(dict.fromkeys(fields))


class AudienceQuery(_Strict):
    """A page of an audience: who matches ``filter``, with the chosen ``fields``."""

    filter: AudienceFilter = Field(default_factory=AudienceFilter)
    fields: list[FieldPath] = Field(default_factory=list, max_length=50, examples=[["rfm.layer", "windows.30d.spend"]])
    limit: int = Field(100, ge=0, le=1000, description="Users per page (0: only the count)")
    cursor: str | None = Field(None, max_length=1024, description="next_cursor of the previous page")
    exact_count: bool = Field(
        False,
        description="Count the whole audience exactly. Without it a page may be found by reading only as many "
        "users as the page needs, and count is then null (see estimated_count); with it the whole audience is "
        "found, which costs time in proportion to the postings of its conditions (about a second for a broad "
        "audience of a million portraits)",
    )

    @field_validator("fields")
    @classmethod
    def _known(cls, fields: list[str]) -> list[str]:
        return _known_fields(fields)


class AudienceExport(_Strict):
    """The whole audience as CSV: ``user_id`` then the chosen ``fields``."""

    filter: AudienceFilter = Field(default_factory=AudienceFilter)
    fields: list[FieldPath] = Field(default_factory=list, max_length=100)

    @field_validator("fields")
    @classmethod
    def _known(cls, fields: list[str]) -> list[str]:
        return _known_fields(fields)


class AudienceMember(BaseModel):
    user_id: str
    fields: dict[str, Any] = Field(default_factory=dict, description="The requested fields by path (null: absent)")


class AudiencePlan(BaseModel):
    """How the audience was found."""

    indexes: list[str] = Field(description="Secondary indexes whose postings were read and intersected")
    probed: list[str] = Field(default_factory=list, description="Indexes the candidates were looked up in, one by one")
    driver: str | None = Field(description="The index with the fewest postings, read first")
    full_scan: bool = Field(description="No condition had an index: every portrait was read")
    residual: list[str] = Field(description="Conditions checked on the portraits themselves")
    candidates: int = Field(description="Users left after the index intersection")
    portraits_read: int = Field(description="Portraits parsed to check residual conditions")
    walked: bool = Field(
        False,
        description="The driver's postings were read in user-id order from the cursor only until the page was "
        "full (candidates counts the users tested); the audience was not counted",
    )


class AudienceResult(BaseModel):
    count: int | None = Field(
        description="Users in the whole audience, exact. Given when the query asks for it (exact_count, or "
        "limit 0), when the plan counted the audience anyway, or when a first page is the whole audience; "
        "null when the page was found without counting (plan.walked)"
    )
    estimated_count: int = Field(
        description="The count when it is given; otherwise an estimate from the running per-condition counts, "
        "taking the conditions as independent (a condition without an index counts as everyone)"
    )
    users: list[AudienceMember] = Field(description="This page, by user id")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page")
    plan: AudiencePlan


# ---------------------------------------------------------------------------------------------
# Group portraits (overview)
# ---------------------------------------------------------------------------------------------


class Share(BaseModel):
    value: str
    users: int
    share: float = Field(description="Share of the users with a known value")


class DeviceShare(BaseModel):
    device: str
    share: float = Field(description="Mean share of the users' events on this device")


class Activity(BaseModel):
    hours: list[int] = Field(description="Events by hour of day (sums of active_hours)")
    weekdays: list[int] = Field(description="Events by weekday, Monday first (sums of weekdays)")
    peak_hour: int | None
    evening_share: float | None = Field(description="Share of events between 20:00 and 22:00")


class MethodShare(BaseModel):
    method: str
    share: float = Field(description="Mean share of the users' payments made this way")


class DecisionHabits(BaseModel):
    """How the group browses, decides and pays."""

    visits: int = Field(description="Visits (sessions with a view) of every user")
    browse_depth: float | None = Field(description="Views per visit over every visit, 4 decimals")
    item_purchases: int = Field(description="Payments naming an item")
    same_day_share: float | None = Field(
        description="Share of those paid on the day the buyer first viewed the item (same-day decisions), 4 decimals"
    )
    payment_methods: list[MethodShare] = Field(description="Over the users whose payments named a method")
    price_bands: list[Share] = Field(description="Buyers by price band (consumption level): low, mid, high")


class CategoryStats(BaseModel):
    category: str
    users_top: int = Field(description="Users whose first top category this is")
    users_any: int = Field(description="Users with it among their top categories")
    share: float = Field(description="users_any / users")


class LayerStats(BaseModel):
    layer: str
    users: int
    share: float
    gmv_30d: float = Field(description="Spend in the last 30 days (windows.30d.spend)")
    gmv_30d_share: float | None
    gmv_lifetime: float
    gmv_lifetime_share: float | None
    clv: float = Field(0.0, description="Sum of clv.value")
    clv_share: float | None = Field(None, description="Share of the group's clv.value")


class SegmentStats(BaseModel):
    id: str
    name: str | None
    users: int
    share: float
    gmv_30d: float
    gmv_30d_share: float | None


class Repurchase(BaseModel):
    buyers_30d: int = Field(description="Users with at least one purchase in 30 days")
    repeat_buyers_30d: int = Field(description="Users with at least two purchases in 30 days")
    rate: float | None = Field(description="repeat_buyers_30d / buyers_30d")


class ChurnStats(BaseModel):
    users_scored: int
    mean_risk: float | None
    histogram: list[int] = Field(description="Users by churn risk in tenths: [0, 0.1), ..., [0.9, 1]")


class ClvBin(BaseModel):
    low: float
    high: float | None = Field(description="null: no upper bound")
    users: int


class ClvStats(BaseModel):
    users_valued: int = Field(description="Users with a clv.value")
    total: float = Field(description="Sum of clv.value")
    mean: float | None
    histogram: list[ClvBin] = Field(
        description="Users by clv.value in bins of 1-2-5 steps ([0, 1), [1, 2), [2, 5), [5, 10), ...), "
        "from the lowest bin with users to the highest"
    )


class AssociationPair(BaseModel):
    """Two categories (items) bought together, with support, confidence both ways and lift (``a`` first)."""

    a: str = Field(description="A category, or an item id")
    b: str = Field(description="The other category, or item id")
    a_category: str = Field(description="a's category (a itself for categories)")
    b_category: str = Field(description="b's category (b itself for categories)")
    baskets: int = Field(description="n(ab): baskets of the window holding both (for items, the sketch's estimate)")
    baskets_low: int = Field(description="Lower bound of baskets (equal to it while the counts are exact)")
    baskets_high: int = Field(description="Upper bound of baskets (equal to it while the counts are exact)")
    a_baskets: int = Field(description="n(a): baskets of the window holding a")
    b_baskets: int = Field(description="n(b): baskets of the window holding b")
    support: float | None = Field(description="n(ab) / N, 4 decimals")
    confidence_ab: float | None = Field(description="n(ab) / n(a): share of a's baskets that also hold b, 4 decimals")
    confidence_ba: float | None = Field(description="n(ab) / n(b), 4 decimals")
    lift: float | None = Field(description="n(ab) N / (n(a) n(b)), 4 decimals: above 1, bought together more often than chance")


class AssociationWindow(BaseModel):
    days: int = Field(description="Shop calendar days the counts cover (PORTRAITS_ASSOCIATION_WINDOW_DAYS)")
    timezone: str = Field(description="The shop's time zone, whose days these are")
    first_day: str | None = Field(description="First day of the window, YYYY-MM-DD (null before any basket)")
    last_day: str | None = Field(description="Last day of the window: the day of the newest basket's last payment")


class AssociationServing(BaseModel):
    summary_version: int | None = Field(description="Version of the summary served (baskets counted so far)")
    rescored_version: int | None = Field(description="Summary version every stored portrait's next_categories was checked against")
    rescore_pending: bool = Field(description="A newer summary is still being applied to the stored portraits' next_categories")
    portraits_rescored: int = Field(description="Portraits whose next_categories this API rewrote after new summaries")


class Associations(BaseModel):
    """Co-purchase pairs of the association window, best first."""

    kind: Literal["category", "item"]
    as_of: str | None = Field(description="Time of the newest basket's last payment, ISO-8601 UTC")
    window: AssociationWindow
    baskets: int = Field(description="N: baskets of the window that name a category (for items: an item)")
    max_error: int = Field(description="Most a count of one category (item) can be off: 0 while the counts are exact")
    pair_max_error: int = Field(description="Most a pair's count can be off: 0 while exact")
    category: str | None = Field(description="Only pairs holding this category (an item of it), which comes first")
    min_baskets: int
    sort: Literal["support", "confidence", "lift"]
    pairs: list[AssociationPair]
    serving: AssociationServing


class CoPurchase(BaseModel):
    """The shop's most frequent category pairs bought together (the whole shop's, whatever the overview's filter)."""

    as_of: str | None = Field(description="Time of the newest basket's last payment")
    window_days: int
    baskets: int = Field(description="Baskets of the window that name a category")
    pairs: list[AssociationPair] = Field(description="The ten category pairs of the highest support")


class HealthMarker(BaseModel):
    marker: str
    value: float | None
    healthy_at: float = Field(description="The value is healthy at or above this")
    ok: bool | None = Field(description="null when the group has no data for the marker")
    note: str


class Overview(BaseModel):
    """A group portrait (客群画像)."""

    users: int
    age_bands: list[Share]
    genders: list[Share]
    regions: list[Share] = Field(description="The five largest regions")
    top5_region_share: float | None
    city_tiers: list[Share]
    devices: list[DeviceShare]
    mobile_share: float | None = Field(description="ios + android + mini_program")
    ios_share: float | None
    activity: Activity
    habits: DecisionHabits
    top_categories: list[CategoryStats]
    value_layers: list[LayerStats]
    segments: list[SegmentStats]
    lifecycle: list[Share]
    tags: list[Share]
    repurchase: Repurchase
    churn: ChurnStats
    clv: ClvStats | None = None
    co_purchase: CoPurchase | None = Field(None, description="Co-purchase pairs (null before the first association summary)")
    health: list[HealthMarker]
    warnings: list[str]
    plan: AudiencePlan | None = Field(None, description="How a filtered group was found")


class OverviewQuery(_Strict):
    filter: AudienceFilter = Field(default_factory=AudienceFilter)


# ---------------------------------------------------------------------------------------------
# AARRR over a window of shop weeks
# ---------------------------------------------------------------------------------------------

#: A shop week, by its Monday
WeekStart = Annotated[str, Field(description="The week's Monday (YYYY-MM-DD); weeks run Monday to Sunday in the shop's calendar")]


class AarrrWindow(BaseModel):
    start: str | None = Field(description="Monday of the window's first week; null when the store holds no portrait")
    end: str | None = Field(description="Sunday of the window's last week")
    weeks: int = Field(description="Weeks in the window")
    newest_week: str | None = Field(description="Monday of the newest week any portrait's as_of falls in")


class WeekCount(BaseModel):
    week: WeekStart
    users: int


class Acquisition(BaseModel):
    new_users: int = Field(description="Users whose first event (first_seen) falls in the window")
    by_week: list[WeekCount] = Field(description="New users per week of the window")


class Activation(BaseModel):
    within_days: int = Field(description="N: a new user is activated by a first purchase less than N days after the first event")
    new_users: int = Field(description="Users first seen in the window")
    activated: int = Field(description="Of them, users whose first purchase came less than within_days days after their first event")
    rate: float | None = Field(description="activated / new_users, 4 decimals; null without new users")


class RetentionCell(BaseModel):
    weeks_after: int = Field(description="k: the cohort's week is 0")
    users: int = Field(description="Users of the cohort with an event in week k after their first")
    share: float | None = Field(description="users / the cohort's users, 4 decimals; null for an empty cohort")


class RetentionCohort(BaseModel):
    week: WeekStart
    users: int = Field(description="Users first seen in this week")
    cells: list[RetentionCell] = Field(
        description="k = 0, 1, ... up to the newest week (at most 52): the triangle's row"
    )


class Retention(BaseModel):
    cohorts: list[RetentionCohort] = Field(description="One cohort per week of the window: the users first seen in it")


class RevenueWeek(BaseModel):
    week: WeekStart
    gmv: float = Field(description="Payments in the week, currency units (gross of refunds)")
    purchases: int
    active_users: int = Field(description="Users with an event in the week")
    paying_users: int = Field(description="Users with a payment in the week")


class Revenue(BaseModel):
    gmv: float = Field(description="Payments (pay events) in the window, currency units, gross of refunds")
    purchases: int = Field(description="Pay events in the window")
    active_users: int = Field(description="Users with an event in the window, each counted once")
    paying_users: int = Field(description="Users with a payment in the window, each counted once")
    arpu: float | None = Field(description="gmv / active_users, 2 decimals; null without active users")
    arppu: float | None = Field(description="gmv / paying_users, 2 decimals; null without paying users")
    by_week: list[RevenueWeek]


class ReferralWeek(BaseModel):
    week: WeekStart
    shares: int
    sharing_users: int


class Referral(BaseModel):
    shares: int = Field(description="share events in the window: the referrals users made")
    sharing_users: int = Field(description="Users who shared in the window, each counted once")
    share_rate: float | None = Field(description="sharing_users / active users of the window, 4 decimals")
    by_week: list[ReferralWeek]


class Aarrr(BaseModel):
    """Acquisition, activation, retention, revenue and referral over a window of shop weeks."""

    window: AarrrWindow
    acquisition: Acquisition
    activation: Activation
    retention: Retention
    revenue: Revenue
    referral: Referral
    warnings: list[str]


# ---------------------------------------------------------------------------------------------
# Alerts, models, ingestion
# ---------------------------------------------------------------------------------------------


class ChurnAlert(BaseModel):
    """One churn alert as the worker published it."""

    model_config = ConfigDict(extra="allow")

    alert_id: str
    user_id: str
    risk: float
    threshold: float | None = None
    layer: str | None = None
    reasons: list[str] = Field(default_factory=list)
    ts: str
    ts_ms: int
    kind: str | None = None


class AlertList(BaseModel):
    count: int = Field(description="Alerts in this answer")
    alerts: list[ChurnAlert] = Field(description="Most recent (event time) first")


class EventError(BaseModel):
    index: int = Field(description="Position of the event in the request")
    reason: str = Field(description="Stable code, as on the dead-letter topic")
    detail: str


class IngestResult(BaseModel):
    accepted: int = Field(description="Events written to the events topic (acknowledged by every in-sync replica)")
    rejected: int
    errors: list[EventError]


class ErasureAccepted(BaseModel):
    """An erasure request, written to Kafka and waiting for the workers."""

    request_id: str
    status: Literal["pending", "completed"]
    status_url: str = Field(description="GET it (admin) to follow the request")


class ErasureStatus(BaseModel):
    """Where an erasure request stands in this API's view. Times are ISO-8601 UTC."""

    request_id: str
    status: Literal["pending", "completed"] = Field(
        description="completed: this API has dropped the user's portrait (with its index entries) and alerts"
    )
    requested_at: str | None = Field(description="When the request was made (null if another API instance took it)")
    completed_at: str | None
    portrait_removed: str | None = Field(description="When the portrait tombstone of this request was applied")
    alerts_removed: str | None = Field(description="When the alerts marker of this request was applied")
