"""CallWorkflow (`call-<call_id>`): one customer call, from the first token to the stored recording.

Life of a call: `issue_token` (update-with-start by the API) creates the room with the agent
dispatched and returns the customer's token -> the agent joins (`agent_joined` signal, or a
`participant_joined` webhook of an agent; first wins) or the call ends `no_agent` -> if no
customer has joined (or spoken) `customer_join_timeout_s` after the first token, the call ends
`customer_never_joined` -> lines,
alerts and metrics arrive as signals and go to PostgreSQL in batches -> recording starts once
policy allows -> the customer leaves, a supervisor or the agent ends it (`end_call`), or the
max-duration timer fires -> egress stopped, room deleted, `completed` -> the child
`RecordingWorkflow` stores the file.

Recording policy (`CallConfig.recording_consent`): `announce` starts egress right after the
agent's first assistant line (the greeting says the call is recorded, so nothing before that is
recorded); `ask` only after a `recording_consent` signal with `granted: true` (the first answer
is final); `off` never.

History budget: a line costs one signal and one workflow task plus its share of one local
activity marker; the silence timer is never reset per line (it fires, re-checks and sleeps
the remainder). The run continues as new after `continue_as_new_after_events` events (or when
the server suggests it), carrying everything in `CallCarry`. State changes and the event log
live in `workflows.ledger.CallLedger`; this class orchestrates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, RetryState
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.events as ev
    import core.models as m
    import workflows.search as sa

# Workflow code: runs inside the sandbox (a clock or I/O in these fails the workflow task).
from workflows.common import (
    EGRESS_TERMINAL,
    FOREVER_RETRY,
    QUICK_RETRY,
    cause,
    egress_failed_without_file,
    iso,
    merge_egress,
    wait_for,
)
from workflows.healing import Healing
from workflows.ledger import CallLedger, metrics_event, now
from workflows.recording import RecordingWorkflow

T = TypeVar("T")
S = m.CallStatus
R = m.RecordingStatus
K = m.EventKind
# Runs from before it gave up on the egress at the first failed ask of LiveKit.
PATCH_EGRESS_POLL_RETRIES = "egress-poll-retries"
# Runs from before a customer who never joined ended the call.
PATCH_CUSTOMER_JOIN_TIMEOUT = "customer-join-timeout"
# Runs from before the room and the token were local activities run side by side.
PATCH_LOCAL_SETUP = "local-room-and-token"
# Runs from before the hang-up kept an egress report that arrived while the stop was running.
PATCH_STOP_KEEPS_REPORTS = "stop-keeps-reports"
# Runs from before release 2 (issue 10): an end request wins over a pending continue-as-new,
# the hang-up keeps an egress report that came in during the stop, late signals change
# nothing, the recording pipeline is started and not awaited. Decided once, as a run starts.
PATCH_RELEASE_2 = "release-2-temporal-safety"


@workflow.defn(name=m.WORKFLOW_CALL, versioning_behavior=VersioningBehavior.PINNED)
class CallWorkflow(Healing):
    @workflow.init
    def __init__(self, inp: m.CallInput) -> None:
        self.call_id = inp.call_id
        self.cfg = inp.config
        self.book = CallLedger(inp)
        self._room_creating = False
        self._room_failed = ""
        self._egress_busy = False
        self._tasks: list[asyncio.Task] = []
        self._batches_done = 0  # batches the flusher has finished (written or dropped)
        # When the first token was issued; a carried run's first token came at the start.
        self._token_issued_at = 0.0 if inp.carried is None else self.book.s.created_at
        self.v2 = False  # decided as run() starts (patches are not known yet in __init__)

    # --- run ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: m.CallInput) -> m.CallResult:
        # First of all: a run has release 2's behaviour throughout, or not at all. (Not in
        # __init__: while replaying, the history's patch markers are known only from here.)
        self.v2 = self.book.v2 = workflow.patched(PATCH_RELEASE_2)
        self._tasks = [asyncio.create_task(self._flush_loop()),
                       asyncio.create_task(self._check_loop())]  # fmt: skip
        if inp.carried is None:
            workflow.upsert_search_attributes(
                [sa.ROOM_NAME.value_set(m.room_name_for(self.call_id))]
                + (
                    [sa.CUSTOMER_NAME.value_set(inp.customer_name)]
                    if inp.customer_name and self.cfg.customer_name_searchable
                    else []
                )
            )
            self.book.emit(ev.Status(status=self.book.status))
        self.book.publish()

        if self.book.status == S.WAITING_FOR_AGENT and not await self._wait_for_agent():
            return await self._close()
        if self.book.status == S.IN_PROGRESS:
            watcher = asyncio.create_task(self._silence_watch())
            self._tasks += [watcher, asyncio.create_task(self._recorder())]
            if self._healing():
                self._tasks += [asyncio.create_task(self._agent_watch()),
                                asyncio.create_task(self._customer_watch())]  # fmt: skip
            if self.v2:
                self._tasks.append(asyncio.create_task(self._consent_watch()))
            if not self.book.customer_seen and workflow.patched(PATCH_CUSTOMER_JOIN_TIMEOUT):
                self._tasks.append(asyncio.create_task(self._customer_join_watch()))
            await self._converse()
            watcher.cancel()
            await self._hang_up()
        await self._store_recording()
        return await self._close()

    async def _wait_for_agent(self) -> bool:
        """True once the agent is in; otherwise settles the call (no_agent, failed or ended)."""
        deadline = self.book.s.created_at + self.cfg.agent_join_timeout_s

        def settled() -> bool:
            return bool(self.book.s.agent_joined_at or self.book.end or self._room_failed)

        if self._healing():
            await self._await_agent_healing(settled, deadline)  # dispatches again meanwhile
        else:
            await wait_for(settled, deadline - now())
        if self.book.s.agent_joined_at:
            self.book.conversation_started()
            return True
        if self._room_failed:
            self.book.finish(S.FAILED, "room_unavailable", "system")
        elif self.book.end is not None:
            self.book.finish(S.COMPLETED, *self.book.end)
        else:
            self.book.finish(S.NO_AGENT, "no_agent_in_time", "system")
        await self._delete_room()
        return False

    async def _converse(self) -> None:
        """Until the call should end; continues as new when the history grows large."""
        deadline = self.book.s.created_at + self.cfg.max_duration_s
        while self.book.end is None:
            in_time = await wait_for(
                lambda: self.book.end is not None or self._history_large(), deadline - now()
            )
            if not in_time:
                self.book.request_end("max_duration", "system")
            elif self.book.end is None:
                await self._continue_as_new(deadline)

    async def _continue_as_new(self, deadline: float) -> None:
        # Not waiting for the event queue to drain: under a steady stream of lines it never
        # does. Unwritten (and in-flight) events travel with the state instead.
        if not self.v2:
            await workflow.wait_condition(
                lambda: not self._egress_busy and workflow.all_handlers_finished()
            )
        elif not await wait_for(
            # An end request wins: its `end_call` handler waits for the hang-up, which would
            # otherwise wait for every handler to finish (each waiting on the other).
            lambda: (
                self.book.end is not None
                or (not self._egress_busy and workflow.all_handlers_finished())
            ),
            deadline - now(),
        ):
            self.book.request_end("max_duration", "system")
        if self.book.end is not None:
            return  # an end request came in meanwhile: end here instead
        carried = self.book.carry()
        if carried is None:
            # Unwritten events alone exceed the bound (PostgreSQL down): go on until a batch
            # is written, then try again; the history grows meanwhile, not the carry.
            workflow.logger.warning(
                f"call {self.call_id}: continue-as-new postponed, unwritten events too large",
                extra={"call_id": self.call_id},
            )
            done = self._batches_done
            await wait_for(
                lambda: self.book.end is not None or self._batches_done > done, deadline - now()
            )
            return
        workflow.continue_as_new(
            m.CallInput(self.call_id, self.book.customer_name, self.cfg, carried=carried)
        )

    async def _hang_up(self) -> None:
        """Stop recording, close the room, mark the call completed."""
        reason, by = self.book.end or ("unknown", "system")
        self.book.hanging_up(reason)
        await self._stop_egress()
        await self._delete_room()
        self.book.finish(S.COMPLETED, reason, by)

    async def _close(self) -> m.CallResult:
        """Everything flushed and every handler done, then the result."""
        flusher = self._tasks[0]
        await workflow.wait_condition(
            lambda: (self._quiet() or flusher.done()) and workflow.all_handlers_finished()
        )
        if flusher.done():
            flusher.result()  # the flusher died (a bug): fail the task loudly, never hang
        return m.CallResult(
            call_id=self.call_id,
            status=self.book.status,
            recording_status=self.book.s.recording_status,
            end_reason=self.book.s.end_reason,
            line_count=self.book.s.lines_dropped + len(self.book.s.lines),
            recording=self.book.s.recording,
            segments=self.book.all_segments() if self.v2 else [],
        )

    # --- recording ------------------------------------------------------------------------

    def _recording_wanted(self) -> bool:
        policy = self.cfg.recording_consent
        allowed = self.book.s.greeted if policy == "announce" else self.book.s.consent == "granted"
        eg = self.book.s.egress
        if self.v2:  # any egress that ended mid-call is followed by a new segment
            return allowed and (eg is None or eg.status in EGRESS_TERMINAL)
        return allowed and (eg is None or egress_failed_without_file(eg))

    async def _recorder(self) -> None:
        """Starts egress once policy allows. v1: a failed start is retried once. v2: each
        egress is a segment with its own key; one that ends mid-call (or fails to start) is
        followed by a new one after `egress_retry_delay_s`, up to `max_egress_starts`."""
        if self.cfg.recording_consent not in ("announce", "ask"):
            return
        while True:
            await workflow.wait_condition(
                lambda: self.book.end is not None or self._recording_wanted()
            )
            if self.book.end is not None:
                return
            if self.book.s.egress_attempts >= self.book.max_egress_starts():
                if self.v2 and self.book.s.recording_status == R.RECORDING:
                    self.book.set_recording(R.FAILED, error=self.book.s.recording_error)
                return
            if self.book.s.egress_attempts >= 1 and (self.v2 or self.book.s.egress_attempts == 1):
                await wait_for(lambda: self.book.end is not None, self.cfg.egress_retry_delay_s)
                if self.book.end is not None:
                    return
            attempt = self.book.egress_attempt()
            n = attempt if self.v2 else 1
            key = m.recording_object_key(self.call_id, n)
            self._egress_busy = True
            try:
                info = await workflow.execute_activity(
                    act.START_EGRESS,
                    act.StartEgressInput(
                        self.call_id, m.room_name_for(self.call_id), key, object_key=key
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
        """Consent withdrawn mid-call (v2): stop the egress now; keep or delete at the end."""
        await workflow.wait_condition(
            lambda: self.book.end is not None or self.book.s.consent == "withdrawn"
        )
        if self.book.end is None:
            await self._stop_egress()

    async def _stop_egress(self) -> None:
        """Stop the latest egress if it still runs (after a start in flight has answered): at
        the hang-up (both releases) and when consent is withdrawn (v2)."""
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
            # State read before an await is stale after it: an `egress_ended` (with its file)
            # that came in while the stop ran is kept (v1: only with PATCH_STOP_KEEPS_REPORTS,
            # asked exactly where release 1 asked it, so its histories replay).
            latest = self.book.s.egress
            if self.v2:
                current = latest if latest is not None else eg
                if current.egress_id == eg.egress_id:
                    self.book.egress_stopped(current, info)
            elif latest is not None and workflow.patched(PATCH_STOP_KEEPS_REPORTS):
                self.book.egress_stopped(latest, info)
            else:
                self.book.egress_stopped(eg, info)
        except ActivityError as err:
            # Deleting the room ends the egress too; the wait below still finds its file.
            self.book.emit(ev.Recording(status="stop_failed", error=cause(err)))

    async def _await_egress_end(self, eg: m.EgressState | None = None) -> m.RecordingFile | None:
        """The egress's file once it has ended: from the webhook, else asked of LiveKit, else
        (v2, LiveKit no longer knows it) looked for at its key in the staging bucket."""
        eg = eg or self.book.s.egress
        assert eg is not None
        egress_id = eg.egress_id

        def current() -> m.EgressState:
            return self.book.segment(egress_id) or eg

        def ended() -> bool:
            return current().status in EGRESS_TERMINAL

        poll_error = ""
        if not await wait_for(ended, self.cfg.egress_end_timeout_s):
            # A missed webhook never loses a recording: ask, then keep asking now and then.
            for pause in (0, 30, 60, 120, 300, 600):
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
                    # Rejected (LiveKit no longer knows the egress): no file will ever come.
                    if err.retry_state == RetryState.NON_RETRYABLE_FAILURE or not workflow.patched(
                        PATCH_EGRESS_POLL_RETRIES
                    ):
                        if self.v2 and eg.object_key:
                            found = await self._find_staged(eg)
                            if found is not None:
                                return found
                        self.book.egress_lost(cause(err))
                        return None
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
        if self.book.s.egress is None:
            return
        if not self.v2:
            return await self._store_recording_v1()
        withdrawn = self.book.s.consent == "withdrawn"
        delete = withdrawn and self.cfg.recording_on_withdrawal == "delete"
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
        # The pipeline appends its own events after the call's last one: write ours first.
        await workflow.wait_condition(lambda: self._quiet())
        await workflow.start_child_workflow(
            RecordingWorkflow.run,
            m.RecordingInput(
                call_id=self.call_id,
                room_name=m.room_name_for(self.call_id),
                egress_id=first.egress_id,
                location=first.location,
                expected_size=first.expected_size,
                expected_duration_s=first.expected_duration_s,
                call_duration_s=sum(s.recorded_for_s for s in segments),
                retry_for_s=self.cfg.recording_retry_for_s,
                report_to_call=True,
                object_key=first.object_key,
                segments=segments,
            ),
            id=m.recording_workflow_id(self.call_id),
            parent_close_policy=ParentClosePolicy.ABANDON,  # a recording outlives its call
        )

    async def _delete_staged(self, keys: list[str]) -> None:
        try:
            await workflow.execute_activity(
                act.DELETE_RECORDING_SEGMENTS,
                act.SegmentsToDelete(self.call_id, keys),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=FOREVER_RETRY,
            )
        except ActivityError as err:  # only invalid input gets here
            self.book.emit(ev.Recording(status="delete_failed", error=cause(err)))

    async def _store_recording_v1(self) -> None:
        assert self.book.s.egress is not None
        file = await self._await_egress_end()
        if file is None:
            self.book.recording_without_file()
            return
        self.book.set_recording(R.UPLOADING, egress_id=self.book.s.egress.egress_id)
        recorded_for = max(0.0, self.book.s.ended_at - self.book.s.egress_started_at)
        try:
            result = await workflow.execute_child_workflow(
                RecordingWorkflow.run,
                m.RecordingInput(
                    call_id=self.call_id,
                    room_name=m.room_name_for(self.call_id),
                    egress_id=self.book.s.egress.egress_id,
                    location=file.location,
                    expected_size=file.size,
                    expected_duration_s=file.duration_s,
                    call_duration_s=recorded_for,
                    retry_for_s=self.cfg.recording_retry_for_s,
                ),
                id=m.recording_workflow_id(self.call_id),
                parent_close_policy=ParentClosePolicy.ABANDON,  # a recording outlives its call
            )
        except ChildWorkflowError as err:
            self.book.recording_failed(cause(err))
            return
        self.book.recording_stored(result, recorded_for)

    # --- the room -------------------------------------------------------------------------

    async def _ensure_room(self) -> None:
        if self.book.s.room_ready:
            return
        if self._room_creating:
            await workflow.wait_condition(lambda: self.book.s.room_ready or bool(self._room_failed))
        else:
            self._room_creating = True
            room = act.CreateRoomInput(
                call_id=self.call_id,
                room_name=m.room_name_for(self.call_id),
                agent_name=self.cfg.agent_name,
                customer_name=self.book.customer_name,
            )
            try:
                local = workflow.patched(PATCH_LOCAL_SETUP)
                await _setup_step(act.CREATE_ROOM, room, act.RoomInfo, local=local)
                self.book.room_created()
            except (ActivityError, ApplicationError) as err:
                # A local activity's non-retryable error arrives bare, not in an ActivityError.
                self._room_failed = cause(err)
            finally:
                self._room_creating = False
        if not self.book.s.room_ready:
            raise ApplicationError(
                f"could not create the call's room: {self._room_failed}", type="RoomUnavailable"
            )

    async def _delete_room(self) -> None:
        try:
            await workflow.execute_activity(
                act.DELETE_ROOM,
                act.RoomRef(self.call_id, m.room_name_for(self.call_id)),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=QUICK_RETRY,
            )
        except ActivityError as err:
            # LiveKit closes an empty room by itself (empty_timeout); note it and move on.
            self.book.emit(ev.Status(status=self.book.status, room_delete_failed=cause(err)))

    # --- updates --------------------------------------------------------------------------

    @workflow.update(name=m.UPDATE_ISSUE_TOKEN)
    async def issue_token(self, req: m.IssueTokenRequest) -> m.TokenGrant:
        """Creates the room (once) with the agent dispatched; returns a fresh customer token."""
        mint = act.MintTokenInput(
            call_id=self.call_id,
            room_name=m.room_name_for(self.call_id),
            identity=m.customer_identity(self.call_id),
            name=req.customer_name or self.book.customer_name or "Customer",
            ttl_s=self.cfg.token_ttl_s,
            livekit_url=self.cfg.livekit_url,
        )
        if workflow.patched(PATCH_LOCAL_SETUP):
            # Room and token side by side: the token is useless until the update returns,
            # and it returns only once the room exists (or fails, and the token is dropped).
            token = asyncio.ensure_future(
                _setup_step(act.MINT_CUSTOMER_TOKEN, mint, m.TokenGrant, local=True)
            )
            try:
                await self._ensure_room()
            except ApplicationError:
                token.cancel()
                raise
            grant = await token
        else:
            await self._ensure_room()
            grant = await _setup_step(act.MINT_CUSTOMER_TOKEN, mint, m.TokenGrant, local=False)
        self._token_issued_at = self._token_issued_at or now()
        return grant

    @issue_token.validator
    def _check_issue_token(self, req: m.IssueTokenRequest) -> None:
        if self.book.end is not None or not S(self.book.status).is_active:
            raise ApplicationError("the call has ended", type="CallEnded")

    @workflow.update(name=m.UPDATE_END_CALL)
    async def end_call(self, req: m.EndCallRequest) -> m.EndCallResult:
        """Ends a live call (supervisor, agent or ops); returns once the call is ending."""
        self.book.request_end(req.reason.strip(), req.by)
        if req.by != "agent":
            self.book.emit(ev.SupervisorAction(action="end", by=req.by, reason=req.reason))
        await workflow.wait_condition(
            lambda: self.book.status not in (S.WAITING_FOR_AGENT, S.IN_PROGRESS)
        )
        return m.EndCallResult(
            self.call_id, self.book.status, self.book.end[0] if self.book.end else ""
        )

    @end_call.validator
    def _check_end_call(self, req: m.EndCallRequest) -> None:
        if not req.reason.strip() or len(req.reason) > 500:
            raise ApplicationError("reason must be 1 to 500 characters", type="InvalidReason")
        if self.book.end is not None or self.book.status not in (
            S.WAITING_FOR_AGENT,
            S.IN_PROGRESS,
        ):
            raise ApplicationError("the call has already ended", type="CallEnded")

    # --- signals (each carries an id; a duplicate changes nothing) ------------------------

    @workflow.signal(name=m.SIGNAL_AGENT_JOINED)
    def agent_joined(self, sig: m.AgentJoined) -> None:
        if self.book.first(sig.id) and not (self._heals() and self._agent_arrived(sig.identity)):
            self.book.agent_in(sig.identity)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_JOINED)
    def participant_joined(self, sig: m.ParticipantJoined) -> None:
        if not self.book.first(sig.id):
            return
        if sig.kind == "agent" and self._heals() and self._agent_arrived(sig.identity):
            return
        if sig.kind == "customer" and self.book.s.customer_away_since:
            self.book.customer_back()
        self.book.participant_joined(sig)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_LEFT)
    def participant_left(self, sig: m.ParticipantLeft) -> None:
        if not self.book.first(sig.id):
            return
        if sig.kind in ("agent", "customer") and self._heals():
            healed = (
                self._agent_left_healed(sig)
                if sig.kind == "agent"
                else self._customer_left_healed(sig)
            )
            if healed:
                return
        self.book.participant_left(sig)

    @workflow.signal(name=m.SIGNAL_ROOM_FINISHED)
    def room_finished(self, sig: m.RoomFinished) -> None:
        """The room is gone while the call is still on (a hang-up whose `participant_left` was
        lost, or the room deleted from outside): nobody can talk in it, so the call ends
        instead of dispatching agents into a room that no longer exists. After the workflow's
        own hang-up (which deletes the room) it arrives late and changes nothing."""
        if not self.book.late("room_finished", sig.id) and self.book.first(sig.id):
            self.book.request_end("room_finished", "livekit")

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT)
    def transcript(self, line: m.TranscriptLine) -> None:
        if not self.book.late("transcript", line.id):
            self.book.add_line(line)  # de-duplicated by the line's id

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT_BATCH)
    def transcript_batch(self, batch: m.TranscriptBatch) -> None:
        if not self.book.late("transcript_batch", batch.id) and self.book.first(batch.id):
            for line in batch.lines:
                self.book.add_line(line)

    @workflow.signal(name=m.SIGNAL_SILENCE)
    def silence(self, sig: m.SilenceSignal) -> None:
        if not self.book.late("silence", sig.id) and self.book.first(sig.id):
            self.book.silence_alert(ev.SilenceAlert(id=sig.id, source="agent", speaker=sig.speaker,
                                                    duration_s=sig.duration_s, at=sig.at))  # fmt: skip

    @workflow.signal(name=m.SIGNAL_EGRESS_UPDATED)
    def egress_updated(self, upd: m.EgressUpdate) -> None:
        if self.book.first(upd.id):
            self.book.egress_report(upd)

    @workflow.signal(name=m.SIGNAL_EGRESS_ENDED)
    def egress_ended(self, upd: m.EgressUpdate) -> None:
        if self.book.first(upd.id):
            self.book.egress_report(upd)

    @workflow.signal(name=m.SIGNAL_RECORDING_CONSENT)
    def recording_consent(self, sig: m.RecordingConsentSignal) -> None:
        if not self.book.late("recording_consent", sig.id) and self.book.first(sig.id):
            self.book.consent(sig)

    @workflow.signal(name=m.SIGNAL_AGENT_METRICS)
    def agent_metrics(self, sig: m.AgentMetrics) -> None:
        if not self.book.late("agent_metrics", sig.id) and self.book.first(sig.id):
            self.book.emit(metrics_event(sig))

    @workflow.signal(name=m.SIGNAL_AGENT_ALERT)
    def agent_alert(self, sig: m.AgentAlert) -> None:
        if not self.book.late("agent_alert", sig.id) and self.book.first(sig.id):
            alert = ev.HandoffRequested if sig.kind == K.HANDOFF_REQUESTED else ev.AgentAlert
            self.book.emit(alert(id=sig.id, kind=sig.kind, detail=sig.detail, at=sig.at))

    @workflow.signal(name=m.SIGNAL_SUPERVISOR_ACTION)
    def supervisor_action(self, sig: m.SupervisorAction) -> None:
        if not self.book.late("supervisor_action", sig.id) and self.book.first(sig.id):
            self.book.emit(ev.SupervisorAction(id=sig.id, action=sig.action, by=sig.by,
                                               detail=sig.detail, at=sig.at))  # fmt: skip

    # --- queries --------------------------------------------------------------------------

    @workflow.query(name=m.QUERY_GET_STATE)
    def get_state(self) -> m.CallState:
        return self.book.state()

    @workflow.query(name=m.QUERY_GET_TRANSCRIPT)
    def get_transcript(self, after_seq: int = 0) -> m.TranscriptPage:
        """Lines with seq > after_seq, oldest first, at most 500 (`more` says there are more)."""
        return self.book.transcript(after_seq)

    # --- background -----------------------------------------------------------------------

    async def _silence_watch(self) -> None:
        """Alerts once per quiet period of `silence_alert_s` without a line (durable timer)."""
        limit = self.cfg.silence_alert_s
        while self.book.end is None:
            if self.book.s.silence_alerted:
                await workflow.wait_condition(
                    lambda: not self.book.s.silence_alerted or self.book.end is not None
                )
                continue
            due = self.book.s.last_heard_at + limit
            if now() < due:
                # Not reset per line: fires, re-checks, sleeps the rest (history stays small).
                await workflow.sleep(due - now(), summary="silence check")
                continue
            since = iso(self.book.s.last_heard_at)
            self.book.silence_alert(ev.SilenceAlert(source="workflow", quiet_s=limit, since=since))

    async def _customer_join_watch(self) -> None:
        """Ends the call `customer_never_joined` when no customer has joined (or spoken)
        `customer_join_timeout_s` after the first token: one durable timer, never reset."""

        def gone() -> bool:
            return self.book.customer_seen or self.book.end is not None

        await workflow.wait_condition(lambda: bool(self._token_issued_at) or gone())
        deadline = self._token_issued_at + self.cfg.customer_join_timeout_s
        if not gone() and not await wait_for(gone, deadline - now()):
            self.book.request_end("customer_never_joined", "system")

    async def _flush_loop(self) -> None:
        """Appends queued events (and the call's row) to PostgreSQL, a batch per local activity.

        Everything queued while a batch is being written goes in the next one.
        """
        while True:
            await workflow.wait_condition(lambda: bool(self.book.pending))
            batch = self.book.take_batch()
            try:
                await workflow.execute_local_activity(
                    act.APPEND_CALL_EVENTS,
                    act.EventBatch(self.call_id, batch, self.book.row()),
                    result_type=act.AppendResult,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=FOREVER_RETRY,  # gives up only on a batch that can never fit
                )
            except (ActivityError, ApplicationError) as err:
                # Only a batch that can never be written gets here (the policy retries anything
                # else forever): drop it, say so, and keep writing the events that follow. A
                # local activity's non-retryable error arrives bare, not in an ActivityError.
                self.book.events_rejected(batch, cause(err))
            finally:
                self.book.batch_done()
                self._batches_done += 1

    async def _check_loop(self) -> None:
        """Asks the event log about lines that may repeat one whose id the run has forgotten
        (`CallLedger.suspects`; none in a call shorter than `seen_window_s`). No patch: only a
        run carried by this release's code can hold a suspect, so no older history reaches it."""
        while True:
            await workflow.wait_condition(lambda: bool(self.book.suspects))
            lines = list(self.book.suspects)
            try:
                stored = await workflow.execute_local_activity(
                    act.STORED_LINE_IDS,
                    act.LineIdsQuery(self.call_id, [line.id for line in lines]),
                    result_type=list[str],
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=FOREVER_RETRY,  # PostgreSQL down: the lines wait (carried)
                )
            except (ActivityError, ApplicationError) as err:
                # Only a query that can never succeed gets here: keep the lines (a line shown
                # twice is better than a line lost) and say why.
                workflow.logger.warning(
                    f"call {self.call_id}: line check failed, lines kept: {cause(err)}",
                    extra={"call_id": self.call_id},
                )
                stored = []
            self.book.suspects_checked(lines, set(stored))

    def _quiet(self) -> bool:
        return self.book.flushed() and not self.book.suspects

    def _history_large(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.cfg.continue_as_new_after_events
        )


def _setup_step(
    activity: str, arg: Any, result_type: type[T], *, local: bool
) -> Coroutine[Any, Any, T]:
    """A step of the call's set-up (the room, a token). `local` (runs with `PATCH_LOCAL_SETUP`):
    a local activity in the update's own workflow task, no task-queue round trip; before it, a
    regular activity. Same timeouts and retries either way."""
    run: Callable[..., Coroutine[Any, Any, T]] = (
        workflow.execute_local_activity if local else workflow.execute_activity
    )
    return run(
        activity,
        arg,
        result_type=result_type,
        start_to_close_timeout=timedelta(seconds=10),
        schedule_to_close_timeout=timedelta(seconds=30),
        retry_policy=QUICK_RETRY,
    )
