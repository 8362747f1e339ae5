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
