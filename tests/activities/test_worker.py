"""worker.py as a process: --help, clear start-up errors, start on real services, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.testing import WorkflowEnvironment

from core.settings import ROOT, Settings
from devstack.services import free_port
from tests.fixtures.livekit import LiveKitEmulator


def clean_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment minus every setting (and no env file), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(DEVSTACK_DIR=str(tmp_path), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(settings)
    return env


async def run_worker(tmp_path: Path, *args: str, **settings: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "worker.py"), *args,
        cwd=tmp_path, env=clean_env(tmp_path, **settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_help(tmp_path: Path) -> None:
    proc = await run_worker(tmp_path, "--help")
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and b"TEMPORAL_TASK_QUEUE" in out and b"--drain-s" in out


async def test_missing_settings_are_named(tmp_path: Path) -> None:
    proc = await run_worker(tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    for name in (b"DATABASE_URL", b"MINIO_ENDPOINT", b"LIVEKIT_URL"):
        assert name in err


def service_settings(
    temporal: str, pg_dsn: str, s3: Any, lk: LiveKitEmulator, queue: str
) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": temporal,
        "TEMPORAL_TASK_QUEUE": queue,
        "DATABASE_URL": pg_dsn,
        "MINIO_ENDPOINT": s3.endpoint,
        "MINIO_ACCESS_KEY": s3.access_key,
        "MINIO_SECRET_KEY": s3.secret_key,
        "RECORDINGS_BUCKET": f"worker-{queue}",
        "LIVEKIT_URL": lk.url,
        "LIVEKIT_API_KEY": lk.api_key,
        "LIVEKIT_API_SECRET": lk.api_secret,
        "API_TOKENS": "worker-test-token-0123456789:admin",
    }


async def test_unreachable_temporal_is_a_clear_error(
    tmp_path: Path, pg_dsn: str, s3: Any, livekit_emulator: LiveKitEmulator
) -> None:
    address = f"127.0.0.1:{free_port()}"
    proc = await run_worker(
        tmp_path, **service_settings(address, pg_dsn, s3, livekit_emulator, "q")
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode()
    assert f"TEMPORAL_ADDRESS={address}".encode() in err
    assert livekit_emulator.api_secret.encode() not in err and s3.secret_key.encode() not in err


async def test_starts_on_real_services_and_stops_on_sigterm(
    tmp_path: Path,
    temporal_dev_env: WorkflowEnvironment,
    pg_dsn: str,
    s3: Any,
    livekit_emulator: LiveKitEmulator,
) -> None:
    queue = f"w{uuid.uuid4().hex[:8]}"
    address = temporal_dev_env.client.service_client.config.target_host
    proc = await run_worker(
        tmp_path, "--drain-s", "5", **service_settings(address, pg_dsn, s3, livekit_emulator, queue)
    )
    assert proc.stderr is not None
    lines: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while not any(b"worker_started" in line for line in lines):
                line = await proc.stderr.readline()
                assert line, b"".join(lines).decode()
                lines.append(line)
        started = next(line for line in lines if b"worker_started" in line).decode()
        assert (
            f"task_queue={queue}" in started and "activities=33" in started
        )  # retention sweep, the phone's two, the room check, the desk's three, callbacks, campaigns
        # The worker created its bucket with the retention rule.
        assert (
            s3.client.get_bucket_lifecycle(f"worker-{queue}").rules[0].expiration.days == 365 + 1
        )  # LIFECYCLE_GRACE_DAYS
        # It polls the queue for workflow and activity tasks.
        for kind in (
            TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        ):
            request = DescribeTaskQueueRequest(
                namespace="default", task_queue=TaskQueue(name=queue), task_queue_type=kind
            )
            service = temporal_dev_env.client.workflow_service
            async with asyncio.timeout(10):  # pollers start just after the log line
                while not (await service.describe_task_queue(request)).pollers:
                    await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stderr.read(), 30)
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert b"worker_stopped" in rest
    assert livekit_emulator.api_secret.encode() not in b"".join(lines) + rest


def test_egress_with_the_products_own_s3_keys_is_flagged() -> None:
    """The worker warns at start-up when egress requests would carry the root S3 keys."""
    from activities import egress_has_root_credentials
    from core.settings import load_settings

    base = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", "MINIO_ENDPOINT": "127.0.0.1:1",
            "MINIO_ACCESS_KEY": "root-user", "MINIO_SECRET_KEY": "root-secret",
            "LIVEKIT_URL": "http://127.0.0.1:1", "LIVEKIT_API_KEY": "k",
            "LIVEKIT_API_SECRET": "s" * 32, "API_TOKENS": "a" * 20 + ":admin"}  # fmt: skip
    assert egress_has_root_credentials(load_settings(**base))
    same = {**base, "EGRESS_S3_ACCESS_KEY": "root-user", "EGRESS_S3_SECRET_KEY": "root-secret"}
    assert egress_has_root_credentials(load_settings(**same))
    own = {**base, "EGRESS_S3_ACCESS_KEY": "egress-upload", "EGRESS_S3_SECRET_KEY": "s" * 24}
    assert not egress_has_root_credentials(load_settings(**own))
    assert not egress_has_root_credentials(load_settings(**base, EGRESS_UPLOAD_IN_REQUEST=False))
