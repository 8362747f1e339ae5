"""The ops dashboard in a real headless Chromium: a known user's portrait on the page, a new alert arriving live.

Needs Debian's ``chromium`` at /usr/bin/chromium (``scripts/install-browser``) and the ``playwright``
Python package; Playwright's own browser downloads are not used.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from streams.producer import make_producer, send_events, send_profiles
from online_models.simulation import ShopSimulator
from tests.integration.conftest import free_port, wait_until

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
BACKGROUND_USERS = 40  # simulated shop traffic, so the overview charts and the segment table have content
BACKGROUND_DAYS = 6


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


def test_dashboard_shows_a_portrait_and_a_live_alert(stack, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium; run scripts/install-browser (as root)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:  # pragma: no cover - an environment problem, reported as a failure
        pytest.fail("the Python package 'playwright' is missing: pip install playwright (no 'playwright install' needed)")

    worker = stack.start("worker", "worker", "--web-port", str(free_port()))
    stack.start("api", "api")
    stack.wait_api()
    settings = stack.settings()
    reader = httpx.Client(base_url=stack.api, timeout=10, headers=stack.auth_headers(TOKEN))

    # the page and its assets are public; the data is not
    anonymous = httpx.Client(base_url=stack.api, timeout=10)
    page_response = anonymous.get("/")
    assert page_response.status_code == 200 and "text/html" in page_response.headers["content-type"]
    assert "default-src 'self'" in page_response.headers["content-security-policy"]
    assert anonymous.get("/static/dashboard.js").status_code == 200
    assert anonymous.get("/v1/overview").status_code == 401
    # the live stream takes ?token= (EventSource sends no headers), and still refuses a bad one
    assert anonymous.get("/v1/alerts/stream", params={"token": "nope"}).status_code == 401
    assert anonymous.get("/v1/alerts/stream").status_code == 401

    user = f"dash-{uuid.uuid4().hex[:6]}"
    now_ms = int(time.time() * 1000)
    events = known_user_events(user, now_ms)
    simulator = ShopSimulator(n_users=BACKGROUND_USERS, start_ms=now_ms - (BACKGROUND_DAYS + 1) * 86_400_000, seed=7)
    producer = make_producer(settings)
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

        screenshot = tmp_path / "dashboard.png"
        requested_hosts: set[str] = set()
        console_errors: list[str] = []
        failed_responses: list[str] = []
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
                page.on(
                    "request",
                    lambda request: request.url.startswith("data:") or requested_hosts.add(urlsplit(request.url).netloc),
                )
                # HTTP failures are judged below by URL (no model summary is published here, so
                # /v1/models answers 404); any other console error (a CSP violation, a script error) fails
                page.on(
                    "console",
                    lambda message: message.type == "error"
                    and not message.text.startswith("Failed to load resource")
                    and console_errors.append(message.text),
                )
                page.on(
                    "response",
                    lambda response: response.status >= 400
                    and urlsplit(response.url).path != "/v1/models"
                    and failed_responses.append(f"{response.status} {urlsplit(response.url).path}"),
                )
                page.on("pageerror", lambda error: console_errors.append(str(error)))
                page.goto(f"{stack.api}/", wait_until="domcontentloaded")

                page.fill("#token-input", TOKEN)
                page.click("#token-save")
                expect(page.locator("#conn-status")).to_have_text("connected", timeout=20_000)
                expect(page.locator("#feed-status")).to_have_text("live", timeout=20_000)
                expect(page.locator('[data-field="overview.users"]')).to_have_text(str(BACKGROUND_USERS + 1))
                assert page.locator("#chart-heatmap svg rect").count() >= 7 * 24
                for segment in overview["segments"]:  # the segment table lists the overview's segments
                    expect(page.locator(f'#segment-table tr[data-segment="{segment["id"]}"]')).to_be_visible()

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
                expect(page.locator("#portrait")).to_contain_text(portrait["top_categories"][0]["category"])

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
    assert requested_hosts == {urlsplit(stack.api).netloc}, f"the page fetched from elsewhere: {requested_hosts}"
    assert console_errors == [], console_errors
    assert failed_responses == [], failed_responses
