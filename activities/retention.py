"""The retention schedule's one activity: which calls are past the retention period.

`find_expired_calls` lists finished calls created before the cutoff, oldest first, at most
`limit` of them. Erased calls have no row any more, so a call is listed until it is erased.
Live calls are never listed (`EraseCallWorkflow` would refuse them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

FIND_EXPIRED_CALLS = "find_expired_calls"


@dataclass
class ExpiredCallsQuery:
    cutoff: str  # ISO 8601 UTC: calls created before it are past retention
    limit: int = 200


@dataclass
class ExpiredCalls:
    call_ids: list[str] = field(default_factory=list)


class RetentionActivities:
    def __init__(self, pool) -> None:  # type: ignore[no-untyped-def]
        self.pool = pool

    @activity.defn(name=FIND_EXPIRED_CALLS)
    async def find_expired_calls(self, q: ExpiredCallsQuery) -> ExpiredCalls:
        from core.models import CallStatus

        live = [s.value for s in CallStatus if s.is_active]
        rows = await self.pool.fetch(
            "SELECT call_id FROM calls WHERE created_at < $1::text::timestamptz "
            "AND status <> ALL($2::text[]) ORDER BY created_at, call_id LIMIT $3",
            q.cutoff,
            live,
            q.limit,
        )
        ids = [r["call_id"] for r in rows]
        activity.logger.info("find_expired_calls cutoff=%s found=%d", q.cutoff, len(ids))
        return ExpiredCalls(ids)
