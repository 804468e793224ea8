"""A small runner of ordered SQL files (`db/migrations/NNNN_name.sql`).

Why not alembic/yoyo: the schema is plain SQL owned by three components, we need async (asyncpg)
and nothing else; a 60-line runner with a table of applied versions is easier to read and test.
Each file runs in its own transaction under an advisory lock, so concurrent starters (API,
worker, devstack) cannot apply the same file twice. Applying again is a no-op.

    python -m db.migrate            # uses DATABASE_URL
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 727_001  # arbitrary, constant: serialises migrators across processes


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Ordered migrations; a misnamed file or a duplicate version is an error, not skipped."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations share version {version:04d}")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations in order; return the names applied (empty when up to date)."""
    applied_now: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version int PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for mig in discover(directory):
            if mig.version in done:
                if done[mig.version]["checksum"] != mig.checksum:
                    raise RuntimeError(
                        f"migration {mig.name} changed after it was applied; add a new file instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            applied_now.append(mig.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        await conn.close()
    return applied_now


def main() -> None:
    from core.settings import settings_or_exit

    settings = settings_or_exit()
    names = asyncio.run(migrate(settings.database_url))
    print("applied: " + ", ".join(names) if names else "schema up to date")


if __name__ == "__main__":
    main()
