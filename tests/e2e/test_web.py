"""The web app in a real browser (Chromium via Playwright) against the whole platform.

The journeys of issue 16: sign in; connect a key and read the vault's verdict (a key that
can withdraw is refused); watch an alert become a position live; the history and its CSV;
the operator following a signal's trace. Plus isolation (another user's data is never
reachable through the UI or its URLs), the session's safety (HTTP-only cookie, nothing in
browser storage or URLs), accessibility basics, phone width, and screenshots of the pages.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from marketbot.devstack.demo import DEMO_PASSWORD, DemoUser, demo_email
from marketbot.devstack.demo import num as views_num
from marketbot.runtime.testing import eventually

from .browser import launched, shot
from .conftest import Platform
from .flow import alert, cohort, wait_closed, wait_outcomes, wait_settled

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.slow]
LIVE = 60_000  # ms: an order outcome over the whole pipeline
PAGES = 15_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async for started in launched():
        yield started  # type: ignore[misc]


@pytest.fixture
async def cleanup(platform: Platform) -> AsyncIterator[list[str]]:
    """Users made here are paused afterwards, so other tests' alerts skip them."""
    created: list[str] = []
    yield created
    for user_id in created:
        await platform.demo.pause(user_id)
    await wait_settled(platform.bus)


async def seed(platform: Platform, cleanup: list[str], *users: DemoUser) -> list[DemoUser]:
    for user in users:
        seeded = await platform.demo.seed_user(user)
        await platform.demo.wait_verified(seeded)
        cleanup.append(user.user_id)
    await wait_settled(platform.bus)
    return list(users)


async def context(browser: Browser, platform: Platform, **options: Any) -> BrowserContext:
    made = await browser.new_context(base_url=platform.urls.web, **options)
    made.set_default_timeout(PAGES)
    return made


async def sign_in(browser: Browser, platform: Platform, user_id: str, **options: Any) -> Page:
    page = await (await context(browser, platform, **options)).new_page()
    await page.goto("/login")
    await page.get_by_label("Email").fill(demo_email(user_id))
    await page.get_by_label("Password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/dashboard")
    return page


async def operator(browser: Browser, platform: Platform) -> Page:
    page = await (await context(browser, platform)).new_page()
    await page.goto("/operator/login")
    await page.get_by_label("Admin token").fill(platform.config.admin_token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/operator")
    return page


async def post_alert(platform: Platform, symbol: str, **extra: Any) -> dict[str, Any]:
    price = await platform.demo.price(symbol)
    return await platform.demo.send_alert(
        platform.config.webhook_source,
        platform.config.webhook_token,
        alert(symbol, price, **extra),
    )


# ------------------------------------------------------------------------------ sign in


async def test_sign_in_refuses_a_wrong_password_then_signs_in_and_out(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser("si", "Sia", "PRO", "bybit", "low")),
    )
    page = await (await context(browser, platform)).new_page()
    await page.goto("/dashboard")
    await page.wait_for_url("**/login")  # signed out: the pages send you to sign in
    await shot(page, "login")
    await page.get_by_label("Email").fill(demo_email(user.user_id))
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#login-error")).to_have_text("The email or the password is wrong.")
    # keyboard only: Tab to the fields, Enter submits
    await page.get_by_label("Email").fill(demo_email(user.user_id))
    await page.get_by_label("Email").press("Tab")
    assert await page.evaluate("document.activeElement.id") == "f-password"
    await page.keyboard.type(DEMO_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/dashboard")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Sia")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/login")
    await page.goto("/dashboard")
    await page.wait_for_url("**/login")


