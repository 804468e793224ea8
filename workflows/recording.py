"""RecordingWorkflow (`recording-<call_id>`): gets a call's recording segments into the bucket.

Started for `CallWorkflow` once the call is over, by its `start_after_call` activity (not a
child: it outlives the call, and the call does not wait for it). Each segment (one per egress, `conversations/<call_id>/<n>.ogg`)
goes through `download_and_store_recording` in order, retried with backoff for `retry_for_s`
(24 h by default); the activity heartbeats from a background task, so the heartbeat timeout
only has to catch a dead worker (it is above twice the download's socket read timeout).

It reports its own outcome: every change of its status goes to the `RecordingStatus` search
attribute and, through `record_recording`, to PostgreSQL (the call's `recording_status`, a
`recording` event on the call's log with the next seq, the `recordings` row), each report once
however often it is retried. When a segment's retries run out it does not fail: it reports
`failed` and waits, durably and for as long as it takes, for ops: the `retry` update tries
again from that segment, `give_up` ends the run (result `given_up`, the recording `failed`;
its details and `get_status` say given up, not waiting). The segments stored before the one
given up on keep rows naming them (`recordings`, `recording_segments`, marked incomplete), so
the partial recording can be served and is found by erasure. Both updates are refused (the
update fails, nothing changes) unless the run is waiting for ops, so two concurrent retries
start one. Runs from before release 2 (no patch marker) fail instead and are
replayed by `workflows.client.retry_recording` as a new run.

Cancelling the run (what erasure does, `activities.erase`) stops it so that nothing of it can be
written afterwards: its activities are cancelled with WAIT_CANCELLATION_COMPLETED, so the run
waits until the upload has confirmed that it stopped (the activity returns only when none of its
S3 calls can still write), starts no new activity, reports `failed` ("cancelled: <reason>")
unless already stored, and ends as cancelled. Only a run that received a cancellation request
takes this path, so recorded histories replay unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.models as m
    import workflows.search as sa

from workflows.common import FOREVER_RETRY, cause, iso

R = m.RecordingStatus
PATCH_RELEASE_2 = "release-2-temporal-safety"  # the same gate as CallWorkflow's
ERR_NOT_WAITING = "NotWaitingForOps"
PATCH_GIVE_UP_KEEPS_SEGMENTS = "recording-give-up-records-stored-segments"
PATCH_ERASED_ENDS = "recording-ends-when-the-call-was-erased"

# Backoff between download attempts: 5 s, 10 s, 20 s ... then every 10 minutes.
DOWNLOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=act.NON_RETRYABLE_ERRORS,
)
# Beats come every few seconds from a background task; this only catches a dead worker, and is
# above twice the download's socket read timeout (60 s) so a stalled read fails first.
HEARTBEAT_TIMEOUT = timedelta(seconds=150)
# A cancelled activity is waited for until it says it stopped: no write of it comes later.
WAIT_CANCELLED = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


def segment_inputs(inp: m.RecordingInput) -> list[m.RecordingInput]:
    """One activity input per segment, in order (a run without segments has one)."""
    if not inp.segments:
        return [inp]
    return [
        m.RecordingInput(
            call_id=inp.call_id,
            room_name=inp.room_name,
            egress_id=seg.egress_id,
            location=seg.location,
            expected_size=seg.expected_size,
            expected_duration_s=seg.expected_duration_s,
            call_duration_s=seg.recorded_for_s,
            retry_for_s=inp.retry_for_s,
            report_to_call=inp.report_to_call,
            object_key=seg.object_key,
        )
        for seg in inp.segments
    ]


def stored_segments(stored: list[m.RecordingResult]) -> list[m.StoredSegment]:
    """The segments stored so far, numbered in order."""
    return [
        m.StoredSegment(n, r.key, r.size, r.sha256, r.duration_s, r.egress_id)
        for n, r in enumerate(stored, 1)
    ]


@workflow.defn(name=m.WORKFLOW_RECORDING, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class RecordingWorkflow:
    @workflow.init
    def __init__(self, inp: m.RecordingInput) -> None:
        self._status = R.UPLOADING
        self._error = ""
        self.v2 = False  # decided as run() starts (patch markers are not known in __init__)
        self._waiting = False  # retries ran out: waiting for an ops decision
        self._given_up = ""  # who gave up on it (ops), once they did
        self._decision: tuple[str, m.RecordingOpsRequest] | None = None
        self._reports = 0  # report ids: <run id>/<n>
        self._retry_for_s = inp.retry_for_s

    @workflow.run
    async def run(self, inp: m.RecordingInput) -> m.RecordingResult:
        self.v2 = workflow.patched(PATCH_RELEASE_2)
        try:
            if not self.v2:
                return await self._run_v1(inp)
            return await self._run_v2(inp)
        except (Exception, asyncio.CancelledError) as err:  # an eviction passes through
            if workflow.cancellation_reason() is None:
                raise
            await self._cancelled(inp)
            if is_cancelled_exception(err):
                raise
            # Failed while stopping (e.g. its abort): still a cancellation, so it ends cancelled.
            raise asyncio.CancelledError(self._error) from err

    async def _run_v2(self, inp: m.RecordingInput) -> m.RecordingResult:
        self._set(R.UPLOADING, inp)
        await self._report(inp, act.RecordingRow(inp.call_id, R.UPLOADING))
        stored: list[m.RecordingResult] = []
        for seg in segment_inputs(inp):
            while True:
                try:
                    stored.append(await self._store(seg))
                    break
                except ActivityError as err:
                    if workflow.cancellation_reason() is not None:
                        raise
                    self._error = cause(err)
                    if _call_erased(err) and workflow.patched(PATCH_ERASED_ENDS):
                        return await self._erased(inp, stored)
                if not await self._wait_for_ops(inp):
                    return await self._finish(inp, stored, given_up=True)
        return await self._finish(inp, stored, given_up=False)

    async def _store(self, seg: m.RecordingInput) -> m.RecordingResult:
        _stop_if_cancelled()
        return await workflow.execute_activity(
            act.DOWNLOAD_AND_STORE_RECORDING,
            seg,
            result_type=m.RecordingResult,
            schedule_to_close_timeout=timedelta(seconds=self._retry_for_s),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=DOWNLOAD_RETRY,
            cancellation_type=WAIT_CANCELLED,
        )

    async def _erased(
        self, inp: m.RecordingInput, stored: list[m.RecordingResult]
    ) -> m.RecordingResult:
        """The store step refused: the call was erased (an ops retry raced the erasure). End
        without a report, no ops to wait for: nothing of an erased call may be written."""
        self._given_up = "erasure"
        self._set(R.FAILED, inp)
        workflow.logger.warning(
            f"recording pipeline of call {inp.call_id} ended: the call was erased",
            extra={"call_id": inp.call_id},
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        result = m.RecordingResult(inp.call_id, "", "", 0, "", 0.0, egress_id=inp.egress_id)
        result.given_up = True
        result.segments = stored_segments(stored)
        return result

    async def _cancelled(self, inp: m.RecordingInput) -> None:
        """Cancelled (erasure, or ops): say so unless stored, after everything in flight stopped."""
        self._waiting, self._decision = False, None
        if self._status == R.STORED:
            return
        self._error = f"cancelled: {workflow.cancellation_reason() or 'no reason given'}"
        self._set(R.FAILED, inp)
        await self._report(
            inp, act.RecordingRow(inp.call_id, R.FAILED, error=self._error), last=True
        )
        workflow.logger.warning(
            f"recording pipeline of call {inp.call_id} {self._error}",
            extra={"call_id": inp.call_id},
        )

    async def _wait_for_ops(self, inp: m.RecordingInput) -> bool:
        """Failed: say so, then wait for ops. True to try again, False when they gave up."""
        self._set(R.FAILED, inp)
        await self._report(inp, act.RecordingRow(inp.call_id, R.FAILED, error=self._error))
        workflow.logger.warning(
            f"recording of call {inp.call_id} not stored, waiting for ops: {self._error}",
            extra={"call_id": inp.call_id},
        )
        self._waiting = True
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        action, req = self._decision
        if action == m.UPDATE_RECORDING_GIVE_UP:
            self._error = f"given up by {req.by}: {req.reason or self._error}"
            self._given_up = req.by
            self._details(inp)
            await self._report(
                inp, act.RecordingRow(inp.call_id, R.FAILED, error=self._error, by=req.by)
            )
            self._decision = None
            return False
        self._retry_for_s = req.retry_for_s or self._retry_for_s
        self._error = ""
        self._set(R.UPLOADING, inp)
        await self._report(inp, act.RecordingRow(inp.call_id, R.UPLOADING, by=req.by))
        self._decision = None
        return True

    async def _finish(
        self, inp: m.RecordingInput, stored: list[m.RecordingResult], *, given_up: bool
    ) -> m.RecordingResult:
        segments = stored_segments(stored)
        if stored:
            first = stored[0]
            row = act.RecordingRow(
                call_id=inp.call_id,
                status=R.FAILED if given_up else R.STORED,
                bucket=first.bucket,
                object_key=first.key,
                egress_id=first.egress_id or inp.egress_id,
                size_bytes=first.size,
                duration_s=first.duration_s,
                sha256=first.sha256,
                incomplete=any(r.incomplete for r in stored),
                # The `segments` of the stored `recording` event (core.events.Recording).
                segments=[dataclasses.asdict(s) for s in segments],
                error=self._error if given_up else "",
            )
            if not given_up:
                await self._report(inp, row)
            elif workflow.patched(PATCH_GIVE_UP_KEEPS_SEGMENTS):
                # Rows naming what was stored (incomplete); the call's recording stays failed.
                rows = dataclasses.replace(row, status=R.STORED, incomplete=True, error="")
                await self._report(inp, rows, event=False)
            result = m.RecordingResult(
                call_id=inp.call_id,
                bucket=first.bucket,
                key=first.key,
                size=sum(r.size for r in stored),
                sha256=first.sha256,
                duration_s=sum(r.duration_s for r in stored),
                incomplete=row.incomplete,
                egress_id=row.egress_id,
                already_stored=all(r.already_stored for r in stored),
            )
        else:
            result = m.RecordingResult(inp.call_id, "", "", 0, "", 0.0, egress_id=inp.egress_id)
        result.segments, result.given_up = segments, given_up
        self._set(R.FAILED if given_up else R.STORED, inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    # --- ops (updates) --------------------------------------------------------------------

    @workflow.update(name=m.UPDATE_RECORDING_RETRY)
    async def retry(self, req: m.RecordingOpsRequest) -> m.RecordingOpsResult:
        """Try again (from the segment that failed). Refused unless waiting for ops."""
        return await self._decide(m.UPDATE_RECORDING_RETRY, req)

    @workflow.update(name=m.UPDATE_RECORDING_GIVE_UP)
    async def give_up(self, req: m.RecordingOpsRequest) -> m.RecordingOpsResult:
        """Stop for good: the recording stays `failed`. Refused unless waiting for ops."""
        return await self._decide(m.UPDATE_RECORDING_GIVE_UP, req)

    @retry.validator
    def _check_retry(self, req: m.RecordingOpsRequest) -> None:
        self._check(req)

    @give_up.validator
    def _check_give_up(self, req: m.RecordingOpsRequest) -> None:
        self._check(req)

    def _check(self, req: m.RecordingOpsRequest) -> None:
        if not req.by.strip() or len(req.reason) > 500 or req.retry_for_s < 0:
            raise ApplicationError(
                "by is required, reason at most 500 characters, retry_for_s >= 0",
                type=act.ERR_INVALID_INPUT,
            )
        if not self._waiting:
            raise ApplicationError(_NOT_WAITING_MESSAGE, type=ERR_NOT_WAITING)

    async def _decide(self, action: str, req: m.RecordingOpsRequest) -> m.RecordingOpsResult:
        # Validators of two updates in one task both pass; the first handler to run wins.
        if not self._waiting:
            raise ApplicationError(_NOT_WAITING_MESSAGE, type=ERR_NOT_WAITING)
        self._waiting = False
        self._decision = (action, req)
        # Returns once the decision is in PostgreSQL: a status read right after is right.
        await workflow.wait_condition(lambda: self._decision is None)
        return m.RecordingOpsResult(workflow.info().workflow_id, action, self._status)

    @workflow.query(name="get_status")
    def get_status(self) -> dict:
        return {
            "status": self._status,
            "error": self._error,
            "waiting_for_ops": self._waiting,
            "given_up": bool(self._given_up),
        }

    # --- helpers --------------------------------------------------------------------------

    def _set(self, status: R, inp: m.RecordingInput) -> None:
        self._status = status
        updates = [sa.RECORDING_STATUS.value_set(status)]
        if status == R.UPLOADING:
            updates.append(sa.ROOM_NAME.value_set(inp.room_name))
        workflow.upsert_search_attributes(updates)
        self._details(inp)

    def _details(self, inp: m.RecordingInput) -> None:
        """The Web UI's line: the status, and whether ops are waited for or gave up."""
        detail = f"**{self._status}** · call `{inp.call_id}` · egress `{inp.egress_id}`"
        failed = self._status == R.FAILED and self.v2 and workflow.cancellation_reason() is None
        if self._given_up:
            detail += f" · given up by {self._given_up}"
        elif self._waiting or failed:
            detail += " · waiting for ops (retry / give_up)"
        workflow.set_current_details(detail + (f" · {self._error}" if self._error else ""))

    async def _report(
        self,
        inp: m.RecordingInput,
        row: act.RecordingRow,
        *,
        last: bool = False,
        event: bool = True,
    ) -> None:
        """One status report to PostgreSQL, with an id of its own (idempotent when retried).
        Once cancelled, only the `last` report (the cancellation's own) is still made. Without
        `event` only the rows are written (no `recording` event, the call's status unchanged)."""
        if not last:
            _stop_if_cancelled()
        self._reports += 1
        row.at = iso(workflow.now().timestamp())
        if event:
            row.append_event_for_run = f"{workflow.info().run_id}/{self._reports}"
        await workflow.execute_activity(
            act.RECORD_RECORDING,
            row,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FOREVER_RETRY,
            cancellation_type=WAIT_CANCELLED,
        )

    # --- runs from before release 2 -------------------------------------------------------

    async def _run_v1(self, inp: m.RecordingInput) -> m.RecordingResult:
        self._set(R.UPLOADING, inp)
        _stop_if_cancelled()
        try:
            result = await workflow.execute_activity(
                act.DOWNLOAD_AND_STORE_RECORDING,
                inp,
                result_type=m.RecordingResult,
                schedule_to_close_timeout=timedelta(seconds=inp.retry_for_s),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(seconds=60),
                retry_policy=DOWNLOAD_RETRY,
                cancellation_type=WAIT_CANCELLED,
            )
        except ActivityError as err:
            if workflow.cancellation_reason() is not None:
                raise
            self._error = cause(err)
            self._set(R.FAILED, inp)
            await self._record_v1(inp, act.RecordingRow(inp.call_id, R.FAILED, error=self._error))
            raise ApplicationError(
                f"recording of call {inp.call_id} not stored: {self._error} "
                "(ops: workflows.client.retry_recording restarts it)",
                type="RecordingNotStored",
                non_retryable=True,
            ) from err
        await self._record_v1(
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

    async def _record_v1(self, inp: m.RecordingInput, row: act.RecordingRow) -> None:
        _stop_if_cancelled()
        row.at = iso(workflow.now().timestamp())
        if inp.report_to_call:
            row.append_event_for_run = workflow.info().run_id
        await workflow.execute_activity(
            act.RECORD_RECORDING,
            row,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FOREVER_RETRY,
            cancellation_type=WAIT_CANCELLED,
        )


def _call_erased(err: ActivityError) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == act.ERR_CALL_ERASED


def _stop_if_cancelled() -> None:
    """Cancelled while an activity finished anyway (WAIT_CANCELLATION_COMPLETED returns its
    result): start nothing more. Never true in a history without a cancellation request."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError("recording pipeline cancelled")


_NOT_WAITING_MESSAGE = "the recording pipeline is not waiting for ops (running, stored or done)"
