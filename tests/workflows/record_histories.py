"""Append a release's histories of real runs to the corpus in tests/histories/ (replay tests).

    uv run python -m tests.workflows.record_histories RELEASE [SCENARIO ...]
    # writes tests/histories/<RELEASE>/<scenario>.<n>.json

Runs each scenario on the time-skipping test server with the stand-in activities and saves every
run's history (each run of a call that continued as new, each run of a recording) as
`<scenario>.<n>.json`. The corpus only grows: a file that exists is never overwritten (the
command refuses), so the histories of every release stay. The auto-upgrade workflows
(RecordingWorkflow, ...) must replay them all (guard a change with `workflow.patched`);
CallWorkflow is pinned and replays only the corpora listed in tests/histories/CALL_WORKFLOW_CORPORA
(test_replay.py). The files at the top of tests/histories/ are release 1. The `analysis_*`
scenarios record AnalysisWorkflow and its WebhookWorkflows, the `callback_*` ones
CallbackWorkflow, the `campaign_*` ones CampaignWorkflow, the `desk_*` ones DeskWorkflow
(auto-upgrade: every corpus; the desk never ends, so its history is recorded while it still
runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import core.desk as d
from activities import types as act
from core import callbacks as cb
from core import campaigns as cp
from core import models as m
from testkit.callbacks import CallbackStandIns
from testkit.campaigns import CampaignStandIns
from testkit.harness import AGENT, Harness, running_harness
from testkit.standins import StandIns, egress_file, until
from testkit.temporal import start_time_skipping
from workflows.analysis import (
    AnalysisWorkflow,
    WebhookWorkflow,
    analysis_workflow_id,
    rerun_analysis,
    webhook_workflow_id,
)
from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.client import give_up_recording, retry_recording
from workflows.desk import DeskWorkflow
from workflows.desk_client import DeskClient

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


async def recorded_call(h: Harness, **config: object) -> tuple[WorkflowHandle, str]:
    """A call that greets (the recording starts) and ends when the customer leaves; its
    handle and id, the call completed."""
    handle, _ = await h.start(**config)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await handle.result()
    return handle, call_id


async def recording_fails_then_ops_retry(h: Harness) -> list[Run]:
    h.fakes.download_failures = 10**6
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, call_id = await recorded_call(h, recording_retry_for_s=600)
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


# --- release 2 ------------------------------------------------------------------------------


def runs_of(handle: WorkflowHandle, call_id: str, recording: bool = True) -> list[Run]:
    out: list[Run] = [(handle.id, handle.first_execution_run_id)]
    return out + ([(m.recording_workflow_id(call_id), None)] if recording else [])


async def recording_done(h: Harness, call_id: str) -> None:
    with contextlib.suppress(WorkflowFailureError):
        await h.client.get_workflow_handle(m.recording_workflow_id(call_id)).result()


async def end_wins_over_continue_as_new(h: Harness) -> list[Run]:
    h.fakes.egress_gate, h.fakes.stop_reports = asyncio.Event(), "EGRESS_COMPLETE"
    handle, _ = await h.start(continue_as_new_after_events=40)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    for i in range(30):
        await h.say(handle, "customer", f"line {i}")
    end = await handle.start_update(
        CallWorkflow.end_call,
        m.EndCallRequest("wrap up", "supervisor"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    await h.customer_leaves(handle)
    h.fakes.egress_gate.set()
    await end.result()
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def egress_ended_during_stop(h: Harness) -> list[Run]:
    h.fakes.stop_gate = asyncio.Event()
    handle, _ = await h.start()
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await until(lambda: h.fakes.count(act.STOP_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id)),
    )
    await asyncio.sleep(0.3)
    h.fakes.stop_gate.set()
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def segments_after_mid_call_failure(h: Harness) -> list[Run]:
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(egress_retry_delay_s=5)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_updated,
        m.EgressUpdate("eu", "EG_1", "EGRESS_FAILED", "crashed", egress_file(call_id, 12, 96_000)),
    )
    await until(lambda: h.fakes.count(act.START_EGRESS) == 2)
    await h.customer_leaves(handle)
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def consent_withdrawn(h: Harness) -> list[Run]:
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start(recording_consent="ask")
    await h.agent_joins(handle)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c1", True))
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await handle.signal(CallWorkflow.recording_consent, m.RecordingConsentSignal("c2", False))
    await until(lambda: h.fakes.count(act.STOP_EGRESS) == 1)
    await h.customer_leaves(handle)
    await handle.result()
    return runs_of(handle, "", recording=False)


async def lost_egress_found_in_staging(h: Harness) -> list[Run]:
    h.fakes.stop_reports, h.fakes.get_reports = "EGRESS_ENDING", "UNKNOWN"
    handle, _ = await h.start(egress_end_timeout_s=60)
    call_id = handle.id.removeprefix("call-")
    h.fakes.staged[m.recording_object_key(call_id, 1)] = 4321
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.customer_leaves(handle)
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def livekit_down_across_the_hang_up(h: Harness) -> list[Run]:
    """No `egress_ended`, and LiveKit's API down for every ask: the file is looked for in
    staging, not there, so the pipeline starts on the key and waits for ops; they retry once it
    is there."""
    h.fakes.stop_reports, h.fakes.get_failures = "EGRESS_ENDING", 10_000
    handle, call_id = await recorded_call(h, egress_end_timeout_s=60)
    rec = await h.waiting_for_ops(call_id)
    h.fakes.staged[m.recording_object_key(call_id, 1)] = 4321
    await rec.execute_update(
        m.UPDATE_RECORDING_RETRY, m.RecordingOpsRequest(by="ops-1", reason="it is there now")
    )
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def egress_clock_and_poll_retries(h: Harness) -> list[Run]:
    """LiveKit's own egress start (the playback clock), then no `egress_ended`: the workflow asks
    LiveKit, which is unreachable for one activity's retries (patched branches
    `egress-clock-event` and `egress-poll-retries`), then answers with the file."""
    f = h.fakes
    f.stop_reports, f.get_reports, f.get_failures = "EGRESS_ENDING", "EGRESS_COMPLETE", 5
    handle, _ = await h.start(egress_end_timeout_s=60)
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "This call is recorded.")
    await until(lambda: f.count(act.START_EGRESS) == 1)
    await handle.signal(
        CallWorkflow.egress_updated,
        m.EgressUpdate("eu-clock", "EG_1", "EGRESS_ACTIVE", started_at="2026-11-29T21:00:00+00:00"),
    )
    await h.customer_leaves(handle)
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def _waiting_for_ops(h: Harness) -> tuple[WorkflowHandle, str]:
    h.fakes.download_failures, h.fakes.stop_reports = 10**6, "EGRESS_COMPLETE"
    handle, call_id = await recorded_call(h, recording_retry_for_s=2)
    await h.waiting_for_ops(call_id)
    return handle, call_id


async def recording_waits_for_ops_then_retry(h: Harness) -> list[Run]:
    handle, call_id = await _waiting_for_ops(h)
    h.fakes.download_failures = 0
    await retry_recording(h.client, call_id, by="ops")
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def recording_given_up(h: Harness) -> list[Run]:
    handle, call_id = await _waiting_for_ops(h)
    await give_up_recording(h.client, call_id, by="ops", reason="gone")
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def busy_signals_continue_as_new(h: Harness) -> list[Run]:
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=80)
    await h.agent_joins(handle)
    sends = []
    for i in range(120):
        sends.append(h.say(handle, "customer" if i % 2 else "assistant", f"busy line {i} " * 20))
        if i % 7 == 0:
            sends.append(handle.signal(CallWorkflow.agent_metrics, m.AgentMetrics(f"am{i}", 0.2)))
            sends.append(handle.signal(CallWorkflow.silence, m.SilenceSignal(f"s{i}", "c", 31)))
    await asyncio.gather(*sends)
    await h.customer_leaves(handle)
    await handle.result()
    return runs_of(handle, "", recording=False)


async def database_down_long_call(h: Harness) -> list[Run]:
    h.fakes.append_failures = 4  # PostgreSQL down for 4 attempts (the server retries)
    handle, _ = await h.start(recording_consent="off", continue_as_new_after_events=30)
    await h.agent_joins(handle)
    for i in range(0, 60, 10):
        lines = [m.TranscriptLine(f"d{j}", "customer", "x" * 400) for j in range(i, i + 10)]
        await handle.signal(CallWorkflow.transcript_batch, m.TranscriptBatch(f"db{i}", lines))
    await until(lambda: h.fakes.event_writes >= 1, 120)  # PostgreSQL is back
    for j in range(20):
        await h.say(handle, "customer", f"after {j}")
    await h.customer_leaves(handle)
    await handle.result()
    return runs_of(handle, "", recording=False)


async def dispatch_into_a_room_gone(h: Harness) -> list[Run]:
    """Dispatches refused `RoomGone` (patch `dispatch-room-gone`): a call still waiting for its
    agent, then one whose agent left mid-call; each ends `room_finished` at the first refusal."""
    h.fakes.dispatch_error = act.ERR_ROOM_GONE
    waiting, _ = await h.start(agent_redispatch_after_s=10)
    await waiting.result()
    handle, _ = await h.start(recording_consent="off", agent_redispatch_after_s=10)
    call_id = handle.id.removeprefix("call-")
    await handle.signal(
        CallWorkflow.participant_joined,
        m.ParticipantJoined("pj1", m.customer_identity(call_id), "customer"),
    )
    await h.agent_joins(handle)
    await h.say(handle, "customer", "Thanks, bye.")
    await handle.signal(CallWorkflow.participant_left, m.ParticipantLeft("al1", AGENT, "agent"))
    await handle.result()
    return runs_of(waiting, "", recording=False) + runs_of(handle, "", recording=False)


# --- release 4 ------------------------------------------------------------------------------


async def _uploading(h: Harness) -> tuple[WorkflowHandle, str]:
    """A call over, its recording's upload in flight (held until cancelled)."""
    h.fakes.upload_gate, h.fakes.stop_reports = asyncio.Event(), "EGRESS_COMPLETE"
    handle, call_id = await recorded_call(h)
    await until(lambda: h.fakes.count(act.DOWNLOAD_AND_STORE_RECORDING) == 1, 30)
    return handle, call_id


