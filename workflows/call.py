"""CallWorkflow (`call-<call_id>`): one customer call, from the first token to the recording
handed to its pipeline.

Life of a call: `issue_token` (update-with-start by the API) creates the room with the agent
dispatched and returns the customer's token -> the agent joins (`agent_joined` signal, or a
`participant_joined` webhook of an agent; first wins) or the call ends `no_agent` -> lines,
silence reports and metrics arrive as signals; the call decides on them (silence alerts, who is
in, healing, the end) -> recording starts once policy allows (workflows/recorder.py) -> the
customer leaves, a supervisor or the agent ends it (`end_call`), the room finishes (a lost
webhook of it is found by asking LiveKit once the room has gone quiet: workflows/room.py), or
the max duration passes -> egress stopped, room deleted, `completed` -> `RecordingWorkflow` stores
the files and `AnalysisWorkflow` analyses the call (both started by one activity, not children).

The workflow decides, PostgreSQL records: what was said reaches PostgreSQL from the agent
through the API, never through this workflow; the call's decisions go there as events through a
regular activity (`append_call_events`), so an outage of the database never holds a workflow
task, and an update such as `issue_token` answers as fast as ever. Each event has an id unique
in the call, so a batch written twice (a retry, a continue-as-new) stores nothing.

Calls run pinned to the worker deployment version they started on (docs/deploy.md): a new
release never replays a running call, so this code has no version gates. A long call continues
as new when the history grows, carrying a few kilobytes (`CallCarry`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.desk as desk
    import core.events as ev
    import core.models as m
    import workflows.search as sa

# Workflow code: runs inside the sandbox (a clock or I/O in these fails the workflow task).
from workflows.common import (
    QUICK_RETRY,
    QuietWatch,
    cause,
    customer_grant,
    iso,
    rejoin_refused,
    wait_for,
    watch_quiet,
)
from workflows.healing import Healing
from workflows.ledger import CallLedger, now
from workflows.phone import Phone
from workflows.recorder import Recorder
from workflows.room import RoomWatch

S = m.CallStatus
K = m.EventKind
# The event log: retried until PostgreSQL is back (a regular activity: the wait is the
# server's, not a workflow task's); only a batch that can never be written gives up.
LOG_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[act.ERR_INVALID_INPUT],
)
# Set-up steps run as local activities inside the update's workflow task: well inside the
# task timeout (10 s), so the update is never refused for a slow task.
SETUP_TIMEOUT = timedelta(seconds=2)
SETUP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=act.NON_RETRYABLE_ERRORS,
)


@workflow.defn(name=m.WORKFLOW_CALL, versioning_behavior=VersioningBehavior.PINNED)
class CallWorkflow(Healing, Recorder, Phone, RoomWatch):
    @workflow.init
    def __init__(self, inp: m.CallInput) -> None:
        # Everything a handler reads is set here: handlers of a run's first task run before run().
        self.call_id = inp.call_id
        self.cfg = inp.config
        self.book = CallLedger(inp)
        self._room_creating = False
        self._room_failed = ""
        self._egress_busy = False
        self._pipeline: m.RecordingInput | None = None  # started by `_close` (recorder.py)
        self._room_news_at = 0.0  # the last participant webhook (workflows/room.py)
        self._handoffs: list[desk.Enqueue] = []  # for the desk's queue (_desk_watch)
        self._transferring = False
        self.room = m.call_room(self.call_id, self.cfg)
        if self.cfg.room_name:  # an inbound phone call: LiveKit made the room, agent and all
            self.book.room_created()

    # --- run ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: m.CallInput) -> m.CallResult:
        flusher = asyncio.create_task(self._flush_loop())
        if inp.carried is None:
            names = [sa.CUSTOMER_NAME.value_set(inp.customer_name)] if (
                inp.customer_name and self.cfg.customer_name_searchable) else []  # fmt: skip
            workflow.upsert_search_attributes([sa.ROOM_NAME.value_set(self.room)]
                                              + names)  # fmt: skip
            self.book.emit(ev.Status(status=self.book.status))
        self.book.publish()

        if inp.carried is None and self.cfg.dial is not None and not await self._dial():
            await self._delete_room()
            return await self._close(flusher)
        if self.book.status == S.WAITING_FOR_AGENT and not await self._wait_for_agent():
            return await self._close(flusher)
        if self.book.status == S.IN_PROGRESS:
            # Each of these returns once the call ends (an egress start in flight answers
            # first, so its egress is stopped).
            watches = [asyncio.create_task(w()) for w in (self._recorder, self._agent_watch,
                       self._customer_watch, self._consent_watch, self._customer_join_watch,
                       self._quiet_watch, self._desk_watch)]  # fmt: skip
            await self._converse()
            await self._hang_up()
            await asyncio.gather(*watches)  # each returns once the call ends
        await self._store_recording()
        return await self._close(flusher)

    async def _wait_for_agent(self) -> bool:
        """True once the agent is in; otherwise settles the call (no_agent, failed or ended)."""
        deadline = self.book.s.created_at + self.cfg.agent_join_timeout_s

        def settled() -> bool:
            return bool(self.book.s.agent_joined_at or self.book.end or self._room_failed)

        await self._await_agent_healing(settled, deadline)  # dispatches again meanwhile
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
        """Until the call should end; continues as new when the history grows large. Every
        turn of the loop awaits a timer or a condition, so it can never spin."""
        deadline = self.book.s.created_at + self.cfg.max_duration_s

        def ending() -> bool:
            return self.book.end is not None

        while not ending():
            if not await wait_for(lambda: ending() or self._history_large(), deadline - now()):
                self.book.request_end("max_duration", "system")
                return
            if ending():
                return
            # Not from a handler, not with an egress start in flight: those end first. An end
            # request wins (its handler waits for the hang-up).
            ready = await wait_for(
                lambda: ending() or (not self._egress_busy and workflow.all_handlers_finished()),
                deadline - now(),
            )
            if not ready:
                self.book.request_end("max_duration", "system")
            if not ending():
                carried = self.book.carry()
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

    async def _close(self, flusher: asyncio.Task) -> m.CallResult:
        """Everything written and every handler done, then the result."""
        await workflow.wait_condition(
            lambda: (self.book.flushed() or flusher.done()) and workflow.all_handlers_finished()
        )
        if flusher.done():
            flusher.result()  # the flusher died (a bug): fail the task loudly, never hang
        # After the call: its analysis and webhooks (workflows/analysis.py), on the call's
        # final row and lines. Not a child: they outlive the call.
        await workflow.execute_activity(
            act.START_AFTER_CALL, act.AfterCall(self.call_id, self._pipeline),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=LOG_RETRY,
        )  # fmt: skip
        return m.CallResult(
            call_id=self.call_id,
            status=self.book.status,
            recording_status=self.book.s.recording_status,
            end_reason=self.book.s.end_reason,
            line_count=self.book.s.line_count,
            recording=self.book.s.recording,
            segments=self.book.all_segments(),
        )

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
                room_name=self.room,
                agent_name=self.cfg.agent_name,
                customer_name=self.book.customer_name,
            )
            try:
                await workflow.execute_local_activity(
                    act.CREATE_ROOM, room, result_type=act.RoomInfo,
                    start_to_close_timeout=SETUP_TIMEOUT, retry_policy=SETUP_RETRY,
                )  # fmt: skip
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
                act.RoomRef(self.call_id, self.room),
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=QUICK_RETRY,
            )
        except ActivityError as err:
            # LiveKit closes an empty room by itself (empty_timeout); note it and move on.
            self.book.emit(ev.Status(status=self.book.status, room_delete_failed=cause(err)))

    # --- updates --------------------------------------------------------------------------

    @workflow.update(name=m.UPDATE_ISSUE_TOKEN)
    async def issue_token(self, req: m.IssueTokenRequest) -> m.TokenGrant:
        """Creates the room (once) with the agent dispatched; then decides and records the
        customer's grant (a fresh token id, identity, expiry). The API signs the join token
        from it, so no token is ever in history; a refused room means no grant at all."""
        await self._ensure_room()
        name = req.customer_name or self.book.customer_name or "Customer"
        grant = customer_grant(self.call_id, name, str(workflow.uuid4()), now(), self.cfg)
        self.book.token_granted(grant.token_id, req.rejoin_of)
        return grant

    @issue_token.validator
    def _check_issue_token(self, req: m.IssueTokenRequest) -> None:
        if self.book.end is not None or not S(self.book.status).is_active:
            raise ApplicationError("the call has ended", type="CallEnded")
        if req.rejoin_of and (why := rejoin_refused(req, self.book.s, self.cfg, now())):
            raise ApplicationError(why, type=m.ERR_REJOIN_REFUSED)

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
        self._room_news_at = now()
        if self.book.first(sig.id) and not (self._heals() and self._agent_arrived(sig.identity)):
            self.book.agent_in(sig.identity)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_JOINED)
    def participant_joined(self, sig: m.ParticipantJoined) -> None:
        self._room_news_at = now()
        if not self.book.first(sig.id):
            return
        if sig.kind == "agent" and self._heals() and self._agent_arrived(sig.identity):
            return
        if sig.kind == "customer" and self.book.s.customer_away_since:
            self.book.customer_back()
        self.book.participant_joined(sig)

    @workflow.signal(name=m.SIGNAL_PARTICIPANT_LEFT)
    def participant_left(self, sig: m.ParticipantLeft) -> None:
        self._room_news_at = now()
        if not self.book.first(sig.id):
            return
        if sig.kind in ("agent", "customer") and self._heals():
            if sig.kind == "agent" and self._agent_left_healed(sig):
                return
            if sig.kind == "customer" and self._customer_left_healed(sig):
                return
        if self._transfer_leaving(sig):
            return
        self.book.participant_left(sig)

    @workflow.signal(name=m.SIGNAL_ROOM_FINISHED)
    def room_finished(self, sig: m.RoomFinished) -> None:
        """The room is gone while the call is still on (a hang-up whose `participant_left` was
        lost, or the room deleted from outside): the call ends. After the workflow's own
        hang-up (which deletes the room) it arrives late and changes nothing."""
        if not self.book.late("room_finished", sig.id) and self.book.first(sig.id):
            self.book.request_end("room_finished", "livekit")

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT)
    def transcript(self, line: m.TranscriptLine) -> None:
        if not self.book.late("transcript", line.id):
            self.book.add_line(line)

    @workflow.signal(name=m.SIGNAL_TRANSCRIPT_BATCH)
    def transcript_batch(self, batch: m.TranscriptBatch) -> None:
        if not self.book.late("transcript_batch", batch.id) and self.book.first(batch.id):
            for line in batch.lines:
                self.book.add_line(line)

    @workflow.signal(name=m.SIGNAL_SILENCE)
    def silence(self, sig: m.SilenceSignal) -> None:
        if not self.book.late("silence", sig.id) and self.book.first(sig.id):
            alert = ev.SilenceAlert(id=sig.id, source="agent", speaker=sig.speaker,
                                    duration_s=sig.duration_s, at=sig.at)  # fmt: skip
            self.book.silence_alert(alert, f"sig:{sig.id}")

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
            self.book.emit(ev.metrics_event(sig), f"sig:{sig.id}")

    @workflow.signal(name=m.SIGNAL_AGENT_ALERT)
    def agent_alert(self, sig: m.AgentAlert) -> None:
        if not self.book.late("agent_alert", sig.id) and self.book.first(sig.id):
            alert = ev.HandoffRequested if sig.kind == K.HANDOFF_REQUESTED else ev.AgentAlert
            event = alert(id=sig.id, kind=sig.kind, detail=sig.detail, at=sig.at)
            self.book.emit(event, f"sig:{sig.id}")
            if sig.kind == K.HANDOFF_REQUESTED and self.book.end is None:
                self._handoffs.append(desk.Enqueue(sig.id, self.call_id, sig.skill or
                                                   desk.DEFAULT_SKILL, sig.detail, sig.by, self.room))  # fmt: skip

    @workflow.signal(name=m.SIGNAL_SUPERVISOR_ACTION)
    def supervisor_action(self, sig: m.SupervisorAction) -> None:
        if not self.book.late("supervisor_action", sig.id) and self.book.first(sig.id):
            event = ev.SupervisorAction(id=sig.id, action=sig.action, by=sig.by,
                                        detail=sig.detail, at=sig.at)  # fmt: skip
            self.book.emit(event, f"sig:{sig.id}")

    # --- queries --------------------------------------------------------------------------

    @workflow.query(name=m.QUERY_GET_STATE)
    def get_state(self) -> m.CallState:
        return self.book.state()

    @workflow.query(name=m.QUERY_GET_TRANSCRIPT)
    def get_transcript(self, after_seq: int = 0) -> m.TranscriptPage:
        """The recent window's lines with seq > after_seq, oldest first (`truncated`: older
        lines are in PostgreSQL only)."""
        return self.book.transcript(after_seq)

    # --- background -----------------------------------------------------------------------

    async def _quiet_watch(self) -> None:
        """The call's quiet periods, on one durable timer (`watch_quiet`), until it ends:
        - silence: an alert once per `silence_alert_s` without a line (an agent's report
          counts as the period's alert);
        - a silent line: hung up (`silent`) once the customer has said nothing for
          `silent_hangup_s` (an open, silent line holds an agent and its paid speech services;
          the agent's own lines do not count);
        - the room: asked of LiveKit after `room_check_after_s` without news from it
          (workflows/room.py)."""
        s = self.book.s

        async def alert() -> None:
            quiet = ev.SilenceAlert(source="workflow", quiet_s=self.cfg.silence_alert_s,
                                    since=iso(s.last_heard_at))  # fmt: skip
            self.book.silence_alert(quiet)

        def customer_heard() -> float:
            return s.customer_heard_at or s.last_heard_at

        async def hang_up() -> None:
            quiet = ev.SilenceAlert(source="workflow", speaker="customer",
                                    quiet_s=self.cfg.silent_hangup_s, since=iso(customer_heard()))  # fmt: skip
            self.book.silence_alert(quiet)
            self.book.request_end("silent", "system")

        await watch_quiet([
            QuietWatch("silence check", lambda: s.last_heard_at, self.cfg.silence_alert_s, alert,
                       armed=lambda: not s.silence_alerted),
            QuietWatch("silent line", customer_heard, self.cfg.silent_hangup_s, hang_up),
            self._room_quiet_watch(),
        ], stop=lambda: self.book.end is not None)  # fmt: skip

    async def _customer_join_watch(self) -> None:
        """Ends the call `customer_never_joined` when no customer has joined (or spoken)
        `customer_join_timeout_s` after the first token: one durable timer, never reset."""

        def gone() -> bool:
            return self.book.customer_seen or self.book.end is not None

        await workflow.wait_condition(lambda: bool(self.book.s.token_issued_at) or gone())
        deadline = self.book.s.token_issued_at + self.cfg.customer_join_timeout_s
        if not gone() and not await wait_for(gone, deadline - now()):
            self.book.request_end("customer_never_joined", "system")

    async def _desk_watch(self) -> None:
        """Each hand-off goes to the desk's queue (workflows/desk.py); a call that was queued
        tells the desk when it ends (abandoned if still waiting; its rep's wrap-up if taken)."""
        while True:
            await workflow.wait_condition(lambda: bool(self._handoffs) or self.book.end is not None)
            if self.book.end is not None:
                break
            await workflow.execute_activity(
                act.ENQUEUE_HANDOFF, self._handoffs.pop(0), start_to_close_timeout=timedelta(seconds=10),
                retry_policy=LOG_RETRY,
            )  # fmt: skip
            self.book.queued_at_desk()
        if self.book.s.desk_queued:
            await workflow.execute_activity(
                act.LEAVE_DESK, desk.CallLeft(f"left-{self.call_id}", self.call_id,
                                            (self.book.end or ("", ""))[0]),
                start_to_close_timeout=timedelta(seconds=10), retry_policy=LOG_RETRY,
            )  # fmt: skip

    async def _flush_loop(self) -> None:
        """Writes queued events (and the call's row) to PostgreSQL, a batch per activity;
        everything queued while a batch is written goes in the next one."""
        while True:
            await workflow.wait_condition(lambda: bool(self.book.pending))
            batch = self.book.take_batch()
            try:
                result = await workflow.execute_activity(
                    act.APPEND_CALL_EVENTS,
                    act.EventBatch(self.call_id, batch, self.book.row()),
                    result_type=act.AppendResult,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=LOG_RETRY,
                )
                self.book.batch_done(result)
            except ActivityError as err:  # only a batch that can never be written
                self.book.batch_done(None, cause(err))

    def _history_large(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.cfg.continue_as_new_after_events
        )
