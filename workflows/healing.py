"""Healing of a call (workflow code, mixed into CallWorkflow): an agent that never arrives or
drops mid-call is dispatched again, and a customer whose connection drops may come back.

- Dispatch healing: the room's own dispatch is attempt 1. While no agent has joined,
  every `agent_redispatch_after_s` one more dispatch is made (AgentDispatch `CreateDispatch`),
  up to `agent_dispatch_attempts` in all, inside `agent_join_timeout_s`; then `no_agent`.
- Agent-loss healing: the agent leaves while the customer is still there, reconnecting, or
  still expected (a token was issued and `customer_join_timeout_s` has not passed), and the
  call is not ending -> a new agent is dispatched at once with `resume` in its
  metadata (it reads the transcript so far from `get_transcript` and picks up the thread),
  again every `agent_redispatch_after_s`, up to `agent_dispatch_attempts`; none joined ->
  a `handoff_requested` event, the call goes into the desk's queue (workflows/desk.py) and
  stays open `agent_lost_queue_s` (QUEUE_MAX_WAIT_S) for a rep; none joined (or the rep who
  did left, with still no agent) -> the call ends `agent_lost_no_replacement`.
- A dispatch refused because the room is gone (`RoomGone`)
  ends the call as LiveKit's `room_finished` does (`room_finished`, by `livekit`): no further
  dispatch, no hand-off. Any other failure (LiveKit unreachable) counts as an attempt.
- Customer reconnect: a customer who leaves an in-progress call has `customer_rejoin_grace_s`
  to join again (same identity, fresh token from `issue_token`); meanwhile the call stays
  open and the log says `reconnecting`; past the grace the call ends `customer_left`.

Every attempt and state change is an event in the call's log (`agent_dispatch`,
`customer_connection`), so the dashboard shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.desk as desk
    import core.events as ev
    import core.models as m

# Workflow code: runs inside the sandbox with the call workflow.
from workflows.common import QUICK_RETRY, cause, iso, wait_for
from workflows.ledger import now

if TYPE_CHECKING:
    from workflows.ledger import CallLedger

S = m.CallStatus
K = m.EventKind
AGENT_LOST_END_REASON = "agent_lost_no_replacement"
# The room_finished signal's reason: one reason for "the room closed under a live call",
# whichever told the workflow first (the dispatch_failed event says which).
ROOM_GONE_END_REASON = "room_finished"


class Healing:
    """The healing half of CallWorkflow (it supplies `book`, `cfg`, `call_id`); the state
    changes through `book`'s methods."""

    book: CallLedger
    cfg: m.CallConfig
    call_id: str
    room: str
    _handoffs: list[desk.Enqueue]  # the desk's queue (CallWorkflow._desk_watch)

    # --- dispatch -------------------------------------------------------------------------

    async def _await_agent_healing(self, settled: Callable[[], bool], deadline: float) -> None:
        """Waits until `settled()` or the deadline, dispatching again while nobody answers."""
        await wait_for(lambda: self.book.s.room_ready or settled(), deadline - now())
        if settled() or not self.book.s.room_ready:
            return
        if self.book.s.dispatch_serial == 1:
            self._dispatch_event(1, "room_created", "")
        await self._redispatch(settled, resume=False, deadline=deadline)

    async def _redispatch(
        self, settled: Callable[[], bool], *, resume: bool, deadline: float | None
    ) -> None:
        step = self.cfg.agent_redispatch_after_s
        while True:
            left = step if deadline is None else min(step, deadline - now())
            if await wait_for(settled, left):
                return
            if self.book.s.dispatch_attempts >= self.cfg.agent_dispatch_attempts or (
                deadline is not None and now() >= deadline
            ):
                if deadline is not None:
                    await wait_for(settled, deadline - now())  # the last one may still come
                return
            await self._dispatch_agent(resume)

    async def _dispatch_agent(self, resume: bool) -> None:
        self.book.dispatch_attempt()
        reason = "agent_lost" if resume else "no_agent_joined"
        try:
            res = await workflow.execute_activity(
                act.DISPATCH_AGENT,
                act.DispatchAgentInput(
                    call_id=self.call_id,
                    room_name=m.call_room(self.call_id, self.cfg),
                    agent_name=self.cfg.agent_name,
                    serial=self.book.s.dispatch_serial,
                    resume=resume,
                ),
                result_type=act.DispatchResult,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(seconds=30),
                retry_policy=QUICK_RETRY,
            )
            self._dispatch_event(self.book.s.dispatch_attempts, reason, res.dispatch_id)
        except ActivityError as err:
            # Counted as an attempt all the same: the next one comes after the usual wait.
            self._dispatch_event(self.book.s.dispatch_attempts, reason, "", error=cause(err))
            gone = isinstance(err.cause, ApplicationError) and err.cause.type == act.ERR_ROOM_GONE
            if gone:
                # The news LiveKit's room_finished webhook brings, learnt first: no next one.
                self.book.request_end(ROOM_GONE_END_REASON, "livekit")

    def _dispatch_event(self, attempt: int, reason: str, dispatch_id: str, error: str = "") -> None:
        self.book.emit(ev.AgentDispatch(status="dispatched" if not error else "dispatch_failed",
                                        attempt=attempt, of=self.cfg.agent_dispatch_attempts,
                                        reason=reason, dispatch_id=dispatch_id,
                                        error=error or ev.UNSET))  # fmt: skip

    # --- the agent lost mid-call ----------------------------------------------------------

    async def _agent_watch(self) -> None:
        """For the whole call: replaces an agent that left; a human is asked for otherwise."""
        while self.book.end is None:
            await workflow.wait_condition(
                lambda: self.book.end is not None or bool(self.book.s.agent_lost_at)
            )
            if self.book.end is not None:
                return

            def back() -> bool:
                return not self.book.s.agent_lost_at or self.book.end is not None

            if self.book.s.dispatch_attempts == 0:
                await self._dispatch_agent(resume=True)
            await self._redispatch(back, resume=True, deadline=None)
            if not back():
                detail = (
                    f"the agent left and no new agent joined after {self.book.s.dispatch_attempts} "
                    "dispatches: a person must take this call"
                )
                handoff_id = f"agent-lost-{self.book.s.dispatch_serial}"
                self.book.emit(ev.HandoffRequested(id=handoff_id,
                                                   kind=K.HANDOFF_REQUESTED.value, source="workflow",
                                                   detail=detail, at=iso(now())))  # fmt: skip
                if not await self._wait_for_a_rep(handoff_id, detail, back):
                    self.book.request_end(AGENT_LOST_END_REASON, "system")

    async def _wait_for_a_rep(self, handoff_id: str, detail: str, back: Callable[[], bool]) -> bool:
        """The lost call goes to the desk's queue (as `request_human` does) and stays open for
        `agent_lost_queue_s`: False when no rep joined by then (the call ends); True when an
        agent came back or the call ended meanwhile, or a rep joined and left again once the
        call ended or an agent is back (a rep who leaves an agentless call ends it)."""
        if self.cfg.agent_lost_queue_s <= 0:
            return False
        self._handoffs.append(desk.Enqueue(handoff_id, self.call_id, desk.DEFAULT_SKILL, detail,
                                           "workflow", self.room))  # fmt: skip
        if not await wait_for(lambda: back() or self._rep_in(), self.cfg.agent_lost_queue_s,
                              summary="a rep for the lost call"):  # fmt: skip
            return False
        await workflow.wait_condition(lambda: back() or not self._rep_in())
        return back()

    def _rep_in(self) -> bool:
        return any(p.kind == "rep" and not p.left_at for p in self.book.s.participants)

    def _customer_present(self) -> bool:
        """The customer is in, reconnecting, or still expected (a token was issued and the
        join timeout has not passed: their browser or phone may still be connecting)."""
        if self.book.s.customer_away_since:
            return True  # reconnecting counts: they may well be back in a moment
        if not self.book.customer_seen and self.book.s.token_issued_at:
            return now() < self.book.s.token_issued_at + self.cfg.customer_join_timeout_s
        records = [p for p in self.book.s.participants if p.kind == "customer"]
        if records:
            return any(not p.left_at for p in records)
        return any(e.speaker == "customer" for e in self.book.s.lines)

    def _agent_left_healed(self, sig: m.ParticipantLeft) -> bool:
        """True when the agent's leaving is healed (a new one is on its way) instead of ending."""
        if sig.identity != self.book.s.agent_identity:
            return False
        if self.book.s.agent_lost_at:
            return True  # already being replaced
        if not self._customer_present():
            return False
        self.book.agent_lost(sig.identity)
        return True

    def _agent_arrived(self, identity: str) -> bool:
        """A replacement agent joined a call whose agent was lost: it takes over the call."""
        if not self.book.s.agent_lost_at or not identity:
            return False
        self.book.agent_replaced(identity)
        return True

    # --- the customer's connection --------------------------------------------------------

    def _customer_left_healed(self, sig: m.ParticipantLeft) -> bool:
        """True when the customer's leaving starts the rejoin grace instead of ending."""
        if self.cfg.customer_rejoin_grace_s <= 0:
            return False
        self.book.customer_away(sig.identity, self.cfg.customer_rejoin_grace_s)
        return True

    async def _customer_watch(self) -> None:
        """Ends the call `customer_left` when a dropped customer is not back within the grace."""
        while self.book.end is None:
            await workflow.wait_condition(
                lambda: self.book.end is not None or bool(self.book.s.customer_away_since)
            )
            if self.book.end is not None:
                return
            since = self.book.s.customer_away_since
            back = await self._customer_back_by(since, since + self.cfg.customer_rejoin_grace_s)
            if not back:
                grace = self.cfg.customer_rejoin_grace_s
                self.book.emit(ev.CustomerConnection(status="gone", grace_s=grace))
                self.book.request_end("customer_left", "customer")

    async def _customer_back_by(self, since: float, due: float) -> bool:
        return await wait_for(
            lambda: self.book.s.customer_away_since != since or self.book.end is not None,
            due - now(),
        )

    def _heals(self) -> bool:
        """Healing applies: a call with its agent in, not ending."""
        live = self.book.status == S.IN_PROGRESS or (
            self.book.status == S.WAITING_FOR_AGENT and bool(self.book.s.agent_joined_at)
        )
        return self.book.end is None and live
