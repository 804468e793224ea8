"""The retention Schedule (`call-retention`): once a day, `RetentionWorkflow` erases the calls
older than RECORDING_RETENTION_DAYS through `EraseCallWorkflow`.

The schedule is the one place the retention period is set. `ops temporal setup` (a deploy
step) creates it or updates it to RECORDING_RETENTION_DAYS (`ensure_retention_schedule`); a
worker at start-up only creates it when it is missing (`retention_in_force`) and otherwise
reads the period from it, so workers started with different settings never undo each other
or the deploy's choice (a worker whose setting differs says so in its log). The recordings
bucket's lifecycle rule expires objects a day later than the period in force (a backstop for
an object whose row is gone; see `activities.storage.LIFECYCLE_GRACE_DAYS`), so a recording
is never removed before its call is erased.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from workflows.retention import (
    RETENTION_SCHEDULE_ID,
    RetentionInput,
    RetentionWorkflow,
)

EVERY = timedelta(days=1)


def retention_schedule(task_queue: str, retention_days: int, every: timedelta = EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RetentionWorkflow.run,
            RetentionInput(retention_days=retention_days),
            id=f"{RETENTION_SCHEDULE_ID}-run",
            task_queue=task_queue,
            execution_timeout=timedelta(hours=6),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        # One sweep at a time; a missed one is simply done by the next.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_retention_schedule(
    client: Client, *, task_queue: str, retention_days: int, every: timedelta = EVERY
) -> str:
    """Create or update the schedule; returns "created" or "updated"."""
    wanted = retention_schedule(task_queue, retention_days, every)
    try:
        await client.create_schedule(RETENTION_SCHEDULE_ID, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=wanted)

    await client.get_schedule_handle(RETENTION_SCHEDULE_ID).update(update)
    return "updated"


async def scheduled_retention_days(client: Client) -> int | None:
    """The retention period the schedule runs with; None when there is no schedule."""
    try:
        desc = await client.get_schedule_handle(RETENTION_SCHEDULE_ID).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    action = desc.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or not action.args:
        return None
    [inp] = await client.data_converter.decode(action.args, [RetentionInput])  # type: ignore[arg-type]
    return int(inp.retention_days)


async def retention_in_force(client: Client, *, task_queue: str, retention_days: int) -> int:
    """At a worker's start-up: create the schedule with `retention_days` when it is missing,
    never change an existing one; the period in force (the schedule's)."""
    try:
        await client.create_schedule(
            RETENTION_SCHEDULE_ID, retention_schedule(task_queue, retention_days)
        )
        return retention_days
    except ScheduleAlreadyRunningError:
        pass
    days = await scheduled_retention_days(client)
    return retention_days if days is None else days
