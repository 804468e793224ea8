"""Stand-ins for the campaign workflow's activities, under the real names, at the protocol
boundary the tests cannot run for real (the phone line): the numbers in memory, a do-not-call
set, and each started call reporting its scripted outcome back by the real `dial_outcome`
signal. `report`:

- "instant": before the start returns (time-skipping server: no signal ever arrives while a
  workflow task runs, and nothing rings in real time);
- "async": from a task of its own a moment later (several ring at once; real time);
- "manual": when the test calls `release()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client

import core.callbacks as cb
import core.campaigns as cp
from activities import types as act


@dataclass
class CampaignStandIns:
    client: Client
    numbers: list[str]
    outcome: Callable[[int], str] = lambda seq: "answered"
    dnc: set[str] = field(default_factory=set)
    report: str = "instant"  # instant | async | manual
    held_back: int = 0  # the first this many starts are held back (the cap said no)
    started: list[int] = field(default_factory=list)
    started_at: list[datetime] = field(default_factory=list)  # workflow time of each start
    ringing: list[cp.StartCampaignCalls] = field(default_factory=list)
    ringing_calls: list[tuple[str, int]] = field(default_factory=list)
    most_ringing: int = 0
    written: dict[int, str] = field(default_factory=dict)  # seq -> outcome, as the rows
    recorded: list[cp.CampaignState] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def activities(self) -> list[Callable[..., Any]]:
        return [self.next_campaign_numbers, self.start_campaign_calls, self.record_campaign]

    @activity.defn(name=act.NEXT_CAMPAIGN_NUMBERS)
    async def next_campaign_numbers(self, req: cp.NextNumbers) -> list[cp.CampaignNumber]:
        rows = self.numbers[req.after : req.after + req.limit]
        return [cp.CampaignNumber(req.after + i + 1, n) for i, n in enumerate(rows)]

    @activity.defn(name=act.START_CAMPAIGN_CALLS)
    async def start_campaign_calls(self, req: cp.StartCampaignCalls) -> list[str]:
        self._write(req.done)
        if self.held_back > 0:
            self.held_back -= 1
            return [cp.HELD_BACK] * len(req.numbers)
        got = []
        for n in req.numbers:
            if n.phone in self.dnc:
                got.append(cp.DO_NOT_CALL)
                continue
            got.append(cp.STARTED)
            self.started.append(n.seq)
            self.started_at.append(activity.info().current_attempt_scheduled_time)
            call = (cp.number_call_id(req.campaign_id, n.seq), n.seq)
            self.ringing_calls.append(call)
            self.most_ringing = max(self.most_ringing, len(self.ringing_calls))
            if self.report == "instant":
                await self._report(req.report_to, call)
            elif self.report == "async":
                task = asyncio.create_task(self._later(req.report_to, call))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return got

    async def _later(self, report_to: str, call: tuple[str, int]) -> None:
        await asyncio.sleep(0.01)
        await self._report(report_to, call)

    async def _report(self, report_to: str, call: tuple[str, int]) -> None:
        self.ringing_calls.remove(call)  # before the signal: the workflow only lags behind
        outcome = cb.DialOutcome(call[0], self.outcome(call[1]))
        await self.client.get_workflow_handle(report_to).signal(cb.SIGNAL_DIAL_OUTCOME, outcome)

    async def release(self, report_to: str, count: int | None = None) -> int:
        """Manual mode: the oldest `count` ringing calls (all by default) report."""
        calls = self.ringing_calls[: count if count is not None else len(self.ringing_calls)]
        for call in list(calls):
            await self._report(report_to, call)
        return len(calls)

    def _write(self, done: list[cp.NumberOutcome]) -> None:
        for d in done:
            self.written[d.seq] = d.outcome

    @activity.defn(name=act.RECORD_CAMPAIGN)
    async def record_campaign(self, st: cp.CampaignState) -> None:
        self._write(st.done)
        self.recorded.append(st)
