"""Duplicate and out-of-order signals, continue-as-new with thousands of lines, long calls."""

from __future__ import annotations

import asyncio
import time

from activities import types as act
from core import models as m
from testkit.harness import AGENT, Harness, continued_as_new_input_sizes
from testkit.standins import egress_file, until
from workflows.call import CallWorkflow

S = m.CallStatus
R = m.RecordingStatus


async def test_duplicate_signals_change_nothing(harness: Harness) -> None:
    h, f = harness, harness.fakes
    handle, _ = await h.start(keywords=["manager"])
    call_id = handle.id.removeprefix("call-")
    joined = m.AgentJoined("aj-1", AGENT)
    await handle.signal(CallWorkflow.agent_joined, joined)
    line = m.TranscriptLine("l-1", "assistant", "Hello, this call is recorded.")
    customer = m.TranscriptLine("l-2", "customer", "Get me a manager")
    for sig in (line, line, customer, customer):
        await handle.signal(CallWorkflow.transcript, sig)
    await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch("b-1", [line, customer]))
    await handle.signal(CallWorkflow.agent_joined, joined)
    await until(lambda: f.count(act.START_EGRESS) == 1)
    left = m.ParticipantLeft("pl-1", m.customer_identity(call_id), "customer")
    await handle.signal(CallWorkflow.participant_left, left)
    await handle.signal(CallWorkflow.participant_left, left)
    await until(lambda: f.count(act.STOP_EGRESS) == 1)
    ended = m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id))
    await handle.signal(CallWorkflow.egress_ended, ended)
    await handle.signal(CallWorkflow.egress_ended, ended)
    result = await handle.result()

    assert result.line_count == 2 and result.recording_status == R.UPLOADING
    state = await handle.query(CallWorkflow.get_state)
    assert state.keyword_alerts == 1
    assert [p.identity for p in state.participants] == [AGENT]
    assert f.count(act.DOWNLOAD_AND_STORE_RECORDING) == 1
    assert f.of_kind("final_transcript") == []  # the API stores lines, not the workflow
    assert sorted(f.events) == list(range(1, len(f.events) + 1))


