"""`RetentionWorkflow`: erase every call older than the retention period (a Schedule runs it).

Each expired call is erased by its own `EraseCallWorkflow(erase-<call_id>)` child, exactly as
an admin's `DELETE /api/calls/{id}` does, so the erasure is audited the same way (requested by
`retention`). A call still live (its workflow runs) or whose erasure is refused is skipped and
found again by the next sweep. A run handles one page of `batch` calls, then continues as new
with the page's cursor while the page was full: the sweep pages past the calls it skipped, so
a full page of them never stops it erasing the rest. Runs that started before the cursor (no
`PATCH_PAGE_PAST_SKIPPED` marker) replay as they ran: they continued only after erasing one.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
PATCH_PAGE_PAST_SKIPPED = "retention-pages-past-skipped"


@dataclass
class RetentionInput:
    retention_days: int
    batch: int = 200
    # The sweep's cursor (continue-as-new): start after this call; "" from the oldest.
    after_created_at: str = ""
    after_call_id: str = ""
    cutoff: str = ""  # kept across continue-as-new, so one sweep has one cutoff


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
        cutoff = inp.cutoff or iso((now - timedelta(days=inp.retention_days)).timestamp())
        found = await workflow.execute_activity(
            FIND_EXPIRED_CALLS,
            ExpiredCallsQuery(cutoff, inp.batch, inp.after_created_at, inp.after_call_id),
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

        for call_id in found.live:
            workflow.logger.info("retention_skipped_live call_id=%s", call_id)
        result.skipped.extend(found.live)
        await asyncio.gather(*(erase(c) for c in found.call_ids))
        workflow.set_current_details(
            f"cutoff {cutoff} · erased {len(result.erased)} · skipped {len(result.skipped)}"
        )
        if workflow.patched(PATCH_PAGE_PAST_SKIPPED):
            if found.listed >= inp.batch and found.next_call_id:
                workflow.continue_as_new(
                    dataclasses.replace(
                        inp,
                        after_created_at=found.next_created_at,
                        after_call_id=found.next_call_id,
                        cutoff=cutoff,
                    )
                )
        elif len(found.call_ids) >= inp.batch and result.erased:
            workflow.continue_as_new(inp)
        return result