async def test_the_session_is_an_http_only_cookie_and_nothing_else(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser("ck", "Cleo", "PRO", "bybit", "low")),
    )
    page = await sign_in(browser, platform, user.user_id)
    cookies = await page.context.cookies()
    (session,) = [c for c in cookies if c["name"] == "mb_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""  # scripts cannot read it
    assert await page.evaluate("window.localStorage.length") == 0
    # htmx keeps only the current path in sessionStorage (its page cache is disabled)
    stored = await page.evaluate("Object.assign({}, window.sessionStorage)")
    assert set(stored) <= {"htmx-current-path-for-history"}, stored
    assert all("mbw_" not in v and "mbu_" not in v for v in stored.values())
    html = await page.content()
    assert "mbw_" not in html  # no gateway token in the page
    assert "mbu_" not in html
    assert "token" not in page.url
    # a form posted without the session's CSRF token is refused
    response = await page.request.post(
        "/settings", form={"risk_level": "high"}, headers={"Origin": platform.urls.web}
    )
    assert response.status == 403
    # an altered cookie is no session at all
    await page.context.add_cookies(
        [{**session, "value": session["value"][:-4] + "AAAA"}]  # type: ignore[typeddict-item]
    )
    await page.goto("/dashboard")
    await page.wait_for_url("**/login")


# ------------------------------------------------------------------------------ keys


async def test_connect_a_key_and_read_the_vaults_verdict(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(
            f"w{uuid.uuid4().hex[:6]}",
            DemoUser("key", "Kai", "PRO", "bybit", "low", register_key=False),
        ),
    )
    sim = platform.sims["bybit"]
    withdraw_key, withdraw_secret = await sim.create_api_key(user.user_id, withdraw=True)
    page = await sign_in(browser, platform, user.user_id)
    await page.get_by_role("link", name="API keys").click()
    panel = page.locator("#key-bybit")
    await expect(panel.locator("#state-bybit")).to_have_count(0)  # nothing connected yet
    await panel.get_by_label("API key").fill(withdraw_key)
    await panel.get_by_label("API secret").fill(withdraw_secret)
    await panel.get_by_role("button", name="Send to the vault and verify").click()
    verdict = page.locator("#verdict-bybit")
    await expect(verdict).to_contain_text(
        "Refused: This key can withdraw funds: remove that permission"
    )
    await expect(verdict).to_contain_text("remove the withdrawal permission")
    await expect(page.locator("#state-bybit")).to_have_text("Refused")
    masked = await page.locator("#masked-bybit").inner_text()
    assert "*" in masked
    assert masked != withdraw_key
    html = await page.content()
    assert withdraw_key not in html
    assert withdraw_secret not in html
    await shot(page, "keys-refused")
    # a trade-only key passes
    good_key, good_secret = await sim.create_api_key(user.user_id)
    await panel.get_by_label("API key").fill(good_key)
    await panel.get_by_label("API secret").fill(good_secret)
    await panel.get_by_role("button", name="Send to the vault and verify").click()
    await expect(page.locator("#verdict-bybit")).to_contain_text("Verified")
    await expect(page.locator("#state-bybit")).to_have_text("Verified")
    masked = await page.locator("#masked-bybit").inner_text()
    assert masked.startswith(good_key[:3])
    assert masked.endswith(good_key[-3:])
    assert "*" in masked
    assert good_secret not in await page.content()
    await expect(page.locator("#key-bybit")).to_contain_text("no withdraw")
    # a mistyped key is named by its field
    await panel.get_by_label("API key").fill("short")
    await panel.get_by_label("API secret").fill("also")
    await panel.get_by_role("button", name="Send to the vault and verify").click()
    await expect(page.locator("#f-bybit-api_key-error")).to_contain_text("API key must be")
    assert await page.get_by_label("API key").first.get_attribute("aria-invalid") == "true"


async def test_settings_validation_names_the_field_and_the_rule(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser("set", "Sol", "FLEX", "binance", "low")),
    )
    page = await sign_in(browser, platform, user.user_id)
    await page.get_by_role("link", name="Plan & settings").click()
    await expect(page.locator("main")).to_contain_text("FLEX")
    await page.get_by_label("Allocation", exact=True).fill("-5")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#f-allocation-error")).to_have_text(
        "Allocation must be greater than 0"
    )
    await expect(page.locator("#form-errors")).to_contain_text("Allocation must be greater than 0")
    await shot(page, "settings-invalid")
    # a value no option offers (a tampered form) is named too
    await page.eval_on_selector(
        "#f-risk_level", "s => { s.options[0].value = 'extreme'; s.selectedIndex = 0; }"
    )
    await page.get_by_label("Allocation", exact=True).fill("2500")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#f-risk_level-error")).to_have_text(
        "Risk level must be one of low, medium, high"
    )
    await page.get_by_label("Risk level").select_option("high")
    await page.get_by_label("Allocation", exact=True).fill("2500")
    await page.get_by_label("Allocation currency").select_option("BRL")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#saved")).to_be_visible()
    settings = await platform.demo.get(f"/users/{user.user_id}/settings")
    assert (settings["risk_level"], settings["allocation"], settings["allocation_currency"]) == (
        "high",
        "2500",
        "BRL",
    )


