"""Every side effect of the call workflows, as Temporal activities.

`build_activities(...)` returns the bound activity methods the worker registers (tests register
the same set). This module stays light: the workflows import `activities.types` inside
Temporal's sandbox, which imports this package first, so heavy clients are imported lazily.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp
    import asyncpg
    from livekit.api import LiveKitAPI
    from minio import Minio
    from temporalio.client import Client

    from core.settings import Settings


def minio_client(settings: Settings) -> Minio:
    """The S3 client for `MINIO_*` settings."""
    from minio import Minio

    return Minio(
        settings.MINIO_ENDPOINT,
        access_key=settings.MINIO_ACCESS_KEY.get_secret_value(),
        secret_key=settings.MINIO_SECRET_KEY.get_secret_value(),
        secure=settings.MINIO_SECURE,
    )


def livekit_http_url(url: str) -> str:
    """The server API speaks HTTP; LIVEKIT_URL may be the ws(s):// URL clients use."""
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    return url


def livekit_client(settings: Settings) -> LiveKitAPI:
    """A LiveKit server API client (call inside a running event loop; `aclose()` it)."""
    from livekit.api import LiveKitAPI

    return LiveKitAPI(
        livekit_http_url(settings.LIVEKIT_URL),
        settings.LIVEKIT_API_KEY.get_secret_value(),
        settings.LIVEKIT_API_SECRET.get_secret_value(),
    )


def build_activities(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    lk: LiveKitAPI | None = None,
    minio: Minio | None = None,
    client: Client | None = None,
    http_session_factory: Callable[[], aiohttp.ClientSession] | None = None,
) -> list[Callable[..., Any]]:
    """Every activity the workflows call, bound to its dependencies.

    `pool` is required (asyncpg pools are opened asynchronously by the caller). `lk` and
    `minio` are built from settings when not given; a LiveKit client built here lives as long
    as the process (pass your own to close it, or use `open_activities`). The erase activities
    (`activities.erase`) are included when a Temporal `client` is given: `EraseCallWorkflow`
    needs them.
    """
    from activities.database import DatabaseActivities
    from activities.livekit import LiveKitActivities
    from activities.storage import StorageActivities

    lk = lk or livekit_client(settings)
    minio = minio or minio_client(settings)
    live = LiveKitActivities(
        lk,
        settings.LIVEKIT_API_KEY.get_secret_value(),
        settings.LIVEKIT_API_SECRET.get_secret_value(),
        settings.LIVEKIT_URL,
    )
    storage = StorageActivities(
        minio,
        settings.RECORDINGS_BUCKET,
        http_session_factory,
        retention_days=settings.RECORDING_RETENTION_DAYS,
        egress_bucket=settings.EGRESS_BUCKET,
    )
    db = DatabaseActivities(pool)
    acts: list[Callable[..., Any]] = [
        live.create_room,
        live.mint_customer_token,
        live.start_egress,
        live.stop_egress,
        live.get_egress,
        live.delete_room,
        storage.download_and_store_recording,
        storage.find_staged_recording,
        storage.delete_recording_segments,
        db.append_call_events,
        db.record_recording,
    ]
    if client is not None:
        from activities.erase import EraseActivities

        erase = EraseActivities(pool, minio, client, settings.RECORDINGS_BUCKET)
        acts += [
            erase.erase_workflow_executions,
            erase.erase_recording_object,
            erase.erase_call_rows,
        ]
    return acts


@contextlib.asynccontextmanager
async def open_activities(
    settings: Settings, client: Client, *, migrate: bool = True
) -> AsyncIterator[list[Callable[..., Any]]]:
    """Open every dependency from settings (pool, LiveKit, S3 with its bucket and retention
    rule; the schema migrated first when `migrate`), yield the activities, close them all."""
    import asyncio

    import asyncpg

    from activities.storage import StorageActivities
    from db.migrate import migrate as apply_migrations

    if migrate:
        await apply_migrations(settings.database_url)
    minio = minio_client(settings)
    await asyncio.to_thread(
        StorageActivities(
            minio, settings.RECORDINGS_BUCKET, retention_days=settings.RECORDING_RETENTION_DAYS
        ).ensure_bucket
    )
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
    lk = livekit_client(settings)
    try:
        yield build_activities(settings, pool=pool, lk=lk, minio=minio, client=client)
    finally:
        await lk.aclose()
        await pool.close()
