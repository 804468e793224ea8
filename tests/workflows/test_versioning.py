"""Worker Versioning as the worker sets it up: each workflow type's behavior, the worker's
deployment from the settings, unversioned workers leaving the behavior out
(core/versioning.py), and the API pinning a call at start. Deploys on a real server:
tests/ops/test_deploy.py and test_redeploy.py."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import WorkerConfig, WorkerDeploymentConfig

from activities import types as act
from core import models as m
from core.versioning import UnversionedRunner, UnversionedWorkers
from ops.deploy import promote, wait_for_pollers
from testkit.standins import StandIns
from testkit.versioning import runs_on, task_workers, versioned_worker
from tests.devstack.test_settings import VALID, load
from worker import WORKFLOWS, deployment_config
from workflows.call import CallWorkflow
from workflows.client import start_call


def test_calls_are_pinned_and_the_long_lived_workflows_auto_upgrade() -> None:
    behaviors = {w: workflow._Definition.must_from_class(w).versioning_behavior for w in WORKFLOWS}
    assert behaviors.pop(CallWorkflow) == VersioningBehavior.PINNED
    assert set(behaviors.values()) == {VersioningBehavior.AUTO_UPGRADE}, behaviors


def test_the_worker_is_versioned_only_with_a_build_id() -> None:
    assert deployment_config(load(**VALID)) is None
    config = deployment_config(load(**VALID, WORKER_BUILD_ID="r5", WORKER_DEPLOYMENT_NAME="cc"))
    assert config == WorkerDeploymentConfig(
        version=WorkerDeploymentVersion("cc", "r5"), use_worker_versioning=True
    )  # no default behavior: a workflow type without one stops the worker at start-up


def configured(**config: Any) -> WorkerConfig:
    return UnversionedWorkers().configure_worker(WorkerConfig(**config))  # type: ignore[typeddict-item]


def test_only_unversioned_workers_leave_the_behavior_out() -> None:
    assert isinstance(configured()["workflow_runner"], UnversionedRunner)
    not_versioning = WorkerDeploymentConfig(WorkerDeploymentVersion("cc", "r5"), False)
    assert isinstance(
        configured(deployment_config=not_versioning)["workflow_runner"], UnversionedRunner
    )
    versioned = WorkerDeploymentConfig(WorkerDeploymentVersion("cc", "r5"), True)
    assert "workflow_runner" not in configured(deployment_config=versioned)
    wrapped = configured()["workflow_runner"]
    assert configured(workflow_runner=wrapped)["workflow_runner"] is wrapped  # not twice


async def test_the_api_pins_a_new_call_during_the_bridge(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """PIN_NEW_CALLS_TO: update-with-start pins the call to that version although the
    Deployment has no Current Version (unversioned workers still run the rest)."""
    client = temporal_dev_env.client
    queue, version = (
        f"bridge-{uuid.uuid4().hex[:8]}",
        WorkerDeploymentVersion(f"bridge-{uuid.uuid4().hex[:8]}", "new"),
    )
    fakes = StandIns()
    async with versioned_worker(client, queue, version, fakes):
        await wait_for_pollers(client, version, 30)
        call_id = m.new_call_id()
        config = m.CallConfig(livekit_url="wss://lk.example", recording_consent="off")
        grant = await start_call(
            client, call_id, "Ada", config, task_queue=queue, pinned_to=version
        )
        assert grant.call_id == call_id and fakes.count(act.CREATE_ROOM) == 1
        handle = client.get_workflow_handle(m.call_workflow_id(call_id))
        assert await runs_on(handle) == ("pinned", "new")
        await handle.terminate("test over")


async def test_a_pinned_call_continues_as_new_on_its_own_version(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """A long call's next run stays pinned where the call started, even after a newer
    version became current: a call never meets other code mid-way."""
    client = temporal_dev_env.client
    queue, name = f"can-{uuid.uuid4().hex[:8]}", f"can-{uuid.uuid4().hex[:8]}"
    v1, v2 = WorkerDeploymentVersion(name, "v1"), WorkerDeploymentVersion(name, "v2")
    async with (
        versioned_worker(client, queue, v1, StandIns()),
        versioned_worker(client, queue, v2, StandIns(), identity="v2"),
    ):
        await promote(client, v1, task_queue=queue, wait_s=30)
        call_id = m.new_call_id()
        config = m.CallConfig(livekit_url="ws://x", customer_join_timeout_s=3600,
                              continue_as_new_after_events=40)  # fmt: skip
        handle = await client.start_workflow(
            CallWorkflow.run, m.CallInput(call_id, "Ada", config),
            id=m.call_workflow_id(call_id), task_queue=queue,
        )  # fmt: skip
        await handle.execute_update(CallWorkflow.issue_token, m.IssueTokenRequest("Ada"))
        await handle.signal(CallWorkflow.agent_joined, m.AgentJoined("aj", "agent-1"))
        first_run = (await handle.describe()).run_id
        await promote(client, v2, task_queue=queue, wait_s=30)
        for j in range(40):
            await handle.signal(
                CallWorkflow.transcript, m.TranscriptLine(f"l{j}", "customer", "hi")
            )
        latest = client.get_workflow_handle(handle.id)
        for _ in range(200):
            if (await latest.describe()).run_id != first_run:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the call never continued as new")
        assert await runs_on(latest) == ("pinned", "v1")
        await latest.query(CallWorkflow.get_state)
        assert "v2" not in await task_workers(latest)
        await latest.terminate("test over")
