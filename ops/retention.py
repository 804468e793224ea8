"""The retention Schedule (`call-retention`): once a day, `RetentionWorkflow` erases the calls
older than RECORDING_RETENTION_DAYS through `EraseCallWorkflow`.

`ensure_retention_schedule` creates it, or updates it to the current settings when it exists
(the worker calls it at start-up and `ops temporal setup` does too; racing workers are fine).
The recordings bucket's lifecycle rule expires objects a day later than this (a backstop for
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