async def _erased(h: Harness, handle: WorkflowHandle, call_id: str) -> list[Run]:
    """Cancel the call's pipeline as erasure does, and wait until it has ended."""
    rec = h.client.get_workflow_handle(m.recording_workflow_id(call_id))
    await rec.cancel(reason="erasure requested by admin")
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def recording_erased_while_uploading(h: Harness) -> list[Run]:
    """Erasure cancels the pipeline mid-upload: it waits for the upload to stop, reports, ends."""
    return await _erased(h, *await _uploading(h))


async def recording_erased_while_waiting_for_ops(h: Harness) -> list[Run]:
    """Erasure cancels a pipeline out of retries that waits for ops."""
    return await _erased(h, *await _waiting_for_ops(h))


async def room_finished_mid_call(h: Harness) -> list[Run]:
    """LiveKit's `room_finished` while the call is on (its `participant_left` lost): the call
    ends `room_finished` and the recording is stored."""
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle, _ = await h.start()
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "Hi, I'm Sarah. This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.say(handle, "customer", "My line is breaking up.")
    await handle.signal(CallWorkflow.room_finished, m.RoomFinished("rf-1"))
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


# --- after the call (AnalysisWorkflow, WebhookWorkflow: auto-upgrade) -------------------------


class AnalysisStandIns:
    """The analysis activities under their real names: labels in, labels out (the real ones
    read PostgreSQL and ask a model: tests/activities/test_analysis.py)."""

    def __init__(self, analyze_fails: bool = False, delivery_failures: int = 0) -> None:
        self.analyze_fails, self.delivery_failures = analyze_fails, delivery_failures

    def activities(self) -> list[Callable[..., Awaitable[object]]]:
        return [self.analyze_call, self.record_analysis_failed, self.queue_webhook,
                self.deliver_webhook]  # fmt: skip

    @activity.defn(name=act.ANALYZE_CALL)
    async def analyze_call(self, req: act.AnalysisRequest) -> act.AnalysisDone:
        if self.analyze_fails:
            raise ApplicationError("invalid analysis: summary: fails minLength",
                                   type="AnalysisOutputInvalid")  # fmt: skip
        return act.AnalysisDone(req.call_id, "done", "local", "follow_up", "neutral", 0.75)

    @activity.defn(name=act.RECORD_ANALYSIS_FAILED)
    async def record_analysis_failed(self, failed: act.AnalysisFailed) -> None:
        return None

    @activity.defn(name=act.QUEUE_WEBHOOK)
    async def queue_webhook(self, req: act.WebhookRequest) -> str:
        return f"msg_{req.call_id}_{req.event_type.replace('.', '_')}_{req.run}"

    @activity.defn(name=act.DELIVER_WEBHOOK)
    async def deliver_webhook(self, msg_id: str) -> int:
        if self.delivery_failures > 0:
            self.delivery_failures -= 1
            raise ApplicationError(f"webhook {msg_id}: HTTP 503", type="WebhookDeliveryFailed")
        return 200


