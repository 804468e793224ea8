"""The Temporal Web UI shows a call decoded to a signed-in supervisor, as devstack runs it: the
`temporal` CLI's dev server with its UI behind devstack's ui_proxy (which turns the codec's
includeCredentials on), the API with payload encryption on, and Chromium. Signing in to the
dashboard sets the codec cookie; the UI's codec requests carry it across ports (one site), and
the transcript line, encrypted in the workflow's history, reads in clear in the UI.

No worker runs: the call's workflow is started and signalled with the codec-enabled client, so
its history holds the encrypted line whatever the workflow would do next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page, expect
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from core.models import SIGNAL_TRANSCRIPT, CallInput, TranscriptLine, call_workflow_id, new_call_id
from core.temporal import connect_temporal
from devstack.services import free_port, temporal_dev_server, wait_port
from tests.api.conftest import PAYLOAD_KEYS, SUPERVISOR, api_settings, run_api
from tests.web.conftest import STATIC, _require_build, screenshot

LINE = "My VIN is 4T1BF1FK5CU123456 and my phone is 555-0100"


def _port_below_ephemeral() -> int:
    """A free port outside the kernel's ephemeral range (32768 up): the API binds it only after
    the Temporal dev server has started, whose own listeners (bound to port 0) and outgoing
    connections take ephemeral ports, so a hint from that range was once taken meanwhile."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


@contextlib.asynccontextmanager
async def _ui_stack(tmp: Path, pg_dsn: str, s3, livekit) -> AsyncIterator[tuple[str, str, Client]]:  # type: ignore[no-untyped-def]
    api_port_hint = _port_below_ephemeral()
    temporal_port, ui_inner, ui_port = free_port(), free_port(), free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    # The codec endpoint must be known before the API's port is: serve the API where we said.
    temporal = temporal_dev_server(tmp, temporal_port, ui_inner,
                                   codec_endpoint=f"http://127.0.0.1:{api_port_hint}/codec")  # fmt: skip
    await temporal.start()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")}
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.ui_proxy",
            "--port",
            str(ui_port),
            "--upstream",
            f"http://127.0.0.1:{ui_inner}",
        ],  # fmt: skip
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        assert await wait_port(ui_port, 20), "ui_proxy did not start"
        settings = api_settings(
            pg_dsn=pg_dsn, s3=s3, temporal_address=f"127.0.0.1:{temporal_port}", livekit=livekit,
            PAYLOAD_KEYS=PAYLOAD_KEYS, CODEC_CORS_ORIGINS=ui,
        )  # fmt: skip
        async with run_api(settings, static_dir=STATIC, port=api_port_hint) as api:
            client = await connect_temporal(settings)
            yield api.url, ui, client
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        await temporal.stop()


async def test_the_temporal_ui_decodes_a_call_for_a_signed_in_supervisor(
    browser: Browser,
    pg_dsn: str,
    s3,
    livekit_emulator,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    _require_build()
    async with _ui_stack(tmp_path, pg_dsn, s3, livekit_emulator) as (api, ui, client):
        # What the UI is told: devstack's proxy turned includeCredentials on.
        async with aiohttp.ClientSession() as http, http.get(f"{ui}/api/v1/settings") as r:
            codec = (await r.json())["Codec"]
        assert codec["Endpoint"].endswith("/codec") and codec["IncludeCredentials"] is True

        call_id = new_call_id()
        handle = await client.start_workflow(
            "CallWorkflow",
            CallInput(call_id=call_id, customer_name="Robin Ash"),
            id=call_workflow_id(call_id),
            task_queue="nobody-polls-this-queue",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(SearchAttributeKey.for_keyword("CallStatus"), "in_progress")]
            ),
        )
        await handle.signal(
            SIGNAL_TRANSCRIPT, TranscriptLine(id="l-1", speaker="customer", text=LINE)
        )
        # Encrypted in the history: the server (and a UI without the codec) sees no clear text.
        raw = await Client.connect(client.service_client.config.target_host)
        history = await raw.get_workflow_handle(handle.id).fetch_history()
        assert LINE not in json.dumps(history.to_json_dict())

        ctx = await browser.new_context(base_url=api, viewport={"width": 1360, "height": 900})
        try:
            page: Page = await ctx.new_page()
            statuses: list[int] = []
            page.on("response", lambda r: statuses.append(r.status) if "/codec/" in r.url else None)

            # Signed out: the UI asks the codec, is refused, and shows no clear text.
            text = await _open_signal(page, f"{ui}/namespaces/default/workflows/{handle.id}")
            assert 401 in statuses and LINE not in text

            await page.goto("/dashboard")
            await page.get_by_label("API token").fill(SUPERVISOR)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("#app")).to_be_visible()
            cookie = None
            for _ in range(50):  # the dashboard asks for it right after sign-in
                cookie = next(
                    (c for c in await ctx.cookies(api + "/codec") if c["name"] == "cc_session"),
                    None,
                )
                if cookie:
                    break
                await asyncio.sleep(0.1)
            assert cookie and cookie["httpOnly"] and cookie["path"] == "/"

            statuses.clear()
            await _open_signal(page, f"{ui}/namespaces/default/workflows/{handle.id}")
            await expect(page.get_by_text(LINE).first).to_be_visible(timeout=20_000)
            assert statuses and set(statuses) == {200}
            await screenshot(page, "temporal-ui-decoded")

            query = 'CallStatus="in_progress"'
            await page.goto(f"{ui}/namespaces/default/workflows?query={query}")
            await expect(page.get_by_text(handle.id).first).to_be_visible(timeout=20_000)
            await screenshot(page, "temporal-ui-calls")
        finally:
            await ctx.close()


async def _open_signal(page: Page, url: str) -> str:
    """Open the workflow, then the `transcript` signal's details in its timeline; the page text."""
    await page.goto(url)
    await page.get_by_text("transcript", exact=True).first.click(timeout=20_000)
    await expect(page.get_by_text("Signal Name", exact=True)).to_be_visible(timeout=20_000)
    await page.wait_for_timeout(1500)  # the codec round trip
    return await page.inner_text("body")
