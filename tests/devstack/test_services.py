"""Each devstack service starts, answers, and stops leaving no process behind."""

from __future__ import annotations

import contextlib
import io
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import psutil
import pytest
from minio import Minio
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.worker import Worker

from devstack.services import (
    SEARCH_ATTRIBUTES,
    ManagedProcess,
    ServiceError,
    ensure_bucket,
    free_port,
    postgres_dsn,
    postgres_server,
    s3_server,
    temporal_dev_server,
)


@workflow.defn(sandboxed=False)  # the test module imports I/O libraries
class EchoWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        await workflow.sleep(timedelta(milliseconds=10))
        return text.upper()


def _gone(proc: ManagedProcess) -> bool:
    assert proc.proc is not None
    pid = proc.proc.pid
    if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        return False
    # nothing of its process group may survive either
    return not [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pid]


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


async def test_temporal_dev_server_runs_a_workflow_and_keeps_state(tmp_path: Path) -> None:
    port, ui = free_port(), free_port()
    proc = temporal_dev_server(tmp_path, port=port, ui_port=ui)
    await proc.start()
    try:
        client = await Client.connect(f"127.0.0.1:{port}")
        async with Worker(client, task_queue="devstack-test", workflows=[EchoWorkflow]):
            result = await client.execute_workflow(
                EchoWorkflow.run, "hello", id=f"echo-{uuid.uuid4()}", task_queue="devstack-test"
            )
        assert result == "HELLO"
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace="default")
        )
        assert set(resp.custom_attributes) >= set(SEARCH_ATTRIBUTES)
        assert resp.custom_attributes["SilenceAlerts"] == IndexedValueType.INDEXED_VALUE_TYPE_INT
    finally:
        await proc.stop()
    assert _gone(proc)
    assert (tmp_path / "temporal.sqlite").stat().st_size > 0  # state is on disk, survives restart
    # WAL, not the rollback journal that made every signal wait on file syncs (TEMPORAL_SQLITE_PRAGMAS)
    with contextlib.closing(sqlite3.connect(tmp_path / "temporal.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_postgres_answers_and_stops(tmp_path: Path) -> None:
    port = free_port()
    proc = postgres_server(tmp_path / "pgdata", port=port)
    await proc.start()
    try:
        conn = await asyncpg.connect(postgres_dsn(port))
        assert await conn.fetchval("SELECT 40 + 2") == 42
        await conn.close()
    finally:
        await proc.stop()
    assert _gone(proc)


async def test_s3_round_trips_an_object(tmp_path: Path) -> None:
    port = free_port()
    proc = s3_server(tmp_path, port=port)
    await proc.start()
    try:
        ensure_bucket(f"127.0.0.1:{port}", "k", "s", "recordings")
        client = Minio(f"127.0.0.1:{port}", access_key="k", secret_key="s", secure=False)
        body = b"ogg bytes " * 1000
        client.put_object("recordings", "a/b.ogg", io.BytesIO(body), len(body))
        assert client.get_object("recordings", "a/b.ogg").read() == body
    finally:
        await proc.stop()
    assert _gone(proc)


async def test_a_taken_port_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServiceError, match=f"s3: port {port} is already in use"):
            await s3_server(tmp_path, port=port).start()


async def test_a_process_that_dies_while_starting_is_reported(tmp_path: Path) -> None:
    proc = ManagedProcess(
        "broken", ["sh", "-c", "echo cannot open config >&2; exit 3"], tmp_path / "b.log",
        ports=[free_port()],
    )  # fmt: skip
    with pytest.raises(ServiceError, match=r"broken exited with code 3(.|\n)*cannot open config"):
        await proc.start()


async def test_a_server_that_dies_right_after_its_probe_passes_is_reported(tmp_path: Path) -> None:
    port = free_port()
    script = f"python3 -m http.server {port} --bind 127.0.0.1 & sleep 0.5; echo worker panicked; kill $!; exit 2"
    proc = ManagedProcess(
        "flaky", ["sh", "-c", script], tmp_path / "f.log", ports=[port], settle_s=1.5
    )
    with pytest.raises(
        ServiceError, match=r"flaky exited right after starting(.|\n)*worker panicked"
    ):
        await proc.start()


async def test_a_lost_race_for_a_self_chosen_port_is_retried(tmp_path: Path) -> None:
    port = free_port()
    marker = tmp_path / "tried"
    # First start: loses a port race and exits; second start: serves.
    script = (
        f"if [ ! -e {marker} ]; then touch {marker}; echo 'bind: address already in use'; exit 1; fi; "
        f"exec python3 -m http.server {port} --bind 127.0.0.1"
    )
    proc = ManagedProcess("racer", ["sh", "-c", script], tmp_path / "r.log", ports=[port],
                          port_race_retries=1)  # fmt: skip
    await proc.start()
    try:
        assert proc.running and marker.exists()
    finally:
        await proc.stop()
    # Without a retry left, the same loss is reported, not hidden.
    marker.unlink()
    once = ManagedProcess("racer", ["sh", "-c", script], tmp_path / "r2.log", ports=[free_port()])
    with pytest.raises(ServiceError, match="address already in use"):
        await once.start()
