"""devstack's scripted conversation drives a real call through the product's own paths:
the customer joins (webhook), lines arrive as signals, a keyword alert fires, the customer
hangs up (webhook) and the recording is stored."""

from __future__ import annotations

import asyncio

from devstack.standin import SCRIPT, converse
from tests.api.conftest import SUPERVISOR, ApiStack, _api_stack_session, api_stack  # noqa: F401


async def test_a_scripted_call_ends_with_its_lines_an_alert_and_a_stored_recording(
    api_stack: ApiStack,  # noqa: F811
) -> None:
    started = await api_stack.api.http("POST", "/api/calls", json_body={"customer_name": "Stan"})
    assert started.status == 201, started.body
    call_id, room = started.body["call_id"], started.body["room_name"]

    await converse(api_stack.settings, api_stack.livekit.control_url, room, pace_s=0.2)

    for _ in range(150):
        call = await api_stack.api.http("GET", f"/api/calls/{call_id}", token=SUPERVISOR)
        if call.body["status"] == "completed" and call.body["recording_status"] == "stored":
            break
        await asyncio.sleep(0.2)
    assert (call.body["status"], call.body["recording_status"]) == ("completed", "stored"), (
        call.body
    )
    assert call.body["end_reason"] == "customer_left"
    assert call.body["keyword_alerts"] == 1  # "Can I speak to a manager ..."

    page = await api_stack.api.http("GET", f"/api/calls/{call_id}/transcript", token=SUPERVISOR)
    texts = [line["text"] for line in page.body["lines"]]
    assert texts[0].startswith("Hello! Welcome to CME Auto Sales")
    assert "this call is recorded" in texts[0]  # the disclosure that lets recording start
    assert texts[1:] == [text for _, text in SCRIPT]

    rec = await api_stack.api.http("GET", f"/api/calls/{call_id}/recording", token=SUPERVISOR)
    assert rec.status == 200 and rec.body["size_bytes"] > 0, rec.body