# ------------------------------------------------------------------------------ live


async def test_an_alert_becomes_a_position_live_then_closes(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser("live", "Lia", "PRO", "bybit", "high")),
    )
    page = await sign_in(browser, platform, user.user_id)
    await page.get_by_role("link", name="Positions").click()
    await expect(page.locator("#live-state")).to_have_text("live")
    await expect(page.locator("#no-positions")).to_be_visible()
    await page.evaluate("window.__stayed = true")  # gone if the page reloads
    symbol = "DOGEUSDT"
    accepted = await post_alert(platform, symbol, sl="2", tp="3")
    feed = page.locator("#live-feed")
    await expect(feed.locator("li[data-type=OrderFilled]")).to_have_count(1, timeout=LIVE)
    await expect(feed).to_contain_text("Order placed: BUY", timeout=LIVE)
    row = page.locator("#positions-table tbody tr")
    await expect(row).to_have_count(1, timeout=LIVE)
    await expect(row).to_contain_text(symbol)
    await expect(row).to_contain_text("OPEN", timeout=LIVE)
    assert await page.evaluate("window.__stayed === true"), "the page reloaded"
    # the market moves 1 % (below the take profit): the mark and the unrealized PnL follow live
    price = await platform.demo.price(symbol)
    moved = (price * Decimal("1.01")).quantize(Decimal("0.00001"))
    await platform.sims["bybit"].set_price(symbol, moved)
    mark = row.locator(".mark")
    await expect(mark).to_have_text(views_num(moved), timeout=LIVE)
    upnl = row.locator(".upnl span")
    await expect(upnl).to_have_class("gain", timeout=LIVE)
    assert Decimal(await upnl.inner_text()) > 0
    assert await page.evaluate("window.__stayed === true"), "the page reloaded"
    await shot(page, "positions-live")
    # the simulator's price reaches the take profit: the close and its PnL arrive live
    await platform.sims["bybit"].set_price(
        symbol, (price * Decimal("1.05")).quantize(Decimal("0.00001"))
    )
    await expect(feed.locator("li[data-type=PositionClosed]")).to_have_count(1, timeout=LIVE)
    await expect(feed.locator("li[data-type=PositionClosed]")).to_contain_text("TAKE_PROFIT")
    await expect(page.locator("#no-positions")).to_be_visible(timeout=LIVE)
    closed = (await wait_closed(platform.bus, [user.user_id]))[user.user_id]
    await expect(page.locator("#realized-pnl")).to_have_text(
        format(closed.realized_pnl.normalize(), "f"), timeout=LIVE
    )
    assert await page.evaluate("window.__stayed === true")
    assert accepted["duplicate"] is False
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator("svg.chart")).to_be_visible()
    await expect(page.locator(".chart-summary")).to_contain_text("1 closed operation")
    await shot(page, "dashboard")


