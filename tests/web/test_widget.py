"""The customer widget in Chromium, against the real API process.

`POST /api/calls` succeeds only with Temporal and the call workflow running; here Temporal is
not running, so the successful answer is given at the HTTP boundary (Playwright routing) with a
token for the LiveKit emulator, which speaks no WebRTC: the widget must show the call id and a
clear audio error. Rate limiting, validation and 5xx handling are the real API's answers.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import asyncpg
from playwright.async_api import Page, Route, expect

from core.models import new_call_id, room_name_for
from tests.web.conftest import WebApi, screenshot


async def test_widget_renders_a_call_card(page: Page) -> None:
    await page.goto("/")
    await expect(page).to_have_title("Call CME Auto Sales")
    await expect(page.locator("#call-card")).to_have_attribute("data-state", "idle")
    await expect(page.get_by_role("button", name="Call CME Auto Sales")).to_be_enabled()
    await expect(page.get_by_label("Your name (optional)")).to_be_visible()
    await expect(page.locator("#in-call")).to_be_hidden()
    await screenshot(page, "widget-idle")


async def test_call_shows_call_id_and_audio_error_from_emulator(
    page: Page, web_api: WebApi
) -> None:
    call_id = new_call_id()
    seen: list[dict[str, object]] = []

    async def created(route: Route) -> None:
        seen.append(json.loads(route.request.post_data or "{}"))
        await route.fulfill(
            status=201,
            content_type="application/json",
            body=json.dumps(
                {
                    "call_id": call_id,
                    "room_name": room_name_for(call_id),
                    "token": "eyJhbGciOiJIUzI1NiJ9.e30.not-a-real-signature",
                    "livekit_url": web_api.livekit_url,
                    "participant_identity": f"customer-{call_id}",
                    "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                }
            ),
        )

    await page.route("**/api/calls", created)
    await page.goto("/")
    await page.get_by_label("Your name (optional)").fill("Jordan Lee")
    await page.get_by_role("button", name="Call CME Auto Sales").click()

    await expect(page.locator("#call-id")).to_have_text(call_id)
    message = page.locator("#call-message")
    await expect(message).to_contain_text("Could not connect audio:", timeout=30_000)
    await expect(page.locator("#call-card")).to_have_attribute("data-state", "failed")
    assert seen == [{"customer_name": "Jordan Lee"}]
    # The customer can try again; the page did not break.
    await expect(page.get_by_role("button", name="Call again")).to_be_enabled()
    await screenshot(page, "widget-audio-error")


async def test_invalid_name_shows_the_apis_field_message(page: Page) -> None:
    await page.goto("/")
    await page.get_by_label("Your name (optional)").fill("<b>Robert</b>")
    async with page.expect_response("**/api/calls") as response_info:
        await page.get_by_role("button", name="Call CME Auto Sales").click()
    response = await response_info.value
    # Validation comes after the rate limit: this is the first request of the address's budget.
    assert response.status == 422
    error = page.locator("#name-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("Name:")
    await expect(error).to_contain_text("not allowed in a name")
    await expect(page.get_by_label("Your name (optional)")).to_have_attribute(
        "aria-invalid", "true"
    )


async def test_server_trouble_then_rate_limit_with_retry_after(page: Page) -> None:
    await page.goto("/")
    button = page.locator("#call-button")
    statuses: list[int] = []
    # Each press spends one of the address's requests; Temporal is down, so the first ones are
    # 503s (shown without internals), and the one past the limit is a 429 with Retry-After.
    for _ in range(6):
        async with page.expect_response("**/api/calls") as response_info:
            await button.click()
        response = await response_info.value
        statuses.append(response.status)
        if response.status == 429:
            break
        assert response.status == 503, statuses
        message = page.locator("#call-message")
        await expect(message).to_have_text(
            "Our call center is having trouble right now. Please try again in a minute."
        )
        await expect(message).not_to_contain_text("temporal")
    assert statuses[-1] == 429, statuses
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1

    message = page.locator("#call-message")
    await expect(message).to_contain_text("Too many calls from your network right now")
    match = re.search(r"try again in (\d+) s", await message.inner_text())
    assert match and 1 <= int(match.group(1)) <= retry_after
    await expect(button).to_be_disabled()
    await expect(page.locator("#call-card")).to_have_attribute("data-state", "cooldown")
    await screenshot(page, "widget-rate-limited")


async def test_a_full_call_center_says_so_and_when_to_try_again(
    page: Page, web_api: WebApi
) -> None:
    """Every live-call place taken (MAX_LIVE_AI_CALLS, default 100, held by other addresses):
    the API's 503 `at_capacity` is a friendly, honest wait on the card, not "trouble"."""
    conn = await asyncpg.connect(web_api.dsn)
    held = [(f"fullhouse{i:011d}", f"192.0.2.{i % 250}") for i in range(100)]
    try:
        await conn.executemany(
            "INSERT INTO admissions (call_id, client_key, joined_at) VALUES ($1, $2, now())", held
        )
        await page.goto("/")
        async with page.expect_response("**/api/calls") as response_info:
            await page.locator("#call-button").click()
        response = await response_info.value
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "at_capacity"
        message = page.locator("#call-message")
        await expect(message).to_contain_text("All our agents are busy right now.")
        await expect(message).not_to_contain_text("trouble")
        match = re.search(r"try again in (\d+) s", await message.inner_text())
        assert match and 1 <= int(match.group(1)) <= int(response.headers["retry-after"])
        await expect(page.locator("#call-card")).to_have_attribute("data-state", "cooldown")
        await screenshot(page, "widget-at-capacity")
    finally:
        await conn.execute("DELETE FROM admissions WHERE call_id = ANY($1::text[])",
                           [c for c, _ in held])  # fmt: skip
        await conn.close()
