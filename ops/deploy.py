"""Deploys with Worker Versioning: which versions run, how many calls each still holds, which
one takes new calls (docs/deploy.md has the procedure).

Calls are pinned: a call finishes on the Worker Deployment Version it started on, so a deploy
runs the new version beside the old one, makes it current (`promote`), and stops the old
workers once their calls have drained (`wait-drained`). Counts come from visibility
(`TemporalWorkerDeploymentVersion = '<name>:<build id>'`; NULL for calls started on unversioned
workers), restricted to our task queue.

Temporal routes every execution that is not pinned, unversioned ones included, to the
Current Version (checked on the dev server, Temporal 1.32: a call started on an unversioned
worker moved to the new version at its next task once that version was made current, or
ramping at 100 %). So `promote` refuses while calls started on unversioned workers still run:
during the bridge from an unversioned release the API pins each new call (PIN_NEW_CALLS_TO)
and the Deployment keeps no Current Version until those calls have drained.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass

import temporalio.api.workflowservice.v1 as wsv1
from temporalio.api.enums.v1 import VersionDrainageStatus, WorkerDeploymentVersionStatus
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

from core import models as m

POLL_S = 1.0


class DeployRefused(Exception):
    """A deploy step that would break running calls, or a version the server has not seen."""


@dataclass
class VersionRow:
    """One version of the Deployment (or `unversioned`) and the calls it still runs."""

    build_id: str
    status: str  # current, ramping, draining, drained, inactive; "unversioned" for the rest
    running_calls: int
    drainage: str = ""  # the server's own drainage status (refreshed every few minutes)
    current_since: str = ""


@dataclass
class DeploymentState:
    name: str
    current: str | None  # build id; None: unversioned workers take what is not pinned
    ramping: str | None
    ramping_percent: float
    versions: list[VersionRow]

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "versions": [asdict(v) for v in self.versions]}


def _enum_name(prefix: str, name: str) -> str:
    return name.removeprefix(prefix).lower() if name else ""


def calls_query(task_queue: str, version: WorkerDeploymentVersion | None) -> str:
    """Visibility query for the running calls of a version (None: of unversioned workers)."""
    where = (
        "TemporalWorkerDeploymentVersion IS NULL"
        if version is None
        else f"TemporalWorkerDeploymentVersion = '{version.deployment_name}:{version.build_id}'"
    )
    return (
        f"WorkflowType = '{m.WORKFLOW_CALL}' AND ExecutionStatus = 'Running' "
        f"AND TaskQueue = '{task_queue}' AND {where}"
    )


async def running_calls(
    client: Client, task_queue: str, version: WorkerDeploymentVersion | None
) -> int:
    """How many calls on `task_queue` still run on `version` (None: started unversioned)."""
    return (await client.count_workflows(calls_query(task_queue, version))).count


async def _describe(client: Client, name: str) -> wsv1.DescribeWorkerDeploymentResponse | None:
    try:
        return await client.workflow_service.describe_worker_deployment(
            wsv1.DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # no versioned worker has polled yet
            return None
        raise


async def state(client: Client, name: str, task_queue: str) -> DeploymentState:
    """The Deployment's routing and every version's running calls, unversioned ones last."""
    described = await _describe(client, name)
    rows: list[VersionRow] = []
    current = ramping = None
    percent = 0.0
    if described is not None:
        info = described.worker_deployment_info
        routing = info.routing_config
        current = routing.current_deployment_version.build_id or None
        ramping = routing.ramping_deployment_version.build_id or None
        percent = routing.ramping_version_percentage
        for s in sorted(info.version_summaries, key=lambda s: s.create_time.ToDatetime()):
            build = s.deployment_version.build_id
            version = WorkerDeploymentVersion(name, build)
            rows.append(
                VersionRow(
                    build_id=build,
                    status=_enum_name(
                        "WORKER_DEPLOYMENT_VERSION_STATUS_",
                        WorkerDeploymentVersionStatus.Name(s.status),
                    ),
                    running_calls=await running_calls(client, task_queue, version),
                    drainage=_enum_name(
                        "VERSION_DRAINAGE_STATUS_", VersionDrainageStatus.Name(s.drainage_status)
                    ).replace("unspecified", ""),
                    current_since=(
                        s.current_since_time.ToDatetime().isoformat()
                        if s.HasField("current_since_time")
                        else ""
                    ),
                )
            )
    rows.append(
        VersionRow(
            build_id="(unversioned)",
            status="current" if current is None else "unversioned",
            running_calls=await running_calls(client, task_queue, None),
        )
    )
    return DeploymentState(name, current, ramping, percent, rows)


async def _task_queues(client: Client, version: WorkerDeploymentVersion) -> set[tuple[str, int]]:
    """(name, type) of every task queue a version's workers have polled."""
    described = await client.workflow_service.describe_worker_deployment_version(
        wsv1.DescribeWorkerDeploymentVersionRequest(
            namespace=client.namespace, deployment_version=version._to_proto()
        )
    )
    return {(q.name, q.type) for q in described.version_task_queues}


