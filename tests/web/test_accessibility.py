"""Accessibility: axe-core (web/node_modules, installed by `npm ci`) checks each page against
WCAG 2.1 A/AA rules in Chromium, and the dashboard is driven by keyboard alone: find a call,
open it, play the recording from a line, open the report.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import ROOT, CallTables, WebApi
from tests.web.test_dashboard import sign_in
from tests.web.test_playback import _ended_call_with_recording

AXE = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


async def axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (rule id, impact, the elements)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `cd web && npm ci`", pytrace=False)
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))",
        TAGS,
    )
    return list(result)


def _show(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}" for v in violations)


async def test_pages_pass_axe(
    page: Page, web_api: WebApi, tables: CallTables, tmp_path: Path
) -> None:
    await page.goto("/")
    await expect(page.get_by_role("button", name=re.compile("Call"))).to_be_visible()
    assert not (v := await axe(page)), "widget:\n" + _show(v)

    await page.goto("/dashboard")
    await expect(page.get_by_label("API token")).to_be_visible()
    assert not (v := await axe(page)), "sign-in:\n" + _show(v)

    call_id = await _ended_call_with_recording(tables, web_api, tmp_path)
    await sign_in(page, web_api.supervisor_token)
    assert not (v := await axe(page)), "overview:\n" + _show(v)

    await page.goto(f"/dashboard#/calls/{call_id}")
    await expect(page.locator("#recording-audio")).to_be_attached(timeout=10_000)
    await page.get_by_role("button", name="Report").click()
    await expect(page.locator("#report-status")).to_be_visible()
    assert not (v := await axe(page)), "call:\n" + _show(v)

    await page.goto("/dashboard#/search?alerts=keyword")
    await expect(page.locator("#search-summary")).not_to_be_empty()
    assert not (v := await axe(page)), "search:\n" + _show(v)


async def test_the_dashboard_by_keyboard_alone(
    page: Page, web_api: WebApi, tables: CallTables, tmp_path: Path
) -> None:
    call_id = await _ended_call_with_recording(tables, web_api, tmp_path)
    await sign_in(page, web_api.supervisor_token)

    # Search: Tab to the link, Enter; type a name, Enter submits; Tab to the result, Enter opens.
    link = page.get_by_role("link", name="Search all calls")
    await link.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Name or call id")).to_be_visible()
    await page.get_by_label("Name or call id").focus()
    await page.keyboard.type(call_id)
    await page.keyboard.press("Enter")
    result = page.locator(f'#search-results tr[data-call-id="{call_id}"] a')
    await expect(result).to_be_visible()
    await result.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-call-id")).to_have_text(call_id)

    # A transcript line's play button is reachable with Tab and plays from where it was said.
    await expect(page.locator("#recording-audio")).to_have_js_property(
        "readyState", 4, timeout=10_000
    )
    lines = page.locator("#transcript li[data-at]")
    seek = lines.nth(2).locator("button.line-seek")
    await seek.focus()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Shift+Tab")
    assert await seek.evaluate("el => el === document.activeElement")
    await page.keyboard.press(" ")
    await expect(lines.nth(2)).to_have_attribute("aria-current", "true")

    # The report opens from its button with Enter, and says it is open.
    await page.locator("#report-button").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#report-button")).to_have_attribute("aria-expanded", "true")
    await expect(page.locator("#report-panel")).to_be_visible()
