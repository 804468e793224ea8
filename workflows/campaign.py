"""`campaign-<id>`: dial a list of numbers, a few at a time, inside the calling window.

    run: wait for `start_at` -> while numbers remain: wait while paused or outside the window
         (the campaign's zone, the callbacks' window rule) -> read the next batch
         (`next_campaign_numbers`) -> once fewer than `max_concurrent` calls ring, start as
         many as there are free places (`start_campaign_calls`, which dials the way a
         callback's attempt does; a number on the do-not-call list at that moment is skipped;
         the hour's outbound cap or the capacity kept for inbound calls holds it back) -> each
         call reports its dial outcome by signal (`dial_outcome`, as a callback's call does).

A number's call id is fixed before its start (`number_call_id`), so an outcome that arrives
before the start's result is still counted. A call that has not reported within its ringing
time and a grace is counted `failed` and frees its place. Outcomes are written to the
`campaign_numbers` rows with the next start (and at the end), never one activity each; the
`campaigns` row gets the status when it first runs and at the end.

History stays bounded: after a start, a run whose history passed `max_events` (or that the
server asks to) continues as new carrying the cursor, the counts, the batch not yet dialled
and the calls still ringing (their outcomes reach the new run: a signal names the workflow
id). Pause, resume and cancel are signals; a cancelled campaign dials no more and waits only
for the calls already ringing. Auto-upgrade: a changed command needs `workflow.patched`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.callbacks as cb
    import core.campaigns as cp

S = cp.CampaignStatus
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2))
HELD_BACK_S = 60.0  # the cap or the inbound reserve said no: look again this much later
OUTCOME_GRACE_S = 300.0  # beyond the ringing, how long a call may take to report its dial


@workflow.defn(name=cp.WORKFLOW_CAMPAIGN, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class CampaignWorkflow:
    @workflow.init
    def __init__(self, req: cp.CampaignRequest) -> None:
        self.req = req
        self.carry = req.carry or cp.CampaignCarry(progress=cp.Progress(total=req.total))
        self.zone = cb.zone(req.timezone)
        self.window = cb.Window.parse(req.hours)
        self.cancelled = False
        self.status = S.SCHEDULED if req.carry is None else S.RUNNING

    @workflow.run
    async def run(self, req: cp.CampaignRequest) -> cp.CampaignState:
        wait = req.start_at - workflow.now().timestamp()
        if wait > 0 and req.carry is None:
            await self._sleep(wait, "until the campaign starts")
        exhausted = False
        while not self.cancelled:
            await self._wait_until_open()
            if self.cancelled:
                break
            if self.status != S.RUNNING:
                self.status = S.RUNNING
                await self._record()  # the row says it runs (the lists read it)
            if not self.carry.pending:
                if exhausted:
                    break
                self.carry.pending = await self._next_batch()
                if not self.carry.pending:
                    exhausted = True
                    break
                self.carry.cursor = self.carry.pending[-1].seq
            if not await self._wait_for_place():
                continue  # paused, cancelled, or a silent call expired: look again
            await self._start_calls()
            if self._history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._next_input())
        while self.carry.ringing:  # the calls already ringing report, or time out
            await self._wait_for_place(all_of_them=True)
        self.status = S.CANCELLED if self.cancelled else S.COMPLETED
        await self._record()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    async def _sleep(self, seconds: float, summary: str) -> None:
        try:
            await workflow.wait_condition(lambda: self.cancelled,
                                          timeout=timedelta(seconds=seconds),
                                          timeout_summary=summary)  # fmt: skip
        except TimeoutError:
            pass

    async def _wait_until_open(self) -> None:
        """Not paused, and inside the window in the campaign's zone."""
        while not self.cancelled:
            await workflow.wait_condition(lambda: not self.carry.paused or self.cancelled)
            now = workflow.now()
            opens = cb.next_dial_at(now, self.zone, self.window)
            if opens <= now:
                return
            await self._sleep((opens - now).total_seconds(), "until the calling window opens")

    async def _wait_for_place(self, *, all_of_them: bool = False) -> bool:
        """True once fewer than `max_concurrent` calls ring (with `all_of_them`: none). On
        the oldest ringing call's deadline, the calls past theirs count `failed`."""
        bound = self.req.ringing_timeout_s + OUTCOME_GRACE_S

        def ready() -> bool:
            if all_of_them:
                return not self.carry.ringing
            return self.cancelled or self.carry.paused or (
                len(self.carry.ringing) < self.req.max_concurrent)  # fmt: skip

        if ready():
            return not (self.cancelled or self.carry.paused) or all_of_them
        oldest = min(r.started_at for r in self.carry.ringing)
        left = max(1.0, oldest + bound - workflow.now().timestamp())
        try:
            await workflow.wait_condition(ready, timeout=timedelta(seconds=left),
                                          timeout_summary="a place among the ringing calls")  # fmt: skip
        except TimeoutError:
            now = workflow.now().timestamp()
            for r in [r for r in self.carry.ringing if r.started_at + bound <= now]:
                self._settle(r.call_id, "dial_failed")
            return False
        return not (self.cancelled or self.carry.paused) or all_of_them

    async def _next_batch(self) -> list[cp.CampaignNumber]:
        return await workflow.execute_activity(
            act.NEXT_CAMPAIGN_NUMBERS,
            cp.NextNumbers(self.req.campaign_id, self.carry.cursor, self.req.batch_size),
            result_type=list[cp.CampaignNumber], start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )  # fmt: skip

    async def _start_calls(self) -> None:
        free = self.req.max_concurrent - len(self.carry.ringing)
        take, done = self.carry.pending[:free], self.carry.done
        now = workflow.now().timestamp()
        # Ringing before the start is asked for: an outcome may come before its result.
        for n in take:
            self.carry.ringing.append(
                cp.Ringing(n.seq, cp.number_call_id(self.req.campaign_id, n.seq), now)
            )
        self.carry.done = []
        got = await workflow.execute_activity(
            act.START_CAMPAIGN_CALLS,
            cp.StartCampaignCalls(self.req.campaign_id, take, self.req.reason,
                                  workflow.info().workflow_id, self.req.ringing_timeout_s,
                                  done),
            result_type=list[str], start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )  # fmt: skip
        held = False
        for n, what in zip(take, got, strict=True):
            call_id = cp.number_call_id(self.req.campaign_id, n.seq)
            if what == cp.HELD_BACK:
                held = True
                self.carry.ringing = [r for r in self.carry.ringing if r.call_id != call_id]
                continue
            self.carry.pending.remove(n)
            if what == cp.STARTED:
                self.carry.progress.dialled += 1
            else:  # on the do-not-call list now
                self.carry.ringing = [r for r in self.carry.ringing if r.call_id != call_id]
                self.carry.progress.skipped += 1
                self.carry.done.append(cp.NumberOutcome(n.seq, cp.DO_NOT_CALL))
        if held:
            await self._sleep(HELD_BACK_S, "the outbound cap or the inbound reserve")

    def _settle(self, call_id: str, outcome: str) -> None:
        for r in self.carry.ringing:
            if r.call_id == call_id:
                self.carry.ringing.remove(r)
                self.carry.progress.count(outcome)
                self.carry.done.append(cp.NumberOutcome(r.seq, outcome, call_id))
                return  # a late or repeated report of a settled call is dropped

    def _history_full(self) -> bool:
        info = workflow.info()
        return (info.get_current_history_length() >= self.req.max_events
                or info.is_continue_as_new_suggested())  # fmt: skip

    def _next_input(self) -> cp.CampaignRequest:
        self.carry.runs += 1
        self.carry.events += workflow.info().get_current_history_length()
        return cp.CampaignRequest(**{**self.req.__dict__, "carry": self.carry})

    async def _record(self) -> None:
        st = self.progress()
        st.done, self.carry.done = self.carry.done, []
        await workflow.execute_activity(
            act.RECORD_CAMPAIGN, st, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
        )  # fmt: skip

    @workflow.query(name=cp.QUERY_PROGRESS)
    def progress(self) -> cp.CampaignState:
        paused = self.carry.paused and self.status in (S.SCHEDULED, S.RUNNING)
        status = S.PAUSED if paused else self.status
        return cp.CampaignState(self.req.campaign_id, status, self.carry.progress,
                                len(self.carry.ringing), self.carry.runs)  # fmt: skip

    @workflow.signal(name=cb.SIGNAL_DIAL_OUTCOME)
    def dial_outcome(self, outcome: cb.DialOutcome) -> None:
        self._settle(outcome.call_id, outcome.outcome)

    @workflow.signal(name=cp.SIGNAL_PAUSE)
    def pause(self) -> None:
        self.carry.paused = True

    @workflow.signal(name=cp.SIGNAL_RESUME)
    def resume(self) -> None:
        self.carry.paused = False

    @workflow.signal(name=cp.SIGNAL_CANCEL)
    def cancel(self) -> None:
        self.cancelled = True