async def _analyses(h: Harness, stand_ins: AnalysisStandIns, runs: int) -> list[Run]:
    """`runs` runs of analysis-<id> (run 2 on is ops' rerun), and every delivery they made."""
    call_id = m.new_call_id()
    queue = f"analysis-{call_id[:8]}"
    out: list[Run] = []
    async with Worker(h.client, task_queue=queue, workflows=[AnalysisWorkflow, WebhookWorkflow],
                      activities=stand_ins.activities()):  # fmt: skip
        handle = await h.client.start_workflow(
            AnalysisWorkflow.run, args=[act.AnalysisRequest(call_id), 10.0, 600.0],
            id=analysis_workflow_id(call_id), task_queue=queue,
        )  # fmt: skip
        await handle.result()
        out.append((handle.id, handle.result_run_id))
        for run in range(2, runs + 1):
            run_id = await rerun_analysis(h.client, call_id, run, task_queue=queue,
                                          webhook_for_s=600.0)  # fmt: skip
            await h.client.get_workflow_handle(handle.id, run_id=run_id).result()
            out.append((handle.id, run_id))
    if not stand_ins.analyze_fails:
        for run in range(1, runs + 1):
            events = [act.EVENT_ENDED] if run == 1 else []
            for event in [*events, act.EVENT_ANALYZED]:
                msg = f"msg_{call_id}_{event.replace('.', '_')}_{run}"
                out.append((webhook_workflow_id(msg), None))
    return out


