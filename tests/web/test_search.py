"""Search: `GET /api/calls/search` against the real API and PostgreSQL (filters, keyset pages,
a 422 naming the field for bad input), and the dashboard's search page, whose URL is the search.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.web.conftest import CallTables, WebApi, screenshot
from tests.web.test_dashboard import sign_in


async def _get(
    web_api: WebApi, params: dict[str, Any], token: str | None = None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token or web_api.supervisor_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{web_api.base_url}/api/calls/search?{urlencode(params)}", headers=headers) as r,
    ):
        return r.status, await r.json()


async def _seed(tables: CallTables, tag: str) -> dict[str, str]:
    """Four calls whose names carry `tag`, so other tests' rows never match."""
    calls = {
        "kept": await tables.add_call(
            f"Morgan {tag}", status="completed", recording_status="stored"
        ),
        "alert": await tables.add_call(
            f"Riley {tag}", status="completed", recording_status="failed"
        ),
        "live": await tables.add_call(f"Sam {tag}", status="in_progress"),
        "old": await tables.add_call(f"Toby {tag}", status="no_agent", recording_status="none"),
    }
    await tables.add_event(calls["alert"], "keyword_alert", {"keywords": ["manager"]})
    await tables.conn.execute(
        "UPDATE calls SET end_reason = 'customer_left' WHERE call_id = ANY($1::text[])",
        [calls["kept"], calls["alert"]],
    )
    await tables.conn.execute(
        "UPDATE calls SET created_at = now() - interval '40 days' WHERE call_id = $1", calls["old"]
    )
    return calls


async def test_search_filters_pages_and_refuses_bad_input(
    web_api: WebApi, tables: CallTables
) -> None:
    tag = f"Zq{datetime.now(UTC).strftime('%H%M%S%f')}"
    calls = await _seed(tables, tag)

    def ids(body: Any) -> set[str]:
        return {c["call_id"] for c in body["calls"]}

    status, body = await _get(web_api, {"q": tag.lower()})  # any part, any case
    assert status == 200 and ids(body) == set(calls.values())
    status, body = await _get(web_api, {"q": tag, "status": "completed", "end_reason": "LEFT"})
    assert ids(body) == {calls["kept"], calls["alert"]}
    status, body = await _get(web_api, {"q": tag, "alerts": "keyword"})
    assert ids(body) == {calls["alert"]}
    status, body = await _get(web_api, {"q": tag, "alerts": "none", "recording": "stored,none"})
    assert ids(body) == {calls["kept"], calls["old"]}
    since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    status, body = await _get(web_api, {"q": tag, "from": since})
    assert ids(body) == {calls["kept"], calls["alert"], calls["live"]}
    status, body = await _get(web_api, {"q": tag, "to": since})
    assert ids(body) == {calls["old"]}
    status, body = await _get(web_api, {"q": "%"})  # LIKE wildcards are text, not patterns
    assert status == 200 and not (ids(body) & set(calls.values()))

    # Pages: newest first, each call once, the last page without a cursor.
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"q": tag, "limit": 3} | ({"cursor": cursor} if cursor else {})
        status, body = await _get(web_api, params)
        seen += [c["call_id"] for c in body["calls"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 4 and set(seen) == set(calls.values()) and seen[-1] == calls["old"]

    for params, field in [
        ({"status": "done"}, "status"),
        ({"recording": "stored,lost"}, "recording"),
        ({"alerts": "some"}, "alerts"),
        ({"from": "yesterday"}, "from"),
        ({"from": since, "to": since}, "to"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"q": "x" * 101}, "q"),
        ({"sort": "name"}, "sort"),
    ]:
        status, body = await _get(web_api, params)
        assert status == 422, (params, body)
        assert body["error"]["field"] == field, (params, body)


@pytest.mark.parametrize("token", ["nope"])
async def test_search_needs_a_token(web_api: WebApi, token: str) -> None:
    status, _ = await _get(web_api, {}, token=token)
    assert status == 401


async def test_search_page_is_a_shareable_url(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    tag = f"Yq{datetime.now(UTC).strftime('%H%M%S%f')}"
    calls = await _seed(tables, tag)
    await sign_in(page, web_api.supervisor_token)
    await page.get_by_role("link", name="Search all calls").click()
    await page.get_by_label("Name or call id").fill(tag)
    await page.get_by_label("Alerts").select_option("keyword")
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"#/search\?q={tag}&alerts=keyword$"))
    rows = page.locator("#search-results tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-call-id", calls["alert"])
    await screenshot(page, "dashboard-search")

    # The same URL in a fresh tab runs the same search, form filled in. The tab is signed in
    # by the session the first tab's sign-in started (cc_session: the token itself stays in
    # its tab).
    shared = page.url
    other = await page.context.new_page()
    await other.goto(shared)
    await expect(other.locator("#search-results tr")).to_have_count(1)
    await expect(other.get_by_label("Name or call id")).to_have_value(tag)
    await other.close()

    await page.goto(f"/dashboard#/search?q={tag}&status=completed")
    await expect(rows).to_have_count(2)
    await rows.filter(has_text=f"Morgan {tag}").get_by_role("link").click()
    await expect(page).to_have_url(re.compile(rf"#/calls/{calls['kept']}$"))
    await expect(page.locator("#detail-call-id")).to_have_text(calls["kept"])

    await page.goto("/dashboard#/search?from=2026-13-45")
    await expect(page.locator("#search-error")).to_be_visible()
