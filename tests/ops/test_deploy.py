"""`ops deploy status|promote|wait-drained` on the dev server: real versioned workers, real
calls pinned by CallWorkflow's own decorator, each test with a Deployment and a task queue of
its own (the dev server is shared)."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.common import WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment

from core.settings import Settings, load_settings
from ops.cli import run
from ops.deploy import wait_for_pollers
from ops.histories import cluster_query
from testkit.standins import StandIns
from testkit.versioning import runs_on, start_waiting_call, versioned_worker


def settings_for(env: WorkflowEnvironment) -> Settings:
    return load_settings(
        _env_file=None,
        TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
        TEMPORAL_TASK_QUEUE=f"deploy-{uuid.uuid4().hex[:8]}",
        WORKER_DEPLOYMENT_NAME=f"dep-{uuid.uuid4().hex[:8]}",
        DATABASE_URL="postgresql://unused@127.0.0.1:1/unused",
        MINIO_ENDPOINT="127.0.0.1:1",
        MINIO_ACCESS_KEY="unused",
        MINIO_SECRET_KEY="unused",
        LIVEKIT_URL="ws://127.0.0.1:1",
        LIVEKIT_API_KEY="unused",
        LIVEKIT_API_SECRET="unused",
        API_TOKENS="unused-token-0123456789:admin",
    )


async def deploy(settings: Settings, *argv: str) -> tuple[int, Any, str]:
    """`python -m ops deploy ARGV --json` in process: (exit code, JSON or None, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = await run(["deploy", *argv, "--json"], settings=settings, stdout=out, stderr=err)
    return code, (json.loads(out.getvalue()) if out.getvalue() else None), err.getvalue()


def calls_of(status: dict[str, Any]) -> dict[str, int]:
    return {v["build_id"]: v["running_calls"] for v in status["versions"]}


async def test_promote_pins_new_calls_and_the_old_version_drains(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    client, s = temporal_dev_env.client, settings_for(temporal_dev_env)
    queue, name = s.TEMPORAL_TASK_QUEUE, s.WORKER_DEPLOYMENT_NAME
    v1, v2 = WorkerDeploymentVersion(name, "v1"), WorkerDeploymentVersion(name, "v2")
    async with versioned_worker(client, queue, v1, StandIns()):
        code, got, err = await deploy(s, "promote", "v1", "--wait", "30")
        assert code == 0, err
        assert got == {"deployment": name, "current": "v1", "previous": None,
                       "unversioned_calls_taken_over": 0}  # fmt: skip
        call = await start_waiting_call(client, queue)
        assert await runs_on(call) == ("pinned", "v1")
        async with versioned_worker(client, queue, v2, StandIns()):
            code, got, err = await deploy(s, "promote", "v2", "--wait", "30")
            assert code == 0 and got["previous"] == "v1", err
            code, status, _ = await deploy(s, "status")
            assert code == 0 and status["current"] == "v2"
            assert calls_of(status) == {"v1": 1, "v2": 0, "(unversioned)": 0}
            assert await runs_on(call) == ("pinned", "v1")  # promoting moved nothing
            # v2 takes new calls: it cannot drain; v1 still holds its call.
            code, _, err = await deploy(s, "wait-drained", "v2", "--timeout", "1s")
            assert code == 1 and "current or ramping" in err
            code, _, err = await deploy(s, "wait-drained", "v1", "--timeout", "1s")
            assert code == 1 and "1 call(s) still run on v1" in err
            await call.terminate("test over")
            code, got, err = await deploy(s, "wait-drained", "v1", "--timeout", "30s")
            assert code == 0 and got["drained"], err


async def test_promote_refuses_while_calls_of_unversioned_workers_run(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """The server would move such a call to the new version at its next task."""
    client, s = temporal_dev_env.client, settings_for(temporal_dev_env)
    queue = s.TEMPORAL_TASK_QUEUE
    v1 = WorkerDeploymentVersion(s.WORKER_DEPLOYMENT_NAME, "v1")
    async with (
        versioned_worker(client, queue, None, StandIns()),
        versioned_worker(client, queue, v1, StandIns()),
    ):
        old = await start_waiting_call(client, queue)
        assert await runs_on(old) == ("unspecified", None)
        code, _, err = await deploy(s, "promote", "v1", "--wait", "30")
        assert code == 1 and "1 call(s) started on unversioned workers" in err
        code, status, _ = await deploy(s, "status")
        assert status["current"] is None and calls_of(status)["(unversioned)"] == 1
        code, _, err = await deploy(s, "wait-drained", "--unversioned", "--timeout", "1s")
        assert code == 1
        await old.terminate("test over")
        code, got, err = await deploy(s, "wait-drained", "--unversioned", "--timeout", "30s")
        assert code == 0, err
        code, got, err = await deploy(s, "promote", "v1")
        assert code == 0 and got["current"] == "v1", err


async def test_an_unknown_version_is_neither_promoted_nor_drained(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    s = settings_for(temporal_dev_env)
    code, _, err = await deploy(s, "promote", "nobody", "--wait", "1")
    assert code == 1 and "no worker of" in err and "has not polled" in err
    code, _, err = await deploy(s, "wait-drained", "nobody", "--timeout", "1s")
    assert code == 1 and "has no version nobody" in err  # a typo must not read as drained


async def test_the_pre_deploy_check_leaves_out_what_never_runs_on_new_code(
    temporal_dev_env: WorkflowEnvironment,
) -> None:
    """`ops histories check` lists pinned calls never (their version runs them to the end) and,
    with `--bridge`, not the calls of unversioned workers either (they finish on their own)."""
    client, s = temporal_dev_env.client, settings_for(temporal_dev_env)
    queue = s.TEMPORAL_TASK_QUEUE
    v1 = WorkerDeploymentVersion(s.WORKER_DEPLOYMENT_NAME, "v1")
    since = datetime.now(UTC) - timedelta(hours=1)
    async with (
        versioned_worker(client, queue, None, StandIns()),
        versioned_worker(client, queue, v1, StandIns()),
    ):
        await wait_for_pollers(client, v1, 30)
        unversioned = await start_waiting_call(client, queue)
        pinned = await start_waiting_call(client, queue, pinned_to=v1)
        assert await runs_on(pinned) == ("pinned", "v1")
        listed = [w.id async for w in client.list_workflows(cluster_query(queue, since))]
        bridged = [
            w.id async for w in client.list_workflows(cluster_query(queue, since, bridge=True))
        ]
        for call in (unversioned, pinned):
            await call.terminate("test over")
    assert listed == [unversioned.id] and bridged == []
