"""Worker Versioning as the worker sets it up: each workflow type's behavior, the worker's
deployment from the settings, and unversioned workers leaving the behavior out
(core/versioning.py). The behavior on a real server: tests/ops/test_deploy.py and
test_redeploy.py."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import WorkerConfig, WorkerDeploymentConfig

from core.versioning import UnversionedRunner, UnversionedWorkers
from tests.devstack.test_settings import VALID, load
from worker import WORKFLOWS, deployment_config
from workflows.call import CallWorkflow


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
