"""`callback-<id>`: a promise to ring a customer back, kept whatever restarts in between.

    run: sleep until the next dial time (the due time, moved into the customer's calling window)
         -> the number on the do-not-call list? cancelled (`do_not_call`), nothing dialled
         -> start the call (`start_callback_call`: an outbound phone call as POST
            /api/calls/outbound places it, which signals its dial outcome back here)
         -> answered: `completed`; busy / no_answer: again after `retry_s`, inside the window,
            up to `max_attempts`; anything else (rejected, unavailable, dial_failed): `failed`.

`reschedule` (while it sleeps) and `cancel` (until it is finished) are updates, refused
otherwise by a validator saying why; the sleep wakes on either. Every status change is written to the `callbacks` row
(`record_callback`) for the API's lists and for erasure. Auto-upgrade: it sleeps for days across
deploys, so a changed command needs `workflow.patched`. Numbers and reasons live in the input
and the state (payload-codec'd); search attributes carry the status and the due time only.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.callbacks as cb

from workflows import search as sa

C = cb.CallbackStatus
# The database and Temporal are waited out; a start that can never succeed is not retried.
SIDE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2),
                         maximum_interval=timedelta(minutes=2))  # fmt: skip
START_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5,
                          non_retryable_error_types=act.NON_RETRYABLE_ERRORS)  # fmt: skip
# Beyond the ringing, how long the call may take to report its dial before it counts as failed.
OUTCOME_GRACE_S = 300.0
# The hour's outbound calls used up (SIP_OUTBOUND_MAX_PER_HOUR): look again this much later.
CAPPED_RETRY_S = 300.0


@workflow.defn(name=cb.WORKFLOW_CALLBACK, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class CallbackWorkflow:
    @workflow.init
    def __init__(self, req: cb.CallbackRequest) -> None:
        self.req = req
        self.zone = cb.zone(req.timezone)
        self.window = cb.Window.parse(req.hours)
        self.st = cb.CallbackState(req.callback_id, C.SCHEDULED, req.at, req.at, req.timezone,
                                   req.phone, req.reason, req.call_id)  # fmt: skip
        self.due = req.at
        self.revision = 0
        self.cancelled: cb.CancelCallback | None = None
        self.outcome: cb.DialOutcome | None = None

    @workflow.run
    async def run(self, req: cb.CallbackRequest) -> cb.CallbackState:
        while self.st.status == C.SCHEDULED:
            if not await self._sleep_until_due():
                continue  # rescheduled: the new time, through the window again
            if self.cancelled:
                await self._finish(C.CANCELLED, self.cancelled.reason)
            elif await self._on_do_not_call():
                await self._finish(C.CANCELLED, "do_not_call")
            else:
                await self._attempt()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.st

    async def _sleep_until_due(self) -> bool:
        """Sleep to the next dial time; False when a reschedule woke it (True: due or cancelled)."""
        when = cb.next_dial_at(cb.from_epoch(self.due), self.zone, self.window)
        self.st.due_at = cb.epoch(when)
        revision = self.revision
        await self._publish()
        wait = max(0.0, self.st.due_at - workflow.now().timestamp())
        try:
            await workflow.wait_condition(
                lambda: self.revision != revision or self.cancelled is not None,
                timeout=timedelta(seconds=wait), timeout_summary="until the callback is due",
            )  # fmt: skip
        except TimeoutError:
            return True
        return self.cancelled is not None

    async def _attempt(self) -> None:
        n = len(self.st.attempts) + 1
        attempt = cb.Attempt(n, cb.attempt_call_id(self.req.callback_id, n),
                             workflow.now().timestamp())  # fmt: skip
        self.st.attempts.append(attempt)
        self.st.status = C.DIALING
        self.outcome = None
        await self._publish()
        if not await self._start_call(attempt):
            self.st.attempts.pop()  # the hour's outbound calls are used up: nothing dialled
            self.st.status = C.SCHEDULED
            self.due = workflow.now().timestamp() + CAPPED_RETRY_S
            return
        if not attempt.outcome:
            try:
                await workflow.wait_condition(
                    lambda: self.outcome is not None,
                    timeout=timedelta(seconds=self.req.ringing_timeout_s + OUTCOME_GRACE_S),
                    timeout_summary="the call's dial outcome",
                )  # fmt: skip
                assert self.outcome is not None
                attempt.outcome, attempt.sip_status = self.outcome.outcome, self.outcome.sip_status
            except TimeoutError:
                attempt.outcome = "dial_failed"
        if attempt.outcome == "answered":
            await self._finish(C.COMPLETED, "answered")
        elif self.cancelled:
            await self._finish(C.CANCELLED, self.cancelled.reason)
        elif attempt.outcome not in cb.RETRY_OUTCOMES:
            await self._finish(C.FAILED, attempt.outcome)
        elif n >= self.req.max_attempts:
            await self._finish(C.FAILED, "attempts_exhausted")
        else:
            self.st.status = C.SCHEDULED
            self.due = workflow.now().timestamp() + self.req.retry_s

    async def _start_call(self, attempt: cb.Attempt) -> bool:
        """False when the hourly cap refused it (not dialled); a failed start is `dial_failed`."""
        inp = cb.StartCallbackCall(
            callback_id=self.req.callback_id, call_id=attempt.call_id, phone=self.req.phone,
            reason=self.req.reason, origin_call_id=self.req.call_id,
            customer_name=self.req.customer_name, report_to=workflow.info().workflow_id,
            ringing_timeout_s=self.req.ringing_timeout_s,
        )  # fmt: skip
        try:
            return bool(await workflow.execute_activity(
                act.START_CALLBACK_CALL, inp, result_type=bool,
                start_to_close_timeout=timedelta(seconds=30), retry_policy=START_RETRY,
            ))  # fmt: skip
        except ActivityError:
            attempt.outcome = "dial_failed"
            return True

    async def _on_do_not_call(self) -> bool:
        return bool(await workflow.execute_activity(
            act.ON_DO_NOT_CALL, self.req.phone, result_type=bool,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=SIDE_RETRY,
        ))  # fmt: skip

    async def _finish(self, status: C, reason: str) -> None:
        self.st.status, self.st.end_reason = status, reason
        await self._publish()

    async def _publish(self) -> None:
        """Search attributes (status, due time) and the `callbacks` row."""
        workflow.upsert_search_attributes([
            sa.CALLBACK_STATUS.value_set(self.st.status), sa.CALLBACK_DUE.value_set(cb.from_epoch(self.st.due_at)),
        ])  # fmt: skip
        await workflow.execute_activity(
            act.RECORD_CALLBACK, self.st, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=SIDE_RETRY,
        )  # fmt: skip

    # --- what the outside asks ----------------------------------------------------------

    @workflow.query(name=cb.QUERY_STATE)
    def get_state(self) -> cb.CallbackState:
        return self.st

    @workflow.update(name=cb.UPDATE_REGISTER)
    def register(self) -> cb.CallbackState:
        """What update-with-start asks: the callback as it stands (created or found)."""
        return self.st

    @workflow.signal(name=cb.SIGNAL_DIAL_OUTCOME)
    def dial_outcome(self, outcome: cb.DialOutcome) -> None:
        current = self.st.attempts[-1] if self.st.attempts else None
        if current is not None and current.call_id == outcome.call_id:
            self.outcome = outcome  # a late or repeated report of an older attempt is dropped

    @workflow.update(name=cb.UPDATE_RESCHEDULE)
    def reschedule(self, req: cb.Reschedule) -> cb.CallbackState:
        """The new time (and zone); the sleep wakes and sleeps again to it, through the window."""
        if req.timezone:
            self.zone = cb.zone(req.timezone)
            self.st.timezone = req.timezone
        self.due = self.st.at = req.at
        self.st.due_at = cb.epoch(cb.next_dial_at(cb.from_epoch(req.at), self.zone, self.window))
        self.revision += 1
        return self.st

    @reschedule.validator
    def _check_reschedule(self, req: cb.Reschedule) -> None:
        if self.st.status != C.SCHEDULED or self.cancelled:
            raise ApplicationError(f"the callback is {self.st.status}", type=cb.ERR_NOT_SCHEDULED)
        if req.timezone:
            try:
                cb.zone(req.timezone)
            except ValueError as exc:
                raise ApplicationError(str(exc), type=act.ERR_INVALID_INPUT) from exc

    @workflow.update(name=cb.UPDATE_CANCEL)
    def cancel(self, req: cb.CancelCallback) -> cb.CallbackState:
        """Sleeping: cancelled now. Dialling: that call goes on (the phone is ringing), and no
        attempt follows it unless it was answered."""
        self.cancelled = req
        if self.st.status != C.SCHEDULED:
            return self.st
        return dataclasses.replace(self.st, status=C.CANCELLED, end_reason=req.reason)

    @cancel.validator
    def _check_cancel(self, req: cb.CancelCallback) -> None:
        if self.st.status in cb.FINAL or self.cancelled:
            raise ApplicationError(f"the callback is {self.st.status}", type=cb.ERR_FINISHED)
