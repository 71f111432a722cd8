"""The console in a real headless browser: Debian's chromium driven by Playwright (no browser download).

An engineer logs in, searches a case, opens its timeline, sees a red alert and replays a dead letter;
a supervisor sees the ID number masked and no replay button. CI installs chromium (.ci/run); on a
machine without it these tests fail and say how to install it, unless GATEWAY_SKIP_BROWSER_TESTS=1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.store.cases import AlertQuery
from tests.console_support import ID_NO, console_gateway, load_scenario, until
from tests.test_api_support import PASSWORD, add_user
from tests.test_api_support import http_fixture as http_fixture  # noqa: F401  (the ``http`` fixture)

CHROMIUM = os.environ.get("GATEWAY_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# As root (CI) chromium needs --no-sandbox; background networking would try hosts this machine cannot reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
MASKED_ID = "110105********002X"

if os.environ.get("GATEWAY_SKIP_BROWSER_TESTS") == "1":
    pytest.skip("GATEWAY_SKIP_BROWSER_TESTS=1", allow_module_level=True)


@pytest.fixture(name="gw")
async def gw_fixture(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for gw in console_gateway(tmp_path):
        yield gw


@pytest.fixture(name="browser")
async def browser_fixture(tmp_path: Path) -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's (apt-get install -y chromium, as .ci/run does) "
                    "or set GATEWAY_TEST_CHROMIUM; GATEWAY_SKIP_BROWSER_TESTS=1 skips these tests")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def logged_in(browser: Any, gw: Gateway, user: str) -> Any:
    """A fresh browser context logged in as ``user`` through the /login page; returns its page on the console."""
    assert gw.api is not None
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(gw.api.url + "/console/")
    assert page.url.endswith("/login"), "the console sends an anonymous visitor to the login page"
    await page.fill("#user", user)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/console/#/**")
    await page.wait_for_selector("#user")
    return page


async def shown(page: Any, hash_part: str, selector: str) -> None:
    """Wait until the page routed to a hash holding ``hash_part`` and finished loading ``selector``."""
    await page.wait_for_function(
        "([part, sel]) => location.hash.includes(part) && document.querySelector(sel) !== null"
        " && document.querySelector('main .loading') === null && !document.querySelector('main[data-busy]')",
        arg=[hash_part, selector])


async def test_an_engineer_searches_a_case_opens_its_timeline_sees_a_red_alert_and_replays_a_dead_letter(
        gw, http, browser) -> None:
    await load_scenario(http, gw)
    await add_user(gw, "zhang.gong", "engineer")
    page = await logged_in(browser, gw, "zhang.gong")
    assert "zhang.gong（集成工程师）" in await page.inner_text("#who")

    # Search a case by its number, open its timeline.
    await page.click("nav a[data-page=cases]")
    await page.fill("#case-search input[name=case_no]", "SL-RED")
    await page.click("#case-search button[type=submit]")
    await shown(page, "case_no=SL-RED", "#case-results table.grid")
    rows = page.locator("#case-results tbody tr")
    assert await rows.count() == 1
    assert "红牌" in await rows.first.inner_text()
    await page.click("#case-results a:text('SL-RED-0001')")
    await shown(page, "case/SL-RED-0001", "#verification")
    text = await page.inner_text("main")
    assert "办件 SL-RED-0001" in text and "时间线" in text
    assert "红牌：超期未办结" in text  # the red alert of this case
    assert ID_NO not in text and await page.locator("h2:text('审计记录')").count() == 1

    # The alert board shows the red alerts.
    await page.click("nav a[data-page=alerts]")
    await page.select_option("#alert-filters select[name=severity]", "red")
    await page.click("#alert-filters button[type=submit]")
    await shown(page, "severity=red", "#alert-results table.grid")
    board = await page.inner_text("#alert-results")
    assert "红牌：超期未办结" in board and "体外循环：无受理即办结" in board and "SL-RED-0001" in board

    # Acknowledge the red card with a note: the page sends the session's CSRF token.
    red = page.locator("#alert-results tbody tr", has_text="红牌：超期未办结")
    await red.locator("form.ack input[name=note]").fill("已督办承办科室")
    await red.locator("form.ack button").click()
    await red.locator(".ok").wait_for()
    acked, _ = await gw.store.list_alert_index(AlertQuery(alert_type="overdue_red"))  # type: ignore[union-attr]
    assert acked[0]["acked_by"] == "zhang.gong" and acked[0]["ack_note"] == "已督办承办科室"

    # Dead letters: preview what a replay would send, then replay one.
    await page.click("nav a[data-page=deliveries]")
    await shown(page, "deliveries", "#delivery-results table.grid")
    dead = await gw.store.list_deliveries(state="dead", case_no="SL-RED-0001")  # type: ignore[union-attr]
    row = page.locator("#delivery-results tbody tr", has_text="SL-RED-0001")
    await row.locator("button.preview").click()
    await page.wait_for_selector("#preview pre.body")
    preview = await page.inner_text("#preview")
    assert "SL-RED-0001" in preview and ID_NO not in preview and "试运行" in preview
    await row.locator("button.replay").click()
    await page.wait_for_selector("#delivery-results .ok")
    assert "已重放" in await page.inner_text("#delivery-results")

    async def replayed() -> bool:
        entries = await gw.store.audit_entries(case_no="SL-RED-0001", limit=1000)  # type: ignore[union-attr]
        return any(e.decoded()["action"] == "replayed" and e.decoded()["detail"]["delivery"] == dead[0]["id"]
                   and "zhang.gong" in e.decoded()["detail"]["actor"] for e in entries)

    await until(replayed)

    # Quarantine: a dry run of reprocessing says what would happen and changes nothing.
    await page.click("nav a[data-page=quarantine]")
    await shown(page, "quarantine", "#quarantine-results table.grid")
    bad = page.locator("#quarantine-results tbody tr", has_text="hall_platform")
    assert "applicant_id_no" in await bad.inner_text()
    await bad.locator("button:text('试运行')").click()
    await page.wait_for_selector("#quarantine-outcome pre")
    assert "试运行" in await page.inner_text("#quarantine-outcome")
    assert len(await gw.store.quarantine_entries(state="open")) == 1  # type: ignore[union-attr]

    # Counterpart health: the refusing city platform shows its dead letters; pause it from here.
    await page.click("nav a[data-page=health]")
    await shown(page, "health", "main table.grid")
    city = page.locator("main tbody tr", has_text="city_platform")
    assert "100.0%" in await city.inner_text()
    await city.locator("button.destination-pause").click()
    await page.locator("main tbody tr", has_text="city_platform").locator("button.destination-resume").wait_for()
    controls = await gw.store.destination_controls(["city_platform"])  # type: ignore[union-attr]
    assert controls["city_platform"].paused and controls["city_platform"].paused_by.startswith("user:zhang.gong")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_supervisor_sees_the_id_number_masked_and_no_replay_button(gw, http, browser) -> None:
    await load_scenario(http, gw)
    await add_user(gw, "jian.cha", "supervisor")
    page = await logged_in(browser, gw, "jian.cha")
    assert "jian.cha（监察人员）" in await page.inner_text("#who")
    nav = await page.inner_text("#nav")
    assert "办件查询" in nav and "监察预警" in nav and "投递与死信" not in nav and "隔离区" not in nav

    await page.goto(gw.api.url + "/console/#/case/SL-RED-0001")
    await shown(page, "case/SL-RED-0001", "#verification")
    await page.locator("details summary", has_text="办件").first.click()
    text = await page.inner_text("main")
    assert MASKED_ID in text and ID_NO not in text
    assert "张*" in text and "张三" not in text
    assert await page.locator("button.replay").count() == 0

    # Asking for the deliveries page by address does not show it either.
    await page.goto(gw.api.url + "/console/#/deliveries")
    await page.wait_for_function("location.hash !== '#/deliveries'")
    assert await page.locator("button.replay").count() == 0
    assert page.errors == []  # type: ignore[attr-defined]
