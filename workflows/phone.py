"""The phone half of CallWorkflow (workflow code, mixed in like healing and recording): the
outbound dial and the cold transfer. An inbound phone call needs no code here: LiveKit made
its room with the agent in it (the dispatch rule's room_config), so the call starts with its
room ready, and a caller who hangs up ends it (the API starts phone calls with no rejoin grace).

- Outbound (`cfg.dial` set): status `dialing`; the room is created with the agent dispatched;
  `dial_outbound` rings the number and answers an outcome. `answered`: the call goes on as any
  other (waiting for the agent, who is usually in already). Anything else ends the call at
  once with that outcome as `end_reason` (busy, no_answer, rejected, unavailable,
  dial_failed): no recording (none has started), no hand-off, the room deleted.
- Transfer (`transfer` update, a phone call in progress only): `transfer_call` refers the
  caller to another number; once it is done the call ends `transferred`. While it runs, the
  caller's leaving (which the REFER causes) does not end the call `customer_left`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.callbacks as cb
    import core.events as ev
    import core.models as m

from workflows.common import cause

if TYPE_CHECKING:
    from workflows.ledger import CallLedger

S = m.CallStatus
# A dial that LiveKit could not even take is tried once more; a phone that did not answer is
# an outcome, never a retry (that would ring someone twice).
DIAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_attempts=2,
    non_retryable_error_types=act.NON_RETRYABLE_ERRORS,
)
TRANSFER_RETRY = RetryPolicy(maximum_attempts=1)
END_TRANSFERRED = "transferred"


class Phone:
    """Mixed into CallWorkflow, which supplies these."""

    book: CallLedger
    cfg: m.CallConfig
    call_id: str
    room: str
    _transferring: bool

    async def _ensure_room(self) -> None: ...

    async def _dial(self) -> bool:
        """An outbound call: True once the phone answered; otherwise the call is settled."""
        dial = self.cfg.dial
        assert dial is not None
        self.book.set_status(S.DIALING)
        try:
            await self._ensure_room()
        except ApplicationError:
            self.book.finish(S.FAILED, "room_unavailable", "system")
            await self._report_dial(m.DialResult("dial_failed", detail="room_unavailable"))
            return False
        inp = act.DialInput(
            call_id=self.call_id,
            room_name=self.room,
            to=dial.to,
            identity=m.customer_identity(self.call_id),
            name=self.book.customer_name or "Customer",
            ringing_timeout_s=dial.ringing_timeout_s,
        )
        try:
            result = await workflow.execute_activity(
                act.DIAL_OUTBOUND, inp, result_type=m.DialResult,
                start_to_close_timeout=timedelta(seconds=dial.ringing_timeout_s + 30),
                retry_policy=DIAL_RETRY,
            )  # fmt: skip
        except ActivityError as err:
            result = m.DialResult("dial_failed", detail=cause(err))
        self.book.emit(ev.Status(status=S.DIALING, dial=result.outcome,
                                 sip_status=result.sip_status or ev.UNSET))  # fmt: skip
        await self._report_dial(result)
        if result.outcome == "answered":
            self.book.set_status(S.WAITING_FOR_AGENT, "answered")
            return True
        self.book.finish(S.COMPLETED, result.outcome, "phone")
        return False

    async def _report_dial(self, result: m.DialResult) -> None:
        """A callback's call tells its callback how the dial went (the callback decides on a
        retry). A callback that is gone (cancelled, erased) changes nothing for the call."""
        dial = self.cfg.dial
        if dial is None or not dial.report_to:
            return
        outcome = cb.DialOutcome(self.call_id, result.outcome, result.sip_status)
        handle = workflow.get_external_workflow_handle(dial.report_to)
        try:
            await handle.signal(cb.SIGNAL_DIAL_OUTCOME, outcome)
        except FailureError:
            workflow.logger.info("callback gone", extra={"call_id": self.call_id})

    @workflow.update(name=m.UPDATE_TRANSFER)
    async def transfer(self, req: m.TransferRequest) -> m.EndCallResult:
        """Cold transfer of the phone caller; the call ends `transferred` once it is done."""
        self._transferring = True
        caller = next((p.identity for p in reversed(self.book.s.participants)
                       if p.kind == "customer" and not p.left_at), "")  # fmt: skip
        inp = act.TransferInput(self.call_id, self.room, caller, req.to)
        try:
            failed = await workflow.execute_activity(
                act.TRANSFER_CALL, inp, result_type=str,
                start_to_close_timeout=timedelta(seconds=90), retry_policy=TRANSFER_RETRY,
            )  # fmt: skip
        except ActivityError as err:
            failed = cause(err)
        self._transferring = False
        self.book.emit(ev.SupervisorAction(action="transfer", by=req.by,
                                           detail=failed or "done"))  # fmt: skip
        if failed:
            raise ApplicationError(f"the transfer failed: {failed}", type=m.ERR_TRANSFER_FAILED)
        self.book.request_end(END_TRANSFERRED, req.by)
        await workflow.wait_condition(lambda: self.book.status != S.IN_PROGRESS)
        return m.EndCallResult(self.call_id, self.book.status, END_TRANSFERRED)

    @transfer.validator
    def _check_transfer(self, req: m.TransferRequest) -> None:
        if self.cfg.channel != m.Channel.PHONE:
            raise ApplicationError("only a phone call can be transferred", type=m.ERR_NOT_PHONE)
        if self.book.end is not None or self.book.status != S.IN_PROGRESS or self._transferring:
            raise ApplicationError("the call is not in progress", type="CallEnded")

    def _transfer_leaving(self, sig: m.ParticipantLeft) -> bool:
        """True for the caller leaving because of the transfer (it must not end the call
        `customer_left`; the transfer ends it)."""
        if self._transferring and sig.kind == "customer":
            self.book.mark_left(sig.identity)
            return True
        return False
