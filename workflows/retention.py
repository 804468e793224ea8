"""`RetentionWorkflow`: erase every call older than the retention period (a Schedule runs it).

Each expired call is erased by its own `EraseCallWorkflow(erase-<call_id>)` child, exactly as
an admin's `DELETE /api/calls/{id}` does, so the erasure is audited the same way (requested by
`retention`). A call whose erasure is refused (its pipeline still runs) is skipped and found
again by the next run. A run handles `batch` calls, then continues as new while more remain.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior, WorkflowIDReusePolicy
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.erase import EraseCallInput
    from activities.retention import FIND_EXPIRED_CALLS, ExpiredCalls, ExpiredCallsQuery
    from workflows.common import QUICK_RETRY, iso
    from workflows.erase import EraseCallWorkflow

WORKFLOW_RETENTION = "RetentionWorkflow"
RETENTION_SCHEDULE_ID = "call-retention"
REQUESTED_BY = "retention"
PARALLEL_ERASURES = 5


@dataclass
class RetentionInput:
    retention_days: int
    batch: int = 200


@dataclass
class RetentionResult:
    cutoff: str
    erased: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # refused now; the next run tries again


@workflow.defn(name=WORKFLOW_RETENTION, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class RetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> RetentionResult:
        now = workflow.now()
        cutoff = iso((now - timedelta(days=inp.retention_days)).timestamp())
        found = await workflow.execute_activity(
            FIND_EXPIRED_CALLS,
            ExpiredCallsQuery(cutoff=cutoff, limit=inp.batch),
            result_type=ExpiredCalls,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=QUICK_RETRY,
        )
        result = RetentionResult(cutoff=cutoff)
        gate = asyncio.Semaphore(PARALLEL_ERASURES)

        async def erase(call_id: str) -> None:
            async with gate:
                try:
                    await workflow.execute_child_workflow(
                        EraseCallWorkflow.run,
                        EraseCallInput(call_id, REQUESTED_BY, iso(now.timestamp())),
                        id=f"erase-{call_id}",
                        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    )
                    result.erased.append(call_id)
                except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
                    workflow.logger.warning("retention_skipped call_id=%s: %s", call_id, err)
                    result.skipped.append(call_id)

        await asyncio.gather(*(erase(c) for c in found.call_ids))
        workflow.set_current_details(
            f"cutoff {cutoff} · erased {len(result.erased)} · skipped {len(result.skipped)}"
        )
        if len(found.call_ids) >= inp.batch and result.erased:
            workflow.continue_as_new(inp)
        return result
