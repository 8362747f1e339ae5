"""The ops dashboard in a real headless Chromium: its ECharts charts drawing the live API's figures (read back
with ``echarts.getInstanceByDom(el).getOption()`` and from the canvas pixels), the AARRR retention triangle and
figures, the co-purchase pairs (filtered by a category), a known user's portrait, an item's and a category's
portrait (and the API's message for an unknown item) on the page, a new alert arriving live.

Needs Debian's ``chromium`` at /usr/bin/chromium (``scripts/install-browser``) and the ``playwright``
Python package; Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest

from online_models.gamma_gamma import GammaGamma
from online_models.mbgnbd import MBGNBD
from online_models.population import PopulationModels
from online_models.simulation import ShopSimulator
from streams.producer import make_producer, send_events, send_profiles
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
from tests.integration.conftest import free_port, send_models, wait_until
from tests.unit.test_dashboard_assets import pinned

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "test-reader"
WRONG_TOKEN = "not-a-token"
BACKGROUND_USERS = 40  # simulated shop traffic, so the overview charts and the segment table have content
BACKGROUND_DAYS = 6
PAIRS_SHOWN = 15  # the co-purchase pairs the page asks for


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def known_user_events(user: str, now_ms: int) -> list[dict]:
    """A short, valid session: browsing, a cart, an order and a payment."""
    base = now_ms - 20 * 60_000
    kinds = [
        ("view", {"item_id": "i1", "category": "snacks", "price": 12.5}),
        ("view", {"item_id": "i2", "category": "tea", "price": 30.0}),
        ("search", {"text": "green tea", "category": "tea"}),
        ("click", {"item_id": "i2", "category": "tea"}),
        ("add_to_cart", {"item_id": "i2", "category": "tea", "price": 30.0, "quantity": 2}),
        ("favorite", {"item_id": "i1", "category": "snacks"}),
        ("order", {"item_id": "i2", "category": "tea", "order_id": "o1", "price": 30.0, "quantity": 2}),
        ("pay", {"item_id": "i2", "category": "tea", "order_id": "o1", "amount": 60.0}),
        ("view", {"item_id": "i3", "category": "snacks", "price": 8.0}),
    ]
    return [
        {
            "event_id": f"{user}-e{n}",
            "user_id": user,
            "type": kind,
            "ts": base + n * 60_000,
            "device": "ios",
            "session_id": f"{user}-s1",
            **extra,
        }
        for n, (kind, extra) in enumerate(kinds)
    ]


def money(x: float) -> str:
    return f"{x:,.2f}"


def scoring_snapshot() -> PopulationModels:
    """A model snapshot that scores churn and CLV from the first event on (the trainer stays off)."""
    models = PopulationModels()
    models.mbgnbd = MBGNBD.from_params(r=3.0, alpha=11.0, a=0.1, b=5.3)
    models.gamma_gamma = GammaGamma.from_params(p=6.0, q=4.0, v=15.0)
    models.version = 1
    return models


# The chart's option as ECharts holds it (getOption), and how many canvas pixels carry each series' colours.
READ_CHART = """(id) => {
  const element = document.getElementById(id);
  const chart = element && window.echarts.getInstanceByDom(element);
  if (!chart) return null;
  const option = chart.getOption();
  const category = [...(option.xAxis || []), ...(option.yAxis || [])].find((axis) => axis.type === "category");
  const isItem = (d) => d !== null && typeof d === "object" && !Array.isArray(d);
  const value = (d) => (isItem(d) ? d.value : d);  // a heat map's cells, [x, y, value], as they are
  const canvas = element.querySelector("canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const painted = (colors) => {
    const rgb = colors.filter((c) => typeof c === "string").map((c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)));
    let n = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] === 255 && rgb.some(([r, g, b]) => pixels[i] === r && pixels[i + 1] === g && pixels[i + 2] === b)) n += 1;
    }
    return n;
  };
  return {
    labels: category ? category.data : null,
    rows: (option.xAxis || []).length && option.xAxis[0].type === "category" && option.yAxis[0].type === "category" ? option.yAxis[0].data : null,
    series: Object.fromEntries((option.series || []).map((s) => [s.name, s.data.map(value)])),
    painted: Object.fromEntries((option.series || []).map((s) => [s.name, painted(
      [(s.itemStyle || {}).color, ...s.data.filter(isItem).map((d) => d.itemStyle.color)])])),
  };
}"""


def chart_mismatches(page, expected: dict[str, dict | None]) -> list[str]:
    """What the page's charts draw differently from ``expected`` (empty: every chart draws it)."""
    problems = []
    for chart_id, want in expected.items():
        got = page.evaluate(READ_CHART, chart_id)
        if got is None:
            problems.append(f"{chart_id}: no chart")
        elif want is None and got["series"]:
            problems.append(f"{chart_id}: draws {got['series']} where the API has nothing")
        elif want is not None and (got["labels"], got["rows"], got["series"]) != (want["labels"], want.get("rows"), want["series"]):
            problems.append(
                f"{chart_id}: draws {got['labels']} {got['rows']} {got['series']}, the API says {want['labels']} {want.get('rows')} {want['series']}"
            )
    return problems