async def analysis_delivered_after_a_retry_then_rerun(h: Harness) -> list[Run]:
    """The call analysed, its two webhooks delivered (one after a 503), then ops' rerun."""
    return await _analyses(h, AnalysisStandIns(delivery_failures=1), runs=2)


async def analysis_failed(h: Harness) -> list[Run]:
    """A model that keeps answering nonsense: retried, then recorded failed; no call.analyzed."""
    return await _analyses(h, AnalysisStandIns(analyze_fails=True), runs=1)


async def phone_inbound_webhook_lost(h: Harness) -> list[Run]:
    """An inbound phone call started by the agent's job (the caller's webhook lost), recorded,
    ended by the caller hanging up (no rejoin grace)."""
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle = await h.start_phone(room_name="phone_0001_HiStOrY12345")
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(handle, "assistant", "CME Auto Sales, Sarah speaking. This call is recorded.")
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await h.say(handle, "customer", "Do you have the Camry in blue?")
    await handle.signal(
        CallWorkflow.participant_left, m.ParticipantLeft("pl", "sip_ab", "customer")
    )
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


async def phone_outbound_busy(h: Harness) -> list[Run]:
    """An outbound call whose phone is busy: dialing, then the end at once (no recording)."""
    h.fakes.dial_outcome = "busy"
    handle = await h.start_phone(dial=m.DialRequest("+15551230001", "follow-up"))
    await handle.result()
    return [(handle.id, handle.first_execution_run_id)]


