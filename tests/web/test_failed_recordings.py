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
    for call_id in ids:  # what a pipeline that failed reports on the call's log
        await tables.add_event(
            call_id, "recording", {"status": "failed", "run_id": f"r-{call_id}/2", "by": "pipeline"}
        )
    # Failed in the call itself (the egress left no file): no pipeline, so no Retry.
    no_pipeline = await tables.add_call("No File", status="completed", recording_status="failed")
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
    unretryable = table.locator(f'tr[data-call="{no_pipeline}"]')
    await expect(unretryable).to_contain_text("Nothing to retry")
    assert await unretryable.locator("button").count() == 0
    shown = int(await page.locator("#failed-count").inner_text())
    count = await table.locator("button").count()  # the rows with a pipeline (others' too)
    assert shown >= 4 and 3 <= count < shown

    await table.locator(f'tr[data-call="{ids[0]}"] button').click()
    await expect(table.locator(f'tr[data-call="{ids[0]}"] .retry-state')).to_have_text("retrying")
    assert retried == [ids[0]]
    await expect(page.locator("#failed-count")).to_have_text(str(shown - 1))

    await page.locator("#retry-all").click()
    # the one already retried is not sent again
    await expect(page.locator("#retry-progress")).to_contain_text(f"of {count - 1} retried")
    assert set(ids) <= set(retried) and len(retried) == count == len(set(retried))
    assert no_pipeline not in retried
    # Left: the rows without a pipeline, which Retry cannot help.
    await expect(page.locator("#failed-count")).to_have_text(str(shown - count))
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
