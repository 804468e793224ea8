"""Egress recordings: a real Ogg/Opus file per egress, and its download over HTTP.

The file lasts exactly as long as the egress was active (plus any `advance`), 48 kHz stereo
Opus. Its content takes turns like a call: the agent "speaks" (220 Hz) in the first second of
every two and the other side (440 Hz) in the second. With audio_mixing DUAL_CHANNEL_AGENT the
agent is on the left channel only and everyone else on the right, as LiveKit's egress lays it
out; otherwise both voices are mixed into both channels.

Downloads answer `Content-Length`, `Accept-Ranges: bytes`, an `ETag` (MD5 of the file, as
S3 gives for a single-part object) and single `Range` requests (206 / 416), and honour the
`recording_*` faults (slow, cut mid-way, HTTP error).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiohttp import web

from core.log import get_logger

from .faults import Faults

log = get_logger("devstack.livekit.recording")

SAMPLE_RATE = 48000
# 200 ms per frame handed to PyAV, which cuts them into Opus's 20 ms frames itself.
FRAME = 9600
AGENT_HZ = 220.0
OTHER_HZ = 440.0
BITRATE = 32000
_CHUNK = 64 * 1024


class RecordingCancelled(Exception):
    """The emulator stopped while a recording was being written."""


@dataclass
class RecordingFile:
    path: Path
    size: int
    duration_s: float
    md5: str


def _period(dual_channel: bool) -> np.ndarray:
    """Two seconds of interleaved stereo float32: agent in second one, the other side in two."""
    t = np.arange(2 * SAMPLE_RATE, dtype=np.float64) / SAMPLE_RATE
    # 10 ms fades keep the turns free of clicks.
    ramp = np.minimum(1.0, np.minimum(t % 1.0, 1.0 - (t % 1.0)) / 0.01)
    agent = np.where(t < 1.0, 0.3 * np.sin(2 * np.pi * AGENT_HZ * t), 0.0) * ramp
    other = np.where(t >= 1.0, 0.3 * np.sin(2 * np.pi * OTHER_HZ * t), 0.0) * ramp
    if dual_channel:
        left, right = agent, other
    else:
        left = right = agent + other
    return np.ascontiguousarray(np.stack([left, right], axis=1).astype(np.float32))


def write_recording(
    path: Path, duration_s: float, dual_channel: bool, cancel: threading.Event | None = None
) -> RecordingFile:
    """Encode `duration_s` of audio to `path` (Ogg/Opus). Blocking: run it in a thread.

    Raises RecordingCancelled (leaving no file) when `cancel` is set during the encode.
    """
    total = max(0, round(duration_s * SAMPLE_RATE))
    period = _period(dual_channel)
    tmp = path.with_suffix(".part")
    container = av.open(str(tmp), "w", format="ogg")
    try:
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="stereo")
        stream.bit_rate = BITRATE
        pts = 0
        while pts < total:
            if cancel is not None and cancel.is_set():
                raise RecordingCancelled(str(path))
            n = min(FRAME, total - pts)
            start = pts % len(period)
            chunk = period[start : start + n]
            if len(chunk) < n:  # wraps around the period
                chunk = np.concatenate([chunk, period[: n - len(chunk)]])
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="stereo")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            for packet in stream.encode(frame):
                container.mux(packet)
            pts += n
        for packet in stream.encode(None):
            container.mux(packet)
    except BaseException:
        container.close()
        tmp.unlink(missing_ok=True)
        raise
    container.close()
    tmp.replace(path)
    md5 = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
    return RecordingFile(path, path.stat().st_size, total / SAMPLE_RATE, md5.hexdigest())


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` / `a-` / `-n` range as (start, end inclusive); None if unsatisfiable.

    Raises ValueError for a header that is not a single byte range (served as a full 200).
    """
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError(header)
    first, _, last = spec.strip().partition("-")
    if first == "":
        n = int(last)
        if n <= 0:
            return None
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


async def serve_recording(
    request: web.Request, rec: RecordingFile, egress_id: str, faults: Faults
) -> web.StreamResponse:
    """Answer a GET/HEAD for one recording, applying any recording_* fault for this egress."""
    err = faults.take("recording_error", egress_id=egress_id)
    if err:
        status = int(err.params["status"])
        log.warning("recording_error_by_fault", egress_id=egress_id, status=status)
        return web.json_response(
            {"error": {"code": "fault", "message": f"injected HTTP {status}"}}, status=status
        )
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Type": "audio/ogg",
        "ETag": f'"{rec.md5}"',
        "Content-Disposition": f'attachment; filename="{egress_id}.ogg"',
    }
    start, end, status = 0, rec.size - 1, 200
    range_header = request.headers.get("Range")
    if range_header:
        try:
            span = _parse_range(range_header, rec.size)
        except ValueError:  # not one byte range: servers may ignore it and send the whole file
            span = (0, rec.size - 1)
            range_header = ""
        if span is None:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{rec.size}"})
        if range_header:
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{rec.size}"
    length = end - start + 1
    headers["Content-Length"] = str(length)
    resp = web.StreamResponse(status=status, headers=headers)
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp
    slow = faults.take("recording_slow", egress_id=egress_id)
    cut = faults.take("recording_cut", egress_id=egress_id)
    cut_after = None
    if cut:
        cut_after = cut.params["after_bytes"]
        cut_after = length // 2 if cut_after is None else min(int(cut_after), length)
    rate = int(slow.params["bytes_per_s"]) if slow else 0
    # Throttled: chunks of a tenth of a second's worth, each sent no earlier than its due time.
    chunk = max(1, min(_CHUNK, rate // 10)) if rate else _CHUNK
    began = time.monotonic()
    sent = 0
    with rec.path.open("rb") as f:
        f.seek(start)
        while sent < length:
            if rate:
                due = began + sent / rate - time.monotonic()
                if due > 0:
                    await asyncio.sleep(due)
            n = min(chunk, length - sent)
            if cut_after is not None:
                n = min(n, cut_after - sent)
                if n <= 0:
                    log.warning("recording_cut_by_fault", egress_id=egress_id, after_bytes=sent)
                    # Drop the connection mid-body: the client sees fewer bytes than promised.
                    if request.transport is not None:
                        request.transport.close()
                    return resp
            data = f.read(n)
            if not data:
                break
            await resp.write(data)
            sent += len(data)
    await resp.write_eof()
    return resp