# The texts of the elements under ``root`` that carry a data-field, by field.
READ_FIELDS = """(root) => Object.fromEntries([...document.querySelectorAll(`${root} [data-field]`)].map((e) => [e.dataset.field, e.textContent]))"""
READ_TABLE = """(table) => [...document.querySelectorAll(`${table} tbody tr`)].map((tr) => [...tr.cells].map((td) => td.textContent))"""


def text_mismatches(page, root: str, expected: dict[str, tuple]) -> list[str]:
    """The figures under ``root`` written otherwise than ``expected`` says (field -> (value, kind))."""
    written = page.evaluate(READ_FIELDS, root)
    return [
        f"{field}: shows {written.get(field)!r}, the API says {value!r}"
        for field, (value, kind) in expected.items()
        if field not in written or not shows(written[field], value, kind)
    ]


def pair_mismatches(page, pairs: dict) -> list[str]:
    """What the co-purchase table and charts show otherwise than ``GET /v1/associations`` answered."""
    problems = chart_mismatches(page, expected_pair_charts(pairs))
    rows, expected = page.evaluate(READ_TABLE, "#pairs-table"), expected_pair_rows(pairs)
    if len(rows) != len(expected) or not all(
        len(cells) == len(want) and all(shows(text, value, kind) for text, (value, kind) in zip(cells, want)) for cells, want in zip(rows, expected)
    ):
        problems.append(f"the pair table shows {rows}, the API says {pairs['pairs']}")
    return problems


def unpainted(page, expected: dict[str, dict | None]) -> list[str]:
    """Series with data of which no bar reached the canvas yet."""
    missing = []
    for chart_id, want in expected.items():
        for name, values in (want or {}).get("series", {}).items():
            if any(isinstance(v, (int, float)) and v > 0 for v in values) and page.evaluate(READ_CHART, chart_id)["painted"][name] < 20:
                missing.append(f"{chart_id}/{name}")
    return missing


