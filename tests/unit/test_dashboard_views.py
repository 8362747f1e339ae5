"""The dashboard's option functions (api/static/views.js), run in Node on the API's own JSON, draw what
``tests.dashboard_reference`` says the API's figures are: the edit-loop check of the charts, without a
broker or a browser (tests/integration/test_dashboard.py draws the same views in Chromium)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import pytest

from api.app import STATIC_DIR
from online_models.vocabulary import VISIT_PEAK_HOURS
from tests.dashboard_reference import expected_overview_charts, expected_portrait_charts
from tests.unit.test_api_synthetic import auth, make_client, make_store, synthetic_portraits

# Reads the overview (or portrait) JSON on stdin, prints each view's category labels, series values
# (data items unwrapped), per-item colours and title text, by view id.
RUN_VIEWS = """
import { readFileSync } from "node:fs";
const [kind, url] = process.argv.slice(1);
const { OVERVIEW_VIEWS, PORTRAIT_VIEWS } = await import(url);
const data = JSON.parse(readFileSync(0, "utf8"));
const unwrap = (d) => (d !== null && typeof d === "object" ? d.value : d);
const drawn = {};
for (const view of kind === "overview" ? OVERVIEW_VIEWS : PORTRAIT_VIEWS) {
  const option = view.option(data);
  const category = [option.xAxis, option.yAxis].find((axis) => axis && axis.type === "category");
  drawn[view.id] = {
    labels: category ? category.data : null,
    series: Object.fromEntries(option.series.map((s) => [s.name, s.data.map(unwrap)])),
    colors: option.series.map((s) => s.data.map((d) => (d !== null && typeof d === "object" ? d.itemStyle.color : s.itemStyle.color))),
    title: option.title ? option.title.text : null,
  };
}
console.log(JSON.stringify(drawn));
"""


def run_views(kind: str, data: dict) -> dict[str, dict]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: scripts/install needs Node.js (npm) for the dashboard's chart library")
    result = subprocess.run(
        [node, "--input-type=module", "-e", RUN_VIEWS, kind, (STATIC_DIR / "views.js").as_uri()],
        input=json.dumps(data), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_draws(drawn: dict[str, dict], expected: dict[str, dict | None]) -> None:
    assert set(drawn) == set(expected)
    for chart_id, want in expected.items():
        got = drawn[chart_id]
        if want is None:
            assert got["series"] == {}, chart_id  # "nothing yet", and no series
        else:
            assert (got["labels"], got["series"]) == (want["labels"], want["series"]), chart_id


@pytest.fixture(scope="module")
def overview(tmp_path_factory):
    portraits = list(synthetic_portraits(400, seed=11))
    store = make_store(tmp_path_factory.mktemp("dashboard-views"), portraits)
    someone = next(p["user_id"] for p in portraits if len(p["top_categories"]) >= 2)
    with make_client(store, query_processes=0) as client:  # the overview needs no query processes
        body = client.get("/v1/overview", headers=auth()).json()
        portrait = client.get(f"/v1/users/{someone}/portrait", headers=auth()).json()
    store.close()
    return body, portrait


def test_the_overview_cards_draw_the_overview(overview):
    body, _ = overview
    expected = expected_overview_charts(body)
    assert all(expected.values()), "the synthetic overview has data for every card"
    assert any(layer["clv_share"] for layer in body["value_layers"]) and len(body["clv"]["histogram"]) >= 5
    drawn = run_views("overview", body)
    assert_draws(drawn, expected)
    # the hours of the evening visit peak (those of the overview's evening_share) are marked, with its share
    hour_colours = drawn["chart-hours"]["colors"][0]
    assert [h for h, colour in enumerate(hour_colours) if colour != hour_colours[0]] == list(VISIT_PEAK_HOURS)
    first, last = VISIT_PEAK_HOURS[0], VISIT_PEAK_HOURS[-1] + 1
    title = re.fullmatch(rf"{first:02d}:00–{last:02d}:00: (\d+\.\d)% of events", drawn["chart-hours"]["title"])
    assert title and float(title.group(1)) == pytest.approx(body["activity"]["evening_share"] * 100, abs=0.051)


def test_an_open_ended_clv_bin_and_missing_shares_are_drawn_as_such(overview):
    body = copy.deepcopy(overview[0])
    body["clv"]["histogram"] = [{"low": 2_000_000.0, "high": 5_000_000.0, "users": 1}, {"low": 5_000_000.0, "high": None, "users": 2}]
    for layer in body["value_layers"]:
        layer["clv_share"] = None  # nobody valued: no share to draw
    drawn = run_views("overview", body)
    assert drawn["chart-clv"]["labels"] == ["2M–5M", "5M+"]
    assert_draws(drawn, expected_overview_charts(body))


def test_an_empty_overview_draws_nothing_anywhere(tmp_path):
    store = make_store(tmp_path)
    with make_client(store, query_processes=0) as client:  # the overview needs no query processes
        body = client.get("/v1/overview", headers=auth()).json()
    store.close()
    expected = expected_overview_charts(body)
    assert set(expected.values()) == {None}
    assert_draws(run_views("overview", body), expected)


def test_the_portrait_charts_draw_the_portrait(overview):
    _, portrait = overview
    assert len(portrait["top_categories"]) >= 2 and any(portrait["active_hours"])
    assert_draws(run_views("portrait", portrait), expected_portrait_charts(portrait))
