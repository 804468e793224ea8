"""The pre-deploy check: replay the histories of running and recent calls against this code.

`check_cluster` fetches from Temporal the histories of every execution on the task queue that
is still running or closed within `since`, and replays them (payloads decoded with the same
codec as the worker, `core.temporal.data_converter`) through the worker's own workflow classes.
A non-determinism error means this code would break those runs: do not deploy it. An execution
deleted between the listing and the fetch of its history (an erased call, retention) is counted as
`gone`, not as a failure: there is no run of it left to break.
`check_files` does the same for exported JSON histories (tests/histories, a bug report's file).

Executions pinned to a Worker Deployment Version (calls, docs/deploy.md) are left out: they run
on their own version's code to the end and never on this one. With `bridge` (the deploy from an
unversioned release) the calls of unversioned workers are left out too: they finish on their
own workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import temporalio.converter
from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer


@dataclass
class ReplayReport:
    checked: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # workflow_id, run_id, error
    gone: list[str] = field(default_factory=list)  # workflow ids deleted before their fetch

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "failures": self.failures,
            "gone": self.gone,
        }


def workflows_of_this_code() -> Sequence[type]:
    """The classes the worker registers (imported here so the check always matches it)."""
    from worker import WORKFLOWS

    return WORKFLOWS


def cluster_query(task_queue: str, since: datetime, *, bridge: bool = False) -> str:
    """The executions this code may run: not pinned (and, with `bridge`, no call of an
    unversioned worker), running or closed since `since`."""
    query = (
        f"TaskQueue = '{task_queue}' AND "
        f"(ExecutionStatus = 'Running' OR CloseTime > '{since.isoformat()}') AND "
        "(TemporalWorkflowVersioningBehavior IS NULL OR TemporalWorkflowVersioningBehavior != 'Pinned')"
    )
    if bridge:
        query += (
            " AND NOT (WorkflowType = 'CallWorkflow' AND TemporalWorkerDeploymentVersion IS NULL)"
        )
    return query


async def _replay(
    histories: AsyncIterator[WorkflowHistory],
    converter: temporalio.converter.DataConverter,
    on_each: Callable[[str], None] | None,
) -> ReplayReport:
    report = ReplayReport()
    ids: dict[str, str] = {}

    async def counted() -> AsyncIterator[WorkflowHistory]:
        async for h in histories:
            report.checked += 1
            if h.events:
                run_id = h.events[
                    0
                ].workflow_execution_started_event_attributes.original_execution_run_id
                ids[run_id] = h.workflow_id
            if on_each:
                on_each(h.workflow_id)
            yield h

    replayer = Replayer(workflows=workflows_of_this_code(), data_converter=converter)
    results = await replayer.replay_workflows(counted(), raise_on_replay_failure=False)
    for run_id, err in results.replay_failures.items():
        report.failures.append(
            {"workflow_id": ids.get(run_id, ""), "run_id": run_id, "error": str(err)[:2000]}
        )
    return report


async def check_cluster(
    client: Client,
    *,
    task_queue: str,
    since: datetime,
    limit: int,
    bridge: bool = False,
    on_each: Callable[[str], None] | None = None,
) -> ReplayReport:
    gone: list[str] = []
    executions = client.list_workflows(cluster_query(task_queue, since, bridge=bridge), limit=limit)
    report = await _replay(histories_still_there(client, executions, gone), client.data_converter,
                           on_each)  # fmt: skip
    report.gone = gone
    return report


async def histories_still_there(
    client: Client, executions: AsyncIterator[WorkflowExecution], gone: list[str]
) -> AsyncIterator[WorkflowHistory]:
    """The history of each listed execution, in order; one deleted since it was listed (Temporal
    answers NOT_FOUND) goes to `gone` instead. Any other refusal is raised."""
    async for execution in executions:
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        try:
            history = await handle.fetch_history()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            gone.append(execution.id)
            continue
        yield history


async def check_files(
    paths: Sequence[Path],
    converter: temporalio.converter.DataConverter,
    on_each: Callable[[str], None] | None = None,
) -> ReplayReport:
    async def load() -> AsyncIterator[WorkflowHistory]:
        for p in paths:
            yield WorkflowHistory.from_json(p.stem, p.read_text())

    return await _replay(load(), converter, on_each)


def history_files(where: Path) -> list[Path]:
    return sorted(where.glob("*.json")) if where.is_dir() else [where]


async def export(client: Client, workflow_id: str, run_id: str | None = None) -> str:
    """The history as Temporal stores it (payloads still encrypted when a key is set): safe to
    attach to a bug report, and replayable by `check_files`."""
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return history.to_json()
