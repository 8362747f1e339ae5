"""The dashboard's option functions (api/static/views.js), run in Node on the API's own JSON, draw what
``tests.dashboard_reference`` says the API's figures are: the edit-loop check of the charts, without a
broker or a browser (tests/integration/test_dashboard.py draws the same views in Chromium). The AARRR, co-purchase
and product views run on the answers of an API over a replayed shop."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess

import pytest

from api.app import STATIC_DIR
from online_models.vocabulary import VISIT_PEAK_HOURS
from online_models.item_portrait import ItemConfig
from online_models.item_portrait import render as render_item
from online_models.simulation import ShopSimulator
from tests.dashboard_reference import (
    expected_aarrr_charts,
    expected_aarrr_figures,
    expected_overview_charts,
    expected_pair_charts,
    expected_pair_rows,
    expected_portrait_charts,
    expected_product_charts,
    expected_product_rows,
    shows,
)
from tests.unit.test_api_associations import publish, replayed
from tests.unit.test_api_synthetic import auth, make_client, make_store, synthetic_portraits

START_MS = 1_788_307_200_000  # 2026-09-01
DAY = 86_400_000

# Reads an endpoint's JSON on stdin, prints each view's category labels (and the rows of a heat map), series
# values (data items unwrapped; a heat map's cells as they are), per-item colours and title text, by view id;
# and, under "texts", what the section writes beside its charts.
RUN_VIEWS = """
import { readFileSync } from "node:fs";
const [kind, url] = process.argv.slice(1);
const views = await import(url);
const lists = {
  overview: views.OVERVIEW_VIEWS, portrait: views.PORTRAIT_VIEWS, aarrr: views.AARRR_VIEWS,
  associations: views.PAIR_VIEWS, product: views.PRODUCT_VIEWS,
};
const texts = { aarrr: views.aarrrFigures, associations: views.pairRows, product: views.productRows };
const data = JSON.parse(readFileSync(0, "utf8"));
const isItem = (d) => d !== null && typeof d === "object" && !Array.isArray(d);
const unwrap = (d) => (isItem(d) ? d.value : d);
const drawn = {};
for (const view of lists[kind]) {
  const option = view.option(data);
  const category = [option.xAxis, option.yAxis].find((axis) => axis && axis.type === "category");
  drawn[view.id] = {
    labels: category ? category.data : null,
    rows: option.xAxis && option.xAxis.type === "category" && option.yAxis.type === "category" ? option.yAxis.data : null,
    series: Object.fromEntries(option.series.map((s) => [s.name, s.data.map(unwrap)])),
    colors: option.series.map((s) => s.data.map((d) => (isItem(d) ? d.itemStyle.color : s.itemStyle.color))),
    title: option.title ? option.title.text : null,
  };
}
drawn.texts = texts[kind] ? texts[kind](data) : null;
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
    assert set(drawn) - {"texts"} == set(expected)
    for chart_id, want in expected.items():
        got = drawn[chart_id]
        if want is None:
            assert got["series"] == {}, chart_id  # "nothing yet", and no series
        else:
            assert (got["labels"], got["series"]) == (want["labels"], want["series"]), chart_id
            assert got["rows"] == want.get("rows"), chart_id


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


# -- AARRR, co-purchases and product portraits, over a replayed shop --------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The API's AARRR and co-purchase answers over a replayed shop, and its item and category portraits."""
    events = list(ShopSimulator(n_users=60, start_ms=START_MS, seed=12, companions=True).history(35))
    events.append({"event_id": "closer", "user_id": "closer", "type": "view", "ts": START_MS + 37 * DAY})
    result, counts, portraits = replayed(events)
    products = {key: render_item(state, as_of=result.item_as_of, config=ItemConfig()) for key, state in result.item_states.items()}
    store = make_store(tmp_path_factory.mktemp("dashboard-sections"), portraits)
    with make_client(store, query_processes=0) as client:
        missing = client.get("/v1/associations", headers=auth())
        publish(store, counts)
        answers = {
            "aarrr": client.get("/v1/aarrr", params={"from": "2026-09-01"}, headers=auth()).json(),  # from the first cohort
            "associations": client.get("/v1/associations", params={"limit": 15}, headers=auth()).json(),
            "lift": client.get("/v1/associations", params={"category": "snacks", "sort": "lift", "limit": 15}, headers=auth()).json(),
        }
    store.close()
    assert missing.status_code == 404
    return answers, products


def assert_written(texts: dict[str, str], expected: dict[str, tuple]) -> None:
    assert set(expected) <= set(texts)
    for field, (value, kind) in expected.items():
        assert shows(texts[field], value, kind), (field, texts[field], value)


def test_the_aarrr_section_draws_the_retention_triangle_and_writes_the_figures(shop):
    aarrr = shop[0]["aarrr"]
    expected = expected_aarrr_charts(aarrr)
    assert all(expected.values()), "the replayed shop has cohorts, weekly users and GMV"
    assert len(expected["aarrr-retention"]["rows"]) >= 3 and len(expected["aarrr-retention"]["series"]["retained"]) >= 6
    drawn = run_views("aarrr", aarrr)
    assert_draws(drawn, expected)
    assert_written({f"aarrr.{field}": text for _, text, field in drawn["texts"]}, expected_aarrr_figures(aarrr))
    # a window without cohorts draws nothing rather than an empty grid
    empty = copy.deepcopy(aarrr)
    for cohort in empty["retention"]["cohorts"]:
        cohort["users"], cohort["cells"] = 0, [{**cell, "users": 0, "share": None} for cell in cohort["cells"]]
    assert run_views("aarrr", empty)["aarrr-retention"]["series"] == {}


@pytest.mark.parametrize("answer", ["associations", "lift"])
def test_the_co_purchase_section_draws_and_tabulates_the_pairs(shop, answer):
    pairs = shop[0][answer]
    assert len(pairs["pairs"]) >= 5
    drawn = run_views("associations", pairs)
    assert_draws(drawn, expected_pair_charts(pairs))
    rows = expected_pair_rows(pairs)
    assert len(drawn["texts"]) == len(rows)
    for cells, want in zip(drawn["texts"], rows):
        assert all(shows(text, value, kind) for text, (value, kind) in zip(cells, want, strict=True)), (cells, want)
    nothing = run_views("associations", {**pairs, "pairs": []})
    assert nothing["pairs-support"]["series"] == {} and nothing["texts"] == []


def test_the_product_portrait_draws_an_item_and_a_category(shop):
    products = shop[1]
    bought = [p for p in products.values() if p["windows"]["30d"]["purchases"] > 0]
    category = max((p for p in bought if p["kind"] == "category"), key=lambda p: p["windows"]["90d"]["buyers"])
    item = max((p for p in bought if p["kind"] == "item"), key=lambda p: p["windows"]["90d"]["buyers"])
    idle = next(p for p in products.values() if p["windows"]["90d"]["buyers"] == 0)
    for portrait in (category, item, idle):
        expected = expected_product_charts(portrait)
        drawn = run_views("product", portrait)
        assert_draws(drawn, expected)
        assert_written({field: text for row in drawn["texts"] for field, text in row}, expected_product_rows(portrait))
    assert expected_product_charts(category)["product-layers"] and expected_product_charts(category)["product-ages"]
    assert expected_product_charts(idle)["product-layers"] is None
