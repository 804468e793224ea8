"""`EraseCallWorkflow(erase-<call_id>)`: erase a finished call everywhere it left data.

Order matters: the Temporal executions go first because that step refuses while the call or its
recording pipeline still runs (nothing is erased then); the database rows go last because the
same transaction records that the erasure happened (who, when, how much, no content).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.types import (
        ERASE_CALL_ROWS,
        ERASE_RECORDING_OBJECT,
        ERASE_WORKFLOW_EXECUTIONS,
        ERR_CALL_STILL_RUNNING,
        EraseRowsInput,
    )
    from core.models import EraseCallInput, EraseCallResult

ERASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=[ERR_CALL_STILL_RUNNING],
)

STEP_TIMEOUT = timedelta(minutes=2)
HEARTBEAT = timedelta(seconds=30)


@workflow.defn
class EraseCallWorkflow:
    @workflow.run
    async def run(self, req: EraseCallInput) -> EraseCallResult:
        executions = await workflow.execute_activity(
            ERASE_WORKFLOW_EXECUTIONS,
            req,
            result_type=int,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ERASE_RETRY,
        )
        object_deleted = await workflow.execute_activity(
            ERASE_RECORDING_OBJECT,
            req,
            result_type=bool,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ERASE_RETRY,
        )
        rows = await workflow.execute_activity(
            ERASE_CALL_ROWS,
            EraseRowsInput(
                request=req, executions_deleted=executions, object_deleted=object_deleted
            ),
            result_type=int,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=ERASE_RETRY,
        )
        return EraseCallResult(
            call_id=req.call_id,
            executions_deleted=executions,
            object_deleted=object_deleted,
            rows_deleted=rows,
        )
