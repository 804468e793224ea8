"""The retention schedule's one activity: which calls are past the retention period.

`find_expired_calls` lists the calls created before the cutoff, oldest first, one page of at
most `limit` after a cursor (`after_created_at`, `after_call_id`), and says where the next page
starts: a sweep pages past every call it cannot erase, so such calls never hold up the rest.
Erased calls have no row any more, so a call is listed until it is erased.

A call whose row still says it is live (`waiting_for_agent`, `in_progress`...) is erasable when
its workflow is not running: Temporal is asked (describe `call-<id>`); an execution that closed
without writing a final status (terminated, failed, timed out) or that Temporal no longer has
(NOT_FOUND) is not live. Only a running one is left out (`live`), as `EraseCallWorkflow` would
refuse it anyway. Without a Temporal client every such row counts as live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity

FIND_EXPIRED_CALLS = "find_expired_calls"

_PAGE = """
SELECT call_id, created_at, status FROM calls
WHERE created_at < $1::text::timestamptz
  AND ($2::text = '' OR (created_at, call_id) > ($2::text::timestamptz, $3::text))
ORDER BY created_at, call_id LIMIT $4
"""


@dataclass
class ExpiredCallsQuery:
    cutoff: str  # ISO 8601 UTC: calls created before it are past retention
    limit: int = 200
    # The cursor: the page starts after this call (created_at ISO 8601, call_id); "" the first.
    after_created_at: str = ""
    after_call_id: str = ""


@dataclass
class ExpiredCalls:
    call_ids: list[str] = field(default_factory=list)  # erasable now
    live: list[str] = field(default_factory=list)  # listed, but their workflow still runs
    listed: int = 0  # rows on this page (a full page: there may be more)
    # Where the next page starts (the last row of this one); "" when the page was empty.
    next_created_at: str = ""
    next_call_id: str = ""


class RetentionActivities:
    def __init__(self, pool, client: Any = None) -> None:  # type: ignore[no-untyped-def]
        self.pool = pool
        self.client = client

    @activity.defn(name=FIND_EXPIRED_CALLS)
    async def find_expired_calls(self, q: ExpiredCallsQuery) -> ExpiredCalls:
        from core.models import CallStatus

        live_statuses = {s.value for s in CallStatus if s.is_active}
        rows = await self.pool.fetch(_PAGE, q.cutoff, q.after_created_at, q.after_call_id, q.limit)
        found = ExpiredCalls(listed=len(rows))
        for r in rows:
            activity.heartbeat(r["call_id"])
            if r["status"] in live_statuses and await self._running(r["call_id"]):
                found.live.append(r["call_id"])
            else:
                found.call_ids.append(r["call_id"])
        if rows:
            last = rows[-1]
            at: datetime = last["created_at"]
            found.next_created_at, found.next_call_id = at.isoformat(), last["call_id"]
        activity.logger.info(
            "find_expired_calls cutoff=%s found=%d live=%d after=%s",
            q.cutoff, len(found.call_ids), len(found.live), q.after_call_id or "-",
        )  # fmt: skip
        return found

    async def _running(self, call_id: str) -> bool:
        """Whether `call-<id>` still runs (NOT_FOUND or closed: it does not)."""
        from temporalio.client import WorkflowExecutionStatus
        from temporalio.service import RPCError, RPCStatusCode

        from core.models import call_workflow_id

        if self.client is None:
            return True
        try:
            desc = await self.client.get_workflow_handle(call_workflow_id(call_id)).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return desc.status == WorkflowExecutionStatus.RUNNING
