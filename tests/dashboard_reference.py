"""What the dashboard's charts must draw, written from the API's JSON independently of the page's code.

Each function maps a chart's element id to ``{"labels": the category axis, "series": {series name: values}}``,
or to None where the chart has nothing to draw (it then says so and draws no series). The browser test
compares these with the live charts' ``getOption()``; the views test with the option functions alone.
"""

from __future__ import annotations

LAYER_NAMES = {"high_value": "high value", "potential": "potential", "ordinary": "ordinary", "low_value": "low value"}
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def short(x: float) -> str:
    """A CLV bin edge as the page writes it: 500, 2k, 1M (the edges are 1-2-5 steps: no decimals)."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= size:
            return f"{x / size:g}{unit}"
    return f"{x:g}"


def expected_overview_charts(o: dict) -> dict[str, dict | None]:
    """The overview's cards, from ``GET /v1/overview``."""
    hours, weekdays = o["activity"]["hours"], o["activity"]["weekdays"]
    layers, clv, churn = o["value_layers"], o["clv"]["histogram"], o["churn"]["histogram"]
    return {
        "chart-hours": {"labels": [f"{h:02d}:00" for h in range(24)], "series": {"events": hours}} if any(hours) else None,
        "chart-weekdays": {"labels": WEEKDAYS, "series": {"events": weekdays}} if any(weekdays) else None,
        "chart-layers": {
            "labels": [LAYER_NAMES.get(layer["layer"], layer["layer"]) for layer in layers],
            "series": {
                "users": [layer["share"] for layer in layers],
                "GMV 30d": [layer["gmv_30d_share"] for layer in layers],
                "CLV": [layer["clv_share"] for layer in layers],
            },
        } if any(layer["users"] for layer in layers) else None,
        "chart-clv": {
            "labels": [f"{short(b['low'])}+" if b["high"] is None else f"{short(b['low'])}–{short(b['high'])}" for b in clv],
            "series": {"users": [b["users"] for b in clv]},
        } if clv else None,
        "chart-segments": {
            "labels": [s["name"] or s["id"] for s in o["segments"]], "series": {"users": [s["users"] for s in o["segments"]]},
        } if o["segments"] else None,
        "chart-categories": {
            "labels": [c["category"] for c in o["top_categories"]], "series": {"users": [c["share"] for c in o["top_categories"]]},
        } if o["top_categories"] else None,
        "chart-churn": {
            "labels": [f"{i / 10:.1f}–{(i + 1) / 10:.1f}" for i in range(len(churn))], "series": {"users": churn},
        } if any(churn) else None,
    }


def expected_portrait_charts(p: dict) -> dict[str, dict | None]:
    """The portrait's charts, from ``GET /v1/users/{id}/portrait``."""
    return {
        "portrait-hours": {"labels": [f"{h:02d}" for h in range(24)], "series": {"events": p["active_hours"]}},
        "portrait-weekdays": {"labels": WEEKDAYS, "series": {"events": p["weekdays"]}},
        "portrait-categories": {
            "labels": [c["category"] for c in p["top_categories"]], "series": {"score": [c["score"] for c in p["top_categories"]]},
        },
    }


# -- AARRR, co-purchases and product portraits: charts, and the figures written beside them ----------------

WINDOWS = ["7d", "30d", "90d"]
LAYER_ORDER = ["high_value", "potential", "ordinary", "low_value"]


def expected_aarrr_charts(a: dict) -> dict[str, dict | None]:
    """The AARRR section's charts, from ``GET /v1/aarrr``; the retention triangle's cells are [k, cohort row, share]."""
    cohorts = a["retention"]["cohorts"]
    cells = [[cell["weeks_after"], row, cell["share"]] for row, c in enumerate(cohorts) for cell in c["cells"] if cell["share"] is not None]
    weeks = a["revenue"]["by_week"]
    new = {w["week"]: w["users"] for w in a["acquisition"]["by_week"]}
    return {
        "aarrr-retention": {
            "labels": [f"week {k}" for k in range(max((len(c["cells"]) for c in cohorts), default=0))],
            "rows": [f"{c['week']} ({c['users']:,})" for c in cohorts],
            "series": {"retained": cells},
        } if cells else None,
        "aarrr-users": {
            "labels": [w["week"] for w in weeks],
            "series": {
                "new": [new.get(w["week"], 0) for w in weeks],
                "active": [w["active_users"] for w in weeks],
                "paying": [w["paying_users"] for w in weeks],
            },
        } if any(w["active_users"] for w in weeks) or any(new.values()) else None,
        "aarrr-gmv": {"labels": [w["week"] for w in weeks], "series": {"GMV": [w["gmv"] for w in weeks]}} if any(w["gmv"] > 0 for w in weeks) else None,
    }


