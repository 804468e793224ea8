"""As root, PostgreSQL (which refuses uid 0) runs either in a user namespace (preferred: nothing
chmod-ed, any checkout path) or, where those are not allowed, as a system user from a copy of
its binaries in /var/tmp. Both ways answer; the data directory keeps its owner's access."""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from devstack import services
from devstack.services import free_port, postgres_dsn, postgres_server

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root-only ways")


async def _answers(data_dir: Path) -> None:
    port = free_port()
    proc = postgres_server(data_dir, port=port)
    await proc.start()
    try:
        conn = await asyncpg.connect(postgres_dsn(port))
        assert await conn.fetchval("SELECT current_user") == "postgres"
        await conn.close()
    finally:
        await proc.stop()


async def test_in_a_user_namespace_under_a_private_dir(tmp_path: Path) -> None:
    if not services._userns_works():
        pytest.skip("user namespaces are not allowed here")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    await _answers(private / "pgdata")
    assert (private / "pgdata").stat().st_uid == 0
    assert oct(private.stat().st_mode & 0o777) == "0o700"  # nothing opened up


async def test_as_a_system_user_from_a_copy_of_the_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_userns_works", lambda: False)
    await _answers(tmp_path / "pgdata")
    _, user, pg_bin = services._pg_launch(tmp_path / "pgdata")
    assert user == "embedded_postgres" and str(pg_bin("postgres")).startswith("/var/tmp/")


async def test_a_data_dir_made_the_old_way_is_taken_back(tmp_path: Path) -> None:
    if not services._userns_works():
        pytest.skip("user namespaces are not allowed here")
    data = tmp_path / "pgdata"
    data.mkdir()
    (data / "x").write_text("x")
    os.chown(data, 65534, 65534)
    os.chown(data / "x", 65534, 65534)
    services._pg_launch(data)
    assert data.stat().st_uid == 0 and (data / "x").stat().st_uid == 0
