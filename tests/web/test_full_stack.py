"""The pages against the whole stack of tests/api (`api_stack`): the API in process, the Temporal
dev server, a worker running CallWorkflow, PostgreSQL, S3 and the LiveKit emulator. Nothing here
is intercepted: the widget starts a real call workflow and the dashboard ends it.
"""

from __future__ import annotations

import asyncio
import json

from playwright.async_api import Page, expect

from tests.api.conftest import ADMIN, SUPERVISOR, ApiStack
from tests.web.conftest import screenshot


async def test_widget_starts_a_real_call_and_reports_the_missing_webrtc(
    stack_page: Page, api_stack: ApiStack
) -> None:
    page = stack_page
    await page.goto("/")
    await page.get_by_label("Your name (optional)").fill("Morgan Stack")
    async with page.expect_response("**/api/calls") as response_info:
        await page.get_by_role("button", name="Call CME Auto Sales").click()
    response = await response_info.value
    assert response.status == 201, await response.text()
    created = await response.json()

    await expect(page.locator("#call-id")).to_have_text(created["call_id"])
    # The emulator is at livekit_url but speaks no WebRTC: a clear error, not a broken page.
    assert created["livekit_url"] == api_stack.settings.LIVEKIT_URL
    await expect(page.locator("#call-message")).to_contain_text(
        "Could not connect audio:", timeout=30_000
    )
    await screenshot(page, "widget-full-stack")

    # The call the widget started is a running workflow that a supervisor can see.
    detail = await api_stack.api.http("GET", f"/api/calls/{created['call_id']}", token=SUPERVISOR)
    assert detail.status == 200, detail.body
    assert detail.body["live"] is True
    await api_stack.api.http("POST", f"/api/calls/{created['call_id']}/end", token=ADMIN)


async def test_dashboard_ends_a_real_call(stack_page: Page, api_stack: ApiStack) -> None:
    page = stack_page
    started = await api_stack.api.http(
        "POST", "/api/calls", json_body={"customer_name": "Riley Stack"}
    )
    assert started.status == 201, started.body
    call_id = started.body["call_id"]

    await page.goto("/dashboard")
    await page.get_by_label("API token").fill(SUPERVISOR)
    await page.get_by_role("button", name="Sign in").click()
    # sign-in checks the token with the API before keeping it: navigate only once it is in
    await expect(page.locator("#app")).to_be_visible()
    await page.goto(f"/dashboard#/calls/{call_id}")
    await expect(page.locator("section.detail .live-pill")).to_have_attribute(
        "data-state", "open", timeout=10_000
    )

    await page.locator("#end-call-button").click()
    await page.locator("#end-reason").fill("test drive booked")
    async with page.expect_response(f"**/api/calls/{call_id}/end") as response_info:
        await page.locator("#end-confirm").click()
    response = await response_info.value
    assert response.ok, await response.text()
    assert json.loads(response.request.post_data or "{}") == {"reason": "test drive booked"}
    await expect(page.locator(".toast-success")).to_contain_text("Ending the call")

    # The workflow took the request: it reports the call ending or ended.
    for _ in range(50):
        state = await api_stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if state.body["status"] in ("ending", "completed"):
            break
        await asyncio.sleep(0.2)
    assert state.body["status"] in ("ending", "completed"), state.body
    await expect(page.locator("#end-call-button")).to_be_disabled()
