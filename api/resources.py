"""The API's connections to the outside, opened in the server's listeners and kept on `app.ctx.res`.

The API starts even when a dependency is down (so `/healthz` and `/readyz` can say so): the
Temporal client connects in the background and is retried; the PostgreSQL pool connects on first
use. A handler that needs something not reachable yet gets a 503 naming it, not a traceback.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from livekit import api as lkapi
from temporalio.client import Client

from api.domain import store
from api.domain.desk import ApiDeskClient, DeskFeed
from api.domain.fanout import LiveHub
from api.domain.workflows_client import CallsClient
from api.errors import Unavailable
from core.codec import codec_from_settings
from core.desk import desk_config
from core.livekit import livekit_client, minio_client
from core.log import get_logger
from core.settings import Settings
from core.temporal import connect_temporal
from workflows.desk_client import DeskClient

log = get_logger("api.resources")


class Resources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        # Readiness probes get one connection of their own: a flood of /readyz can neither
        # take the requests' connections nor be starved by them.
        self.probe_pool: asyncpg.Pool | None = None
        self.hub: LiveHub | None = None
        self.livekit: lkapi.LiveKitAPI | None = None
        self.token_verifier = lkapi.TokenVerifier(
            settings.LIVEKIT_API_KEY.get_secret_value(),
            settings.LIVEKIT_API_SECRET.get_secret_value(),
        )
        self.webhooks = lkapi.WebhookReceiver(self.token_verifier)
        self.minio = minio_client(settings)
        # Recording links are signed for the host browsers reach (the signature covers it).
        self.presigner = self.minio
        if settings.MINIO_PUBLIC_URL:
            public = urlsplit(settings.MINIO_PUBLIC_URL)
            self.presigner = minio_client(
                settings, endpoint=public.netloc, secure=public.scheme == "https"
            )
        # For the Web UI's codec endpoint (None when encryption is off). It shows what history
        # holds, plaintext included; refusing unencrypted input is the workers' and clients' job.
        self.codec = codec_from_settings(settings, require_encryption=False)
        self._temporal: Client | None = None
        self._temporal_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._desk: DeskClient | None = None
        self._desk_feed: DeskFeed | None = None

    async def open(self) -> None:
        self.pool = await store.open_pool(self.settings.database_url, min_size=0, max_size=20)
        self.probe_pool = await store.open_pool(self.settings.database_url, min_size=0, max_size=1)
        self.hub = LiveHub(
            self.settings.database_url,
            self.pool,
            queue_size=self.settings.WS_QUEUE_SIZE,
        )
        self.livekit = livekit_client(self.settings)
        self._tasks = [
            asyncio.create_task(self._connect_temporal(), name="connect-temporal"),
            asyncio.create_task(self._start_hub(), name="start-livehub"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for outcome in await asyncio.gather(*self._tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("resource_task_failed", error=f"{type(outcome).__name__}: {outcome}")
        if self.hub is not None:
            await self.hub.stop()
        if self.livekit is not None:
            await self.livekit.aclose()
        if self.pool is not None:
            await self.pool.close()
        if self.probe_pool is not None:
            await self.probe_pool.close()

    async def _connect_temporal(self) -> None:
        delay = 0.5
        while True:
            try:
                self._temporal = await connect_temporal(self.settings)
                self._temporal_ready.set()
                log.info("temporal_connected", address=self.settings.TEMPORAL_ADDRESS)
                return
            except (RuntimeError, OSError) as exc:
                log.warning("temporal_connect_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _start_hub(self) -> None:
        assert self.hub is not None
        delay = 0.5
        while True:
            try:
                await self.hub.start()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("livehub_start_failed", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @property
    def temporal(self) -> Client:
        if self._temporal is None:
            # The reason (address, namespace, transport error) is in the log, not the answer.
            raise Unavailable("temporal is not reachable", code="temporal_unavailable")
        return self._temporal

    @property
    def calls(self) -> CallsClient:
        """What the API asks of Temporal; 503 `temporal_unavailable` until it is connected."""
        return CallsClient(self.temporal, self.settings)

    @property
    def desk(self) -> DeskClient:
        """The desk's workflow (workflows/desk.py); 503 until Temporal is connected."""
        client = self.temporal
        if self._desk is None or self._desk.client is not client:
            self._desk = ApiDeskClient(client, desk_config(self.settings),
                                       self.settings.TEMPORAL_TASK_QUEUE)  # fmt: skip
        return self._desk

    @property
    def desk_feed(self) -> DeskFeed:
        if self._desk_feed is None:
            self._desk_feed = DeskFeed(lambda: self.desk.snapshot(), interval_s=0.25)
        return self._desk_feed

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "resources not opened"
        return self.pool

    @property
    def live(self) -> LiveHub:
        assert self.hub is not None, "resources not opened"
        return self.hub

    @property
    def lk(self) -> lkapi.LiveKitAPI:
        assert self.livekit is not None, "resources not opened"
        return self.livekit

    async def wait_temporal(self, timeout: float) -> Client:
        """For start-up paths (tests, benchmarks): wait until the client is connected."""
        async with asyncio.timeout(timeout):
            await self._temporal_ready.wait()
        assert self._temporal is not None
        return self._temporal

    def status(self) -> dict[str, Any]:
        return {"temporal_connected": self._temporal is not None}
