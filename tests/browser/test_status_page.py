"""The status page in a real headless Chromium: no console errors, the chart shows the test's traffic, and a purge
from the form empties the entry."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Page, expect

from tests.admin.conftest import CACHEABLE, RunningProxy
from tests.support.origin import RunningOrigin


async def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """Open ``url``, collecting console errors and uncaught exceptions."""
    page = await browser.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    def on_error(error: Any) -> None:
        problems.append(f"page error: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    await page.goto(url)
    return page, problems


async def test_status_page_no_console_errors_and_chart_shows_traffic(
    browser: Browser, proxy: RunningProxy, origin: RunningOrigin
) -> None:
    origin.set("/chart", headers=CACHEABLE, body="chart")
    for _ in range(4):
        await proxy.client.get("/chart")
    page, problems = await open_page(browser, proxy.admin + "/")
    await expect(page.locator("#hit-ratio")).to_have_text("75.0 %")
    chart = page.locator("#chart")
    await expect(chart).to_have_attribute("data-requests", "4")
    assert int(await chart.get_attribute("data-points") or 0) >= 1
    assert await chart.locator("circle").count() >= 1
    await expect(page.locator('#outcomes tr[data-outcome="hit"] td').nth(1)).to_have_text("3")
    await expect(page.locator("#routes tbody tr")).to_have_text(["default" + "4" + "3" + "75.0 %"])
    await expect(page.locator("#stores progress")).to_have_count(1)
    # More traffic shows up at the next refresh (every 2 s) without reloading the page.
    await proxy.client.get("/chart")
    await expect(chart).to_have_attribute("data-requests", "5", timeout=5000)
    await page.close()
    assert problems == []


async def test_status_page_purge_form_empties_the_entry(
    browser: Browser, proxy: RunningProxy, origin: RunningOrigin
) -> None:
    origin.set("/form/item", headers=CACHEABLE, body="item")
    await proxy.client.get("/form/item")
    assert "hit" in (await proxy.client.get("/form/item")).headers["cache-status"]
    page, problems = await open_page(browser, proxy.admin + "/")
    await page.select_option("#purge-kind", "url")
    await page.fill("#purge-value", "/form/item")
    await page.click("#purge-submit")
    await expect(page.locator("#purge-result")).to_have_text("purged 1 entry (url /form/item)")
    after = await proxy.client.get("/form/item")
    assert "fwd=uri-miss" in after.headers["cache-status"]
    assert origin.hits["/form/item"] == 2
    await page.select_option("#purge-kind", "prefix")
    await page.fill("#purge-value", "no-slash")
    await page.click("#purge-submit")
    await expect(page.locator("#purge-result")).to_contain_text("purge failed: 400")
    await page.close()
    assert [p for p in problems if "400" not in p] == []


GEOMETRY = """() => {
  const chart = document.getElementById("chart");
  const frame = chart.getBoundingClientRect();
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {
    frame: box(chart),
    labels: Array.from(chart.querySelectorAll("text")).map((t) => [t.textContent, box(t)]),
    dots: Array.from(chart.querySelectorAll("circle")).map(box),
    width: frame.width,
  };
}"""


async def test_issue13_9_chart_geometry_at_1280px_labels_inside_dots_round(
    browser: Browser, proxy: RunningProxy, origin: RunningOrigin
) -> None:
    origin.set("/geo", headers=CACHEABLE, body="geo")
    for _ in range(4):
        await proxy.client.get("/geo")
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(proxy.admin + "/")
    await expect(page.locator("#chart")).to_have_attribute("data-requests", "4")
    assert await page.locator("#chart").get_attribute("preserveAspectRatio") is None
    geometry = await page.evaluate(GEOMETRY)
    left, top, right, bottom = geometry["frame"]
    assert geometry["width"] > 900  # the chart spans the page (its max-width) at 1280 px
    assert {"0%", "50%", "100%", "now"} <= {text for text, _ in geometry["labels"]}
    for text, (x0, y0, x1, y1) in geometry["labels"]:
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, f"label {text!r} leaves the chart"
        assert x1 - x0 < 60, f"label {text!r} is stretched: {x1 - x0:.0f} px wide"
    assert geometry["dots"]
    for x0, y0, x1, y1 in geometry["dots"]:
        assert abs((x1 - x0) - (y1 - y0)) < 0.5, "a point is drawn as an ellipse: the chart is stretched"
    await page.close()


async def test_issue13_9_hit_ratio_says_what_it_counts(
    browser: Browser, proxy: RunningProxy, origin: RunningOrigin
) -> None:
    origin.set("/counted", headers=CACHEABLE, body="c")
    for _ in range(3):
        await proxy.client.get("/counted")  # one miss, two hits
    await proxy.client.post("/counted", content=b"x")  # bypassed (method): not in the ratio
    page, problems = await open_page(browser, proxy.admin + "/")
    await expect(page.locator("#hit-ratio")).to_have_text("66.7 %")
    await expect(page.locator("#hit-ratio-basis")).to_have_text(
        "2 served from cache / 3 cacheable requests (bypassed excluded: 1)"
    )
    await page.close()
    assert problems == []
