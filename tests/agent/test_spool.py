"""Nothing is lost from the bridge: what a job could not deliver is spooled and sent by the
next job; a full queue makes room for a line by dropping a silence report, never a line."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from agent.bridge import CallBridge
from agent.signals import SignalQueue
from agent.spool import Spool
from core.models import (
    SIGNAL_SILENCE,
    SIGNAL_TRANSCRIPT,
    SilenceSignal,
    TranscriptLine,
    customer_identity,
)
from testkit.standins import StandIns
from tests.agent.test_bridge import live_call  # noqa: F401 - the fixture
from workflows.call import CallWorkflow


async def unreachable() -> Client:
    raise ConnectionRefusedError("temporal is down")


async def test_undelivered_lines_are_spooled_and_sent_by_the_next_job(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],  # noqa: F811
    temporal_dev_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    call_id, handle, _ = live_call
    queue = SignalQueue(handle.id, unreachable, call_id=call_id, backoff_initial_s=0.05)
    queue.start()
    bridge = CallBridge(
        call_id=call_id, customer_identity=customer_identity(call_id), signals=queue
    )
    bridge.agent_joined("agent-1")
    for i, text in enumerate(["Do you have trucks?", "Under 40 thousand.", "Thanks!"]):
        bridge.send(SIGNAL_TRANSCRIPT, TranscriptLine(id=f"l{i}", speaker="customer", text=text))
    spool = Spool(tmp_path / "spool")
    assert not await bridge.aclose(0.3, spool)  # the job ends with Temporal down
    (saved,) = list((tmp_path / "spool").glob("*.json"))
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # customer words at rest: owner only

    # the next job, with Temporal back: everything arrives once, in order
    assert await Spool(tmp_path / "spool").resend(temporal_dev_env.client) == 4
    assert await Spool(tmp_path / "spool").resend(temporal_dev_env.client) == 0  # claimed once
    for _ in range(50):
        page = await handle.query(CallWorkflow.get_transcript, 0)
        if len(page.lines) == 3:
            break
        await asyncio.sleep(0.1)
    assert [e.text for e in page.lines] == ["Do you have trucks?", "Under 40 thousand.", "Thanks!"]
    assert list((tmp_path / "spool").iterdir()) == []


async def test_a_full_queue_drops_a_silence_report_before_a_line() -> None:
    queue = SignalQueue("call-x", unreachable, max_pending=10)
    for i in range(9):
        queue.send(SIGNAL_TRANSCRIPT, TranscriptLine(id=f"l{i}", speaker="customer", text="hi"))
    queue.send(SIGNAL_SILENCE, SilenceSignal(id="s1", speaker="customer", duration_s=30))
    queue.send(SIGNAL_TRANSCRIPT, TranscriptLine(id="l9", speaker="customer", text="still here"))
    names = [n for n, _ in queue.undelivered()]
    assert names == [SIGNAL_TRANSCRIPT] * 10 and queue.dropped == 1  # the line got in
    queue.send(SIGNAL_SILENCE, SilenceSignal(id="s2", speaker="customer", duration_s=30))
    assert queue.pending == 10 and queue.dropped == 2  # a silence report never evicts a line


async def test_a_replacement_reads_the_conversation_from_the_workflow(
    live_call: tuple[str, WorkflowHandle[Any, Any], StandIns],  # noqa: F811
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    from agent.resume import chat_context, conversation_so_far

    call_id, handle, _ = live_call
    said = [("assistant", "Hello! Welcome to CME Auto Sales."), ("customer", "A Camry, please.")]
    for i, (speaker, text) in enumerate(said):
        await handle.signal(
            SIGNAL_TRANSCRIPT, TranscriptLine(id=f"r{i}", speaker=speaker, text=text)
        )
    for _ in range(50):
        lines = await conversation_so_far(temporal_dev_env.client, call_id)
        if len(lines) == 2:
            break
        await asyncio.sleep(0.1)
    assert [(e.speaker, e.text) for e in lines] == said
    ctx = chat_context(lines)
    assert [(m.role, m.text_content) for m in ctx.items] == [
        ("assistant", said[0][1]),
        ("user", said[1][1]),
    ]
