"""Egress recordings: a real Ogg/Opus file as long as the egress was active, served with
Content-Length and Range, described in egress_ended as LiveKit describes it."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import aiohttp
import av
import numpy as np
from livekit.protocol import egress as egress_pb

from devstack.livekit import EmulatorConfig, RunningEmulator, start_emulator
from tests.fixtures.livekit import API_KEY, API_SECRET, LiveKitEmulator, WebhookSink


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


async def record(
    emu: LiveKitEmulator, room: str, mixing: int = egress_pb.DEFAULT_MIXING
) -> egress_pb.EgressInfo:
    await emu.join(room, "agent-x", "agent", publish_audio=True)
    await emu.join(room, "customer-1", "customer", publish_audio=True)
    async with emu.api() as lk:
        return await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room,
                audio_only=True,
                audio_mixing=mixing,  # type: ignore[arg-type]
                file_outputs=[egress_pb.EncodedFileOutput(filepath="recordings/{room_name}.ogg")],
            )
        )


async def download(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


def decode(data: bytes) -> tuple[str, int, np.ndarray]:
    """(codec name, channels, samples as (channels, n) float32) of an Ogg file."""
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        frames = [f.to_ndarray() for f in c.decode(stream)]
        pcm = np.concatenate(frames, axis=1)
        return stream.codec_context.name, stream.codec_context.channels, pcm


async def test_recording_decodes_and_lasts_what_egress_ended_says(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    info = await record(livekit_emulator, room, egress_pb.DUAL_CHANNEL_AGENT)
    await livekit_webhooks.wait_for("egress_updated", room)  # ACTIVE
    # Make a three-minute recording without waiting three minutes.
    recorded = await livekit_emulator.advance(info.egress_id, 180)
    assert 180 <= recorded < 185
    async with livekit_emulator.api() as lk:
        await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
    ended = await livekit_webhooks.wait_for("egress_ended", room, timeout=30)
    (f,) = ended.egress_info.file_results
    assert ended.egress_info.status == egress_pb.EGRESS_COMPLETE
    assert f.filename == f"recordings/{room}.ogg"
    assert 180e9 <= f.duration < 185e9  # nanoseconds, as LiveKit reports them
    assert f.ended_at - f.started_at == f.duration

    status, headers, data = await download(f.location)
    assert status == 200 and int(headers["Content-Length"]) == len(data) == f.size
    assert headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == "audio/ogg"
    codec, channels, pcm = decode(data)
    assert (codec, channels) == ("opus", 2)
    assert abs(pcm.shape[1] / 48000 - f.duration / 1e9) < 0.5
    # Agent left, customer right: the agent speaks in the first second, the customer in the next.
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    first, second = pcm[:, 4800:43200], pcm[:, 52800:91200]
    assert rms(first[0]) > 0.1 and rms(first[1]) < 0.02
    assert rms(second[1]) > 0.1 and rms(second[0]) < 0.02
    await livekit_emulator.end_room(room)


async def test_range_requests_and_head(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    room = room_name()
    info = await record(livekit_emulator, room)
    await livekit_webhooks.wait_for("egress_updated", room)
    await livekit_emulator.advance(info.egress_id, 5)
    await livekit_emulator.end_room(room)  # the room ending ends its egress, with the file
    ended = await livekit_webhooks.wait_for("egress_ended", room)
    assert ended.egress_info.status == egress_pb.EGRESS_COMPLETE
    url, size = ended.egress_info.file_results[0].location, ended.egress_info.file_results[0].size
    _, _, whole = await download(url)

    status, headers, part = await download(url, {"Range": "bytes=0-99"})
    assert status == 206 and part == whole[:100]
    assert headers["Content-Range"] == f"bytes 0-99/{size}" and headers["Content-Length"] == "100"
    status, headers, rest = await download(url, {"Range": "bytes=100-"})
    assert status == 206 and part + rest == whole
    status, _, tail = await download(url, {"Range": "bytes=-10"})
    assert status == 206 and tail == whole[-10:]
    status, headers, _ = await download(url, {"Range": f"bytes={size}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    async with aiohttp.ClientSession() as s, s.head(url) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == size
        assert r.headers["ETag"].strip('"')
    status, _, _ = await download(url.replace(info.egress_id, "EG_unknown"))
    assert status == 404


async def own_emulator(**overrides) -> tuple[RunningEmulator, LiveKitEmulator]:
    config = EmulatorConfig(
        api_key=API_KEY, api_secret=API_SECRET, port=0, webhook_url="", **overrides
    )
    handle = await start_emulator(config)
    return handle, LiveKitEmulator(
        handle.url, API_KEY, API_SECRET, handle.control_url, handle, None
    )  # type: ignore[arg-type]


async def test_stop_before_active_aborts_without_a_file():
    # An emulator of its own whose egresses take 5 s to start, so the stop surely comes first.
    handle, emu = await own_emulator(egress_start_delay_s=5)
    try:
        room = room_name()
        handle.emulator.join(room, "customer-1", "customer")
        async with emu.api() as lk:
            info = await lk.egress.start_room_composite_egress(
                egress_pb.RoomCompositeEgressRequest(
                    room_name=room, file_outputs=[egress_pb.EncodedFileOutput()]
                )
            )
            await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
            await emu.wait_idle()
            (done,) = (
                await lk.egress.list_egress(egress_pb.ListEgressRequest(egress_id=info.egress_id))
            ).items
        assert done.status == egress_pb.EGRESS_ABORTED and not done.file_results
    finally:
        await handle.stop()


async def test_stopping_the_emulator_abandons_encodes_and_leaks_no_task():
    before = asyncio.all_tasks()
    handle, emu = await own_emulator(egress_start_delay_s=0.01)
    room = room_name()
    handle.emulator.join(room, "customer-1", "customer")
    async with emu.api() as lk:
        info = await lk.egress.start_room_composite_egress(
            egress_pb.RoomCompositeEgressRequest(
                room_name=room, file_outputs=[egress_pb.EncodedFileOutput()]
            )
        )
        await asyncio.sleep(0.1)
        handle.emulator.advance_egress(info.egress_id, 4 * 3600)
        await lk.egress.stop_egress(egress_pb.StopEgressRequest(egress_id=info.egress_id))
    await asyncio.sleep(0.1)  # the four-hour encode is now running in its thread
    started = time.monotonic()
    await handle.stop()
    assert time.monotonic() - started < 3
    assert asyncio.all_tasks() - before == set()
    assert not handle.emulator.recordings_dir.exists()
