"""Group portraits (客群画像) from the integer aggregates of :mod:`api.indexes`.

The unfiltered overview reads the running aggregates the store keeps up to date
as portraits change; a filtered one sums the contributions of the audience's
portraits. Both go through :func:`build`, so they use the same definitions:

* shares of age band, gender, region and city tier are over the users whose
  profile has the attribute; ``regions`` lists the five largest;
* device shares are the mean, over users with device data, of each user's
  share of events per device (``devices``); mobile = ios + android + mini_program;
* activity sums ``active_hours`` and ``weekdays`` over the users;
* GMV is spend in the last 30 days (``windows.30d.spend``, gross of refunds), the
  window the value layers are defined on; lifetime spend is given alongside;
* repurchase rate over 30 days = users with >= 2 purchases in 30 days / users
  with >= 1;
* browse depth = views in visits / visits, over every user's visits (sessions with
  a view); same-day decision share = same-day purchases / purchases naming an item;
* payment methods, like devices, are the mean over the users who named one of each
  user's share of payments per method; price bands count users per band;
* CLV sums ``clv.value`` (users without one are left out), in total, per value
  layer (with its share of the total) and as a histogram of 1-2-5 bins;
* health markers follow DOMAIN.md (see :data:`HEALTH_MARKERS`);
* co-purchase pairs are the shop's ten category pairs of the highest support in the
  association window (:func:`co_purchase`), whatever the group.
"""

from __future__ import annotations

from api.indexes import CLV_EDGES, agg
from api.models import (
    Activity,
    AssociationPair,
    DecisionHabits,
    AudiencePlan,
    CategoryStats,
    ChurnStats,
    ClvBin,
    ClvStats,
    CoPurchase,
    DeviceShare,
    HealthMarker,
    LayerStats,
    MethodShare,
    Overview,
    Repurchase,
    SegmentStats,
    Share,
)
from online_models.association_rules import pair_rules
from online_models.lifecycle import STAGES
from online_models.rfm import LAYERS
from online_models.vocabulary import MOBILE_DEVICES, PRICE_BANDS, VISIT_PEAK_HOURS, ratio

#: Groups smaller than this get a warning.
THIN_GROUP = 1000
AGE_BANDS = ("<18", "18-24", "25-29", "30-34", "35-39", "40-49", "50-54", "55+")

#: marker -> (healthy at or above, note)
HEALTH_MARKERS = {
    "core_age_band_share": (0.60, "share of users in the three adjacent age bands holding the most users"),
    "top5_region_share": (0.70, "share of users in the five largest regions"),
    "mobile_share": (0.90, "mean share of events on ios, android and mini_program"),
    "evening_peak_share": (0.40, "share of events between 20:00 and 22:00 shop time"),
    "repurchase_rate_30d": (0.10, "non-standard goods >= 10%; standard goods should reach 20%"),
    "high_value_gmv_share_30d": (0.40, "share of 30-day GMV from the high-value layer"),
    "browse_depth": (3.0, "pages viewed per visit (a visit: a session with a view; sessions end after 30 idle minutes)"),
}


def _counts(aggregates: dict[str, int], *prefix: str) -> dict[str, int]:
    start = agg(*prefix, "")
    return {key[len(start) :]: n for key, n in aggregates.items() if key.startswith(start)}


def _shares(counts: dict[str, int], order: tuple[str, ...] = (), limit: int | None = None) -> list[Share]:
    total = sum(counts.values())
    if order:
        keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    else:
        keys = sorted(counts, key=lambda k: (-counts[k], k))
    keys = keys[:limit] if limit is not None else keys
    return [Share(value=k, users=counts[k], share=ratio(counts[k], total) or 0.0) for k in keys]


def _core_age_share(bands: dict[str, int]) -> float | None:
    total = sum(bands.values())
    if not total:
        return None
    best = max(sum(bands.get(b, 0) for b in AGE_BANDS[i : i + 3]) for i in range(len(AGE_BANDS) - 2))
    return ratio(best, total)


