"""`EraseCallWorkflow(erase-<call_id>)`: erase a finished call everywhere it left data.

Order matters: first the recording pipeline is stopped (refused while the call runs: nothing
is erased then), and waited for until nothing of it can write (`stop_recording_pipeline`); then
the Temporal executions, then the objects: no upload can put a recording back after they are
gone. Only when the pipeline had to be terminated (it did not close in time) are the objects
swept a second time, once a write it had already sent has had time to land. The database rows
go last because the same transaction records that the erasure happened (who, when, how much,
no content). Erasures started before the stop step (no `PATCH_STOP_PIPELINE` marker) replay
as they ran.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from activities.types import (
        ERASE_CALL_ROWS,
        ERASE_RECORDING_OBJECT,
        ERASE_WORKFLOW_EXECUTIONS,
        ERR_CALL_STILL_RUNNING,
        STOP_RECORDING_PIPELINE,
        EraseRowsInput,
        PipelineStop,
    )
    from core.models import EraseCallInput, EraseCallResult

ERASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[ERR_CALL_STILL_RUNNING],
)

STEP_TIMEOUT = timedelta(minutes=2)
# The steps that can take long (waiting for the pipeline, deleting executions, deleting
# objects) heartbeat per poll, per execution and per object: a dead worker shows in 30 s.
HEARTBEAT = timedelta(seconds=30)
# Above the stop step's own bound (activities.erase.PIPELINE_STOP_WAIT_S, 4 minutes).
STOP_TIMEOUT = timedelta(minutes=6)
PATCH_STOP_PIPELINE = "release-4-erase-stops-pipeline"


@workflow.defn(versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class EraseCallWorkflow:
    @workflow.run
    async def run(self, req: EraseCallInput) -> EraseCallResult:
        stop: PipelineStop | None = None
        if workflow.patched(PATCH_STOP_PIPELINE):
            stop = await workflow.execute_activity(
                STOP_RECORDING_PIPELINE,
                req,
                result_type=PipelineStop,
                start_to_close_timeout=STOP_TIMEOUT,
                heartbeat_timeout=HEARTBEAT,
                retry_policy=ERASE_RETRY,
            )
        executions = await workflow.execute_activity(
            ERASE_WORKFLOW_EXECUTIONS,
            req,
            result_type=int,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ERASE_RETRY,
        )
        object_deleted = await self._erase_objects(req)
        if stop is not None and stop.forced:
            # Terminated, not confirmed stopped: a write it had sent may land meanwhile.
            await workflow.sleep(timedelta(seconds=stop.sweep_again_after_s))
            object_deleted = await self._erase_objects(req) or object_deleted
        rows = await workflow.execute_activity(
            ERASE_CALL_ROWS,
            EraseRowsInput(
                request=req, executions_deleted=executions, object_deleted=object_deleted
            ),
            result_type=int,
            # One short transaction: no heartbeat (the start-to-close bound catches a hang).
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=ERASE_RETRY,
        )
        return EraseCallResult(
            call_id=req.call_id,
            executions_deleted=executions,
            object_deleted=object_deleted,
            rows_deleted=rows,
        )

    async def _erase_objects(self, req: EraseCallInput) -> bool:
        return await workflow.execute_activity(
            ERASE_RECORDING_OBJECT,
            req,
            result_type=bool,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ERASE_RETRY,
        )
