"""The dashboard's message search, detail view and chart history in Chromium (Playwright)
against a sandbox gateway subprocess: results come from GET /v1/messages, the detail shows
the status history, attempts, the errcode with its meaning and the receipt, the cancel
button acts through the API, all of it works again after a reload, and a reloaded page's
chart starts from the server's ring (GET /v1/stats/throughput), not empty."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.browser import (
    BAD_USER,
    CHROMIUM_ARGS,
    KEY,
    Api,
    chromium_path,
    sandbox_gateway,
    wait_for,
)

playwright_api = pytest.importorskip("playwright.sync_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

FIND_USER = "o_alice_find"  # delivered by the simulator like any o_alice* recipient


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with sandbox_gateway(tmp_path_factory.mktemp("messages")) as api:
        yield api


@pytest.fixture(scope="module")
def page(gateway: Api) -> Iterator[Page]:
    """A signed-in dashboard; fails the module on any script error or CSP violation."""
    expect.set_options(timeout=10_000)
    with playwright_api.sync_playwright() as pw:
        browser: Browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        pg.on(
            "console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None
        )
        pg.on("dialog", lambda d: d.accept())
        pg.goto(gateway.base_url + "/dashboard")
        pg.fill("#key-input", KEY)
        pg.click("#login-submit")
        expect(pg.locator("#dash")).to_be_visible()
        yield pg
        context.close()
        browser.close()
    assert errors == []


def _final(api: Api, msg_id: str) -> str | None:
    status = str(api.ok("GET", f"/v1/messages/{msg_id}")["status"])
    return status if status not in ("queued", "sending", "retrying", "sent") else None


def _search(page: Page, touser: str = "", status: str = "") -> None:
    page.fill("#ms-touser", touser)
    page.select_option("#ms-status", status)
    page.click("#ms-search")


def test_search_and_detail_of_a_dead_letter(page: Page, gateway: Api) -> None:
    ok = gateway.send(FIND_USER)
    dead = gateway.send(BAD_USER)
    wait_for(lambda: _final(gateway, ok), what="the good message to be delivered")
    assert wait_for(lambda: _final(gateway, dead), what="the bad one to die") == "dead"

    _search(page, touser=FIND_USER)
    rows = page.locator("#messages tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ok)

    _search(page, status="dead")
    expect(page.locator(f'#messages tbody tr[data-id="{dead}"]')).to_be_visible()
    page.click(f'#messages tbody tr[data-id="{dead}"]')
    expect(page.locator("#ms-detail")).to_be_visible()
    expect(page.locator("#md-id")).to_have_text(dead)
    expect(page.locator('#md-facts dd[data-fact="Status"]')).to_have_text("dead")
    # The errcode with what it means, from the gateway's errcode table.
    expect(page.locator('#md-facts dd[data-fact="Last errcode"]')).to_contain_text("40003: ")
    expect(page.locator('#md-facts dd[data-fact="Last errcode"]')).not_to_have_text("40003: ")
    history = page.locator("#md-history li")
    expect(history.first).to_contain_text("accepted")
    expect(history.last).to_contain_text("dead (errcode 40003")
    expect(page.locator("#md-cancel")).to_be_hidden()  # a dead letter cannot be cancelled


def test_detail_shows_the_receipt_and_survives_a_reload(page: Page, gateway: Api) -> None:
    page.reload()
    expect(page.locator("#dash")).to_be_visible()
    expect(page.locator("#messages")).to_be_hidden()  # a fresh page: nothing searched yet
    _search(page, touser=FIND_USER)
    page.click("#messages tbody tr")
    receipt = page.locator('#md-facts dd[data-fact="Receipt"]')
    expect(receipt).to_have_text("success")
    expect(page.locator("#md-history li").last).to_contain_text("delivered (receipt: success)")
    expect(page.locator("#md-history")).to_contain_text("sent to WeChat (msgid ")


def test_cancel_a_scheduled_message_from_its_detail(page: Page, gateway: Api) -> None:
    later = gateway.send("o_alice_later", send_at=time.time() + 3600)
    _search(page, touser="o_alice_later")
    page.click(f'#messages tbody tr[data-id="{later}"]')
    expect(page.locator('#md-facts dd[data-fact="Status"]')).to_have_text("scheduled")
    page.click("#md-cancel")  # the confirm() dialog is accepted by the fixture
    expect(page.locator('#md-facts dd[data-fact="Status"]')).to_have_text("cancelled")
    assert gateway.ok("GET", f"/v1/messages/{later}")["status"] == "cancelled"
    expect(page.locator(f'#messages tbody tr[data-id="{later}"] .badge')).to_have_text("cancelled")


def test_no_match_says_so(page: Page, tmp_path: Path) -> None:
    _search(page, touser="o_nobody_at_all")
    expect(page.locator("#ms-empty")).to_have_text("No messages match.")
    expect(page.locator("#messages")).to_be_hidden()


def _ring_sent(api: Api) -> int:
    body = api.ok("GET", "/v1/stats/throughput")
    at = body["kinds"].index("sent") + 1
    return sum(int(row[at]) for row in body["seconds"])


def test_the_chart_has_history_after_a_reload(page: Page, gateway: Api) -> None:
    gateway.batch([f"o_alice_chart_{k}" for k in range(30)])
    # The ring has them once the gateway's flush (every second) has run after the sends.
    sent = wait_for(lambda: _ring_sent(gateway) >= 30 and _ring_sent(gateway), what="the ring")
    page.reload()
    expect(page.locator("#dash")).to_be_visible()
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-history-points", re.compile(r"^[1-9]\d*$"))
    shown = int(chart.get_attribute("data-history-sent") or "0")
    assert 30 <= shown <= sent + 5, (shown, sent)  # what the ring held (and a second or two more)
    page.select_option("#chart-window", "3600")
    expect(page.locator("#chart-window-label")).to_have_text("\u00b7 last hour")