async def phone_outbound_transferred(h: Harness) -> list[Run]:
    """An outbound call answered, talked, then cold-transferred by a supervisor."""
    h.fakes.stop_reports = "EGRESS_COMPLETE"
    handle = await h.start_phone(dial=m.DialRequest("+15551230001", "follow-up"))
    call_id = handle.id.removeprefix("call-")
    await until(lambda: h.fakes.count(act.DIAL_OUTBOUND) == 1)
    await h.agent_joins(handle)
    await h.say(
        handle, "assistant", "Hi, this is Sarah from CME Auto Sales. This call is recorded."
    )
    await until(lambda: h.fakes.count(act.START_EGRESS) == 1)
    await handle.execute_update(m.UPDATE_TRANSFER, m.TransferRequest("tel:+15559990000", "sup"),
                                result_type=m.EndCallResult)  # fmt: skip
    await handle.result()
    await recording_done(h, call_id)
    return runs_of(handle, call_id)


# --- callbacks (CallbackWorkflow: auto-upgrade) ------------------------------------------------


async def _callback(h: Harness, outcomes: list[str], act_on: str = "") -> list[Run]:
    """A callback 30 hours out (Chicago's window), the far end scripted; `act_on`: reschedule
    then cancel while it sleeps, or a do-not-call entry before it is due."""
    fakes = CallbackStandIns(h.client, outcomes=outcomes)
    queue = f"callbacks-{m.new_call_id()[:8]}"
    callback_id = "cb" + m.new_call_id()
    now = await h.env.get_current_time()
    req = cb.CallbackRequest(callback_id, "+13125550142", (now + timedelta(hours=30)).timestamp(),
                             "America/Chicago", reason="Silverado test drive", retry_s=1800)  # fmt: skip
    async with Worker(h.client, task_queue=queue, workflows=[CallbackWorkflow],
                      activities=fakes.activities()):  # fmt: skip
        handle = await h.client.start_workflow(CallbackWorkflow.run, req,
                                               id=cb.callback_workflow_id(callback_id),
                                               task_queue=queue)  # fmt: skip
        if act_on == "reschedule_then_cancel":
            later = (now + timedelta(days=3)).timestamp()
            await handle.execute_update(CallbackWorkflow.reschedule,
                                        cb.Reschedule(later, "Europe/Berlin", "sup"))  # fmt: skip
            await handle.execute_update(CallbackWorkflow.cancel, cb.CancelCallback("sup"))
        elif act_on == "do_not_call":
            fakes.dnc.add(req.phone)
        await handle.result()
    return [(handle.id, None)]


async def callback_busy_then_answered(h: Harness) -> list[Run]:
    return await _callback(h, ["busy", "answered"])


async def callback_three_no_answers(h: Harness) -> list[Run]:
    return await _callback(h, ["no_answer"] * 3)


async def callback_rescheduled_then_cancelled(h: Harness) -> list[Run]:
    return await _callback(h, [], "reschedule_then_cancel")


async def callback_do_not_call(h: Harness) -> list[Run]:
    return await _callback(h, [], "do_not_call")


# --- campaigns (CampaignWorkflow: auto-upgrade) ----------------------------------------------


async def _campaign(h: Harness, act_on: str = "") -> list[Run]:
    """30 numbers, 3 at a time, in Chicago's window (closed when it starts: it waits), one on
    the do-not-call list, the first start held back, continued as new every ~60 events;
    `act_on`: paused, resumed and cancelled while it waits for `start_at`."""
    phones = [f"+1555{i:07d}" for i in range(30)]
    fakes = CampaignStandIns(h.client, phones, outcome=lambda s: ("answered", "busy", "no_answer")[s % 3],
                             dnc={phones[4]}, held_back=1)  # fmt: skip
    queue = f"campaigns-{m.new_call_id()[:8]}"
    campaign_id = "cp" + m.new_call_id()
    now = await h.env.get_current_time()
    start_at = (now + timedelta(hours=2)).timestamp() if act_on else 0.0
    req = cp.CampaignRequest(campaign_id, "America/Chicago", len(phones), max_concurrent=3,
                             batch_size=7, max_events=60, start_at=start_at, reason="service")  # fmt: skip
    async with Worker(h.client, task_queue=queue, workflows=[CampaignWorkflow],
                      activities=fakes.activities()):  # fmt: skip
        handle = await h.client.start_workflow(CampaignWorkflow.run, req,
                                               id=cp.campaign_workflow_id(campaign_id),
                                               task_queue=queue)  # fmt: skip
        if act_on == "pause_resume_cancel":
            await handle.signal(CampaignWorkflow.pause)
            await handle.signal(CampaignWorkflow.resume)
            await handle.signal(CampaignWorkflow.cancel)
        await handle.result()
    return [(handle.id, handle.first_execution_run_id)]


