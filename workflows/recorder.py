"""The recording half of CallWorkflow (workflow code, mixed in): egress segments while the
call goes on, their files once it has ended, and the start of the recording pipeline.

Recording policy (`CallConfig.recording_consent`): `announce` starts egress right after the
agent's first line (the greeting says the call is recorded, so nothing before it is recorded);
`ask` only after a `recording_consent` signal with `granted: true` (the first answer is final,
a grant can be withdrawn); `off` never. Under `announce` a `granted: false` (the customer
objects) withdraws the announced recording, before or after it started. Each egress is a segment with its own object key; one
that ends mid-call (or fails to start) is followed by a new one after `egress_retry_delay_s`, up
to `max_egress_starts`. A withdrawal stops the egress at once; at the end what was recorded is
kept or deleted by `recording_on_withdrawal`.

A missed `egress_ended` webhook never loses a recording: after `egress_end_timeout_s` LiveKit is
asked, now and then, and when LiveKit no longer knows the egress its file is looked for at its
key in the staging bucket. When LiveKit cannot be asked at all (its API down across the
hang-up), the file is looked for at its key too, and the pipeline is started on that key either
way: a file not there (yet) leaves the pipeline waiting for ops, never a dead end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, RetryState

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.events as ev
    import core.models as m

# Workflow code: runs inside the sandbox with the call workflow.
from workflows.common import (
    EGRESS_TERMINAL,
    FOREVER_RETRY,
    QUICK_RETRY,
    cause,
    merge_egress,
    wait_for,
)

if TYPE_CHECKING:
    from workflows.ledger import CallLedger

R = m.RecordingStatus
POLL_PAUSES_S = (0, 30, 60, 120, 300, 600)  # asking LiveKit about an egress that went quiet


class Recorder:
    """The recording half of CallWorkflow (it supplies `book`, `cfg`, `call_id`)."""

    book: CallLedger
    cfg: m.CallConfig
    call_id: str
    _egress_busy: bool
    _pipeline: m.RecordingInput | None  # what `_close` starts the pipeline with

    def _recording_wanted(self) -> bool:
        policy = self.cfg.recording_consent
        consent = self.book.s.consent
        announced = self.book.s.greeted and consent != "withdrawn"
        allowed = announced if policy == "announce" else consent == "granted"
        eg = self.book.s.egress
        return allowed and (eg is None or eg.status in EGRESS_TERMINAL)

    async def _recorder(self) -> None:
        """Starts an egress whenever policy wants one and none runs, until the call ends."""
        if self.cfg.recording_consent not in ("announce", "ask"):
            return
        while True:
            await workflow.wait_condition(
                lambda: self.book.end is not None or self._recording_wanted()
            )
            if self.book.end is not None:
                return
            if self.book.s.egress_attempts >= self.book.max_egress_starts():
                if self.book.s.recording_status == R.RECORDING:
                    self.book.set_recording(R.FAILED, error=self.book.s.recording_error)
                return
            if self.book.s.egress_attempts >= 1:
                await wait_for(lambda: self.book.end is not None, self.cfg.egress_retry_delay_s)
                if self.book.end is not None:
                    return
            n = self.book.egress_attempt()
            key = m.recording_object_key(self.call_id, n)
            self._egress_busy = True
            try:
                info = await workflow.execute_activity(
                    act.START_EGRESS,
                    act.StartEgressInput(
                        self.call_id, m.call_room(self.call_id, self.cfg), key, object_key=key
                    ),
                    result_type=m.EgressState,
                    start_to_close_timeout=timedelta(seconds=20),
                    retry_policy=RetryPolicy(maximum_attempts=1),  # the retry is ours
                )
                self.book.egress_started(info, n, key)
            except ActivityError as err:
                self.book.egress_start_failed(cause(err))
            finally:
                self._egress_busy = False

    async def _consent_watch(self) -> None:
        """Consent withdrawn mid-call: stop the egress now; keep or delete at the end."""
        await workflow.wait_condition(
            lambda: self.book.end is not None or self.book.s.consent == "withdrawn"
        )
        if self.book.end is None:
            await self._stop_egress()

    async def _stop_egress(self) -> None:
        """Stop the latest egress if it still runs (once a start in flight has answered)."""
        await workflow.wait_condition(lambda: not self._egress_busy)
        eg = self.book.s.egress
        if eg is None or eg.status in EGRESS_TERMINAL:
            return
        self.book.set_recording(R.STOPPING)
        try:
            info = await workflow.execute_activity(
                act.STOP_EGRESS,
                act.EgressRef(self.call_id, eg.egress_id),
                result_type=m.EgressState,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=QUICK_RETRY,
            )
            # Read again after the await: an `egress_ended` (with its file) may have come in.
            current = self.book.s.egress or eg
            if current.egress_id == eg.egress_id:
                self.book.egress_stopped(current, info)
        except ActivityError as err:
            # Deleting the room ends the egress too; the wait below still finds its file.
            self.book.emit(ev.Recording(status="stop_failed", error=cause(err)))

    async def _await_egress_end(self, eg: m.EgressState) -> m.RecordingFile | None:
        """The egress's file once it has ended: from the webhook, else asked of LiveKit, else
        (LiveKit no longer knows it) looked for at its key in the staging bucket."""
        egress_id = eg.egress_id

        def current() -> m.EgressState:
            return self.book.segment(egress_id) or eg

        def ended() -> bool:
            return current().status in EGRESS_TERMINAL

        poll_error = ""
        if not await wait_for(ended, self.cfg.egress_end_timeout_s):
            for pause in POLL_PAUSES_S:
                if pause and await wait_for(ended, pause):
                    break
                try:
                    info = await workflow.execute_activity(
                        act.GET_EGRESS,
                        act.EgressRef(self.call_id, egress_id),
                        result_type=m.EgressState,
                        start_to_close_timeout=timedelta(seconds=15),
                        retry_policy=QUICK_RETRY,
                    )
                except ActivityError as err:
                    if err.retry_state == RetryState.NON_RETRYABLE_FAILURE:
                        # LiveKit no longer knows the egress: its file is in staging or nowhere.
                        found = await self._find_staged(eg) if eg.object_key else None
                        if found is None:
                            self.book.egress_lost(cause(err))
                        return found
                    # LiveKit unreachable for now: the file may well be there, ask again later.
                    poll_error = cause(err)
                    self.book.emit(ev.Recording(status="egress_poll_failed", error=poll_error))
                    continue
                self.book.egress_polled(egress_id, merge_egress(current(), info))
                self.book.emit(ev.Recording(status="egress_polled", egress=current().status))
                if ended():
                    break
        final = current()
        if poll_error and not ended():
            self.book.recording_error_is(poll_error)  # every ask failed: the record says why
            if eg.object_key:
                # LiveKit's API stayed down: the file is at its key if the egress got it there;
                # else the pipeline reads that key and, not finding it, waits for ops.
                found = await self._find_staged(eg)
                return found or m.RecordingFile(eg.object_key, location="", size=0, duration_s=0.0)
        return final.file if final.file and final.file.location else None

    async def _find_staged(self, eg: m.EgressState) -> m.RecordingFile | None:
        """The egress's file at its key in the staging bucket, if it got there."""
        try:
            found = await workflow.execute_activity(
                act.FIND_STAGED_RECORDING,
                act.StagedRecordingQuery(self.call_id, eg.object_key),
                result_type=m.RecordingFile,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK_RETRY,
            )
        except ActivityError as err:
            self.book.emit(ev.Recording(status="staging_check_failed", error=cause(err)))
            return None
        if found is None or not found.location:
            return None
        self.book.emit(ev.Recording(status="found_in_staging", segment=eg.n, key=eg.object_key,
                                    size=found.size))  # fmt: skip
        return found

    async def _store_recording(self) -> None:
        """Every segment's file, then the pipeline started (not awaited: it outlives the call
        and reports its outcome itself), or what was recorded deleted on withdrawal."""
        if self.book.s.egress is None:
            return
        delete = self.book.s.consent == "withdrawn" and self.cfg.recording_on_withdrawal == "delete"
        segments: list[m.RecordingSegment] = []
        spans = [*self.book.s.segment_spans, [self.book.s.egress_started_at, self.book.s.ended_at]]
        for seg, (start, end) in zip(self.book.all_segments(), spans, strict=True):
            file = await self._await_egress_end(seg)
            if file is not None:
                segments.append(m.RecordingSegment(
                    n=seg.n, egress_id=seg.egress_id, object_key=seg.object_key,
                    location=file.location, expected_size=file.size,
                    expected_duration_s=file.duration_s, recorded_for_s=max(0.0, end - start),
                ))  # fmt: skip
        if delete:
            await self._delete_staged([seg.object_key for seg in self.book.all_segments()])
            self.book.recording_deleted(len(segments))
            return
        if not segments:
            self.book.recording_without_file()
            return
        first = segments[0]
        self.book.set_recording(R.UPLOADING, egress_id=first.egress_id,
                                segments=[s.n for s in segments])  # fmt: skip
        # Started with the analysis by `_close`, once the call's last word is written (the
        # pipeline reports on the call's row); not a child: it outlives the call
        # (activities/starts.py says why).
        self._pipeline = m.RecordingInput(
            call_id=self.call_id,
            room_name=m.call_room(self.call_id, self.cfg),
            egress_id=first.egress_id,
            location=first.location,
            expected_size=first.expected_size,
            expected_duration_s=first.expected_duration_s,
            call_duration_s=sum(s.recorded_for_s for s in segments),
            retry_for_s=self.cfg.recording_retry_for_s,
            report_to_call=True,
            object_key=first.object_key,
            segments=segments,
        )

    async def _delete_staged(self, keys: list[str]) -> None:
        try:
            await workflow.execute_activity(
                act.DELETE_RECORDING_SEGMENTS,
                act.SegmentsToDelete(self.call_id, keys),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=FOREVER_RETRY,
            )
        except ActivityError as err:  # only an error that can never succeed gets here
            self.book.emit(ev.Recording(status="delete_failed", error=cause(err)))
