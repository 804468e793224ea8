"""A supervisor signs in to the dashboard as themselves, in Chromium: through the identity
provider the test runs (`testkit.oidc_provider`, a real HTTP server), back to the dashboard with
only an HttpOnly session cookie, the live list over a cookie-authenticated WebSocket, and out
again (the session revoked server-side). The API serves the built pages in this event loop on
PostgreSQL alone (no Temporal)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from playwright.async_api import Browser, Page, expect

from testkit.oidc_provider import OidcProvider, User
from tests.api.conftest import RunningApi, api_settings, run_api
from tests.web.conftest import STATIC, CallTables, _require_build, _watched, screenshot

CLIENT_ID = "callcenter-dashboard"


@contextlib.asynccontextmanager
async def _api(pg_dsn: str, s3: Any, idp: OidcProvider) -> AsyncIterator[RunningApi]:
    _require_build()
    settings = api_settings(
        pg_dsn=pg_dsn, s3=s3, temporal_address="127.0.0.1:1", livekit=None,
        CODEC_OIDC_ISSUER=idp.issuer, CODEC_OIDC_AUDIENCE="temporal-ui",
        DASHBOARD_OIDC_CLIENT_ID=CLIENT_ID,
    )  # fmt: skip
    async with run_api(settings, static_dir=STATIC, wait_temporal=False) as api:
        yield api


async def test_a_supervisor_signs_in_through_the_identity_provider_and_sees_the_dashboard(
    browser: Browser, pg_dsn: str, s3: Any
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    async with OidcProvider(client_id=CLIENT_ID) as idp, _api(pg_dsn, s3, idp) as api:
        idp.user = User(sub="u-77", email="sam@example.com", name="Sam", roles=["supervisor"])
        call_id = await CallTables(conn).add_call("Morgan Signin")
        ctx = await browser.new_context(base_url=api.url, viewport={"width": 1360, "height": 860})
        try:
            async with _watched(ctx) as page:
                await _sign_in(page, idp)
                await expect(page.locator("#signed-in-as")).to_have_text("sam@example.com")
                # The live list came over the WebSocket on the cookie alone (no token anywhere).
                await expect(page.locator("#list-live")).to_have_attribute(
                    "data-state", "open", timeout=10_000
                )
                await expect(page.locator(f'li[data-call-id="{call_id}"]')).to_be_visible()
                await screenshot(page, "dashboard-signed-in")
                cookies = {c["name"]: c for c in await ctx.cookies(api.url)}
                session = cookies["cc_session"]
                assert session["httpOnly"] and session["path"] == "/"
                assert session["sameSite"] == "Lax"
                assert "cc_session" not in await page.evaluate("document.cookie")
                assert await page.evaluate("sessionStorage.length") == 0

                await page.reload()  # the session survives a reload
                await expect(page.locator("#app")).to_be_visible()

                await page.get_by_role("button", name="Sign out").click()
                await expect(page.get_by_role("heading", name="Supervisor sign-in")).to_be_visible()
                revoked = await conn.fetchval(
                    "SELECT revoked_at FROM sessions WHERE id_hash = sha256($1::bytea)",
                    session["value"].encode(),
                )
                assert revoked is not None
                # The old cookie, put back, opens nothing.
                await ctx.add_cookies(
                    [{k: session[k] for k in ("name", "value", "domain", "path")}]
                )
                await page.reload()
                await expect(page.get_by_role("heading", name="Supervisor sign-in")).to_be_visible()
                await expect(page.locator("#app")).to_be_hidden()
        finally:
            await ctx.close()
    await conn.close()


async def _sign_in(page: Page, idp: OidcProvider) -> None:
    await page.goto("/dashboard")
    link = page.get_by_role("link", name="Sign in with your organisation")
    await expect(link).to_be_visible()
    await screenshot(page, "dashboard-signin-oidc")
    await link.click()  # to the provider, which signs its user in and sends the browser back
    await page.wait_for_url("**/dashboard**")
    await expect(page.locator("#app")).to_be_visible()
    assert not idp.token_errors
