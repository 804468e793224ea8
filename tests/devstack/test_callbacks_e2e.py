"""A callback end to end on the devstack parts (the API, the product's worker, the LiveKit
emulator's SIP): one due a few seconds out dials the emulator (`GET /_emulator/sip/calls` shows
the call to its number) and its call runs, linked to its callback (its agent's opening says
why it calls); a busy number is tried again after CALLBACK_RETRY_S
(2 s in this stack) and answered the second time."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from core.livekit import room_admin_token
from tests.api.conftest import (  # noqa: F401
    ADMIN,
    SUPERVISOR,
    ApiStack,
    _api_stack_session,
    api_stack,
)
from tests.api.test_callbacks_api import midday_zone, number
from tests.devstack.test_phone_e2e import phone_line  # noqa: F401
from tests.ops.conftest import wait_call


async def wait_callback(
    stack: ApiStack, cid: str, timeout: float = 60, **want: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = await stack.api.http("GET", f"/api/callbacks/{cid}", token=ADMIN)
        if r.status == 200 and all(r.body.get(k) == v for k, v in want.items()):
            return r.body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"callback {cid} never {want}: {r.body}"
        await asyncio.sleep(0.3)


async def schedule(stack: ApiStack, to: str) -> str:
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    r = await stack.api.http("POST", "/api/callbacks", token=SUPERVISOR, json_body={
        "phone": to, "at": at, "timezone": midday_zone(), "reason": "the Silverado test drive"})  # fmt: skip
    assert r.status == 201, r.body
    return r.body["id"]  # type: ignore[no-any-return]


async def test_a_callback_dials_the_emulator_and_its_call_runs(phone_line: ApiStack) -> None:  # noqa: F811
    stack = phone_line
    to = number()
    await stack.livekit.control("PUT", f"sip/outcomes/{to}", {"outcome": "answer", "ring_s": 0.2})
    cid = await schedule(stack, to)
    done = await wait_callback(stack, cid, status="completed")
    [attempt] = done["attempts"]
    assert attempt["outcome"] == "answered" and done["end_reason"] == "answered"
    calls = (await stack.livekit.control("GET", "sip/calls"))["calls"]
    mine = [c for c in calls if c["number"] == to]
    assert [(c["direction"], c["outcome"]) for c in mine] == [("outbound", "answer")]
    assert mine[0]["room"] == f"call-{attempt['call_id']}"
    call = await wait_call(stack, attempt["call_id"], status="in_progress")
    assert (call["channel"], call["direction"]) == ("phone", "outbound")
    # The call knows which callback placed it (asked for outside a call: no earlier call)...
    assert call["links"]["callback_of"] == {"call_id": None, "callback_id": cid}
    # ...and its agent opens with the callback's reason.
    s = stack.settings
    token = room_admin_token(s.LIVEKIT_API_KEY.get_secret_value(),
                             s.LIVEKIT_API_SECRET.get_secret_value(),
                             room=mine[0]["room"], identity="agent-test")()  # fmt: skip
    r = await stack.api.http("POST", f"/internal/calls/{attempt['call_id']}/opening",
                             token=token, json_body={})  # fmt: skip
    assert r.status == 200 and r.body["opening"]["reason"] == "the Silverado test drive", r.body
    await stack.api.http("POST", f"/api/calls/{attempt['call_id']}/end", token=ADMIN)


async def test_a_busy_number_is_dialled_again(phone_line: ApiStack) -> None:  # noqa: F811
    stack = phone_line
    to = number()
    await stack.livekit.control("PUT", f"sip/outcomes/{to}", {"outcome": "busy", "ring_s": 0.2})
    cid = await schedule(stack, to)
    deadline = time.monotonic() + 60
    while True:
        body = await wait_callback(stack, cid)
        if body["attempts"] and body["attempts"][0]["outcome"]:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)
    assert body["attempts"][0]["outcome"] == "busy"
    await stack.livekit.control("PUT", f"sip/outcomes/{to}", {"outcome": "answer", "ring_s": 0.2})
    done = await wait_callback(stack, cid, status="completed")
    assert [a["outcome"] for a in done["attempts"]][-1] == "answered"
    assert done["attempts"][0]["outcome"] == "busy" and len(done["attempts"]) >= 2
    calls = (await stack.livekit.control("GET", "sip/calls"))["calls"]
    assert [c["outcome"] for c in calls if c["number"] == to][0] == "busy"
    await stack.api.http("POST", f"/api/calls/{done['attempts'][-1]['call_id']}/end", token=ADMIN)