async def traded_user(
    platform: Platform, cleanup: list[str], name: str, symbol: str
) -> tuple[DemoUser, str]:
    """A user with one closed (take-profit) operation from an alert sent through the API."""
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser(name, name.title(), "PRO", "binance", "high")),
    )
    accepted = await post_alert(platform, symbol, sl="2", tp="3", exchange="binance")
    await wait_outcomes(platform.bus, [user.user_id])
    price = await platform.sims["binance"].price(symbol)
    await platform.sims["binance"].set_price(
        symbol, (price * Decimal("1.05")).quantize(Decimal("0.00001"))
    )
    await wait_closed(platform.bus, [user.user_id])

    async def projected() -> bool:
        # PositionClosed is on the bus; the ledger projects it (and its PnL) a moment later.
        page = await platform.demo.get(f"/users/{user.user_id}/operations")
        return any(o.get("realized_pnl") is not None for o in page.get("operations", []))

    await eventually(projected, timeout=30, message="the close projected by the ledger")
    return user, str(accepted["signal_id"])


async def test_history_filters_pages_and_exports_csv_and_isolation_holds(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    owner, _ = await traded_user(platform, cleanup, "hist", "DOGEUSDT")
    (other,) = await seed(
        platform,
        cleanup,
        *cohort(
            f"w{uuid.uuid4().hex[:6]}",
            DemoUser("other", "Otto", "PRO", "bybit", "low", trading_mode="PAUSED"),
        ),
    )
    operations = await platform.demo.get(f"/users/{owner.user_id}/operations")
    (operation,) = operations["operations"]
    page = await sign_in(browser, platform, owner.user_id)
    await page.get_by_role("link", name="History").click()
    table = page.locator("#history-table tbody tr")
    await expect(table).to_have_count(1)
    await expect(table).to_contain_text("DOGEUSDT")
    await expect(table).to_contain_text("CLOSED")
    await shot(page, "history")
    await page.get_by_label("Status").select_option("REJECTED")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#history-count")).to_have_text("0 operations matching.")
    await page.get_by_label("Symbol").fill("not a symbol!")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("#f-symbol-error")).to_contain_text("Symbol must be")
    await page.goto("/history?status=CLOSED&symbol=DOGEUSDT")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await download_info.value
    assert download.suggested_filename == "marketbot-operations.csv"
    path = await download.path()
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["operation_id"] for r in rows] == [operation["operation_id"]]
    assert rows[0]["realized_pnl"] == operation["realized_pnl"]
    assert rows[0]["status"] == "CLOSED"

    # the other user sees none of it, whatever URL they try
    intruder = await sign_in(browser, platform, other.user_id)
    await intruder.goto("/history")
    await expect(intruder.locator("#history-count")).to_have_text("0 operations.")
    await intruder.goto(f"/history?user_id={owner.user_id}")
    await expect(intruder.locator("#history-count")).to_have_text("0 operations.")
    exported = await intruder.request.get("/history.csv")
    assert operation["operation_id"] not in await exported.text()
    for url in (
        f"/operator/users/{owner.user_id}",
        "/operator",
        f"/operator/signals/{operation['signal_id']}",
    ):
        response = await intruder.goto(url)
        assert response is not None
        assert response.status == 403, url
        assert owner.user_id not in await intruder.content()
    for url in (f"/users/{owner.user_id}/operations", f"/users/{owner.user_id}/keys"):
        response = await intruder.goto(url)
        assert response is not None
        assert response.status == 404, url
    live_frames = await intruder.evaluate(
        """() => new Promise(resolve => {
            const seen = []; const ws = new WebSocket(`ws://${location.host}/live?last_event_id=0.0`);
            ws.onmessage = m => { seen.push(JSON.parse(m.data)); };
            setTimeout(() => { ws.close(); resolve(seen); }, 1500);
        })"""
    )
    users = {f.get("data", {}).get("user_id") for f in live_frames if f.get("data")}
    assert owner.user_id not in users
    assert live_frames
    assert live_frames[0]["type"] == "hello"
    assert live_frames[0]["user_id"] == other.user_id


