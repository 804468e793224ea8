"""`python -m devstack.livekit` as devstack runs it: --help, a clear error, serve, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
from livekit import api
from livekit.protocol import room as room_pb

from devstack.services import free_port
from tests.fixtures.livekit import API_KEY, API_SECRET

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def test_help_names_the_environment():
    out = subprocess.run(
        [sys.executable, "-m", "devstack.livekit", "--help"],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0
    for word in ("LIVEKIT_API_KEY", "LIVEKIT_EMULATOR_PORT", "LIVEKIT_WEBHOOK_URL", "--port"):
        assert word in out.stdout


def test_missing_secret_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, "-m", "devstack.livekit"],
        cwd=ROOT, env=env(LIVEKIT_API_KEY=API_KEY), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "LIVEKIT_API_SECRET" in out.stderr


async def test_serves_until_sigterm():
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devstack.livekit", "--webhook-url", "",
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=env(LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET,
                LIVEKIT_EMULATOR_PORT=str(port)),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(150):
                try:
                    async with s.get(url) as r:
                        assert await r.text() == "OK"
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("emulator never answered")
        async with api.LiveKitAPI(url, API_KEY, API_SECRET) as lk:
            await lk.room.create_room(room_pb.CreateRoomRequest(name="cli-room"))
            names = [r.name for r in (await lk.room.list_rooms(room_pb.ListRoomsRequest())).rooms]
            assert names == ["cli-room"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "livekit_emulator_listening" in log and API_SECRET not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
