"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, against a sandbox
gateway subprocess. The page's numbers must agree with /v1/stats, its buttons must act
through the API, and data must reach the DOM as text only.

One gateway and one signed-in page serve the whole module (tests run in file order and build
on what the earlier ones sent); the last test saves test-artifacts/dashboard.png.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from support.browser import (
    APP,
    ARTIFACTS,
    BAD_USER,
    CHROMIUM_ARGS,
    GOOD_USER,
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

OK = ("sent", "delivered")
FAILED = ("dead", "blocked", "failed", "expired")
STATUSES = (
    "queued",
    "scheduled",
    "retrying",
    "sending",
    "sent",
    "delivered",
    "blocked",
    "failed",
    "dead",
    "expired",
    "cancelled",
)
# What the page shows, read in one go so that all of it comes from the same poll.
READ_PAGE = """() => {
  const text = (id) => document.getElementById(id).textContent;
  const out = {};
  for (const id of ["kpi-ok-total", "kpi-failed-total", "kpi-depth", "kpi-dead",
                    "kpi-sending", "kpi-retrying", "kpi-ratio"]) out[id] = text(id);
  for (const td of document.querySelectorAll("#queue td[data-status]")) {
    out[td.dataset.app + "/" + td.dataset.status] = td.textContent;
  }
  return out;
}"""


def number(text: str) -> int:
    return int(text.replace(",", ""))


def expected_from(stats: dict[str, Any]) -> dict[str, str]:
    """The page's texts as /v1/stats says they must read."""
    ok = failed = 0
    for counts in stats["finished_by_app"].values():
        ok += sum(counts.get(s, 0) for s in OK)
        failed += sum(counts.get(s, 0) for s in FAILED)
    by = stats["by_status"]
    out = {
        "kpi-ok-total": f"{ok:,}",
        "kpi-failed-total": f"{failed:,}",
        "kpi-depth": f"{stats['queue_depth']:,}",
        "kpi-dead": f"{by['dead']:,}",
        "kpi-sending": f"{by['sending']:,}",
        "kpi-retrying": f"{by['retrying']:,}",
    }
    for status in STATUSES:
        out[f"*/{status}"] = f"{by.get(status, 0):,}"
        for app, counts in stats["by_app"].items():
            out[f"{app}/{status}"] = f"{counts.get(status, 0):,}"
    out["*/total"] = f"{sum(by.get(s, 0) for s in STATUSES):,}"
    return out


def page_agrees_with_api(page: Page, api: Api) -> dict[str, str] | None:
    """The page's numbers if they equal what the API answers right after reading them."""
    shown: dict[str, str] = page.evaluate(READ_PAGE)
    want = expected_from(api.stats())
    differ = {k: (shown.get(k), v) for k, v in want.items() if shown.get(k) != v}
    return None if differ else shown


def died_at(api: Api, msg_id: str) -> float:
    """When the message last died; 0 while it is not dead."""
    m = api.ok("GET", f"/v1/messages/{msg_id}")
    return float(m["finished_at"]) if m["status"] == "dead" else 0.0


def settled(api: Api) -> bool:
    """Nothing waiting or in flight (scheduled messages aside)."""
    by = api.stats()["by_status"]
    return all(by[s] == 0 for s in ("queued", "retrying", "sending"))


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The whole page is checked on both stores (the Redis DB starts empty)."""
    store_url = None
    if request.param == "redis":
        store_url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(store_url) as r:
            r.flushdb()
    with sandbox_gateway(tmp_path_factory.mktemp("dashboard"), store_url) as api:
        yield api
    if store_url is not None:  # and leaves it empty for the next test on the session's Redis
        with redis.Redis.from_url(store_url) as r:
            r.flushdb()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def sign_in(page: Page, key: str) -> None:
    page.fill("#key-input", key)
    page.click("#login-submit")


@pytest.fixture(scope="module")
def page(browser: Browser, gateway: Api) -> Iterator[Page]:
    """A signed-in dashboard. Fails the module on any script error or CSP violation."""
    expect.set_options(timeout=10_000)
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.goto(gateway.base_url + "/dashboard")
    sign_in(pg, KEY)
    expect(pg.locator("#dash")).to_be_visible()
    yield pg
    context.close()
    assert errors == []


def test_browser_sign_in_and_out(browser: Browser, gateway: Api) -> None:
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(gateway.base_url + "/dashboard")
        expect(pg.locator("#login")).to_be_visible()
        sign_in(pg, "not-a-key")
        expect(pg.locator("#login-error")).to_have_text("This key was not accepted.")
        expect(pg.locator("#dash")).to_be_hidden()
        sign_in(pg, KEY)
        expect(pg.locator("#dash")).to_be_visible()
        expect(pg.locator("#live")).to_have_attribute("data-state", "live")
        # The key lives in this tab's session storage: a reload stays signed in.
        pg.reload()
        expect(pg.locator("#dash")).to_be_visible()
        assert pg.evaluate("() => sessionStorage.length") == 1
        pg.click("#signout")
        expect(pg.locator("#login")).to_be_visible()
        assert pg.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()


def test_browser_numbers_move_and_match_stats(page: Page, gateway: Api) -> None:
    before = number(page.locator("#kpi-ok-total").inner_text())
    for round_ in range(6):  # traffic over ~1.5 s, so several polls see it moving
        gateway.batch([GOOD_USER] * 25 + [BAD_USER] * 2)
        gateway.send(GOOD_USER, idempotency_key=f"single-{round_}")
        time.sleep(0.25)
    # The rate shows while the traffic is within the last few seconds.
    wait_for(
        lambda: page.locator("#kpi-ok-rate").inner_text() not in ("0", "\u2013"),
        what="a non-zero delivered/s",
    )
    wait_for(lambda: settled(gateway), what="delivery to finish")
    shown = wait_for(
        lambda: page_agrees_with_api(page, gateway),
        timeout_s=10,
        every_s=0.3,
        what="the page to agree with /v1/stats",
    )
    assert number(shown["kpi-ok-total"]) >= before + 6 * 26
    assert number(shown["kpi-dead"]) >= 12
    assert shown["kpi-ratio"].endswith("%") and shown["kpi-ratio"] != "100%"
    chart_points = page.evaluate(
        """() => { const c = document.getElementById("chart");
                   return c.width > 0 && c.height > 0; }"""
    )
    assert chart_points


def test_browser_errcodes_and_app_state(page: Page, gateway: Api) -> None:
    stats = gateway.stats()
    [top] = [e for e in stats["top_errcodes"] if e["errcode"] == 40003]
    assert top["meaning"] == "invalid openid" and top["disposition"] == "drop"
    row = page.locator('#errcodes tr[data-errcode="40003"]')
    expect(row).to_contain_text("invalid openid")
    expect(row).to_contain_text("drop")
    wait_for(
        lambda: (
            number(row.locator("td.num").inner_text())
            == gateway.stats()["top_errcodes"][0]["count"]
        ),
        what="the errcode count to match",
    )
    app_row = page.locator(f'#apps tr[data-app="{APP}"]')
    expect(app_row).to_contain_text("Running")
    expect(app_row).to_contain_text("closed")
    expect(app_row).to_contain_text("100,000/s")


def test_browser_batch_progress_pause_resume_cancel(page: Page, gateway: Api) -> None:
    done_id = gateway.batch([GOOD_USER] * 4 + [BAD_USER])
    later_id = gateway.batch([GOOD_USER] * 3, send_at=time.time() + 3600)
    done_row = page.locator(f'#batches tr[data-batch="{done_id}"]')
    expect(done_row).to_contain_text("5 / 5 done · 1 failed")
    expect(done_row.locator(".badge")).to_have_text("done")
    expect(done_row.locator("button", has_text="Pause")).to_be_hidden()

    row = page.locator(f'#batches tr[data-batch="{later_id}"]')
    expect(row.locator(".badge")).to_have_text("running")
    expect(row).to_contain_text("0 / 3 done")
    row.locator("button", has_text="Pause").click()
    expect(row.locator(".badge")).to_have_text("paused")
    assert gateway.ok("GET", f"/v1/batches/{later_id}")["status"] == "paused"
    row.locator("button", has_text="Resume").click()
    expect(row.locator(".badge")).to_have_text("running")
    assert gateway.ok("GET", f"/v1/batches/{later_id}")["status"] == "running"
    page.once("dialog", lambda d: d.accept())
    row.locator("button", has_text="Cancel").click()
    expect(row.locator(".badge")).to_have_text("cancelled")
    progress = gateway.ok("GET", f"/v1/batches/{later_id}")
    assert progress["status"] == "cancelled" and progress["counts"] == {"cancelled": 3}
    expect(row.locator("button", has_text="Cancel")).to_be_hidden()


def test_browser_dead_letters_escape_and_requeue(page: Page, gateway: Api) -> None:
    hostile = '<img src=x id="pwned" onerror="document.title=1">'
    hostile_id = gateway.send(hostile)
    wait_for(
        lambda: gateway.ok("GET", f"/v1/messages/{hostile_id}")["status"] == "dead",
        what="the hostile message to die",
    )
    row = page.locator(f'#deadletters tr[data-id="{hostile_id}"]')
    expect(row).to_be_visible()
    expect(row.locator("td").nth(4)).to_have_text(hostile)  # shown as text (after Kind)...
    assert page.locator("#pwned").count() == 0  # ...never parsed as HTML
    assert page.title() == "wxgate · dashboard"

    # Filters: an errcode nobody has shows nothing; 40003 shows them all again.
    page.fill("#dl-errcode", "12345")
    page.click('#dl-filters button[type="submit"]')
    expect(page.locator("#dl-empty")).to_be_visible()
    page.fill("#dl-errcode", "40003")
    page.click('#dl-filters button[type="submit"]')
    expect(row).to_be_visible()

    # Select everything shown and requeue it: the API sees each one sent again (and, the
    # recipient still being invalid, dead again, later: requeue resets the attempts).
    shown = page.locator("#deadletters tbody tr")
    ids = [str(shown.nth(i).get_attribute("data-id")) for i in range(shown.count())]
    assert hostile_id in ids and len(ids) >= 13
    died = {i: died_at(gateway, i) for i in ids}
    page.check("#dl-all")
    expect(page.locator("#dl-requeue-selected")).to_have_text(f"Requeue selected ({len(ids)})")
    page.click("#dl-requeue-selected")
    expect(page.locator("#toast")).to_have_text(f"Requeued {len(ids)} dead letters.")

    def all_dead_again() -> bool:
        return all(died_at(gateway, i) > died[i] for i in ids)

    wait_for(all_dead_again, what="the requeued messages to be sent and die again")
    died = {i: died_at(gateway, i) for i in ids}

    # Requeue by filter (app + errcode), confirmed in a dialog.
    page.select_option("#dl-app", APP)
    page.click('#dl-filters button[type="submit"]')
    page.once("dialog", lambda d: d.accept())
    page.click("#dl-requeue-all")
    expect(page.locator("#toast")).to_contain_text("Requeued")
    wait_for(lambda: all_dead_again(), what="the requeue by filter")
    wait_for(lambda: settled(gateway), what="delivery to finish")
    wait_for(lambda: page_agrees_with_api(page, gateway), what="the page to agree again")


# Decodes a PNG in a blank page (the dashboard's CSP refuses data: images) and counts its
# pixels' colours: {"pixels": n, "colours": distinct, "top": share of the commonest colour}.
PNG_COLOURS = """async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width;
  canvas.height = img.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, img.width, img.height).data;
  const counts = new Map();
  for (let i = 0; i < data.length; i += 4) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const pixels = data.length / 4;
  return {pixels, colours: counts.size, top: Math.max(...counts.values()) / pixels};
}"""


def png_colours(browser: Browser, png: bytes) -> dict[str, float]:
    blank = browser.new_page()
    try:
        result: dict[str, float] = blank.evaluate(PNG_COLOURS, base64.b64encode(png).decode())
        return result
    finally:
        blank.close()


def test_browser_screenshot(page: Page, gateway: Api, browser: Browser) -> None:
    """Saved for people (test-artifacts/dashboard.png), and checked: the page it shows is the
    signed-in dashboard with the API's numbers, and the picture is not blank."""
    page.fill("#dl-errcode", "")
    page.select_option("#dl-app", "")
    page.click('#dl-filters button[type="submit"]')
    expect(page.locator("#toast")).to_be_hidden()
    expect(page.locator("#batches .badge", has_text="running")).to_have_count(0)
    page.evaluate("() => window.scrollTo(0, 0)")
    # What the screenshot shows: the KPI cards and the queue table, visible, with the numbers
    # /v1/stats answers (earlier tests delivered messages, so the OK total is not zero).
    for kpi in ("#kpi-ok-total", "#kpi-failed-total", "#kpi-depth", "#kpi-dead", "#queue"):
        expect(page.locator(kpi)).to_be_visible()
    shown = wait_for(lambda: page_agrees_with_api(page, gateway), what="the page to agree")
    assert number(shown["kpi-ok-total"]) > 0, shown
    expect(page.locator("#queue td[data-status]").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    out: Path = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    # The pixels: a blank or unstyled page is one or two colours; the dashboard has text,
    # cards and badges, so many colours and no single one filling nearly all of it.
    whole = png_colours(browser, out.read_bytes())
    assert whole["colours"] >= 16, whole
    assert whole["top"] < 0.97, whole
    # The OK total's own pixels: its digits are drawn, not an empty box.
    card = png_colours(browser, page.locator("#kpi-ok-total").screenshot())
    assert card["colours"] >= 2 and card["top"] < 0.99, card
