"""The Desk page (`#/desk`) in Chromium, with the desk's API and WebSocket played by the test
(the page's contract, docs/api.md "The desk"): a rep's token opens the Desk alone; the state
switch sets `available`; an offer rings (countdown, briefing), is accepted and the page joins the
customer's room with the microphone (the emulator has no media: "Could not connect audio"), goes
back to Sarah and wraps up; the page passes axe."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Page, Route, WebSocketRoute, expect

from tests.web.conftest import WebApi, screenshot
from tests.web.test_accessibility import _show, axe

OFFER_ID = "6f1c2a4e-1111-4222-8333-444455556666"
CALL_ID = "a1b2c3d4e5f6a7b8"
BRIEFING = {
    "method": "extract",
    "label": "Extract of the call so far (quotes and tool records, not a summary)",
    "customer": "Dana Whitfield",
    "why": ["wants a trade-in price"],
    "done": ["Test drive booked: 2021 Ford F-150 at 2026-12-09T10:00:00"],
    "summary": "",
    "last_lines": [{"speaker": "customer", "text": "Can I talk to someone about my trade-in?"}],
}


def desk_message(state: str, offer: bool) -> str:
    return json.dumps({
        "type": "desk", "at": 0, "queue": [],
        "stats": {"waiting": 1 if offer else 0, "longest_wait_s": 4.0, "service_level_pct": 100.0,
                  "service_level_s": 20, "abandon_rate_pct": None, "average_wait_s": 8.0,
                  "average_handle_s": None, "reps_by_state": {state: 1}},
        "me": {"rep_id": "ann", "name": "ann", "state": state, "skills": ["sales"],
               "allowed_skills": ["sales"], "call_id": CALL_ID if state == "busy" else "",
               "offer_id": OFFER_ID if offer else ""},
        "offer": ({"offer_id": OFFER_ID, "call_id": CALL_ID, "skill": "sales",
                   "reason": "wants a trade-in price", "expires_in_s": 18} if offer else None),
    })  # fmt: skip


async def play_the_desk(page: Page, web_api: WebApi) -> dict[str, Any]:
    """Route the desk's endpoints and socket; returns what the page sent."""
    sent: dict[str, Any] = {"states": [], "posts": []}
    sockets: list[WebSocketRoute] = []
    sent["sockets"] = sockets

    async def ws(route: WebSocketRoute) -> None:
        sockets.append(route)
        route.send(desk_message("offline", False))

    await page.route_web_socket("**/ws/desk", ws)

    async def call_ws(route: WebSocketRoute) -> None:
        route.send(json.dumps({"type": "snapshot", "call": {"call_id": CALL_ID}, "after": 0}))
        route.send(json.dumps({"type": "final_transcript", "call_id": CALL_ID, "seq": 7, "at": "",
                               "data": {"speaker": "customer", "text": "Is the F-150 still there?"}}))  # fmt: skip

    await page.route_web_socket(f"**/ws/calls/{CALL_ID}*", call_ws)

    async def handle(route: Route) -> None:
        req = route.request
        path = req.url.split("/api/", 1)[1]
        body: Any = {}
        if path.startswith("calls?"):
            return await route.fulfill(status=403, content_type="application/json", body=json.dumps(
                {"error": {"code": "forbidden", "message": "role rep may not do this"}}))  # fmt: skip
        if path == "session" and "authorization" not in req.headers:
            return await route.continue_()  # not signed in yet: the API's own 401
        if path == "session":
            body = {"person": "ann", "roles": ["rep"], "via": "token", "expires_at": None}
        elif path == "desk/me" and req.method == "PUT":
            state = json.loads(req.post_data or "{}")["state"]
            sent["states"].append(state)
            body = {"rep_id": "ann", "state": state}
            for s in sockets:
                s.send(desk_message(state, offer=state == "available"))
        elif path == "desk/me":
            body = {"rep_id": "ann", "state": "offline", "skills": ["sales"]}
        elif path == "desk/offers":
            body = {"offers": [{"offer_id": OFFER_ID, "call_id": CALL_ID, "skill": "sales",
                                "reason": "wants a trade-in price", "expires_in_s": 18,
                                "waited_s": 3, "briefing": BRIEFING}]}  # fmt: skip
        elif path == f"desk/offers/{OFFER_ID}/accept":
            sent["posts"].append("accept")
            body = {"offer_id": OFFER_ID, "call_id": CALL_ID, "room": f"call-{CALL_ID}",
                    "url": web_api.livekit_url, "token": "eyJhbGciOiJIUzI1NiJ9.e30.not-real",
                    "participant_identity": "rep-ann-1a2b3c",
                    "expires_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat(),
                    "briefing": BRIEFING}  # fmt: skip
            for s in sockets:
                s.send(desk_message("busy", offer=False))
        elif path == f"desk/offers/{OFFER_ID}/decline":
            body = {"offer_id": OFFER_ID, "status": "declined"}
        elif path == "desk/me/back-to-sarah":
            sent["posts"].append("back-to-sarah")
            body = {"rep_id": "ann", "state": "wrap_up", "returned_call_id": CALL_ID}
            for s in sockets:
                s.send(desk_message("wrap_up", offer=False))
        else:
            return await route.continue_()
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    await page.route("**/api/**", handle)
    return sent