async def campaign_window_dnc_continue_as_new(h: Harness) -> list[Run]:
    return await _campaign(h)


async def campaign_paused_resumed_cancelled(h: Harness) -> list[Run]:
    return await _campaign(h, "pause_resume_cancel")


# --- the desk (DeskWorkflow: auto-upgrade, long-lived) --------------------------------------------


async def _desk(h: Harness, steps: Callable[[DeskClient, Harness], Awaitable[None]],
                events: int = 4000) -> list[Run]:  # fmt: skip
    """A desk of its own (its own id and queue) and `steps` played on it through the client
    the API uses; `events`: continue as new after this many history events."""
    queue = f"desk-{m.new_call_id()[:8]}"
    fakes = StandIns()
    cfg = d.DeskConfig(offer_timeout_s=20, wrap_up_s=30, max_wait_s=300,
                       continue_as_new_after_events=events)  # fmt: skip
    client = DeskClient(h.client, cfg, queue, workflow_id=queue)
    async with Worker(h.client, task_queue=queue, workflows=[DeskWorkflow],
                      activities=[fakes.tell_caller]):  # fmt: skip
        first = await h.client.start_workflow(DeskWorkflow.run, d.DeskInput(cfg), id=queue,
                                              task_queue=queue)  # fmt: skip
        await steps(client, h)
        await _desk_settled(client)
    return [(queue, first.result_run_id)]  # the first run: save_runs follows continue-as-new


async def _desk_settled(client: DeskClient) -> None:
    """The desk's last task done (a query is answered after it), so the history ends settled."""
    await client.snapshot()
    await asyncio.sleep(0.5)
    await client.snapshot()


async def _offer_of(client: DeskClient, rep_id: str) -> d.Offer:
    for _ in range(600):
        offer = next((o for o in (await client.snapshot()).offers if o.rep_id == rep_id), None)
        if offer is not None:
            return offer
        await asyncio.sleep(0.05)
    raise AssertionError(f"no offer to {rep_id}")


async def _rang_out_declined_answered_wrapped(client: DeskClient, h: Harness) -> None:
    await client.set_rep(d.SetRep("ann", "Ann", "available", ["general"]))
    await h.env.sleep(5)
    await client.set_rep(d.SetRep("bob", "Bob", "available", ["general", "sales"]))
    await client.enqueue(d.Enqueue("e1", "call1", "general", "wants a person"))
    await _offer_of(client, "ann")
    await h.env.sleep(21)  # ann's offer rings out: ann away, bob gets it
    offer = await _offer_of(client, "bob")
    await client.answer(d.AnswerOffer("bob", offer.id, False))  # declined: back to the queue
    await client.set_rep(d.SetRep("ann", "Ann", "available", ["general"]))
    offer = await _offer_of(client, "ann")
    await client.answer(d.AnswerOffer("ann", offer.id, True))
    await client.enqueue(d.Enqueue("e2", "call2", "sales", "trade-in"))
    offer = await _offer_of(client, "bob")
    await client.call_left(d.CallLeft("l2", "call2", "customer_left"))  # abandoned
    await client.set_rep(d.SetRep("ann", "Ann", "wrap_up"))
    await h.env.sleep(31)  # the wrap-up ends: ann available again


async def _max_wait_and_no_rep(client: DeskClient, h: Harness) -> None:
    await client.enqueue(d.Enqueue("e0", "call0", "general", "no one signed in"))
    await client.set_rep(d.SetRep("ann", "Ann", "available", ["general"]))
    await client.enqueue(d.Enqueue("e0b", "call0", "general", "asks again"))
    offer = await _offer_of(client, "ann")
    await client.answer(d.AnswerOffer("ann", offer.id, True))
    await client.enqueue(d.Enqueue("e1", "call1", "general", "waits too long"))
    await h.env.sleep(301)  # the longest wait: the caller is told, the call leaves the queue