async def wait_for_pollers(
    client: Client, version: WorkerDeploymentVersion, timeout_s: float
) -> None:
    """Wait until `version`'s workers poll every task queue (workflow and activity) that the
    Current Version's poll: the server refuses to make it current before (its task queues
    would become unversioned). Raise DeployRefused after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    missing: set[tuple[str, int]] = set()
    while True:
        described = await _describe(client, version.deployment_name)
        if described is not None and any(
            s.deployment_version.build_id == version.build_id
            for s in described.worker_deployment_info.version_summaries
        ):
            current = described.worker_deployment_info.routing_config.current_deployment_version
            wanted = set()
            if current.build_id and current.build_id != version.build_id:
                wanted = await _task_queues(
                    client, WorkerDeploymentVersion(version.deployment_name, current.build_id)
                )
            missing = wanted - await _task_queues(client, version)
            if not missing:
                return
        if time.monotonic() >= deadline:
            what = (
                f"does not poll {', '.join(sorted(n for n, _ in missing))} yet"
                if missing
                else "has not polled"
            )
            raise DeployRefused(
                f"no worker of {version.to_canonical_string()} {what} after {timeout_s:g}s: "
                "start its workers (WORKER_DEPLOYMENT_NAME, WORKER_BUILD_ID) before promoting it"
            )
        await asyncio.sleep(POLL_S)


async def promote(
    client: Client,
    version: WorkerDeploymentVersion,
    *,
    task_queue: str,
    wait_s: float = 0.0,
    take_over_unversioned: bool = False,
) -> dict[str, object]:
    """Make `version` the Current Version: new calls start (and stay) on it, auto-upgrade
    workflows move to it. Refuses while calls started on unversioned workers still run (they
    would move to this version's code), unless `take_over_unversioned`."""
    await wait_for_pollers(client, version, wait_s)
    unversioned = await running_calls(client, task_queue, None)
    if unversioned and not take_over_unversioned:
        raise DeployRefused(
            f"{unversioned} call(s) started on unversioned workers still run on {task_queue}: "
            "a Current Version would take them over mid-call. Keep the old workers running, "
            "pin new calls with PIN_NEW_CALLS_TO, and promote after `python -m ops deploy "
            "wait-drained --unversioned` (docs/deploy.md)"
        )
    before = await _describe(client, version.deployment_name)
    previous = (
        before.worker_deployment_info.routing_config.current_deployment_version.build_id
        if before is not None
        else ""
    )
    await client.workflow_service.set_worker_deployment_current_version(
        wsv1.SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            identity="ops deploy promote",
        )
    )
    return {
        "deployment": version.deployment_name,
        "current": version.build_id,
        "previous": previous or None,
        "unversioned_calls_taken_over": unversioned,
    }


async def wait_drained(
    client: Client,
    version: WorkerDeploymentVersion | None,
    *,
    task_queue: str,
    timeout_s: float,
) -> dict[str, object]:
    """Wait until no call on `task_queue` runs on `version` (None: on unversioned workers) any
    more, and the version takes no new ones (it is not current or ramping): its workers may
    then stop. Raise DeployRefused for a version the Deployment does not know or that still
    takes new calls, TimeoutError with the count left after `timeout_s`."""
    label = version.build_id if version else "(unversioned)"
    if version is not None:
        described = await _describe(client, version.deployment_name)
        known = described is not None and any(
            s.deployment_version.build_id == version.build_id
            for s in described.worker_deployment_info.version_summaries
        )
        if not known:  # a typo must not read as "drained": its workers would be stopped
            raise DeployRefused(
                f"{version.deployment_name} has no version {label} (see `ops deploy status`)"
            )
        routing = described.worker_deployment_info.routing_config if described else None
        if routing is not None and version.build_id in (
            routing.current_deployment_version.build_id,
            routing.ramping_deployment_version.build_id,
        ):
            raise DeployRefused(
                f"{label} is the current or ramping version: it keeps taking new calls and "
                "will never drain; promote its successor first"
            )
    started = time.monotonic()
    while True:
        left = await running_calls(client, task_queue, version)
        if left == 0:
            return {
                "version": label,
                "drained": True,
                "waited_s": round(time.monotonic() - started, 1),
            }
        if time.monotonic() - started >= timeout_s:
            raise TimeoutError(f"{left} call(s) still run on {label} after {timeout_s:g}s")
        await asyncio.sleep(POLL_S)
