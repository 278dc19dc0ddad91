"""The dashboard's pause and resume buttons in Chromium (Playwright) against a sandbox gateway
subprocess: a person pauses the app with a reason, every process sees it through the store
(the API says so), the row shows who paused it and why, and Resume lets messages go again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.browser import (
    APP,
    CHROMIUM_ARGS,
    GOOD_USER,
    KEY,
    Api,
    chromium_path,
    sandbox_gateway,
    wait_for,
)

playwright_api = pytest.importorskip("playwright.sync_api")
Page = playwright_api.Page
expect = playwright_api.expect


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with sandbox_gateway(tmp_path_factory.mktemp("dash-apps")) as api:
        yield api


@pytest.fixture
def page(gateway: Api, tmp_path: Path) -> Iterator[Page]:
    errors: list[str] = []
    expect.set_options(timeout=10_000)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            pg.on(
                "console",
                lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None,
            )
            pg.goto(gateway.base_url + "/dashboard")
            pg.fill("#key-input", KEY)
            pg.click("#login-submit")
            expect(pg.locator("#dash")).to_be_visible()
            yield pg
        finally:
            browser.close()
    assert errors == []


def _pause(api: Api) -> dict[str, object] | None:
    [app] = [a for a in api.ok("GET", "/v1/apps")["apps"] if a["name"] == APP]
    pause = app["pause"]
    return dict(pause) if pause else None


def test_pause_and_resume_buttons(page: Page, gateway: Api) -> None:
    row = page.locator(f'#apps tr[data-app="{APP}"]')
    button = row.locator("button[data-app-action]")
    expect(button).to_have_text("Pause")

    # Cancelling the prompt does nothing.
    page.once("dialog", lambda d: d.dismiss())
    button.click()
    expect(button).to_have_text("Pause")
    assert _pause(gateway) is None

    page.once("dialog", lambda d: d.accept("template under review"))
    button.click()
    expect(page.locator("#toast")).to_have_text(f"App {APP} paused.")
    expect(button).to_have_text("Resume")
    expect(row).to_contain_text("Paused")
    expect(row).to_contain_text("until resumed")
    expect(row).to_contain_text("template under review")
    expect(row).to_contain_text("by api_keys[")
    pause = _pause(gateway)
    assert pause is not None and pause["reason"] == "template under review"
    assert str(pause["by"]).startswith("api_keys[") and pause["until"] is None

    # While paused a message waits (once the pool's pause cache, 0.5 s, has the pause);
    # Resume in the page lets it go.
    wait_for(
        lambda: gateway.stats()["delivery"]["apps"][APP]["paused_until"] is not None,
        what="the worker pool to see the pause",
    )
    msg_id = gateway.send(GOOD_USER)
    assert gateway.ok("GET", f"/v1/messages/{msg_id}")["status"] == "queued"
    button.click()
    expect(page.locator("#toast")).to_have_text(f"App {APP} resumed.")
    expect(button).to_have_text("Pause")
    expect(row).to_contain_text("Running")
    assert _pause(gateway) is None
    wait_for(
        lambda: gateway.ok("GET", f"/v1/messages/{msg_id}")["status"] in ("sent", "delivered"),
        what="the message to be sent after Resume",
    )
