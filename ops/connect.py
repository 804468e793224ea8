"""Connections of the CLI, and the one-line message when a service cannot be reached.

Messages name the setting and the host, never a password (DATABASE_URL may hold one).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.settings import Settings
from core.temporal import TemporalUnavailable, connect_temporal

PG_CONNECT_TIMEOUT_S = 10.0


class Unreachable(Exception):
    """Temporal or PostgreSQL cannot be reached; the message says which, where and what to do."""


def postgres_where(dsn: str) -> str:
    """`host:port/db` of a DSN (socket directory for a Unix socket), without credentials."""
    parts = urlsplit(dsn)
    host = parts.hostname or ""
    if not host and "host=" in parts.query:
        host = parts.query.split("host=", 1)[1].split("&", 1)[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{host or 'localhost'}{port}{parts.path or ''}"


async def temporal(settings: Settings) -> Client:
    try:
        return await connect_temporal(settings)
    except TemporalUnavailable as exc:
        raise Unreachable(
            f"Temporal is not reachable at TEMPORAL_ADDRESS={settings.TEMPORAL_ADDRESS} "
            f"(namespace {settings.TEMPORAL_NAMESPACE}). Is the server (or `make dev`) running?"
        ) from exc


async def postgres(settings: Settings) -> asyncpg.Pool:
    where = postgres_where(settings.database_url)
    try:
        return await asyncpg.create_pool(
            settings.database_url, min_size=1, max_size=4, timeout=PG_CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unreachable(
            f"PostgreSQL is not reachable at {where} (DATABASE_URL): {type(exc).__name__}. "
            "Is the database running?"
        ) from exc


def unreachable_from(exc: BaseException, settings: Settings) -> Unreachable | None:
    """An Unreachable for a Temporal RPC failure that means 'server gone', else None."""
    if isinstance(exc, RPCError) and exc.status in (
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
    ):
        return Unreachable(
            f"Temporal stopped answering at TEMPORAL_ADDRESS={settings.TEMPORAL_ADDRESS}: "
            f"{exc.message}"
        )
    if isinstance(exc, (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)):
        return Unreachable(
            f"PostgreSQL stopped answering at {postgres_where(settings.database_url)}: "
            f"{type(exc).__name__}"
        )
    return None


def refusal(exc: BaseException) -> str | None:
    """One line for a server that answered but refused (unknown namespace, unmigrated schema)."""
    if isinstance(exc, RPCError):
        return f"Temporal refused: {exc.status.name}: {exc.message}"
    if isinstance(exc, asyncpg.PostgresError):
        return f"PostgreSQL refused: {type(exc).__name__}: {exc}"
    return None
