"""Starting the workflows that outlive a call: its recording pipeline and its analysis.

The call starts them by an activity, not as children: a child the call abandons ties nothing
the call needs to it, and it keeps Temporal's time-skipping test server from skipping time
ever after (so the test suite had to replace the server after each such test). Each start is
idempotent: a retry finds the workflow running (`USE_EXISTING`) or done (`REJECT_DUPLICATE`:
nothing more). Both run on the worker's own task queue, started with the worker's own client
(`activity.client()`); both auto-upgrade.
"""

from __future__ import annotations

import contextlib
from typing import Any

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

import activities.types as act
from activities.types import AnalysisRequest
from core import models as m
from core.settings import Settings

ONCE: dict[str, Any] = {
    "id_conflict_policy": WorkflowIDConflictPolicy.USE_EXISTING,
    "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
}


async def start_recording_pipeline(inp: m.RecordingInput) -> None:
    """`recording-<call id>`, once (inside an activity: the worker's client and queue)."""
    from workflows.recording import RecordingWorkflow

    with contextlib.suppress(WorkflowAlreadyStartedError):  # started, and finished since
        await activity.client().start_workflow(
            RecordingWorkflow.run, inp, id=m.recording_workflow_id(inp.call_id),
            task_queue=activity.info().task_queue, **ONCE,
        )  # fmt: skip


class StartActivities:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def activities(self) -> list[Any]:
        return [self.start_after_call]

    @activity.defn(name=act.START_AFTER_CALL)
    async def start_after_call(self, after: act.AfterCall) -> None:
        """The recording pipeline (when there is something to store), then `analysis-<id>`
        (workflows/analysis.py): one activity, started once the call's last word is written."""
        if after.recording is not None:
            await start_recording_pipeline(after.recording)
        from workflows.analysis import AnalysisWorkflow, analysis_workflow_id

        s = self.settings
        delay, for_s = (s.ANALYSIS_DELAY_S, s.ANALYSIS_WEBHOOK_FOR_S) if s else (10.0, 86400.0)
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await activity.client().start_workflow(
                AnalysisWorkflow.run, args=[AnalysisRequest(after.call_id), delay, for_s],
                id=analysis_workflow_id(after.call_id), task_queue=activity.info().task_queue,
                **ONCE,
            )  # fmt: skip
