"""download_and_store_recording against a real S3 endpoint (moto) and a real HTTP source.

The source is a small aiohttp server in the test serving files from disk with Range, ETag and
If-Range, and faults: cut the connection after N bytes, ignore Range, answer a status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
from aiohttp import web
from minio.error import S3Error

from activities import types as act
from activities.egress_location import endpoint_host
from activities.storage import (
    LIFECYCLE_GRACE_DAYS,
    MiB,
    StorageActivities,
    incomplete_recording,
    ogg_opus_duration,
)
from bench.fixtures import PeakRSS, write_ogg_like
from core import models as m
from tests.activities.conftest import Run, app_error

BLOCK = MiB


@dataclass
class Source:
    """Files served over HTTP, and what the server was asked."""

    url: str = ""
    files: dict[str, Path] = field(default_factory=dict)
    cut_after: dict[str, list[int]] = field(default_factory=dict)  # name -> byte counts
    ignore_range: set[str] = field(default_factory=set)
    status: dict[str, int] = field(default_factory=dict)
    stall_after: dict[str, int] = field(default_factory=dict)  # name -> bytes, then hang
    requests: list[tuple[str, str]] = field(default_factory=list)  # (name, Range header)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, path: Path) -> str:
        self.files[path.name] = path
        return f"{self.url}/{path.name}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((name, request.headers.get("Range", "")))
        if name in self.status:
            return web.Response(status=self.status[name], text="nope")
        path = self.files.get(name)
        if path is None:
            return web.Response(status=404, text="not found")
        size = path.stat().st_size
        etag = f'"{size}-{int(path.stat().st_mtime_ns)}"'
        start, status = 0, 200
        ranged = request.headers.get("Range", "")
        if ranged and name not in self.ignore_range:
            if request.headers.get("If-Range", etag) == etag:
                start, status = int(ranged.removeprefix("bytes=").split("-")[0]), 206
        resp = web.StreamResponse(status=status)
        resp.headers.update({"ETag": etag, "Accept-Ranges": "bytes", "Content-Type": "audio/ogg"})
        resp.content_length = size - start
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        await resp.prepare(request)
        cuts = self.cut_after.get(name)
        cut = cuts.pop(0) if cuts else None
        sent = 0
        with path.open("rb") as fh:
            fh.seek(start)
            while chunk := fh.read(BLOCK):
                if name in self.stall_after and sent >= self.stall_after[name]:
                    await self.release.wait()  # hangs until the test is over
                    return resp
                if cut is not None and sent + len(chunk) >= cut:
                    await resp.write(chunk[: cut - sent])
                    assert request.transport is not None
                    request.transport.close()  # the connection drops mid-file
                    return resp
                await resp.write(chunk)
                sent += len(chunk)
        await resp.write_eof()
        return resp


@pytest.fixture
async def source() -> AsyncIterator[Source]:
    src = Source()
    app = web.Application()
    app.router.add_get("/files/{name}", src.handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    src.url = f"http://127.0.0.1:{runner.addresses[0][1]}/files"
    yield src
    src.release.set()
    await runner.cleanup()


@pytest.fixture
def storage(s3: Any, source: Source) -> StorageActivities:
    return StorageActivities(
        s3.client, s3.bucket, retention_days=30, source_hosts=frozenset({host_of(source.url)})
    )


def host_of(url: str) -> str:
    return endpoint_host(url)


def rec_input(call_id: str, location: str, size: int, **kw: Any) -> m.RecordingInput:
    values: dict[str, Any] = dict(
        call_id=call_id, room_name=m.room_name_for(call_id), egress_id="EG_test",
        location=location, expected_size=size, expected_duration_s=60.0, call_duration_s=61.0,
    )  # fmt: skip
    values.update(kw)
    return m.RecordingInput(**values)


def object_sha256(s3: Any, key: str) -> tuple[str, int]:
    resp = s3.client.get_object(s3.bucket, key)
    digest, n = hashlib.sha256(), 0
    try:
        for chunk in resp.stream(BLOCK):
            digest.update(chunk)
            n += len(chunk)
    finally:
        resp.close()
        resp.release_conn()
    return digest.hexdigest(), n


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path = tmp_path_factory.mktemp("big") / "big.ogg"
    sha = write_ogg_like(path, 200 * MiB, seed=7)
    yield path, sha
    path.unlink()


async def test_200mb_streams_with_little_memory(
    storage: StorageActivities, source: Source, s3: Any, big_file: tuple[Path, str]
) -> None:
    path, sha = big_file
    size = path.stat().st_size
    call_id = m.new_call_id()
    run = Run()
    started = time.monotonic()
    with PeakRSS() as rss:
        result = await run(
            storage.download_and_store_recording, rec_input(call_id, source.add(path), size)
        )
    elapsed = time.monotonic() - started
    print(f"200 MiB stored in {elapsed:.1f} s, peak RSS growth {rss.growth_mb:.1f} MiB")
    assert rss.growth_mb < 64, f"RSS grew {rss.growth_mb:.0f} MiB for a 200 MiB file"
    assert (result.size, result.sha256, result.already_stored) == (size, sha, False)
    assert result.key == m.recording_object_key(call_id) and result.bucket == s3.bucket
    assert object_sha256(s3, result.key) == (sha, size)
    meta = s3.client.stat_object(s3.bucket, result.key).metadata
    assert meta["x-amz-meta-call-id"] == call_id and meta["x-amz-meta-egress-id"] == "EG_test"
    assert meta["x-amz-meta-room"] == m.room_name_for(call_id)
    tags = s3.client.get_object_tags(s3.bucket, result.key)
    assert tags["sha256"] == sha
    assert tags["duration-s"] == "60.000"  # not a real Ogg: egress's figure
    # Progress was heartbeated along the way, ending at 100%.
    assert len(run.heartbeats) >= 3
    assert run.heartbeats[-1]["bytes"] == size and run.heartbeats[-1]["percent"] == 100.0
    sizes = [beat["bytes"] for beat in run.heartbeats]
    assert sizes == sorted(sizes)


async def test_a_cut_connection_resumes_with_a_range_request(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "cut.ogg"
    sha = write_ogg_like(path, 20 * MiB + 123)
    source.cut_after[path.name] = [5 * MiB + 17, 13 * MiB]  # cut twice
    call_id = m.new_call_id()
    inp = rec_input(call_id, source.add(path), path.stat().st_size)
    result = await Run()(storage.download_and_store_recording, inp)
    assert result.sha256 == sha and object_sha256(s3, result.key) == (sha, inp.expected_size)
    assert [r for _, r in source.requests] == ["", f"bytes={5 * MiB + 17}-",
                                              f"bytes={18 * MiB + 17}-"]  # fmt: skip


async def test_a_source_that_cannot_resume_restarts_cleanly(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "norange.ogg"
    sha = write_ogg_like(path, 18 * MiB)
    source.cut_after[path.name] = [11 * MiB]  # after a part went up
    source.ignore_range.add(path.name)
    inp = rec_input(m.new_call_id(), source.add(path), path.stat().st_size)
    result = await Run()(storage.download_and_store_recording, inp)
    assert result.sha256 == sha and object_sha256(s3, result.key) == (sha, inp.expected_size)
    assert len(source.requests) == 2


async def test_the_same_bytes_twice_write_nothing(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "twice.ogg"
    sha = write_ogg_like(path, 12 * MiB)
    call_id = m.new_call_id()
    inp = rec_input(call_id, source.add(path), path.stat().st_size)
    first = await Run()(storage.download_and_store_recording, inp)
    before = s3.client.stat_object(s3.bucket, first.key)
    await asyncio.sleep(1.1)  # Last-Modified has a resolution of one second
    again = await Run()(storage.download_and_store_recording, inp)
    assert again.already_stored and again.sha256 == sha and len(source.requests) == 1
    # Reported by another egress id: downloaded and compared, still not written.
    other = await Run()(
        storage.download_and_store_recording,
        rec_input(call_id, inp.location, inp.expected_size, egress_id="EG_other"),
    )
    assert other.already_stored and other.sha256 == sha and len(source.requests) == 2
    after = s3.client.stat_object(s3.bucket, first.key)
    assert (after.last_modified, after.etag) == (before.last_modified, before.etag)
    assert after.metadata["x-amz-meta-egress-id"] == "EG_test"


async def test_different_bytes_replace_the_object(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    call_id = m.new_call_id()
    a, b = tmp_path / "a.ogg", tmp_path / "b.ogg"
    write_ogg_like(a, 100_000, seed=1)
    sha_b = write_ogg_like(b, 120_000, seed=2)  # small: one PUT with its metadata
    await Run()(storage.download_and_store_recording,
                rec_input(call_id, source.add(a), 100_000, egress_id="EG_a"))  # fmt: skip
    result = await Run()(storage.download_and_store_recording,
                         rec_input(call_id, source.add(b), 120_000, egress_id="EG_b"))  # fmt: skip
    assert not result.already_stored
    assert object_sha256(s3, result.key) == (sha_b, 120_000)
    stat = s3.client.stat_object(s3.bucket, result.key)
    assert stat.metadata["x-amz-meta-egress-id"] == "EG_b" and stat.content_type == "audio/ogg"
    assert s3.client.get_object_tags(s3.bucket, result.key)["sha256"] == sha_b


def open_uploads(s3: Any, key: str) -> list[str]:
    listed = s3.client._list_multipart_uploads(s3.bucket, prefix=key)
    return [u.upload_id for u in listed.uploads]


async def test_a_cancelled_download_leaves_no_parts_behind(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "stall.ogg"
    write_ogg_like(path, 30 * MiB)
    source.stall_after[path.name] = 20 * MiB  # two parts up, then the source hangs
    inp = rec_input(m.new_call_id(), source.add(path), 30 * MiB)
    key = m.recording_object_key(inp.call_id)
    run = Run()
    task = asyncio.create_task(run(storage.download_and_store_recording, inp))
    async with asyncio.timeout(20):
        while not (run.heartbeats and run.heartbeats[-1]["bytes"] >= 16 * MiB):
            await asyncio.sleep(0.05)
    assert run.heartbeats[-1]["upload_id"] in open_uploads(s3, key)
    run.env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert open_uploads(s3, key) == []
    with pytest.raises(S3Error):
        s3.client.stat_object(s3.bucket, key)


async def test_the_next_attempt_discards_a_crashed_attempts_upload(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "crash.ogg"
    sha = write_ogg_like(path, 6 * MiB)
    inp = rec_input(m.new_call_id(), source.add(path), 6 * MiB)
    key = m.recording_object_key(inp.call_id)
    orphan = s3.client._create_multipart_upload(s3.bucket, key, {})
    run = Run()
    # What the crashed attempt's last heartbeat said (Temporal hands it to the next attempt).
    run.env.info = dataclasses.replace(
        run.env.info, heartbeat_details=[{"bytes": 1, "upload_id": orphan}], attempt=2
    )
    result = await run(storage.download_and_store_recording, inp)
    assert result.sha256 == sha and orphan not in open_uploads(s3, key)


async def test_size_mismatch_is_retryable_and_stores_nothing(
    storage: StorageActivities, source: Source, s3: Any, tmp_path: Path
) -> None:
    path = tmp_path / "short.ogg"
    write_ogg_like(path, 9 * MiB)
    inp = rec_input(m.new_call_id(), source.add(path), 9 * MiB + 1)
    err = await app_error(Run()(storage.download_and_store_recording, inp))
    assert err.type == act.ERR_SIZE_MISMATCH and not err.non_retryable
    with pytest.raises(S3Error) as missing:
        s3.client.stat_object(s3.bucket, m.recording_object_key(inp.call_id))
    assert missing.value.code == "NoSuchKey"


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (404, act.ERR_SOURCE_UNUSABLE, False),
        (403, act.ERR_SOURCE_UNUSABLE, False),
        (503, act.ERR_SOURCE_UNAVAILABLE, True),
    ],
)
async def test_source_errors(
    storage: StorageActivities, source: Source, status: int, kind: str, retryable: bool
) -> None:
    source.status["x.ogg"] = status
    inp = rec_input(m.new_call_id(), f"{source.url}/x.ogg", 1000)
    err = await app_error(Run()(storage.download_and_store_recording, inp))
    assert err.type == kind and err.non_retryable is not retryable
    assert str(status) in err.message


async def test_a_file_that_is_not_ogg_is_unusable(
    storage: StorageActivities, source: Source, tmp_path: Path
) -> None:
    path = tmp_path / "page.ogg"
    path.write_bytes(b"<html>an error page served with 200</html>")
    inp = rec_input(m.new_call_id(), source.add(path), 0)
    err = await app_error(Run()(storage.download_and_store_recording, inp))
    assert err.type == act.ERR_SOURCE_UNUSABLE and err.non_retryable


async def test_an_unreachable_store_is_retryable(source: Source, tmp_path: Path) -> None:
    from minio import Minio

    from devstack.services import free_port

    no_retries = urllib3.PoolManager(retries=urllib3.Retry(total=0))  # minio retries ~6 s
    dead = Minio(f"127.0.0.1:{free_port()}", "a", "b", secure=False, http_client=no_retries)
    path = tmp_path / "s.ogg"
    write_ogg_like(path, 1000)
    inp = rec_input(m.new_call_id(), source.add(path), 1000)
    acts = StorageActivities(dead, "recordings", source_hosts=frozenset({host_of(source.url)}))
    err = await app_error(Run()(acts.download_and_store_recording, inp))
    assert err.type == act.ERR_STORAGE_UNAVAILABLE and not err.non_retryable


async def test_bad_input_is_not_retried(storage: StorageActivities) -> None:
    inp = rec_input(m.new_call_id(), "file:///etc/passwd", 10)
    err = await app_error(Run()(storage.download_and_store_recording, inp))
    assert err.type == act.ERR_INVALID_INPUT and err.non_retryable


def test_bucket_gets_its_retention_rule(s3: Any) -> None:
    bucket = f"retention-{random.randrange(1 << 30)}"
    acts = StorageActivities(s3.client, bucket, retention_days=30)
    acts.ensure_bucket()
    acts.ensure_bucket()  # again: no error, still one rule
    (rule,) = s3.client.get_bucket_lifecycle(bucket).rules
    assert (
        rule.expiration.days == 30 + LIFECYCLE_GRACE_DAYS
        and rule.rule_filter.prefix == "conversations/"
    )


def test_presigned_url_is_short_lived(storage: StorageActivities) -> None:
    url = storage.presigned_recording_url("conversations/abc.ogg", timedelta(minutes=5))
    assert "X-Amz-Expires=300" in url and "conversations/abc.ogg" in url
    with pytest.raises(ValueError, match="15 minutes"):
        storage.presigned_recording_url("conversations/abc.ogg", timedelta(hours=1))


def test_incomplete_means_much_shorter_than_the_call() -> None:
    assert not incomplete_recording(58.0, 61.0)
    assert incomplete_recording(30.0, 61.0)
    assert not incomplete_recording(3500.0, 3600.0) and incomplete_recording(3000.0, 3600.0)
    assert not incomplete_recording(10.0, 0.0)  # unknown call length


def test_ogg_duration_needs_a_final_page() -> None:
    head = b"OggS" + bytes(24) + b"OpusHead\x01\x02" + (312).to_bytes(2, "little")
    page = b"OggS\x00\x04" + (48_000 * 3 + 312).to_bytes(8, "little") + bytes(12) + b"\x01\x05"
    assert ogg_opus_duration(head, b"junkOggS" + page + b"12345") == 3.0
    assert ogg_opus_duration(head, page + b"1234") is None  # the page does not end the file
    assert ogg_opus_duration(b"not opus", page + b"12345") is None


async def test_a_cancelled_thread_call_is_waited_for_however_often_it_is_cancelled() -> None:
    """`in_thread`: the caller learns of its cancellation only once the thread has returned
    (an S3 request it sent may still write), even when cancelled again while it waits."""
    from activities.multipart import in_thread

    done: list[bool] = []

    def write() -> None:
        time.sleep(0.5)
        done.append(True)

    task = asyncio.ensure_future(in_thread(write))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()  # a second cancellation is absorbed too
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(done) == 1  # the thread had returned when the cancellation was raised