def expected_aarrr_figures(a: dict) -> dict[str, tuple]:
    """The figures beside the triangle: field -> (value, how it is written: count, share, money)."""
    return {
        "aarrr.acquisition.new_users": (a["acquisition"]["new_users"], "count"),
        "aarrr.activation.activated": (a["activation"]["activated"], "count"),
        "aarrr.activation.rate": (a["activation"]["rate"], "share"),
        "aarrr.revenue.active_users": (a["revenue"]["active_users"], "count"),
        "aarrr.revenue.paying_users": (a["revenue"]["paying_users"], "count"),
        "aarrr.revenue.purchases": (a["revenue"]["purchases"], "count"),
        "aarrr.revenue.gmv": (a["revenue"]["gmv"], "money"),
        "aarrr.revenue.arpu": (a["revenue"]["arpu"], "money"),
        "aarrr.revenue.arppu": (a["revenue"]["arppu"], "money"),
        "aarrr.referral.shares": (a["referral"]["shares"], "count"),
        "aarrr.referral.sharing_users": (a["referral"]["sharing_users"], "count"),
        "aarrr.referral.share_rate": (a["referral"]["share_rate"], "share"),
    }


def expected_pair_charts(s: dict) -> dict[str, dict | None]:
    """The co-purchase charts, from ``GET /v1/associations``."""
    labels = [f"{p['a']} + {p['b']}" for p in s["pairs"]]
    return {
        "pairs-support": {"labels": labels, "series": {"support": [p["support"] for p in s["pairs"]]}} if labels else None,
        "pairs-lift": {"labels": labels, "series": {"lift": [p["lift"] for p in s["pairs"]]}} if labels else None,
    }


def expected_pair_rows(s: dict) -> list[list[tuple]]:
    """The co-purchase table: per pair, (value, how it is written) of a, b, baskets, support, both confidences, lift."""
    return [
        [(p["a"], "text"), (p["b"], "text"), (p["baskets"], "count"), (p["support"], "share"),
         (p["confidence_ab"], "share"), (p["confidence_ba"], "share"), (p["lift"], "number")]
        for p in s["pairs"]
    ]


def expected_product_charts(p: dict) -> dict[str, dict | None]:
    """The product portrait's charts, from ``GET /v1/items/{id}/portrait`` or ``/v1/categories/{name}/portrait``."""
    windows = [p["windows"][w] for w in WINDOWS]

    def buyers(dimension: str, order, label=lambda key: key) -> dict | None:
        counts = [w["buyers_by"][dimension] for w in windows]
        keys = order({key for c in counts for key in c})
        if not keys:
            return None
        return {"labels": [label(k) for k in keys], "series": {w: [c.get(k, 0) for k in keys] for w, c in zip(WINDOWS, counts)}}

    def by_layer(keys: set[str]) -> list[str]:
        return sorted(keys, key=lambda k: (LAYER_ORDER.index(k) if k in LAYER_ORDER else len(LAYER_ORDER), k))

    return {
        "product-activity": {"labels": WINDOWS, "series": {
            "views": [w["views"] for w in windows], "add to cart": [w["add_to_cart"] for w in windows],
            "purchases": [w["purchases"] for w in windows],
        }},
        "product-rates": {"labels": WINDOWS, "series": {
            "conversion": [w["conversion"] for w in windows], "refund rate": [w["refund_rate"] for w in windows],
            "repurchase rate": [w["repurchase_rate"] for w in windows],
        }},
        "product-layers": buyers("layers", by_layer, lambda key: LAYER_NAMES.get(key, key)),
        "product-segments": buyers("segments", sorted),
        "product-ages": buyers("age_bands", sorted),
    }


def expected_product_rows(p: dict) -> dict[str, tuple]:
    """The product's windows table: field path -> (value, how it is written)."""
    kinds = {"views": "count", "add_to_cart": "count", "favorites": "count", "purchases": "count", "gmv": "money",
             "conversion": "share", "refunds": "count", "refund_rate": "share", "buyers": "count", "repurchase_rate": "share"}
    return {f"windows.{w}.{field}": (p["windows"][w][field], kind) for w in WINDOWS for field, kind in kinds.items()}


def shows(text: str, value, kind: str) -> bool:
    """Whether ``text`` writes ``value`` as the page should: a count in full with thousands separators, a share as a
    percentage to 0.1, money to the cent, a number to 0.01; a missing value as "—"."""
    if value is None:
        return text == "—"
    if kind == "text":
        return text == value
    if kind == "count":
        return text == f"{value:,}"
    if kind == "share":
        return text.endswith("%") and abs(float(text[:-1]) - value * 100) <= 0.05 + 1e-9
    if kind == "money":
        return len(text.rpartition(".")[2]) == 2 and abs(float(text.replace(",", "")) - value) <= 0.005 + 1e-9
    return abs(float(text.replace(",", "")) - value) <= 0.005 + 1e-9
