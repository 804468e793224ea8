"""Calls on versioned workers, for the deploy tests: a worker of one Worker Deployment Version
with stand-in activities, a call started on a task queue, and the version a call runs on as
the server records it (`describe`)."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import PinnedVersioningOverride, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from core import models as m
from testkit.callbacks import CallbackStandIns
from testkit.standins import StandIns
from workflows.call import CallWorkflow
from workflows.callback import CallbackWorkflow
from workflows.recording import RecordingWorkflow


def versioned_worker(
    client: Client,
    task_queue: str,
    version: WorkerDeploymentVersion | None,
    fakes: StandIns,
    identity: str | None = None,
    callbacks: CallbackStandIns | None = None,
) -> Worker:
    """A worker of the call workflows polling as `version` (None: an unversioned one), as
    worker.py builds it; `identity` is what the history names on each task it completes.
    With `callbacks`, it runs CallbackWorkflow too (an auto-upgrade one) on those stand-ins."""
    config = (
        WorkerDeploymentConfig(version=version, use_worker_versioning=True) if version else None
    )
    extra: list[type] = [CallbackWorkflow] if callbacks else []
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CallWorkflow, RecordingWorkflow, *extra],
        activities=fakes.activities() + (callbacks.activities() if callbacks else []),
        deployment_config=config,
        identity=identity,
    )


async def start_waiting_call(
    client: Client, task_queue: str, pinned_to: WorkerDeploymentVersion | None = None
) -> WorkflowHandle[CallWorkflow, m.CallResult]:
    """A call that waits for its customer for an hour, its first task done; `pinned_to` pins
    it at start as the API does with PIN_NEW_CALLS_TO."""
    call_id = m.new_call_id()
    config = m.CallConfig(
        livekit_url="ws://x", customer_join_timeout_s=3600, customer_rejoin_grace_s=0
    )
    handle = await client.start_workflow(
        CallWorkflow.run,
        m.CallInput(call_id, "Ada", config),
        id=m.call_workflow_id(call_id),
        task_queue=task_queue,
        versioning_override=PinnedVersioningOverride(pinned_to) if pinned_to else None,
    )
    await handle.query(CallWorkflow.get_state)  # answered once a worker took the first task
    return handle


async def runs_on(handle: WorkflowHandle) -> tuple[str, str | None]:
    """(versioning behavior, build id) the server records for the execution: ("unspecified",
    None) for one of unversioned workers."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    behavior = {0: "unspecified", 1: "pinned", 2: "auto_upgrade"}[info.behavior]
    return behavior, info.deployment_version.build_id or None


async def task_workers(handle: WorkflowHandle) -> set[str]:
    """The identities of the workers that completed the run's workflow tasks (its history)."""
    history = await handle.fetch_history()
    return {
        e.workflow_task_completed_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }
