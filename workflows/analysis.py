"""After the call: `analysis-<call id>` analyses it and delivers its webhooks.

The call workflow starts it once its own last events are written (`start_after_call`, not a
child: it outlives the call). It waits `delay_s` for lines the agent may still be resending,
then, side by side:
- `call.ended` is queued and delivered (`webhook-<message id>`, a workflow per message so ops
  can replay one);
- the call is analysed (`analyze_call`, retried: an invalid answer of the model is asked again,
  a database outage waited out); out of retries the analysis is recorded `failed`
  (`analysis_failed`); once done, `call.analyzed` is queued and delivered.

Ops re-run it (`POST /api/calls/{id}/analysis/rerun`, `python -m ops analysis rerun`): a new run
of the same id. Auto-upgrade: it moves to new code mid-run, so a changed command needs a patch.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    from activities.types import (
        EVENT_ANALYZED,
        EVENT_ENDED,
        AnalysisDone,
        AnalysisFailed,
        AnalysisRequest,
        WebhookRequest,
    )

WORKFLOW_ANALYSIS = "AnalysisWorkflow"
WORKFLOW_WEBHOOK = "WebhookWorkflow"
# A model's invalid answer is asked again a few times; a database outage is waited out.
ANALYZE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
)
STORE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                          maximum_interval=timedelta(seconds=60))  # fmt: skip
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5),
                             maximum_interval=timedelta(hours=1))  # fmt: skip


def analysis_workflow_id(call_id: str) -> str:
    return f"analysis-{call_id}"


def webhook_workflow_id(msg_id: str) -> str:
    return f"webhook-{msg_id}"


@workflow.defn(name=WORKFLOW_WEBHOOK, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class WebhookWorkflow:
    """One message, delivered with back-off for up to `for_s` (each attempt counted on its row;
    the pending activity in the Web UI shows the attempts and the last failure)."""

    @workflow.run
    async def run(self, msg_id: str, for_s: float) -> int:
        return int(await workflow.execute_activity(
            act.DELIVER_WEBHOOK, msg_id, result_type=int,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(seconds=for_s),
            retry_policy=DELIVERY_RETRY,
        ))  # fmt: skip


@workflow.defn(name=WORKFLOW_ANALYSIS, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AnalysisWorkflow:
    @workflow.run
    async def run(self, req: AnalysisRequest, delay_s: float = 10.0,
                  webhook_for_s: float = 24 * 3600.0) -> AnalysisDone:  # fmt: skip
        self.webhook_for_s = webhook_for_s
        await workflow.sleep(delay_s, summary="lines still on their way")
        ended = None
        if req.run == 1:  # a re-run by ops sends no second call.ended
            ended = asyncio.create_task(self._deliver(WebhookRequest(req.call_id, EVENT_ENDED)))
        done = await self._analyze(req)
        if done.status == "done":
            await self._deliver(WebhookRequest(req.call_id, EVENT_ANALYZED, req.run))
        if ended is not None:
            await ended
        return done

    async def _analyze(self, req: AnalysisRequest) -> AnalysisDone:
        try:
            return await workflow.execute_activity(
                act.ANALYZE_CALL, req, result_type=AnalysisDone,
                start_to_close_timeout=timedelta(minutes=3), retry_policy=ANALYZE_RETRY,
            )  # fmt: skip
        except ActivityError as err:
            error = str(err.cause or err)[:500]
            await workflow.execute_activity(
                act.RECORD_ANALYSIS_FAILED, AnalysisFailed(req.call_id, req.run, error),
                start_to_close_timeout=timedelta(seconds=30), retry_policy=STORE_RETRY,
            )  # fmt: skip
            workflow.logger.warning(f"analysis of {req.call_id} failed: {error}")
            return AnalysisDone(req.call_id, "failed")

    async def _deliver(self, req: WebhookRequest) -> None:
        msg_id = await workflow.execute_activity(
            act.QUEUE_WEBHOOK, req, result_type=str,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=STORE_RETRY,
        )  # fmt: skip
        if not msg_id:
            return  # no webhook configured
        try:
            await workflow.execute_child_workflow(
                WebhookWorkflow.run, args=[msg_id, self.webhook_for_s],
                id=webhook_workflow_id(msg_id),
            )  # fmt: skip
        except ChildWorkflowError:
            workflow.logger.warning(f"webhook {msg_id} not delivered (ops may replay it)")


# --- client side: what ops do (api/routes/analysis.py, python -m ops analysis) ---------------


class AnalysisRunning(Exception):
    """The analysis (or the delivery) is still running: nothing to start again."""


async def rerun_analysis(client: Any, call_id: str, run: int, *, task_queue: str,
                         delay_s: float = 0.0, webhook_for_s: float = 24 * 3600.0) -> str:  # fmt: skip
    """A new run of `analysis-<id>` (run number `run`); `AnalysisRunning` while one runs."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    try:
        handle = await client.start_workflow(
            AnalysisWorkflow.run, args=[AnalysisRequest(call_id, run), delay_s, webhook_for_s],
            id=analysis_workflow_id(call_id), task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )  # fmt: skip
    except WorkflowAlreadyStartedError as exc:
        raise AnalysisRunning(call_id) from exc
    return str(handle.result_run_id)


async def replay_webhook(client: Any, msg_id: str, *, task_queue: str,
                         for_s: float = 24 * 3600.0) -> str:  # fmt: skip
    """Deliver a stored message again, under its own id; `AnalysisRunning` while it is being
    delivered."""
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    try:
        handle = await client.start_workflow(
            WebhookWorkflow.run, args=[msg_id, for_s], id=webhook_workflow_id(msg_id),
            task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )  # fmt: skip
    except WorkflowAlreadyStartedError as exc:
        raise AnalysisRunning(msg_id) from exc
    return str(handle.result_run_id)