def build(aggregates: dict[str, int], *, plan: AudiencePlan | None = None) -> Overview:
    """The group portrait of the users whose contributions make up ``aggregates``."""
    users = aggregates.get("users", 0)
    age_bands = _counts(aggregates, "n", "attr.age_band")
    regions = _counts(aggregates, "n", "attr.region")
    region_total = sum(regions.values())
    top_regions = _shares(regions, limit=5)

    device_users = aggregates.get("device_users", 0)
    device_units = _counts(aggregates, "device")
    devices = [
        DeviceShare(device=name, share=round(units / (device_users * 10_000), 4))
        for name, units in sorted(device_units.items(), key=lambda kv: (-kv[1], kv[0]))
    ] if device_users else []
    mobile_share = ratio(sum(device_units.get(d, 0) for d in MOBILE_DEVICES), device_users * 10_000)
    method_users = aggregates.get("method_users", 0)
    habits = DecisionHabits(
        visits=aggregates.get("visits", 0),
        browse_depth=ratio(aggregates.get("visit_views", 0), aggregates.get("visits", 0)),
        item_purchases=aggregates.get("item_purchases", 0),
        same_day_share=ratio(aggregates.get("same_day_purchases", 0), aggregates.get("item_purchases", 0)),
        payment_methods=[
            MethodShare(method=name, share=round(units / (method_users * 10_000), 4))
            for name, units in sorted(_counts(aggregates, "method").items(), key=lambda kv: (-kv[1], kv[0]))
        ] if method_users else [],
        price_bands=_shares(_counts(aggregates, "priceband"), order=PRICE_BANDS),
    )
    ios_share = ratio(device_units.get("ios", 0), device_users * 10_000)

    hours = [aggregates.get(agg("hour", h), 0) for h in range(24)]
    weekdays = [aggregates.get(agg("weekday", d), 0) for d in range(7)]
    total_events = sum(hours)
    evening = ratio(sum(hours[h] for h in VISIT_PEAK_HOURS), total_events)
    activity = Activity(
        hours=hours,
        weekdays=weekdays,
        peak_hour=max(range(24), key=lambda h: (hours[h], -h)) if total_events else None,
        evening_share=evening,
    )

    firsts, anys = _counts(aggregates, "n", "topcat"), _counts(aggregates, "n", "cat")
    categories = [
        CategoryStats(category=name, users_top=firsts.get(name, 0), users_any=n, share=ratio(n, users) or 0.0)
        for name, n in sorted(anys.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    ]

    gmv_30d, gmv_life = aggregates.get("gmv_30d", 0), aggregates.get("gmv_life", 0)
    clv_total = aggregates.get("clv_cents", 0)
    layer_users = _counts(aggregates, "n", "layer")
    layers = []
    for layer in list(LAYERS) + sorted(set(layer_users) - set(LAYERS)):
        layer_gmv_30d = aggregates.get(agg("gmv_30d", "layer", layer), 0)
        layer_gmv_life = aggregates.get(agg("gmv_life", "layer", layer), 0)
        layer_clv = aggregates.get(agg("clv_cents", "layer", layer), 0)
        layers.append(
            LayerStats(
                layer=layer,
                users=layer_users.get(layer, 0),
                share=ratio(layer_users.get(layer, 0), users) or 0.0,
                gmv_30d=layer_gmv_30d / 100,
                gmv_30d_share=ratio(layer_gmv_30d, gmv_30d),
                gmv_lifetime=layer_gmv_life / 100,
                gmv_lifetime_share=ratio(layer_gmv_life, gmv_life),
                clv=layer_clv / 100,
                clv_share=ratio(layer_clv, clv_total),
            )
        )

    segment_users = _counts(aggregates, "n", "seg")
    names: dict[str, tuple[int, str]] = {}
    for key, n in _counts(aggregates, "segname").items():
        segment, _, name = key.partition("\x1f")
        if segment not in names or (n, name) > names[segment]:
            names[segment] = (n, name)
    segments = [
        SegmentStats(
            id=segment,
            name=names[segment][1] if segment in names else None,
            users=n,
            share=ratio(n, users) or 0.0,
            gmv_30d=aggregates.get(agg("gmv_30d", "seg", segment), 0) / 100,
            gmv_30d_share=ratio(aggregates.get(agg("gmv_30d", "seg", segment), 0), gmv_30d),
        )
        for segment, n in sorted(segment_users.items(), key=lambda kv: (-kv[1], kv[0]))
    ]

    buyers, repeaters = aggregates.get("buyers_30d", 0), aggregates.get("repeat_buyers_30d", 0)
    repurchase = Repurchase(buyers_30d=buyers, repeat_buyers_30d=repeaters, rate=ratio(repeaters, buyers))

    scored = aggregates.get("risk_users", 0)
    histogram = [0] * 10
    for key, n in _counts(aggregates, "riskbin").items():
        histogram[min(9, int(key) // 10)] += n
    churn = ChurnStats(
        users_scored=scored,
        mean_risk=round(aggregates.get("risk_sum_e6", 0) / 1_000_000 / scored, 4) if scored else None,
        histogram=histogram,
    )

    high_value_gmv = aggregates.get(agg("gmv_30d", "layer", "high_value"), 0)
    values = {
        "core_age_band_share": _core_age_share(age_bands),
        "top5_region_share": ratio(sum(s.users for s in top_regions), region_total),
        "mobile_share": mobile_share,
        "evening_peak_share": evening,
        "repurchase_rate_30d": repurchase.rate,
        "high_value_gmv_share_30d": ratio(high_value_gmv, gmv_30d),
        "browse_depth": habits.browse_depth,
    }
    health = [
        HealthMarker(
            marker=marker,
            value=values[marker],
            healthy_at=threshold,
            ok=None if values[marker] is None else values[marker] >= threshold,
            note=note,
        )
        for marker, (threshold, note) in HEALTH_MARKERS.items()
    ]

    warnings = []
    if users == 0:
        warnings.append("the group is empty")
    elif users < THIN_GROUP:
        warnings.append(f"statistics over {users} users are thin (fewer than {THIN_GROUP}); read the shares with care")

    return Overview(
        users=users,
        age_bands=_shares(age_bands, order=AGE_BANDS),
        genders=_shares(_counts(aggregates, "n", "attr.gender")),
        regions=top_regions,
        top5_region_share=values["top5_region_share"],
        city_tiers=_shares(_counts(aggregates, "n", "attr.city_tier"), order=tuple(str(t) for t in range(1, 7))),
        devices=devices,
        mobile_share=mobile_share,
        ios_share=ios_share,
        activity=activity,
        habits=habits,
        top_categories=categories,
        value_layers=layers,
        segments=segments,
        lifecycle=_shares(_counts(aggregates, "n", "life"), order=STAGES),
        tags=_shares(_counts(aggregates, "n", "tag"), limit=30),
        repurchase=repurchase,
        churn=churn,
        clv=clv_stats(aggregates),
        health=health,
        warnings=warnings,
        plan=plan,
    )


def clv_stats(aggregates: dict[str, int]) -> ClvStats:
    """How CLV spreads over the group: users valued, total, mean and the histogram (:data:`api.indexes.CLV_EDGES`).

    >>> stats = clv_stats({"clv_users": 3, "clv_cents": 15_050, "clvbin\x1f5": 2, "clvbin\x1f7": 1})
    >>> stats.total, stats.mean, [(b.low, b.high, b.users) for b in stats.histogram]
    (150.5, 50.1667, [(20.0, 50.0, 2), (50.0, 100.0, 0), (100.0, 200.0, 1)])
    """
    users = aggregates.get("clv_users", 0)
    total = aggregates.get("clv_cents", 0) / 100
    bins = {int(key): n for key, n in _counts(aggregates, "clvbin").items()}
    histogram = [
        ClvBin(low=CLV_EDGES[i], high=CLV_EDGES[i + 1] if i + 1 < len(CLV_EDGES) else None, users=bins.get(i, 0))
        for i in range(min(bins), max(bins) + 1)
    ] if bins else []
    return ClvStats(users_valued=users, total=total, mean=round(total / users, 4) if users else None, histogram=histogram)


#: category pairs the overview lists
CO_PURCHASE_PAIRS = 10


def co_purchase(summary: dict) -> CoPurchase:
    """The category pairs of the highest support in an association summary (:mod:`online_models.association_rules`).

    >>> summary = {"as_of": None, "window": {"days": 30}, "categories": {"baskets": 10, "counts": {"a": 4, "b": 5},
    ...            "pairs": [["a", "b", 2]]}}
    >>> [(p.a, p.b, p.support, p.lift) for p in co_purchase(summary).pairs]
    [('a', 'b', 0.2, 1.0)]
    """
    pairs = [
        AssociationPair(**rule, a_category=rule["a"], b_category=rule["b"])
        for rule in pair_rules(summary, kind="category", limit=CO_PURCHASE_PAIRS)
    ]
    return CoPurchase(
        as_of=summary.get("as_of"),
        window_days=summary["window"]["days"],
        baskets=int(summary["categories"]["baskets"]),
        pairs=pairs,
    )
