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

    from activities.livekit import EgressUpload
    from activities.storage import StorageActivities
    from core.settings import Settings

from core.livekit import livekit_client, minio_client


def egress_upload(settings: Settings) -> EgressUpload | None:
    """The S3 target egress requests carry (None: EGRESS_UPLOAD_IN_REQUEST=false)."""
    from activities.livekit import EgressUpload

    if not settings.EGRESS_UPLOAD_IN_REQUEST:
        return None
    access = settings.EGRESS_S3_ACCESS_KEY or settings.MINIO_ACCESS_KEY
    secret = settings.EGRESS_S3_SECRET_KEY or settings.MINIO_SECRET_KEY
    return EgressUpload(
        bucket=settings.EGRESS_BUCKET,
        endpoint=settings.egress_s3_endpoint,
        region=settings.MINIO_REGION,
        force_path_style=settings.EGRESS_S3_FORCE_PATH_STYLE,
        access_key=access.get_secret_value(),
        secret=secret.get_secret_value(),
    )


def egress_has_root_credentials(settings: Settings) -> bool:
    """True when egress requests would hand Egress the product's own S3 keys (EGRESS_S3_* unset
    or the same): it could then read and delete every recording, not only put its segment."""
    if not settings.EGRESS_UPLOAD_IN_REQUEST:
        return False
    access = settings.EGRESS_S3_ACCESS_KEY
    return not access or access.get_secret_value() == settings.MINIO_ACCESS_KEY.get_secret_value()


def storage_activities(
    settings: Settings,
    minio: Minio,
    http_session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    pool: asyncpg.Pool | None = None,
) -> StorageActivities:
    """The storage activities for these settings (recordings and staging buckets); with
    `pool`, they refuse to store a recording of an erased call."""
    from activities.storage import StorageActivities

    return StorageActivities(
        minio,
        settings.RECORDINGS_BUCKET,
        http_session_factory,
        retention_days=settings.RECORDING_RETENTION_DAYS,
        staging_bucket=settings.EGRESS_BUCKET,
        s3_endpoints=(settings.MINIO_ENDPOINT, settings.egress_s3_endpoint),
        source_hosts=settings.recording_source_hosts,
        staging_keep_days=settings.EGRESS_STAGING_KEEP_DAYS,
        pool=pool,
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
    (`activities.erase`) and the retention sweep's are included when a Temporal `client` is given: `EraseCallWorkflow`
    needs them.
    """
    from activities.database import DatabaseActivities
    from activities.livekit import LiveKitActivities
    from activities.phone import PhoneActivities

    lk = lk or livekit_client(settings)
    minio = minio or minio_client(settings)
    live = LiveKitActivities(lk, egress_upload(settings))
    storage = storage_activities(settings, minio, http_session_factory, pool)
    db = DatabaseActivities(pool)
    phone = PhoneActivities(lk)
    acts: list[Callable[..., Any]] = [
        live.create_room,
        live.start_egress,
        live.stop_egress,
        live.get_egress,
        live.delete_room,
        live.dispatch_agent,
        live.get_room_presence,
        phone.dial_outbound,
        phone.transfer_call,
        storage.download_and_store_recording,
        storage.find_staged_recording,
        storage.delete_recording_segments,
        db.append_call_events,
        db.record_recording,
    ]
    from activities.analysis import AnalysisActivities
    from activities.starts import StartActivities

    acts += AnalysisActivities(pool, settings, client).activities()
    from activities.callbacks import CallbackActivities
    from activities.campaigns import CampaignActivities

    dialer = CallbackActivities(pool, settings, client)
    acts += dialer.activities() + CampaignActivities(pool, settings, dialer).activities()
    acts += StartActivities(settings).activities()
    if client is not None:
        from activities.erase import EraseActivities
        from activities.retention import RetentionActivities

        erase = EraseActivities(
            pool, minio, client, settings.RECORDINGS_BUCKET, settings.EGRESS_BUCKET
        )
        acts += [*erase.activities(), RetentionActivities(pool, client).find_expired_calls]
        from activities.desk import DeskActivities
        from core.desk import desk_config
        from workflows.desk_client import DeskClient

        desk = DeskClient(client, desk_config(settings), settings.TEMPORAL_TASK_QUEUE)
        acts += DeskActivities(desk, lk).activities()
    return acts


@contextlib.asynccontextmanager
async def open_activities(
    settings: Settings, client: Client, *, migrate: bool = True
) -> AsyncIterator[list[Callable[..., Any]]]:
    """Open every dependency from settings (pool, LiveKit, S3 with its bucket and retention
    rule; the schema migrated first when `migrate`), yield the activities, close them all."""
    import asyncio

    import asyncpg

    from db.migrate import migrate as apply_migrations

    if migrate:
        await apply_migrations(settings.database_url)
    minio = minio_client(settings)
    storage = storage_activities(settings, minio)
    await asyncio.to_thread(storage.ensure_bucket)
    await asyncio.to_thread(storage.ensure_staging_bucket)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
    lk = livekit_client(settings)
    try:
        yield build_activities(settings, pool=pool, lk=lk, minio=minio, client=client)
    finally:
        await lk.aclose()
        await pool.close()
