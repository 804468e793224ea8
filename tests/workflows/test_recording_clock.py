"""The recording's time zero: LiveKit's own egress start (EgressInfo.started_at, carried by the
first egress report that has it) goes into the event log once, so the dashboard can play the
transcript against the audio on one clock."""

from __future__ import annotations

from activities import types as act
from core import models as m
from testkit.harness import Harness
from testkit.standins import egress_file, until
from workflows.call import CallWorkflow

STARTED = "2026-01-02T03:04:05.678000+00:00"


async def test_livekit_egress_start_is_logged_once(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start()
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi! This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await until(lambda: any(e.data.get("status") == "recording" for e in f.of_kind("recording")))
    # STARTING at start_egress (no start time yet), then ACTIVE with it, then again (resent).
    for sid in ("eu-1", "eu-2"):
        await handle.signal(
            CallWorkflow.egress_updated,
            m.EgressUpdate(sid, "EG_1", "EGRESS_ACTIVE", started_at=STARTED),
        )
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.STOP_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id),
                       started_at=STARTED),
    )  # fmt: skip
    await handle.result()

    clocks = [e.data for e in f.of_kind("recording") if e.data.get("started_at")]
    assert clocks == [{"egress_id": "EG_1", "started_at": STARTED}]
    state = await handle.query(CallWorkflow.get_state)
    assert state.egress and state.egress.started_at == STARTED