async def test_a_rep_takes_an_offer_goes_back_to_sarah_and_wraps_up(
    page: Page, web_api: WebApi
) -> None:
    sent = await play_the_desk(page, web_api)
    await page.goto("/dashboard")
    await page.get_by_label("API token").fill("test-rep-token-ann-0123456789")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#desk-state-now")).to_have_text("Offline", timeout=10_000)
    assert page.url.endswith("#/desk")
    assert await page.locator(".sidebar").is_hidden()  # a rep sees the Desk alone

    await page.locator("#desk-state").select_option("available")
    offer = page.locator("#desk-offer")
    await expect(offer).to_be_visible(timeout=10_000)
    await expect(offer).to_contain_text("wants a trade-in price")
    await expect(page.locator("#desk-countdown")).to_contain_text("Rings for")
    await expect(offer.locator("#desk-briefing")).to_contain_text("not a summary")
    await expect(offer.locator("#desk-briefing")).to_contain_text("Dana Whitfield")
    await expect(offer.locator("#desk-briefing")).to_contain_text("Test drive booked")
    assert not (v := await axe(page)), "desk with an offer:\n" + _show(v)
    await screenshot(page, "desk-offer")

    await page.locator("#desk-accept").click()
    status = page.locator("#desk-call-status")
    await expect(status).to_contain_text("Could not connect audio", timeout=30_000)
    await expect(page.locator("#desk-state-now")).to_have_text("Busy")
    await expect(page.locator("#desk-transcript")).to_contain_text("Is the F-150 still there?")
    assert await page.locator("#desk-state").is_disabled()  # on a call: only wrap-up follows
    assert not (v := await axe(page)), "desk on a call:\n" + _show(v)

    await page.locator("#desk-back-to-sarah").click()
    await expect(page.locator("#desk-wrapped-up")).to_be_visible()
    await page.locator("#desk-wrapped-up").click()
    await expect(page.locator("#desk-call")).to_be_hidden()
    assert sent["states"] == ["available", "available"]
    assert sent["posts"] == ["accept", "back-to-sarah"]


async def test_a_declined_offer_is_sent_and_leaves_the_page(page: Page, web_api: WebApi) -> None:
    sent = await play_the_desk(page, web_api)
    declined: list[str] = []
    page.on("request", lambda r: declined.append(r.url) if r.url.endswith("/decline") else None)
    await page.goto("/dashboard")
    await page.get_by_label("API token").fill("test-rep-token-ann-0123456789")
    await page.get_by_role("button", name="Sign in").click()
    await page.locator("#desk-state").select_option("available")
    await expect(page.locator("#desk-offer")).to_be_visible(timeout=10_000)
    await page.locator("#desk-decline").click()
    await expect(page.locator("#desk-offer")).to_be_hidden()
    assert declined and declined[0].endswith(f"/api/desk/offers/{OFFER_ID}/decline")
    assert sent["posts"] == []