def test_dashboard_draws_the_live_figures_a_portrait_and_a_live_alert(stack, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium; run scripts/install-browser (as root)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - an environment problem, reported as a failure
        pytest.fail("the Python package 'playwright' is missing: pip install playwright (no 'playwright install' needed)")

    stack.env["PORTRAITS_TRAIN_MODELS"] = "false"  # only the snapshot sent below scores
    stack.env["PORTRAITS_ASSOCIATION_SNAPSHOT_INTERVAL"] = "1"  # co-purchase summaries within a second
    settings = stack.settings()
    producer = make_producer(settings)
    send_models(producer, settings, scoring_snapshot())
    producer.flush()
    worker = stack.start("worker", "worker", "--web-port", str(free_port()))
    stack.start("api", "api")
    stack.wait_api()
    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers(TOKEN))

    # the page and its assets, the chart library among them, are public; the data is not
    anonymous = httpx.Client(base_url=stack.api, timeout=10)
    page_response = anonymous.get("/")
    assert page_response.status_code == 200 and "text/html" in page_response.headers["content-type"]
    assert "default-src 'self'" in page_response.headers["content-security-policy"]
    for asset in ("dashboard.js", "charts.js", "views.js", "format.js", "vendor/echarts/echarts.min.js"):
        assert anonymous.get(f"/static/{asset}").status_code == 200, asset
    assert anonymous.get("/v1/overview").status_code == 401
    # the live stream takes ?token= (EventSource sends no headers), and still refuses a bad one
    assert anonymous.get("/v1/alerts/stream", params={"token": "nope"}).status_code == 401
    assert anonymous.get("/v1/alerts/stream").status_code == 401

    user = f"dash-{uuid.uuid4().hex[:6]}"
    now_ms = int(time.time() * 1000)
    events = known_user_events(user, now_ms)
    # companions: paid lines of some categories bring complementary ones, so pairs are bought together
    simulator = ShopSimulator(n_users=BACKGROUND_USERS, start_ms=now_ms - (BACKGROUND_DAYS + 1) * 86_400_000, seed=7, companions=True)
    try:
        send_profiles(producer, settings, simulator.profiles())
        send_events(producer, settings, sorted(simulator.history(BACKGROUND_DAYS), key=lambda e: e["ts"]))
        send_events(producer, settings, events)  # newest last: nothing is late
        producer.flush()

        def portrait_complete():
            assert worker.alive(), worker.tail()
            response = reader.get(f"/v1/users/{user}/portrait")
            return response.status_code == 200 and response.json()["lifetime"]["events"] == len(events) and response.json()

        portrait = wait_until(portrait_complete, timeout=120, interval=1, what="the known user's portrait")
        assert portrait["lifetime"]["purchases"] == 1 and portrait["lifetime"]["spend"] == 60.0
        wait_until(
            lambda: reader.get("/v1/overview").json()["users"] == BACKGROUND_USERS + 1,
            timeout=120,
            what="every simulated user in the overview",
        )
        overview = reader.get("/v1/overview").json()
        # the figures the charts are checked against are there to draw: CLV valued, by layer, churn scored
        assert overview["clv"]["users_valued"] > 0 and overview["clv"]["histogram"], overview["clv"]
        assert any(layer["clv_share"] for layer in overview["value_layers"]), overview["value_layers"]
        assert overview["churn"]["users_scored"] > 0
        # the closed baskets counted (before the page asks: it would get the 404 of no summary yet)
        wait_until(lambda: len(reader.get("/v1/associations").json().get("pairs", [])) >= 5, timeout=120,
                   what="co-purchase pairs counted")

        screenshot = tmp_path / "dashboard.png"
        requested: list[str] = []
        console_errors: list[str] = []
        failed_responses: list[str] = []
        refused_responses: list[str] = []  # the answers to the wrong token's requests, whenever they come
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),  # a fresh user data dir
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = context.new_page()
                page.on("request", lambda request: request.url.startswith("data:") or requested.append(request.url))
                # HTTP failures are judged below by URL; any other console error (a CSP violation, a
                # script error) fails
                page.on(
                    "console",
                    lambda message: message.type == "error"
                    and not message.text.startswith("Failed to load resource")
                    and console_errors.append(message.text),
                )
                def judged(response) -> None:
                    if response.status < 400:
                        return
                    wrong = WRONG_TOKEN in response.request.headers.get("authorization", "") or WRONG_TOKEN in response.url
                    (refused_responses if wrong else failed_responses).append(f"{response.status} {urlsplit(response.url).path}")

                page.on("response", judged)
                page.on("pageerror", lambda error: console_errors.append(str(error)))
                page.goto(f"{stack.api}/", wait_until="domcontentloaded")
                assert page.evaluate("window.echarts.version") == pinned()["version"]

                # a wrong token: refused, and no chart draws anything
                page.fill("#token-input", WRONG_TOKEN)
                page.click("#token-save")
                expect(page.locator("#conn-status")).to_have_text("token rejected", timeout=20_000)
                assert page.evaluate("!window.echarts.getInstanceByDom(document.getElementById('chart-clv'))")
                refused = {"401 /v1/overview", "401 /v1/aarrr", "401 /v1/associations"}  # what a refresh asks for
                wait_until(lambda: refused <= set(refused_responses), timeout=30, what="every refresh refused",
                           explain=lambda: str(refused_responses))

                page.fill("#token-input", TOKEN)
                page.click("#token-save")
                expect(page.locator("#conn-status")).to_have_text("connected", timeout=20_000)
                expect(page.locator("#feed-status")).to_have_text("live", timeout=20_000)
                expect(page.locator('[data-field="overview.users"]')).to_have_text(str(BACKGROUND_USERS + 1))
                for segment in overview["segments"]:  # the segment table lists the overview's segments
                    expect(page.locator(f'#segment-table tr[data-segment="{segment["id"]}"]')).to_be_visible()

                # every overview chart draws the API's figures (the page refreshes them; so does this loop, as
                # the API re-scores portraits the worker published before it had the snapshot)
                mismatches: list[str] = []

                def charts_show_the_overview():
                    live = reader.get("/v1/overview").json()
                    mismatches[:] = chart_mismatches(page, expected_overview_charts(live))
                    kpi = page.locator('[data-field="overview.clv_users"]').inner_text()
                    if kpi != str(live["clv"]["users_valued"]):
                        mismatches.append(f"users with CLV: {kpi}, the API says {live['clv']['users_valued']}")
                    if mismatches:
                        page.click("#overview-refresh")
                    return not mismatches and live

                live = wait_until(charts_show_the_overview, timeout=45, interval=1, what="the charts to draw the live overview",
                                  explain=lambda: "; ".join(mismatches))
                expected = expected_overview_charts(live)
                assert expected["chart-clv"] and expected["chart-layers"] and expected["chart-hours"]
                wait_until(lambda: not unpainted(page, expected), timeout=10, what="the bars on the canvases",
                           explain=lambda: ", ".join(unpainted(page, expected)))
                page.hover("#chart-clv")  # a tooltip (drawn in the canvas: no inline style for the CSP to refuse)

                page.fill("#lookup-input", user)
                page.click("#lookup-go")
                portrait = reader.get(f"/v1/users/{user}/portrait").json()  # the figures the page must show
                field = lambda name: page.locator(f'#portrait [data-field="{name}"]')  # noqa: E731
                expect(field("lifetime.events")).to_have_text(str(portrait["lifetime"]["events"]), timeout=15_000)
                expect(field("user_id")).to_have_text(user)
                expect(field("lifetime.purchases")).to_have_text(str(portrait["lifetime"]["purchases"]))
                expect(field("lifetime.spend")).to_have_text(money(portrait["lifetime"]["spend"]))
                expect(field("funnel.views")).to_have_text(str(portrait["funnel"]["views"]))
                expect(field("funnel.add_to_cart")).to_have_text(str(portrait["funnel"]["add_to_cart"]))
                expect(field("windows.7d.events")).to_have_text(str(portrait["windows"]["7d"]["events"]))
                assert float(field("clv.value").inner_text().replace(",", "")) == pytest.approx(portrait["clv"]["value"], abs=0.006)
                assert chart_mismatches(page, expected_portrait_charts(portrait)) == []
                wait_until(lambda: not unpainted(page, expected_portrait_charts(portrait)), timeout=10, what="the portrait's bars")

                # the AARRR section: the retention triangle, the weekly charts and the figures of the API's answer
                def aarrr_shown():
                    aarrr = reader.get("/v1/aarrr").json()
                    mismatches[:] = chart_mismatches(page, expected_aarrr_charts(aarrr))
                    mismatches.extend(text_mismatches(page, "#aarrr-figures", expected_aarrr_figures(aarrr)))
                    if mismatches:
                        page.click("#overview-refresh")
                    return not mismatches and aarrr

                aarrr = wait_until(aarrr_shown, timeout=45, interval=1, what="the AARRR section to show /v1/aarrr",
                                   explain=lambda: "; ".join(mismatches))
                assert expected_aarrr_charts(aarrr)["aarrr-retention"] and aarrr["acquisition"]["new_users"] >= BACKGROUND_USERS
                wait_until(lambda: not unpainted(page, expected_aarrr_charts(aarrr)), timeout=10, what="the weekly bars")

                # a window of its own: the newest two weeks, activation within 3 days
                newest = date.fromisoformat(aarrr["window"]["newest_week"])
                chosen = {"from": str(newest - timedelta(days=7)), "to": str(newest), "activation_days": 3}
                page.fill("#aarrr-from", chosen["from"])
                page.fill("#aarrr-to", chosen["to"])
                page.fill("#aarrr-activation", "3")
                page.click("#aarrr-go")

                def window_shown():
                    answer = reader.get("/v1/aarrr", params=chosen).json()
                    mismatches[:] = chart_mismatches(page, expected_aarrr_charts(answer))
                    mismatches.extend(text_mismatches(page, "#aarrr-figures", expected_aarrr_figures(answer)))
                    return not mismatches and answer

                answer = wait_until(window_shown, timeout=20, interval=1, what="the AARRR section to show the chosen window",
                                    explain=lambda: "; ".join(mismatches))
                assert answer["window"]["weeks"] == 2 and answer["activation"]["within_days"] == 3

                # a window the figures cannot answer (it ends before it starts): the API's message, no chart
                page.fill("#aarrr-from", str(newest + timedelta(days=14)))
                page.click("#aarrr-go")
                refusal = reader.get("/v1/aarrr", params={"from": str(newest + timedelta(days=14)), "to": chosen["to"]})
                assert refusal.status_code == 422
                expect(page.locator("#aarrr-figures .empty")).to_contain_text(refusal.json()["detail"][0]["msg"].split('"')[0])
                assert page.evaluate("window.echarts.getInstanceByDom(document.getElementById('aarrr-retention')).getOption().series.length") == 0
                wait_until(lambda: "422 /v1/aarrr" in failed_responses, timeout=5, what="the refusal seen")
                failed_responses.remove("422 /v1/aarrr")  # the refusal asked for
                for name in ("#aarrr-from", "#aarrr-to"):
                    page.fill(name, "")
                page.fill("#aarrr-activation", "7")
                page.click("#aarrr-go")  # back to the default window, which the rest of the page reads

                # the co-purchase pairs, all and then those of one category by lift, as the API answers them
                def pairs_shown(params: dict):
                    pairs = reader.get("/v1/associations", params={"limit": PAIRS_SHOWN, **params}).json()
                    mismatches[:] = pair_mismatches(page, pairs)
                    if mismatches:
                        page.click("#pairs-go")
                    return not mismatches and pairs

                pairs = wait_until(lambda: pairs_shown({"sort": "support"}), timeout=45, interval=1, what="the pairs",
                                   explain=lambda: "; ".join(mismatches))
                category = pairs["pairs"][0]["a"]
                page.fill("#pairs-category", category)
                page.select_option("#pairs-sort", "lift")
                page.click("#pairs-go")
                filtered = wait_until(lambda: pairs_shown({"category": category, "sort": "lift"}), timeout=30, interval=1,
                                      what=f"the pairs of {category}", explain=lambda: "; ".join(mismatches))
                assert filtered["pairs"] and all(p["a"] == category for p in filtered["pairs"])
                wait_until(lambda: not unpainted(page, expected_pair_charts(filtered)), timeout=10, what="the pairs' bars")

                # product portraits: the known user's item and the most popular category, then an unknown item
                top_category = live["top_categories"][0]["category"]
                for kind, name, path in (("item", "i2", "/v1/items/i2/portrait"), ("category", top_category, f"/v1/categories/{top_category}/portrait")):
                    page.select_option("#product-kind", kind)
                    page.fill("#product-input", name)
                    page.click("#product-go")
                    product = reader.get(path).json()
                    expect(page.locator('#product-portrait [data-field="id"]')).to_have_text(name, timeout=15_000)

                    def product_shown(product=product):
                        mismatches[:] = chart_mismatches(page, expected_product_charts(product))
                        mismatches.extend(text_mismatches(page, "#product-portrait", expected_product_rows(product)))
                        return not mismatches

                    wait_until(product_shown, timeout=10, what=f"the portrait of {kind} {name}", explain=lambda: "; ".join(mismatches))
                    wait_until(lambda product=product: not unpainted(page, expected_product_charts(product)), timeout=10,
                               what=f"the bars of {kind} {name}")
                assert product["windows"]["90d"]["purchases"] > 0 and expected_product_charts(product)["product-ages"]
                # the address keeps what is looked up: a link shows the same user and category again
                link = page.evaluate("location.href")
                assert dict(parse_qsl(urlsplit(link).fragment)) == {"user": user, "category": top_category}
                page.goto(f"{stack.api}/#item=i2", wait_until="domcontentloaded")
                item = reader.get("/v1/items/i2/portrait").json()
                expect(page.locator('#product-portrait [data-field="id"]')).to_have_text("i2", timeout=15_000)
                wait_until(lambda: product_shown(item), timeout=10, what="the linked item", explain=lambda: "; ".join(mismatches))
                for _ in ("the address changed", "the page opened anew on it"):
                    if page.evaluate("location.href") == link:
                        page.reload(wait_until="domcontentloaded")
                    else:
                        page.goto(link, wait_until="domcontentloaded")
                    expect(page.locator('#portrait [data-field="user_id"]')).to_have_text(user, timeout=15_000)
                    expect(page.locator('#product-portrait [data-field="id"]')).to_have_text(top_category, timeout=15_000)
                missing = reader.get("/v1/items/no-such-item/portrait")
                assert missing.status_code == 404
                page.select_option("#product-kind", "item")
                page.fill("#product-input", "no-such-item")
                page.click("#product-go")
                expect(page.locator("#product-portrait")).to_have_text(missing.json()["detail"], timeout=15_000)
                expect(page.locator("#product-portrait canvas")).to_have_count(0)
                failed_responses.remove("404 /v1/items/no-such-item/portrait")  # the one refusal asked for

                # a new alert, published straight to the alerts topic, shows up without a reload
                alert_ms = int(time.time() * 1000)
                alert = {
                    "alert_id": f"dash-alert-{uuid.uuid4().hex[:8]}",
                    "user_id": user,
                    "risk": 0.913,
                    "threshold": 0.7,
                    "layer": "potential",
                    "reasons": ["no purchase for 40 days", "sessions down 80%"],
                    "ts": iso(alert_ms),
                    "ts_ms": alert_ms,
                    "kind": "churn",
                }
                url_before = page.url
                producer.send(settings.topic("churn-alerts"), key=user.encode(), value=orjson.dumps(alert))
                producer.flush()
                item = page.locator(f'#alert-feed li[data-alert-id="{alert["alert_id"]}"]')
                expect(item).to_be_visible(timeout=30_000)
                expect(item).to_contain_text(user)
                expect(item).to_contain_text("0.913")
                expect(item).to_contain_text("no purchase for 40 days")
                assert page.url == url_before  # no navigation: the feed updated in place
                expect(field("lifetime.events")).to_have_text(str(portrait["lifetime"]["events"]))  # still the same page

                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                context.close()
    finally:
        producer.close()

    copy_to = os.environ.get("PORTRAITS_DASHBOARD_SCREENSHOT")
    if copy_to:
        shutil.copyfile(screenshot, copy_to)
    print(f"dashboard screenshot: {screenshot}")
    assert {urlsplit(url).netloc for url in requested} == {urlsplit(stack.api).netloc}, f"the page fetched from elsewhere: {requested}"
    assert f"{stack.api}/static/vendor/echarts/echarts.min.js" in requested  # the chart library, served by the API
    assert console_errors == [], console_errors
    assert failed_responses == [], failed_responses
    assert all(entry.startswith("401 ") for entry in refused_responses), refused_responses