# ------------------------------------------------------------------------------ operator


async def test_the_operator_follows_a_signals_trace(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    user, signal_id = await traded_user(platform, cleanup, "trace", "XRPUSDT")
    page = await operator(browser, platform)
    await expect(page.locator("#users-table")).to_contain_text(user.user_id)
    await shot(page, "operator-users")
    await page.get_by_role("link", name="Signals").click()
    await page.get_by_label("Signal id").fill(signal_id)
    await page.get_by_role("button", name="Open trace").click()
    await page.wait_for_url(f"**/operator/signals/{signal_id}")
    await expect(page.locator("#trace-alert")).to_contain_text("buy XRPUSDT")
    await expect(page.locator("#trace-decision")).to_contain_text("BUY XRPUSDT")
    reasons = page.locator("#reasons-table tbody tr")
    assert await reasons.count() >= 5
    await expect(page.locator("#reasons-table")).to_contain_text("fear_greed")
    orders = page.locator("#trace-orders tbody tr", has_text=user.user_id)
    await expect(orders).to_have_count(1)
    await expect(orders).to_contain_text("PRO")
    await expect(orders).to_contain_text("CLOSED")
    await shot(page, "operator-trace")
    await page.get_by_role("link", name="Status").click()
    await expect(page.locator("#services-table")).to_contain_text("ledger")
    await expect(page.locator("#ledger-table")).to_contain_text("ledger_order_events")
    await shot(page, "operator-status")
    await page.get_by_role("link", name="Webhook sources").click()
    await page.get_by_label("New source name").fill("Bad Name")
    await page.get_by_role("button", name="Create source").click()
    await expect(page.locator("#f-name-error")).to_contain_text("Name must")
    name = f"tv-{uuid.uuid4().hex[:6]}"
    await page.get_by_label("New source name").fill(name)
    await page.get_by_role("button", name="Create source").click()
    url = await page.locator("#new-url").inner_text()
    assert f"/webhooks/tradingview/{name}?token=mbs_" in url
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.get_by_role("button", name="Copy strategy template").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    await expect(page.locator("#tpl-json")).to_contain_text('"action": "{{strategy.order.action}}"')
    await shot(page, "operator-sources")
    # the URL the page gave works: an alert to the new source is accepted
    token = url.split("token=", 1)[1]
    price = await platform.demo.price("BTCUSDT")
    response = await platform.http.post(
        f"{platform.urls.gateway}/webhooks/tradingview/{name}",
        params={"token": token},
        json={"symbol": "BTCUSDT", "action": "close", "price": str(price)},
    )
    assert response.status_code == 202, response.text


# ------------------------------------------------------------------------------ accessibility


async def test_pages_have_labels_landmarks_and_fit_a_phone(
    browser: Browser, platform: Platform, cleanup: list[str]
) -> None:
    (user,) = await seed(
        platform,
        cleanup,
        *cohort(f"w{uuid.uuid4().hex[:6]}", DemoUser("a11y", "Ada", "TRIAL", "bybit", "low")),
    )
    page = await sign_in(
        browser, platform, user.user_id, viewport={"width": 375, "height": 740}, is_mobile=True
    )
    for path in ("/dashboard", "/positions", "/history", "/statement", "/keys", "/settings"):
        await page.goto(path)
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
                 .map(e => e.name || e.id)"""
        )
        assert unlabelled == [], (path, unlabelled)
        assert await page.locator("main#main").count() == 1
        assert await page.locator("nav[aria-label=Main]").count() == 1
        assert await page.locator("h1").count() == 1
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (path, overflow)  # tables scroll inside their own region
    await page.goto("/statement")
    await shot(page, "statement-phone")
    # the first Tab reaches the skip link, and it moves focus to the content
    await page.goto("/dashboard")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
