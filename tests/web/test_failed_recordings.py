"""The dashboard's Failed recordings view in Chromium, against the real API process and its
PostgreSQL: ops see the link with its count, the failed calls with why, and Retry one / Retry
all send `POST /api/recordings/{id}/retry` for each (answered at the HTTP boundary here: the
API's own retry needs Temporal, which this suite does not run); supervisors see no link."""

from __future__ import annotations

from playwright.async_api import Page, Route, expect

from tests.web.conftest import CallTables, WebApi, screenshot
from tests.web.test_dashboard import sign_in


async def test_ops_retry_one_and_all_from_the_failed_view(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    ids = [
        await tables.add_call(f"Failed {i}", status="completed", recording_status="failed")
        for i in range(3)
    ]
    await tables.conn.execute(
        "UPDATE calls SET recording_error = 'the source answered HTTP 404' WHERE call_id = ANY($1)",
        ids,
    )
    retried: list[str] = []

    async def accept(route: Route) -> None:
        call_id = route.request.url.split("/api/recordings/")[1].split("/")[0]
        retried.append(call_id)
        await route.fulfill(
            status=202,
            content_type="application/json",
            body=f'{{"call_id": "{call_id}", "action": "retry_recording", "status": "started"}}',
        )

    await page.route("**/api/recordings/*/retry", accept)
    await sign_in(page, web_api.ops_token)
    link = page.locator("#failed-link")
    await expect(link).to_be_visible()
    await link.click()
    table = page.locator("#failed-table")
    for call_id in ids:
        await expect(table.locator(f'tr[data-call="{call_id}"]')).to_contain_text("HTTP 404")
    count = int(await page.locator("#failed-count").inner_text())
    assert count >= 3

    await table.locator(f'tr[data-call="{ids[0]}"] button').click()
    await expect(table.locator(f'tr[data-call="{ids[0]}"] .retry-state')).to_have_text("retrying")
    assert retried == [ids[0]]
    await expect(page.locator("#failed-count")).to_have_text(str(count - 1))

    await page.locator("#retry-all").click()
    # the one already retried is not sent again
    await expect(page.locator("#retry-progress")).to_contain_text(f"of {count - 1} retried")
    assert set(ids) <= set(retried) and len(retried) == count == len(set(retried))
    await expect(page.locator("#failed-count")).to_have_text("0")
    await screenshot(page, "failed-recordings")


async def test_supervisors_get_no_failed_view(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    await tables.add_call("Not Yours", status="completed", recording_status="failed")
    await sign_in(page, web_api.supervisor_token)
    await expect(page.locator("#call-list")).to_be_visible()
    await page.wait_for_timeout(500)  # the link's probe has answered 403 by now
    assert await page.locator("#failed-link").count() == 0
    await page.goto("/dashboard#/recordings/failed")
    await expect(page.locator("#failed-status")).to_contain_text("Only ops and admin")
