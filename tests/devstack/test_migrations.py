"""The migrations apply to an empty database and apply again as a no-op."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from db.migrate import MIGRATIONS_DIR, discover, migrate


async def test_migrations_apply_once_then_are_a_no_op(pg_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE DATABASE migrate_fresh")
    await conn.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + "/migrate_fresh"
    names = await migrate(dsn)
    assert names == [m.name for m in discover()]
    assert await migrate(dsn) == []
    conn = await asyncpg.connect(dsn)
    tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    assert {"calls", "call_events", "recordings", "schema_migrations"} <= tables
    await conn.close()


async def test_a_changed_applied_migration_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE DATABASE migrate_changed")
    await conn.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + "/migrate_changed"
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int);")
    assert await migrate(dsn, tmp_path) == ["0001_a.sql"]
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x int, y int);")
    with pytest.raises(RuntimeError, match="0001_a.sql changed after it was applied"):
        await migrate(dsn, tmp_path)


async def test_a_failing_migration_leaves_nothing_half_applied(pg_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE DATABASE migrate_broken")
    await conn.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + "/migrate_broken"
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT no_such_fn();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(dsn, tmp_path)
    conn = await asyncpg.connect(dsn)
    assert await conn.fetchval("SELECT to_regclass('half')") is None
    assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
    await conn.close()


def test_misnamed_files_are_an_error(tmp_path: Path) -> None:
    (tmp_path / "1_bad.sql").write_text("")
    with pytest.raises(ValueError, match="not named NNNN_name.sql"):
        discover(tmp_path)


async def test_call_links_are_backfilled_from_callbacks_that_dialled_before(
    pg_dsn: str, tmp_path: Path
) -> None:
    """0020 links the calls of callbacks that dialled before it: their attempts name them."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE DATABASE migrate_links")
    await conn.close()
    dsn = pg_dsn.rsplit("/", 1)[0] + "/migrate_links"
    earlier = [m for m in discover() if m.version < 20]
    for m in earlier:
        (tmp_path / m.name).write_text(m.sql)
    assert len(await migrate(dsn, tmp_path)) == len(earlier)
    conn = await asyncpg.connect(dsn)
    try:
        for cb, origin, attempts in (
            ("cbaaaaaaaaaaaa", "origin0000000000", '[{"n": 1, "call_id": "try1", "started_at": 1.5},'
                                                   ' {"n": 2, "call_id": "try2", "started_at": 9.0}]'),
            ("cbbbbbbbbbbbbb", "", '[{"n": 1, "call_id": "try3", "started_at": 3.0}]'),
            ("cbcccccccccccc", "origin1111111111", "[]"),
        ):  # fmt: skip
            await conn.execute(
                "INSERT INTO callbacks (callback_id, phone, timezone, origin_call_id, status, at, "
                "due_at, attempts) VALUES ($1, '+15550100001', 'UTC', $2, 'completed', now(), "
                "now(), $3::jsonb)",
                cb, origin, attempts,
            )  # fmt: skip
        assert await migrate(dsn, MIGRATIONS_DIR) == ["0020_call_links.sql"]
        rows = await conn.fetch(
            "SELECT call_id, origin_call_id, callback_id, extract(epoch FROM created_at) AS at "
            "FROM call_links ORDER BY call_id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("try1", "origin0000000000", "cbaaaaaaaaaaaa", 1.5),
        ("try2", "origin0000000000", "cbaaaaaaaaaaaa", 9.0),
        ("try3", "", "cbbbbbbbbbbbbb", 3.0),
    ]