async def desk_rang_out_declined_answered_wrapped(h: Harness) -> list[Run]:
    return await _desk(h, _rang_out_declined_answered_wrapped)


async def desk_max_wait_and_no_rep(h: Harness) -> list[Run]:
    return await _desk(h, _max_wait_and_no_rep)


async def desk_continues_as_new(h: Harness) -> list[Run]:
    return await _desk(h, _rang_out_declined_answered_wrapped, events=40)


SCENARIOS: dict[str, Callable[[Harness], Awaitable[list[Run]]]] = {
    "happy_path": happy_path,
    "no_agent": no_agent,
    "supervisor_ends_with_egress_retry": supervisor_ends_with_egress_retry,
    "continue_as_new": continue_as_new,
    "recording_fails_then_ops_retry": recording_fails_then_ops_retry,
    "healing": healing,
    "end_wins_over_continue_as_new": end_wins_over_continue_as_new,
    "egress_ended_during_stop": egress_ended_during_stop,
    "segments_after_mid_call_failure": segments_after_mid_call_failure,
    "consent_withdrawn": consent_withdrawn,
    "lost_egress_found_in_staging": lost_egress_found_in_staging,
    "livekit_down_across_the_hang_up": livekit_down_across_the_hang_up,
    "recording_waits_for_ops_then_retry": recording_waits_for_ops_then_retry,
    "recording_given_up": recording_given_up,
    "busy_signals_continue_as_new": busy_signals_continue_as_new,
    "database_down_long_call": database_down_long_call,
    "egress_clock_and_poll_retries": egress_clock_and_poll_retries,
    "dispatch_into_a_room_gone": dispatch_into_a_room_gone,
    "recording_erased_while_uploading": recording_erased_while_uploading,
    "recording_erased_while_waiting_for_ops": recording_erased_while_waiting_for_ops,
    "room_finished_mid_call": room_finished_mid_call,
    "analysis_delivered_after_a_retry_then_rerun": analysis_delivered_after_a_retry_then_rerun,
    "analysis_failed": analysis_failed,
    "phone_inbound_webhook_lost": phone_inbound_webhook_lost,
    "phone_outbound_busy": phone_outbound_busy,
    "phone_outbound_transferred": phone_outbound_transferred,
    "callback_busy_then_answered": callback_busy_then_answered,
    "callback_three_no_answers": callback_three_no_answers,
    "callback_rescheduled_then_cancelled": callback_rescheduled_then_cancelled,
    "callback_do_not_call": callback_do_not_call,
    "campaign_window_dnc_continue_as_new": campaign_window_dnc_continue_as_new,
    "campaign_paused_resumed_cancelled": campaign_paused_resumed_cancelled,
    "desk_rang_out_declined_answered_wrapped": desk_rang_out_declined_answered_wrapped,
    "desk_max_wait_and_no_rep": desk_max_wait_and_no_rep,
    "desk_continues_as_new": desk_continues_as_new,
}


async def save_runs(client: Client, run: Run, out: Path, stem: str, counter: list[int]) -> None:
    """The run and every run it continued as new into."""
    workflow_id, run_id = run
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        counter[0] += 1
        path = out / f"{stem}.{counter[0]}.json"
        if path.exists():  # the corpus is appended to, never rewritten
            raise SystemExit(f"{path} exists: record a new release instead")
        path.write_text(history.to_json())
        last = history.events[-1]
        if not last.HasField("workflow_execution_continued_as_new_event_attributes"):
            return
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def main(out: Path, only: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        # A test server per scenario: one stops skipping time once a call completed before
        # its abandoned recording pipeline (see tests/fixtures/services.py).
        env = await start_time_skipping()
        try:
            async with running_harness(env) as h:
                ids = await scenario(h)
            counter = [0]
            for run in ids:
                await save_runs(env.client, run, out, name, counter)
            print(f"{name}: {counter[0]} histories", flush=True)
        finally:
            await env.shutdown()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    asyncio.run(main(HISTORIES / sys.argv[1], sys.argv[2:]))

    from core.temporal import exit_process

    exit_process(0)
