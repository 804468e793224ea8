"""A supervisor command's id names one command on its call: a retry goes through as the same
command, an id reused for another command is refused (409) and the refusal is on the call's
record, and the agent never receives it. Real stack: API, Temporal, PostgreSQL, the LiveKit
emulator (whose agent joins each call)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg

from tests.api.conftest import ADMIN, SUPERVISOR, ApiStack
from tests.api.test_call_flow import wait_status


async def _actions(db: asyncpg.Connection, call_id: str, want: int) -> list[dict[str, Any]]:
    """The call's supervisor_action events, once there are `want` of them (the workflow
    writes them from its signals)."""
    deadline = time.monotonic() + 30
    while True:
        rows = await db.fetch(
            "SELECT data FROM call_events WHERE call_id = $1 AND kind = 'supervisor_action' "
            "ORDER BY seq",
            call_id,
        )
        data = [r["data"] if isinstance(r["data"], dict) else json.loads(r["data"]) for r in rows]
        if len(data) >= want:
            return data
        assert time.monotonic() < deadline, f"only {data} recorded"
        await asyncio.sleep(0.2)


async def test_a_reused_command_id_is_refused_and_recorded(
    api_stack: ApiStack, db: asyncpg.Connection
) -> None:
    api, lk = api_stack.api, api_stack.livekit
    r = await api.http("POST", "/api/calls", json_body={"customer_name": "Ana Lee"})
    call_id, room = r.body["call_id"], r.body["room_name"]
    await lk.join(room, r.body["participant_identity"], kind="customer")
    await wait_status(api_stack, call_id, {"in_progress"})

    async def command(path: str, token: str = SUPERVISOR, **body: str) -> Any:
        return await api.http("POST", f"/api/calls/{call_id}/{path}", token=token, json_body=body)

    first = await command("whisper", text="Offer financing", id="w-1")
    assert first.status == 202, first.body
    retry = await command("whisper", text="Offer financing", id="w-1")
    assert retry.status == 202  # the same command again: applied once, recorded once

    reused = await command("whisper", text="Offer 50% off", id="w-1")
    assert reused.status == 409 and reused.error["code"] == "command_id_reused", reused.body
    assert reused.error["field"] == "id"
    by_other = await command("whisper", token=ADMIN, text="Offer financing", id="w-1")
    assert by_other.status == 409
    as_takeover = await command("takeover", id="w-1")
    assert as_takeover.status == 409

    actions = await _actions(db, call_id, want=4)
    assert [a["action"] for a in actions] == ["whisper"] + ["command_refused"] * 3
    assert actions[0]["detail"] == "Offer financing"
    refused = actions[1]
    assert "w-1" in refused["detail"] and "Offer 50% off" in refused["detail"]
    assert refused["by"] and "whisper refused" in refused["detail"]
    assert "takeover refused" in actions[3]["detail"]

    # The agent received the whisper (twice: the retry; it applies an id once), nothing else.
    rooms = (await lk.state())["rooms"]
    data = next(x for x in rooms if x["name"] == room)["data"]
    sent = [json.loads(d["text"]) for d in data if d["topic"].startswith("supervisor.")]
    assert [s["text"] for s in sent] == ["Offer financing"] * 2
    assert await api.http("POST", f"/api/calls/{call_id}/end", token=SUPERVISOR)
