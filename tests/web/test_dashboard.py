"""The supervisor dashboard in Chromium, against the real API process and its real PostgreSQL
fan-out: rows and NOTIFYs are written as the call workflow writes them, and what the page shows
must have travelled table -> LISTEN -> WebSocket -> DOM.

Actions that need Temporal (end, retry) go to the real API, which answers 503 here because
Temporal is not running: the tests assert the request the page sent and the error it showed.
Monitor is answered at the HTTP boundary (a grant for the LiveKit emulator, which has no WebRTC).
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

from playwright.async_api import Page, Route, WebSocketRoute, expect

from api.domain.store import ACTIVE_STATUSES
from api.sessions import COOKIE as SESSION_COOKIE
from core.models import new_call_id, room_name_for
from tests.web.conftest import CallTables, WebApi, screenshot


async def sign_in(page: Page, token: str) -> None:
    await page.goto("/dashboard")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator("#list-live")).to_have_attribute("data-state", "open", timeout=10_000)


async def test_sign_in_refuses_a_wrong_token_and_keeps_a_good_one(
    page: Page, web_api: WebApi
) -> None:
    await page.goto("/dashboard")
    await expect(page.get_by_role("heading", name="Supervisor sign-in")).to_be_visible()
    await screenshot(page, "dashboard-signin")
    await page.get_by_label("API token").fill("not-a-token-of-this-deployment")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#signin-error")).to_have_text("That token is not valid.")
    await expect(page.locator("#app")).to_be_hidden()

    await sign_in(page, web_api.supervisor_token)
    stored = await page.evaluate("sessionStorage.getItem('callcenter.supervisor_token')")
    assert stored == web_api.supervisor_token
    assert await _session_cookie(page, present=True)  # what the Temporal UI's codec accepts
    await page.reload()  # the token survives a reload of the tab
    await expect(page.locator("#app")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Supervisor sign-in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('callcenter.supervisor_token')") is None
    assert not await _session_cookie(page, present=False)  # sign-out drops it


async def _session_cookie(page: Page, *, present: bool) -> bool:
    """Whether the browser holds the session cookie, once it is `present` (or after 20 s)."""
    for _ in range(100):
        held = any(c["name"] == SESSION_COOKIE for c in await page.context.cookies())
        if held == present:
            return held
        await asyncio.sleep(0.2)
    return held


async def test_list_shows_calls_and_follows_them_live(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    first = await tables.add_call("Avery Quinn")
    await sign_in(page, web_api.supervisor_token)
    row = page.locator(f'li[data-call-id="{first}"]')
    await expect(row).to_contain_text("Avery Quinn")
    await expect(page.locator("#ov-live")).not_to_have_text("0")
    await screenshot(page, "dashboard-overview")
    await expect(row.locator("[data-status]")).to_have_text("In progress")

    # A call that starts while the page is open arrives over WS /ws/calls, without a reload.
    second = await tables.add_call(
        "Blake Rivera", status="waiting_for_agent", recording_status="none"
    )
    second_row = page.locator(f'li[data-call-id="{second}"]')
    await expect(second_row).to_contain_text("Blake Rivera", timeout=10_000)
    await expect(second_row.locator("[data-status]")).to_have_text("Waiting for agent")

    await tables.add_event(second, "silence_alert", {"source": "workflow", "quiet_s": 30.0})
    await expect(second_row.locator(".alert-chip")).to_have_text("⚠ 1", timeout=10_000)

    # Ended in the live list: it is updated in place, then leaves the "Live" tab.
    await tables.add_event(second, "status", {"status": "no_agent"})
    await expect(second_row.locator("[data-status]")).to_have_text("No agent", timeout=10_000)
    await expect(second_row).to_have_count(0, timeout=15_000)
    await page.get_by_role("tab", name="Ended").click()
    await expect(page.locator(f'li[data-call-id="{second}"]')).to_contain_text("Blake Rivera")
    await expect(page.locator(f'li[data-call-id="{first}"]')).to_have_count(0)


async def test_call_detail_streams_transcript_and_alerts(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Casey Morgan")
    await tables.say(call_id, "assistant", "Hello! Welcome to CME Auto Sales. My name is Sarah.")
    await tables.say(call_id, "customer", "Hi Sarah, I'm looking at the 2022 RAV4 on your lot.")
    await sign_in(page, web_api.supervisor_token)
    await page.locator(f'li[data-call-id="{call_id}"] button').click()
    await expect(page).to_have_url(f"{web_api.base_url}/dashboard#/calls/{call_id}")

    transcript = page.locator("#transcript")
    # History: replayed from the table after the snapshot.
    await expect(transcript.locator(".line-agent .line-text")).to_have_text(
        ["Hello! Welcome to CME Auto Sales. My name is Sarah."], timeout=10_000
    )
    await expect(transcript.locator(".line-customer .line-speaker")).to_have_text(["Casey Morgan"])
    detail = page.locator("section.detail")
    await expect(detail.locator(".live-pill")).to_have_attribute("data-state", "open")

    # Live: an interim line, then the final line that replaces it, over WS /ws/calls/{id}.
    await tables.interim(call_id, "customer", "Does it come with")
    await expect(transcript.locator(".line-interim .line-text")).to_have_text(
        "Does it come with", timeout=10_000
    )
    await tables.say(call_id, "customer", "Does it come with all-wheel drive?")
    await expect(transcript.locator(".line-customer .line-text").last).to_have_text(
        "Does it come with all-wheel drive?", timeout=10_000
    )
    await expect(transcript.locator(".line-interim")).to_have_count(0)
    await expect(page.locator("#line-count")).to_have_text("3")

    # Alerts in the shapes CallWorkflow writes: a keyword alert points at its line.
    manager = await tables.say(call_id, "customer", "Can I talk to a manager about the price?")
    await tables.add_event(
        call_id,
        "keyword_alert",
        {"line_id": "l-4", "line_seq": manager, "keywords": ["manager"]},
    )
    await tables.add_event(
        call_id,
        "silence_alert",
        {"source": "workflow", "quiet_s": 30.0, "since": "2025-01-01T00:00:00+00:00"},
    )
    await expect(page.locator("#keyword-count")).to_have_text("1", timeout=10_000)
    await expect(page.locator("#silence-count")).to_have_text("1")
    await expect(transcript.locator(".line-keyword")).to_have_text(
        re.compile("Keyword “manager”: Can I talk to a manager about the price?")
    )
    await expect(transcript.locator(f'li[data-seq="{manager}"]')).to_have_class(
        re.compile("flagged")
    )
    await expect(transcript.locator(".line-silence")).to_contain_text("Silence for 30 s")
    await tables.add_event(
        call_id,
        "supervisor_action",
        {"action": "monitor", "by": "supervisor-0a1b2c3d4e", "detail": ""},
    )
    await expect(page.locator("#timeline")).to_contain_text(
        "Monitor · supervisor-0a1b2c3d4e", timeout=10_000
    )
    await expect(page.locator("#temporal-workflow-link")).to_have_attribute(
        "href", f"http://127.0.0.1:8233/namespaces/default/workflows/call-{call_id}"
    )
    await screenshot(page, "dashboard-call-detail")


async def test_reconnect_resumes_after_the_last_seq(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Jules Carter")
    await tables.say(call_id, "assistant", "Hello! Welcome to CME Auto Sales.")
    last = await tables.say(call_id, "customer", "Hi, do you have any hybrids?")
    sockets: list[tuple[str, WebSocketRoute]] = []

    def proxy(ws: WebSocketRoute) -> None:
        ws.connect_to_server()  # the real API; frames pass through untouched
        sockets.append((ws.url, ws))

    await page.route_web_socket(re.compile(rf".*/ws/calls/{call_id}\\?.*"), proxy)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    lines = page.locator("#transcript .line-customer, #transcript .line-agent")
    await expect(lines).to_have_count(2, timeout=10_000)

    # The connection drops; a line is written while the page is away.
    await sockets[-1][1].close(code=1011, reason="test drop")
    await tables.say(call_id, "assistant", "We have three hybrids in stock.")
    await expect(lines).to_have_count(3, timeout=15_000)
    await expect(lines.last).to_contain_text("We have three hybrids in stock.")
    assert len(sockets) == 2, [u for u, _ in sockets]
    assert "after=0" in sockets[0][0]
    assert f"after={last}" in sockets[1][0]
    # Live again after the reconnect: no line shown twice.
    await tables.say(call_id, "customer", "Great, can I test drive one on Saturday?")
    await expect(lines).to_have_count(4, timeout=10_000)


async def test_end_call_sends_the_request_and_shows_the_answer(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Devon Park")
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    await page.get_by_role("button", name="End call").first.click()
    await page.locator("#end-reason").fill("customer asked to stop")
    async with page.expect_request(f"**/api/calls/{call_id}/end") as request_info:
        await page.locator("#end-confirm").click()
    request = await request_info.value
    assert request.method == "POST"
    assert json.loads(request.post_data or "{}") == {"reason": "customer asked to stop"}
    assert request.headers["authorization"] == f"Bearer {web_api.supervisor_token}"
    response = await request.response()
    assert response is not None and response.status == 503  # Temporal is not running here
    await expect(page.locator(".toast-error")).to_contain_text(
        "Could not end the call: temporal is not reachable"
    )

    # When the workflow ends the call, the page follows the status event.
    await tables.add_event(
        call_id, "status", {"status": "completed", "reason": "ended by supervisor"}
    )
    await expect(page.locator("section.detail [data-status]")).to_have_text(
        "Completed", timeout=10_000
    )
    await expect(page.locator("#end-call-button")).to_be_disabled()
    await expect(page.locator("#timeline")).to_contain_text(
        "Status: Completed — ended by supervisor"
    )


async def test_monitor_shows_the_grant_and_the_audio_error(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Emery Shaw")

    async def grant(route: Route) -> None:
        await route.fulfill(
            status=201,
            content_type="application/json",
            body=json.dumps(
                {
                    "call_id": call_id,
                    "room_name": f"call-{call_id}",
                    "token": "eyJhbGciOiJIUzI1NiJ9.e30.not-a-real-signature",
                    "livekit_url": web_api.livekit_url,
                    "participant_identity": "supervisor-0a1b2c3d4e",
                    "expires_at": (datetime.now(UTC) + timedelta(minutes=30)).isoformat(),
                    "can_publish": False,
                    "hidden": True,
                }
            ),
        )

    await page.route(f"**/api/calls/{call_id}/monitor", grant)
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    await page.locator("#monitor-button").click()
    await expect(page.locator("#monitor-room")).to_have_text(f"call-{call_id}")
    await expect(page.locator("#monitor-panel")).to_contain_text("hidden, listen-only")
    await expect(page.locator("#monitor-error")).to_contain_text(
        "Could not connect audio:", timeout=30_000
    )


async def test_take_over_speaks_only_with_a_published_microphone(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    """At the livekit-client boundary: the page joins with the barge token and asks for the
    microphone; a seat that cannot connect (the emulator has no media) leaves the supervisor not
    live, the microphone never opened, and Sarah not told to stop."""
    call_id = await tables.add_call("Indigo Park")
    await page.add_init_script(
        "window.__micAsked = 0; const g = navigator.mediaDevices.getUserMedia.bind("
        "navigator.mediaDevices); navigator.mediaDevices.getUserMedia = (c) => "
        "{ window.__micAsked += 1; return g(c); };"
    )

    async def grant(route: Route) -> None:
        await route.fulfill(status=201, content_type="application/json", body=json.dumps({
            "call_id": call_id, "room_name": f"call-{call_id}",
            "token": "eyJhbGciOiJIUzI1NiJ9.e30.not-a-real-signature",
            "livekit_url": web_api.livekit_url, "participant_identity": "supervisor-0a1b2c3d4e",
            "expires_at": (datetime.now(UTC) + timedelta(minutes=15)).isoformat(),
            "can_publish": True, "hidden": False}))  # fmt: skip

    commands: list[str] = []
    await page.route(f"**/api/calls/{call_id}/barge", grant)
    page.on("request", lambda r: commands.append(r.url.rsplit("/", 1)[-1])
            if r.url.endswith(("/takeover", "/release")) else None)  # fmt: skip
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    await page.locator("#takeover-button").click()
    await expect(page.locator("#toasts")).to_contain_text("Could not take over", timeout=30_000)
    assert await page.locator("#you-are-live").is_hidden()
    assert await page.locator("#mute-button").is_hidden()
    assert await page.evaluate("window.__micAsked") == 0  # never live: the mic was not opened
    assert commands == []  # Sarah was not told to stop
    await expect(page.locator("#takeover-button")).to_have_text("Take over")


async def test_recording_panel_plays_a_stored_recording(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Finley Hart", status="completed", recording_status="uploading")
    payload = b"OggS" + bytes(range(256)) * 40
    digest = await tables.store_recording(call_id, web_api.s3, payload, duration_s=154.0)
    pending = await tables.add_call("Gray Ellis", status="completed", recording_status="uploading")

    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    panel = page.locator("#recording-panel")
    await expect(panel.locator("#recording-audio")).to_have_attribute(
        "src", re.compile(rf".*/{call_id}\.ogg\?.*X-Amz-Signature=.*")
    )
    await expect(panel).to_contain_text("2:34")
    await expect(panel).to_contain_text(f"{len(payload) / 1024:.1f} KB")
    await expect(panel.locator(".sha")).to_have_attribute("title", digest)
    # The presigned link really serves the stored bytes.
    src = await panel.locator("#recording-audio").get_attribute("src")
    assert src is not None
    body = await page.evaluate("async (u) => (await fetch(u)).status", src)
    assert body == 200
    await screenshot(page, "dashboard-recording")

    await page.goto(f"/dashboard#/calls/{pending}")
    await page.locator("#recording-refresh").click()
    await expect(page.locator("#recording-not-stored")).to_contain_text("Not stored yet")


async def test_failed_recording_offers_retry_to_ops(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Harper Vale", status="completed", recording_status="failed")
    await sign_in(page, web_api.ops_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    async with page.expect_request(f"**/api/recordings/{call_id}/retry") as request_info:
        await page.get_by_role("button", name="Retry recording").click()
    request = await request_info.value
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {web_api.ops_token}"
    await expect(page.locator(".toast-error")).to_contain_text("Retry failed:")


async def test_live_sockets_carry_the_token_as_a_subprotocol_never_in_the_url(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Harper Lane")
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    await sign_in(page, web_api.supervisor_token)  # waits for the list socket to open
    await page.locator(f'li[data-call-id="{call_id}"] button').click()
    # both sockets open (the list's and the call's): the API took their tokens
    await expect(page.locator('.live-pill[data-state="open"]')).to_have_count(2, timeout=10_000)
    assert any(u.split("?")[0].endswith("/ws/calls") for u in urls), urls
    assert any(f"/ws/calls/{call_id}" in u for u in urls), urls
    # the API refuses `?token=` (4401); these sockets opened, so the token went as `bearer, <t>`
    assert all("token" not in u and web_api.supervisor_token not in u for u in urls), urls


async def test_the_live_count_covers_every_active_call_past_one_snapshot_page(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    # More active calls than one page (200) of the socket's snapshot: the rest arrive in
    # `snapshot_more` messages, and the dashboard's live count includes them.
    fillers = [new_call_id() for _ in range(230)]
    await tables.conn.executemany(
        "INSERT INTO calls (call_id, room_name, customer_name, status, created_at) "
        "VALUES ($1, $2, 'Filler', 'in_progress', now() - interval '10 minutes')",
        [(c, room_name_for(c)) for c in fillers],
    )
    try:
        active = await tables.conn.fetchval(
            "SELECT count(*) FROM calls WHERE status = ANY($1::text[])", ACTIVE_STATUSES
        )
        assert active > 200
        await sign_in(page, web_api.supervisor_token)
        await expect(page.locator("#active-count")).to_have_text(str(active), timeout=10_000)
    finally:
        await tables.conn.execute("DELETE FROM calls WHERE call_id = ANY($1::text[])", fillers)


async def test_healing_take_over_and_turn_metrics_show(
    page: Page, web_api: WebApi, tables: CallTables
) -> None:
    call_id = await tables.add_call("Jo Healer")
    await sign_in(page, web_api.supervisor_token)
    await page.goto(f"/dashboard#/calls/{call_id}")
    await expect(page.locator("section.detail .live-pill")).to_have_attribute(
        "data-state", "open", timeout=10_000
    )
    # The shapes CallWorkflow writes when it heals a call.
    for data in (
        {"status": "dispatched", "attempt": 1, "of": 3, "reason": "room_created"},
        {"status": "dispatched", "attempt": 2, "of": 3, "reason": "no_agent_joined"},
        {"status": "agent_lost", "identity": "agent-1"},
        {"status": "agent_replaced", "identity": "agent-2", "attempts": 1},
    ):
        await tables.add_event(call_id, "agent_dispatch", data)
    await tables.add_event(
        call_id, "customer_connection", {"status": "reconnecting", "grace_s": 30}
    )
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text(
        "No agent yet: dispatched again (attempt 2 of 3)", timeout=10_000
    )
    await expect(timeline).to_contain_text("Sarah dropped off: dispatching a new agent")
    await expect(timeline).to_contain_text("A new agent took over the call")
    await expect(timeline).to_contain_text("Customer reconnecting (waiting up to 30 s)")
    await expect(page.locator("#transcript")).to_contain_text("Customer reconnecting…")

    await tables.add_event(call_id, "agent_metrics", {
        "id": "m1", "stt_delay_s": 0.12, "end_of_utterance_delay_s": 0.31,
        "time_to_first_token_s": 0.42, "time_to_first_audio_s": 0.2, "tts_ttfb_s": 0.2,
        "end_to_end_latency_s": 1.05})  # fmt: skip
    for key, label, shown in (("stt_delay_s", "STT delay", "120 ms"),
                              ("tts_ttfb_s", "TTS time to first byte", "200 ms"),
                              ("end_to_end_latency_s", "End to end (customer waits)", "1050 ms")):  # fmt: skip
        row = page.locator(f'#agent-metrics tr[data-figure="{key}"]')
        await expect(row.locator("th")).to_have_text(label, timeout=10_000)
        await expect(row.locator("td").first).to_have_text(shown)

    # Take over first asks for the barge seat (503 here: no Temporal to record it on): with no
    # microphone in the room, Sarah is not told to stop (no takeover command is sent).
    takeovers: list[str] = []
    page.on("request", lambda r: takeovers.append(r.url) if r.url.endswith("/takeover") else None)
    async with page.expect_request(f"**/api/calls/{call_id}/barge"):
        await page.locator("#takeover-button").click()
    await expect(page.locator("#toasts")).to_contain_text("Could not take over", timeout=10_000)
    assert takeovers == [] and await page.locator("#you-are-live").is_hidden()
    await tables.add_event(call_id, "supervisor_action", {"action": "takeover", "by": "sup-1"})
    await expect(page.locator("#takeover-button")).to_have_text("Release to Sarah", timeout=10_000)