async def test_out_of_order_signals(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.egress_gate = asyncio.Event()
    handle, _ = await h.start()
    call_id = handle.id.removeprefix("call-")
    # The agent's greeting arrives before anyone said it joined: the agent is evidently in.
    await h.say(handle, "assistant", "Hi! This call is recorded.")
    state = await until(lambda: f.count(act.START_EGRESS) == 1) and await handle.query(
        CallWorkflow.get_state
    )
    assert state.status == S.IN_PROGRESS and state.agent_joined_at
    joined_at = state.agent_joined_at
    # Both join reports come later: the webhook's names the agent; neither changes the time.
    await handle.signal(
        CallWorkflow.participant_joined, m.ParticipantJoined("wh-1", AGENT, "agent")
    )
    await handle.signal(CallWorkflow.agent_joined, m.AgentJoined("aj-1", "someone-else"))
    # Egress reports before start_egress has even returned.
    await handle.signal(
        CallWorkflow.egress_updated, m.EgressUpdate("eu-1", "EG_1", "EGRESS_ACTIVE")
    )
    f.egress_gate.set()
    await h.env.sleep(1)
    state = await handle.query(CallWorkflow.get_state)
    assert state.agent_joined_at == joined_at and state.agent_identity == AGENT
    assert state.egress and state.egress.status == "EGRESS_ACTIVE"
    # The end (with its file) before the "active" update that LiveKit sent earlier.
    await h.customer_leaves(handle)
    await until(lambda: f.count(act.STOP_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee-1", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    await handle.signal(
        CallWorkflow.egress_updated, m.EgressUpdate("eu-0", "EG_1", "EGRESS_ACTIVE")
    )
    result = await handle.result()
    assert result.recording_status == R.UPLOADING  # (the pipeline reports stored itself)
    state = await handle.query(CallWorkflow.get_state)
    assert state.egress and state.egress.status == "EGRESS_COMPLETE"
    assert f.count(act.GET_EGRESS) == 0


async def test_continue_as_new_counts_every_line_and_carries_a_few_kilobytes(
    dev_harness: Harness,
) -> None:
    """3,000 lines over many runs: each counted once, the recent window intact and in order,
    and every carry a few kilobytes (lines live in PostgreSQL, not in the workflow)."""
    h, f = dev_harness, dev_harness.fakes
    n_lines = 3000
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=200)
    await h.agent_joins(handle)
    ids = [f"line-{i}" for i in range(n_lines)]
    speakers = ["customer", "assistant"]
    # Half as single signals (sent concurrently, 10 at a time), half in batches of 10.
    for start in range(0, n_lines // 2, 10):
        await asyncio.gather(
            *(
                handle.signal(
                    CallWorkflow.transcript, m.TranscriptLine(ids[i], speakers[i % 2], f"text {i}")
                )
                for i in range(start, start + 10)
            )
        )
    for start in range(n_lines // 2, n_lines, 10):
        batch = [
            m.TranscriptLine(ids[i], speakers[i % 2], f"text {i}") for i in range(start, start + 10)
        ]
        await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch(f"b-{start}", batch))
    # A resend of a line in the window changes nothing.
    await handle.signal(CallWorkflow.transcript, m.TranscriptLine(ids[-1], "assistant", "dup"))

    state = await settled(h, handle, n_lines)
    assert state.runs >= 2, "the call should have continued as new"
    assert state.agent_identity == AGENT
    page = await h.query(handle, CallWorkflow.get_transcript, 0)
    assert page.truncated and not page.more
    assert [e.id for e in page.lines] == ids[-len(page.lines) :]
    assert [e.seq for e in page.lines] == list(range(n_lines - len(page.lines) + 1, n_lines + 1))
    assert page.lines[-1].text == f"text {n_lines - 1}"

    await h.customer_leaves(handle)
    result = await handle.result()
    assert result.line_count == n_lines
    assert sorted(f.events) == list(range(1, len(f.events) + 1))
    assert f.of_kind("final_transcript") == []
    sizes = await continued_as_new_input_sizes(h, handle)
    assert sizes and max(sizes) < 8 * 1024, sizes


async def test_a_long_line_survives_continue_as_new_whole_in_the_window(
    dev_harness: Harness,
) -> None:
    """A line over a thousand characters comes back from a continue-as-new with its text (a
    replacement agent resumes from the window); a line longer than the whole window is cut
    there, never emptied (PostgreSQL has it whole)."""
    h = dev_harness
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=30)
    await h.agent_joins(handle)
    long = "I can explain the warranty in detail. " * 40  # 1,520 characters
    await handle.signal(CallWorkflow.transcript, m.TranscriptLine("long-1", "assistant", long))
    await run_past(h, handle, runs=2)
    page = await h.query(handle, CallWorkflow.get_transcript, 0)
    assert [(e.id, e.text) for e in page.lines] == [("long-1", long)]

    huge = "x" * 9000
    await handle.signal(CallWorkflow.transcript, m.TranscriptLine("huge-1", "customer", huge))
    await run_past(h, handle, runs=3)
    page = await h.query(handle, CallWorkflow.get_transcript, 0)
    assert [e.id for e in page.lines] == ["huge-1"] and page.truncated
    assert page.lines[0].text == "x" * 3000 + "…"
    assert (await h.query(handle, CallWorkflow.get_state)).line_count == 2


async def run_past(h: Harness, handle, runs: int) -> None:
    """Signals (silence reports: no line) until the call has continued as new into `runs`."""
    i = 0
    while (await h.query(handle, CallWorkflow.get_state)).runs < runs:
        await handle.signal(CallWorkflow.silence, m.SilenceSignal(f"s{runs}-{i}", "customer", 1))
        i += 1


async def settled(h: Harness, handle, n_lines: int) -> m.CallState:
    """The call's state once every line is in and a pending continue-as-new has happened
    (under a burst of signals the server refuses it until the burst is over)."""
    last = None
    for _ in range(100):
        state = await h.query(handle, CallWorkflow.get_state)
        if state.line_count == n_lines and last is not None and state.runs == last.runs:
            return state
        last = state
        await asyncio.sleep(0.3)
    raise AssertionError(f"call did not settle: {last}")


async def test_hours_of_simulated_time_run_in_seconds(harness: Harness) -> None:
    h, f = harness, harness.fakes
    f.stop_reports = "EGRESS_COMPLETE"
    began = time.monotonic()
    handle, _ = await h.start(max_duration_s=2 * 3600, silence_alert_s=30)
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hello, this call is recorded.")
    for minute in range(110):  # a line every 20 s for the best part of two hours ...
        for _ in range(3):
            await h.say(handle, "customer", f"still talking, minute {minute}")
            await h.env.sleep(20)
    result = await handle.result()  # ... then the max-duration timer ends it
    elapsed = time.monotonic() - began
    assert result.status == S.COMPLETED and result.end_reason == "max_duration"
    assert result.line_count == 331
    state = await handle.query(CallWorkflow.get_state)
    assert state.silence_alerts == 1  # only the last ten quiet minutes
    assert elapsed < 60, f"two simulated hours took {elapsed:.1f}s"
