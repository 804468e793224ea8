"""RecordingWorkflow (`recording-<call_id>`): gets one egress file into the recordings bucket.

Started by `CallWorkflow` as a child (parent close policy ABANDON: it outlives the call).
`download_and_store_recording` is retried with backoff for `retry_for_s` (24 h by default);
after that the run fails, the call's recording is marked `failed` in PostgreSQL, and it waits
for ops: `workflows.ops.retry_recording(client, call_id)` starts a new run with the same id
and the same input (allowed only after a failure, never over a stored recording).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.models as m
    import workflows.search as sa
    from workflows.common import FOREVER_RETRY, cause, iso

R = m.RecordingStatus

# Backoff between download attempts: 5 s, 10 s, 20 s ... then every 10 minutes.
DOWNLOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=act.NON_RETRYABLE_ERRORS,
)


@workflow.defn(name=m.WORKFLOW_RECORDING)
class RecordingWorkflow:
    def __init__(self) -> None:
        self._status = R.UPLOADING
        self._error = ""

    @workflow.run
    async def run(self, inp: m.RecordingInput) -> m.RecordingResult:
        self._set(R.UPLOADING, inp)
        try:
            result = await workflow.execute_activity(
                act.DOWNLOAD_AND_STORE_RECORDING,
                inp,
                result_type=m.RecordingResult,
                schedule_to_close_timeout=timedelta(seconds=inp.retry_for_s),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=DOWNLOAD_RETRY,
            )
        except ActivityError as err:
            self._error = cause(err)
            self._set(R.FAILED, inp)
            await self._record(inp, act.RecordingRow(inp.call_id, R.FAILED, error=self._error))
            raise ApplicationError(
                f"recording of call {inp.call_id} not stored: {self._error} "
                "(ops: workflows.ops.retry_recording restarts it)",
                type="RecordingNotStored",
                non_retryable=True,
            ) from err
        await self._record(
            inp,
            act.RecordingRow(
                call_id=inp.call_id,
                status=R.STORED,
                bucket=result.bucket,
                object_key=result.key,
                egress_id=result.egress_id or inp.egress_id,
                size_bytes=result.size,
                duration_s=result.duration_s,
                sha256=result.sha256,
                incomplete=result.incomplete,
            ),
        )
        self._set(R.STORED, inp)
        return result

    @workflow.query(name="get_status")
    def get_status(self) -> dict:
        return {"status": self._status, "error": self._error}

    def _set(self, status: R, inp: m.RecordingInput) -> None:
        self._status = status
        updates = [sa.RECORDING_STATUS.value_set(status)]
        if status == R.UPLOADING:
            updates.append(sa.ROOM_NAME.value_set(inp.room_name))
        workflow.upsert_search_attributes(updates)
        detail = f"**{status}** · call `{inp.call_id}` · egress `{inp.egress_id}`"
        workflow.set_current_details(detail + (f" · {self._error}" if self._error else ""))

    async def _record(self, inp: m.RecordingInput, row: act.RecordingRow) -> None:
        row.at = iso(workflow.now().timestamp())
        if inp.report_to_call:
            row.append_event_for_run = workflow.info().run_id
        await workflow.execute_activity(
            act.RECORD_RECORDING,
            row,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FOREVER_RETRY,
        )
