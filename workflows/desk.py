"""DeskWorkflow (`desk`): the queue of calls handed off to people, and the reps who take them.

One long-lived workflow for the whole desk, in the manner of temporalio/samples-python's
`resource_pool` (a workflow owns the resources and the waiters, carries both through
continue-as-new). One, not one per skill: a rep with two skills is one person, and a queue per
skill would need a lock across queues so that no rep holds two offers at once. A single
authority makes "two reps never get the same call" and "one offer per rep" plain facts of
its state (core/desk.py `DeskBook`, where every decision lives, pure and tested alone).

Ways in: `enqueue` and `call_left` signals from the call's workflow (by an activity that
signals-with-start, so the first hand-off starts the desk); `set_rep` and `answer_offer`
updates from the API (validated first: a refusal is the API's 409 and leaves no trace in
history); the `snapshot` query for the API and the live desk.

Every turn of the main loop waits on a change or the next due moment (an offer ringing out, a
wrap-up ending, a caller reaching the longest wait); then it routes. What a waiting caller must
hear is passed to the call's agent by the `tell_caller` activity, in order, off the main loop.

Auto-upgrade: the desk moves to new code mid-run, so a changed command needs `workflow.patched`
(and the patch is removed once no run that lacks it remains: see docs/workflows.md).
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.desk as d

TELL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1),
                         maximum_interval=timedelta(seconds=5), maximum_attempts=5)  # fmt: skip


def _now() -> float:
    return workflow.now().timestamp()


@workflow.defn(name=d.WORKFLOW_DESK, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class DeskWorkflow:
    @workflow.init
    def __init__(self, inp: d.DeskInput) -> None:
        self.book = d.DeskBook(inp.config, inp.carried, lambda: str(workflow.uuid4()))
        self._armed: set[float] = set()
        self._rang = 0
        self._telling = False

    @workflow.run
    async def run(self, inp: d.DeskInput) -> None:
        teller = asyncio.create_task(self._tell_loop())
        while True:
            self.book.tick(_now())
            self._arm(self.book.deadlines())
            await workflow.wait_condition(functools.partial(self._moved, self.book.version,
                                                            self._rang))  # fmt: skip
            if self._history_large():
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() and not self.book.announcements
                    and not self._telling)  # fmt: skip
                teller.cancel()
                workflow.continue_as_new(d.DeskInput(inp.config, self.book.carry()))

    def _moved(self, version: int, rang: int) -> bool:
        return (self.book.version, self._rang) != (version, rang) or self._history_large()

    def _arm(self, deadlines: list[float]) -> None:
        """A timer for each deadline not yet armed (an offer ringing out, a wrap-up ending, a
        caller reaching the longest wait). Timers are never cancelled: one that fires after its
        offer was answered only wakes the loop (a cancelled timer per answer would cost as
        much, and cancellation's ordering against other commands is what replays trip on)."""
        for at in sorted(set(deadlines) - self._armed):
            self._armed.add(at)
            asyncio.create_task(self._alarm(at))

    async def _alarm(self, at: float) -> None:
        await workflow.sleep(max(0.001, at - _now()), summary="desk deadline")
        self._armed.discard(at)
        self._rang += 1

    # --- from the calls ---------------------------------------------------------------------

    @workflow.signal(name=d.SIGNAL_ENQUEUE)
    def enqueue(self, req: d.Enqueue) -> None:
        self.book.enqueue(req, _now())

    @workflow.signal(name=d.SIGNAL_CALL_LEFT)
    def call_left(self, req: d.CallLeft) -> None:
        self.book.call_left(req, _now())

    # --- from the reps (through the API) ----------------------------------------------------

    @workflow.update(name=d.UPDATE_SET_REP)
    def set_rep(self, req: d.SetRep) -> d.Rep:
        return self.book.set_rep(req, _now())

    @set_rep.validator
    def _check_set_rep(self, req: d.SetRep) -> None:
        if why := self.book.set_rep_refusal(req):
            raise ApplicationError(why, type=d.ERR_DESK_REFUSED)

    @workflow.update(name=d.UPDATE_ANSWER_OFFER)
    def answer_offer(self, req: d.AnswerOffer) -> d.Accepted | None:
        return self.book.answer(req, _now())

    @answer_offer.validator
    def _check_answer(self, req: d.AnswerOffer) -> None:
        if why := self.book.answer_refusal(req, _now()):
            raise ApplicationError(why, type=d.ERR_DESK_REFUSED)

    @workflow.query(name=d.QUERY_SNAPSHOT)
    def snapshot(self) -> d.Snapshot:
        return self.book.snapshot(_now())

    # --- background -------------------------------------------------------------------------

    async def _tell_loop(self) -> None:
        """Passes each announcement to its caller's agent, oldest first. A call whose room is
        gone (it ended meanwhile) or a LiveKit outage past the retries loses that line only."""
        while True:
            await workflow.wait_condition(lambda: bool(self.book.announcements))
            self._telling = True
            for note in self.book.take_announcements():
                try:
                    await workflow.execute_activity(
                        act.TELL_CALLER, note, start_to_close_timeout=timedelta(seconds=10),
                        retry_policy=TELL_RETRY,
                    )  # fmt: skip
                except ActivityError:
                    workflow.logger.warning("caller not told", extra={"call_id": note.call_id})
            self._telling = False

    def _history_large(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.book.cfg.continue_as_new_after_events
        )
