"""What the API and the activities ask of the desk's workflow (`desk`, workflows/desk.py).

The first caller starts it: a hand-off by signal-with-start, a rep's update after a start
that reuses a running desk (`USE_EXISTING`), so nobody has to start the desk by hand and a
desk that continued as new is the same id. Refusals come back as `DeskRefused`.
"""

from __future__ import annotations

from typing import TypeVar, cast

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

import core.desk as d
from workflows.desk import DeskWorkflow

T = TypeVar("T")


class DeskRefused(Exception):
    """The desk refused an update; the message says why (the API's 409)."""


def _refusal(exc: WorkflowUpdateFailedError) -> DeskRefused | None:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__ or getattr(cause, "cause", None)
    if cause is not None and cause.type == d.ERR_DESK_REFUSED:
        return DeskRefused(cause.message)
    return None


class DeskClient:
    def __init__(self, client: Client, config: d.DeskConfig, task_queue: str,
                 workflow_id: str = d.DESK_WORKFLOW_ID) -> None:  # fmt: skip
        self.client = client
        self.workflow_id = workflow_id
        self.config = config
        self.task_queue = task_queue
        self._started = False

    def handle(self) -> WorkflowHandle:
        return self.client.get_workflow_handle(self.workflow_id)

    async def ensure_started(self) -> WorkflowHandle:
        if not self._started:
            await self.client.start_workflow(
                DeskWorkflow.run, d.DeskInput(self.config), id=self.workflow_id,
                task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )  # fmt: skip
            self._started = True
        return self.handle()

    async def enqueue(self, req: d.Enqueue) -> None:
        await self.client.start_workflow(
            DeskWorkflow.run, d.DeskInput(self.config), id=self.workflow_id,
            task_queue=self.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal=d.SIGNAL_ENQUEUE, start_signal_args=[req],
        )  # fmt: skip

    async def call_left(self, req: d.CallLeft) -> None:
        await self.handle().signal(d.SIGNAL_CALL_LEFT, req)

    async def set_rep(self, req: d.SetRep) -> d.Rep:
        return await self._update(d.UPDATE_SET_REP, req, d.Rep)

    async def answer(self, req: d.AnswerOffer) -> d.Accepted | None:
        return cast(d.Accepted | None,
                    await self._update(d.UPDATE_ANSWER_OFFER, req, d.Accepted | None))  # type: ignore[arg-type]  # fmt: skip

    async def snapshot(self) -> d.Snapshot:
        handle = await self.ensure_started()
        return await handle.query(d.QUERY_SNAPSHOT, result_type=d.Snapshot)

    async def peek(self) -> d.Snapshot | None:
        """The snapshot of a running desk, None when no desk has started (never starts one)."""
        try:
            return await self.handle().query(d.QUERY_SNAPSHOT, result_type=d.Snapshot)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _update(self, name: str, arg: object, result_type: type[T]) -> T:
        handle = await self.ensure_started()
        try:
            return await handle.execute_update(name, arg, result_type=result_type)
        except WorkflowUpdateFailedError as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise refused from exc
            raise
