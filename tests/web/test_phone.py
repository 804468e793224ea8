"""The phone line in the dashboard (Chromium against the real API and PostgreSQL fan-out):
a phone call's channel and masked number in the list and the call's head, the `dialing`
status, the Transfer button on phone calls only, and the "Call a number" form.

Temporal is not running here: the transfer reaches the real API, which answers 503, and the
dialer's number is refused by the real API's prefix rule; the tests assert what the page sent
and what it showed."""

from __future__ import annotations

import json

from playwright.async_api import Page, expect

from tests.web.conftest import CallTables, WebApi
from tests.web.test_dashboard import sign_in

NUMBER = "+15557770042"


async def phone_call(tables: CallTables, status: str = "in_progress", **kw: str) -> str:
    call_id = await tables.add_call(None, status=status, recording_status="none")
    await tables.conn.execute(
        "UPDATE calls SET channel = 'phone', direction = $2, phone = $3 WHERE call_id = $1",
        call_id, kw.get("direction", "inbound"), kw.get("phone", NUMBER),
    )  # fmt: skip
    await tables.add_event(call_id, "status", {"status": status})
    return call_id


async def test_a_phone_call_shows_its_channel_masked_number_and_transfer(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await phone_call(tables)
    web_id = await tables.add_call("Web Caller")
    await sign_in(page, web_api.supervisor_token)
    row = page.locator(f'li[data-call-id="{call_id}"]')
    await expect(row.locator(".channel-chip")).to_contain_text("Phone · in")
    await expect(row.locator(".channel-chip")).to_contain_text("+1•••••0042")
    assert NUMBER not in await page.content()  # a supervisor never gets the number
    await expect(page.locator(f'li[data-call-id="{web_id}"] .channel-chip')).to_have_count(0)

    await page.goto(f"/dashboard#/calls/{call_id}")
    await expect(page.locator("#transfer-button")).to_be_visible()
    await page.locator("#transfer-button").click()
    await page.locator("#transfer-to").fill("tel:+15551239999")
    async with page.expect_request(f"**/api/calls/{call_id}/transfer") as request_info:
        await page.locator("#transfer-confirm").click()
    request = await request_info.value
    assert json.loads(request.post_data or "{}") == {"to": "tel:+15551239999"}
    await expect(page.locator(".toast-error")).to_contain_text("Not transferred")

    await page.goto(f"/dashboard#/calls/{web_id}")
    await expect(page.locator("#end-call-button")).to_be_visible()
    await expect(page.locator("#transfer-button")).to_be_hidden()  # a web call has none


async def test_a_dialing_call_and_the_call_a_number_form(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await phone_call(tables, status="dialing", direction="outbound")
    await sign_in(page, web_api.supervisor_token)
    row = page.locator(f'li[data-call-id="{call_id}"]')
    await expect(row.locator("[data-status]")).to_have_text("Dialing")
    await expect(row.locator(".channel-chip")).to_contain_text("Phone · out")

    await page.get_by_role("button", name="Call a number").click()
    await page.locator("#dial-to").fill("5551230001")
    await page.locator("#dial-submit").click()
    await expect(page.locator("#dial-error")).to_contain_text("E.164")  # refused in the page
    await page.locator("#dial-to").fill("+4930123456")
    await page.locator("#dial-name").fill("Ada")
    async with page.expect_request("**/api/calls/outbound") as request_info:
        await page.locator("#dial-submit").click()
    request = await request_info.value
    assert json.loads(request.post_data or "{}") == {"to": "+4930123456", "customer_name": "Ada"}
    # The API's rule (SIP_OUTBOUND_ALLOWED_PREFIXES) refuses it, naming the field.
    await expect(page.locator("#dial-error")).to_contain_text("Not called: to:")
