"""Browser tests: the built widget and dashboard in headless Chromium against the real API.

The API runs as its own process (`python -m api`, as in production) on a free port, with a real
PostgreSQL (its LISTEN/NOTIFY fan-out included), the S3 endpoint and the LiveKit emulator.
The call tables are written here the way the call's workflow writes them (rows + NOTIFY), which
is the protocol boundary between the workflow and the API. Temporal is pointed at a closed port:
endpoints that need it answer 503, and the tests assert on that too.

Chromium comes from Debian (`apt-get install chromium`); Playwright only drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from core.models import new_call_id, room_name_for
from devstack.services import free_port

# The whole stack is tests/api's fixture, shared (session-scoped) with the API tests.
from tests.api.conftest import ApiStack, _api_stack_session, api_stack  # noqa: F401
from tests.fixtures.livekit import LiveKitEmulator
from tests.fixtures.services import (
    TEST_ADMIN_TOKEN,
    TEST_OPS_TOKEN,
    TEST_SUPERVISOR_TOKEN,
    S3Endpoint,
    forget_client_limits,
)

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "api" / "static"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone that needs no permission prompt, for the widget's getUserMedia.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
RATE_LIMIT_PER_MINUTE = 3
SCREENSHOTS = os.environ.get("WEB_SCREENSHOTS")  # a directory: tests save a PNG of each page there


def _require_build() -> None:
    missing = [p for p in ("index.html", "dashboard.html") if not (STATIC / p).is_file()]
    if missing:
        pytest.fail(
            f"the web build is missing ({', '.join(missing)} in {STATIC}): run `make web` "
            "(cd web && npm ci && npm run build)",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`; "
            ".ci/run does this) or set CHROMIUM_PATH",
            pytrace=False,
        )
    return CHROMIUM


@dataclass
class WebApi:
    """The running API and what the tests need to drive it."""

    base_url: str
    dsn: str
    s3: S3Endpoint
    livekit_url: str
    admin_token: str = TEST_ADMIN_TOKEN
    supervisor_token: str = TEST_SUPERVISOR_TOKEN
    ops_token: str = TEST_OPS_TOKEN


def _api_env(tmp: Path, port: int, dsn: str, s3: S3Endpoint, lk: LiveKitEmulator) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DEVSTACK_DIR": str(tmp),  # keeps the developer's .devstack/env out of the test
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "DATABASE_URL": dsn,
            "MINIO_ENDPOINT": s3.endpoint,
            "MINIO_ACCESS_KEY": s3.access_key,
            "MINIO_SECRET_KEY": s3.secret_key,
            "RECORDINGS_BUCKET": s3.bucket,
            # Nothing listens here: what needs Temporal answers 503, which the pages must show.
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "LIVEKIT_URL": lk.url,
            "LIVEKIT_API_KEY": lk.api_key,
            "LIVEKIT_API_SECRET": lk.api_secret,
            "API_TOKENS": f"{TEST_ADMIN_TOKEN}:admin,{TEST_SUPERVISOR_TOKEN}:supervisor,"
            f"{TEST_OPS_TOKEN}:ops",
            "RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT_PER_MINUTE),
        }
    )
    return env


async def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(
        f"the API did not become healthy at {url} (exit {proc.poll()}):\n{tail}", pytrace=False
    )


@pytest.fixture(scope="session")
async def web_api(
    tmp_path_factory: pytest.TempPathFactory,
    pg_dsn: str,
    s3: S3Endpoint,
    livekit_emulator: LiveKitEmulator,
) -> AsyncIterator[WebApi]:
    _require_build()
    tmp = tmp_path_factory.mktemp("web_api")
    port = free_port()
    log = tmp / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api"],
            cwd=tmp,  # no stray .env is read
            env=_api_env(tmp, port, pg_dsn, s3, livekit_emulator),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(base, proc, log, timeout=30)
        yield WebApi(base, pg_dsn, s3, livekit_emulator.url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # launch() gives every run a fresh temporary profile (its own --user-data-dir).
        b = await pw.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def context(browser: Browser, web_api: WebApi) -> AsyncIterator[BrowserContext]:
    # The limits live in the session's database: each page starts with the address's budget.
    await forget_client_limits(web_api.dsn, "127.0.0.1")
    ctx = await browser.new_context(
        base_url=web_api.base_url, viewport={"width": 1360, "height": 860}
    )
    await ctx.grant_permissions(["microphone"], origin=web_api.base_url)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    async with _watched(context) as p:
        yield p


@contextlib.asynccontextmanager
async def _watched(context: BrowserContext) -> AsyncIterator[Page]:
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    # An uncaught exception in the page is a bug even when the assertions passed.
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
async def stack_page(browser: Browser, api_stack: ApiStack) -> AsyncIterator[Page]:  # noqa: F811
    """A page on the API of the whole stack (Temporal dev server, worker, tests/api's fixture)."""
    _require_build()
    ctx = await browser.new_context(
        base_url=api_stack.api.url, viewport={"width": 1360, "height": 860}
    )
    await ctx.grant_permissions(["microphone"], origin=api_stack.api.url)
    try:
        async with _watched(ctx) as p:
            yield p
    finally:
        await ctx.close()


# The product as README shows it: these pages, saved to docs/screenshots/ by `make screenshots`
# (DOCS_SCREENSHOTS=1), so the pictures always come from the tests of the code they show.
PRODUCT_SHOTS = {
    "widget-idle": "the customer's Call widget",
    "dashboard-call-detail": "a live call: transcript, alerts, actions",
    "dashboard-playback": "an ended call replayed in step with its transcript",
    "dashboard-report": "the post-call report and latency panel",
    "dashboard-search": "search with a shareable URL",
    "desk-offer": "the Desk: an offer ringing, with its briefing",
    "dashboard-analysis": "after the call: the analysis, its scorecard and deliveries",
    "temporal-ui-calls": "the Temporal Web UI listing calls by search attribute",
    "temporal-ui-decoded": "a transcript line decoded in the Temporal Web UI",
}
DOCS_SHOTS = ROOT / "docs" / "screenshots"


async def screenshot(page: Page, name: str) -> None:
    """Save a full-page PNG under $WEB_SCREENSHOTS (for looking at; never committed), and a
    product shot under docs/screenshots/ when DOCS_SCREENSHOTS is set."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)
    if os.environ.get("DOCS_SCREENSHOTS") and name in PRODUCT_SHOTS:
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOCS_SHOTS / f"{name}.png"))


# --- the workflow's side of the database -----------------------------------------------------


class CallTables:
    """Writes `calls`, `call_events` and `recordings` as the call's workflow does, then NOTIFYs
    the API's fan-out channel exactly as the workflow's local activity does."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add_call(
        self,
        customer_name: str | None,
        status: str = "in_progress",
        recording_status: str = "recording",
        started_ago_s: float = 3,
    ) -> str:
        call_id = new_call_id()
        created = datetime.now(UTC) - timedelta(seconds=started_ago_s)
        ended = datetime.now(UTC) if status in ("completed", "failed", "no_agent") else None
        await self.conn.execute(
            "INSERT INTO calls (call_id, room_name, customer_name, status, recording_status, "
            "created_at, agent_joined_at, ended_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            call_id,
            room_name_for(call_id),
            customer_name,
            status,
            recording_status,
            created,
            created + timedelta(seconds=2),
            ended,
        )
        await self.add_event(call_id, "status", {"status": status})
        return call_id

    async def add_event(self, call_id: str, kind: str, data: dict[str, Any]) -> int:
        async with self.conn.transaction():
            seq = await self.conn.fetchval(
                "UPDATE calls SET last_seq = last_seq + 1, updated_at = now(), "
                "silence_alerts = silence_alerts + ($2 = 'silence_alert')::int, "
                "keyword_alerts = keyword_alerts + ($2 = 'keyword_alert')::int, "
                "status = COALESCE(CASE WHEN $2 = 'status' THEN $3 END, status), "
                "recording_status = COALESCE(CASE WHEN $2 = 'recording' THEN $3 END, recording_status) "
                "WHERE call_id = $1 RETURNING last_seq",
                call_id,
                kind,
                data.get("status"),
            )
            await self.conn.execute(
                "INSERT INTO call_events (call_id, seq, kind, at, data) VALUES ($1, $2, $3, now(), $4)",
                call_id,
                seq,
                kind,
                json.dumps(data),
            )
            await self.conn.execute(
                "SELECT pg_notify('call_events', $1)",
                json.dumps({"call_id": call_id, "seq": seq, "kind": kind}),
            )
        return int(seq)

    async def say(self, call_id: str, speaker: str, text: str, confidence: float = 0.97) -> int:
        now = datetime.now(UTC).isoformat()
        return await self.add_event(
            call_id,
            "final_transcript",
            {
                "id": f"line-{new_call_id()}",
                "speaker": speaker,
                "text": text,
                "confidence": confidence,
                "started_at": now,
                "ended_at": now,
                "interrupted": False,
            },
        )

    async def interim(self, call_id: str, speaker: str, text: str) -> None:
        message = {
            "type": "interim_transcript",
            "call_id": call_id,
            "seq": None,
            "at": datetime.now(UTC).isoformat(),
            "data": {"speaker": speaker, "text": text},
        }
        await self.conn.execute("SELECT pg_notify('call_interim', $1)", json.dumps(message))

    async def store_recording(
        self, call_id: str, s3: S3Endpoint, payload: bytes, duration_s: float
    ) -> str:
        import hashlib
        import io

        key = f"conversations/{call_id}.ogg"
        await asyncio.to_thread(
            s3.client.put_object, s3.bucket, key, io.BytesIO(payload), len(payload), "audio/ogg"
        )
        digest = hashlib.sha256(payload).hexdigest()
        await self.conn.execute(
            "INSERT INTO recordings (call_id, bucket, object_key, egress_id, size_bytes, duration_s, sha256) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            call_id,
            s3.bucket,
            key,
            f"EG_{call_id}",
            len(payload),
            duration_s,
            digest,
        )
        await self.add_event(
            call_id,
            "recording",
            {"status": "stored", "key": key, "size": len(payload), "sha256": digest,
             "duration_s": duration_s, "incomplete": False},
        )  # fmt: skip
        return digest


@pytest.fixture
async def tables(web_api: WebApi) -> AsyncIterator[CallTables]:
    conn = await asyncpg.connect(web_api.dsn)
    try:
        yield CallTables(conn)
    finally:
        await conn.close()
