"""Stand-ins for the callback workflow's activities, under the real names: a scripted far end
(each attempt's call reports the next scripted outcome by the real signal), a do-not-call set,
and every row written."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client

import core.callbacks as cb
from activities import types as act


@dataclass
class CallbackStandIns:
    client: Client
    outcomes: list[str] = field(default_factory=list)  # next attempt's outcome first
    dnc: set[str] = field(default_factory=set)
    dials: list[tuple[cb.StartCallbackCall, float]] = field(default_factory=list)
    rows: list[cb.CallbackState] = field(default_factory=list)
    capped: int = 0  # this many starts refused by the hourly cap first

    def activities(self) -> list[Callable[..., Any]]:
        return [self.start_callback_call, self.on_do_not_call, self.record_callback]

    @activity.defn(name=act.START_CALLBACK_CALL)
    async def start_callback_call(self, req: cb.StartCallbackCall) -> bool:
        if self.capped > 0:
            self.capped -= 1
            return False
        self.dials.append((req, activity.info().current_attempt_scheduled_time.timestamp()))
        outcome = self.outcomes.pop(0) if self.outcomes else "answered"
        handle = self.client.get_workflow_handle(req.report_to)
        await handle.signal(cb.SIGNAL_DIAL_OUTCOME, cb.DialOutcome(req.call_id, outcome))
        return True

    @activity.defn(name=act.ON_DO_NOT_CALL)
    async def on_do_not_call(self, phone: str) -> bool:
        return phone in self.dnc

    @activity.defn(name=act.RECORD_CALLBACK)
    async def record_callback(self, st: cb.CallbackState) -> None:
        self.rows.append(copy.deepcopy(st))
